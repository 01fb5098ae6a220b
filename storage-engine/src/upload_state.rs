//! `SharedState`: what an upload session whose bytes live in the bucket keeps in the index
//! (`Cf::UploadState`, beside its `Uploads` record), so that any node can carry it on
//! (SHARED.md D4; the sessions themselves are upload_shared.rs).
//!
//! Layout (big-endian integers; `blob32` = u32 length + bytes; `str16` = u16 length + UTF-8):
//! `version u8 = 1, updated_ms u64, hash blob32 (hashstate.rs), multipart blob32 (empty: none
//! begun; else s3::S3Upload), parts blob32 (s3::PartRecord list), tail u8 (0 none, 1: name
//! str16, len u64), lease u8 (0 none, 1: node u64, writer u64, renewed_ms u64)`.
//!
//! Rules: the hash state covers exactly the parts' and the tail's bytes (decoding checks it),
//! so the session's offset is that sum. Bad bytes are `StorageError::Corrupt`, never a panic.
use crate::error::StorageError;
use crate::hashstate::HashState;
use crate::oci::Algorithm;
use crate::s3::{PartRecord, S3Upload};

const VERSION: u8 = 1;

/// Which writer holds a session: a node and one writer on it, renewed at every part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) node: u64,
    pub(crate) writer: u64,
    pub(crate) renewed_ms: u64,
}

/// One session's progress.
#[derive(Clone, Debug)]
pub(crate) struct SharedState {
    /// Last change (start, a part, a persist): what the expiry of idle sessions reads.
    pub(crate) updated_ms: u64,
    /// sha256 of the parts' bytes followed by the tail's.
    pub(crate) hash: HashState,
    pub(crate) multipart: Option<S3Upload>,
    pub(crate) parts: Vec<PartRecord>,
    /// The staging object holding the bytes received after the last part: name and length.
    pub(crate) tail: Option<(String, u64)>,
    pub(crate) lease: Option<Lease>,
}

impl SharedState {
    /// A session that has received nothing.
    pub(crate) fn new(now_ms: u64) -> SharedState {
        SharedState {
            updated_ms: now_ms,
            hash: HashState::new(Algorithm::Sha256).expect("sha256 is resumable"),
            multipart: None,
            parts: Vec::new(),
            tail: None,
            lease: None,
        }
    }

    /// Bytes received and recorded: the parts', then the tail's.
    pub(crate) fn offset(&self) -> u64 {
        self.parts_len() + self.tail.as_ref().map_or(0, |(_, len)| *len)
    }

    pub(crate) fn parts_len(&self) -> u64 {
        self.parts.iter().map(|part| part.len).sum()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.parts.len() * 64);
        out.push(VERSION);
        out.extend_from_slice(&self.updated_ms.to_be_bytes());
        push_blob(&mut out, &self.hash.encode());
        let multipart = self.multipart.as_ref().map(S3Upload::encode);
        push_blob(&mut out, multipart.as_deref().unwrap_or_default());
        push_blob(&mut out, &PartRecord::encode_list(&self.parts));
        match &self.tail {
            None => out.push(0),
            Some((name, len)) => {
                out.push(1);
                let name_len = u16::try_from(name.len()).expect("tail names are short");
                out.extend_from_slice(&name_len.to_be_bytes());
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        match &self.lease {
            None => out.push(0),
            Some(lease) => {
                out.push(1);
                for value in [lease.node, lease.writer, lease.renewed_ms] {
                    out.extend_from_slice(&value.to_be_bytes());
                }
            }
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<SharedState, StorageError> {
        let bad = |why: &str| {
            StorageError::Corrupt(format!("upload state ({} bytes): {why}", bytes.len()))
        };
        let mut reader = Reader(bytes);
        if reader.take(1).ok_or_else(|| bad("empty"))? != [VERSION] {
            return Err(bad("unknown version"));
        }
        let updated_ms = reader.u64().ok_or_else(|| bad("short"))?;
        let hash = HashState::decode(reader.blob().ok_or_else(|| bad("short hash"))?)?;
        let multipart = match reader.blob().ok_or_else(|| bad("short multipart"))? {
            [] => None,
            encoded => Some(S3Upload::decode(encoded)?),
        };
        let parts = PartRecord::decode_list(reader.blob().ok_or_else(|| bad("short parts"))?)?;
        let tail = match reader.take(1).ok_or_else(|| bad("short tail"))? {
            [0] => None,
            [1] => {
                let name_len = reader.take(2).ok_or_else(|| bad("short tail"))?;
                let name_len = usize::from(u16::from_be_bytes([name_len[0], name_len[1]]));
                let name = reader.take(name_len).ok_or_else(|| bad("short tail"))?;
                let name = std::str::from_utf8(name).map_err(|_| bad("tail name"))?;
                let len = reader.u64().ok_or_else(|| bad("short tail"))?;
                Some((name.to_owned(), len))
            }
            _ => return Err(bad("tail flag")),
        };
        let lease = match reader.take(1).ok_or_else(|| bad("short lease"))? {
            [0] => None,
            [1] => {
                let mut value = || reader.u64().ok_or_else(|| bad("short lease"));
                Some(Lease {
                    node: value()?,
                    writer: value()?,
                    renewed_ms: value()?,
                })
            }
            _ => return Err(bad("lease flag")),
        };
        if !reader.0.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let state = SharedState {
            updated_ms,
            hash,
            multipart,
            parts,
            tail,
            lease,
        };
        if state.hash.len() != state.offset() {
            return Err(bad(&format!(
                "the hash covers {} bytes, parts and tail {}",
                state.hash.len(),
                state.offset()
            )));
        }
        if !state.parts.is_empty() && state.multipart.is_none() {
            return Err(bad("parts without a multipart upload"));
        }
        Ok(state)
    }
}

fn push_blob(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("records are far below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(taken)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn blob(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().ok()?);
        self.take(usize::try_from(len).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SharedState {
        let mut state = SharedState::new(1_700_000_000_000);
        let part = vec![7u8; 100];
        state.hash.update(&part);
        state.hash.update(b"tail");
        state.multipart = Some(S3Upload::for_tests("multipart-id-1"));
        state.parts = vec![PartRecord {
            number: 1,
            etag: "\"etag1\"".into(),
            len: 100,
        }];
        state.tail = Some(("tail-00ff-1".into(), 4));
        state.lease = Some(Lease {
            node: 1,
            writer: 2,
            renewed_ms: 3,
        });
        state
    }

    #[test]
    fn round_trips() {
        let state = sample();
        let decoded = SharedState::decode(&state.encode()).expect("decode");
        assert_eq!(decoded.encode(), state.encode());
        assert_eq!(decoded.offset(), 104);
        assert_eq!(decoded.lease, state.lease);
        let fresh = SharedState::new(5);
        let decoded = SharedState::decode(&fresh.encode()).expect("decode");
        assert_eq!(
            (decoded.offset(), decoded.lease, decoded.tail),
            (0, None, None)
        );
    }

    #[test]
    fn refuses_bad_bytes_without_panicking() {
        let encoded = sample().encode();
        for cut in 0..encoded.len() {
            assert!(
                SharedState::decode(&encoded[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = encoded.clone();
        longer.push(0);
        assert!(SharedState::decode(&longer).is_err());
        // A tail length that disagrees with the hash state.
        let mut state = sample();
        state.tail = Some(("tail-00ff-1".into(), 5));
        assert!(SharedState::decode(&state.encode()).is_err());
        // Every single-byte change decodes or is refused, never panics.
        for at in 0..encoded.len() {
            let mut changed = encoded.clone();
            changed[at] ^= 0x5a;
            let _ = SharedState::decode(&changed);
        }
    }
}
