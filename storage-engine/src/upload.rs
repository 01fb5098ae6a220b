//! Upload sessions: the in-memory session table, recovery at open, and opening, cancelling
//! and releasing sessions. The writer of a session is `UploadWriter` (writer.rs).
//!
//! Rules:
//! - A session is bound to its repository; an id used under another repository is
//!   `UploadUnknown`. It may have an owner (the user who started it, stored in its record so
//!   it survives a restart); the HTTP layer refuses the session to anyone else. One writer at
//!   a time (`UploadBusy` otherwise).
//! - The session record (`uploads` family) is written unsynced at POST; the first persist
//!   (PATCH 202) makes the session durable, and every persist fsyncs the staged bytes. A
//!   session lost to power failure before that makes the client restart its upload, which
//!   the spec allows. After a crash the offset is the staged file's length, which never
//!   exceeds what the client sent.
//! - Bytes are hashed with sha256 while they arrive (inline on the shard: issue 5 moves
//!   large hashing to a pool). A session whose hash state is unknown (recovered at open, or
//!   released after a failed or cancelled write) re-hashes its staged bytes once on first
//!   use. A finish with a sha512 or blake3 digest hashes the staged file once with that
//!   algorithm instead (those uploads are rare; no second hasher runs for everyone).
//! - A writer that saw a failed or cancelled write is poisoned: its later calls fail and
//!   the session is released with an unknown length, re-read from the file by the next
//!   writer. `SessionGuard` keeps the session busy until every write it started has landed,
//!   even if the writer was dropped mid-write, so that re-read is exact.
use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::engine::{Engine, Inner};
use crate::error::StorageError;
use crate::index::{self, Cf, UploadRecord};
use crate::io::FaultPoint;
use crate::oci::{Algorithm, Hasher, RepoName, UploadId};
use crate::writer::{FileWriter, UploadWriter};
use crate::writer_shared::SharedWriter;

const SESSION_STRIPES: usize = 64;

/// In-memory state of a session that no writer holds.
pub(crate) struct Slot {
    repo: RepoName,
    /// None: unknown, read the staged file's length.
    pub(crate) offset: Option<u64>,
    /// sha256 state of bytes [0, offset); None: re-hash on first use.
    hasher: Option<Hasher>,
    busy: bool,
    /// The user who started the session (`None`: anyone who may write the repository).
    owner: Option<String>,
    /// The staged file's directory entry and the session record are durable. A session
    /// starts non-durable (POST answers without an fsync) and becomes durable at its first
    /// persist (PATCH), the first time it holds acknowledged bytes.
    pub(crate) durable: bool,
}

/// The session table, striped by id so sessions never contend on one mutex.
pub(crate) struct Sessions {
    stripes: Box<[Mutex<HashMap<String, Slot>>]>,
    /// This engine's node id in the leases of sessions in the bucket (upload_shared.rs) when
    /// the index is not PostgreSQL's (which has its own).
    pub(crate) node: u64,
    /// Writers of sessions in the bucket running on this node, by their lease number.
    shared_writers: Mutex<HashSet<u64>>,
}

impl Sessions {
    pub(crate) fn new() -> Sessions {
        Sessions {
            stripes: (0..SESSION_STRIPES).map(|_| Mutex::default()).collect(),
            node: uuid::Uuid::new_v4().as_u64_pair().0,
            shared_writers: Mutex::default(),
        }
    }

    fn shared_writers(&self) -> MutexGuard<'_, HashSet<u64>> {
        self.shared_writers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn writer_started(&self, writer: u64) {
        self.shared_writers().insert(writer);
    }

    pub(crate) fn writer_ended(&self, writer: u64) {
        self.shared_writers().remove(&writer);
    }

    pub(crate) fn writer_runs(&self, writer: u64) -> bool {
        self.shared_writers().contains(&writer)
    }

    /// Open sessions (a snapshot: each stripe is counted under its own lock).
    pub(crate) fn len(&self) -> usize {
        (0..self.stripes.len())
            .map(|stripe| {
                self.stripes[stripe]
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    pub(crate) fn stripe(&self, id: &str) -> MutexGuard<'_, HashMap<String, Slot>> {
        let mut hasher = DefaultHasher::new();
        id.hash(&mut hasher);
        let stripe = &self.stripes[(hasher.finish() % SESSION_STRIPES as u64) as usize];
        // No code panics while holding a stripe; recover the map rather than propagate.
        stripe
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What releasing a session does once its writer and every write it started are gone.
// One value per open session: the size of the hash state does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Release {
    /// Back to the table, idle. `offset`/`hasher` None: unknown, rebuilt by the next writer.
    Keep {
        offset: Option<u64>,
        hasher: Option<Hasher>,
    },
    /// Already removed from the table (finish started, or cancelled).
    Gone,
    /// Anonymous session: delete its staged file.
    RemoveFile,
}

/// Holds a session busy; releases it on drop. Cloned into each in-flight write.
pub(crate) struct SessionGuard {
    inner: Arc<Inner>,
    pub(crate) id: String,
    pub(crate) path: PathBuf,
    pub(crate) release: Mutex<Release>,
}

impl SessionGuard {
    pub(crate) fn set(&self, release: Release) {
        *self
            .release
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = release;
    }

    /// A kept session's length and hash state become unknown (re-read by the next writer).
    /// Anonymous and consumed sessions are unaffected.
    pub(crate) fn forget_state(&self) {
        let mut release = self
            .release
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Release::Keep { .. } = *release {
            *release = Release::Keep {
                offset: None,
                hasher: None,
            };
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let release = std::mem::replace(
            self.release
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            Release::Gone,
        );
        match release {
            Release::Keep { offset, hasher } => {
                if let Some(slot) = self.inner.sessions.stripe(&self.id).get_mut(&self.id) {
                    slot.busy = false;
                    slot.offset = offset;
                    slot.hasher = hasher;
                }
            }
            Release::Gone => {}
            // An unlink takes microseconds; Drop cannot await.
            Release::RemoveFile => drop(self.inner.io.remove_file_now(&self.path)),
        }
    }
}

pub(crate) fn file_length(path: &std::path::Path) -> Result<Option<u64>, StorageError> {
    match std::fs::metadata(path) {
        Ok(metadata) => Ok(Some(metadata.len())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error.into()),
    }
}

impl Inner {
    /// At open: every session record with a staged file becomes an idle session (offset =
    /// file length, hash rebuilt on first use); records without a file and staged files
    /// without a record (a crash between the two creations, or after a commit's rename)
    /// are removed, except records on the PostgreSQL index (another node's sessions).
    pub(crate) async fn recover_uploads(&self) -> Result<(), StorageError> {
        let mut records = Vec::new();
        self.index
            .visit(Cf::Uploads, b"", None, |key, value| {
                records.push((key.to_vec(), UploadRecord::decode(value)?));
                Ok(true)
            })
            .await?;
        // Sessions in the bucket (upload_shared.rs) have a state record and nothing here.
        let mut shared = HashSet::new();
        self.index
            .visit(Cf::UploadState, b"", None, |key, _| {
                shared.insert(key.to_vec());
                Ok(true)
            })
            .await?;
        let mut stale = index::Batch::default();
        let mut live = std::collections::HashSet::new();
        for (key, record) in records {
            if shared.contains(&key) {
                continue;
            }
            let id = std::str::from_utf8(&key)
                .ok()
                .and_then(|text| text.parse::<UploadId>().ok());
            let length = match &id {
                Some(id) => file_length(&self.store.upload_path(id))?,
                None => None,
            };
            match (id, length) {
                (Some(id), Some(length)) => {
                    let id = id.to_string();
                    live.insert(id.clone());
                    let slot = Slot {
                        repo: record.repo,
                        owner: record.owner,
                        offset: Some(length),
                        hasher: None,
                        busy: false,
                        durable: true,
                    };
                    self.sessions.stripe(&id).insert(id, slot);
                }
                // On a shared index a record without a staged file here is another node's
                // session (staging is per node until SHARED.md D4): leave it.
                _ if self.index.postgres().is_some() => {}
                _ => stale.delete(Cf::Uploads, key),
            }
        }
        if self.read_only {
            return Ok(());
        }
        self.index.write(stale, false).await?;
        for entry in std::fs::read_dir(self.store.uploads_dir())? {
            let entry = entry?;
            let name = entry.file_name();
            let known = name.to_str().is_some_and(|name| live.contains(name));
            if !known {
                tracing::info!(file = ?entry.path(), "removing staged file without session");
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

impl Engine {
    /// Opens a session for `repo`. Nothing is fsynced here: a session holds no acknowledged
    /// bytes until its first persist, which makes it durable (staged file's directory entry
    /// and record) before the 202. A power loss may therefore forget a session that only had
    /// its POST answered; its next PATCH or PUT gets BLOB_UPLOAD_UNKNOWN and the client starts
    /// over, having lost nothing it was told was stored. A process crash forgets nothing (the
    /// record is in RocksDB's WAL, written through to the OS). This saves a directory fsync
    /// and a WAL sync per blob push. Cancel: a staged file or record may remain; both are
    /// removed at the next open if the pair is incomplete, else the session is simply idle.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadId, StorageError> {
        self.start_upload_as(repo, None).await
    }

    /// [`Engine::start_upload`] for `owner`: the owner is stored with the session (it
    /// survives a restart) and read back by [`Engine::upload_owner`].
    pub async fn start_upload_as(
        &self,
        repo: &RepoName,
        owner: Option<&str>,
    ) -> Result<UploadId, StorageError> {
        let inner = &self.inner;
        inner.writable()?;
        if inner.shared_uploads() {
            return inner.shared_start(repo, owner).await;
        }
        let id = UploadId::random();
        inner.io.create_new(&inner.store.upload_path(&id)).await?;
        let record = UploadRecord {
            started_ms: index::now_ms(),
            repo: repo.clone(),
            owner: owner.map(str::to_owned),
        };
        let mut batch = index::Batch::default();
        batch.put(Cf::Uploads, id.to_string().into_bytes(), record.encode());
        inner.io.fault(FaultPoint::IndexWrite)?;
        inner.index.write(batch, false).await?;
        let slot = Slot {
            repo: repo.clone(),
            owner: owner.map(str::to_owned),
            offset: Some(0),
            hasher: Some(Algorithm::Sha256.hasher()),
            busy: false,
            durable: !inner.commit,
        };
        inner
            .sessions
            .stripe(&id.to_string())
            .insert(id.to_string(), slot);
        Ok(id)
    }

    /// The user who started the session in `repo` (`None`: a session without an owner).
    /// `UploadUnknown` when `repo` has no such session.
    pub async fn upload_owner(
        &self,
        repo: &RepoName,
        id: &UploadId,
    ) -> Result<Option<String>, StorageError> {
        if self.inner.shared_uploads() {
            let (record, _) = self.inner.shared_session(repo, id).await?;
            return Ok(record.owner);
        }
        let key = id.to_string();
        let sessions = self.inner.sessions.stripe(&key);
        match sessions.get(&key) {
            Some(slot) if slot.repo == *repo => Ok(slot.owner.clone()),
            _ => Err(StorageError::UploadUnknown),
        }
    }

    /// Bytes received so far. While a writer holds the session this is the offset it had
    /// reached at its last completed write.
    pub async fn upload_status(&self, repo: &RepoName, id: &UploadId) -> Result<u64, StorageError> {
        if self.inner.shared_uploads() {
            let (_, state) = self.inner.shared_session(repo, id).await?;
            return Ok(state.offset());
        }
        let key = id.to_string();
        let offset = {
            let sessions = self.inner.sessions.stripe(&key);
            match sessions.get(&key) {
                Some(slot) if slot.repo == *repo => slot.offset,
                _ => return Err(StorageError::UploadUnknown),
            }
        };
        match offset {
            Some(offset) => Ok(offset),
            None => {
                file_length(&self.inner.store.upload_path(id))?.ok_or(StorageError::UploadUnknown)
            }
        }
    }

    /// Claims the session for writing (`UploadBusy` if held). Cancel: the claim is released.
    pub async fn open_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
    ) -> Result<UploadWriter, StorageError> {
        self.inner.writable()?;
        if self.inner.shared_uploads() {
            let writer = SharedWriter::open(Arc::clone(&self.inner), repo, id).await?;
            return Ok(UploadWriter::shared(writer));
        }
        let key = id.to_string();
        let (offset, hasher) = {
            let mut sessions = self.inner.sessions.stripe(&key);
            match sessions.get_mut(&key) {
                Some(slot) if slot.repo == *repo => {
                    if slot.busy {
                        return Err(StorageError::UploadBusy);
                    }
                    slot.busy = true;
                    (slot.offset, slot.hasher.take())
                }
                _ => return Err(StorageError::UploadUnknown),
            }
        };
        let path = self.inner.store.upload_path(id);
        let guard = Arc::new(SessionGuard {
            inner: Arc::clone(&self.inner),
            id: key.clone(),
            path: path.clone(),
            release: Mutex::new(Release::Keep {
                offset,
                hasher: None,
            }),
        });
        let length = match offset {
            Some(offset) => Some(offset),
            None => file_length(&path)?,
        };
        let Some(offset) = length else {
            // The staged file vanished (a cancelled finish renamed it): the session is dead.
            self.forget_session(&key).await?;
            guard.set(Release::Gone);
            return Err(StorageError::UploadUnknown);
        };
        guard.set(Release::Keep {
            offset: Some(offset),
            hasher: None,
        });
        let file = self.inner.io.open_rw(&path).await?;
        FileWriter::new(
            Arc::clone(&self.inner),
            guard,
            id.clone(),
            repo.clone(),
            file,
            offset,
            hasher,
        )
        .map(UploadWriter::file)
    }

    /// Deletes an idle session and its staged bytes (`UploadBusy` while a writer holds it).
    /// Cancel: the session is gone from the table; a leftover file or record is removed at
    /// the next open.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<(), StorageError> {
        if self.inner.shared_uploads() {
            return self.inner.shared_cancel(repo, id).await;
        }
        let key = id.to_string();
        {
            let mut sessions = self.inner.sessions.stripe(&key);
            match sessions.get(&key) {
                Some(slot) if slot.repo == *repo && slot.busy => {
                    return Err(StorageError::UploadBusy)
                }
                Some(slot) if slot.repo == *repo => sessions.remove(&key),
                _ => return Err(StorageError::UploadUnknown),
            };
        }
        self.inner
            .io
            .remove_file(&self.inner.store.upload_path(id))
            .await?;
        self.forget_session(&key).await
    }

    /// An anonymous session for a monolithic upload (POST with `?digest=`): no record, no
    /// table entry; dropping or abandoning the writer deletes its staged file.
    pub async fn begin_monolithic(&self, repo: &RepoName) -> Result<UploadWriter, StorageError> {
        self.inner.writable()?;
        let id = UploadId::random();
        let path = self.inner.store.upload_path(&id);
        self.inner.io.create_new(&path).await?;
        let guard = Arc::new(SessionGuard {
            inner: Arc::clone(&self.inner),
            id: id.to_string(),
            path: path.clone(),
            release: Mutex::new(Release::RemoveFile),
        });
        let file = self.inner.io.open_rw(&path).await?;
        FileWriter::new(
            Arc::clone(&self.inner),
            guard,
            id,
            repo.clone(),
            file,
            0,
            Some(Algorithm::Sha256.hasher()),
        )
        .map(UploadWriter::file)
    }

    /// GC of upload sessions: deletes every session idle for at least `idle` (no byte
    /// received since: the staged file's modification time, else the session's start) that
    /// no writer holds, with its staged bytes. A client coming back gets `UploadUnknown`.
    /// Returns the ids deleted. Blocking (std file and index calls): part of a GC pass.
    pub(crate) async fn expire_uploads(
        &self,
        idle: std::time::Duration,
    ) -> Result<Vec<String>, StorageError> {
        self.inner.writable()?;
        let now = index::now_ms();
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        if self.inner.shared_uploads() {
            return self.inner.shared_expire(idle_ms).await;
        }
        let mut stale = Vec::new();
        self.inner
            .index
            .visit(Cf::Uploads, b"", None, |key, value| {
                let record = UploadRecord::decode(value)?;
                let id = String::from_utf8_lossy(key).into_owned();
                stale.push((id, record.started_ms));
                Ok(true)
            })
            .await?;
        let mut expired = Vec::new();
        for (key, started_ms) in stale {
            let Ok(id) = key.parse::<UploadId>() else {
                continue;
            };
            let path = self.inner.store.upload_path(&id);
            let written_ms = std::fs::metadata(&path)
                .and_then(|metadata| metadata.modified())
                .ok()
                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |since| since.as_millis() as u64);
            if now.saturating_sub(started_ms.max(written_ms)) < idle_ms {
                continue;
            }
            {
                // The same stripe lock open_upload takes: a session is either held (skip it)
                // or gone from the table before anyone else can open it.
                // A session missing from the table is being finished or cancelled (its
                // record goes with that commit): never pull its staged file away.
                let mut sessions = self.inner.sessions.stripe(&key);
                if sessions.get(&key).is_none_or(|slot| slot.busy) {
                    continue;
                }
                sessions.remove(&key);
            }
            self.inner.io.remove_file_now(&path)?;
            let mut batch = index::Batch::default();
            batch.delete(Cf::Uploads, key.clone().into_bytes());
            self.inner.index.write(batch, self.inner.commit).await?;
            expired.push(key);
        }
        Ok(expired)
    }

    async fn forget_session(&self, key: &str) -> Result<(), StorageError> {
        self.inner.sessions.stripe(key).remove(key);
        let mut batch = index::Batch::default();
        batch.delete(Cf::Uploads, key.as_bytes().to_vec());
        self.inner.write_index(batch).await
    }
}
