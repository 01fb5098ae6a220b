//! `berth-bench mirror`: pull-through mirrors side by side. berth as an on-demand sync mirror
//! and CNCF Distribution in proxy mode (`proxy.remoteurl`) both front one plain Distribution
//! upstream; each image pull through them, cold and warm, is set against the same pull made
//! directly from the upstream (issue 6's targets: first byte within 50 ms of upstream's, a
//! cold pull at most 1.1x a direct one, cache hits as fast as local pulls).
//!
//! Rules:
//! * Data: one single-layer image per size (random, incompressible bytes), pushed once to the
//!   upstream and cross-repository mounted into one repository per round
//!   (`bench/mirror-SIZE-rROUND`), so every round pulls a repository no mirror has seen.
//! * Caches: each round starts both mirrors fresh (empty data directories) and stops them at
//!   its end; the upstream runs for the whole benchmark, so its copy is in the page cache
//!   for the direct pulls and the mirrors' cold pulls alike.
//! * A pull is a fresh connection: manifest GET by tag (verified against its digest), then
//!   the layer GET, timed from the request to its head, to its first body byte (TTFB) and to
//!   its last byte (total). The layer's body is kept in memory and hashed after the clock
//!   stops: on 2 vCPUs the client's sha256 would otherwise compete with the upstream and the
//!   mirror. A digest mismatch or a non-200 is a failed pull, reported, never averaged.
//! * Order: within a round, berth (cold, then two warm pulls), the proxy (the same) and the
//!   direct pull run in an order rotated every round and size, so drift hits every path.
//!   Before each pull every dirty page is flushed (sync(2)) and the three registries are
//!   left to go idle, so no pull pays for the previous one's writeback. Figures are medians.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use berth_storage::oci::{Algorithm, Digest};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde::Serialize;

use crate::client::{ChunkBody, Conn, OCI_MANIFEST};
use crate::data::{config_blob, image_manifest, Blob, TestData, MIB};
use crate::procs::{self, Kind, Registry};
use crate::stats::{human_seconds, median};

const GIB: u64 = 1024 * MIB;
/// Salt of the benchmark's blobs (distinct from the other workloads').
const SALT: u64 = 0x6d69_7272_6f72;
const TAG: &str = "v1";

pub struct MirrorOptions {
    pub berth_bin: PathBuf,
    /// Parent of the three registries' data directories (one filesystem for all).
    pub data_parent: PathBuf,
    pub sizes: Vec<u64>,
    pub rounds: usize,
    /// Longest a single pull (manifest and layer) may take.
    pub timeout: Duration,
    /// berth's `storage.commit` (true: its defaults; false: a diagnostic of the fsyncs' cost).
    pub berth_commit: bool,
}

/// Where a pull went, and in which state the mirror's cache was: cold (first pull), warm
/// (second pull, right after the first) or warm again (third pull).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Path {
    Direct,
    BerthCold,
    BerthWarm,
    BerthWarm3,
    ProxyCold,
    ProxyWarm,
    ProxyWarm3,
}

impl Path {
    const ALL: [Path; 7] = [
        Path::Direct,
        Path::BerthCold,
        Path::BerthWarm,
        Path::BerthWarm3,
        Path::ProxyCold,
        Path::ProxyWarm,
        Path::ProxyWarm3,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Path::Direct => "direct from upstream",
            Path::BerthCold => "berth cold",
            Path::BerthWarm => "berth warm (2nd pull)",
            Path::BerthWarm3 => "berth warm (3rd pull)",
            Path::ProxyCold => "dist. proxy cold",
            Path::ProxyWarm => "dist. proxy warm (2nd)",
            Path::ProxyWarm3 => "dist. proxy warm (3rd)",
        }
    }
}

/// One pull's figures (seconds).
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub size: u64,
    pub path: Path,
    pub round: usize,
    pub manifest_seconds: f64,
    pub head_seconds: f64,
    pub ttfb_seconds: f64,
    pub total_seconds: f64,
    /// CPU the serving registry (mirror, or upstream for direct pulls) used for the pull.
    pub server_cpu_seconds: f64,
    /// CPU this process (the client) used for the pull, up to the layer's last byte.
    pub client_cpu_seconds: f64,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MirrorReport {
    pub rounds: usize,
    pub sizes: Vec<u64>,
    pub samples: Vec<Sample>,
}

/// "100MB" -> 100 MiB, "1GB" -> 1 GiB, "512KB" -> 512 KiB, a bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64> {
    let upper = text.trim().to_ascii_uppercase();
    let (digits, unit) = match upper.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => upper.split_at(at),
        None => (upper.as_str(), ""),
    };
    let number: u64 = digits
        .parse()
        .with_context(|| format!("size {text:?} does not start with a number"))?;
    let unit = match unit.trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        "K" => 1024,
        "M" => MIB,
        "G" => GIB,
        _ => bail!("size {text:?}: unknown unit (use KB, MB or GB)"),
    };
    match number.checked_mul(unit) {
        Some(0) | None => bail!("size {text:?} is out of range"),
        Some(size) => Ok(size),
    }
}

pub fn label(size: u64) -> String {
    match size {
        s if s >= GIB && s.is_multiple_of(GIB) => format!("{}GB", s / GIB),
        s if s >= MIB && s.is_multiple_of(MIB) => format!("{}MB", s / MIB),
        s => format!("{s}B"),
    }
}

fn repository(size: u64, round: usize) -> String {
    format!("bench/mirror-{}-r{round}", label(size).to_ascii_lowercase())
}

/// The image of one size: its layer, config and manifest.
struct Image {
    size: u64,
    layer: Blob,
    config: Blob,
    manifest: Bytes,
    manifest_digest: Digest,
}

impl Image {
    fn new(data: &TestData, size: u64) -> Image {
        let layer = data.blob(size, SALT, 0);
        let config = config_blob(SALT, size);
        let manifest = image_manifest(&config, &layer);
        let manifest_digest = Digest::of(Algorithm::Sha256, &manifest);
        Image {
            size,
            layer,
            config,
            manifest,
            manifest_digest,
        }
    }
}

/// Mounts `blob` from `from` into `repo` (Distribution answers 201 when it can).
async fn mount(conn: &mut Conn, repo: &str, from: &str, blob: &Blob) -> Result<()> {
    let target = format!(
        "/v2/{repo}/blobs/uploads/?mount={}&from={from}",
        blob.digest
    );
    let (response, _) = conn
        .send(Method::POST, &target, &[], ChunkBody::empty())
        .await?;
    let status = response.status();
    response.into_body().collect().await?;
    if status != StatusCode::CREATED {
        bail!("mounting {} into {repo} answered {status}", blob.digest);
    }
    Ok(())
}

/// Pushes `image` to `rounds` repositories of the upstream: once, then by mounts.
async fn push(upstream: SocketAddr, image: &Image, rounds: usize) -> Result<()> {
    let mut conn = Conn::new(upstream);
    let first = repository(image.size, 1);
    conn.push_monolithic(&first, &image.config).await?;
    conn.push_monolithic(&first, &image.layer).await?;
    conn.put_manifest(&first, TAG, image.manifest.clone())
        .await?;
    for round in 2..=rounds {
        let repo = repository(image.size, round);
        mount(&mut conn, &repo, &first, &image.config).await?;
        mount(&mut conn, &repo, &first, &image.layer).await?;
        conn.put_manifest(&repo, TAG, image.manifest.clone())
            .await?;
    }
    Ok(())
}

/// The times of one pull (seconds); the layer is verified after the clock stops.
struct Timings {
    manifest: f64,
    head: f64,
    ttfb: f64,
    total: f64,
    /// This process's CPU from the manifest request to the layer's last byte (the digest
    /// check after that is not counted).
    client_cpu: f64,
}

async fn pull(addr: SocketAddr, repo: &str, image: &Image) -> Result<Timings> {
    let mut conn = Conn::new(addr);
    let cpu_started = procs::own_cpu_time();
    let started = Instant::now();
    conn.fetch(
        Method::GET,
        &format!("/v2/{repo}/manifests/{TAG}"),
        Some(OCI_MANIFEST),
        Some(&image.manifest_digest),
    )
    .await
    .context("manifest GET")?;
    let manifest = started.elapsed().as_secs_f64();

    let target = format!("/v2/{repo}/blobs/{}", image.layer.digest);
    let started = Instant::now();
    let (response, _) = conn
        .send(Method::GET, &target, &[], ChunkBody::empty())
        .await?;
    let head = started.elapsed().as_secs_f64();
    let status = response.status();
    if status != StatusCode::OK {
        let body = response.into_body().collect().await?.to_bytes();
        bail!(
            "layer GET answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    let mut body = response.into_body();
    let mut chunks: Vec<Bytes> = Vec::with_capacity((image.size / (64 * 1024)) as usize);
    let mut ttfb = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| anyhow!("layer body: {error}"))?;
        if let Ok(data) = frame.into_data() {
            if ttfb.is_none() && !data.is_empty() {
                ttfb = Some(started.elapsed().as_secs_f64());
            }
            chunks.push(data);
        }
    }
    let total = started.elapsed().as_secs_f64();
    let client_cpu = procs::own_cpu_time()
        .saturating_sub(cpu_started)
        .as_secs_f64();
    let received: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    if received != image.size {
        bail!("layer GET sent {received} bytes, not {}", image.size);
    }
    let mut hasher = Algorithm::Sha256.hasher();
    for chunk in &chunks {
        hasher.update(chunk);
    }
    if hasher.finalize() != image.layer.digest {
        bail!("layer digest mismatch");
    }
    Ok(Timings {
        manifest,
        head,
        ttfb: ttfb.unwrap_or(total),
        total,
        client_cpu,
    })
}

/// The three sides of one round: berth, the proxy and the upstream itself.
#[derive(Clone, Copy)]
enum Side {
    Berth,
    Proxy,
    Direct,
}

pub fn run(options: &MirrorOptions) -> Result<MirrorReport> {
    procs::ensure_distribution()?;
    let rounds = options.rounds.max(1);
    eprintln!(
        "berth-bench mirror: generating {} of random data",
        label(options.sizes.iter().sum())
    );
    let data = TestData::generate(options.sizes.iter().copied());
    let images: Vec<Image> = options
        .sizes
        .iter()
        .map(|&size| Image::new(&data, size))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let upstream = Registry::start(Kind::Distribution, &options.berth_bin, &options.data_parent)?;
    eprintln!(
        "berth-bench mirror: upstream (distribution) on {}",
        upstream.addr
    );
    for image in &images {
        runtime
            .block_on(push(upstream.addr, image, rounds))
            .with_context(|| format!("pushing the {} image upstream", label(image.size)))?;
    }
    let mut samples = Vec::new();
    for round in 1..=rounds {
        let berth_kind = match options.berth_commit {
            true => Kind::BerthMirror,
            false => Kind::BerthMirrorNoCommit,
        };
        let berth = Registry::start_mirror(
            berth_kind,
            &options.berth_bin,
            &options.data_parent,
            upstream.addr,
        )?;
        let proxy = Registry::start_mirror(
            Kind::DistributionProxy,
            &options.berth_bin,
            &options.data_parent,
            upstream.addr,
        )?;
        for (index, image) in images.iter().enumerate() {
            let repo = repository(image.size, round);
            let mut order = [Side::Berth, Side::Proxy, Side::Direct];
            order.rotate_left((round - 1 + index) % 3);
            for side in order {
                let (registry, paths): (&Registry, &[Path]) = match side {
                    Side::Berth => (
                        &berth,
                        &[Path::BerthCold, Path::BerthWarm, Path::BerthWarm3],
                    ),
                    Side::Proxy => (
                        &proxy,
                        &[Path::ProxyCold, Path::ProxyWarm, Path::ProxyWarm3],
                    ),
                    Side::Direct => (&upstream, &[Path::Direct]),
                };
                for &path in paths {
                    settle(&[&berth, &proxy, &upstream]);
                    let sample = measure(&runtime, registry, path, &repo, image, round, options)?;
                    samples.push(sample);
                }
            }
        }
        berth.stop();
        proxy.stop();
    }
    upstream.stop();
    Ok(MirrorReport {
        rounds,
        sizes: options.sizes.clone(),
        samples,
    })
}

/// Flushes every dirty page (one pull's writeback must not slow the next), then waits, at
/// most 10 s, until no registry uses CPU (at most one 10 ms tick in 100 ms).
fn settle(registries: &[&Registry]) {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    let cpu = || -> Duration {
        registries
            .iter()
            .map(|registry| registry.cpu_time().unwrap_or_default())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut before = cpu();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = cpu();
        if now.saturating_sub(before) <= Duration::from_millis(10) {
            return;
        }
        before = now;
    }
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    registry: &Registry,
    path: Path,
    repo: &str,
    image: &Image,
    round: usize,
    options: &MirrorOptions,
) -> Result<Sample> {
    let cpu_before = registry.cpu_time()?;
    let outcome = runtime.block_on(async {
        tokio::time::timeout(options.timeout, pull(registry.addr, repo, image))
            .await
            .unwrap_or_else(|_| Err(anyhow!("no answer within {:?}", options.timeout)))
    });
    let server_cpu_seconds = registry
        .cpu_time()?
        .saturating_sub(cpu_before)
        .as_secs_f64();
    let mut sample = Sample {
        size: image.size,
        path,
        round,
        manifest_seconds: f64::NAN,
        head_seconds: f64::NAN,
        ttfb_seconds: f64::NAN,
        total_seconds: f64::NAN,
        server_cpu_seconds,
        client_cpu_seconds: f64::NAN,
        error: None,
    };
    match outcome {
        Ok(t) => {
            eprintln!(
                "  round {round} {} {}: manifest {}, first byte {}, total {} ({:.0} MB/s)",
                label(image.size),
                path.label(),
                human_seconds(t.manifest),
                human_seconds(t.ttfb),
                human_seconds(t.total),
                image.size as f64 / 1e6 / t.total
            );
            sample.manifest_seconds = t.manifest;
            sample.head_seconds = t.head;
            sample.ttfb_seconds = t.ttfb;
            sample.total_seconds = t.total;
            sample.client_cpu_seconds = t.client_cpu;
        }
        Err(error) => {
            let log = registry.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!(
                "  round {round} {} {}: FAILED: {error:#}\n  {} log (last lines):\n{}",
                label(image.size),
                path.label(),
                registry.kind.label(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            sample.error = Some(format!("{error:#}"));
        }
    }
    Ok(sample)
}

/// Milliseconds with a sign, for differences.
fn signed_ms(seconds: f64) -> String {
    if seconds.is_nan() {
        return "-".to_owned();
    }
    format!("{:+.1} ms", seconds * 1000.0)
}

fn human(seconds: f64) -> String {
    match seconds.is_nan() {
        true => "-".to_owned(),
        false => human_seconds(seconds),
    }
}

impl MirrorReport {
    fn of(&self, size: u64, path: Path) -> impl Iterator<Item = &Sample> {
        self.samples
            .iter()
            .filter(move |s| s.size == size && s.path == path)
    }

    fn median(&self, size: u64, path: Path, pick: fn(&Sample) -> f64) -> f64 {
        median(self.of(size, path).map(pick).collect())
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "medians of {} rounds; layer GET after a manifest GET, fresh connection per pull; \
             TTFB = first body byte\n",
            self.rounds
        );
        let _ = writeln!(
            out,
            "{:6}  {:22} {:>9} {:>9} {:>8} {:>9} {:>7} {:>12}  failures",
            "size", "path", "TTFB", "total", "MB/s", "manifest", "CPU s", "client CPU s"
        );
        for &size in &self.sizes {
            for path in Path::ALL {
                let total = self.median(size, path, |s| s.total_seconds);
                let failures = self.of(size, path).filter(|s| s.error.is_some()).count();
                let _ = writeln!(
                    out,
                    "{:6}  {:22} {:>9} {:>9} {:>8.0} {:>9} {:>7.2} {:>12.2}  {}",
                    label(size),
                    path.label(),
                    human(self.median(size, path, |s| s.ttfb_seconds)),
                    human(total),
                    size as f64 / 1e6 / total,
                    human(self.median(size, path, |s| s.manifest_seconds)),
                    self.median(size, path, |s| s.server_cpu_seconds),
                    self.median(size, path, |s| s.client_cpu_seconds),
                    failures,
                );
            }
        }
        let _ = writeln!(
            out,
            "\ntargets (issue 6): cold total / direct <= 1.10x, cold TTFB - direct TTFB <= 50 ms, \
             warm total / direct <= 1.0x\n"
        );
        let _ = writeln!(
            out,
            "{:6}  {:18} {:>11} {:>16} {:>10} {:>10} {:>16}",
            "size",
            "mirror",
            "cold/direct",
            "cold TTFB-direct",
            "2nd/direct",
            "3rd/direct",
            "warm TTFB-direct"
        );
        for &size in &self.sizes {
            let direct_total = self.median(size, Path::Direct, |s| s.total_seconds);
            let direct_ttfb = self.median(size, Path::Direct, |s| s.ttfb_seconds);
            for (name, [cold, warm, warm3]) in [
                (
                    "berth",
                    [Path::BerthCold, Path::BerthWarm, Path::BerthWarm3],
                ),
                (
                    "distribution proxy",
                    [Path::ProxyCold, Path::ProxyWarm, Path::ProxyWarm3],
                ),
            ] {
                let ratio = |path| self.median(size, path, |s| s.total_seconds) / direct_total;
                let ttfb = |path| self.median(size, path, |s| s.ttfb_seconds) - direct_ttfb;
                let _ = writeln!(
                    out,
                    "{:6}  {:18} {:>10.2}x {:>16} {:>9.2}x {:>9.2}x {:>16}",
                    label(size),
                    name,
                    ratio(cold),
                    signed_ms(ttfb(cold)),
                    ratio(warm),
                    ratio(warm3),
                    signed_ms(ttfb(warm)),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units_and_label_back() {
        assert_eq!(parse_size("100MB").unwrap(), 100 * MIB);
        assert_eq!(parse_size("1gb").unwrap(), GIB);
        assert_eq!(parse_size("1GiB").unwrap(), GIB);
        assert_eq!(parse_size("512K").unwrap(), 512 * 1024);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("MB").is_err());
        assert!(parse_size("0MB").is_err());
        assert!(parse_size("3TB").is_err());
        assert_eq!(label(GIB), "1GB");
        assert_eq!(label(100 * MIB), "100MB");
        assert_eq!(repository(GIB, 2), "bench/mirror-1gb-r2");
    }

    #[test]
    fn medians_skip_failed_pulls() {
        assert_eq!(median(vec![3.0, f64::NAN, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0]), 2.5);
        assert!(median(vec![f64::NAN]).is_nan());
    }
}
