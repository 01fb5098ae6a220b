//! Scrub, as operators run it: `berth scrub CONFIG` (offline) prints zot's table of images
//! (REPOSITORY / TAG / STATUS / AFFECTED BLOB / ERROR) with a progress bar on a terminal, and
//! exits 1 when anything is affected; the daemon runs passes periodically
//! (`extensions.scrub`) on its own thread. The pass itself is the engine's (parallel across
//! all cores, largest blobs first).
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use berth_storage::{Engine, ScrubOptions, ScrubReport};

use crate::runtime::live::Live;
use crate::runtime::periodic;
use crate::serve::open_offline;

/// Hashing threads for a pass: every core.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `berth scrub CONFIG`.
pub fn run_offline(path: &Path) -> anyhow::Result<ExitCode> {
    let (_, engine) = open_offline(path)?;
    let options = ScrubOptions::new(workers(), None);
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "scrub {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("a valid template"),
        );
        bar
    });
    let progress = |done: u64, total: u64| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let report = engine.scrub(&options, &progress)?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    print!("{}", table(&report));
    println!(
        "scrubbed {} blobs ({} bytes) and {} manifests in {:.1}s: {} damaged",
        report.blobs_checked,
        report.bytes_checked,
        report.manifests_checked,
        report.elapsed.as_secs_f64(),
        report.damaged.len()
    );
    for (digest, damage) in &report.damaged {
        println!("damaged {digest}: {damage}");
    }
    let affected = report.images.iter().any(|image| image.affected.is_some());
    Ok(match affected || !report.damaged.is_empty() {
        true => ExitCode::from(1),
        false => ExitCode::SUCCESS,
    })
}

/// zot's scrub table: one row per tagged image.
pub fn table(report: &ScrubReport) -> String {
    let mut rows = vec![[
        "REPOSITORY".to_owned(),
        "TAG".to_owned(),
        "STATUS".to_owned(),
        "AFFECTED BLOB".to_owned(),
        "ERROR".to_owned(),
    ]];
    for image in &report.images {
        let (status, blob, error) = match &image.affected {
            None => ("ok", String::new(), String::new()),
            Some((digest, damage)) => ("affected", digest.to_string(), damage.to_string()),
        };
        rows.push([
            image.repo.to_string(),
            image.tag.to_string(),
            status.to_owned(),
            blob,
            error,
        ]);
    }
    format_table(&rows)
}

/// Rows as left-aligned columns two spaces apart (the first row is the header).
pub(crate) fn format_table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Runs scrub passes while the daemon runs (`extensions.scrub`, re-read every tick, so SIGHUP
/// applies): the first pass one interval after start (or after scrub is enabled), then one
/// per interval. Each pass logs every image (`component=scrub`, ok or affected) and feeds the
/// `berth_scrub_*` metrics. Setting `stop` ends the thread, cancelling a running pass.
pub fn spawn_periodic(
    engine: Arc<Engine>,
    live: Arc<Live>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let settings = live.clone();
    let cancel = stop.clone();
    let interval = move || {
        let settings = settings.settings();
        settings.scrub.enabled.then_some(settings.scrub.interval)
    };
    let pass = move || {
        let settings = live.settings().scrub.clone();
        let rate = (settings.max_bytes_per_second > 0).then_some(settings.max_bytes_per_second);
        let mut options = ScrubOptions::new(settings.workers.unwrap_or_else(workers), rate);
        options.cancel = cancel.clone();
        match engine.scrub(&options, &|_, _| {}) {
            Ok(report) => log_report(&report),
            Err(error) => tracing::error!(component = "scrub", %error, "scrub pass failed"),
        }
    };
    periodic::spawn("scrub", stop, interval, pass)
}

fn log_report(report: &ScrubReport) {
    for image in &report.images {
        match &image.affected {
            None => tracing::info!(
                component = "scrub",
                repository = %image.repo,
                tag = %image.tag,
                status = "ok",
                "blobs/manifest ok"
            ),
            Some((digest, damage)) => tracing::error!(
                component = "scrub",
                repository = %image.repo,
                tag = %image.tag,
                status = "affected",
                affected_blob = %digest,
                error = %damage,
                "blobs/manifest affected"
            ),
        }
    }
    tracing::info!(
        component = "scrub",
        blobs = report.blobs_checked,
        bytes = report.bytes_checked,
        manifests = report.manifests_checked,
        damaged = report.damaged.len(),
        seconds = report.elapsed.as_secs_f64(),
        "scrub pass finished"
    );
}
