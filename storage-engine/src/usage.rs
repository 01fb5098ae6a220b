//! Storage usage for metrics: bytes per repository and the blob store's totals, kept so that
//! a scrape never walks the disk and costs little more than the repositories that changed.
//!
//! Rules:
//! - Store totals (blob records and their bytes) are counted once at open from the `blobs`
//!   family and then moved by the commit that creates a blob record (it holds that digest's
//!   stripe lock, so a blob is counted once however many uploads race on it) and by GC's
//!   sweep, which removes records under the same lock.
//! - A repository's usage is the sum of the sizes of the blobs it links plus the bytes of its
//!   manifests, the bytes a client pulling everything would fetch. Every mutation of a
//!   repository marks it dirty after its batch is written; [`Engine::usage`] recomputes only
//!   dirty repositories (a prefix scan each), and every repository on its first call.
//! - Several nodes on one PostgreSQL index: a node's counters and dirty sets see only its own
//!   commits, so there every batch that changes a repository's links, manifests or record
//!   also writes a new change token for it (`meta/usage.changed\0<repo>`, in the same
//!   statement: [`with_change_tokens`]). A refresh (a quota check, a scrape) reads the tokens
//!   (one scan) and recomputes the repositories whose token is not the one it computed
//!   them at, whichever node committed. The store totals are counted by the server
//!   (`count`/`sum` over `blobs`, one query) at most every [`TOTALS_TTL`], and at once after
//!   this node created or removed a blob record.
//! - Upload sessions open: this node's session table when blobs are files (each node stages
//!   its own). When blobs are in S3 the sessions are records in the index (`upload_state`,
//!   upload_shared.rs) that every node shares, so the figure is counted there and is
//!   registry-wide on a shared index; the count is reused for [`TOTALS_TTL`] unless this
//!   node opened or closed a session since (on RocksDB, where every change is this node's,
//!   it is then exact).
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Mutex;

use crate::engine::Engine;
use crate::error::StorageError;
use crate::index::{self, Batch, BlobRecord, Cf, Index};

/// How long a node reuses the store totals it counted on a shared index (another node's
/// blobs show in its figures this much later at most).
pub(crate) const TOTALS_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// `meta` key prefix of the repositories' change tokens (PostgreSQL index, module rules).
const TOKEN_PREFIX: &[u8] = b"usage.changed\0";

fn token_key(repo: &[u8]) -> Vec<u8> {
    [TOKEN_PREFIX, repo].concat()
}

/// `batch`, plus a new change token for each repository whose usage it may change (its
/// links, manifests or record: module rules), unless the batch writes that token itself.
/// For the PostgreSQL index: other nodes then recompute those repositories.
pub(crate) fn with_change_tokens(mut batch: Batch) -> Batch {
    let mut keys = BTreeSet::new();
    let mut own = HashSet::new();
    for (cf, key, _) in batch.ops() {
        let repo = match cf {
            Cf::Repos => key.as_slice(),
            Cf::RepoBlobs | Cf::Manifests => key.split(|byte| *byte == 0).next().unwrap_or(key),
            Cf::Meta if key.starts_with(TOKEN_PREFIX) => {
                own.insert(key.clone());
                continue;
            }
            _ => continue,
        };
        keys.insert(token_key(repo));
    }
    let token = uuid::Uuid::new_v4().as_bytes()[..8].to_vec();
    for key in keys.into_iter().filter(|key| !own.contains(key)) {
        batch.put(Cf::Meta, key, token.clone());
    }
    batch
}

/// Drops `repo`'s change token (GC removing the repository record: nodes that counted it
/// see the token gone and recompute it, finding it gone).
pub(crate) fn drop_change_token(batch: &mut Batch, repo: &str) {
    batch.delete(Cf::Meta, token_key(repo.as_bytes()));
}
use crate::oci::RepoName;

/// Storage figures for a scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageSnapshot {
    /// Committed blobs in the store (each stored once).
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Bytes per repository, sorted by name.
    pub repos: Vec<(RepoName, u64)>,
    /// Sum over repositories of their linked blob bytes, minus the store's blob bytes: what
    /// storing each blob once saves.
    pub dedupe_saved_bytes: u64,
}

/// Stripes of the dirty set: a commit locks only its repository's stripe, so commits in
/// different repositories on different shards do not meet on one mutex.
const DIRTY_STRIPES: usize = 64;

#[derive(Default)]
struct RepoUsage {
    loaded: bool,
    /// Per repository, in name order: (linked blob bytes, manifest bytes).
    sizes: BTreeMap<RepoName, (u64, u64)>,
    /// Shared index: each repository's change token when its sizes were computed.
    tokens: HashMap<RepoName, Vec<u8>>,
}

/// Repositories changed since their consumer last looked, striped.
pub(crate) struct DirtySet {
    stripes: Box<[Mutex<HashSet<RepoName>>]>,
}

impl Default for DirtySet {
    fn default() -> DirtySet {
        DirtySet {
            stripes: (0..DIRTY_STRIPES).map(|_| Mutex::default()).collect(),
        }
    }
}

impl DirtySet {
    pub(crate) fn mark(&self, repo: &RepoName) {
        let mut hasher = DefaultHasher::new();
        repo.hash(&mut hasher);
        let stripe = (hasher.finish() % DIRTY_STRIPES as u64) as usize;
        // At most one entry per repository, so the set stays bounded if nobody ever asks.
        let mut dirty = self.stripes[stripe]
            .lock()
            .expect("usage lock is never poisoned");
        if !dirty.contains(repo) {
            dirty.insert(repo.clone());
        }
    }

    /// Takes every repository marked since the last call.
    pub(crate) fn take(&self) -> Vec<RepoName> {
        let mut taken = Vec::new();
        for stripe in self.stripes.iter() {
            let mut dirty = stripe.lock().expect("usage lock is never poisoned");
            taken.extend(dirty.drain());
        }
        taken
    }
}

pub(crate) struct Usage {
    blobs: AtomicU64,
    blob_bytes: AtomicU64,
    /// Touched only by [`Engine::usage`] (a scrape).
    repos: Mutex<RepoUsage>,
    /// Changed since the last scrape.
    dirty: DirtySet,
    /// Changed since the last GC pass (gc/).
    pub(crate) gc_dirty: DirtySet,
    /// Shared index: the store totals (blobs, bytes) last counted and when; `None` after
    /// this node changed them.
    totals: Mutex<Option<(std::time::Instant, u64, u64)>>,
    /// Blobs in S3: upload sessions this node opened or closed (module rules).
    session_changes: AtomicU64,
    /// Blobs in S3: the upload sessions last counted, when, and `session_changes` before
    /// that count began (a count that may have missed this node's change is not reused).
    sessions: Mutex<Option<(std::time::Instant, u64, u64)>>,
}

impl Default for Usage {
    fn default() -> Usage {
        Usage {
            blobs: AtomicU64::new(0),
            blob_bytes: AtomicU64::new(0),
            repos: Mutex::default(),
            dirty: DirtySet::default(),
            gc_dirty: DirtySet::default(),
            totals: Mutex::default(),
            session_changes: AtomicU64::new(0),
            sessions: Mutex::default(),
        }
    }
}

impl Usage {
    /// Counts the blob records (one sequential scan of `blobs`). Blocking; at open. A shared
    /// index counts at each snapshot instead (module rules).
    pub(crate) async fn load(index: &Index) -> Result<Usage, StorageError> {
        let usage = Usage::default();
        if index.postgres().is_some() {
            return Ok(usage);
        }
        index
            .visit(Cf::Blobs, b"", None, |_, value| {
                usage.blob_added(BlobRecord::decode(value)?.size);
                Ok(true)
            })
            .await?;
        Ok(usage)
    }

    pub(crate) fn blob_added(&self, size: u64) {
        self.blobs.fetch_add(1, Relaxed);
        self.blob_bytes.fetch_add(size, Relaxed);
        self.forget_totals();
    }

    /// A blob record and its file are gone (GC).
    pub(crate) fn blob_removed(&self, size: u64) {
        self.blobs.fetch_sub(1, Relaxed);
        self.blob_bytes.fetch_sub(size, Relaxed);
        self.forget_totals();
    }

    fn forget_totals(&self) {
        *self.totals.lock().expect("usage lock is never poisoned") = None;
    }

    /// The store totals (blob records, their bytes): this node's counters on RocksDB; on a
    /// shared index counted by the server, reused for [`TOTALS_TTL`].
    async fn totals(&self, index: &Index) -> Result<(u64, u64), StorageError> {
        let Some(pg) = index.postgres() else {
            return Ok((self.blobs.load(Relaxed), self.blob_bytes.load(Relaxed)));
        };
        let cached = *self.totals.lock().expect("usage lock is never poisoned");
        if let Some((at, blobs, bytes)) = cached {
            if at.elapsed() < TOTALS_TTL {
                return Ok((blobs, bytes));
            }
        }
        let at = std::time::Instant::now();
        let (blobs, bytes) = pg.size_totals(Cf::Blobs).await?;
        *self.totals.lock().expect("usage lock is never poisoned") = Some((at, blobs, bytes));
        Ok((blobs, bytes))
    }

    /// This node created or deleted an upload session's records in the index (blobs in S3).
    /// Call after the batch is written.
    pub(crate) fn sessions_changed(&self) {
        self.session_changes.fetch_add(1, SeqCst);
    }

    /// Upload sessions recorded in the index (blobs in S3), reused for [`TOTALS_TTL`] unless
    /// this node changed them since (module rules).
    async fn shared_sessions(&self, index: &Index) -> Result<u64, StorageError> {
        // Read before counting: a change written after this makes the count stale.
        let changes = self.session_changes.load(SeqCst);
        let cached = *self.sessions.lock().expect("usage lock is never poisoned");
        if let Some((at, counted_after, sessions)) = cached {
            if counted_after == changes && at.elapsed() < TOTALS_TTL {
                return Ok(sessions);
            }
        }
        let at = std::time::Instant::now();
        let sessions = index.count(Cf::UploadState).await?;
        *self.sessions.lock().expect("usage lock is never poisoned") =
            Some((at, changes, sessions));
        Ok(sessions)
    }

    /// Marks `repo` changed for the next snapshot and the next GC pass. Call after its batch
    /// is written.
    pub(crate) fn touch(&self, repo: &RepoName) {
        self.dirty.mark(repo);
        self.gc_dirty.mark(repo);
    }

    /// Marks `repo` for the next snapshot only (GC's own changes).
    pub(crate) fn touch_usage(&self, repo: &RepoName) {
        self.dirty.mark(repo);
    }
}

/// (linked blob bytes, manifest bytes) of one repository, read from the index.
async fn repo_sizes(index: &Index, repo: &str) -> Result<(u64, u64), StorageError> {
    let prefix = index::prefix(&[repo]);
    let mut blob_bytes = 0;
    let mut pages = crate::index::Pages::new(Cf::RepoBlobs, &prefix);
    while let Some(page) = pages.next(index).await? {
        for (key, _) in &page {
            let key = key.as_slice();
            let digest = &key[prefix.len()..];
            if let Some(record) = index.get(Cf::Blobs, digest).await? {
                blob_bytes += BlobRecord::decode(&record)?.size;
            }
        }
    }
    let mut manifest_bytes = 0;
    index
        .visit(Cf::Manifests, &prefix, None, |_, value| {
            // The record's header is a few dozen bytes; count the manifest itself.
            manifest_bytes += index::ManifestRecord::decode(value)?.bytes.len() as u64;
            Ok(true)
        })
        .await?;
    Ok((blob_bytes, manifest_bytes))
}

/// Every repository's change token (shared index): one scan of `meta`.
async fn change_tokens(index: &Index) -> Result<HashMap<RepoName, Vec<u8>>, StorageError> {
    let mut tokens = HashMap::new();
    index
        .visit(Cf::Meta, TOKEN_PREFIX, None, |key, value| {
            let name = std::str::from_utf8(&key[TOKEN_PREFIX.len()..])
                .ok()
                .and_then(|text| text.parse::<RepoName>().ok());
            if let Some(name) = name {
                tokens.insert(name, value.to_vec());
            }
            Ok(true)
        })
        .await?;
    Ok(tokens)
}

impl Engine {
    /// Storage usage: store totals, bytes per repository, dedupe savings. Blocking (RocksDB
    /// scans of the repositories changed since the last call; of every repository on the
    /// first call): await it on the blocking pool, never on a shard.
    pub async fn usage(&self) -> Result<UsageSnapshot, StorageError> {
        self.refresh_usage().await?;
        let inner = &self.inner;
        let (blobs, blob_bytes) = inner.usage.totals(&inner.index).await?;
        let repos = inner
            .usage
            .repos
            .lock()
            .expect("usage lock is never poisoned");
        let linked: u64 = repos.sizes.values().map(|(blobs, _)| blobs).sum();
        let listed = repos
            .sizes
            .iter()
            .map(|(name, (blobs, manifests))| (name.clone(), blobs + manifests))
            .collect();
        Ok(UsageSnapshot {
            blobs,
            blob_bytes,
            repos: listed,
            dedupe_saved_bytes: linked.saturating_sub(blob_bytes),
        })
    }

    /// Recomputes the repositories changed since the last call (every one the first time),
    /// on a shared index whichever node changed them (module rules).
    async fn refresh_usage(&self) -> Result<(), StorageError> {
        let inner = &self.inner;
        // Read before any size: a commit after this leaves a token the next call sees.
        let tokens = match inner.index.postgres() {
            Some(_) => Some(change_tokens(&inner.index).await?),
            None => None,
        };
        let loaded = {
            let repos = inner.usage.repos.lock();
            repos.expect("usage lock is never poisoned").loaded
        };
        let dirty = inner.usage.dirty.take();
        let mut names: Vec<RepoName> = if loaded {
            dirty
        } else {
            let mut all = Vec::new();
            inner
                .index
                .visit(Cf::Repos, b"", None, |key, _| {
                    let name = std::str::from_utf8(key)
                        .ok()
                        .and_then(|text| text.parse::<RepoName>().ok())
                        .ok_or_else(|| StorageError::Corrupt("bad repository key".into()))?;
                    all.push(name);
                    Ok(true)
                })
                .await?;
            all
        };
        if let Some(tokens) = &tokens {
            let repos = inner.usage.repos.lock();
            let repos = repos.expect("usage lock is never poisoned");
            let changed = tokens
                .iter()
                .filter(|(name, token)| repos.tokens.get(*name) != Some(token))
                .map(|(name, _)| name);
            let dropped = repos
                .tokens
                .keys()
                .filter(|name| !tokens.contains_key(*name));
            let mut all: BTreeSet<RepoName> = names.drain(..).collect();
            all.extend(changed.chain(dropped).cloned());
            names = all.into_iter().collect();
        }
        // Mutations that land while this runs mark their repository dirty again, so nothing
        // is lost, only recounted by the next call.
        let mut computed = Vec::with_capacity(names.len());
        for name in names {
            // A repository GC removed has no record any more and leaves the figures.
            let exists = inner
                .index
                .contains(Cf::Repos, name.as_str().as_bytes())
                .await?;
            let sizes = match exists {
                true => Some(repo_sizes(&inner.index, name.as_str()).await?),
                false => None,
            };
            computed.push((name, sizes));
        }
        let mut repos = inner
            .usage
            .repos
            .lock()
            .expect("usage lock is never poisoned");
        repos.loaded = true;
        for (name, _) in &computed {
            match tokens.as_ref().and_then(|tokens| tokens.get(name)) {
                Some(token) => repos.tokens.insert(name.clone(), token.clone()),
                None => repos.tokens.remove(name),
            };
        }
        for (name, sizes) in computed {
            match sizes {
                Some(sizes) => repos.sizes.insert(name, sizes),
                None => repos.sizes.remove(&name),
            };
        }
        Ok(())
    }

    /// Bytes used by, and the number of, the repositories whose names `matches` accepts
    /// (a quota's namespace), with changed repositories recomputed first. Blocking (as
    /// [`Engine::usage`], without building the whole snapshot).
    pub async fn namespace_usage(
        &self,
        matches: &dyn Fn(&RepoName) -> bool,
    ) -> Result<(u64, usize), StorageError> {
        self.refresh_usage().await?;
        let repos = self
            .inner
            .usage
            .repos
            .lock()
            .expect("usage lock is never poisoned");
        let mut bytes = 0;
        let mut count = 0;
        for (name, (blobs, manifests)) in repos.sizes.iter() {
            if matches(name) {
                bytes += blobs + manifests;
                count += 1;
            }
        }
        Ok((bytes, count))
    }

    /// Upload sessions currently open (received, not yet committed or cancelled). Blobs on
    /// files: this node's sessions. Blobs in S3: the sessions recorded in the index, which
    /// every node shares, so on a shared (PostgreSQL) index the figure is registry-wide, the
    /// same on every node, and up to [`TOTALS_TTL`] old (module rules). May scan the index:
    /// await it on the blocking pool, never on a shard.
    pub async fn upload_sessions_open(&self) -> Result<u64, StorageError> {
        let inner = &self.inner;
        if !inner.shared_uploads() {
            return Ok(inner.sessions.len() as u64);
        }
        inner.usage.shared_sessions(&inner.index).await
    }
}
