//! The configured sync registries as the daemon runs them: each one's upstream client,
//! content rules and the outcome of its fetches, built from `extensions.sync`, and the
//! status document `GET /v2/_berth/ext/sync` serves.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_storage::Engine;

use super::content::ContentRules;
use super::ondemand::OnDemand;
use super::upstream::Upstream;

/// One configured upstream as on-demand sync uses it.
pub struct Registry {
    pub urls: Vec<String>,
    pub upstream: Upstream,
    pub content: ContentRules,
    pub on_demand: bool,
    /// Periodic sync: set when `pollInterval` is and `content` is not empty.
    pub poll_interval: Option<Duration>,
    pub check_interval: Duration,
    /// Images a periodic pass copies at once (`reqConcurrent`).
    pub req_concurrent: usize,
    /// Longest a manifest fetch or a periodic image copy may take (`syncTimeout`).
    pub sync_timeout: Duration,
    /// `onlySigned`: images without a trusted signature upstream are not mirrored.
    pub only_signed: bool,
    /// What came of its fetches (the sync status API).
    pub outcome: Mutex<Outcome>,
}

/// A registry's fetch results since start.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub manifests_synced: u64,
    pub blobs_synced: u64,
    pub last_success_ms: Option<u64>,
    pub last_error: Option<(u64, String)>,
    /// Periodic sync: passes finished, and the last one's result.
    pub runs: u64,
    pub last_run: Option<RunResult>,
    /// Periodic sync: images copied, already stored, failed, over all passes.
    pub images_copied: u64,
    pub images_skipped: u64,
    pub images_failed: u64,
    /// `onlySigned`: images refused for want of a (trusted) signature, both ways of syncing.
    pub refused_unsigned: u64,
}

/// One periodic pass's result.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    pub finished_ms: u64,
    pub copied: u64,
    pub skipped: u64,
    pub failed: u64,
    /// The first error of the pass (catalog unreachable, an image that failed).
    pub error: Option<String>,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

impl Registry {
    pub(crate) fn succeeded(&self, blob: bool) {
        let mut outcome = self.outcome.lock().expect("outcome lock is never poisoned");
        match blob {
            true => outcome.blobs_synced += 1,
            false => outcome.manifests_synced += 1,
        }
        outcome.last_success_ms = Some(now_ms());
    }

    pub(crate) fn refused_unsigned(&self) {
        let mut outcome = self.outcome.lock().expect("outcome lock is never poisoned");
        outcome.refused_unsigned += 1;
    }

    pub(crate) fn failed(&self, error: &dyn std::fmt::Display) {
        let mut outcome = self.outcome.lock().expect("outcome lock is never poisoned");
        outcome.last_error = Some((now_ms(), error.to_string()));
    }
}

/// The status API's document for `registries`: configuration, traffic and outcome of each.
pub fn status(registries: &[Registry]) -> serde_json::Value {
    let registries: Vec<serde_json::Value> = registries
        .iter()
        .map(|registry| {
            let stats = registry.upstream.stats();
            let outcome = registry
                .outcome
                .lock()
                .expect("outcome lock is never poisoned")
                .clone();
            let requests: serde_json::Map<String, serde_json::Value> = stats
                .requests_by_status()
                .into_iter()
                .map(|(code, count)| (code.to_string(), count.into()))
                .collect();
            serde_json::json!({
                "urls": registry.urls,
                "upstream": stats.name(),
                "onDemand": registry.on_demand,
                "onlySigned": registry.only_signed,
                "refusedUnsigned": outcome.refused_unsigned,
                "manifestCheckIntervalSeconds": registry.check_interval.as_secs_f64(),
                "manifestsSynced": outcome.manifests_synced,
                "blobsSynced": outcome.blobs_synced,
                "lastSuccessUnixMs": outcome.last_success_ms,
                "lastError": outcome.last_error.map(|(at, message)| serde_json::json!({
                    "unixMs": at,
                    "message": message,
                })),
                "requests": requests,
                "failedRequests": stats.failures(),
                "retries": stats.retries(),
                "throttled": stats.throttled(),
                "bytesReceived": stats.bytes_received(),
                "inFlight": stats.in_flight_now(),
                "pollIntervalSeconds": registry.poll_interval.map(|every| every.as_secs_f64()),
                "periodic": {
                    "runs": outcome.runs,
                    "imagesCopied": outcome.images_copied,
                    "imagesSkipped": outcome.images_skipped,
                    "imagesFailed": outcome.images_failed,
                    "lastRun": outcome.last_run.map(|run| serde_json::json!({
                        "finishedUnixMs": run.finished_ms,
                        "copied": run.copied,
                        "skipped": run.skipped,
                        "failed": run.failed,
                        "error": run.error,
                    })),
                },
            })
        })
        .collect();
    serde_json::json!({ "registries": registries })
}

/// Requests in flight to one upstream at most. `reqConcurrent` bounds periodic sync's
/// parallel image copies; on-demand traffic only meets this cap, so that a few stalled or
/// long requests (a 30 s header timeout, a 1 GB blob) never hold up the rest of a mirror.
const UPSTREAM_IN_FLIGHT: usize = 64;

/// Builds sync from `extensions.sync`: one `Upstream` per registry (its I/O on `runtime`),
/// `None` when sync is off or has no registry.
pub fn build(
    config: &crate::config::SyncConfig,
    engine: Arc<Engine>,
    trust: Option<Arc<crate::ext::trust::Trust>>,
    runtime: tokio::runtime::Handle,
) -> Result<Option<Arc<OnDemand>>, String> {
    if !config.enabled || config.registries.is_empty() {
        return Ok(None);
    }
    let credentials = match &config.credentials_file {
        Some(path) => super::auth::Credentials::load(path)?,
        None => super::auth::Credentials::default(),
    };
    let mut registries = Vec::new();
    for (index, registry) in config.registries.iter().enumerate() {
        let name = registry
            .urls
            .first()
            .map(|url| {
                url.trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_owned()
            })
            .unwrap_or_default();
        let options = super::upstream::UpstreamOptions {
            name,
            urls: registry.urls.clone(),
            credentials: credentials.clone(),
            tls_verify: registry.tls_verify,
            cert_dir: registry.cert_dir.clone(),
            max_retries: registry.max_retries,
            retry_delay: registry.retry_delay,
            max_retry_delay: registry.max_retry_delay,
            req_concurrent: registry.req_concurrent.max(UPSTREAM_IN_FLIGHT),
            req_per_sec: registry.req_per_sec,
            response_header_timeout: Duration::from_secs(30),
        };
        let upstream = Upstream::new(options, runtime.clone())
            .map_err(|error| format!("extensions.sync.registries[{index}]: {error}"))?;
        let content = ContentRules::new(&registry.content)
            .map_err(|error| format!("extensions.sync.registries[{index}].content: {error}"))?;
        registries.push(Registry {
            urls: registry.urls.clone(),
            outcome: Mutex::default(),
            upstream,
            content,
            on_demand: registry.on_demand,
            only_signed: registry.only_signed,
            poll_interval: registry
                .poll_interval
                .filter(|every| !every.is_zero() && !registry.content.is_empty()),
            check_interval: registry.manifest_check_interval,
            req_concurrent: registry.req_concurrent,
            sync_timeout: registry.sync_timeout,
        });
    }
    Ok(Some(Arc::new(OnDemand::new(
        registries, engine, trust, runtime,
    ))))
}
