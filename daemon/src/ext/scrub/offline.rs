//! `berth scrub CONFIG`, offline: zot's table of images (REPOSITORY / TAG / STATUS /
//! AFFECTED BLOB / ERROR) with a progress bar on a terminal; exits 1 when anything is
//! affected. The store must not be open by a running daemon.
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use berth_storage::{ScrubOptions, ScrubReport};

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
    let report = crate::runtime::blocking::block_on(engine.scrub(&options, &progress))?;
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
