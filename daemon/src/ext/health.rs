//! The operator's health snapshot (the web UI's operator page, admins only): storage used per
//! namespace against its quota, the last GC and scrub pass, each sync upstream's state, the
//! upload sessions open, the daemon's version and uptime. [`Health`] is plain data; whoever
//! serves it serializes it (JSON, names in snake_case with their units). [`gather`] fills it.
//!
//! Rules:
//! - Nothing is kept here: every figure is read where the running daemon already keeps it
//!   (the engine's usage tracker and maintenance stats, the quotas, sync's registries, the
//!   metrics' start time). The GC and scrub threads record their last pass in the engine's
//!   maintenance stats (policy/gc.rs, ext/scrub/), so both are `None` until this process
//!   finished one.
//! - Usage comes from `Engine::usage`, which rescans only the repositories changed since its
//!   last call, but every repository on its first call after start (as the first metrics
//!   scrape does). Measured on a copy of /work/bench/store10k3 (10,050 repositories, 100,000
//!   images; test profile, 2 busy cores): first call 1.3 s, then 0.3 ms with nothing changed;
//!   the grouping below (one glob match per quota per repository) 2 ms with 3 quotas. Both run
//!   on the blocking pool, never on the shard.
//! - A namespace is a repository name's first component (`library` for `library/alpine`; a
//!   one-component name is its own namespace). At most [`NAMESPACES_LISTED_MAX`] are listed,
//!   largest first; `namespaces_total` says how many there are.
//! - A namespace's quota is the byte quota whose glob matches every one of its repositories
//!   (the smallest when several do; of equal ones, the first in the quotas' order). Its
//!   `quota_used_bytes` is what that quota is checked against: every repository its glob
//!   matches, which includes other namespaces when the glob spans several.
//! - A repository's used bytes are its linked blobs' sizes plus its manifests' bytes, as the
//!   quotas count them: a blob linked in two repositories counts in both.
//! - A sync upstream is `failing` when its latest outcome (an on-demand fetch or a periodic
//!   pass) is an error, `ok` when it is a success, `idle` before either.
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use berth_storage::stats::{GcPassSummary, PassRecord, ScrubPassSummary};
use berth_storage::{Engine, StorageError, UsageSnapshot};
use serde::Serialize;

use crate::api::{error::ApiError, Ctx};
use crate::ext::sync::registry::{Outcome, Registry};
use crate::policy::quota::{Quotas, Rule};

/// Most namespaces listed (the largest); a store of 10,000 one-component repositories has
/// 10,000 namespaces, and the page shows where the bytes are.
pub const NAMESPACES_LISTED_MAX: usize = 50;

/// The running daemon's health, for its operator.
#[derive(Clone, Debug, Serialize)]
pub struct Health {
    /// The daemon's version (`CARGO_PKG_VERSION`).
    pub version: &'static str,
    /// The commit it was built from.
    pub git_commit: &'static str,
    /// When it started serving, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    pub uptime_seconds: u64,
    pub storage: StorageHealth,
    /// Upload sessions received and not yet committed or cancelled: this node's when blobs
    /// are files, the whole registry's when they are in S3 (`Engine::upload_sessions_open`).
    pub upload_sessions_open: u64,
    pub gc: GcHealth,
    pub scrub: ScrubHealth,
    /// One entry per configured sync registry; empty when sync is off.
    pub sync_upstreams: Vec<UpstreamHealth>,
}

/// Where the stored bytes are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StorageHealth {
    /// Blobs in the store, each stored once, and their bytes.
    pub blobs: u64,
    pub blob_bytes: u64,
    /// What storing each blob once saves over a copy per repository.
    pub dedupe_saved_bytes: u64,
    pub repositories: usize,
    /// Every configured quota (`storage.quotas`) with its namespace's usage.
    pub quotas: Vec<QuotaUsage>,
    /// The largest namespaces, largest first (at most [`NAMESPACES_LISTED_MAX`]).
    pub namespaces: Vec<NamespaceUsage>,
    /// How many namespaces there are, listed or not.
    pub namespaces_total: usize,
}

/// One configured quota: the repositories its glob matches, against its limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuotaUsage {
    /// The repository glob, as configured.
    pub pattern: String,
    pub used_bytes: u64,
    pub quota_bytes: Option<u64>,
    pub repositories: usize,
    pub quota_repositories: Option<u64>,
}

/// One namespace (a repository name's first component).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NamespaceUsage {
    pub namespace: String,
    pub used_bytes: u64,
    pub repositories: usize,
    /// The byte quota that covers the whole namespace (see the module comment), if any.
    pub quota_pattern: Option<String>,
    pub quota_bytes: Option<u64>,
    /// What that quota is checked against (its glob's repositories, all namespaces).
    pub quota_used_bytes: Option<u64>,
}

/// One finished pass, as the page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PassHealth<T> {
    /// When it ended, in milliseconds since the Unix epoch.
    pub finished_unix_ms: u64,
    pub duration_ms: u64,
    /// What it did; `None` when it failed as a whole.
    pub summary: Option<T>,
    /// Why it failed as a whole.
    pub error: Option<String>,
}

impl<T> From<PassRecord<T>> for PassHealth<T> {
    fn from(pass: PassRecord<T>) -> PassHealth<T> {
        let (summary, error) = match pass.outcome {
            Ok(summary) => (Some(summary), None),
            Err(error) => (None, Some(error)),
        };
        PassHealth {
            finished_unix_ms: pass.finished_unix_ms,
            duration_ms: pass.duration_ms,
            summary,
            error,
        }
    }
}

/// Garbage collection since start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GcHealth {
    pub passes_succeeded: u64,
    /// Passes that failed, or had to leave something alone.
    pub passes_failed: u64,
    pub last_pass: Option<PassHealth<GcPassSummary>>,
}

/// Scrub since start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScrubHealth {
    /// Passes that ran to their end.
    pub passes_completed: u64,
    pub last_pass: Option<PassHealth<ScrubPassSummary>>,
}

/// How a sync upstream is doing (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamState {
    Idle,
    Ok,
    Failing,
}

/// One configured sync registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpstreamHealth {
    /// Its name in logs and metrics (the first URL's host[:port]).
    pub upstream: String,
    pub urls: Vec<String>,
    pub on_demand: bool,
    /// Periodic sync's interval, when it runs.
    pub poll_interval_seconds: Option<u64>,
    pub state: UpstreamState,
    pub last_success_unix_ms: Option<u64>,
    /// The latest error, of an on-demand fetch or of a periodic pass.
    pub last_error: Option<UpstreamError>,
    pub last_periodic_pass: Option<PeriodicPass>,
    /// Requests that got no response since start.
    pub failed_requests: u64,
    pub requests_in_flight: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpstreamError {
    pub unix_ms: u64,
    pub message: String,
}

/// A periodic sync pass's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeriodicPass {
    pub finished_unix_ms: u64,
    pub images_copied: u64,
    pub images_skipped: u64,
    pub images_failed: u64,
    /// The pass's first error.
    pub error: Option<String>,
}

/// The running daemon's health. The usage figures are computed on the blocking pool (see the
/// module comment); the rest is read from memory. Cancel: nothing to undo.
pub async fn gather(ctx: &Ctx) -> Result<Health, ApiError> {
    let (engine, quotas) = (ctx.engine.clone(), ctx.quotas.clone());
    let (storage, upload_sessions_open) = tokio::task::spawn_blocking(move || {
        crate::runtime::blocking::block_on(storage_health(&engine, &quotas))
    })
    .await
    .map_err(|error| ApiError::Internal(format!("health: usage task: {error}")))??;
    let maintenance = &ctx.engine.stats().maintenance;
    let started = ctx.metrics.started();
    let uptime = SystemTime::now()
        .duration_since(started)
        .unwrap_or_default();
    let started_unix_ms = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    Ok(Health {
        version: env!("CARGO_PKG_VERSION"),
        git_commit: env!("BERTH_GIT_COMMIT"),
        started_unix_ms,
        uptime_seconds: uptime.as_secs(),
        storage,
        upload_sessions_open,
        gc: GcHealth {
            passes_succeeded: maintenance.gc_runs_ok.load(Relaxed),
            passes_failed: maintenance.gc_runs_failed.load(Relaxed),
            last_pass: maintenance.last_gc.get().map(PassHealth::from),
        },
        scrub: ScrubHealth {
            passes_completed: maintenance.scrub_runs.load(Relaxed),
            last_pass: maintenance.last_scrub.get().map(PassHealth::from),
        },
        sync_upstreams: ctx.sync.as_ref().map_or_else(Vec::new, |sync| {
            sync.registries().iter().map(upstream_health).collect()
        }),
    })
}

/// Run on the blocking pool: `Engine::usage` and `Engine::upload_sessions_open` may scan the
/// index. Returns the storage figures and the upload sessions open.
async fn storage_health(
    engine: &Engine,
    quotas: &Quotas,
) -> Result<(StorageHealth, u64), StorageError> {
    let storage = summarize(&engine.usage().await?, quotas.rules());
    Ok((storage, engine.upload_sessions_open().await?))
}

/// The namespace of a repository: its name's first component.
fn namespace_of(repository: &str) -> &str {
    repository
        .split_once('/')
        .map_or(repository, |(first, _)| first)
}

/// One namespace while the repositories are added up.
struct Tally<'a> {
    namespace: &'a str,
    used_bytes: u64,
    repositories: usize,
    /// Per rule: whether it matched every repository so far.
    matched_by: Vec<bool>,
}

/// The usage per quota and per namespace (the module comment says how they are defined).
fn summarize(usage: &UsageSnapshot, rules: &[Rule]) -> StorageHealth {
    let mut per_rule = vec![(0u64, 0usize); rules.len()];
    let mut tallies: HashMap<&str, Tally<'_>> = HashMap::new();
    for (repository, bytes) in &usage.repos {
        let namespace = namespace_of(repository.as_str());
        let tally = tallies.entry(namespace).or_insert_with(|| Tally {
            namespace,
            used_bytes: 0,
            repositories: 0,
            matched_by: vec![true; rules.len()],
        });
        tally.used_bytes += bytes;
        tally.repositories += 1;
        for (index, rule) in rules.iter().enumerate() {
            let matches = rule.matches(repository);
            if matches {
                per_rule[index].0 += bytes;
                per_rule[index].1 += 1;
            }
            tally.matched_by[index] &= matches;
        }
    }
    let namespaces_total = tallies.len();
    let mut largest: Vec<Tally<'_>> = tallies.into_values().collect();
    largest.sort_unstable_by(|a, b| (b.used_bytes, a.namespace).cmp(&(a.used_bytes, b.namespace)));
    largest.truncate(NAMESPACES_LISTED_MAX);
    let namespaces = largest
        .into_iter()
        .map(|tally| {
            let quota = rules
                .iter()
                .enumerate()
                .filter(|(index, _)| tally.matched_by[*index])
                .filter_map(|(index, rule)| Some((index, rule, rule.max_bytes()?)))
                .min_by_key(|(_, _, max_bytes)| *max_bytes);
            NamespaceUsage {
                namespace: tally.namespace.to_owned(),
                used_bytes: tally.used_bytes,
                repositories: tally.repositories,
                quota_pattern: quota.map(|(_, rule, _)| rule.pattern().to_owned()),
                quota_bytes: quota.map(|(_, _, max_bytes)| max_bytes),
                quota_used_bytes: quota.map(|(index, _, _)| per_rule[index].0),
            }
        })
        .collect();
    let quotas = rules
        .iter()
        .zip(&per_rule)
        .map(|(rule, (used_bytes, repositories))| QuotaUsage {
            pattern: rule.pattern().to_owned(),
            used_bytes: *used_bytes,
            quota_bytes: rule.max_bytes(),
            repositories: *repositories,
            quota_repositories: rule.max_repositories(),
        })
        .collect();
    StorageHealth {
        blobs: usage.blobs,
        blob_bytes: usage.blob_bytes,
        dedupe_saved_bytes: usage.dedupe_saved_bytes,
        repositories: usage.repos.len(),
        quotas,
        namespaces,
        namespaces_total,
    }
}

fn upstream_health(registry: &Registry) -> UpstreamHealth {
    let stats = registry.upstream.stats();
    let outcome = registry
        .outcome
        .lock()
        .expect("outcome lock is never poisoned")
        .clone();
    let last_error = latest_error(&outcome);
    UpstreamHealth {
        upstream: stats.name().to_owned(),
        urls: registry.urls.clone(),
        on_demand: registry.on_demand,
        poll_interval_seconds: registry.poll_interval.map(|every| every.as_secs()),
        state: state(
            outcome.last_success_ms,
            last_error.as_ref().map(|error| error.unix_ms),
        ),
        last_success_unix_ms: outcome.last_success_ms,
        last_error,
        last_periodic_pass: outcome.last_run.map(|run| PeriodicPass {
            finished_unix_ms: run.finished_ms,
            images_copied: run.copied,
            images_skipped: run.skipped,
            images_failed: run.failed,
            error: run.error,
        }),
        failed_requests: stats.failures(),
        requests_in_flight: stats.in_flight_now(),
    }
}

/// The later of the last on-demand error and the last periodic pass's error.
fn latest_error(outcome: &Outcome) -> Option<UpstreamError> {
    let on_demand = outcome.last_error.clone();
    let periodic = outcome
        .last_run
        .as_ref()
        .and_then(|run| Some((run.finished_ms, run.error.clone()?)));
    [on_demand, periodic]
        .into_iter()
        .flatten()
        .max_by_key(|(unix_ms, _)| *unix_ms)
        .map(|(unix_ms, message)| UpstreamError { unix_ms, message })
}

/// `failing` when the latest outcome is an error (an error in the same millisecond as a
/// success does not count as later).
fn state(last_success_ms: Option<u64>, last_error_ms: Option<u64>) -> UpstreamState {
    match (last_success_ms, last_error_ms) {
        (None, None) => UpstreamState::Idle,
        (_, None) => UpstreamState::Ok,
        (Some(success), Some(error)) if success >= error => UpstreamState::Ok,
        (_, Some(_)) => UpstreamState::Failing,
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
