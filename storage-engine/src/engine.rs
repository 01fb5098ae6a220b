//! `Engine`: the storage engine's public API (repositories, blobs) and its shared state.
//!
//! Rules: one `Engine` is shared by every shard (`Send + Sync`, cheap to clone: an `Arc`).
//! Reads take no lock. Every public read of the index is an `async fn` (so that an index that
//! answers over the network can be awaited, SHARED.md D1); on RocksDB it runs inline and its
//! future is ready at the first poll (point reads and short scans take microseconds). Every mutation is one RocksDB `WriteBatch`; when `commit` is on it is
//! written with a synced WAL on tokio's blocking pool, so the shard thread never waits on an
//! fsync and concurrent commits meet in RocksDB's group commit. Read-check-write sequences
//! inside a repository (manifest PUT/delete, blob unlink) hold the repository's stripe lock
//! (lock.rs); blob upload commits and mounts do not need it.
//! Upload sessions live in upload.rs and their writer in writer.rs, manifests in manifests.rs, fsck in fsck.rs.
use std::path::PathBuf;
use std::sync::Arc;

use crate::blob_backend::BlobBackend;
use crate::blobstore::BlobStore;
use crate::error::StorageError;
use crate::index::{self, BlobRecord, Cf, Index, RefKind};
use crate::index_stats::IndexStats;
use crate::io::{FaultInjector, FaultPoint, Io, IoBackendKind};
use crate::lock::{Held, StripedLocks};
use crate::oci::{Digest, RepoName};
use crate::stats::{timed, EngineStats};
use crate::upload::Sessions;
use crate::usage::Usage;

/// How to open the engine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Data directory (zot's `storage.rootDirectory`).
    pub root: PathBuf,
    /// Durable commits: fsync files and directories, sync the RocksDB WAL. Default true.
    pub commit: bool,
    /// File I/O backend.
    pub io: IoBackendKind,
    /// The index in PostgreSQL instead of RocksDB under `root` (several nodes, SHARED.md).
    pub postgres: Option<crate::index::PostgresOptions>,
    /// Committed blobs in this bucket instead of under `root/blobs` (SHARED.md D3); `root`
    /// still holds upload staging files (and the RocksDB index unless `postgres`).
    pub s3: Option<crate::s3::S3Options>,
}

impl EngineOptions {
    /// Durable commits with the portable (`Threads`) backend.
    pub fn new(root: impl Into<PathBuf>) -> EngineOptions {
        EngineOptions {
            root: root.into(),
            commit: true,
            io: IoBackendKind::Threads,
            postgres: None,
            s3: None,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) commit: bool,
    pub(crate) read_only: bool,
    pub(crate) index: Index,
    pub(crate) store: BlobStore,
    /// Where committed blobs live (blob_backend.rs).
    pub(crate) blobs: BlobBackend,
    pub(crate) io: Io,
    pub(crate) sessions: Sessions,
    /// Per-repository locks (manifest and tag commits, blob unlinks).
    pub(crate) locks: StripedLocks,
    /// Per-repository link locks (shared by blob finishes and mounts, exclusive for GC).
    pub(crate) links: StripedLocks,
    /// Per-digest locks (shared by a commit linking an existing blob, exclusive to create a
    /// blob record or for GC to remove one).
    pub(crate) blob_locks: StripedLocks,
    /// GC's state: pull times, repositories with garbage not yet old enough.
    pub(crate) gc: crate::gc::GcState,
    pub(crate) stats: Arc<EngineStats>,
    pub(crate) usage: Usage,
    /// The last [`Engine::downloads_by_repo`] and when it was counted.
    pub(crate) downloads: crate::search::DownloadsCache,
    /// Locks by name for records taken once (a single sign-on login in flight).
    pub(crate) named: StripedLocks,
}

/// The storage engine. Clone it or wrap it in an `Arc`; all clones share one store.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Engine")
            .field("root", &self.inner.store.root())
            .field("commit", &self.inner.commit)
            .field("io", &self.inner.io.kind)
            .finish()
    }
}

impl Engine {
    /// Creates the directories, opens RocksDB and recovers upload sessions (offset = staged
    /// file length; the hash state is rebuilt from the staged bytes on first use). Blocking:
    /// call before the shards start.
    pub fn open(options: EngineOptions) -> Result<Engine, StorageError> {
        Engine::open_inner(options, None, false)
    }

    /// Opens an existing store without writing anything (for `berth fsck` next to a running
    /// daemon, which holds RocksDB's lock). Mutating calls fail. Blocking.
    pub fn open_read_only(options: EngineOptions) -> Result<Engine, StorageError> {
        Engine::open_inner(options, None, true)
    }

    /// `open` with a fault injector wired into every I/O and index write (tests).
    pub fn open_with_faults(
        options: EngineOptions,
        faults: Arc<FaultInjector>,
    ) -> Result<Engine, StorageError> {
        Engine::open_inner(options, Some(faults), false)
    }

    fn open_inner(
        options: EngineOptions,
        faults: Option<Arc<FaultInjector>>,
        read_only: bool,
    ) -> Result<Engine, StorageError> {
        let store = BlobStore::new(options.root.clone());
        if !read_only {
            store.prepare()?;
        }
        let index = match &options.postgres {
            Some(postgres) => Index::open_postgres(postgres, read_only)?,
            None => Index::open(&store.index_dir(), read_only)?,
        };
        if !read_only {
            index::block_on(index.backfill_blob_links())?;
            index::block_on(crate::search::backfill::init(&index))?;
        }
        let blobs = match &options.s3 {
            Some(s3) => BlobBackend::S3(crate::s3::S3Blobs::new(s3.clone())?),
            None => BlobBackend::Files,
        };
        let usage = index::block_on(Usage::load(&index))?;
        let stats = Arc::new(EngineStats::default());
        let inner = Inner {
            commit: options.commit,
            read_only,
            index,
            store,
            blobs,
            io: Io {
                kind: options.io,
                faults,
                stats: stats.clone(),
            },
            sessions: Sessions::new(),
            locks: StripedLocks::new(b'R'),
            links: StripedLocks::new(b'L'),
            blob_locks: StripedLocks::new(b'D'),
            gc: crate::gc::GcState::default(),
            stats,
            usage,
            downloads: Default::default(),
            named: StripedLocks::new(b'N'),
        };
        index::block_on(inner.recover_uploads())?;
        Ok(Engine {
            inner: Arc::new(inner),
        })
    }

    // ---- measurements

    /// Latency histograms and maintenance counters.
    pub fn stats(&self) -> &EngineStats {
        &self.inner.stats
    }

    /// RocksDB's figures. Reads in-memory properties only (microseconds).
    pub async fn index_stats(&self) -> IndexStats {
        self.inner.index.stats()
    }

    /// The data directory (zot's `storageName` label).
    pub fn root(&self) -> &std::path::Path {
        self.inner.store.root()
    }

    // ---- repositories

    pub async fn repo_exists(&self, repo: &RepoName) -> Result<bool, StorageError> {
        self.inner
            .index
            .contains(Cf::Repos, repo.as_str().as_bytes())
            .await
    }

    /// Repository names sorted bytewise, all greater than `last`, at most `n`.
    pub async fn catalog(
        &self,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<RepoName>, StorageError> {
        let mut names = Vec::new();
        if n == 0 {
            return Ok(names);
        }
        self.inner
            .index
            .visit(Cf::Repos, b"", last.map(str::as_bytes), |key, _| {
                let name = std::str::from_utf8(key)
                    .ok()
                    .and_then(|text| text.parse::<RepoName>().ok())
                    .ok_or_else(|| StorageError::Corrupt("bad repository key".into()))?;
                names.push(name);
                Ok(names.len() < n)
            })
            .await?;
        Ok(names)
    }

    // ---- blobs

    /// Size of the blob if it is linked in `repo`.
    pub async fn stat_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, StorageError> {
        let digest_text = digest.to_string();
        let link = index::key(&[repo.as_str(), &digest_text]);
        if !self.inner.index.contains(Cf::RepoBlobs, &link).await? {
            return Ok(None);
        }
        match self
            .inner
            .index
            .get(Cf::Blobs, digest_text.as_bytes())
            .await?
        {
            Some(value) => Ok(Some(BlobRecord::decode(&value)?.size)),
            None => Err(StorageError::Corrupt(format!(
                "{repo} links {digest} but the blob has no record"
            ))),
        }
    }

    /// True if a manifest stored in `repo` references blob `digest` (config or layer),
    /// whether or not the blob is here: sync fetches such a blob on demand.
    pub async fn blob_referenced(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, StorageError> {
        self.inner
            .index
            .any_with_prefix(
                Cf::BlobRefs,
                &index::prefix(&[repo.as_str(), &digest.to_string()]),
                |_, value| Ok(RefKind::decode(value)? == RefKind::Blob),
            )
            .await
    }

    /// Final path of a blob when blobs are files (tests, tools); `blob_source` serves both
    /// backends. Only meaningful after `stat_blob` said it is linked.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.store.blob_path(digest)
    }

    /// Unlinks a blob from `repo`; the blob is queued for GC, which removes it once no
    /// repository links it. Cancel: the unlink either committed or not; the repository lock
    /// is released either way.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), StorageError> {
        let guard = self.inner.lock_repo(repo).await?;
        let digest_text = digest.to_string();
        let link = index::key(&[repo.as_str(), &digest_text]);
        if !self.inner.index.contains(Cf::RepoBlobs, &link).await? {
            return Err(StorageError::BlobUnknown(digest.clone()));
        }
        let referenced = self
            .inner
            .index
            .any_with_prefix(
                Cf::BlobRefs,
                &index::prefix(&[repo.as_str(), &digest_text]),
                |_, value| Ok(RefKind::decode(value)? == RefKind::Blob),
            )
            .await?;
        if referenced {
            return Err(StorageError::BlobReferenced(digest.clone()));
        }
        let mut batch = index::Batch::default();
        index::unlink(&mut batch, repo.as_str(), &digest_text);
        self.inner.write_held(batch, &guard).await?;
        self.inner.usage.touch(repo);
        Ok(())
    }

    /// Links `digest` into `to` (again) if it is linked in `to` already or in `from`. Returns
    /// false when neither holds (the caller then opens an upload session). Cancel: as
    /// delete_blob.
    pub async fn mount_blob(
        &self,
        from: Option<&RepoName>,
        to: &RepoName,
        digest: &Digest,
    ) -> Result<bool, StorageError> {
        // Already linked in `to`: the link is written again all the same, so the 201 starts
        // the push grace anew (GC never unlinks a link younger than gcDelay).
        let source = match (self.stat_blob(to, digest).await?, from) {
            (Some(_), _) => to,
            (None, Some(from)) => from,
            (None, None) => return Ok(false),
        };
        // Checked again under the digest lock: GC cannot remove the blob from here on.
        let mut guard = self.inner.digest_guard(digest).await?;
        let Some(size) = self.stat_blob(source, digest).await? else {
            return Ok(false);
        };
        self.inner
            .link_blob(to, digest, size, None, &mut guard)
            .await?;
        Ok(true)
    }
}

impl Engine {
    /// Links `digest` into `repo` if the store holds that blob, whichever repository linked
    /// it: for sync, which copies what an upstream names by digest, so the content is the
    /// same. Returns false when the store lacks it. Cancel: as delete_blob.
    pub async fn adopt_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StorageError> {
        let mut guard = self.inner.digest_guard(digest).await?;
        let Some(record) = self
            .inner
            .index
            .get(Cf::Blobs, digest.to_string().as_bytes())
            .await?
        else {
            return Ok(false);
        };
        let size = BlobRecord::decode(&record)?.size;
        self.inner
            .link_blob(repo, digest, size, None, &mut guard)
            .await?;
        Ok(true)
    }
}

/// A digest's lock held by a commit that links the blob: shared when the blob record exists
/// (it cannot go away while held), exclusive when this commit may create it.
pub(crate) type DigestGuard<'a> = Held<'a>;

impl Inner {
    /// Writes a batch: synced on the blocking pool when `commit` is on, else inline (an
    /// unsynced write only appends to the WAL in the page cache). Cancel: the blocking task
    /// runs to completion, so the batch is applied or not regardless of the caller.
    pub(crate) async fn write_index(
        self: &Arc<Self>,
        batch: index::Batch,
    ) -> Result<(), StorageError> {
        self.io.fault(FaultPoint::IndexWrite)?;
        if self.index.postgres().is_some() {
            return timed(&self.stats.fsync_wal, self.index.write(batch, true)).await;
        }
        if !self.commit {
            return self.index.write(batch, false).await;
        }
        let inner = Arc::clone(self);
        let write =
            tokio::task::spawn_blocking(move || index::block_on(inner.index.write(batch, true)));
        timed(&self.stats.fsync_wal, write)
            .await
            .map_err(|error| StorageError::Index(format!("index write task failed: {error}")))?
    }

    /// Writes a batch under `held`'s locks: as `write_index`, but on PostgreSQL through the
    /// connection holding them (a holder that lost its locks cannot write).
    pub(crate) async fn write_held(
        self: &Arc<Self>,
        batch: index::Batch,
        held: &Held<'_>,
    ) -> Result<(), StorageError> {
        if held.remote().is_none() {
            return self.write_index(batch).await;
        }
        self.io.fault(FaultPoint::IndexWrite)?;
        timed(
            &self.stats.fsync_wal,
            self.index.write_held(batch, true, held),
        )
        .await
    }

    /// Waits for `repo`'s lock, recording the wait.
    pub(crate) async fn lock_repo(&self, repo: &RepoName) -> Result<Held<'_>, StorageError> {
        let mut held = Held::default();
        timed(
            &self.stats.lock_wait,
            held.take(&self.index, &self.locks, repo.as_str(), false),
        )
        .await?;
        Ok(held)
    }

    /// The digest's lock for a commit about to link the blob (see `DigestGuard`). Take it
    /// before installing the file, hold it until `link_blob` returns.
    pub(crate) async fn digest_guard(
        &self,
        digest: &Digest,
    ) -> Result<DigestGuard<'_>, StorageError> {
        let digest_text = digest.to_string();
        if self
            .index
            .contains(Cf::Blobs, digest_text.as_bytes())
            .await?
        {
            let mut shared = Held::default();
            shared
                .take(&self.index, &self.blob_locks, &digest_text, true)
                .await?;
            // GC may have removed the record while this waited.
            if self
                .index
                .contains(Cf::Blobs, digest_text.as_bytes())
                .await?
            {
                return Ok(shared);
            }
        }
        let mut exclusive = Held::default();
        exclusive
            .take(&self.index, &self.blob_locks, &digest_text, false)
            .await?;
        Ok(exclusive)
    }

    /// Records a committed blob of `size` (if new) and links it into `repo`, creating the
    /// repository record when missing, in one batch with `extra` (the upload's cleanup).
    /// `_held` proves the caller holds the digest's lock: a record is only created under
    /// the exclusive one (the store's totals count it once), and GC cannot remove the blob
    /// meanwhile. The repository's link lock is held shared, so GC cannot remove the
    /// repository or this link mid-commit. Cancel: the batch is applied or not as a whole.
    pub(crate) async fn link_blob<'h>(
        self: &'h Arc<Self>,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        extra: Option<index::Batch>,
        held: &mut DigestGuard<'h>,
    ) -> Result<(), StorageError> {
        held.take(&self.index, &self.links, repo.as_str(), true)
            .await?;
        let (mut batch, created) = self.link_batch(repo, digest, size).await?;
        if let Some(extra) = extra {
            batch.extend(extra);
        }
        self.write_held(batch, held).await?;
        if created {
            self.usage.blob_added(size);
        }
        self.usage.touch(repo);
        Ok(())
    }

    /// Makes every index write so far durable (a WAL fsync, on the blocking pool).
    pub(crate) async fn sync_wal(self: &Arc<Self>) -> Result<(), StorageError> {
        self.io.fault(FaultPoint::IndexWrite)?;
        if self.index.rocks().is_none() {
            return Ok(()); // PostgreSQL: every commit is durable already
        }
        let inner = Arc::clone(self);
        tokio::task::spawn_blocking(move || inner.index.rocks().expect("checked").sync_wal())
            .await
            .map_err(|error| StorageError::Index(format!("WAL sync task failed: {error}")))?
    }

    /// Err unless the engine was opened for writing.
    pub(crate) fn writable(&self) -> Result<(), StorageError> {
        match self.read_only {
            true => Err(StorageError::Index("engine opened read-only".into())),
            false => Ok(()),
        }
    }

    /// Batch that records a committed blob of `size` and links it into `repo` (creating the
    /// repository record when missing). Existing blob and repository records are kept, so
    /// their creation times stay those of the first commit.
    /// The second value says whether the batch creates the blob record.
    async fn link_batch(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<(index::Batch, bool), StorageError> {
        let now = index::now_ms();
        let digest_text = digest.to_string();
        let mut batch = index::Batch::default();
        let created = !self
            .index
            .contains(Cf::Blobs, digest_text.as_bytes())
            .await?;
        if created {
            let record = BlobRecord {
                size,
                created_ms: now,
            };
            batch.put(Cf::Blobs, digest_text.clone().into_bytes(), record.encode());
        }
        index::link(&mut batch, repo.as_str(), &digest_text, now);
        self.repo_record(repo, &mut batch).await?;
        Ok((batch, created))
    }

    /// Adds the repository record to `batch` if the repository is new.
    pub(crate) async fn repo_record(
        &self,
        repo: &RepoName,
        batch: &mut index::Batch,
    ) -> Result<(), StorageError> {
        if !self
            .index
            .contains(Cf::Repos, repo.as_str().as_bytes())
            .await?
        {
            batch.put(
                Cf::Repos,
                repo.as_str().as_bytes().to_vec(),
                index::encode_time(index::now_ms()),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn engine_is_send_and_sync() {
        assert_send_sync::<Engine>();
    }
}
