//! The RocksDB index: column families, key layout, write batches (value codecs: index_records.rs).
//!
//! Rules: keys are byte strings of validated names joined by a NUL byte (no name, tag or
//! digest can contain NUL), so a prefix `a\0` matches repository `a` exactly and never
//! `a/b` or `ab`. Values have fixed binary layouts (big-endian integers, u16 length prefixes)
//! drawn in DESIGN.md; decoding a bad value is `StorageError::Corrupt`, never a panic.
//! Reads run inline (microseconds); `Index::write` with `sync` blocks on the WAL fsync and
//! must only be called from the blocking pool (engine.rs does that).
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rocksdb::{ColumnFamilyDescriptor, Options, WriteOptions, DB};

use crate::error::StorageError;

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
}

impl Cf {
    pub(crate) const ALL: [Cf; 24] = [
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
    ];

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

use tempfile_dir::ScratchDir;

pub(crate) struct Index {
    pub(crate) db: DB,
    /// Every repository's search summary, kept equal to `repo_meta` by [`Index::write`].
    pub(crate) summaries: crate::search::summaries::Summaries,
    /// The scratch directory of a secondary instance, removed after `db` is closed.
    _secondary_dir: Option<ScratchDir>,
}

/// How often a secondary open is retried: the primary may delete an SST file between our
/// reading its MANIFEST and opening the file (compaction), which fails that one attempt.
const SECONDARY_OPEN_ATTEMPTS: u32 = 10;

#[path = "index_scratch.rs"]
pub(crate) mod tempfile_dir;

/// Write-ahead log kept before the families it holds are flushed (bounds replay at open).
const MAX_TOTAL_WAL_BYTES: u64 = 64 * 1024 * 1024;

impl Index {
    /// Opens (creating if needed) for reading and writing, or read-only. Read-only opens a
    /// RocksDB *secondary* instance: unlike a plain read-only open it is safe while a running
    /// daemon compacts (it keeps every file it uses open), and it sees the primary's state as
    /// of open, WAL included.
    pub(crate) fn open(path: &Path, read_only: bool) -> Result<Index, StorageError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // Built without compression libraries (rocksdb default features off).
        options.set_compression_type(rocksdb::DBCompressionType::None);
        // Small families (tags, summaries, ...) rarely fill a memtable, so without a bound
        // every write-ahead log since they last flushed is kept and replayed at open (550 MB
        // and 5.5 s after a 100k-image import). Past this size the oldest log's families
        // are flushed and the log dropped.
        options.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        let families = || {
            Cf::ALL.iter().map(|cf| {
                let mut family_options = Options::default();
                family_options.set_compression_type(rocksdb::DBCompressionType::None);
                ColumnFamilyDescriptor::new(cf.name(), family_options)
            })
        };
        if !read_only {
            let mut index = Index {
                db: DB::open_cf_descriptors(&options, path, families())?,
                summaries: Default::default(),
                _secondary_dir: None,
            };
            index.summaries = crate::search::summaries::Summaries::load(|visit| {
                index.visit(Cf::RepoMeta, b"", None, visit)
            })?;
            return Ok(index);
        }
        if !path.join("CURRENT").exists() {
            return Err(StorageError::Index(format!(
                "no index at {}",
                path.display()
            )));
        }
        // A secondary cannot create families: name the ones an older berth did not make
        // (RocksDB would only say "Column family not found").
        let existing = DB::list_cf(&options, path)?;
        let missing: Vec<&str> = Cf::ALL
            .iter()
            .map(|cf| cf.name())
            .filter(|name| !existing.iter().any(|found| found == name))
            .collect();
        if !missing.is_empty() {
            return Err(StorageError::Index(format!(
                "the index at {} has no {} family (written by an older berth): open it for \
                 writing once (start the daemon) first",
                path.display(),
                missing.join(", ")
            )));
        }
        options.set_max_open_files(-1);
        let scratch = ScratchDir::create()?;
        let mut attempt = 1;
        loop {
            match DB::open_cf_descriptors_as_secondary(&options, path, scratch.path(), families()) {
                Ok(db) => {
                    return Ok(Index {
                        db,
                        summaries: Default::default(),
                        _secondary_dir: Some(scratch),
                    })
                }
                Err(error) if attempt < SECONDARY_OPEN_ATTEMPTS => {
                    tracing::debug!(%error, attempt, "secondary open raced a compaction; retrying");
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    pub(crate) fn handle(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(cf.name())
            .expect("every column family is created at open")
    }

    pub(crate) fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.handle(cf), key)?)
    }

    pub(crate) fn contains(&self, cf: Cf, key: &[u8]) -> Result<bool, StorageError> {
        Ok(self.db.get_pinned_cf(self.handle(cf), key)?.is_some())
    }

    /// Calls `visit` for each key starting with `prefix` in order, starting after `after`
    /// (exclusive) when given, until `visit` returns false.
    pub(crate) fn visit(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StorageError>,
    ) -> Result<(), StorageError> {
        // A raw iterator lends each key and value in place (the boxed iterator copies both
        // into two allocations per entry, which dominated scans of thousands of entries).
        let mut iter = self.db.raw_iterator_cf(self.handle(cf));
        iter.seek(after.unwrap_or(prefix));
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if !key.starts_with(prefix) {
                break;
            }
            if after.is_none_or(|after| key > after) && !visit(key, value)? {
                break;
            }
            iter.next();
        }
        iter.status()?;
        Ok(())
    }

    /// True if some key starts with `prefix`.
    pub(crate) fn any_with_prefix(
        &self,
        cf: Cf,
        prefix: &[u8],
        mut matches: impl FnMut(&[u8], &[u8]) -> Result<bool, StorageError>,
    ) -> Result<bool, StorageError> {
        let mut found = false;
        self.visit(cf, prefix, None, |key, value| {
            found = matches(key, value)?;
            Ok(!found)
        })?;
        Ok(found)
    }

    /// Fills `blob_links` from `repo_blobs` when it is empty but links exist (a store written
    /// before `blob_links` existed). Blocking; at open.
    pub(crate) fn backfill_blob_links(&self) -> Result<(), StorageError> {
        if self.any_with_prefix(Cf::BlobLinks, b"", |_, _| Ok(true))? {
            return Ok(());
        }
        let mut batch = Batch::default();
        self.visit(Cf::RepoBlobs, b"", None, |key, _| {
            if let [repo, digest] = split_key(key)?[..] {
                batch.put(Cf::BlobLinks, self::key(&[digest, repo]), Vec::new());
            }
            Ok(true)
        })?;
        if !batch.ops.is_empty() {
            self.write(batch, true)?;
        }
        Ok(())
    }

    /// Flushes `cf`'s memtable and compacts the family, dropping its tombstones: a family
    /// that is mostly deleted again (GC's queue) would otherwise make every scan step over
    /// them. Blocking.
    pub(crate) fn compact(&self, cf: Cf) -> Result<(), StorageError> {
        self.db.flush_cf(self.handle(cf))?;
        self.db
            .compact_range_cf(self.handle(cf), None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    /// fsync of the WAL: every write so far is durable. Blocking.
    pub(crate) fn sync_wal(&self) -> Result<(), StorageError> {
        Ok(self.db.flush_wal(true)?)
    }

    /// Applies the batch atomically. With `sync` this waits for the WAL fsync: call it from
    /// the blocking pool. Concurrent synced writers are grouped by RocksDB into one fsync.
    pub(crate) fn write(&self, batch: Batch, sync: bool) -> Result<(), StorageError> {
        let mut write_batch = rocksdb::WriteBatch::default();
        for (cf, key, value) in &batch.ops {
            match value {
                Some(value) => write_batch.put_cf(self.handle(*cf), key, value),
                None => write_batch.delete_cf(self.handle(*cf), key),
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db.write_opt(write_batch, &options)?;
        self.summaries.apply(&batch.ops);
        Ok(())
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
