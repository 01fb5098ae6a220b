//! The metrics extension: per-shard request counters, summed into a Prometheus exposition
//! at scrape time (`extensions.metrics`, zot's names and labels; see `config/README.md`).
//!
//! Rules:
//! - Recording never takes a shared lock: each shard writes its own [`ShardMetrics`] (relaxed
//!   atomics; the per-repository map sits behind a mutex only the shard itself and a scrape
//!   ever touch). A scrape reads every shard and sums.
//! - zot's families use the configured namespace (`zot` by default, so existing dashboards
//!   work; `berth` on request); berth's own families are always `berth_`.
//! - Requests to the metrics path itself are not counted (as zot). A request is attributed
//!   to its repository when it succeeded or the repository exists; other requests count under
//!   repository `N/A`, so that requests for made-up names cannot grow the label set.
//! - Repository storage figures come from the engine's usage tracker, which recomputes only
//!   repositories changed since the last scrape: a scrape never walks the disk.
//! - The scrape endpoint (endpoint.rs) is an operator endpoint at `extensions.metrics.path`,
//!   outside `/v2/`, reloadable by SIGHUP.

mod endpoint;
pub mod expose;
mod process;
mod scrape;
mod security;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use berth_storage::oci::RepoName;
use berth_storage::stats::{Histogram, HistogramSnapshot};
use hyper::Method;

pub use endpoint::MetricsExt;
pub use scrape::{scrape, IndexReads};

/// zot's buckets for `zot_http_method_latency_seconds`.
pub const METHOD_LATENCY_BUCKETS: &[f64] = &[0.05, 0.5, 1.0, 5.0, 30.0, 60.0, 600.0];

/// Method label values; anything else counts as `OTHER` (a bounded label set).
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "OTHER",
];
/// Status codes 100..=599 are counted one by one; others (none hyper sends) as 599.
const FIRST_CODE: u16 = 100;
const CODES: usize = 500;

/// The repository label of requests that name no (attributable) repository, as zot.
pub const NO_REPO: &str = "N/A";

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::PUT => 2,
        Method::POST => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// What a finished request did to its repository, for zot's upload/download counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepoAction {
    /// A manifest GET that succeeded (zot counts these as downloads).
    ManifestPulled,
    /// A manifest PUT that succeeded (zot counts these as uploads).
    ManifestPushed,
    Other,
}

/// One finished request, as the metrics see it.
pub struct Finished<'a> {
    pub method: &'a Method,
    pub status: u16,
    pub elapsed: Duration,
    /// The repository to attribute the request to (`None`: `N/A`).
    pub repo: Option<&'a RepoName>,
    pub action: RepoAction,
    pub received_bytes: u64,
    pub sent_bytes: u64,
}

#[derive(Clone, Copy, Default)]
struct RepoCounters {
    latency_ns: u64,
    requests: u64,
    uploads: u64,
    downloads: u64,
    received_bytes: u64,
    sent_bytes: u64,
}

/// One shard's counters. Written only by its shard; read by scrapes.
pub struct ShardMetrics {
    /// `METHODS.len() * CODES` request counts, method-major.
    requests: Box<[AtomicU64]>,
    method_latency: Box<[Histogram]>,
    in_flight: AtomicI64,
    received_bytes: AtomicU64,
    sent_bytes: AtomicU64,
    /// Keyed by repository name; `N/A` for unattributed requests.
    repos: Mutex<HashMap<String, RepoCounters>>,
}

impl ShardMetrics {
    fn new() -> ShardMetrics {
        ShardMetrics {
            requests: (0..METHODS.len() * CODES)
                .map(|_| AtomicU64::new(0))
                .collect(),
            method_latency: METHODS
                .iter()
                .map(|_| Histogram::new(METHOD_LATENCY_BUCKETS))
                .collect(),
            in_flight: AtomicI64::new(0),
            received_bytes: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            repos: Mutex::new(HashMap::new()),
        }
    }

    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// Ends a request that the metrics do not count (the metrics endpoint itself).
    pub fn request_uncounted(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// Records a finished request (its response body sent or abandoned).
    pub fn request_finished(&self, request: &Finished<'_>) {
        self.in_flight.fetch_sub(1, Relaxed);
        let method = method_index(request.method);
        let code = usize::from(request.status.clamp(FIRST_CODE, 599) - FIRST_CODE);
        self.requests[method * CODES + code].fetch_add(1, Relaxed);
        self.method_latency[method].observe(request.elapsed);
        self.received_bytes
            .fetch_add(request.received_bytes, Relaxed);
        self.sent_bytes.fetch_add(request.sent_bytes, Relaxed);
        let name = request.repo.map_or(NO_REPO, RepoName::as_str);
        let mut repos = self.repos.lock().unwrap_or_else(|e| e.into_inner());
        let counters = match repos.get_mut(name) {
            Some(counters) => counters,
            None => repos.entry(name.to_owned()).or_default(),
        };
        counters.latency_ns += u64::try_from(request.elapsed.as_nanos()).unwrap_or(u64::MAX);
        counters.requests += 1;
        counters.received_bytes += request.received_bytes;
        counters.sent_bytes += request.sent_bytes;
        match request.action {
            RepoAction::ManifestPulled => counters.downloads += 1,
            RepoAction::ManifestPushed => counters.uploads += 1,
            RepoAction::Other => {}
        }
    }
}

/// Every shard's counters and the process's start time.
pub struct Metrics {
    shards: Box<[ShardMetrics]>,
    started: SystemTime,
}

impl Metrics {
    pub fn new(shards: usize) -> Metrics {
        Metrics {
            shards: (0..shards.max(1)).map(|_| ShardMetrics::new()).collect(),
            started: SystemTime::now(),
        }
    }

    /// When the daemon started serving (this value's creation, at start).
    pub fn started(&self) -> SystemTime {
        self.started
    }

    pub fn shard(&self, index: usize) -> &ShardMetrics {
        &self.shards[index % self.shards.len()]
    }

    /// The sum over shards.
    fn totals(&self) -> Totals {
        let mut totals = Totals {
            requests: vec![0; METHODS.len() * CODES],
            method_latency: vec![HistogramSnapshot::default(); METHODS.len()],
            ..Totals::default()
        };
        for shard in self.shards.iter() {
            for (sum, count) in totals.requests.iter_mut().zip(shard.requests.iter()) {
                *sum += count.load(Relaxed);
            }
            for (sum, histogram) in totals
                .method_latency
                .iter_mut()
                .zip(shard.method_latency.iter())
            {
                sum.merge(&histogram.snapshot());
            }
            totals.in_flight += shard.in_flight.load(Relaxed);
            totals.received_bytes += shard.received_bytes.load(Relaxed);
            totals.sent_bytes += shard.sent_bytes.load(Relaxed);
            let repos = shard.repos.lock().unwrap_or_else(|e| e.into_inner());
            for (name, counters) in repos.iter() {
                let sum = totals.repos.entry(name.clone()).or_default();
                sum.latency_ns += counters.latency_ns;
                sum.requests += counters.requests;
                sum.uploads += counters.uploads;
                sum.downloads += counters.downloads;
                sum.received_bytes += counters.received_bytes;
                sum.sent_bytes += counters.sent_bytes;
            }
        }
        totals
    }
}

#[derive(Default)]
struct Totals {
    requests: Vec<u64>,
    method_latency: Vec<HistogramSnapshot>,
    in_flight: i64,
    received_bytes: u64,
    sent_bytes: u64,
    repos: HashMap<String, RepoCounters>,
}

impl Totals {
    /// (method, code, count) of every non-zero counter.
    fn request_counts(&self) -> impl Iterator<Item = (&'static str, u16, u64)> + '_ {
        self.requests
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(slot, count)| {
                let code = FIRST_CODE + u16::try_from(slot % CODES).expect("code slot < 500");
                (METHODS[slot / CODES], code, *count)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_summed_and_unknown_methods_are_bounded() {
        let metrics = Metrics::new(2);
        let repo: RepoName = "library/alpine".parse().expect("valid name");
        let finished = |method: &'static Method, status, repo| Finished {
            method,
            status,
            elapsed: Duration::from_millis(100),
            repo,
            action: RepoAction::ManifestPulled,
            received_bytes: 10,
            sent_bytes: 1000,
        };
        static GET: Method = Method::GET;
        static PROPFIND: std::sync::LazyLock<Method> =
            std::sync::LazyLock::new(|| Method::from_bytes(b"PROPFIND").expect("valid method"));
        for shard in 0..2 {
            metrics.shard(shard).request_started();
            metrics
                .shard(shard)
                .request_finished(&finished(&GET, 200, Some(&repo)));
        }
        metrics.shard(0).request_started();
        metrics
            .shard(0)
            .request_finished(&finished(&PROPFIND, 405, None));
        let totals = metrics.totals();
        let counts: Vec<_> = totals.request_counts().collect();
        assert_eq!(counts, vec![("GET", 200, 2), ("OTHER", 405, 1)]);
        assert_eq!(totals.in_flight, 0);
        assert_eq!(totals.sent_bytes, 3000);
        assert_eq!(totals.repos["library/alpine"].downloads, 2);
        assert_eq!(totals.repos[NO_REPO].requests, 1);
        assert_eq!(totals.method_latency[0].count, 2);
        assert_eq!(
            totals.method_latency[0].cumulative,
            vec![0, 2, 2, 2, 2, 2, 2]
        );
    }
}
