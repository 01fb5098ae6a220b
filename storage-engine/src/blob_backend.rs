//! `BlobBackend`: where committed blobs live (SHARED.md D3), and the engine's narrow seam over
//! it: install a finished upload, size/read/verify a blob, delete it (GC), list them (fsck,
//! GC's orphan pass).
//!
//! - `Files`: today's store (blobstore.rs, io.rs) under `root/blobs`, unchanged. Every call
//!   here is one `match` on the variant before the same code as before the seam existed.
//! - `S3`: the bucket (s3/). Uploads are still staged in local files (`root/uploads`) while
//!   they are open; `install_staged` sends a verified staged file to the bucket (one PUT
//!   below [`PART_BYTES`], else a multipart upload of [`PART_BYTES`] parts streamed from the
//!   file, never the whole blob in memory) and then removes the file. The caller commits the
//!   index record only after that returned: a blob record never names an absent object.
//! - S3 calls run on the calling thread's runtime (one client per runtime and thread,
//!   s3/client.rs); file reads for them go to tokio's blocking pool.
//! - Cancel: an install dropped mid-way leaves at most a multipart upload (no record names
//!   it; a bucket lifecycle rule for incomplete uploads removes it) or a complete object
//!   without a record (an orphan, GC's orphan pass removes it); the staged file stays until
//!   the session's cleanup.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::engine::{Engine, Inner};
use crate::error::StorageError;
use crate::io::Io;
use crate::oci::{Digest, UploadId};
use crate::s3::{BlobRead, ListedBlob, PartRecord, S3Blobs};
use crate::scrub::{check_blob, Damage};

/// Blobs below this size go to the bucket in one PUT; larger ones in parts of this size (or
/// larger, for blobs over `PART_BYTES * MAX_PARTS`).
pub const PART_BYTES: u64 = 8 << 20;

/// Where committed blobs live.
pub(crate) enum BlobBackend {
    Files,
    S3(S3Blobs),
}

/// Where to read a blob's bytes from (`Engine::blob_source`).
#[derive(Debug)]
pub enum BlobSource {
    /// A file under the store's root: read it directly (sendfile, io_uring).
    File(PathBuf),
    /// An object in the bucket.
    S3(S3Blob),
}

/// One blob in the bucket.
#[derive(Clone, Debug)]
pub struct S3Blob {
    blobs: S3Blobs,
    digest: Digest,
}

impl S3Blob {
    /// Opens a GET of all of it or of the inclusive range `(first, last)` (within its size).
    /// `None` if the object is absent.
    pub async fn read(&self, range: Option<(u64, u64)>) -> Result<Option<BlobRead>, StorageError> {
        self.blobs.read(&self.digest, range).await
    }

    /// A URL that lets its holder GET the blob for `expires` without credentials.
    pub async fn presign_get(&self, expires: Duration) -> Result<url::Url, StorageError> {
        self.blobs.presign_get(&self.digest, expires).await
    }
}

impl Engine {
    /// Where to read a committed blob from. Only meaningful after `stat_blob` said it is
    /// linked. No I/O.
    pub fn blob_source(&self, digest: &Digest) -> BlobSource {
        match &self.inner.blobs {
            BlobBackend::Files => BlobSource::File(self.inner.store.blob_path(digest)),
            BlobBackend::S3(blobs) => BlobSource::S3(S3Blob {
                blobs: blobs.clone(),
                digest: digest.clone(),
            }),
        }
    }

    /// The whole blob when it is stored and at most `max_bytes` long (configs, small layers:
    /// lint, trust, the UI), else `None`. Files are read on the blocking pool when a tokio
    /// runtime runs this.
    pub async fn read_blob_bytes(
        &self,
        digest: &Digest,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        match &self.inner.blobs {
            BlobBackend::Files => {
                let path = self.inner.store.blob_path(digest);
                let read = move || read_file_at_most(&path, max_bytes);
                match tokio::runtime::Handle::try_current() {
                    Ok(_) => tokio::task::spawn_blocking(read).await.map_err(|error| {
                        StorageError::Io(std::io::Error::other(format!("blob read task: {error}")))
                    })?,
                    Err(_) => read(),
                }
            }
            BlobBackend::S3(blobs) => {
                let Some(read) = blobs.read(digest, None).await? else {
                    return Ok(None);
                };
                if read.size() > max_bytes {
                    return Ok(None);
                }
                Ok(Some(read.into_bytes().await?))
            }
        }
    }

    /// Whether committed blobs live in a bucket.
    pub fn blobs_in_s3(&self) -> bool {
        matches!(self.inner.blobs, BlobBackend::S3(_))
    }
}

fn read_file_at_most(path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>, StorageError> {
    let length = match std::fs::metadata(path) {
        Ok(metadata) => metadata.len(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    if length > max_bytes {
        return Ok(None);
    }
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error.into()),
    }
}

impl Inner {
    /// The blob's file, when blobs are files.
    pub(crate) fn blob_file(&self, digest: &Digest) -> Option<PathBuf> {
        match &self.blobs {
            BlobBackend::Files => Some(self.store.blob_path(digest)),
            BlobBackend::S3(_) => None,
        }
    }

    /// Puts the verified staged file of `size` bytes in place as blob `digest` (files: the
    /// rename of blobstore.rs; S3: see the module comment, then the staged file is removed).
    /// The caller holds the digest's lock and commits the record after this returns.
    pub(crate) async fn install_staged(
        &self,
        io: &Io,
        staged: &Path,
        digest: &Digest,
        size: u64,
        durable: bool,
    ) -> Result<(), StorageError> {
        match &self.blobs {
            BlobBackend::Files => Ok(self.store.install(io, staged, digest, durable).await?),
            BlobBackend::S3(blobs) => {
                send_file(blobs, staged, digest, size).await?;
                io.remove_file(staged).await?;
                Ok(())
            }
        }
    }

    /// The S3 half of `install_staged` alone, as a `Send` future (sync's imports commit from
    /// any runtime); the caller removes the staged file.
    pub(crate) async fn send_staged(
        &self,
        staged: &Path,
        digest: &Digest,
        size: u64,
    ) -> Result<(), StorageError> {
        let blobs = self.s3().expect("called for blobs in S3");
        send_file(blobs, staged, digest, size).await
    }

    /// Deletes a blob's bytes after its record was deleted (GC). Absent is fine.
    pub(crate) async fn delete_blob_bytes(&self, digest: &Digest) -> Result<(), StorageError> {
        match &self.blobs {
            BlobBackend::Files => Ok(self.io.remove_file_now(&self.store.blob_path(digest))?),
            BlobBackend::S3(blobs) => blobs.delete(digest).await,
        }
    }

    /// An image config of `size` bytes (search): `None` when it is absent, too large for
    /// search or of another size. Files are read on the blocking pool.
    pub(crate) async fn read_config(&self, digest: &Digest, size: u64) -> Option<Vec<u8>> {
        match &self.blobs {
            BlobBackend::Files => {
                let path = self.store.blob_path(digest);
                tokio::task::spawn_blocking(move || {
                    crate::search::backfill::read_config(&path, size)
                })
                .await
                .ok()
                .flatten()
            }
            BlobBackend::S3(blobs) => {
                if size > crate::search::meta::CONFIG_MAX_BYTES {
                    return None;
                }
                let read = blobs.read(digest, None).await.ok()??;
                if read.size() != size {
                    return None;
                }
                read.into_bytes().await.ok()
            }
        }
    }

    /// Checks one stored blob: present, `size` bytes, content hashing to `digest` (fsck,
    /// scrub). Files: blocking (as `check_blob`); S3: one streamed GET, hashed here.
    pub(crate) async fn check_stored_blob(&self, digest: &Digest, size: u64) -> Result<(), Damage> {
        match &self.blobs {
            BlobBackend::Files => check_blob(&self.store.blob_path(digest), size, digest),
            BlobBackend::S3(blobs) => check_object(blobs, digest, size).await,
        }
    }

    /// The bucket, when blobs live in one.
    pub(crate) fn s3(&self) -> Option<&S3Blobs> {
        match &self.blobs {
            BlobBackend::Files => None,
            BlobBackend::S3(blobs) => Some(blobs),
        }
    }
}

/// Every object under the bucket's `blobs/`, page by page (fsck, GC's orphan pass).
pub(crate) async fn list_all(blobs: &S3Blobs) -> Result<Vec<ListedBlob>, StorageError> {
    let mut all: Vec<ListedBlob> = Vec::new();
    loop {
        let after = all.last().map(|listed| listed.name.clone());
        let page = blobs
            .list_blobs(after.as_deref(), crate::s3::MAX_LIST_PAGE)
            .await?;
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}

async fn check_object(blobs: &S3Blobs, digest: &Digest, size: u64) -> Result<(), Damage> {
    let unreadable = |error: StorageError| Damage::Unreadable(error.to_string());
    let Some(mut read) = blobs.read(digest, None).await.map_err(unreadable)? else {
        return Err(Damage::Missing);
    };
    if read.size() != size {
        return Err(Damage::Size {
            expected: size,
            actual: read.size(),
        });
    }
    let mut hasher = digest.algorithm().hasher();
    while let Some(chunk) = read.next_chunk().await {
        hasher.update(&chunk.map_err(unreadable)?);
    }
    let actual = hasher.finalize();
    match actual == *digest {
        true => Ok(()),
        false => Err(Damage::Content { actual }),
    }
}

/// `len` bytes of the file at `offset`, read on the blocking pool.
async fn read_chunk(
    file: &Arc<std::fs::File>,
    offset: u64,
    len: u64,
) -> Result<Bytes, StorageError> {
    use std::os::unix::fs::FileExt as _;
    let file = Arc::clone(file);
    let len = usize::try_from(len).expect("a part fits in memory");
    tokio::task::spawn_blocking(move || {
        let mut buffer = vec![0; len];
        file.read_exact_at(&mut buffer, offset)?;
        Ok::<_, std::io::Error>(Bytes::from(buffer))
    })
    .await
    .map_err(|error| StorageError::Io(std::io::Error::other(format!("staged read task: {error}"))))?
    .map_err(StorageError::from)
}

/// Sends a verified staged file of `size` bytes to the bucket as blob `digest`.
async fn send_file(
    blobs: &S3Blobs,
    staged: &Path,
    digest: &Digest,
    size: u64,
) -> Result<(), StorageError> {
    let file = Arc::new(std::fs::File::open(staged)?);
    if size < PART_BYTES {
        let bytes = read_chunk(&file, 0, size).await?;
        blobs.put_verified(digest, bytes).await?;
        return Ok(());
    }
    // Already there (same digest, same bytes): nothing to send.
    if blobs.exists(digest).await?.is_some() {
        return Ok(());
    }
    let max_parts = u64::from(crate::s3::MAX_PARTS);
    let part_bytes = PART_BYTES.max(size.div_ceil(max_parts));
    let upload = blobs.begin(&UploadId::random()).await?;
    let sent = async {
        let mut parts: Vec<PartRecord> = Vec::new();
        let mut offset = 0;
        while offset < size {
            let len = part_bytes.min(size - offset);
            let bytes = read_chunk(&file, offset, len).await?;
            let number = u32::try_from(parts.len() + 1).expect("at most MAX_PARTS parts");
            parts.push(blobs.put_part(&upload, number, bytes).await?);
            offset += len;
        }
        let assembled = blobs.assemble(&upload, &parts).await?;
        blobs.install(upload.upload_id(), digest, assembled).await
    }
    .await;
    if sent.is_err() {
        if let Err(error) = blobs.abort(&upload).await {
            tracing::warn!(%digest, %error, "aborting a failed multipart upload");
        }
    }
    sent
}
