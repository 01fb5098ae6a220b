//! The scrub extension (`extensions.scrub`): the daemon verifies every blob and manifest
//! periodically on its own thread (the pass itself is the engine's: parallel across all
//! cores, largest blobs first), logs each image (`component=scrub`), and answers the last
//! pass's report at `/v2/_zot/ext/scrub` (admins only with access control; listed in
//! discover's `_zot` entry while scrub is enabled). `berth scrub CONFIG` runs one pass
//! offline (offline.rs).
//!
//! Rules: the settings are re-read every tick, so SIGHUP applies; setting the stop flag ends
//! the thread, cancelling a running pass. The report is read on the blocking pool, never on
//! the shard. Each pass's summary (or its failure) replaces the last one in the engine's
//! maintenance stats, for the operator's health page (ext/health.rs).
mod offline;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use berth_storage::stats::{PassRecord, ScrubPassSummary};
use berth_storage::{Engine, ScrubOptions, ScrubReport};
use hyper::{Request, StatusCode};
use serde_json::json;

pub(crate) use offline::format_table;
pub use offline::{run_offline, table, workers};

use super::{Entry, Extension, Listed, Need, Reply, Route, Worker, READ};
use crate::api::{
    body::{json_response, RequestBody},
    error::ApiError,
    Ctx,
};
use crate::runtime::live::Live;
use crate::runtime::periodic;

/// The last pass's report (berth, under zot's extension prefix).
pub const REPORT_PATH: &str = "/v2/_zot/ext/scrub";

const ROUTES: &[Route] = &[Route {
    path: REPORT_PATH,
    methods: READ,
    need: Need::Admin,
}];

/// The scrub extension of a running daemon.
pub struct ScrubExt {
    engine: Arc<Engine>,
    live: Arc<Live>,
}

impl ScrubExt {
    pub fn new(engine: Arc<Engine>, live: Arc<Live>) -> ScrubExt {
        ScrubExt { engine, live }
    }
}

impl Extension for ScrubExt {
    fn name(&self) -> &'static str {
        "scrub"
    }

    fn routes(&self) -> &[Route] {
        ROUTES
    }

    fn handle<'a>(
        &'a self,
        _req: Request<RequestBody>,
        _ctx: &'a Ctx,
        _user: Option<&'a str>,
    ) -> Reply<'a> {
        Box::pin(report(self.engine.clone()))
    }

    fn start(&self, stop: &Arc<AtomicBool>) -> std::io::Result<Vec<Worker>> {
        let thread = spawn_periodic(self.engine.clone(), self.live.clone(), stop.clone())?;
        Ok(vec![Worker::thread(thread)])
    }

    fn discover(&self, _ctx: &Ctx) -> Vec<Listed> {
        match self.live.settings().scrub.enabled {
            true => vec![Listed {
                entry: Entry::Zot,
                endpoint: REPORT_PATH,
                offers: "the scrub report",
            }],
            false => Vec::new(),
        }
    }
}

/// `GET /v2/_zot/ext/scrub`: the last scrub pass's report (daemon or `berth scrub`), as
/// `{"lastPass": REPORT}`, `{"lastPass": null}` before the first pass.
async fn report(engine: Arc<Engine>) -> Result<hyper::Response<crate::api::body::Body>, ApiError> {
    let report = tokio::task::spawn_blocking(move || {
        crate::runtime::blocking::block_on(engine.last_scrub_report())
    })
    .await
    .map_err(|error| ApiError::Internal(error.to_string()))??;
    let last = match report {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|error| ApiError::Internal(format!("stored scrub report: {error}")))?,
        None => serde_json::Value::Null,
    };
    Ok(json_response(
        StatusCode::OK,
        "application/json",
        json!({ "lastPass": last }),
    ))
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
        run_pass(&engine, &options);
    };
    periodic::spawn("scrub", stop, interval, pass)
}

/// One pass: logged, and recorded as the engine's last scrub pass.
fn run_pass(engine: &Engine, options: &ScrubOptions) {
    let started = std::time::Instant::now();
    let result = crate::runtime::blocking::block_on(engine.scrub(options, &|_, _| {}));
    let outcome = match &result {
        Ok(report) => Ok(pass_summary(report)),
        Err(error) => Err(error.to_string()),
    };
    let last = &engine.stats().maintenance.last_scrub;
    last.record(PassRecord::ended_now(started.elapsed(), outcome));
    match result {
        Ok(report) => log_report(&report),
        Err(error) => tracing::error!(component = "scrub", %error, "scrub pass failed"),
    }
}

/// What the pass verified and found, for the operator's health page.
fn pass_summary(report: &ScrubReport) -> ScrubPassSummary {
    ScrubPassSummary {
        blobs_checked: report.blobs_checked,
        bytes_checked: report.bytes_checked,
        manifests_checked: report.manifests_checked,
        damaged: report.damaged.len() as u64,
        images_affected: report
            .images
            .iter()
            .filter(|image| image.affected.is_some())
            .count() as u64,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_is_recorded_as_the_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = crate::test_support::engine(dir.path());
        let maintenance = &engine.stats().maintenance;
        assert_eq!(maintenance.last_scrub.get(), None);
        run_pass(&engine, &ScrubOptions::new(1, None));
        let pass = maintenance.last_scrub.get().expect("recorded");
        assert_eq!(pass.outcome, Ok(ScrubPassSummary::default()));
        assert!(pass.finished_unix_ms > 0);
    }
}
