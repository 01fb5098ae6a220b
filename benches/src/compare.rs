//! `berth-bench compare`: berth and CNCF Distribution side by side in one run.
//!
//! Order: measure the machine's limits (limits.rs), then for each round start each registry
//! fresh (berth, Distribution, and berth with `storage.commit: false` for the push
//! workloads), run every selected workload against it, stop it. Rounds alternate the
//! registries (A B A B ...), so drift (page cache, thermal, the other core's load) hits both.
//! The table gives per workload the median over rounds of each registry's requests/s and p99,
//! the ratio berth/Distribution, peak RSS, CPU used by server and load tool, and the limit
//! that bounds the workload on this machine.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use crate::data::{size_label, TestData, MIB};
use crate::limits::{self, Limits};
use crate::procs::{self, Kind, Registry};
use crate::stats::{human_seconds, median, TestResult};
use crate::workloads::{Op, Session, Workload};

pub struct CompareOptions {
    pub berth_bin: PathBuf,
    /// Parent of the registries' data directories (the filesystem under test).
    pub data_parent: PathBuf,
    pub rounds: usize,
    pub concurrency: usize,
    pub requests: usize,
    /// Caps each test's bytes moved (requests are reduced for the big sizes, never below
    /// the concurrency).
    pub max_bytes_per_test: u64,
    /// Operations of each per-request test (catalog, manifest HEAD/GET, tags, 4 KiB GET).
    pub small_requests: usize,
    pub workloads: Vec<Workload>,
    pub no_commit_pushes: bool,
    pub progress: bool,
    /// Both registries on S3 + PostgreSQL / Redis (shared.rs) instead of local files.
    pub shared_backend: bool,
}

/// One workload run against one registry in one round.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    pub registry: Kind,
    pub round: usize,
    pub result: TestResult,
    pub peak_rss_bytes: u64,
    pub server_cpu_seconds: f64,
}

/// `wrk` against one small GET of one registry in one round: the cross-check that shows
/// whether berth-bench itself bounds the per-request figures.
#[derive(Clone, Debug, Serialize)]
pub struct WrkRun {
    pub registry: Kind,
    pub round: usize,
    pub workload: String,
    pub requests_per_second: f64,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub limits: Limits,
    /// `files`, or `shared` (S3 on SeaweedFS; PostgreSQL index; Redis cache).
    pub backend: &'static str,
    pub concurrency: usize,
    pub rounds: usize,
    pub runs: Vec<Measured>,
    pub wrk: Vec<WrkRun>,
}

/// Runs `wrk` for 5 s on `target` (None when wrk is not installed or fails).
fn wrk(
    addr: std::net::SocketAddr,
    target: &str,
    concurrency: usize,
    accept: Option<&str>,
) -> Option<f64> {
    let mut command = std::process::Command::new("wrk");
    command.args(["-t", "2", "-c", &concurrency.to_string(), "-d", "5s"]);
    if let Some(accept) = accept {
        command.args(["-H", &format!("Accept: {accept}")]);
    }
    let output = command
        .arg(format!("http://{addr}{target}"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("Non-2xx") {
        eprintln!("berth-bench: wrk saw errors on {target}:\n{text}");
        return None;
    }
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
}

pub fn run(options: &CompareOptions) -> Result<Comparison> {
    procs::ensure_distribution()?;
    let sizes: std::collections::BTreeSet<u64> =
        options.workloads.iter().flat_map(|w| w.sizes()).collect();
    eprintln!("berth-bench: generating test data ({} sizes)", sizes.len());
    let data = Arc::new(TestData::generate(sizes));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    eprintln!("berth-bench: measuring the machine's limits");
    let pull_requests = (2 * options.concurrency).max(10);
    let limits = limits::measure(
        &options.data_parent,
        &data,
        options.concurrency,
        pull_requests,
        &runtime,
    )?;
    let mut kinds = vec![Kind::Berth, Kind::Distribution];
    if options.shared_backend {
        kinds.extend([
            Kind::BerthNodes,
            Kind::DistributionNodes,
            Kind::BerthNodesSpread,
            Kind::BerthEmbedded,
        ]);
    }
    if options.no_commit_pushes {
        kinds.push(Kind::BerthNoCommit);
    }
    let shared = match options.shared_backend {
        true => Some(crate::shared::SharedServices::start(&options.data_parent)?),
        false => None,
    };
    let mut runs = Vec::new();
    let mut wrk_runs = Vec::new();
    let wrk_installed = std::process::Command::new("wrk").arg("-v").output().is_ok();
    for round in 1..=options.rounds {
        for &kind in &kinds {
            let (berth_bin, parent) = (&options.berth_bin, &options.data_parent);
            let registry = match (&shared, kind) {
                (
                    Some(shared),
                    Kind::BerthNodes | Kind::BerthNodesSpread | Kind::DistributionNodes,
                ) => crate::shared::start_nodes(kind, berth_bin, parent, shared)?,
                (Some(shared), kind) if kind != Kind::BerthEmbedded => {
                    Registry::start_shared(kind, berth_bin, parent, shared)?
                }
                _ => Registry::start(kind, berth_bin, parent)?,
            };
            eprintln!(
                "berth-bench: round {round}/{}: {} on {}",
                options.rounds,
                kind.label(),
                registry.addr
            );
            let mut session = Session::new(
                registry.addr,
                Arc::clone(&data),
                options.concurrency,
                options.requests,
                "bench",
            );
            session.progress = options.progress;
            if kind == Kind::BerthNodesSpread {
                session.spread = registry.nodes.clone();
            }
            session.max_bytes_per_test = Some(options.max_bytes_per_test);
            session.small_requests = Some(options.small_requests);
            for workload in &options.workloads {
                if kind == Kind::BerthNoCommit && !workload.pushes() {
                    continue;
                }
                registry.reset_peak_rss();
                let cpu_before = registry.cpu_time()?;
                let result = match runtime.block_on(session.run(workload)) {
                    Ok(result) => result,
                    Err(error) => {
                        eprintln!("{}", registry.log());
                        return Err(error.context(format!(
                            "{} on {}",
                            workload.name,
                            kind.label()
                        )));
                    }
                };
                let server_cpu_seconds = registry
                    .cpu_time()?
                    .saturating_sub(cpu_before)
                    .as_secs_f64();
                eprintln!("  {}", crate::report::line(&result));
                runs.push(Measured {
                    registry: kind,
                    round,
                    peak_rss_bytes: registry.peak_rss()?,
                    server_cpu_seconds,
                    result,
                });
            }
            if let (true, Some((manifest, blob))) = (
                wrk_installed && !matches!(kind, Kind::BerthNoCommit | Kind::BerthNodesSpread),
                session.seed_targets(),
            ) {
                let checks = [
                    (
                        "Manifest GET by tag",
                        manifest,
                        Some(crate::client::OCI_MANIFEST),
                    ),
                    ("Blob GET 4KiB", blob, None),
                ];
                for (workload, target, accept) in checks {
                    if let Some(rate) = wrk(registry.addr, &target, options.concurrency, accept) {
                        wrk_runs.push(WrkRun {
                            registry: kind,
                            round,
                            workload: workload.to_owned(),
                            requests_per_second: rate,
                        });
                    }
                }
            }
            let bucket = registry.bucket.clone();
            registry.stop();
            if let (Some(shared), Some(bucket)) = (&shared, bucket) {
                shared.remove_bucket(&bucket);
            }
        }
    }
    Ok(Comparison {
        backend: if options.shared_backend {
            "shared (SeaweedFS S3, 3 volume servers; berth: PostgreSQL index; Distribution: Redis cache; \
             berth 3 nodes: behind haproxy, round robin; berth embedded: local files and RocksDB)"
        } else {
            "files"
        },
        limits,
        concurrency: options.concurrency,
        rounds: options.rounds,
        runs,
        wrk: wrk_runs,
    })
}

/// The limit that bounds a workload, as text.
fn limit_for(workload: &Workload, limits: &Limits) -> String {
    let verified = |size: u64| {
        limits
            .verified_pull_mbps
            .iter()
            .find(|(s, _)| *s == size)
            .map_or_else(String::new, |(_, rate)| {
                format!("verified pull {rate:.0} MB/s")
            })
    };
    match &workload.op {
        Op::Pull(mix) if mix.len() == 1 => verified(mix[0].0),
        Op::Push(..) | Op::PullPush(_) => format!(
            "sha256 {:.0} MB/s, O_DIRECT write {:.0} MB/s",
            limits.sha256_gbps * 1000.0,
            limits.disk_direct_write_gbps * 1000.0
        ),
        _ => String::new(),
    }
}

impl Comparison {
    /// Median requests/s of `kind` on workload `name` (NaN when it did not run).
    fn rps(&self, kind: Kind, name: &str) -> f64 {
        median(
            self.of(kind, name)
                .into_iter()
                .map(|m| m.result.requests_per_second)
                .collect(),
        )
    }

    /// A table cell of `kind` on workload `name`: median req/s (MB/s), or `-`.
    fn cell(&self, kind: Kind, name: &str) -> String {
        let runs = self.of(kind, name);
        match runs.is_empty() {
            true => "-".to_owned(),
            false => format!(
                "{:.1} ({:.0})",
                self.rps(kind, name),
                median(runs.iter().map(|m| m.result.megabytes_per_second).collect())
            ),
        }
    }

    /// On the shared backend: three nodes of each registry behind haproxy, berth's three
    /// nodes with the load tool spreading connections (no balancer), and the one berth node
    /// against berth on its embedded backend.
    fn shared_table(&self, out: &mut String, names: &[String], width: usize) {
        let extra = [
            Kind::BerthNodes,
            Kind::DistributionNodes,
            Kind::BerthNodesSpread,
            Kind::BerthEmbedded,
        ];
        if !self.runs.iter().any(|m| extra.contains(&m.registry)) {
            return;
        }
        let _ = writeln!(
            out,
            "\nthree nodes: behind haproxy (round robin), and spread by the load tool (one node per \
             connection, no balancer); D1 = Distribution's one node\n\
             {:width$}  {:>16} {:>16} {:>7} {:>7}  {:>16} {:>7}",
            "workload", "berth haproxy", "distr. haproxy", "ratio", "/ D1", "berth spread", "/ D1",
        );
        let ratio = |a: Kind, b: Kind, name: &str| self.rps(a, name) / self.rps(b, name);
        for name in names {
            let _ = writeln!(
                out,
                "{name:width$}  {:>16} {:>16} {:>6.2}x {:>6.2}x  {:>16} {:>6.2}x",
                self.cell(Kind::BerthNodes, name),
                self.cell(Kind::DistributionNodes, name),
                ratio(Kind::BerthNodes, Kind::DistributionNodes, name),
                ratio(Kind::BerthNodes, Kind::Distribution, name),
                self.cell(Kind::BerthNodesSpread, name),
                ratio(Kind::BerthNodesSpread, Kind::Distribution, name),
            );
        }
        let _ = writeln!(
            out,
            "\nwhat sharing costs: berth as one node on the shared backend and on its embedded one\n\
             {:width$}  {:>16} {:>16} {:>7}",
            "workload", "berth shared", "berth embedded", "ratio",
        );
        for name in names {
            let _ = writeln!(
                out,
                "{name:width$}  {:>16} {:>16} {:>6.2}x",
                self.cell(Kind::Berth, name),
                self.cell(Kind::BerthEmbedded, name),
                ratio(Kind::Berth, Kind::BerthEmbedded, name),
            );
        }
        let wrk = |kind: Kind| {
            median(
                self.wrk
                    .iter()
                    .filter(|w| w.registry == kind && w.workload == "Manifest GET by tag")
                    .map(|w| w.requests_per_second)
                    .collect(),
            )
        };
        let _ = writeln!(
            out,
            "wrk cross-check, Manifest GET by tag: berth haproxy {:.0} req/s, distribution haproxy \
             {:.0} req/s, berth embedded {:.0} req/s",
            wrk(Kind::BerthNodes),
            wrk(Kind::DistributionNodes),
            wrk(Kind::BerthEmbedded)
        );
    }

    fn of(&self, kind: Kind, name: &str) -> Vec<&Measured> {
        self.runs
            .iter()
            .filter(|m| m.registry == kind && m.result.name == name)
            .collect()
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let l = &self.limits;
        let _ = writeln!(
            out,
            "limits: loopback TCP {:.2} GB/s, sha256 {:.2} GB/s, blake3 {:.2} GB/s (one core), \
             disk write+fsync {:.2} GB/s, read {:.2} GB/s, 4 KiB write+fsync {:.0}/s",
            l.loopback_tcp_gbps,
            l.sha256_gbps,
            l.blake3_gbps,
            l.disk_write_gbps,
            l.disk_read_gbps,
            l.fsync_4k_per_second
        );
        let pulls: Vec<String> = l
            .verified_pull_mbps
            .iter()
            .map(|(size, rate)| format!("{} {rate:.0} MB/s", size_label(*size)))
            .collect();
        let _ = writeln!(
            out,
            "verifying client from an in-memory server (c={}): {}",
            self.concurrency,
            pulls.join(", ")
        );
        let _ = writeln!(
            out,
            "backend: {}; medians of {} rounds, -c {}; req/s (MB/s); ratio = berth / distribution\n",
            self.backend, self.rounds, self.concurrency
        );
        let names: Vec<String> = {
            let mut seen = Vec::new();
            for run in &self.runs {
                if !seen.contains(&run.result.name) {
                    seen.push(run.result.name.clone());
                }
            }
            seen
        };
        let width = names.iter().map(String::len).max().unwrap_or(8);
        let _ = writeln!(
            out,
            "{:width$}  {:>18} {:>18} {:>6}  {:>9} {:>9}  {:>7} {:>7}  {:>18}  limit",
            "workload",
            "berth",
            "distribution",
            "ratio",
            "p99 B",
            "p99 D",
            "RSS B",
            "RSS D",
            "berth commit:false",
        );
        let workloads: BTreeMap<String, Workload> = crate::workloads::all()
            .into_iter()
            .map(|w| (w.name.clone(), w))
            .collect();
        for name in &names {
            let stat = |kind: Kind, pick: &dyn Fn(&Measured) -> f64| {
                median(self.of(kind, name).into_iter().map(pick).collect())
            };
            let rps = |kind| stat(kind, &|m| m.result.requests_per_second);
            let mbps = |kind| stat(kind, &|m| m.result.megabytes_per_second);
            let p99 = |kind| stat(kind, &|m| m.result.latency.p99);
            let rss = |kind| stat(kind, &|m| m.peak_rss_bytes as f64 / MIB as f64);
            let cell = |kind| match self.of(kind, name).is_empty() {
                true => "-".to_owned(),
                false => format!("{:.1} ({:.0})", rps(kind), mbps(kind)),
            };
            let failures: u64 = self
                .runs
                .iter()
                .filter(|m| &m.result.name == name)
                .map(|m| m.result.failures)
                .sum();
            let limit = workloads
                .get(name)
                .map(|w| limit_for(w, l))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{name:width$}  {:>18} {:>18} {:>5.2}x  {:>9} {:>9}  {:>6.0}M {:>6.0}M  {:>18}  {limit}{}",
                cell(Kind::Berth),
                cell(Kind::Distribution),
                rps(Kind::Berth) / rps(Kind::Distribution),
                human_seconds(p99(Kind::Berth)),
                human_seconds(p99(Kind::Distribution)),
                rss(Kind::Berth),
                rss(Kind::Distribution),
                cell(Kind::BerthNoCommit),
                if failures > 0 { format!("  FAILURES: {failures}") } else { String::new() },
            );
        }
        for workload in ["Manifest GET by tag", "Blob GET 4KiB"] {
            let rate = |kind: Kind| {
                median(
                    self.wrk
                        .iter()
                        .filter(|w| w.registry == kind && w.workload == workload)
                        .map(|w| w.requests_per_second)
                        .collect(),
                )
            };
            let (berth, distribution) = (rate(Kind::Berth), rate(Kind::Distribution));
            if !berth.is_nan() {
                let _ = writeln!(
                    out,
                    "wrk cross-check, {workload}: berth {berth:.0} req/s, distribution {distribution:.0} req/s, ratio {:.2}x",
                    berth / distribution
                );
            }
        }
        self.shared_table(&mut out, &names, width);
        let cpu = |kind: Kind, client: bool| -> f64 {
            self.runs
                .iter()
                .filter(|m| m.registry == kind)
                .map(|m| {
                    if client {
                        m.result.client_cpu_seconds
                    } else {
                        m.server_cpu_seconds
                    }
                })
                .sum()
        };
        let _ = writeln!(
            out,
            "\nCPU seconds over all runs: berth server {:.1}, load tool {:.1}; distribution server {:.1}, load tool {:.1}",
            cpu(Kind::Berth, false),
            cpu(Kind::Berth, true),
            cpu(Kind::Distribution, false),
            cpu(Kind::Distribution, true),
        );
        out
    }
}
