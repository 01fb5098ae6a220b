//! Garbage collection while the daemon runs (`storage.gc`, `gcInterval`, `gcDelay`). So far
//! it collects one kind of garbage: upload sessions idle for longer than `gcDelay` (no byte
//! received), with their staged bytes. Unreferenced blobs, untagged manifests and retention
//! come with the rest of issue 5.
//!
//! Rules: one thread, one pass per `gcInterval` (the first one interval after start); each
//! pass feeds `zot_gc_runs_total`, `zot_gc_duration_seconds` and `zot_gc_deleted_total`
//! and logs one `component=gc` line. Setting `stop` ends the thread between passes.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_storage::Engine;

use crate::config::StorageConfig;
use crate::periodic;

/// Starts the GC thread when `storage.gc` is on; `None` when it is off.
pub fn spawn_periodic(
    engine: Arc<Engine>,
    storage: &StorageConfig,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    if !storage.gc {
        return Ok(None);
    }
    let (interval, delay) = (storage.gc_interval, storage.gc_delay);
    let handle = periodic::spawn(
        "gc",
        stop,
        move || Some(interval),
        move || run_pass(&engine, delay),
    )?;
    Ok(Some(handle))
}

fn run_pass(engine: &Engine, delay: Duration) {
    let maintenance = &engine.stats().maintenance;
    let started = Instant::now();
    let result = engine.expire_uploads(delay);
    let elapsed = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    maintenance
        .gc_duration_ns
        .fetch_add(elapsed, Ordering::Relaxed);
    match result {
        Ok(expired) => {
            maintenance.gc_runs_ok.fetch_add(1, Ordering::Relaxed);
            maintenance
                .gc_deleted_uploads
                .fetch_add(expired, Ordering::Relaxed);
            tracing::info!(
                component = "gc",
                uploads_deleted = expired,
                "gc pass finished"
            );
        }
        Err(error) => {
            maintenance.gc_runs_failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(component = "gc", %error, "gc pass failed");
        }
    }
}
