//! `UploadWriter`: the exclusive writer of one upload session (sessions live in upload.rs).
//!
//! Bytes are hashed with sha256 as they arrive and gathered in a 1 MiB aligned buffer
//! written with O_DIRECT (direct.rs); `persist` (PATCH), `finish` (the blob commit protocol,
//! storage-engine/DESIGN.md) and `abandon` also write the unaligned tail. A writer that saw a
//! failed or cancelled write is poisoned and releases its session with an unknown length.
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::direct::{AlignedBuf, ALIGN};
use crate::engine::Inner;
use crate::error::StorageError;
use crate::index::{self, Cf};
use crate::io::StagedFile;
use crate::oci::{Algorithm, Digest, Hasher, RepoName, UploadId};
use crate::upload::{file_length, Release, SessionGuard};

/// Exclusive writer of one upload session staged in a file. Lives on one shard (not `Send`
/// with `Uring`).
pub(crate) struct FileWriter {
    inner: Arc<Inner>,
    guard: Arc<SessionGuard>,
    id: UploadId,
    repo: RepoName,
    path: PathBuf,
    file: StagedFile,
    /// Bytes received: `base + pending.len()`.
    offset: u64,
    /// File offset of `pending[0]` (aligned): bytes before it are written to the file.
    base: u64,
    /// Received bytes not yet written with O_DIRECT (direct.rs). After a persist the
    /// unaligned tail is both here and (through the page cache) on file.
    pending: AlignedBuf,
    /// `pending` is also on file (read back at open, or written by the last persist).
    pending_on_file: bool,
    /// sha256 of [0, offset); None until rebuilt from the staged file.
    hasher: Option<Hasher>,
    poisoned: bool,
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FileWriter")
            .field("id", &self.id.to_string())
            .field("repo", &self.repo.as_str())
            .field("offset", &self.offset)
            .finish()
    }
}

impl FileWriter {
    /// A writer for a session at `offset` (its staged file open in `file`). Resuming at an
    /// unaligned offset puts the partial last block back into the buffer, to be rewritten
    /// whole by the next O_DIRECT write.
    pub(crate) fn new(
        inner: Arc<Inner>,
        guard: Arc<SessionGuard>,
        id: UploadId,
        repo: RepoName,
        file: StagedFile,
        offset: u64,
        hasher: Option<Hasher>,
    ) -> Result<FileWriter, StorageError> {
        let base = offset / ALIGN as u64 * ALIGN as u64;
        let mut pending = AlignedBuf::new();
        if offset > base {
            let tail = inner.io.read_tail(&file, base, (offset - base) as usize)?;
            pending.fill(&tail);
        }
        Ok(FileWriter {
            path: guard.path.clone(),
            inner,
            guard,
            id,
            repo,
            file,
            offset,
            base,
            pending,
            pending_on_file: true,
            hasher,
            poisoned: false,
        })
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn id(&self) -> &UploadId {
        &self.id
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        check_usable(self.poisoned)
    }

    /// sha256 state of [0, offset), re-hashing the staged bytes if it is unknown.
    async fn sha256_state(&mut self) -> Result<&mut Hasher, StorageError> {
        if self.hasher.is_none() {
            let hasher = self
                .inner
                .io
                .hash_file(&self.path, self.offset, Algorithm::Sha256)
                .await?;
            self.hasher = Some(hasher);
        }
        Ok(self.hasher.as_mut().expect("hasher was just set"))
    }

    /// Hashes `bytes` and appends them at the offset: gathered in the aligned buffer and
    /// written with O_DIRECT one full buffer at a time. Cancel or error: the writer is
    /// poisoned; a write still completes in the background, and the session's length is
    /// re-read by the next writer.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), StorageError> {
        self.check_usable()?;
        if bytes.is_empty() {
            return Ok(());
        }
        self.sha256_state().await?;
        self.poisoned = true;
        self.guard.forget_state();
        self.hasher
            .as_mut()
            .expect("hash state rebuilt before the write")
            .update(&bytes);
        self.pending_on_file = false;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let taken = self.pending.fill(rest);
            rest = &rest[taken..];
            if self.pending.is_full() {
                self.write_pending().await?;
            }
        }
        self.offset += bytes.len() as u64;
        self.poisoned = false;
        let mut sessions = self.inner.sessions.stripe(&self.guard.id);
        if let Some(slot) = sessions.get_mut(&self.guard.id) {
            slot.offset = Some(self.base);
        }
        Ok(())
    }

    /// Writes the aligned part of the buffer with O_DIRECT and keeps the rest. With `tail`,
    /// the unaligned rest is also written, through the page cache, so that the file holds
    /// every received byte (persist and finish); it stays in the buffer too, to be rewritten
    /// whole by the next aligned write.
    async fn write_pending_with(&mut self, tail: bool) -> Result<(), StorageError> {
        let length = self.pending.len();
        let aligned = length / ALIGN * ALIGN;
        if aligned == 0 && !(tail && length > 0) {
            return Ok(());
        }
        let buffer = Bytes::from_owner(std::mem::replace(&mut self.pending, AlignedBuf::new()));
        let rest = buffer.slice(aligned..);
        if aligned > 0 {
            let keepalive = Arc::clone(&self.guard);
            self.inner
                .io
                .write_all_at(&self.file, buffer.slice(..aligned), self.base, keepalive)
                .await?;
            self.base += aligned as u64;
        }
        if tail && !rest.is_empty() {
            self.inner
                .io
                .write_tail_at(&self.file, rest.clone(), self.base)?;
        }
        self.pending.fill(&rest);
        self.pending_on_file = tail;
        Ok(())
    }

    async fn write_pending(&mut self) -> Result<(), StorageError> {
        self.write_pending_with(false).await
    }

    /// Every received byte is in the file (page cache or device).
    async fn write_all_pending(&mut self) -> Result<(), StorageError> {
        self.write_pending_with(true).await
    }

    /// Commits the upload as blob `expected` in the writer's repository: fsync the staged
    /// file, verify the digest, rename into blobs/, fsync the directory (blobs in S3: send
    /// the staged file to the bucket instead, blob_backend.rs), then one synced WriteBatch
    /// (blob record, repo link, repo record, session deleted). Durable on return.
    ///
    /// On DigestMismatch the staged bytes and the session are deleted. On an I/O error
    /// before the rename the session is kept (its length re-read by the next writer).
    /// Cancel: before the rename the session is kept; from the rename on the session is
    /// gone, and the blob is either committed or an orphan file (reclaimed by GC).
    pub async fn finish(mut self, expected: &Digest) -> Result<u64, StorageError> {
        self.check_usable()?;
        // If this fails or is cancelled before the rename, the next writer re-reads length
        // and hash state from the staged file.
        self.poisoned = true;
        self.guard.forget_state();
        let durable = self.inner.commit;
        self.write_all_pending().await?;
        // A cancelled write of an earlier writer may have landed past the offset.
        if file_length(&self.path)?.is_some_and(|length| length > self.offset) {
            self.inner.io.truncate(&self.path, self.offset).await?;
        }
        // Blobs in a bucket: the staged file is read once more and sent; its durability
        // on this disk does not matter (the bucket's PUT is the durable step).
        if durable && self.inner.s3().is_none() {
            self.inner.io.sync_file(&self.file).await?;
        }
        let actual = match expected.algorithm() {
            Algorithm::Sha256 => {
                self.sha256_state().await?;
                self.hasher.take().expect("hash state rebuilt").finalize()
            }
            other => {
                let hasher = self
                    .inner
                    .io
                    .hash_file(&self.path, self.offset, other)
                    .await?;
                hasher.finalize()
            }
        };
        // From here on the session is consumed, whatever happens.
        let key = self.guard.id.clone();
        let recorded = self.inner.sessions.stripe(&key).remove(&key).is_some();
        self.guard.set(Release::Gone);
        let mut batch = index::Batch::default();
        // A monolithic upload (POST with ?digest=) never had a record: deleting one anyway
        // would leave a tombstone per push for every scan of `uploads` to step over.
        if recorded {
            batch.delete(Cf::Uploads, key.into_bytes());
        }
        if actual != *expected {
            self.inner.io.remove_file(&self.path).await?;
            self.inner.index.write(batch, false).await?;
            return Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        // Held from before the file is installed until it is linked: GC cannot remove the
        // blob (or the file this commit finds already there) in between.
        let mut digest_guard = self.inner.digest_guard(expected).await?;
        let installed = self
            .inner
            .install_staged(&self.inner.io, &self.path, expected, self.offset, durable)
            .await;
        if let Err(error) = installed {
            // The session is gone: do not leave its staged bytes behind (NotFound is fine).
            let _ = self.inner.io.remove_file(&self.path).await;
            return Err(error);
        }
        self.inner
            .link_blob(
                &self.repo,
                expected,
                self.offset,
                Some(batch),
                &mut digest_guard,
            )
            .await?;
        Ok(self.offset)
    }

    /// Makes the bytes written so far durable (fsync of the staged file when `commit` is on)
    /// and releases the session: the daemon answers a PATCH with 202 only after this.
    /// Returns the offset. Cancel or error: the session is released with its length re-read
    /// from the file by the next writer.
    pub async fn persist(mut self) -> Result<u64, StorageError> {
        self.check_usable()?;
        self.poisoned = true;
        self.write_all_pending().await?;
        if self.inner.commit {
            self.inner.io.sync_file(&self.file).await?;
            self.make_session_durable().await?;
        }
        self.poisoned = false;
        let offset = self.offset;
        drop(self);
        Ok(offset)
    }

    /// First persist of a session opened by POST: fsync `uploads/` (the staged file's entry)
    /// and the WAL (the record), then remember it.
    async fn make_session_durable(&self) -> Result<(), StorageError> {
        let key = &self.guard.id;
        let durable = self
            .inner
            .sessions
            .stripe(key)
            .get(key)
            .is_none_or(|slot| slot.durable);
        if durable {
            return Ok(());
        }
        self.inner
            .io
            .sync_dir(&self.inner.store.uploads_dir())
            .await?;
        self.inner.sync_wal().await?;
        if let Some(slot) = self.inner.sessions.stripe(key).get_mut(key) {
            slot.durable = true;
        }
        Ok(())
    }

    /// Gives the session back for resumption (client went away): received bytes still in
    /// the buffer are written first (not fsynced), so the next writer continues at `offset`.
    /// An anonymous session's staged file is deleted instead. Dropping a writer without
    /// this keeps only what reached the file (whole O_DIRECT buffers): never acknowledged,
    /// so a client resuming from the reported offset sends the rest again.
    pub async fn abandon(mut self) -> Result<(), StorageError> {
        if !self.poisoned {
            self.poisoned = true;
            self.write_all_pending().await?;
            self.poisoned = false;
        }
        // Drop hands the offset and hash state back to the session table.
        drop(self);
        Ok(())
    }
}

/// A poisoned writer's calls fail (both kinds of writer).
pub(crate) fn check_usable(poisoned: bool) -> Result<(), StorageError> {
    match poisoned {
        true => Err(StorageError::Io(std::io::Error::other(
            "upload writer saw a failed write; reopen the session",
        ))),
        false => Ok(()),
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if self.poisoned {
            return;
        }
        let mut release = self
            .guard
            .release
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Release::Keep { .. } = *release {
            *release = match self.pending.is_empty() || self.pending_on_file {
                true => Release::Keep {
                    offset: Some(self.offset),
                    hasher: self.hasher.take(),
                },
                // Received bytes that never reached the file: the next writer re-reads the
                // length and re-hashes, as after a cancelled write.
                false => Release::Keep {
                    offset: None,
                    hasher: None,
                },
            };
        }
    }
}

/// The exclusive writer of one upload session: staged in a file on this node, or (blobs in
/// S3) sent to the bucket as it arrives (writer_shared.rs). Both keep the same promises:
/// `persist` makes every received byte durable before a 202, `finish` verifies before
/// anything becomes a blob, a failed writer is poisoned and its session keeps what was made
/// durable.
#[derive(Debug)]
pub struct UploadWriter(Kind);

#[derive(Debug)]
enum Kind {
    File(FileWriter),
    Shared(crate::writer_shared::SharedWriter),
}

impl UploadWriter {
    pub(crate) fn file(writer: FileWriter) -> UploadWriter {
        UploadWriter(Kind::File(writer))
    }

    pub(crate) fn shared(writer: crate::writer_shared::SharedWriter) -> UploadWriter {
        UploadWriter(Kind::Shared(writer))
    }

    /// Bytes received so far.
    pub fn offset(&self) -> u64 {
        match &self.0 {
            Kind::File(writer) => writer.offset(),
            Kind::Shared(writer) => writer.offset(),
        }
    }

    pub fn id(&self) -> &UploadId {
        match &self.0 {
            Kind::File(writer) => writer.id(),
            Kind::Shared(writer) => writer.id(),
        }
    }

    /// Appends `bytes` (hashed as they arrive). Cancel or error: the writer is poisoned.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), StorageError> {
        match &mut self.0 {
            Kind::File(writer) => writer.write(bytes).await,
            Kind::Shared(writer) => writer.write(bytes).await,
        }
    }

    /// Commits the upload as blob `expected` in the writer's repository; returns its size.
    pub async fn finish(self, expected: &Digest) -> Result<u64, StorageError> {
        match self.0 {
            Kind::File(writer) => writer.finish(expected).await,
            Kind::Shared(writer) => writer.finish(expected).await,
        }
    }

    /// Makes every received byte durable and releases the session; returns the offset.
    pub async fn persist(self) -> Result<u64, StorageError> {
        match self.0 {
            Kind::File(writer) => writer.persist().await,
            Kind::Shared(writer) => writer.persist().await,
        }
    }

    /// Gives the session back for resumption, keeping what arrived.
    pub async fn abandon(self) -> Result<(), StorageError> {
        match self.0 {
            Kind::File(writer) => writer.abandon().await,
            Kind::Shared(writer) => writer.abandon().await,
        }
    }
}
