//! Test data: random bytes generated once per run, and distinct blobs cut from them.
//!
//! Each blob size has one random base buffer. Blob `(salt, k)` of that size is the base with
//! its first 16 bytes replaced by `salt` and `k`, so every push sends new content (a registry
//! cannot answer from dedupe) while the run holds only one buffer per size. The body is the
//! changed first page plus zero-copy slices of the base. Digests of the blobs a test pushes
//! are computed before the test is timed (on all cores), so the timed part measures the
//! registry, not the client's hashing.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_storage::oci::{Algorithm, Digest};
use bytes::{Bytes, BytesMut};
use rand::RngCore;

/// Body chunk size for uploads (1 MiB, what clients such as containerd use).
pub const CHUNK: usize = 1024 * 1024;
const FIRST_PAGE: usize = 4096;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;

/// One random buffer per blob size, shared by every blob of that size.
#[derive(Clone, Default)]
pub struct TestData {
    bases: BTreeMap<u64, Bytes>,
}

/// A blob as a list of chunks with its digest.
#[derive(Clone, Debug)]
pub struct Blob {
    pub chunks: Vec<Bytes>,
    pub digest: Digest,
    pub size: u64,
}

impl TestData {
    /// Random base buffers for each size in `sizes`.
    pub fn generate(sizes: impl IntoIterator<Item = u64>) -> TestData {
        let mut rng = rand::rng();
        let bases = sizes
            .into_iter()
            .map(|size| {
                let mut buffer = vec![0u8; size as usize];
                rng.fill_bytes(&mut buffer);
                (size, Bytes::from(buffer))
            })
            .collect();
        TestData { bases }
    }

    pub fn sizes(&self) -> impl Iterator<Item = u64> + '_ {
        self.bases.keys().copied()
    }

    /// The chunks of blob `(salt, k)` of `size` bytes (no digest).
    pub fn chunks(&self, size: u64, salt: u64, k: u64) -> Vec<Bytes> {
        let base = self
            .bases
            .get(&size)
            .unwrap_or_else(|| panic!("no test data of {size} bytes was generated"));
        let first = FIRST_PAGE.min(base.len());
        let mut page = BytesMut::from(&base[..first]);
        let mut stamp = [0u8; 16];
        stamp[..8].copy_from_slice(&salt.to_le_bytes());
        stamp[8..].copy_from_slice(&k.to_le_bytes());
        let stamped = stamp.len().min(first);
        page[..stamped].copy_from_slice(&stamp[..stamped]);
        let mut chunks = vec![page.freeze()];
        let mut offset = first;
        while offset < base.len() {
            let end = (offset + CHUNK).min(base.len());
            chunks.push(base.slice(offset..end));
            offset = end;
        }
        chunks
    }

    /// Blob `(salt, k)` with its sha256 digest.
    pub fn blob(&self, size: u64, salt: u64, k: u64) -> Blob {
        let chunks = self.chunks(size, salt, k);
        let mut hasher = Algorithm::Sha256.hasher();
        for chunk in &chunks {
            hasher.update(chunk);
        }
        Blob {
            chunks,
            digest: hasher.finalize(),
            size,
        }
    }

    /// Blobs `(salt, k)` for every `k` in `ks`, hashed on all cores.
    pub fn blobs(&self, size: u64, salt: u64, ks: &[u64]) -> Vec<Blob> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let per_thread = ks.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = ks
                .chunks(per_thread)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|&k| self.blob(size, salt, k))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|handle| handle.join().expect("hashing thread panicked"))
                .collect()
        })
    }
}

/// A blob pool shared by the workers of one test: index `k` is the k-th request's blob.
pub type BlobPool = Arc<Vec<Blob>>;

/// A small JSON config blob, unique per `(salt, k)`.
pub fn config_blob(salt: u64, k: u64) -> Blob {
    let body = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"config":{{"Labels":{{"berth.bench":"{salt}-{k}"}}}}}}"#
    );
    let bytes = Bytes::from(body);
    let mut hasher = Algorithm::Sha256.hasher();
    hasher.update(&bytes);
    Blob {
        size: bytes.len() as u64,
        digest: hasher.finalize(),
        chunks: vec![bytes],
    }
}

/// An OCI image manifest with one config and one layer.
pub fn image_manifest(config: &Blob, layer: &Blob) -> Bytes {
    let document = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.digest.to_string(),
            "size": config.size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer.digest.to_string(),
            "size": layer.size,
        }],
    });
    Bytes::from(serde_json::to_vec(&document).expect("a JSON value serializes"))
}

/// Human size: 1MB for 1 MiB (zb's names), 4KiB below a MiB.
pub fn size_label(size: u64) -> String {
    if size >= MIB && size.is_multiple_of(MIB) {
        format!("{}MB", size / MIB)
    } else {
        format!("{}KiB", size / KIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_differ_by_salt_and_index_and_digests_match_their_bytes() {
        let data = TestData::generate([3 * MIB + 5]);
        let a = data.blob(3 * MIB + 5, 1, 0);
        let b = data.blob(3 * MIB + 5, 1, 1);
        let c = data.blob(3 * MIB + 5, 2, 0);
        assert_ne!(a.digest, b.digest);
        assert_ne!(a.digest, c.digest);
        let joined: Vec<u8> = a.chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(joined.len() as u64, 3 * MIB + 5);
        let mut hasher = Algorithm::Sha256.hasher();
        hasher.update(&joined);
        assert_eq!(hasher.finalize(), a.digest);
        let parallel = data.blobs(3 * MIB + 5, 1, &[0, 1]);
        assert_eq!(parallel[0].digest, a.digest);
        assert_eq!(parallel[1].digest, b.digest);
    }
}
