//! The embedded index: RocksDB, one column family per [`Cf`]. Reads run inline (microseconds);
//! a synced write blocks on the WAL fsync and must only run on the blocking pool (engine.rs
//! `write_index` does that).
use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, Options, WriteOptions, DB};

use super::tempfile_dir::ScratchDir;
use super::{Batch, Cf};
use crate::error::StorageError;

pub(crate) struct RocksIndex {
    pub(crate) db: DB,
    /// The scratch directory of a secondary instance, removed after `db` is closed.
    _secondary_dir: Option<ScratchDir>,
}

/// How often a secondary open is retried: the primary may delete an SST file between our
/// reading its MANIFEST and opening the file (compaction), which fails that one attempt.
const SECONDARY_OPEN_ATTEMPTS: u32 = 10;

/// Write-ahead log kept before the families it holds are flushed (bounds replay at open).
const MAX_TOTAL_WAL_BYTES: u64 = 64 * 1024 * 1024;

impl RocksIndex {
    /// Opens (creating if needed) for reading and writing, or read-only. Read-only opens a
    /// RocksDB *secondary* instance: unlike a plain read-only open it is safe while a running
    /// daemon compacts (it keeps every file it uses open), and it sees the primary's state as
    /// of open, WAL included.
    pub(crate) fn open(path: &Path, read_only: bool) -> Result<RocksIndex, StorageError> {
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
            return Ok(RocksIndex {
                db: DB::open_cf_descriptors(&options, path, families())?,
                _secondary_dir: None,
            });
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
                    return Ok(RocksIndex {
                        db,
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
    pub(crate) fn write(&self, batch: &Batch, sync: bool) -> Result<(), StorageError> {
        let mut write_batch = rocksdb::WriteBatch::default();
        for (cf, key, value) in batch.ops() {
            match value {
                Some(value) => write_batch.put_cf(self.handle(*cf), key, value),
                None => write_batch.delete_cf(self.handle(*cf), key),
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db.write_opt(write_batch, &options)?;
        Ok(())
    }
}
