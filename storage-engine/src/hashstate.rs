//! `HashState`: a running sha256 or sha512 that can be saved to bytes and resumed elsewhere
//! (SHARED.md D4: an upload session's chunks may arrive at any node, so the hash of what was
//! received so far travels in the session record).
//!
//! Rules:
//! - No hashing code of our own: the state is `sha2`'s own `SerializableState` (midstate, block
//!   count, partial block), framed as `version u8 = 1, algorithm u8 (1 sha256, 2 sha512),
//!   length u64 BE, sha2's state` (114 bytes for sha256, 218 for sha512).
//! - The length (bytes hashed) is also implied by sha2's state; decoding checks that the two
//!   agree, so a record whose length was edited apart from its state is refused.
//! - Decoding bad bytes is `StorageError::Corrupt`, never a panic.
//! - blake3 is not resumable here: its uploads hash the assembled object once at finish.
use sha2::digest::common::hazmat::SerializableState;
use sha2::Digest as _;

use crate::error::StorageError;
use crate::oci::{Algorithm, Digest};

const VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 1 + 8;
/// sha2's layout (pinned by a test): the core's state words and block count, then the partial
/// block's length (one byte) and the block.
const SHA256_CORE_LEN: usize = 32 + 8;
const SHA256_BLOCK_LEN: u64 = 64;
const SHA512_CORE_LEN: usize = 64 + 16;
const SHA512_BLOCK_LEN: u64 = 128;

/// A running digest of a resumable algorithm, with the number of bytes it has hashed.
#[derive(Clone)]
pub struct HashState {
    hasher: Running,
    len: u64,
}

#[derive(Clone)]
enum Running {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl HashState {
    /// A fresh state, or `None` for an algorithm whose state cannot be saved (blake3).
    pub fn new(algorithm: Algorithm) -> Option<HashState> {
        let hasher = match algorithm {
            Algorithm::Sha256 => Running::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Running::Sha512(sha2::Sha512::new()),
            Algorithm::Blake3 => return None,
        };
        Some(HashState { hasher, len: 0 })
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.hasher {
            Running::Sha256(_) => Algorithm::Sha256,
            Running::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.hasher {
            Running::Sha256(hasher) => hasher.update(bytes),
            Running::Sha512(hasher) => hasher.update(bytes),
        }
        self.len += bytes.len() as u64;
    }

    /// The digest of everything hashed (the state itself is left as it was).
    pub fn digest(&self) -> Digest {
        let (algorithm, hex) = match &self.hasher {
            Running::Sha256(hasher) => (Algorithm::Sha256, hex::encode(hasher.clone().finalize())),
            Running::Sha512(hasher) => (Algorithm::Sha512, hex::encode(hasher.clone().finalize())),
        };
        format!("{algorithm}:{hex}")
            .parse()
            .expect("a finished sha2 hash is a well-formed digest")
    }

    /// The state as bytes (see the module rules for the layout).
    pub fn encode(&self) -> Vec<u8> {
        let (tag, state) = match &self.hasher {
            Running::Sha256(hasher) => (1u8, hasher.serialize().to_vec()),
            Running::Sha512(hasher) => (2u8, hasher.serialize().to_vec()),
        };
        let mut out = Vec::with_capacity(HEADER_LEN + state.len());
        out.push(VERSION);
        out.push(tag);
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&state);
        out
    }

    /// The state [`HashState::encode`] wrote; anything else is `Corrupt`.
    pub fn decode(bytes: &[u8]) -> Result<HashState, StorageError> {
        let corrupt =
            |why: &str| StorageError::Corrupt(format!("hash state ({} bytes): {why}", bytes.len()));
        let (header, state) = bytes
            .split_at_checked(HEADER_LEN)
            .ok_or_else(|| corrupt("too short"))?;
        if header[0] != VERSION {
            return Err(corrupt(&format!("unknown version {}", header[0])));
        }
        let len = u64::from_be_bytes(header[2..].try_into().expect("8 bytes"));
        let (hasher, implied_len) = match header[1] {
            1 => {
                let serialized = state.try_into().map_err(|_| corrupt("bad sha256 length"))?;
                let hasher = sha2::Sha256::deserialize(serialized)
                    .map_err(|_| corrupt("sha2 refused the sha256 state"))?;
                let implied = implied_len(state, SHA256_CORE_LEN, 8, SHA256_BLOCK_LEN);
                (Running::Sha256(hasher), implied)
            }
            2 => {
                let serialized = state.try_into().map_err(|_| corrupt("bad sha512 length"))?;
                let hasher = sha2::Sha512::deserialize(serialized)
                    .map_err(|_| corrupt("sha2 refused the sha512 state"))?;
                let implied = implied_len(state, SHA512_CORE_LEN, 16, SHA512_BLOCK_LEN);
                (Running::Sha512(hasher), implied)
            }
            other => return Err(corrupt(&format!("unknown algorithm {other}"))),
        };
        if implied_len != Some(len) {
            return Err(corrupt(&format!(
                "length {len} disagrees with the state's {implied_len:?}"
            )));
        }
        Ok(HashState { hasher, len })
    }
}

/// The bytes a serialized sha2 state has hashed: whole blocks (a little-endian counter at the
/// end of the core, of `counter_len` bytes) times the block size, plus the partial block's
/// length (the byte after the core). `None` if that overflows a u64.
fn implied_len(state: &[u8], core_len: usize, counter_len: usize, block_len: u64) -> Option<u64> {
    let counter = &state[core_len - counter_len..core_len];
    let mut blocks = [0u8; 16];
    blocks[..counter_len].copy_from_slice(counter);
    let blocks = u64::try_from(u128::from_le_bytes(blocks)).ok()?;
    blocks
        .checked_mul(block_len)?
        .checked_add(u64::from(state[core_len]))
}

impl std::fmt::Debug for HashState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("HashState")
            .field("algorithm", &self.algorithm())
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Hashes `data` in pieces cut at `cuts`, saving the state after each piece and resuming
    /// it from bytes in a fresh value (another node).
    fn resumed(algorithm: Algorithm, data: &[u8], cuts: &[usize]) -> HashState {
        let mut cuts = cuts
            .iter()
            .map(|cut| cut % (data.len() + 1))
            .collect::<Vec<_>>();
        cuts.sort_unstable();
        let mut state = HashState::new(algorithm).expect("resumable");
        let mut at = 0;
        for cut in cuts.into_iter().chain([data.len()]) {
            state.update(&data[at..cut]);
            at = cut;
            let saved = state.encode();
            state = HashState::decode(&saved).expect("decodes what it encoded");
            assert_eq!(state.len(), cut as u64);
        }
        state
    }

    proptest! {
        #[test]
        fn a_state_moved_between_nodes_gives_the_same_digest(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            sha512 in any::<bool>(),
        ) {
            let algorithm = if sha512 { Algorithm::Sha512 } else { Algorithm::Sha256 };
            let state = resumed(algorithm, &data, &cuts);
            prop_assert_eq!(state.digest(), Digest::of(algorithm, &data));
            prop_assert_eq!(state.len(), data.len() as u64);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = HashState::decode(&bytes);
        }
    }

    #[test]
    fn large_random_splits_across_many_resumes() {
        // A seeded generator (xorshift), so a failure repeats.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let data: Vec<u8> = (0..3_000_000).map(|_| next() as u8).collect();
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let cuts: Vec<usize> = (0..40).map(|_| next() as usize).collect();
            assert_eq!(
                resumed(algorithm, &data, &cuts).digest(),
                Digest::of(algorithm, &data)
            );
        }
    }

    #[test]
    fn layout_and_sizes_are_pinned() {
        let mut state = HashState::new(Algorithm::Sha256).expect("resumable");
        state.update(&[7u8; 130]);
        let bytes = state.encode();
        // The partial block (eager: never a whole block) is its length and 63 bytes.
        assert_eq!(bytes.len(), HEADER_LEN + SHA256_CORE_LEN + 64);
        assert_eq!(bytes.len(), 114);
        assert_eq!(&bytes[..2], &[VERSION, 1]);
        assert_eq!(bytes[2..10], 130u64.to_be_bytes());
        // Two whole blocks, two bytes in the partial block.
        assert_eq!(bytes[HEADER_LEN + 32..HEADER_LEN + 40], 2u64.to_le_bytes());
        assert_eq!(bytes[HEADER_LEN + SHA256_CORE_LEN], 2);

        let mut state = HashState::new(Algorithm::Sha512).expect("resumable");
        state.update(&[7u8; 300]);
        assert_eq!(state.encode().len(), HEADER_LEN + SHA512_CORE_LEN + 128);
        assert_eq!(state.encode().len(), 218);
        assert!(HashState::new(Algorithm::Blake3).is_none());
    }

    #[test]
    fn bad_bytes_are_corrupt() {
        let mut state = HashState::new(Algorithm::Sha256).expect("resumable");
        state.update(b"some bytes");
        let good = state.encode();
        let mut cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            good[..5].to_vec(),
            good[..good.len() - 1].to_vec(),
        ];
        let mut edit = |at: usize, value: u8| {
            let mut bad = good.clone();
            bad[at] = value;
            cases.push(bad);
        };
        edit(0, 2); // version
        edit(1, 9); // algorithm
        edit(1, 2); // sha512 tag on a sha256 state (wrong length)
        edit(9, 11); // length disagrees with the state
        edit(HEADER_LEN + SHA256_CORE_LEN, 64); // partial block as long as a block
        edit(good.len() - 1, 1); // a byte past the partial block's end
        let mut longer = good.clone();
        longer.push(0);
        cases.push(longer);
        for bad in cases {
            assert!(
                matches!(HashState::decode(&bad), Err(StorageError::Corrupt(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            HashState::decode(&good).expect("good").digest(),
            Digest::of(Algorithm::Sha256, b"some bytes")
        );
    }
}
