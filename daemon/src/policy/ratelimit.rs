//! `http.ratelimit`: zot's request rates, over every request and per HTTP method, answered
//! with 429 `TOOMANYREQUESTS` and `Retry-After`.
//!
//! Rules:
//! - Each limit is a GCRA (generic cell rate algorithm) on one atomic: the theoretical
//!   arrival time of the next request, moved forward by compare-and-swap. No lock, shared by
//!   all shards, so the rate holds for the whole daemon whichever shard a client lands on.
//! - A limit admits `rate` requests per second, and up to `rate` at once after an idle second
//!   (burst = one second's worth; zot's limiter admits one at a time).
//! - A request must pass the global limit and its method's; a request refused by the second
//!   has still used the first (as zot's two middlewares do).
//! - The health probes and the metrics path are never limited (the API module decides).
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::Method;

use crate::config::RateLimitConfig;

/// One rate.
#[derive(Debug)]
struct Gcra {
    /// Nanoseconds between two requests at the steady rate.
    interval_ns: u64,
    /// How far ahead of now the arrival time may run (the burst).
    tolerance_ns: u64,
    /// The next request's theoretical arrival time, in nanoseconds since `epoch`.
    arrival_ns: AtomicU64,
}

impl Gcra {
    fn new(rate: u32) -> Gcra {
        let interval_ns = 1_000_000_000 / u64::from(rate.max(1));
        Gcra {
            interval_ns,
            tolerance_ns: interval_ns * u64::from(rate.max(1)),
            arrival_ns: AtomicU64::new(0),
        }
    }

    /// Takes one request at `now_ns`; `Err(wait)` when it must wait that long.
    fn take(&self, now_ns: u64) -> Result<(), Duration> {
        let mut current = self.arrival_ns.load(Ordering::Relaxed);
        loop {
            let next = current.max(now_ns) + self.interval_ns;
            let ahead = next - now_ns;
            if ahead > self.tolerance_ns {
                return Err(Duration::from_nanos(ahead - self.tolerance_ns));
            }
            match self.arrival_ns.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }
}

/// The daemon's rate limits.
#[derive(Debug)]
pub struct RateLimits {
    epoch: Instant,
    global: Option<Gcra>,
    methods: Vec<(Method, Gcra)>,
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> RateLimits {
        RateLimits {
            epoch: Instant::now(),
            global: config.rate.map(Gcra::new),
            methods: config
                .methods
                .iter()
                .filter_map(|(method, rate)| {
                    Some((
                        Method::from_bytes(method.as_bytes()).ok()?,
                        Gcra::new(*rate),
                    ))
                })
                .collect(),
        }
    }

    /// Admits a request of `method` now, or says how long to wait.
    pub fn admit(&self, method: &Method) -> Result<(), Duration> {
        self.admit_at(method, self.epoch.elapsed().as_nanos() as u64)
    }

    fn admit_at(&self, method: &Method, now_ns: u64) -> Result<(), Duration> {
        if let Some(global) = &self.global {
            global.take(now_ns)?;
        }
        match self.methods.iter().find(|(limited, _)| limited == method) {
            Some((_, limit)) => limit.take(now_ns),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn limits(rate: Option<u32>, methods: &[(&str, u32)]) -> RateLimits {
        RateLimits::new(&RateLimitConfig {
            rate,
            methods: methods.iter().map(|(m, r)| (m.to_string(), *r)).collect(),
        })
    }

    #[test]
    fn a_burst_of_one_second_then_the_steady_rate() {
        let limits = limits(Some(10), &[]);
        let start = 5 * SECOND;
        for _ in 0..10 {
            assert_eq!(limits.admit_at(&Method::GET, start), Ok(()));
        }
        let wait = limits
            .admit_at(&Method::GET, start)
            .expect_err("the 11th waits");
        assert_eq!(wait, Duration::from_millis(100));
        // 100 ms later one more fits, and only one.
        assert_eq!(limits.admit_at(&Method::GET, start + SECOND / 10), Ok(()));
        assert!(limits.admit_at(&Method::GET, start + SECOND / 10).is_err());
        // An idle second refills the burst.
        let later = start + 3 * SECOND;
        for _ in 0..10 {
            assert_eq!(limits.admit_at(&Method::GET, later), Ok(()));
        }
        assert!(limits.admit_at(&Method::GET, later).is_err());
    }

    #[test]
    fn a_method_limit_applies_to_that_method_only() {
        let limits = limits(None, &[("PUT", 1)]);
        let now = 2 * SECOND;
        assert_eq!(limits.admit_at(&Method::PUT, now), Ok(()));
        assert_eq!(
            limits.admit_at(&Method::PUT, now),
            Err(Duration::from_secs(1))
        );
        for _ in 0..1000 {
            assert_eq!(
                limits.admit_at(&Method::GET, now),
                Ok(()),
                "GET is not limited"
            );
        }
    }

    #[test]
    fn concurrent_takers_never_exceed_the_rate() {
        let limits = std::sync::Arc::new(limits(Some(1000), &[]));
        let now = 10 * SECOND;
        let admitted: usize = (0..4)
            .map(|_| {
                let limits = limits.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| limits.admit_at(&Method::GET, now).is_ok())
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|thread| thread.join().unwrap())
            .sum();
        assert_eq!(
            admitted, 1000,
            "exactly one burst is admitted at one instant"
        );
    }
}
