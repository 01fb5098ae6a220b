//! `BlobImport`: a blob whose bytes the caller fetched elsewhere (sync's pull-through), written
//! from any thread, readable while it is written, and committed only once its digest
//! verifies.
//!
//! Rules:
//! * The caller's thread hashes and writes (`write`): a plain buffered `pwrite` into a staged
//!   file under `uploads/`, so the bytes land in the page cache (the blob's first readers
//!   hit memory) and no shard thread spends time on them.
//! * `reader()` hands out the staged file's descriptor: others may read every byte written so
//!   far while the writer goes on; it stays valid after the commit renames the file.
//! * `verify` checks the digest: a mismatch deletes the staged bytes. Only a `VerifiedImport`
//!   can be committed, with the blob commit protocol (storage-engine/DESIGN.md): fsync,
//!   rename into blobs/, fsync the directory, one synced WriteBatch. The commit runs its file
//!   steps on the blocking pool, so it works on any tokio runtime.
//! * An import has no session record: dropping it uncommitted deletes its staged file, and a
//!   crash leaves a staged file without a record, which the next open removes.
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::engine::{Engine, Inner};
use crate::error::StorageError;
use crate::io::FaultPoint;
use crate::oci::{Digest, Hasher, RepoName, UploadId};

/// A blob being written by an importer; see the module rules.
pub struct BlobImport {
    staged: Staged,
    file: Arc<std::fs::File>,
    hasher: Hasher,
    expected: Digest,
    written: u64,
}

/// A fully written import whose digest verified.
pub struct VerifiedImport {
    staged: Staged,
    file: Arc<std::fs::File>,
    expected: Digest,
    size: u64,
}

/// The staged file, removed on drop unless it was installed.
struct Staged {
    inner: Arc<Inner>,
    path: PathBuf,
    installed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.installed {
            let _ = self.inner.io.remove_file_now(&self.path);
        }
    }
}

impl std::fmt::Debug for BlobImport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("BlobImport")
            .field("expected", &self.expected.to_string())
            .field("written", &self.written)
            .finish()
    }
}

impl Engine {
    /// Starts importing the blob `expected`: creates its staged file. Blocking (one create).
    pub fn begin_import(&self, expected: &Digest) -> Result<BlobImport, StorageError> {
        self.inner.writable()?;
        let path = self.inner.store.upload_path(&UploadId::random());
        self.inner.io.fault(FaultPoint::StagedWrite)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(BlobImport {
            staged: Staged {
                inner: Arc::clone(&self.inner),
                path,
                installed: false,
            },
            file: Arc::new(file),
            hasher: expected.algorithm().hasher(),
            expected: expected.clone(),
            written: 0,
        })
    }
}

impl BlobImport {
    /// Hashes `bytes` and appends them. Blocking: a page-cache write.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.staged.inner.io.fault(FaultPoint::StagedWrite)?;
        self.hasher.update(bytes);
        self.file.write_all_at(bytes, self.written)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The staged file, for reading what is written so far (`pread`).
    pub fn reader(&self) -> Arc<std::fs::File> {
        Arc::clone(&self.file)
    }

    /// Checks the digest of everything written. On a mismatch the staged bytes are deleted.
    pub fn verify(self) -> Result<VerifiedImport, StorageError> {
        let actual = self.hasher.finalize();
        if actual != self.expected {
            return Err(StorageError::DigestMismatch {
                expected: self.expected,
                actual,
            });
        }
        Ok(VerifiedImport {
            staged: self.staged,
            file: self.file,
            expected: self.expected,
            size: self.written,
        })
    }
}

impl VerifiedImport {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Commits the blob and links it into `repo`: durable on return (when the engine
    /// commits). Error or cancel: before the rename nothing changed (the staged file is
    /// removed); after it the file is an orphan until linked (reclaimed by GC).
    pub async fn commit(mut self, repo: &RepoName) -> Result<u64, StorageError> {
        let inner = Arc::clone(&self.staged.inner);
        let durable = inner.commit;
        let mut digest_guard = inner.digest_guard(&self.expected).await?;
        if inner.s3().is_some() {
            // Blobs in a bucket: sent from the staged file on this runtime (the S3 calls are
            // `Send`-free of io_uring); the staged file is removed once the object exists.
            inner
                .send_staged(&self.staged.path, &self.expected, self.size)
                .await?;
            // Staged dropped as not installed removes the staged file: the object exists.
            inner
                .link_blob(repo, &self.expected, self.size, None, &mut digest_guard)
                .await?;
            drop(digest_guard);
            inner
                .config_arrived(repo, &self.expected, self.size)
                .await?;
            return Ok(self.size);
        }
        // The file steps (fsync, rename, directory fsync) on one blocking-pool thread, with
        // the thread backend: the engine's async file ops are not `Send` (io_uring's are
        // thread-bound), and an import may commit from any runtime.
        let (file, path, expected) = (
            Arc::clone(&self.file),
            self.staged.path.clone(),
            self.expected.clone(),
        );
        let steps = Arc::clone(&inner);
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            runtime.block_on(async {
                let io = steps.io.portable();
                if durable {
                    io.sync_std_file(&path, file).await?;
                }
                // An error leaves the staged file (if still there) to the drop.
                steps.store.install(&io, &path, &expected, durable).await
            })
        })
        .await
        .map_err(|error| StorageError::Index(format!("blob import commit task: {error}")))??;
        self.staged.installed = true;
        inner
            .link_blob(repo, &self.expected, self.size, None, &mut digest_guard)
            .await?;
        drop(digest_guard);
        inner
            .config_arrived(repo, &self.expected, self.size)
            .await?;
        Ok(self.size)
    }
}
