//! Content digests (`<algorithm>:<hex>`) and the hashers that produce them.
//!
//! Rules:
//! - One strict parser for every digest berth sees (URL, query, manifest descriptor, upstream
//!   response). It checks the image-spec grammar (`descriptor.md`), a total length of at most
//!   [`MAX_DIGEST_LEN`], then the registered algorithm and its exact lowercase-hex length.
//! - A well-formed digest of an algorithm berth does not register (`md5:`, `sha384:`,
//!   `foo+bar:`) is [`DigestError::UnsupportedAlgorithm`]; everything else that fails is
//!   [`DigestError::Malformed`]. Both map to `DIGEST_INVALID` on the wire.
//! - A parsed digest is safe to use as a path component: only `[a-z0-9]` reach the filesystem,
//!   see [`Digest::relative_path`].
//! - Serde goes through `FromStr`/`Display`, so a descriptor cannot smuggle in a bad digest.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// Longest digest string accepted, algorithm and separator included. sha512 needs 135.
pub const MAX_DIGEST_LEN: usize = 256;

/// The digest algorithms berth stores and verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
    Blake3,
}

impl Algorithm {
    /// Every registered algorithm, for iteration in tests and fsck.
    pub const ALL: [Algorithm; 3] = [Algorithm::Sha256, Algorithm::Sha512, Algorithm::Blake3];

    /// The name used before the `:` in a digest string.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
            Algorithm::Blake3 => "blake3",
        }
    }

    /// Length of the hex-encoded value.
    pub fn hex_len(&self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
            Algorithm::Blake3 => 64,
        }
    }

    /// A fresh hasher for this algorithm.
    pub fn hasher(&self) -> Hasher {
        let state = match self {
            Algorithm::Sha256 => HasherState::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => HasherState::Sha512(sha2::Sha512::new()),
            Algorithm::Blake3 => HasherState::Blake3(Box::new(blake3::Hasher::new())),
        };
        Hasher { state }
    }

    /// The registered algorithm with this exact name, if any.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|algorithm| algorithm.name() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a digest string was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DigestError {
    #[error(
        "malformed digest: expected <algorithm>:<lowercase hex> of the algorithm's exact length \
         (sha256 and blake3: 64 hex digits, sha512: 128), at most 256 characters"
    )]
    Malformed,
    #[error("unsupported digest algorithm {0:?}: supported are sha256, sha512 and blake3")]
    UnsupportedAlgorithm(String),
}

/// A validated digest: a registered algorithm and its lowercase hex value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: Box<str>,
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex value, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first two hex digits: the fan-out directory of the blob store.
    pub fn fanout(&self) -> &str {
        &self.hex[..2]
    }

    /// `<algorithm>/<fanout>/<hex>`: where this blob lives below the blob root. Contains
    /// exactly two `/` and only `[a-z0-9]` otherwise.
    pub fn relative_path(&self) -> String {
        format!("{}/{}/{}", self.algorithm.name(), self.fanout(), self.hex)
    }

    /// Digest of `bytes` with `algorithm`.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut hasher = algorithm.hasher();
        hasher.update(bytes);
        hasher.finalize()
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(input: &str) -> Result<Digest, DigestError> {
        if input.len() > MAX_DIGEST_LEN {
            return Err(DigestError::Malformed);
        }
        let (algorithm_name, encoded) = input.split_once(':').ok_or(DigestError::Malformed)?;
        if !is_algorithm_grammar(algorithm_name) || !is_encoded_grammar(encoded) {
            return Err(DigestError::Malformed);
        }
        let algorithm = Algorithm::from_name(algorithm_name)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm(algorithm_name.to_owned()))?;
        let lowercase_hex = encoded
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
        if encoded.len() != algorithm.hex_len() || !lowercase_hex {
            return Err(DigestError::Malformed);
        }
        Ok(Digest {
            algorithm,
            hex: encoded.into(),
        })
    }
}

/// `algorithm ::= component (separator component)*`, `component ::= [a-z0-9]+`,
/// `separator ::= [+._-]`.
fn is_algorithm_grammar(name: &str) -> bool {
    let mut previous_was_component_char = false;
    for byte in name.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' => previous_was_component_char = true,
            b'+' | b'.' | b'_' | b'-' if previous_was_component_char => {
                previous_was_component_char = false
            }
            _ => return false,
        }
    }
    previous_was_component_char
}

/// `encoded ::= [a-zA-Z0-9=_-]+`.
fn is_encoded_grammar(encoded: &str) -> bool {
    !encoded.is_empty()
        && encoded
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'=' | b'_' | b'-'))
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

super::serde_via_str!(Digest, "a digest such as sha256:<64 lowercase hex>");

/// Incremental hasher for one [`Algorithm`]. sha2 picks SHA-NI / AVX2 itself at run time.
#[derive(Clone)]
pub struct Hasher {
    state: HasherState,
}

#[derive(Clone)]
enum HasherState {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.state {
            HasherState::Sha256(state) => state.update(bytes),
            HasherState::Sha512(state) => state.update(bytes),
            HasherState::Blake3(state) => {
                state.update(bytes);
            }
        }
    }

    pub fn finalize(self) -> Digest {
        let algorithm = self.algorithm();
        let hex = match self.state {
            HasherState::Sha256(state) => hex::encode(state.finalize()),
            HasherState::Sha512(state) => hex::encode(state.finalize()),
            HasherState::Blake3(state) => hex::encode(state.finalize().as_bytes()),
        };
        Digest {
            algorithm,
            hex: hex.into(),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.state {
            HasherState::Sha256(_) => Algorithm::Sha256,
            HasherState::Sha512(_) => Algorithm::Sha512,
            HasherState::Blake3(_) => Algorithm::Blake3,
        }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn accepts_registered_digests() {
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        let blake3 = format!("blake3:{}", "0f".repeat(32));
        for (input, algorithm) in [
            (EMPTY_SHA256, Algorithm::Sha256),
            (sha512.as_str(), Algorithm::Sha512),
            (blake3.as_str(), Algorithm::Blake3),
        ] {
            let digest: Digest = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(digest.algorithm(), algorithm);
            assert_eq!(digest.to_string(), input);
        }
    }

    #[test]
    fn rejects_malformed_digests() {
        let hex64 = "a".repeat(64);
        let cases = [
            String::new(),
            "sha256".to_owned(),
            "sha256:".to_owned(),
            ":abc".to_owned(),
            "sha256:xyz".to_owned(),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}", "a".repeat(65)),
            format!("sha256:{}", "A".repeat(64)),
            format!("SHA256:{hex64}"),
            format!("sha256:{hex64}\n"),
            format!("sha256:{hex64} "),
            format!(" sha256:{hex64}"),
            format!("sha256:{}\0", "a".repeat(63)),
            "sha256:../../etc/passwd".to_owned(),
            "sha256:%2e%2e%2f".to_owned(),
            format!("sha256:{hex64}:{hex64}"),
            format!("sha512:{hex64}"),
            format!("blake3:{}", "a".repeat(128)),
            format!("sha256+:{hex64}"),
            format!("+sha256:{hex64}"),
            format!("sha..256:{hex64}"),
            format!("md5:{}", "a".repeat(300)),
            "x".repeat(10_000),
        ];
        for input in cases {
            assert_eq!(
                input.parse::<Digest>(),
                Err(DigestError::Malformed),
                "{input:?}"
            );
        }
    }

    #[test]
    fn distinguishes_unsupported_algorithms() {
        for (input, name) in [
            ("md5:d41d8cd98f00b204e9800998ecf8427e", "md5"),
            ("sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709", "sha1"),
            ("sha384:abc", "sha384"),
            ("foo+bar:ABC=_-", "foo+bar"),
            ("sha256.v2:abc", "sha256.v2"),
        ] {
            assert_eq!(
                input.parse::<Digest>(),
                Err(DigestError::UnsupportedAlgorithm(name.to_owned())),
                "{input}"
            );
        }
    }

    #[test]
    fn hashes_known_vectors() {
        assert_eq!(Digest::of(Algorithm::Sha256, b"").to_string(), EMPTY_SHA256);
        assert_eq!(
            Digest::of(Algorithm::Sha512, b"abc").hex(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(
            Digest::of(Algorithm::Blake3, b"").hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let mut hasher = Algorithm::Sha256.hasher();
        hasher.update(b"hello ");
        hasher.update(b"world");
        assert_eq!(hasher.algorithm(), Algorithm::Sha256);
        assert_eq!(
            hasher.finalize(),
            Digest::of(Algorithm::Sha256, b"hello world")
        );
    }

    #[test]
    fn derives_fanout_path() {
        let digest: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(digest.fanout(), "e3");
        assert_eq!(
            digest.relative_path(),
            format!("sha256/e3/{}", &EMPTY_SHA256[7..])
        );
    }

    #[test]
    fn serde_goes_through_the_parser() {
        let digest: Digest = serde_json::from_str(&format!("\"{EMPTY_SHA256}\"")).unwrap();
        assert_eq!(
            serde_json::to_string(&digest).unwrap(),
            format!("\"{EMPTY_SHA256}\"")
        );
        assert!(serde_json::from_str::<Digest>("\"sha256:../x\"").is_err());
        assert!(serde_json::from_str::<Digest>("42").is_err());
    }

    fn any_digest() -> impl Strategy<Value = (Algorithm, String)> {
        prop_oneof![
            "[0-9a-f]{64}".prop_map(|hex| (Algorithm::Sha256, hex)),
            "[0-9a-f]{128}".prop_map(|hex| (Algorithm::Sha512, hex)),
            "[0-9a-f]{64}".prop_map(|hex| (Algorithm::Blake3, hex)),
        ]
    }

    proptest! {
        #[test]
        fn round_trips((algorithm, hex) in any_digest()) {
            let text = format!("{}:{hex}", algorithm.name());
            let digest: Digest = text.parse().unwrap();
            prop_assert_eq!(digest.algorithm(), algorithm);
            prop_assert_eq!(digest.hex(), hex.as_str());
            prop_assert_eq!(digest.to_string(), text);
        }

        #[test]
        fn matches_the_spec_grammar(input in "[a-z0-9+._:-]{0,8}[a-zA-Z0-9=_:-]{0,70}") {
            let grammar = regex::Regex::new(
                "^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$").unwrap();
            match input.parse::<Digest>() {
                Ok(digest) => {
                    prop_assert!(grammar.is_match(&input));
                    prop_assert_eq!(digest.to_string(), input);
                }
                Err(DigestError::UnsupportedAlgorithm(_)) => prop_assert!(grammar.is_match(&input)),
                Err(DigestError::Malformed) => {
                    let registered = input.split_once(':').and_then(|(name, _)| Algorithm::from_name(name));
                    prop_assert!(!grammar.is_match(&input) || registered.is_some());
                }
            }
        }
    }
}
