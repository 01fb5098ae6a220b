//! Upload sessions whose bytes go to the bucket (blobs in S3, SHARED.md D4): a chunk may
//! arrive at any node, and a node that dies loses only bytes it never acknowledged.
//!
//! - A session is its `Uploads` record (repository, owner, start) and its `UploadState`
//!   record (upload_state.rs): the multipart upload and its parts, the tail (the bytes after
//!   the last part, below S3's 5 MiB part minimum, in a staging object), the sha256 state
//!   of all of it, and a lease naming the writer that holds the session. Nothing is staged
//!   on the node's disk; the writer is writer_shared.rs.
//! - One writer at a time, across nodes. Opening takes the lease under the session's lock
//!   (`Inner::named`, a database lock on PostgreSQL). A lease is free when it was released
//!   (persist, abandon, finish, or a dropped writer), when its node is gone (the node lock of
//!   index_pg.rs is free: a killed node's sessions are taken over at once), when it belongs
//!   to a writer of this node that no longer runs, or when nothing renewed it for
//!   [`LEASE_MS`]. Otherwise the opener gets `UploadBusy`.
//! - Every state change re-checks under the lock that the lease is still the writer's: a
//!   writer whose session was taken over fails instead of recording over the new holder.
//! - Cancel and expiry delete both records first, then the session's objects (a crash in
//!   between leaves objects under `uploads/`, which no record names).
use std::sync::Arc;

use crate::engine::Inner;
use crate::error::StorageError;
use crate::index::{self, Cf, UploadRecord};
use crate::lock::Held;
use crate::oci::{RepoName, UploadId};
use crate::upload_state::{Lease, SharedState};

/// How long a lease lasts without renewal while its node runs (writers renew it at every
/// part). Longer than an S3 request may take (5 minutes, s3/client.rs), so a writer whose
/// lease lapsed has no part upload in flight when another takes over.
pub(crate) const LEASE_MS: u64 = 10 * 60 * 1000;

fn key(id: &UploadId) -> Vec<u8> {
    id.as_str().as_bytes().to_vec()
}

impl Inner {
    /// Whether upload sessions keep their bytes in the bucket.
    pub(crate) fn shared_uploads(&self) -> bool {
        self.s3().is_some()
    }

    /// This node's id in leases: the PostgreSQL index's node (whose lock tells others it
    /// runs), else this engine's own.
    pub(crate) fn node_id(&self) -> u64 {
        match self.index.postgres() {
            Some(pg) => pg.node(),
            None => self.sessions.node,
        }
    }

    /// The session's lock (exclusive): every read-check-write of its state holds it.
    pub(crate) async fn upload_lock(&self, id: &UploadId) -> Result<Held<'_>, StorageError> {
        let mut held = Held::default();
        held.take(&self.index, &self.named, &format!("upload\0{id}"), false)
            .await?;
        Ok(held)
    }

    /// The session `id` of `repo`: its record and state (`UploadUnknown` if there is none).
    pub(crate) async fn shared_session(
        &self,
        repo: &RepoName,
        id: &UploadId,
    ) -> Result<(UploadRecord, SharedState), StorageError> {
        let key = key(id);
        let record = match self.index.get(Cf::Uploads, &key).await? {
            Some(bytes) => UploadRecord::decode(&bytes)?,
            None => return Err(StorageError::UploadUnknown),
        };
        if record.repo != *repo {
            return Err(StorageError::UploadUnknown);
        }
        match self.index.get(Cf::UploadState, &key).await? {
            Some(bytes) => Ok((record, SharedState::decode(&bytes)?)),
            None => Err(StorageError::UploadUnknown),
        }
    }

    /// Whether `lease` no longer stops another writer (module rules).
    pub(crate) async fn lease_free(
        &self,
        lease: Option<&Lease>,
        now_ms: u64,
    ) -> Result<bool, StorageError> {
        let Some(lease) = lease else {
            return Ok(true);
        };
        if lease.node == self.node_id() {
            return Ok(!self.sessions.writer_runs(lease.writer));
        }
        if now_ms.saturating_sub(lease.renewed_ms) >= LEASE_MS {
            return Ok(true);
        }
        match self.index.postgres() {
            Some(pg) => Ok(!pg.node_alive(lease.node).await?),
            // A single node's index: another node id is an earlier run of this one.
            None => Ok(true),
        }
    }

    /// A new session: both records in one batch.
    pub(crate) async fn shared_start(
        &self,
        repo: &RepoName,
        owner: Option<&str>,
    ) -> Result<UploadId, StorageError> {
        let id = UploadId::random();
        let now = index::now_ms();
        let record = UploadRecord {
            started_ms: now,
            repo: repo.clone(),
            owner: owner.map(str::to_owned),
        };
        let mut batch = index::Batch::default();
        batch.put(Cf::Uploads, key(&id), record.encode());
        batch.put(Cf::UploadState, key(&id), SharedState::new(now).encode());
        self.index.write(batch, false).await?;
        self.usage.sessions_changed();
        Ok(id)
    }

    /// Takes the session's lease for writer `writer` of this node (registered as running by
    /// the caller first) and returns the state as recorded.
    pub(crate) async fn claim_session(
        self: &Arc<Self>,
        repo: &RepoName,
        id: &UploadId,
        writer: u64,
    ) -> Result<SharedState, StorageError> {
        let held = self.upload_lock(id).await?;
        let (_, mut state) = self.shared_session(repo, id).await?;
        let now = index::now_ms();
        if !self.lease_free(state.lease.as_ref(), now).await? {
            return Err(StorageError::UploadBusy);
        }
        if let Some(lease) = state.lease {
            tracing::info!(upload = %id, node = lease.node, "taking over an upload session");
        }
        state.lease = Some(Lease {
            node: self.node_id(),
            writer,
            renewed_ms: now,
        });
        state.updated_ms = now;
        let mut batch = index::Batch::default();
        batch.put(Cf::UploadState, key(id), state.encode());
        self.write_held(batch, &held).await?;
        Ok(state)
    }

    /// Records `state` for the writer `writer`, which must still hold the lease (else
    /// `UploadBusy`: another writer took the session over). `release` gives the lease up;
    /// otherwise it is renewed.
    pub(crate) async fn record_session(
        self: &Arc<Self>,
        id: &UploadId,
        state: &mut SharedState,
        writer: u64,
        release: bool,
    ) -> Result<(), StorageError> {
        let held = self.upload_lock(id).await?;
        let recorded = match self.index.get(Cf::UploadState, &key(id)).await? {
            Some(bytes) => SharedState::decode(&bytes)?,
            None => return Err(StorageError::UploadUnknown),
        };
        let node = self.node_id();
        if recorded
            .lease
            .is_none_or(|lease| lease.node != node || lease.writer != writer)
        {
            return Err(StorageError::UploadBusy);
        }
        let now = index::now_ms();
        state.updated_ms = now;
        state.lease = (!release).then_some(Lease {
            node,
            writer,
            renewed_ms: now,
        });
        let mut batch = index::Batch::default();
        batch.put(Cf::UploadState, key(id), state.encode());
        self.write_held(batch, &held).await
    }

    /// Gives up the lease of a writer that went away without releasing it (its Drop), if it
    /// still holds it.
    pub(crate) async fn release_lease(
        self: &Arc<Self>,
        id: &UploadId,
        writer: u64,
    ) -> Result<(), StorageError> {
        let held = self.upload_lock(id).await?;
        let Some(bytes) = self.index.get(Cf::UploadState, &key(id)).await? else {
            return Ok(());
        };
        let mut state = SharedState::decode(&bytes)?;
        let node = self.node_id();
        if state
            .lease
            .is_some_and(|lease| lease.node == node && lease.writer == writer)
        {
            state.lease = None;
            let mut batch = index::Batch::default();
            batch.put(Cf::UploadState, key(id), state.encode());
            self.write_held(batch, &held).await?;
        }
        Ok(())
    }

    /// Deletes an idle session (`UploadBusy` while a writer holds it), then its objects.
    pub(crate) async fn shared_cancel(
        self: &Arc<Self>,
        repo: &RepoName,
        id: &UploadId,
    ) -> Result<(), StorageError> {
        let state = {
            let held = self.upload_lock(id).await?;
            let (_, state) = self.shared_session(repo, id).await?;
            if !self
                .lease_free(state.lease.as_ref(), index::now_ms())
                .await?
            {
                return Err(StorageError::UploadBusy);
            }
            let mut batch = index::Batch::default();
            batch.delete(Cf::Uploads, key(id));
            batch.delete(Cf::UploadState, key(id));
            self.write_held(batch, &held).await?;
            self.usage.sessions_changed();
            state
        };
        self.drop_session_objects(id, &state).await;
        Ok(())
    }

    /// Removes what a session has in the bucket (its records are gone): the multipart upload
    /// and every object under `uploads/<id>/`. Failures are logged: nothing names those
    /// objects any more.
    pub(crate) async fn drop_session_objects(&self, id: &UploadId, state: &SharedState) {
        let Some(blobs) = self.s3() else {
            return;
        };
        let removed = match &state.multipart {
            Some(upload) => blobs.abort(upload).await,
            None => blobs.clear_upload(id).await,
        };
        if let Err(error) = removed {
            tracing::warn!(upload = %id, %error, "removing an upload session's objects");
        }
    }

    /// GC of sessions idle for `idle_ms` (no change recorded since) whose lease is free, from
    /// any node. Returns the ids deleted.
    pub(crate) async fn shared_expire(
        self: &Arc<Self>,
        idle_ms: u64,
    ) -> Result<Vec<String>, StorageError> {
        let now = index::now_ms();
        let mut candidates = Vec::new();
        self.index
            .visit(Cf::UploadState, b"", None, |key, value| {
                // A state that does not decode is left for fsck to report.
                let idle = SharedState::decode(value)
                    .is_ok_and(|state| now.saturating_sub(state.updated_ms) >= idle_ms);
                if idle {
                    candidates.push(String::from_utf8_lossy(key).into_owned());
                }
                Ok(true)
            })
            .await?;
        let mut expired = Vec::new();
        for text in candidates {
            let Ok(id) = text.parse::<UploadId>() else {
                continue;
            };
            let state = {
                let held = self.upload_lock(&id).await?;
                let Some(bytes) = self.index.get(Cf::UploadState, &key(&id)).await? else {
                    continue;
                };
                let state = SharedState::decode(&bytes)?;
                let idle = now.saturating_sub(state.updated_ms) >= idle_ms;
                if !idle || !self.lease_free(state.lease.as_ref(), now).await? {
                    continue;
                }
                let mut batch = index::Batch::default();
                batch.delete(Cf::Uploads, key(&id));
                batch.delete(Cf::UploadState, key(&id));
                self.write_held(batch, &held).await?;
                self.usage.sessions_changed();
                state
            };
            self.drop_session_objects(&id, &state).await;
            expired.push(text);
        }
        Ok(expired)
    }
}
