//! Engine calls from threads that are not async: the maintenance threads (GC, scrub, search
//! backfill), the CLI's offline commands, shutdown, and the blocking pool.
//!
//! Rules: on a blocking-pool thread (`spawn_blocking`) the call runs on the runtime that
//! spawned it (its handle; the shard's own thread keeps driving that runtime's I/O); on a
//! plain thread it gets a fresh current-thread runtime for its duration. Never call it from
//! a task: it blocks the thread, which is what the caller chose by being on one of these
//! threads. The embedded index answers at the first poll, so this adds no wait there.
use std::future::Future;

/// Runs `future` to completion on this (non-async) thread.
pub fn block_on<F: Future>(future: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(future),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds (no threads, no I/O resources)")
            .block_on(future),
    }
}
