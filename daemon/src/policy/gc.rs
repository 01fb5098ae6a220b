//! Garbage collection and retention (`storage.gc`, `gcInterval`, `gcDelay`,
//! `gcTimeWindow`, `retention`): the periodic pass while the daemon runs, and
//! `berth gc CONFIG [--dry-run]` offline. What a pass deletes is the engine's business
//! (berth_storage's gc module); this module turns the config into `GcOptions`, runs passes,
//! logs every deletion like zot (`component=gc`) and feeds zot's GC metrics.
//!
//! Rules: one thread, one pass per `gcInterval` (the first one interval after start; it is
//! a full pass), started only inside `gcTimeWindow` when one is set. Setting `stop` ends the
//! thread between passes. Each pass's summary (or its failure) replaces the last one in the
//! engine's maintenance stats, for the operator's health page (ext/health.rs).
//! Several nodes on one shared index: a pass runs only on the node holding the registry's GC
//! lease (the engine's, SHARED.md D5). A periodic pass that finds another node's pass running
//! is skipped (logged at info; it is no run, so `zot_gc_runs_total` does not count it) and
//! tried again at the next interval. `berth gc` refuses instead (exit 2, "another node is
//! collecting"): run it again once that pass is over.
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use berth_storage::stats::{GcPassSummary, PassRecord};
use berth_storage::{Engine, GcKind, GcOptions, GcReport, GcRun};

use crate::config::StorageConfig;
use crate::runtime::periodic;
use crate::serve::open_offline;

/// The pass options `storage` describes.
pub fn options(storage: &StorageConfig) -> anyhow::Result<GcOptions> {
    let mut options = GcOptions::new(storage.gc_delay);
    if let Some(retention) = &storage.retention {
        options.manifest_delay = retention.delay;
        options.retention_dry_run = retention.dry_run;
        let policies = crate::policy::retention::RetentionPolicies::new(retention)
            .map_err(|error| anyhow::anyhow!("storage.retention: {error}"))?;
        options.retention = Some(Arc::new(policies));
    }
    Ok(options)
}

/// Starts the GC thread when `storage.gc` is on; `None` when it is off.
pub fn spawn_periodic(
    engine: Arc<Engine>,
    storage: &StorageConfig,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    if !storage.gc {
        return Ok(None);
    }
    let options = options(storage)?;
    let interval = storage.gc_interval;
    let window = storage.gc_time_window;
    let handle = periodic::spawn(
        "gc",
        stop,
        move || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            // Outside the window the wait restarts, so a pass starts inside it.
            match window {
                Some(window) if !window.contains(now) => None,
                _ => Some(interval),
            }
        },
        move || run_pass(&engine, &options),
    )?;
    Ok(Some(handle))
}

fn run_pass(engine: &Engine, options: &GcOptions) {
    let maintenance = &engine.stats().maintenance;
    let started = Instant::now();
    let result = crate::runtime::blocking::block_on(engine.gc(options));
    if let Ok(GcReport {
        run: GcRun::Skipped { holder, expires_ms },
        ..
    }) = &result
    {
        tracing::info!(
            component = "gc",
            holder = format_args!("{holder:016x}"),
            lease_expires_ms = expires_ms,
            "gc pass skipped: another node is collecting"
        );
        return;
    }
    let elapsed = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    maintenance
        .gc_duration_ns
        .fetch_add(elapsed, Ordering::Relaxed);
    let outcome = match &result {
        Ok(report) => Ok(pass_summary(report)),
        Err(error) => Err(error.to_string()),
    };
    maintenance
        .last_gc
        .record(PassRecord::ended_now(started.elapsed(), outcome));
    match result {
        Ok(report) => {
            log_actions(&report);
            record(engine, &report);
            let runs = match report.errors.is_empty() {
                true => &maintenance.gc_runs_ok,
                false => &maintenance.gc_runs_failed,
            };
            runs.fetch_add(1, Ordering::Relaxed);
            for error in &report.errors {
                tracing::error!(component = "gc", %error, "gc left something alone");
            }
            if let GcRun::Stopped { holder } = report.run {
                tracing::warn!(
                    component = "gc",
                    holder = format_args!("{holder:016x}"),
                    "gc pass stopped early: its lease lapsed and another node took it"
                );
            }
            tracing::info!(
                component = "gc",
                full = report.full,
                repositories = report.repos_visited,
                blobs_examined = report.blobs_examined,
                summary = %summary(&report, "deleted"),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "gc pass finished"
            );
        }
        Err(error) => {
            maintenance.gc_runs_failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(component = "gc", %error, "gc pass failed");
        }
    }
}

fn log_actions(report: &GcReport) {
    for action in &report.actions {
        let repository = action.repo.as_deref().unwrap_or("");
        let message = match action.performed {
            true => "gc deleted",
            false => "gc would delete",
        };
        tracing::info!(
            component = "gc",
            kind = action.kind.name(),
            repository,
            what = %action.what,
            reason = action.reason,
            bytes = action.bytes,
            dry_run = !action.performed,
            "{message}"
        );
    }
}

/// Feeds zot_gc_deleted_total{type} and berth_gc_freed_bytes_total.
fn record(engine: &Engine, report: &GcReport) {
    let maintenance = &engine.stats().maintenance;
    let counter = |kind: GcKind| -> &AtomicU64 {
        match kind {
            GcKind::Tag => &maintenance.gc_deleted_tags,
            GcKind::Manifest => &maintenance.gc_deleted_manifests,
            GcKind::Link => &maintenance.gc_deleted_links,
            GcKind::Blob => &maintenance.gc_deleted_blobs,
            GcKind::OrphanFile => &maintenance.gc_deleted_orphan_files,
            GcKind::Repository => &maintenance.gc_deleted_repositories,
            GcKind::Upload => &maintenance.gc_deleted_uploads,
        }
    };
    for action in report.actions.iter().filter(|action| action.performed) {
        counter(action.kind).fetch_add(1, Ordering::Relaxed);
    }
    maintenance
        .gc_freed_bytes
        .fetch_add(report.bytes_freed(), Ordering::Relaxed);
}

/// What the pass deleted, for the operator's health page (performed deletions only).
fn pass_summary(report: &GcReport) -> GcPassSummary {
    GcPassSummary {
        full: report.full,
        repositories_visited: report.repos_visited,
        blobs_examined: report.blobs_examined,
        deleted_tags: report.performed(GcKind::Tag),
        deleted_manifests: report.performed(GcKind::Manifest),
        deleted_links: report.performed(GcKind::Link),
        deleted_blobs: report.performed(GcKind::Blob),
        deleted_orphan_files: report.performed(GcKind::OrphanFile),
        deleted_repositories: report.performed(GcKind::Repository),
        deleted_uploads: report.performed(GcKind::Upload),
        freed_bytes: report.bytes_freed(),
        left_alone: report.errors.len() as u64,
    }
}

/// `deleted N tags, N manifests, ...` (`verb` is "deleted" or "would delete").
pub fn summary(report: &GcReport, verb: &str) -> String {
    let count = |kind: GcKind| {
        report
            .actions
            .iter()
            .filter(|action| action.kind == kind && action.performed == (verb == "deleted"))
            .count()
    };
    let bytes: u64 = report
        .actions
        .iter()
        .filter(|action| matches!(action.kind, GcKind::Blob | GcKind::OrphanFile))
        .filter(|action| action.performed == (verb == "deleted"))
        .map(|action| action.bytes)
        .sum();
    format!(
        "{verb} {} tags, {} manifests, {} links, {} blobs ({bytes} bytes), {} orphan files, \
         {} repositories, {} uploads",
        count(GcKind::Tag),
        count(GcKind::Manifest),
        count(GcKind::Link),
        count(GcKind::Blob),
        count(GcKind::OrphanFile),
        count(GcKind::Repository),
        count(GcKind::Upload),
    )
}

/// `berth gc CONFIG [--dry-run]`: one full pass with the config's GC and retention
/// settings, a table of what it deleted (or would delete), and a summary line. Exit 0 when
/// the pass ran, 1 when it had to leave something alone (or stopped early because it lost
/// the GC lease); a storage that cannot be opened (the daemon holds it) is an error (exit 2),
/// and so is a shared index where another node's pass holds the lease ("another node is
/// collecting": it does not wait, run it again later). A dry run needs no lease.
pub fn run_offline(path: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let (config, engine) = open_offline(path)?;
    let mut options = options(&config.storage)?;
    options.full = true;
    options.dry_run = dry_run;
    let report = crate::runtime::blocking::block_on(engine.gc(&options))?;
    if let GcRun::Skipped { holder, expires_ms } = report.run {
        let left_s = expires_ms.saturating_sub(now_ms()) / 1000;
        anyhow::bail!(
            "another node is collecting: node {holder:016x} holds the GC lease (for {left_s} s \
             more unless renewed); nothing was done, run `berth gc` again once its pass is over"
        );
    }
    print!("{}", table(&report));
    let verb = if dry_run { "would delete" } else { "deleted" };
    println!("gc: {}", summary(&report, verb));
    for error in &report.errors {
        println!("left alone: {error}");
    }
    if let GcRun::Stopped { holder } = report.run {
        println!("stopped early: the GC lease lapsed and node {holder:016x} took it");
    }
    Ok(match report.errors.is_empty() && report.run == GcRun::Ran {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// One row per deletion: KIND, REPOSITORY, WHAT, REASON, BYTES.
pub fn table(report: &GcReport) -> String {
    let mut rows = vec![[
        "KIND".to_owned(),
        "REPOSITORY".to_owned(),
        "WHAT".to_owned(),
        "REASON".to_owned(),
        "BYTES".to_owned(),
    ]];
    for action in &report.actions {
        rows.push([
            action.kind.name().to_owned(),
            action.repo.clone().unwrap_or_else(|| "-".to_owned()),
            action.what.clone(),
            action.reason.to_owned(),
            action.bytes.to_string(),
        ]);
    }
    crate::ext::scrub::format_table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_is_recorded_as_the_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = crate::test_support::engine(dir.path());
        let maintenance = &engine.stats().maintenance;
        assert_eq!(maintenance.last_gc.get(), None);
        let mut options = GcOptions::new(std::time::Duration::ZERO);
        options.full = true;
        run_pass(&engine, &options);
        let pass = maintenance.last_gc.get().expect("recorded");
        let summary = pass.outcome.expect("the pass ran");
        assert!(summary.full);
        assert_eq!(summary.freed_bytes, 0);
        assert_eq!(maintenance.gc_runs_ok.load(Ordering::Relaxed), 1);
    }
}
