//! Upload sessions: the in-memory session table, recovery at open, and `UploadWriter`.
//!
//! Rules:
//! - A session is bound to its repository; an id used under another repository is
//!   `UploadUnknown`. One writer at a time (`UploadBusy` otherwise).
//! - The session record (`uploads` family) is written unsynced: a session lost to power
//!   failure makes the client restart its upload, which the spec allows. Staged bytes are
//!   not fsynced per chunk either: after a crash the offset is the staged file's length,
//!   which never exceeds what the client sent. Only `finish` makes bytes durable.
//! - Bytes are hashed with sha256 while they arrive (inline on the shard: issue 5 moves
//!   large hashing to a pool). A session whose hash state is unknown (recovered at open, or
//!   released after a failed or cancelled write) re-hashes its staged bytes once on first
//!   use. A finish with a sha512 or blake3 digest hashes the staged file once with that
//!   algorithm instead (those uploads are rare; no second hasher runs for everyone).
//! - A writer that saw a failed or cancelled write is poisoned: its later calls fail and
//!   the session is released with an unknown length, re-read from the file by the next
//!   writer. `SessionGuard` keeps the session busy until every write it started has landed,
//!   even if the writer was dropped mid-write, so that re-read is exact.
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::direct::{AlignedBuf, ALIGN};
use crate::engine::{Engine, Inner};
use crate::error::StorageError;
use crate::index::{self, Cf, UploadRecord};
use crate::io::{FaultPoint, StagedFile};
use crate::oci::{Algorithm, Digest, Hasher, RepoName, UploadId};

const SESSION_STRIPES: usize = 64;

/// In-memory state of a session that no writer holds.
struct Slot {
    repo: RepoName,
    /// None: unknown, read the staged file's length.
    offset: Option<u64>,
    /// sha256 state of bytes [0, offset); None: re-hash on first use.
    hasher: Option<Hasher>,
    busy: bool,
    /// The staged file's directory entry and the session record are durable. A session
    /// starts non-durable (POST answers without an fsync) and becomes durable at its first
    /// persist (PATCH), the first time it holds acknowledged bytes.
    durable: bool,
}

/// The session table, striped by id so sessions never contend on one mutex.
pub(crate) struct Sessions {
    stripes: Box<[Mutex<HashMap<String, Slot>>]>,
}

impl Sessions {
    pub(crate) fn new() -> Sessions {
        Sessions {
            stripes: (0..SESSION_STRIPES).map(|_| Mutex::default()).collect(),
        }
    }

    fn stripe(&self, id: &str) -> MutexGuard<'_, HashMap<String, Slot>> {
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
enum Release {
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
struct SessionGuard {
    inner: Arc<Inner>,
    id: String,
    path: PathBuf,
    release: Mutex<Release>,
}

impl SessionGuard {
    fn set(&self, release: Release) {
        *self
            .release
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = release;
    }

    /// A kept session's length and hash state become unknown (re-read by the next writer).
    /// Anonymous and consumed sessions are unaffected.
    fn forget_state(&self) {
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

fn file_length(path: &std::path::Path) -> Result<Option<u64>, StorageError> {
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
    /// are removed.
    pub(crate) fn recover_uploads(&self) -> Result<(), StorageError> {
        let mut records = Vec::new();
        self.index.visit(Cf::Uploads, b"", None, |key, value| {
            records.push((key.to_vec(), UploadRecord::decode(value)?));
            Ok(true)
        })?;
        let mut stale = index::Batch::default();
        let mut live = std::collections::HashSet::new();
        for (key, record) in records {
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
                        offset: Some(length),
                        hasher: None,
                        busy: false,
                        durable: true,
                    };
                    self.sessions.stripe(&id).insert(id, slot);
                }
                _ => stale.delete(Cf::Uploads, key),
            }
        }
        if self.read_only {
            return Ok(());
        }
        self.index.write(stale, false)?;
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
        let inner = &self.inner;
        inner.writable()?;
        let id = UploadId::random();
        inner.io.create_new(&inner.store.upload_path(&id)).await?;
        let record = UploadRecord {
            started_ms: index::now_ms(),
            repo: repo.clone(),
        };
        let mut batch = index::Batch::default();
        batch.put(Cf::Uploads, id.to_string().into_bytes(), record.encode());
        inner.io.fault(FaultPoint::IndexWrite)?;
        inner.index.write(batch, false)?;
        let slot = Slot {
            repo: repo.clone(),
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

    /// Bytes received so far. While a writer holds the session this is the offset it had
    /// reached at its last completed write.
    pub fn upload_status(&self, repo: &RepoName, id: &UploadId) -> Result<u64, StorageError> {
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
        // Resuming at an unaligned offset: the partial last block goes back into the buffer,
        // to be rewritten whole by the next O_DIRECT write.
        let base = offset / ALIGN as u64 * ALIGN as u64;
        let mut pending = AlignedBuf::new();
        if offset > base {
            let tail = self
                .inner
                .io
                .read_tail(&file, base, (offset - base) as usize)?;
            pending.fill(&tail);
        }
        Ok(UploadWriter {
            inner: Arc::clone(&self.inner),
            guard,
            id: id.clone(),
            repo: repo.clone(),
            path,
            file,
            offset,
            base,
            pending,
            pending_on_file: true,
            hasher,
            poisoned: false,
        })
    }

    /// Deletes an idle session and its staged bytes (`UploadBusy` while a writer holds it).
    /// Cancel: the session is gone from the table; a leftover file or record is removed at
    /// the next open.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<(), StorageError> {
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
        Ok(UploadWriter {
            inner: Arc::clone(&self.inner),
            guard,
            id,
            repo: repo.clone(),
            path,
            file,
            offset: 0,
            base: 0,
            pending: AlignedBuf::new(),
            pending_on_file: true,
            hasher: Some(Algorithm::Sha256.hasher()),
            poisoned: false,
        })
    }

    async fn forget_session(&self, key: &str) -> Result<(), StorageError> {
        self.inner.sessions.stripe(key).remove(key);
        let mut batch = index::Batch::default();
        batch.delete(Cf::Uploads, key.as_bytes().to_vec());
        self.inner.write_index(batch).await
    }
}

/// Exclusive writer of one upload session. Lives on one shard (not `Send` with `Uring`).
pub struct UploadWriter {
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

impl std::fmt::Debug for UploadWriter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("UploadWriter")
            .field("id", &self.id.to_string())
            .field("repo", &self.repo.as_str())
            .field("offset", &self.offset)
            .finish()
    }
}

impl UploadWriter {
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn id(&self) -> &UploadId {
        &self.id
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        match self.poisoned {
            true => Err(StorageError::Io(std::io::Error::other(
                "upload writer saw a failed write; reopen the session",
            ))),
            false => Ok(()),
        }
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
    /// file, verify the digest, rename into blobs/, fsync the directory, then one synced
    /// WriteBatch (blob record, repo link, repo record, session deleted). Durable on return.
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
        if durable {
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
        self.inner.sessions.stripe(&key).remove(&key);
        self.guard.set(Release::Gone);
        let mut batch = index::Batch::default();
        batch.delete(Cf::Uploads, key.into_bytes());
        if actual != *expected {
            self.inner.io.remove_file(&self.path).await?;
            self.inner.index.write(batch, false)?;
            return Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let installed = self
            .inner
            .store
            .install(&self.inner.io, &self.path, expected, durable)
            .await;
        if let Err(error) = installed {
            // The session is gone: do not leave its staged bytes behind (NotFound is fine).
            let _ = self.inner.io.remove_file(&self.path).await;
            return Err(error.into());
        }
        let mut link = self.inner.link_batch(&self.repo, expected, self.offset)?;
        link.extend(batch);
        self.inner.write_index(link).await?;
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

impl Drop for UploadWriter {
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
