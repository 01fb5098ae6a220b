//! The engine's own measurements: fsync and lock-wait latency, io_uring operation counts per
//! thread, and the counters that GC and scrub feed. The daemon reads them at scrape time.
//!
//! Rules: recording is a few relaxed atomic adds on memory the recording thread mostly owns,
//! never a lock and never an allocation (the per-thread ring counters allocate once, on the
//! thread's first io_uring operation). Readers get plain snapshots; a snapshot may be a few
//! operations behind a concurrent writer, never torn in a way that breaks cumulative buckets
//! by more than those operations. One exception: the summary of the last GC and scrub pass
//! ([`LastPass`]) is a small value behind a mutex, written once per pass and read by the
//! operator's health page, never on a request's path.
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Bucket bounds (seconds) for device latencies: fsync of files, directories and the WAL.
pub const FSYNC_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// zot's buckets for `zot_storage_lock_latency_seconds`.
pub const LOCK_BUCKETS: &[f64] = &[0.001, 0.01, 0.1, 1.0, 5.0, 10.0, 15.0, 30.0, 60.0];

/// A fixed-bucket histogram of durations, safe to record from any thread.
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative: `buckets[i]` counts observations in (bounds[i-1], bounds[i]]; the last
    /// slot is +Inf.
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

/// A point-in-time copy of a [`Histogram`], cumulative as Prometheus wants it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    /// `cumulative[i]` = observations <= bounds[i]; one entry per bound.
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    /// Adds another snapshot with the same bounds (shards are summed at scrape time).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if self.cumulative.is_empty() {
            *self = other.clone();
            return;
        }
        debug_assert_eq!(self.bounds, other.bounds);
        for (mine, theirs) in self.cumulative.iter_mut().zip(&other.cumulative) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_seconds += other.sum_seconds;
    }
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = self.bounds.partition_point(|bound| *bound < seconds);
        self.buckets[slot].fetch_add(1, Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(nanos, Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        for bucket in &self.buckets[..self.bounds.len()] {
            running += bucket.load(Relaxed);
            cumulative.push(running);
        }
        let count = running + self.buckets[self.bounds.len()].load(Relaxed);
        HistogramSnapshot {
            bounds: self.bounds,
            cumulative,
            count,
            sum_seconds: self.sum_ns.load(Relaxed) as f64 / 1e9,
        }
    }
}

/// Runs `operation`, recording its duration in `histogram`.
pub(crate) async fn timed<T>(histogram: &Histogram, operation: impl Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let output = operation.await;
    histogram.observe(started.elapsed());
    output
}

/// io_uring operations of one thread (a shard): submitted and completed. An operation whose
/// future is dropped early counts as completed when dropped (the kernel finishes it anyway).
#[derive(Default)]
pub struct RingCounters {
    submitted: AtomicU64,
    completed: AtomicU64,
}

/// One thread's io_uring counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingSnapshot {
    /// The thread's name (`shard-0` ...).
    pub thread: String,
    pub submitted: u64,
    pub completed: u64,
}

static RINGS: Mutex<Vec<(String, Arc<RingCounters>)>> = Mutex::new(Vec::new());

thread_local! {
    static RING: Arc<RingCounters> = {
        let counters = Arc::new(RingCounters::default());
        let name = std::thread::current().name().unwrap_or("unnamed").to_owned();
        RINGS
            .lock()
            .expect("ring registry lock is never poisoned")
            .push((name, counters.clone()));
        counters
    };
}

struct Completion(Arc<RingCounters>);

impl Drop for Completion {
    fn drop(&mut self) {
        self.0.completed.fetch_add(1, Relaxed);
    }
}

/// Runs one io_uring operation of this thread, counting its submission and completion.
pub async fn ring_op<F: Future>(operation: F) -> F::Output {
    let counters = RING.with(Arc::clone);
    counters.submitted.fetch_add(1, Relaxed);
    let _completion = Completion(counters);
    operation.await
}

/// Every thread that has issued an io_uring operation, in order of its first one.
pub fn ring_snapshots() -> Vec<RingSnapshot> {
    RINGS
        .lock()
        .expect("ring registry lock is never poisoned")
        .iter()
        .map(|(thread, counters)| RingSnapshot {
            thread: thread.clone(),
            submitted: counters.submitted.load(Relaxed),
            completed: counters.completed.load(Relaxed),
        })
        .collect()
}

/// What GC and scrub report (the maintenance passes of issue 5 record into this).
#[derive(Default)]
pub struct MaintenanceStats {
    pub gc_runs_ok: AtomicU64,
    pub gc_runs_failed: AtomicU64,
    pub gc_duration_ns: AtomicU64,
    pub gc_deleted_manifests: AtomicU64,
    pub gc_deleted_blobs: AtomicU64,
    pub gc_deleted_uploads: AtomicU64,
    pub gc_deleted_tags: AtomicU64,
    pub gc_deleted_links: AtomicU64,
    pub gc_deleted_repositories: AtomicU64,
    pub gc_deleted_orphan_files: AtomicU64,
    /// Bytes of blob and orphan files GC removed.
    pub gc_freed_bytes: AtomicU64,
    pub scrub_runs: AtomicU64,
    pub scrub_blobs_verified: AtomicU64,
    pub scrub_bytes_verified: AtomicU64,
    /// Blobs found damaged by the last scrub (a gauge).
    pub scrub_affected_blobs: AtomicU64,
    /// Progress of the current scrub in millionths (a gauge; 1,000,000 = done).
    pub scrub_progress_ppm: AtomicU64,
    /// The last GC pass of this process (the daemon's GC thread records it).
    pub last_gc: LastPass<GcPassSummary>,
    /// The last scrub pass of this process (the daemon's scrub thread records it).
    pub last_scrub: LastPass<ScrubPassSummary>,
}

/// One finished maintenance pass: when, how long, and what it did (or why it failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassRecord<T> {
    /// When it ended, in milliseconds since the Unix epoch.
    pub finished_unix_ms: u64,
    pub duration_ms: u64,
    /// What it found or removed; the error's text when the pass failed as a whole.
    pub outcome: Result<T, String>,
}

impl<T> PassRecord<T> {
    /// A pass that ends now, after running for `duration`.
    pub fn ended_now(duration: Duration, outcome: Result<T, String>) -> PassRecord<T> {
        PassRecord {
            finished_unix_ms: crate::index::now_ms(),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            outcome,
        }
    }
}

/// What a GC pass deleted (performed deletions only; a dry run's are left out).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcPassSummary {
    /// A full pass (every repository), not only those changed since the last pass.
    pub full: bool,
    pub repositories_visited: u64,
    pub blobs_examined: u64,
    pub deleted_tags: u64,
    pub deleted_manifests: u64,
    pub deleted_links: u64,
    pub deleted_blobs: u64,
    pub deleted_orphan_files: u64,
    pub deleted_repositories: u64,
    pub deleted_uploads: u64,
    /// Bytes of blob and orphan files removed.
    pub freed_bytes: u64,
    /// Repositories or blobs the pass had to leave alone (fail closed).
    pub left_alone: u64,
}

/// What a scrub pass verified and found damaged.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScrubPassSummary {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub manifests_checked: u64,
    /// Blobs and manifests whose content is damaged.
    pub damaged: u64,
    /// Tagged images that hold a damaged blob or manifest.
    pub images_affected: u64,
}

/// The last pass's record, replaced whole by each pass.
pub struct LastPass<T>(Mutex<Option<PassRecord<T>>>);

impl<T> Default for LastPass<T> {
    fn default() -> LastPass<T> {
        LastPass(Mutex::new(None))
    }
}

impl<T: Clone> LastPass<T> {
    pub fn record(&self, pass: PassRecord<T>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(pass);
    }

    /// The last pass, `None` before this process finished one.
    pub fn get(&self) -> Option<PassRecord<T>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The engine's latency histograms and maintenance counters.
pub struct EngineStats {
    pub fsync_file: Histogram,
    pub fsync_directory: Histogram,
    /// Synced WAL writes (one RocksDB group commit each, seen from one writer).
    pub fsync_wal: Histogram,
    /// Wait for a repository lock (manifest and tag commits, blob unlinks).
    pub lock_wait: Histogram,
    pub maintenance: MaintenanceStats,
}

impl Default for EngineStats {
    fn default() -> EngineStats {
        EngineStats {
            fsync_file: Histogram::new(FSYNC_BUCKETS),
            fsync_directory: Histogram::new(FSYNC_BUCKETS),
            fsync_wal: Histogram::new(FSYNC_BUCKETS),
            lock_wait: Histogram::new(LOCK_BUCKETS),
            maintenance: MaintenanceStats::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let histogram = Histogram::new(&[0.001, 0.01, 0.1]);
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_millis(1));
        histogram.observe(Duration::from_millis(50));
        histogram.observe(Duration::from_secs(2));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative, vec![2, 2, 3]);
        assert_eq!(snapshot.count, 4);
        assert!((snapshot.sum_seconds - 2.0515).abs() < 1e-9);
        let mut merged = HistogramSnapshot::default();
        merged.merge(&snapshot);
        merged.merge(&snapshot);
        assert_eq!(merged.cumulative, vec![4, 4, 6]);
        assert_eq!(merged.count, 8);
    }

    #[test]
    fn ring_ops_count_per_thread_and_cancelled_ops_complete() {
        let thread = std::thread::Builder::new()
            .name("ring-test".into())
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime builds");
                runtime.block_on(async {
                    ring_op(async {}).await;
                    ring_op(async {}).await;
                    // Dropped before completion.
                    drop(ring_op(std::future::pending::<()>()));
                });
            })
            .expect("thread spawns");
        thread.join().expect("thread ran");
        let ours: Vec<_> = ring_snapshots()
            .into_iter()
            .filter(|ring| ring.thread == "ring-test")
            .collect();
        // The dropped future never started, so it was never submitted.
        assert_eq!(
            ours,
            vec![RingSnapshot {
                thread: "ring-test".into(),
                submitted: 2,
                completed: 2
            }]
        );
    }
}
