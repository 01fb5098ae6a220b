//! `SharedWriter`: the writer of an upload session whose bytes go to the bucket (the sessions
//! and their leases are upload_shared.rs).
//!
//! - Received bytes gather in memory after the session's tail (read back from its staging
//!   object at open). Every [`PART_BYTES`] become a part (the multipart upload is begun with
//!   the first one); after each part the state (parts, sha256 state, lease renewed) is
//!   recorded, so a node that dies mid-chunk loses only the bytes after the last part.
//! - `persist` (PATCH) sends what is left: a part when it reaches S3's 5 MiB minimum, else a
//!   new tail object (named by this writer, so two writers never write one object), records
//!   the state and gives the lease up. The 202 follows: every acknowledged byte is in the
//!   bucket and named by the index.
//! - sha256 is updated as bytes leave memory (in a part or a tail), so the recorded hash
//!   state always covers exactly the recorded bytes.
//! - `finish` verifies before anything reaches `blobs/`: a session without parts is one
//!   conditional PUT of bytes already hashed; otherwise the last part goes up, the hash state
//!   (sha512 and blake3: a hash of the assembled object) is checked, and the parts are
//!   completed and installed (s3/multipart.rs). Then the blob record, the link and the
//!   session's deletion are one batch, under the digest's lock, as for files.
//! - A writer that saw an error is poisoned (its later calls fail); dropping a writer that
//!   still holds the lease gives it up on a thread of its own on PostgreSQL (Drop cannot
//!   await; on a single node's index this node alone reads the lease, and it knows).
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::blob_backend::PART_BYTES;
use crate::engine::Inner;
use crate::error::StorageError;
use crate::index::{self, Cf};
use crate::oci::{Algorithm, Digest, RepoName, UploadId};
use crate::s3::{S3Blobs, MAX_PARTS, MIN_PART_BYTES};
use crate::upload_state::SharedState;

pub(crate) struct SharedWriter {
    inner: Arc<Inner>,
    id: UploadId,
    repo: RepoName,
    /// This writer's number in the session's lease (registered in `Sessions` while it runs).
    writer: u64,
    /// The session as this writer last recorded it (or will record it next).
    state: SharedState,
    /// Bytes after the last part: the recorded tail's, then new ones.
    buffer: BytesMut,
    /// How many bytes at the front of `buffer` the hash state already covers (the tail's).
    hashed: usize,
    /// Tail objects written by this writer: numbered from 1.
    tails: u32,
    /// The lease is still this writer's to give up.
    holds_lease: bool,
    poisoned: bool,
}

impl std::fmt::Debug for SharedWriter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SharedWriter")
            .field("id", &self.id.to_string())
            .field("repo", &self.repo.as_str())
            .field("offset", &self.offset())
            .finish()
    }
}

impl SharedWriter {
    /// Takes the session's lease and reads its tail back. `UploadBusy` if another writer
    /// holds it.
    pub(crate) async fn open(
        inner: Arc<Inner>,
        repo: &RepoName,
        id: &UploadId,
    ) -> Result<SharedWriter, StorageError> {
        let writer = uuid::Uuid::new_v4().as_u64_pair().0;
        inner.sessions.writer_started(writer);
        let mut this = SharedWriter {
            state: SharedState::new(0),
            inner,
            id: id.clone(),
            repo: repo.clone(),
            writer,
            buffer: BytesMut::new(),
            hashed: 0,
            tails: 0,
            holds_lease: false,
            // Until the state is read: dropping now gives the lease up.
            poisoned: true,
        };
        this.state = this.inner.claim_session(repo, id, writer).await?;
        this.holds_lease = true;
        if let Some((name, len)) = &this.state.tail {
            let tail = this.blobs().get_staging(id, name).await?;
            match tail {
                Some(bytes) if bytes.len() as u64 == *len => this.buffer.extend_from_slice(&bytes),
                other => {
                    return Err(StorageError::Corrupt(format!(
                        "upload {id}: tail object {name} holds {:?} bytes, the record {len}",
                        other.map(|bytes| bytes.len())
                    )))
                }
            }
            this.hashed = this.buffer.len();
        }
        this.poisoned = false;
        Ok(this)
    }

    fn blobs(&self) -> &S3Blobs {
        self.inner.s3().expect("shared sessions need blobs in S3")
    }

    pub(crate) fn offset(&self) -> u64 {
        self.state.parts_len() + self.buffer.len() as u64
    }

    pub(crate) fn id(&self) -> &UploadId {
        &self.id
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        crate::writer::check_usable(self.poisoned)
    }

    /// Appends `bytes`; every full [`PART_BYTES`] is sent as a part and recorded. Cancel or
    /// error: the writer is poisoned; the session keeps what was recorded.
    pub(crate) async fn write(&mut self, bytes: Bytes) -> Result<(), StorageError> {
        self.check_usable()?;
        self.poisoned = true;
        self.buffer.extend_from_slice(&bytes);
        while self.buffer.len() as u64 >= PART_BYTES {
            let part = self.buffer.split_to(PART_BYTES as usize).freeze();
            self.send_part(part).await?;
            self.record(false).await?;
        }
        self.poisoned = false;
        Ok(())
    }

    /// Hashes what of `part` (the front of the buffer) is not hashed yet and uploads it as
    /// the next part, beginning the multipart upload first if needed. The tail it absorbed
    /// is no longer the session's (its object is deleted after the next record).
    async fn send_part(&mut self, part: Bytes) -> Result<(), StorageError> {
        if self.hashed < part.len() {
            self.state.hash.update(&part[self.hashed..]);
        }
        self.hashed = self.hashed.saturating_sub(part.len());
        let number = u32::try_from(self.state.parts.len() + 1).unwrap_or(u32::MAX);
        if number > MAX_PARTS {
            return Err(StorageError::TooLarge);
        }
        self.check_lease().await?;
        let upload = match &self.state.multipart {
            Some(upload) => upload.clone(),
            None => {
                let upload = self.blobs().begin(&self.id).await?;
                self.state.multipart = Some(upload.clone());
                upload
            }
        };
        let record = self.blobs().put_part(&upload, number, part).await?;
        self.state.parts.push(record);
        self.state.tail = None;
        Ok(())
    }

    /// A read of the recorded lease before a part goes up: a writer whose session was taken
    /// over stops here rather than send a part the new holder may send too.
    async fn check_lease(&self) -> Result<(), StorageError> {
        let bytes = self
            .inner
            .index
            .get(Cf::UploadState, self.id.as_str().as_bytes());
        let recorded = match bytes.await? {
            Some(bytes) => SharedState::decode(&bytes)?,
            None => return Err(StorageError::UploadUnknown),
        };
        match recorded.lease {
            Some(lease) if lease.writer == self.writer && lease.node == self.inner.node_id() => {
                Ok(())
            }
            _ => Err(StorageError::UploadBusy),
        }
    }

    /// Records the state (renewing or giving up the lease), then deletes tail objects the
    /// recorded state no longer names.
    async fn record(&mut self, release: bool) -> Result<(), StorageError> {
        let before = self.recorded_tail().await;
        self.inner
            .record_session(&self.id, &mut self.state, self.writer, release)
            .await?;
        if release {
            self.holds_lease = false;
        }
        if let Some(old) = before.filter(|old| Some(old) != self.state.tail.as_ref().map(|t| &t.0))
        {
            if let Err(error) = self.blobs().delete_staging(&self.id, &old).await {
                tracing::warn!(upload = %self.id, %error, "deleting a replaced tail object");
            }
        }
        Ok(())
    }

    /// The tail object the index names now (before this writer's next record).
    async fn recorded_tail(&self) -> Option<String> {
        let bytes = self
            .inner
            .index
            .get(Cf::UploadState, self.id.as_str().as_bytes())
            .await
            .ok()??;
        SharedState::decode(&bytes).ok()?.tail.map(|(name, _)| name)
    }

    /// Sends what the buffer holds past the last part: a part from 5 MiB on, else a tail
    /// object. Every received byte is then in the bucket and in `state`.
    async fn flush(&mut self) -> Result<(), StorageError> {
        if self.buffer.len() as u64 >= MIN_PART_BYTES {
            let part = self.buffer.split().freeze();
            return self.send_part(part).await;
        }
        if self.hashed == self.buffer.len() {
            return Ok(()); // nothing new since the recorded tail
        }
        self.state.hash.update(&self.buffer[self.hashed..]);
        self.hashed = self.buffer.len();
        self.tails += 1;
        let name = format!("tail-{:016x}-{}", self.writer, self.tails);
        let bytes = Bytes::copy_from_slice(&self.buffer);
        self.blobs().put_staging(&self.id, &name, bytes).await?;
        self.state.tail = Some((name, self.buffer.len() as u64));
        Ok(())
    }

    /// Sends and records every received byte and gives the session up: the daemon answers a
    /// PATCH with 202 only after this. Returns the offset.
    pub(crate) async fn persist(mut self) -> Result<u64, StorageError> {
        self.check_usable()?;
        self.poisoned = true;
        self.flush().await?;
        self.record(true).await?;
        self.poisoned = false;
        Ok(self.state.offset())
    }

    /// Gives the session back (client went away): as `persist`, keeping what arrived.
    pub(crate) async fn abandon(self) -> Result<(), StorageError> {
        if self.poisoned {
            return Ok(()); // Drop gives the lease up; the session keeps what was recorded
        }
        self.persist().await.map(drop)
    }

    /// Commits the session as blob `expected` in the writer's repository (module rules).
    /// DigestMismatch deletes the session. Cancel or error before the blob is installed:
    /// the session keeps what was recorded.
    pub(crate) async fn finish(mut self, expected: &Digest) -> Result<u64, StorageError> {
        self.check_usable()?;
        self.poisoned = true;
        let size = self.offset();
        let blobs = self.blobs().clone();
        if self.state.parts.is_empty() {
            // Small blob: one conditional PUT of bytes verified here.
            let bytes = self.buffer.split().freeze();
            let actual = match expected.algorithm() {
                Algorithm::Sha256 => {
                    self.state.hash.update(&bytes[self.hashed..]);
                    self.state.hash.digest()
                }
                other => {
                    let mut hasher = other.hasher();
                    hasher.update(&bytes);
                    hasher.finalize()
                }
            };
            if actual != *expected {
                return self.mismatch(expected, actual).await;
            }
            let inner = Arc::clone(&self.inner);
            let mut guard = inner.digest_guard(expected).await?;
            blobs.put_verified(expected, bytes).await?;
            return self.commit(&inner, expected, size, &mut guard).await;
        }
        let last = self.buffer.split().freeze();
        if !last.is_empty() {
            self.send_part(last).await?;
        }
        let upload = self.state.multipart.clone().expect("parts imply an upload");
        if expected.algorithm() == Algorithm::Sha256 {
            let actual = self.state.hash.digest();
            if actual != *expected {
                return self.mismatch(expected, actual).await;
            }
            let inner = Arc::clone(&self.inner);
            let mut guard = inner.digest_guard(expected).await?;
            blobs
                .complete(&upload, &self.state.parts, &self.state.hash, expected)
                .await?;
            return self.commit(&inner, expected, size, &mut guard).await;
        }
        let assembled = blobs.assemble(&upload, &self.state.parts).await?;
        let actual = blobs
            .digest_assembled(&self.id, expected.algorithm())
            .await?;
        if actual != *expected {
            return self.mismatch(expected, actual).await;
        }
        let inner = Arc::clone(&self.inner);
        let mut guard = inner.digest_guard(expected).await?;
        blobs.install(&self.id, expected, assembled).await?;
        self.commit(&inner, expected, size, &mut guard).await
    }

    /// The blob is in place: its record and link, and the session's deletion, in one batch;
    /// then the session's leftover objects go.
    async fn commit<'h>(
        mut self,
        inner: &'h Arc<Inner>,
        digest: &Digest,
        size: u64,
        guard: &mut crate::engine::DigestGuard<'h>,
    ) -> Result<u64, StorageError> {
        let mut batch = index::Batch::default();
        batch.delete(Cf::Uploads, self.id.as_str().as_bytes().to_vec());
        batch.delete(Cf::UploadState, self.id.as_str().as_bytes().to_vec());
        inner
            .link_blob(&self.repo, digest, size, Some(batch), guard)
            .await?;
        inner.usage.sessions_changed();
        self.holds_lease = false;
        self.poisoned = false;
        if let Err(error) = self.blobs().clear_upload(&self.id).await {
            tracing::warn!(upload = %self.id, %error, "removing a finished session's objects");
        }
        Ok(size)
    }

    /// The content does not hash to the client's digest: the session is deleted.
    async fn mismatch(mut self, expected: &Digest, actual: Digest) -> Result<u64, StorageError> {
        let mut batch = index::Batch::default();
        batch.delete(Cf::Uploads, self.id.as_str().as_bytes().to_vec());
        batch.delete(Cf::UploadState, self.id.as_str().as_bytes().to_vec());
        self.inner.index.write(batch, false).await?;
        self.inner.usage.sessions_changed();
        self.holds_lease = false;
        self.inner.drop_session_objects(&self.id, &self.state).await;
        Err(StorageError::DigestMismatch {
            expected: expected.clone(),
            actual,
        })
    }
}

impl Drop for SharedWriter {
    fn drop(&mut self) {
        self.inner.sessions.writer_ended(self.writer);
        // This node now treats the lease as free (its writer no longer runs), and on a
        // single node's index there is no other node to tell.
        if !self.holds_lease || self.inner.index.postgres().is_none() {
            return;
        }
        // Other nodes learn it from the record. Weak: an engine closing meanwhile closes its
        // node lock, which frees the lease as well.
        let inner = Arc::downgrade(&self.inner);
        let id = self.id.clone();
        let writer = self.writer;
        let released = std::thread::Builder::new()
            .name("berth-lease".into())
            .spawn(move || {
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                if let Err(error) = index::block_on(inner.release_lease(&id, writer)) {
                    tracing::warn!(upload = %id, %error, "giving up an upload lease");
                }
            });
        if let Err(error) = released {
            tracing::warn!(upload = %self.id, %error, "no thread to give up an upload lease");
        }
    }
}
