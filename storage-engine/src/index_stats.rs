//! RocksDB's own figures for operators (size, memtables, compaction debt, write stalls),
//! read from in-memory properties: microseconds, no I/O.
use crate::index::{Cf, Index, RocksIndex};

/// RocksDB's figures that matter to an operator (summed over column families where they
/// are per family).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Bytes of SST files on disk.
    pub sst_bytes: u64,
    /// Bytes in memtables (not yet flushed).
    pub memtable_bytes: u64,
    /// Bytes compaction estimates it must rewrite to reach its targets.
    pub pending_compaction_bytes: u64,
    pub running_compactions: u64,
    /// Writes are stopped (a hard stall).
    pub write_stopped: bool,
    /// Writes are being slowed to this rate (bytes/s); 0 when not delayed.
    pub delayed_write_rate_bytes: u64,
    /// Write delays begun since open (all column families).
    pub write_delays: u64,
    /// Write stops begun since open (all column families and the write buffer manager).
    pub write_stops: u64,
}

/// (total delays, total stops) from a `rocksdb.cf-write-stall-stats` or
/// `rocksdb.db-write-stall-stats` text: `Write Stall (count): name: n, name: n, ...`. In the
/// db-level text every counter is a stop (the write buffer manager's).
fn write_stalls(text: &str, db_level: bool) -> (u64, u64) {
    let body = text
        .trim()
        .strip_prefix("Write Stall (count):")
        .unwrap_or("");
    let mut counts = (0, 0);
    for item in body.split(',') {
        let Some((name, value)) = item.split_once(':') else {
            continue;
        };
        let value: u64 = value.trim().parse().unwrap_or(0);
        match (name.trim(), db_level) {
            ("total-delays", false) => counts.0 += value,
            ("total-stops", false) => counts.1 += value,
            (_, true) => counts.1 += value,
            _ => {}
        }
    }
    counts
}

impl Index {
    /// RocksDB's figures; zero on the PostgreSQL index (its server has its own).
    pub(crate) fn stats(&self) -> IndexStats {
        self.rocks().map(RocksIndex::stats).unwrap_or_default()
    }
}

impl RocksIndex {
    /// RocksDB's own figures, summed over the column families.
    pub(crate) fn stats(&self) -> IndexStats {
        let sum = |property: &str| -> u64 {
            Cf::ALL
                .iter()
                .filter_map(|cf| {
                    self.db
                        .property_int_value_cf(self.handle(*cf), property)
                        .ok()
                        .flatten()
                })
                .sum()
        };
        let db = |property: &str| -> u64 {
            self.db
                .property_int_value(property)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        let mut stalls = Cf::ALL
            .iter()
            .filter_map(|cf| {
                self.db
                    .property_value_cf(self.handle(*cf), "rocksdb.cf-write-stall-stats")
                    .ok()
                    .flatten()
            })
            .map(|text| write_stalls(&text, false))
            .fold((0, 0), |sum, (delays, stops)| {
                (sum.0 + delays, sum.1 + stops)
            });
        if let Ok(Some(text)) = self.db.property_value("rocksdb.db-write-stall-stats") {
            stalls.1 += write_stalls(&text, true).1;
        }
        IndexStats {
            sst_bytes: sum("rocksdb.total-sst-files-size"),
            memtable_bytes: sum("rocksdb.cur-size-all-mem-tables"),
            pending_compaction_bytes: sum("rocksdb.estimate-pending-compaction-bytes"),
            running_compactions: db("rocksdb.num-running-compactions"),
            write_stopped: db("rocksdb.is-write-stopped") != 0,
            delayed_write_rate_bytes: db("rocksdb.actual-delayed-write-rate"),
            write_delays: stalls.0,
            write_stops: stalls.1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_stall_counts_are_read_from_rocksdb_text() {
        let cf = "Write Stall (count): cf-l0-file-count-limit-delays-with-ongoing-compaction: 0, \
                  l0-file-count-limit-delays: 2, l0-file-count-limit-stops: 1, \
                  total-delays: 3, total-stops: 1\n";
        assert_eq!(write_stalls(cf, false), (3, 1));
        let db = "Write Stall (count): write-buffer-manager-limit-stops: 4\n";
        assert_eq!(write_stalls(db, true), (0, 4));
        assert_eq!(write_stalls("", false), (0, 0));
    }

    #[test]
    fn rocksdb_reports_write_stalls_in_the_parsed_form() {
        let dir = crate::index::tempfile_dir::ScratchDir::create().expect("scratch dir");
        let index = Index::open(dir.path(), false).expect("index opens");
        let text = index
            .rocks()
            .expect("RocksDB")
            .db
            .property_value_cf(
                index.rocks().expect("RocksDB").handle(Cf::Blobs),
                "rocksdb.cf-write-stall-stats",
            )
            .expect("property read")
            .expect("property known to this RocksDB");
        assert!(text.starts_with("Write Stall (count):"), "{text}");
        assert!(
            text.contains("total-delays: 0") && text.contains("total-stops: 0"),
            "{text}"
        );
        let stats = index.stats();
        assert_eq!((stats.write_delays, stats.write_stops), (0, 0));
        assert!(!stats.write_stopped);
    }
}
