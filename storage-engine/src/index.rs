//! The index: column families, key layout, write batches (value codecs: index_records.rs), and
//! its two backends (RocksDB: index_rocks.rs; PostgreSQL: index_pg.rs).
//!
//! Rules: keys are byte strings of validated names joined by a NUL byte (no name, tag or
//! digest can contain NUL), so a prefix `a\0` matches repository `a` exactly and never
//! `a/b` or `ab`. Values have fixed binary layouts (big-endian integers, u16 length prefixes)
//! drawn in DESIGN.md; decoding a bad value is `StorageError::Corrupt`, never a panic.
//! Reads and writes are async; on RocksDB they run inline (microseconds) and `Index::write`
//! with `sync` blocks on the WAL fsync, so it must only be awaited on the blocking pool
//! (engine.rs does that).
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::StorageError;
use crate::search::summaries;

/// Column families, one per kind of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cf {
    Blobs,
    RepoBlobs,
    Manifests,
    Tags,
    Referrers,
    BlobRefs,
    Repos,
    Uploads,
    /// scrub results per blob (scrub.rs).
    Scrub,
    /// `repo_blobs` reversed (`digest\0repo`): which repositories link a blob (GC).
    BlobLinks,
    /// Blobs that lost a link and may be garbage (GC's sweep list).
    GcQueue,
    /// Last pull time and count per manifest (retention).
    Pulls,
    /// Search: one record per manifest (search/meta.rs).
    Images,
    /// Search: one summary per repository with an image tag (search/refresh.rs).
    RepoMeta,
    /// Search: `digest\0repo\0manifest` for every digest a manifest is or contains.
    Digests,
    /// userprefs: `user\0kind\0repo` (stars, bookmarks) and `\0stars\0repo` counts.
    UserPrefs,
    /// Engine state: the search backfill's progress.
    Meta,
    /// Search: what each repository's tagged images hold, counted (search/counts.rs).
    RepoRefs,
    /// Search: `digest\0repo\0tag\0manifest` for every digest a tagged image holds
    /// (search/tagged.rs).
    Tagged,
    /// Browser login sessions, keyed by the SHA-256 of their token (sessions.rs). Not
    /// upload sessions, which live in `Uploads`.
    Sessions,
    /// The trust extension: keys, certificates, signature verdicts (trust.rs).
    Trust,
    /// API keys (`http.auth.apikey`), by the SHA-256 of the key, with each user's list and
    /// last uses (apikeys.rs).
    ApiKeys,
    /// Users' groups from their identity provider's last login (groups.rs).
    UserGroups,
    /// Single sign-on logins in flight, by the SHA-256 of their state (ssologins.rs).
    SsoLogins,
    /// Upload sessions whose bytes are in the bucket, by id: offset, hash state, multipart
    /// parts, tail and writer lease (upload_shared.rs). Beside their `Uploads` record.
    UploadState,
}

impl Cf {
    pub(crate) const ALL: [Cf; 25] = [
        Cf::Blobs,
        Cf::RepoBlobs,
        Cf::Manifests,
        Cf::Tags,
        Cf::Referrers,
        Cf::BlobRefs,
        Cf::Repos,
        Cf::Uploads,
        Cf::Scrub,
        Cf::BlobLinks,
        Cf::GcQueue,
        Cf::Pulls,
        Cf::Images,
        Cf::RepoMeta,
        Cf::Digests,
        Cf::UserPrefs,
        Cf::Meta,
        Cf::RepoRefs,
        Cf::Tagged,
        Cf::Sessions,
        Cf::Trust,
        Cf::ApiKeys,
        Cf::UserGroups,
        Cf::SsoLogins,
        Cf::UploadState,
    ];

    /// The family's number in the PostgreSQL index: its place in [`Cf::ALL`], so new
    /// families are only ever appended there.
    pub(crate) fn id(self) -> i16 {
        Cf::ALL
            .iter()
            .position(|cf| *cf == self)
            .expect("every family is in ALL") as i16
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Cf::Blobs => "blobs",
            Cf::RepoBlobs => "repo_blobs",
            Cf::Manifests => "manifests",
            Cf::Tags => "tags",
            Cf::Referrers => "referrers",
            Cf::BlobRefs => "blob_refs",
            Cf::Repos => "repos",
            Cf::Uploads => "uploads",
            Cf::Scrub => "scrub",
            Cf::BlobLinks => "blob_links",
            Cf::GcQueue => "gc_queue",
            Cf::Pulls => "pulls",
            Cf::Images => "images",
            Cf::RepoMeta => "repo_meta",
            Cf::Digests => "digests",
            Cf::UserPrefs => "user_prefs",
            Cf::Meta => "meta",
            Cf::RepoRefs => "repo_refs",
            Cf::Tagged => "tagged",
            Cf::Sessions => "sessions",
            Cf::Trust => "trust",
            Cf::ApiKeys => "api_keys",
            Cf::UserGroups => "user_groups",
            Cf::SsoLogins => "sso_logins",
            Cf::UploadState => "upload_state",
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// `parts` joined by NUL.
pub(crate) fn key(parts: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|part| part.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part.as_bytes());
    }
    key
}

/// `parts` each followed by NUL: the prefix of every key that extends them.
pub(crate) fn prefix(parts: &[&str]) -> Vec<u8> {
    let mut prefix = key(parts);
    prefix.push(0);
    prefix
}

/// Splits a key into its NUL-separated UTF-8 parts.
pub(crate) fn split_key(key: &[u8]) -> Result<Vec<&str>, StorageError> {
    key.split(|byte| *byte == 0)
        .map(|part| std::str::from_utf8(part).map_err(|_| corrupt("key is not UTF-8", key)))
        .collect()
}

#[path = "index_records.rs"]
mod records;
pub(crate) use records::*;

/// Adds a link of `digest` into `repo` (made at `now`) to `batch`: `repo_blobs` and its
/// reverse `blob_links`, always written together.
pub(crate) fn link(batch: &mut Batch, repo: &str, digest: &str, now: u64) {
    batch.put(Cf::RepoBlobs, key(&[repo, digest]), encode_time(now));
    batch.put(Cf::BlobLinks, key(&[digest, repo]), Vec::new());
}

/// Removes the link of `digest` from `repo` and queues the blob for GC's sweep.
pub(crate) fn unlink(batch: &mut Batch, repo: &str, digest: &str) {
    batch.delete(Cf::RepoBlobs, key(&[repo, digest]));
    batch.delete(Cf::BlobLinks, key(&[digest, repo]));
    batch.put(
        Cf::GcQueue,
        digest.as_bytes().to_vec(),
        encode_time(now_ms()),
    );
}

/// A write batch built without touching RocksDB types, so it can cross into the blocking
/// pool (rocksdb's WriteBatch is not `Send`).
#[derive(Default)]
pub(crate) struct Batch {
    ops: Vec<BatchOp>,
}

/// One op of a batch: family, key, value (`None` deletes).
pub(crate) type BatchOp = (Cf, Vec<u8>, Option<Vec<u8>>);

impl Batch {
    pub(crate) fn put(&mut self, cf: Cf, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((cf, key, Some(value)));
    }

    pub(crate) fn delete(&mut self, cf: Cf, key: Vec<u8>) {
        self.ops.push((cf, key, None));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The ops so far, in order: (family, key, value; `None` deletes).
    pub(crate) fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    pub(crate) fn extend(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }
}

#[path = "index_scratch.rs"]
pub(crate) mod tempfile_dir;

#[path = "index_rocks.rs"]
mod rocks;
pub(crate) use rocks::RocksIndex;

#[path = "index_pg.rs"]
pub(crate) mod pg;
pub(crate) use pg::PgIndex;
pub use pg::PostgresOptions;

/// Where the index lives: RocksDB in the data directory (the default, one node), or
/// PostgreSQL (several nodes, SHARED.md D1).
// One value per engine: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    Rocks(RocksIndex),
    Postgres(PgIndex),
}

/// The index. Every read and write goes through here; the RocksDB arm answers inline (its
/// futures are ready at the first poll), the PostgreSQL arm over the network.
pub(crate) struct Index {
    pub(crate) backend: Backend,
    /// Every repository's search summary, kept equal to `repo_meta` by [`Index::write`].
    pub(crate) summaries: crate::search::summaries::Summaries,
}

/// Rows a PostgreSQL scan fetches first; each further page doubles, up to [`PAGE_MAX`]
/// (most scans stop after a few entries: `any_with_prefix`, a catalog page).
const PAGE_FIRST: i64 = 16;
const PAGE_MAX: i64 = 1024;

impl Index {
    /// Opens (creating if needed) the RocksDB index at `path`, or a read-only secondary.
    pub(crate) fn open(path: &Path, read_only: bool) -> Result<Index, StorageError> {
        Index::with(Backend::Rocks(RocksIndex::open(path, read_only)?))
    }

    /// Connects to the PostgreSQL index, creating or upgrading its schema unless read-only.
    pub(crate) fn open_postgres(
        options: &PostgresOptions,
        read_only: bool,
    ) -> Result<Index, StorageError> {
        Index::with(Backend::Postgres(PgIndex::open(options, read_only)?))
    }

    fn with(backend: Backend) -> Result<Index, StorageError> {
        let index = Index {
            backend,
            summaries: Default::default(),
        };
        block_on(index.reload_summaries())?;
        Ok(index)
    }

    /// Loads the summaries' copy from the index: the change token first, then the rows.
    async fn reload_summaries(&self) -> Result<(), StorageError> {
        let token = match self.postgres() {
            Some(_) => self.get(Cf::Meta, summaries::TOKEN_KEY).await?,
            None => None,
        };
        let mut rows = Vec::new();
        self.visit(Cf::RepoMeta, b"", None, |key, value| {
            rows.push((key.to_vec(), value.to_vec()));
            Ok(true)
        })
        .await?;
        self.summaries.replace(rows, token)
    }

    /// Every repository's summary (search listings): the in-memory copy, reloaded first on
    /// the PostgreSQL index when another node changed a summary since it was loaded.
    pub(crate) async fn repo_listing(&self) -> Result<summaries::RepoListing, StorageError> {
        if self.postgres().is_some()
            && self.get(Cf::Meta, summaries::TOKEN_KEY).await? != self.summaries.token()
        {
            self.reload_summaries().await?;
        }
        self.summaries.listing()
    }

    /// The RocksDB index, when that is the backend (its figures, compaction, WAL).
    pub(crate) fn rocks(&self) -> Option<&RocksIndex> {
        match &self.backend {
            Backend::Rocks(rocks) => Some(rocks),
            Backend::Postgres(_) => None,
        }
    }

    /// The PostgreSQL index, when that is the backend (its locks).
    pub(crate) fn postgres(&self) -> Option<&PgIndex> {
        match &self.backend {
            Backend::Rocks(_) => None,
            Backend::Postgres(pg) => Some(pg),
        }
    }

    pub(crate) async fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        match &self.backend {
            Backend::Rocks(rocks) => rocks.get(cf, key),
            Backend::Postgres(pg) => pg.get(cf, key).await,
        }
    }

    pub(crate) async fn contains(&self, cf: Cf, key: &[u8]) -> Result<bool, StorageError> {
        match &self.backend {
            Backend::Rocks(rocks) => rocks.contains(cf, key),
            Backend::Postgres(pg) => Ok(pg.get(cf, key).await?.is_some()),
        }
    }

    /// Calls `visit` for each key starting with `prefix` in order, starting after `after`
    /// (exclusive) when given, until `visit` returns false.
    pub(crate) async fn visit(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StorageError>,
    ) -> Result<(), StorageError> {
        let pg = match &self.backend {
            Backend::Rocks(rocks) => return rocks.visit(cf, prefix, after, visit),
            Backend::Postgres(pg) => pg,
        };
        // The first key wanted: the prefix itself, or the smallest key after `after`.
        let mut from = match after {
            Some(after) if after >= prefix => [after, &[0]].concat(),
            _ => prefix.to_vec(),
        };
        let until = successor(prefix);
        let mut page = PAGE_FIRST;
        loop {
            let rows = pg.scan(cf, &from, until.as_deref(), page).await?;
            let full = rows.len() as i64 == page;
            for (key, value) in &rows {
                if !visit(key, value)? {
                    return Ok(());
                }
            }
            match rows.last() {
                Some((last, _)) if full => from = [last.as_slice(), &[0]].concat(),
                _ => return Ok(()),
            }
            page = (page * 2).min(PAGE_MAX);
        }
    }

    /// How many records `cf` holds: a scan on RocksDB (blocking, as [`Index::visit`]), one
    /// `count(*)` on PostgreSQL. For small families (upload sessions in the bucket).
    pub(crate) async fn count(&self, cf: Cf) -> Result<u64, StorageError> {
        let rocks = match &self.backend {
            Backend::Rocks(rocks) => rocks,
            Backend::Postgres(pg) => return pg.count(cf).await,
        };
        let mut count = 0;
        rocks.visit(cf, b"", None, |_, _| {
            count += 1;
            Ok(true)
        })?;
        Ok(count)
    }

    /// True if some key starts with `prefix` and `matches` its entry.
    pub(crate) async fn any_with_prefix(
        &self,
        cf: Cf,
        prefix: &[u8],
        mut matches: impl FnMut(&[u8], &[u8]) -> Result<bool, StorageError>,
    ) -> Result<bool, StorageError> {
        let mut found = false;
        self.visit(cf, prefix, None, |key, value| {
            found = matches(key, value)?;
            Ok(!found)
        })
        .await?;
        Ok(found)
    }

    /// Applies the batch atomically. RocksDB: with `sync` this waits for the WAL fsync (call
    /// it from the blocking pool: engine.rs `write_index`). PostgreSQL: one statement,
    /// committed durably whatever `sync` says.
    pub(crate) async fn write(&self, mut batch: Batch, sync: bool) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Rocks(rocks) => rocks.write(&batch, sync)?,
            Backend::Postgres(pg) => {
                batch = with_summaries_token(crate::usage::with_change_tokens(batch));
                pg.write(&batch, None).await?
            }
        }
        self.summaries.apply(batch.ops());
        Ok(())
    }

    /// Applies the batch atomically while `held`'s locks are held: on PostgreSQL through the
    /// connection that holds them, so a write whose locks were lost (connection gone) fails
    /// instead of interleaving with another node's.
    pub(crate) async fn write_held(
        &self,
        batch: Batch,
        sync: bool,
        held: &crate::lock::Held<'_>,
    ) -> Result<(), StorageError> {
        match (&self.backend, held.remote()) {
            (Backend::Postgres(pg), Some(remote)) => {
                let batch = with_summaries_token(crate::usage::with_change_tokens(batch));
                pg.write(&batch, Some(remote)).await?;
                self.summaries.apply(batch.ops());
                Ok(())
            }
            _ => self.write(batch, sync).await,
        }
    }

    /// Fills `blob_links` from `repo_blobs` when it is empty but links exist (a store written
    /// before `blob_links` existed). At open.
    pub(crate) async fn backfill_blob_links(&self) -> Result<(), StorageError> {
        if self
            .any_with_prefix(Cf::BlobLinks, b"", |_, _| Ok(true))
            .await?
        {
            return Ok(());
        }
        let mut batch = Batch::default();
        self.visit(Cf::RepoBlobs, b"", None, |key, _| {
            if let [repo, digest] = split_key(key)?[..] {
                batch.put(Cf::BlobLinks, self::key(&[digest, repo]), Vec::new());
            }
            Ok(true)
        })
        .await?;
        if !batch.is_empty() {
            self.write(batch, true).await?;
        }
        Ok(())
    }
}

/// `batch`, plus a new summaries change token when it changes a summary (PostgreSQL index:
/// other nodes then reload their copy, search/summaries.rs).
fn with_summaries_token(mut batch: Batch) -> Batch {
    if batch.ops().iter().any(|(cf, _, _)| *cf == Cf::RepoMeta) {
        let token = uuid::Uuid::new_v4().as_bytes().to_vec();
        batch.put(Cf::Meta, summaries::TOKEN_KEY.to_vec(), token);
    }
    batch
}

/// Entries a [`Pages`] reads at a time.
const PAGE_ENTRIES: usize = 256;

/// A scan read a page at a time, for loops that await other reads for each entry (a
/// [`Index::visit`] callback cannot await).
pub(crate) struct Pages {
    cf: Cf,
    prefix: Vec<u8>,
    after: Option<Vec<u8>>,
    done: bool,
}

impl Pages {
    /// The entries of `cf` whose key starts with `prefix`.
    pub(crate) fn new(cf: Cf, prefix: &[u8]) -> Pages {
        Pages {
            cf,
            prefix: prefix.to_vec(),
            after: None,
            done: false,
        }
    }

    /// The next entries in key order; `None` after the last.
    pub(crate) async fn next(
        &mut self,
        index: &Index,
    ) -> Result<Option<Vec<(Vec<u8>, Vec<u8>)>>, StorageError> {
        if self.done {
            return Ok(None);
        }
        let mut page = Vec::new();
        index
            .visit(
                self.cf,
                &self.prefix,
                self.after.as_deref(),
                |key, value| {
                    page.push((key.to_vec(), value.to_vec()));
                    Ok(page.len() < PAGE_ENTRIES)
                },
            )
            .await?;
        self.done = page.len() < PAGE_ENTRIES;
        self.after = page.last().map(|(key, _)| key.clone());
        Ok((!page.is_empty()).then_some(page))
    }
}

/// The smallest byte string greater than every string starting with `prefix` (`None`: no
/// bound, the prefix is empty or all 0xff).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bound = prefix.to_vec();
    while let Some(last) = bound.pop() {
        if last < 0xff {
            bound.push(last + 1);
            return Some(bound);
        }
    }
    None
}

/// Runs an index future to completion on the calling thread, for the engine's synchronous
/// paths (open, recovery, threads of their own). RocksDB's futures are ready at once;
/// PostgreSQL's are driven by the index's own runtime, so no runtime is needed here.
pub(crate) fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    futures_executor::block_on(future)
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
