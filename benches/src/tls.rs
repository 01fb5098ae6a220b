//! `berth-bench tls`: what HTTPS costs. Starts berth over plain HTTP, berth over HTTPS and
//! CNCF Distribution over HTTPS (one certificate for both, made here by rcgen), in
//! alternating rounds, and measures on each: small requests with keep-alive (manifest GET,
//! 4 KiB blob GET), large pulls (100 MB) and TLS handshakes (a new connection for every
//! `GET /v2/`). The report gives the medians over rounds and the ratios the TLS work is held
//! to: berth HTTPS / berth HTTP (small requests ≥ 85%, large pulls ≥ 80%) and berth HTTPS /
//! Distribution HTTPS.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use http::{Method, StatusCode};

use crate::client::{ChunkBody, Conn, Tls};
use crate::data::{TestData, MIB};
use crate::procs::{Kind, Registry, TlsFiles};
use crate::stats::median;
use crate::workloads::{self, Session, Workload};

pub struct TlsOptions {
    pub berth_bin: PathBuf,
    pub data_parent: PathBuf,
    pub rounds: usize,
    pub concurrency: usize,
    /// Operations of each small-request workload.
    pub small_requests: usize,
    /// 100 MB pulls per round.
    pub large_pulls: usize,
    /// New connections (one `GET /v2/` each) per round.
    pub handshakes: usize,
}

/// The registries compared, in round order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    BerthHttp,
    BerthHttps,
    DistributionHttps,
}

impl Target {
    const ALL: [Target; 3] = [
        Target::BerthHttp,
        Target::BerthHttps,
        Target::DistributionHttps,
    ];

    fn label(self) -> &'static str {
        match self {
            Target::BerthHttp => "berth http",
            Target::BerthHttps => "berth https",
            Target::DistributionHttps => "distribution https",
        }
    }
}

/// The workloads: name and whether its figure is MB/s (else requests/s).
const WORKLOADS: [(&str, bool); 3] = [
    ("Manifest GET by tag", false),
    ("Blob GET 4KiB", false),
    ("Pull 100MB", true),
];
const HANDSHAKES: &str = "New connection + GET /v2/";

/// The benchmark's CA and the registries' certificate (127.0.0.1 and localhost), as files.
fn make_pki(dir: &Path) -> Result<(Vec<u8>, TlsFiles)> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "berth-bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_certificate = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec!["localhost".to_owned()])?;
    server
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    server
        .distinguished_name
        .push(DnType::CommonName, "berth-bench");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let certificate = server.signed_by(&key, &Issuer::from_params(&ca, &ca_key))?;
    let files = TlsFiles {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    std::fs::write(&files.cert, certificate.pem())?;
    std::fs::write(&files.key, key.serialize_pem())?;
    Ok((ca_certificate.pem().into_bytes(), files))
}

/// Requests per second of `count` new connections (TLS handshakes when `tls`), each sending
/// one `GET /v2/`, `concurrency` at a time.
async fn handshakes(
    registry: &Registry,
    tls: Option<Arc<Tls>>,
    count: usize,
    concurrency: usize,
) -> Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, tls, addr) = (next.clone(), tls.clone(), registry.addr);
            tokio::spawn(async move {
                while next.fetch_add(1, Relaxed) < count {
                    let mut conn = Conn::with_tls(addr, tls.clone());
                    let (response, _) = conn
                        .send(Method::GET, "/v2/", &[], ChunkBody::empty())
                        .await?;
                    anyhow::ensure!(
                        response.status() == StatusCode::OK,
                        "GET /v2/ answered {}",
                        response.status()
                    );
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Runs every round; returns the report (markdown).
pub fn run(options: &TlsOptions) -> Result<String> {
    crate::procs::ensure_distribution()?;
    let pki_dir = tempfile::Builder::new()
        .prefix("berth-bench-pki-")
        .tempdir()?;
    let (ca, files) = make_pki(pki_dir.path())?;
    let tls = Tls::trusting(&ca, "localhost")?;
    let workloads: Vec<Workload> = workloads::all()
        .into_iter()
        .filter(|w| WORKLOADS.iter().any(|(name, _)| *name == w.name))
        .collect();
    let sizes: std::collections::BTreeSet<u64> = workloads.iter().flat_map(|w| w.sizes()).collect();
    let data = Arc::new(TestData::generate(sizes));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // figures[workload][target] = one value per round; cpu[..] = the server's CPU
    // microseconds per request (per MB for large pulls) in that round.
    let mut figures: BTreeMap<String, BTreeMap<Target, Vec<f64>>> = BTreeMap::new();
    let mut cpu: BTreeMap<String, BTreeMap<Target, Vec<f64>>> = BTreeMap::new();
    for round in 0..options.rounds {
        for target in Target::ALL {
            let registry = match target {
                Target::BerthHttp => {
                    Registry::start(Kind::Berth, &options.berth_bin, &options.data_parent)
                }
                Target::BerthHttps => Registry::start_tls(
                    Kind::Berth,
                    &options.berth_bin,
                    &options.data_parent,
                    &files,
                ),
                Target::DistributionHttps => Registry::start_tls(
                    Kind::Distribution,
                    &options.berth_bin,
                    &options.data_parent,
                    &files,
                ),
            }
            .with_context(|| format!("starting {}", target.label()))?;
            let client_tls = (target != Target::BerthHttp).then(|| tls.clone());
            let mut session = Session::new(
                registry.addr,
                data.clone(),
                options.concurrency,
                options.large_pulls,
                "bench",
            );
            session.small_requests = Some(options.small_requests);
            session.tls = client_tls.clone();
            for workload in &workloads {
                let cpu_before = registry.cpu_time()?;
                let result = runtime.block_on(session.run(workload))?;
                let server_cpu = registry.cpu_time()?.saturating_sub(cpu_before);
                anyhow::ensure!(
                    result.failures == 0,
                    "{} on {}: {} failed requests: {:?}",
                    workload.name,
                    target.label(),
                    result.failures,
                    result.errors
                );
                let large = WORKLOADS
                    .iter()
                    .any(|(name, large)| *name == workload.name && *large);
                let (value, per) = match large {
                    true => (
                        result.megabytes_per_second,
                        result.bytes as f64 / MIB as f64,
                    ),
                    false => (result.requests_per_second, result.requests as f64),
                };
                cpu.entry(workload.name.clone())
                    .or_default()
                    .entry(target)
                    .or_default()
                    .push(server_cpu.as_secs_f64() * 1e6 / per.max(1.0));
                figures
                    .entry(workload.name.clone())
                    .or_default()
                    .entry(target)
                    .or_default()
                    .push(value);
            }
            let cpu_before = registry.cpu_time()?;
            let rate = runtime.block_on(handshakes(
                &registry,
                client_tls,
                options.handshakes,
                options.concurrency,
            ))?;
            let server_cpu = registry.cpu_time()?.saturating_sub(cpu_before);
            cpu.entry(HANDSHAKES.to_owned())
                .or_default()
                .entry(target)
                .or_default()
                .push(server_cpu.as_secs_f64() * 1e6 / options.handshakes as f64);
            figures
                .entry(HANDSHAKES.to_owned())
                .or_default()
                .entry(target)
                .or_default()
                .push(rate);
            eprintln!(
                "berth-bench tls: round {} of {}: {} done",
                round + 1,
                options.rounds,
                target.label()
            );
            registry.stop();
        }
    }
    Ok(report(options, &figures, &cpu))
}

type Figures = BTreeMap<String, BTreeMap<Target, Vec<f64>>>;

/// The medians over rounds of berth http, berth https and Distribution https (NaN: none).
fn medians(per_target: &BTreeMap<Target, Vec<f64>>) -> (f64, f64, f64) {
    let value = |target: Target| {
        per_target
            .get(&target)
            .map(|values| median(values.clone()))
            .unwrap_or(f64::NAN)
    };
    (
        value(Target::BerthHttp),
        value(Target::BerthHttps),
        value(Target::DistributionHttps),
    )
}

fn report(options: &TlsOptions, figures: &Figures, cpu: &Figures) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "berth-bench tls: {} rounds, -c {}, {} small requests, {} x {} MB pulls, {} new connections per round; medians\n",
        options.rounds,
        options.concurrency,
        options.small_requests,
        options.large_pulls,
        100 * MIB / MIB,
        options.handshakes,
    );
    let _ = writeln!(
        out,
        "| workload | unit | berth http | berth https | distribution https | berth https / http | berth https / distribution https |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let order = WORKLOADS
        .iter()
        .map(|(name, large)| (*name, *large))
        .chain(std::iter::once((HANDSHAKES, false)));
    for (name, large) in order {
        let Some(per_target) = figures.get(name) else {
            continue;
        };
        let (http, https, distribution) = medians(per_target);
        let unit = if large { "MB/s" } else { "req/s" };
        let _ = writeln!(
            out,
            "| {name} | {unit} | {http:.0} | {https:.0} | {distribution:.0} | {:.2} | {:.2} |",
            https / http,
            https / distribution
        );
    }
    let _ = writeln!(
        out,
        "\nServer CPU (user + system), microseconds per request (per MB for pulls), medians:\n"
    );
    let _ = writeln!(
        out,
        "| workload | berth http | berth https | distribution https | berth https - http |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let order = WORKLOADS
        .iter()
        .map(|(name, _)| *name)
        .chain(std::iter::once(HANDSHAKES));
    for name in order {
        let Some(per_target) = cpu.get(name) else {
            continue;
        };
        let (http, https, distribution) = medians(per_target);
        let _ = writeln!(
            out,
            "| {name} | {http:.1} | {https:.1} | {distribution:.1} | {:.1} |",
            https - http
        );
    }
    out
}
