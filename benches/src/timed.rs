//! Timed requests against a registry a benchmark started (search.rs, ui.rs): `-n` requests
//! over `-c` keep-alive connections, each drawn at random by a [`Probe`].
//!
//! Rules: worker `w` draws from a generator seeded with `w + 1`, so a run is repeatable.
//! Requests are handed out from one counter, so the `-n` are spread over whichever
//! connections are free. A request that takes longer than the timeout counts as failed and
//! its connection is redialled. Only what the probe accepts is timed; anything else is a
//! failure, counted by its error text. The time includes drawing the request (microseconds).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::client::Conn;
use crate::stats::{process_cpu_time, Recorder, TestResult};

/// A future a [`Probe`] returns: boxed, since one is made per request of any probe.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Result<u64>> + Send + 'a>>;

/// One kind of request.
pub trait Probe: Send + Sync + 'static {
    /// Sends one request drawn with `rng`; Ok(the body's bytes) only when it answered as it
    /// must.
    fn send<'a>(&'a self, conn: &'a mut Conn, rng: &'a mut StdRng) -> ProbeFuture<'a>;
}

/// `requests` requests of `probe` over `concurrency` connections to `addr`.
pub async fn load(
    addr: SocketAddr,
    name: &str,
    probe: Arc<dyn Probe>,
    concurrency: usize,
    requests: usize,
    timeout: Duration,
) -> Result<TestResult> {
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (next, probe) = (next.clone(), probe.clone());
            tokio::spawn(async move {
                let mut conn = Conn::new(addr);
                let mut rng = StdRng::seed_from_u64(worker as u64 + 1);
                let mut recorder = Recorder::default();
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let began = Instant::now();
                    match tokio::time::timeout(timeout, probe.send(&mut conn, &mut rng)).await {
                        Ok(Ok(bytes)) => {
                            recorder.latencies.push(began.elapsed());
                            recorder.bytes += bytes;
                        }
                        Ok(Err(error)) => recorder.fail(&error),
                        Err(_) => {
                            recorder.fail(&anyhow!("timed out after {timeout:?}"));
                            conn = Conn::new(addr);
                        }
                    }
                }
                recorder
            })
        })
        .collect();
    let recorded = Recorder::gather(workers).await?;
    let elapsed = started.elapsed();
    Ok(TestResult::new(
        name,
        concurrency,
        recorded,
        elapsed,
        process_cpu_time().saturating_sub(cpu_before),
    ))
}
