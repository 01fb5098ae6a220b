//! One scrape: every family, in a fixed order, from the shards' counters, the engine's
//! measurements and the process. The family list here is the reference for
//! `config/grafana/berth.json` and the README's monitoring section.
//!
//! Rules: every family is written with its HELP and TYPE even when it has no series yet
//! (sync, scheduler), so dashboards and alerts can be checked against a fresh daemon.

use berth_storage::stats::ring_snapshots;
use berth_storage::{Engine, IndexStats, UsageSnapshot};

use super::expose::{Exposition, Kind};
use super::{process, Metrics, METHODS};
use crate::ext::sync::ondemand::OnDemand;
use crate::ext::sync::registry::Registry;
use crate::ext::sync::upstream_stats::UpstreamStats;

/// What a scrape reads from the engine's index before it writes anything (the caller reads
/// it on a blocking pool: usage scans the repositories changed since the last scrape).
pub struct IndexReads {
    /// [`Engine::usage`].
    pub usage: UsageSnapshot,
    /// [`Engine::index_stats`].
    pub index: IndexStats,
    /// [`Engine::upload_sessions_open`] (registry-wide when blobs are in S3).
    pub upload_sessions_open: u64,
}

impl IndexReads {
    pub async fn of(engine: &Engine) -> Result<IndexReads, berth_storage::StorageError> {
        Ok(IndexReads {
            usage: engine.usage().await?,
            index: engine.index_stats().await,
            upload_sessions_open: engine.upload_sessions_open().await?,
        })
    }
}

/// Writes the whole exposition from `reads` and the in-memory counters. `namespace` prefixes
/// zot's families (`zot` or `berth`).
pub fn scrape(
    metrics: &Metrics,
    engine: &Engine,
    reads: &IndexReads,
    namespace: &str,
    sync: Option<&OnDemand>,
    trust: Option<&crate::ext::trust::Trust>,
    auth: Option<&crate::auth::htpasswd::Authenticator>,
) -> String {
    let (usage, index) = (&reads.usage, &reads.index);
    let totals = metrics.totals();
    let mut out = Exposition::with_capacity(16 * 1024 + totals.repos.len() * 600);
    let ns = |name: &str| format!("{namespace}_{name}");

    // ---- zot's HTTP families
    let name = ns("http_requests_total");
    out.family(&name, Kind::Counter, "Total number of HTTP requests.");
    let mut code_text = String::new();
    for (method, code, count) in totals.request_counts() {
        code_text.clear();
        code_text.push_str(&code.to_string());
        out.count(&name, &[("method", method), ("code", &code_text)], count);
    }
    let name = ns("http_repo_latency_seconds");
    out.family(&name, Kind::Summary, "Latency of repository requests.");
    let mut repos: Vec<_> = totals.repos.iter().collect();
    repos.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (repo, counters) in &repos {
        let seconds = counters.latency_ns as f64 / 1e9;
        out.summary(&name, &[("repo", repo)], seconds, counters.requests);
    }
    let name = ns("http_method_latency_seconds");
    out.family(
        &name,
        Kind::Histogram,
        "Latency of HTTP requests by method.",
    );
    for (method, histogram) in METHODS.iter().zip(&totals.method_latency) {
        if histogram.count > 0 {
            out.histogram(&name, &[("method", method)], histogram);
        }
    }

    // ---- zot's repository families
    let name = ns("repo_storage_bytes");
    out.family(&name, Kind::Gauge, "Storage used per repository.");
    for (repo, bytes) in &usage.repos {
        out.count(&name, &[("repo", repo.as_str())], *bytes);
    }
    let name = ns("repo_uploads_total");
    out.family(
        &name,
        Kind::Counter,
        "Total number of manifest uploads per repository.",
    );
    for (repo, counters) in repos.iter().filter(|(_, c)| c.uploads > 0) {
        out.count(&name, &[("repo", repo)], counters.uploads);
    }
    let name = ns("repo_downloads_total");
    out.family(
        &name,
        Kind::Counter,
        "Total number of manifest downloads per repository.",
    );
    for (repo, counters) in repos.iter().filter(|(_, c)| c.downloads > 0) {
        out.count(&name, &[("repo", repo)], counters.downloads);
    }
    let name = ns("info");
    out.family(&name, Kind::Gauge, "Server general information.");
    // zot's camelCase label names in the zot namespace (dashboards match on them; promtool's
    // naming lint flags them, as it flags zot's own output); snake_case in berth's.
    let zot = namespace == "zot";
    let label = |zot_name: &'static str, snake_name: &'static str| match zot {
        true => zot_name,
        false => snake_name,
    };
    let labels = [
        ("commit", env!("BERTH_GIT_COMMIT")),
        (label("binaryType", "binary_type"), crate::ext::BINARY_TYPE),
        (
            label("goVersion", "rustc_version"),
            env!("BERTH_RUSTC_VERSION"),
        ),
        ("version", env!("CARGO_PKG_VERSION")),
    ];
    out.sample(&name, &labels, 1.0);

    // ---- zot's storage, scheduler and GC families
    let stats = engine.stats();
    let root = engine.root().display().to_string();
    let name = ns("storage_lock_latency_seconds");
    out.family(
        &name,
        Kind::Histogram,
        "Time spent waiting for a storage lock.",
    );
    // berth's reads take no lock; writers wait on their repository's lock.
    let lock_labels = [
        (label("storageName", "storage_name"), root.as_str()),
        (label("lockType", "lock_type"), "RWLock"),
    ];
    out.histogram(&name, &lock_labels, &stats.lock_wait.snapshot());
    scheduler_families(&mut out, &ns);
    gc_families(&mut out, &ns, engine);

    // ---- berth's HTTP and repository families
    out.family(
        "berth_http_requests_in_flight",
        Kind::Gauge,
        "Requests being served.",
    );
    out.sample(
        "berth_http_requests_in_flight",
        &[],
        totals.in_flight as f64,
    );
    out.family(
        "berth_http_received_bytes_total",
        Kind::Counter,
        "Request body bytes received.",
    );
    out.count(
        "berth_http_received_bytes_total",
        &[],
        totals.received_bytes,
    );
    out.family(
        "berth_http_sent_bytes_total",
        Kind::Counter,
        "Response body bytes sent.",
    );
    out.count("berth_http_sent_bytes_total", &[], totals.sent_bytes);
    let name = "berth_repo_received_bytes_total";
    out.family(
        name,
        Kind::Counter,
        "Request body bytes received per repository.",
    );
    for (repo, counters) in repos.iter().filter(|(_, c)| c.received_bytes > 0) {
        out.count(name, &[("repo", repo)], counters.received_bytes);
    }
    let name = "berth_repo_sent_bytes_total";
    out.family(
        name,
        Kind::Counter,
        "Response body bytes sent per repository.",
    );
    for (repo, counters) in repos.iter().filter(|(_, c)| c.sent_bytes > 0) {
        out.count(name, &[("repo", repo)], counters.sent_bytes);
    }

    // ---- berth's storage families
    let gauges = [
        (
            "berth_upload_sessions_open",
            "Upload sessions open.",
            reads.upload_sessions_open,
        ),
        (
            "berth_blob_store_blobs",
            "Blobs stored (each once, however many repositories link it).",
            usage.blobs,
        ),
        (
            "berth_blob_store_bytes",
            "Bytes of stored blobs.",
            usage.blob_bytes,
        ),
        (
            "berth_dedupe_saved_bytes",
            "Bytes that storing each blob once saves over a copy per repository.",
            usage.dedupe_saved_bytes,
        ),
    ];
    for (name, help, value) in gauges {
        out.family(name, Kind::Gauge, help);
        out.count(name, &[], value);
    }
    let gauges = [
        (
            "berth_index_sst_bytes",
            "Bytes of the index's SST files.",
            index.sst_bytes,
        ),
        (
            "berth_index_memtable_bytes",
            "Bytes in the index's memtables.",
            index.memtable_bytes,
        ),
        (
            "berth_index_pending_compaction_bytes",
            "Bytes the index's compaction estimates it must rewrite.",
            index.pending_compaction_bytes,
        ),
        (
            "berth_index_running_compactions",
            "Index compactions running.",
            index.running_compactions,
        ),
        (
            "berth_index_write_stopped",
            "1 while index writes are stopped (a write stall).",
            u64::from(index.write_stopped),
        ),
        (
            "berth_index_delayed_write_rate_bytes",
            "Rate index writes are slowed to (bytes/s); 0 when not delayed.",
            index.delayed_write_rate_bytes,
        ),
    ];
    for (name, help, value) in gauges {
        out.family(name, Kind::Gauge, help);
        out.count(name, &[], value);
    }
    let name = "berth_index_write_stalls_total";
    out.family(name, Kind::Counter, "Index write stalls begun since start, by kind (delay: writes slowed; stop: writes blocked).");
    out.count(name, &[("kind", "delay")], index.write_delays);
    out.count(name, &[("kind", "stop")], index.write_stops);
    let rings = ring_snapshots();
    let name = "berth_io_uring_submitted_total";
    out.family(
        name,
        Kind::Counter,
        "File operations submitted to each shard's io_uring.",
    );
    for ring in &rings {
        out.count(name, &[("shard", &ring.thread)], ring.submitted);
    }
    let name = "berth_io_uring_completed_total";
    out.family(
        name,
        Kind::Counter,
        "File operations completed by each shard's io_uring.",
    );
    for ring in &rings {
        out.count(name, &[("shard", &ring.thread)], ring.completed);
    }
    let name = "berth_fsync_duration_seconds";
    out.family(name, Kind::Histogram, "Time to make writes durable: fsync of staged files and directories, synced index (WAL) writes.");
    let fsyncs = [
        ("file", &stats.fsync_file),
        ("directory", &stats.fsync_directory),
        ("wal", &stats.fsync_wal),
    ];
    for (target, histogram) in fsyncs {
        out.histogram(name, &[("target", target)], &histogram.snapshot());
    }
    scrub_families(&mut out, engine);
    sync_families(&mut out, sync.map_or(&[][..], |sync| sync.registries()));
    if let Some(trust) = trust {
        super::security::trust_families(&mut out, trust);
    }
    if let Some(auth) = auth {
        super::security::auth_families(&mut out, auth);
    }

    // ---- process
    let process = process::read(metrics.started);
    out.family(
        "process_cpu_seconds_total",
        Kind::Counter,
        "Total user and system CPU time spent in seconds.",
    );
    if let Some(seconds) = process.cpu_seconds {
        out.sample("process_cpu_seconds_total", &[], seconds);
    }
    let gauges = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            process.resident_bytes,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            process.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            process.max_fds,
        ),
    ];
    for (name, help, value) in gauges {
        out.family(name, Kind::Gauge, help);
        if let Some(value) = value {
            out.count(name, &[], value);
        }
    }
    out.family(
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since unix epoch in seconds.",
    );
    out.sample(
        "process_start_time_seconds",
        &[],
        process.start_time_seconds,
    );
    out.finish()
}

/// zot's scheduler families. berth has no background task scheduler yet (GC, scrub and sync
/// bring it), so they have no series: declared, so that zot's dashboards find them.
fn scheduler_families(out: &mut Exposition, ns: &dyn Fn(&str) -> String) {
    let families = [
        (
            "scheduler_generators_total",
            Kind::Counter,
            "Total number of generators.",
        ),
        (
            "scheduler_generators_status",
            Kind::Gauge,
            "Generators by priority and state.",
        ),
        (
            "scheduler_workers_total",
            Kind::Gauge,
            "Total number of scheduler workers.",
        ),
        (
            "scheduler_workers",
            Kind::Gauge,
            "Scheduler workers by state.",
        ),
        (
            "scheduler_tasksqueue_length",
            Kind::Gauge,
            "Tasks queued by priority.",
        ),
        (
            "scheduler_workers_tasks_duration_seconds",
            Kind::Histogram,
            "Duration of scheduler tasks by name.",
        ),
    ];
    for (name, kind, help) in families {
        out.family(&ns(name), kind, help);
    }
}

fn gc_families(out: &mut Exposition, ns: &dyn Fn(&str) -> String, engine: &Engine) {
    use std::sync::atomic::Ordering::Relaxed;
    let maintenance = &engine.stats().maintenance;
    let name = ns("gc_runs_total");
    out.family(
        &name,
        Kind::Counter,
        "Total number of garbage collection runs.",
    );
    out.count(
        &name,
        &[("error", "false")],
        maintenance.gc_runs_ok.load(Relaxed),
    );
    out.count(
        &name,
        &[("error", "true")],
        maintenance.gc_runs_failed.load(Relaxed),
    );
    let name = ns("gc_duration_seconds");
    out.family(&name, Kind::Summary, "Duration of garbage collection runs.");
    let runs = maintenance.gc_runs_ok.load(Relaxed) + maintenance.gc_runs_failed.load(Relaxed);
    let seconds = maintenance.gc_duration_ns.load(Relaxed) as f64 / 1e9;
    out.summary(&name, &[], seconds, runs);
    let name = ns("gc_deleted_total");
    out.family(
        &name,
        Kind::Counter,
        "Objects deleted by garbage collection, by type.",
    );
    let deleted = [
        ("manifest", &maintenance.gc_deleted_manifests),
        ("blob", &maintenance.gc_deleted_blobs),
        ("upload", &maintenance.gc_deleted_uploads),
        ("tag", &maintenance.gc_deleted_tags),
        ("link", &maintenance.gc_deleted_links),
        ("repository", &maintenance.gc_deleted_repositories),
        ("orphan-file", &maintenance.gc_deleted_orphan_files),
    ];
    for (kind, counter) in deleted {
        out.count(&name, &[("type", kind)], counter.load(Relaxed));
    }
    let name = "berth_gc_freed_bytes_total";
    out.family(
        name,
        Kind::Counter,
        "Bytes of blob files garbage collection removed.",
    );
    out.count(name, &[], maintenance.gc_freed_bytes.load(Relaxed));
}

fn scrub_families(out: &mut Exposition, engine: &Engine) {
    use std::sync::atomic::Ordering::Relaxed;
    let maintenance = &engine.stats().maintenance;
    let counters = [
        (
            "berth_scrub_runs_total",
            "Scrub passes finished.",
            &maintenance.scrub_runs,
        ),
        (
            "berth_scrub_blobs_verified_total",
            "Blobs re-hashed by scrub.",
            &maintenance.scrub_blobs_verified,
        ),
        (
            "berth_scrub_bytes_verified_total",
            "Bytes re-hashed by scrub.",
            &maintenance.scrub_bytes_verified,
        ),
    ];
    for (name, help, counter) in counters {
        out.family(name, Kind::Counter, help);
        out.count(name, &[], counter.load(Relaxed));
    }
    out.family(
        "berth_scrub_affected_blobs",
        Kind::Gauge,
        "Blobs the last scrub found damaged or missing.",
    );
    out.count(
        "berth_scrub_affected_blobs",
        &[],
        maintenance.scrub_affected_blobs.load(Relaxed),
    );
    out.family(
        "berth_scrub_progress_ratio",
        Kind::Gauge,
        "Progress of the current or last scrub pass, 0 to 1.",
    );
    let ratio = maintenance.scrub_progress_ppm.load(Relaxed) as f64 / 1e6;
    out.sample("berth_scrub_progress_ratio", &[], ratio);
}

/// Per-upstream sync families, one series set per configured upstream (none without sync).
fn sync_families(out: &mut Exposition, registries: &[Registry]) {
    let upstreams: Vec<&UpstreamStats> = registries
        .iter()
        .map(|registry| registry.upstream.stats())
        .collect();
    let name = "berth_sync_upstream_requests_total";
    out.family(
        name,
        Kind::Counter,
        "Requests to each upstream registry by status code (\"failed\": no response).",
    );
    let mut code_text = String::new();
    for upstream in &upstreams {
        for (code, count) in upstream.requests_by_status() {
            code_text.clear();
            code_text.push_str(&code.to_string());
            out.count(
                name,
                &[("upstream", upstream.name()), ("code", &code_text)],
                count,
            );
        }
        out.count(
            name,
            &[("upstream", upstream.name()), ("code", "failed")],
            upstream.failures(),
        );
    }
    type Read = fn(&UpstreamStats) -> u64;
    let counters: [(&str, &str, Read); 2] = [
        (
            "berth_sync_upstream_bytes_total",
            "Bytes received from each upstream registry.",
            UpstreamStats::bytes_received,
        ),
        (
            "berth_sync_upstream_retries_total",
            "Retried requests to each upstream registry.",
            UpstreamStats::retries,
        ),
    ];
    for (name, help, read) in counters {
        out.family(name, Kind::Counter, help);
        for upstream in &upstreams {
            out.count(name, &[("upstream", upstream.name())], read(upstream));
        }
    }
    let name = "berth_sync_upstream_request_duration_seconds";
    out.family(
        name,
        Kind::Histogram,
        "Duration of requests to each upstream registry, to the response headers.",
    );
    for upstream in &upstreams {
        out.histogram(name, &[("upstream", upstream.name())], &upstream.latency());
    }
    let name = "berth_sync_upstream_in_flight";
    out.family(
        name,
        Kind::Gauge,
        "Requests in flight to each upstream registry.",
    );
    for upstream in &upstreams {
        out.count(
            name,
            &[("upstream", upstream.name())],
            upstream.in_flight_now(),
        );
    }
    let name = "berth_sync_images_total";
    out.family(
        name,
        Kind::Counter,
        "Images periodic sync copied, found already stored (skipped) or failed, per upstream.",
    );
    let name_last = "berth_sync_last_success_timestamp_seconds";
    let mut last = Vec::new();
    for registry in registries {
        let outcome = registry
            .outcome
            .lock()
            .expect("outcome lock is never poisoned")
            .clone();
        let upstream = registry.upstream.stats().name();
        for (result, count) in [
            ("copied", outcome.images_copied),
            ("skipped", outcome.images_skipped),
            ("failed", outcome.images_failed),
        ] {
            out.count(name, &[("upstream", upstream), ("result", result)], count);
        }
        if let Some(at) = outcome.last_success_ms {
            last.push((upstream, at as f64 / 1000.0));
        }
    }
    out.family(
        name_last,
        Kind::Gauge,
        "When each upstream's last sync (a periodic pass without error, or an on-demand fetch) succeeded.",
    );
    for (upstream, seconds) in last {
        out.sample(name_last, &[("upstream", upstream)], seconds);
    }
    let name = "berth_sync_unsigned_refused_total";
    out.family(
        name,
        Kind::Counter,
        "Images onlySigned refused (no trusted signature upstream), per upstream, both ways of syncing.",
    );
    for registry in registries {
        let refused = registry
            .outcome
            .lock()
            .expect("outcome lock is never poisoned")
            .refused_unsigned;
        out.count(
            name,
            &[("upstream", registry.upstream.stats().name())],
            refused,
        );
    }
}
