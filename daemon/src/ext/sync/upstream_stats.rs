//! Per-upstream measurements (requests by status, bytes, latency, in-flight, retries, 429s)
//! and the `reqPerSec` token bucket. The lead's /metrics code reads the snapshots.
//!
//! Rules: recording is an atomic add, or one short mutex section for the by-status map (a
//! handful of distinct codes); nothing here blocks or allocates per byte.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_storage::stats::{Histogram, HistogramSnapshot};

/// Latency buckets (seconds) for upstream requests, measured to the response headers.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Counters of one upstream. Token requests count as requests to that upstream too.
pub struct UpstreamStats {
    name: String,
    by_status: Mutex<BTreeMap<u16, u64>>,
    failures: AtomicU64,
    bytes_received: AtomicU64,
    latency: Histogram,
    in_flight: Arc<AtomicU64>,
    retries: AtomicU64,
    throttled: AtomicU64,
}

impl UpstreamStats {
    pub(crate) fn new(name: String) -> UpstreamStats {
        UpstreamStats {
            name,
            by_status: Mutex::new(BTreeMap::new()),
            failures: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            latency: Histogram::new(LATENCY_BUCKETS),
            in_flight: Arc::new(AtomicU64::new(0)),
            retries: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// The metrics label (the first URL's host[:port]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Responses by HTTP status code.
    pub fn requests_by_status(&self) -> BTreeMap<u16, u64> {
        self.by_status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Requests that got no response (connect error, header timeout, refused redirect).
    pub fn failures(&self) -> u64 {
        self.failures.load(Relaxed)
    }

    /// Body bytes received (manifests, blobs, lists, tokens).
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received.load(Relaxed)
    }

    /// Time to response headers.
    pub fn latency(&self) -> HistogramSnapshot {
        self.latency.snapshot()
    }

    /// Requests sent whose response body is not finished yet.
    pub fn in_flight_now(&self) -> u64 {
        self.in_flight.load(Relaxed)
    }

    pub fn retries(&self) -> u64 {
        self.retries.load(Relaxed)
    }

    /// 429 answers.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Relaxed)
    }

    pub(crate) fn record_status(&self, status: u16, latency: Duration) {
        *self
            .by_status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(status)
            .or_insert(0) += 1;
        self.latency.observe(latency);
    }

    pub(crate) fn record_failure(&self) {
        self.failures.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_bytes(&self, bytes: u64) {
        self.bytes_received.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn record_retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_throttled(&self) {
        self.throttled.fetch_add(1, Relaxed);
    }

    /// Marks one request in flight until the returned guard drops.
    pub(crate) fn in_flight(&self) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.in_flight.clone())
    }
}

/// One request in flight; decrements the gauge on drop.
pub(crate) struct InFlight(Arc<AtomicU64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// `req_per_sec` as a token bucket holding at most one second's worth of requests.
pub(crate) struct RateLimiter {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub(crate) fn new(rate: f64) -> RateLimiter {
        RateLimiter {
            rate,
            state: Mutex::new((rate.max(1.0), Instant::now())),
        }
    }

    pub(crate) async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self
                    .state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                let (tokens, last) = *state;
                let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate)
                    .min(self.rate.max(1.0));
                if tokens >= 1.0 {
                    *state = (tokens - 1.0, now);
                    return;
                }
                *state = (tokens, now);
                (1.0 - tokens) / self.rate
            };
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}
