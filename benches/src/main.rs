//! `berth-bench`: runs zot's zb workloads (and berth's per-request ones) against a registry,
//! compares berth with CNCF Distribution side by side, or times search and the web UI over a
//! generated catalogue. See benches/README.md.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use berth_benches::data::TestData;
use berth_benches::workloads::{self, Session, Workload};
use berth_benches::{client, report};
use clap::{Parser, Subcommand, ValueEnum};
use regex::Regex;

#[derive(Parser)]
#[command(
    name = "berth-bench",
    version,
    about = "Registry load tool and berth-vs-Distribution comparison"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the workloads against a registry URL (like zot's `zb URL`).
    Run(RunArgs),
    /// Starts berth and CNCF Distribution and runs every workload against both, alternately.
    Compare(CompareArgs),
    /// Starts an upstream Distribution, berth as its on-demand mirror and Distribution in
    /// proxy mode, and times cold and warm pulls through both against direct pulls.
    Mirror(MirrorArgs),
    /// Fills a fresh berth store with a search-sized catalogue (10k repositories, 100k
    /// images by default) through the storage engine, for `search`.
    Generate(GenerateArgs),
    /// Starts berth with search on over a generated store and times zot's GraphQL queries.
    Search(SearchArgs),
    /// Starts berth with search and the web UI on over a generated store, times its pages
    /// and weighs each with its assets.
    Ui(StoreArgs),
    /// Starts berth over HTTP, berth over HTTPS and Distribution over HTTPS (one certificate
    /// made here) and measures small requests, large pulls and handshakes on each.
    Tls(TlsArgs),
    /// Lists the workloads.
    List,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// Repositories (`team-TT/app-NNNN`).
    #[arg(long, default_value_t = 10_000)]
    repos: usize,
    /// Tagged images over all repositories (a multi-platform index counts as one).
    #[arg(long, default_value_t = 100_000)]
    images: usize,
    /// The new store's directory (must not exist); the layout and a berth config are
    /// written next to it.
    #[arg(long)]
    data_dir: PathBuf,
    /// Child manifests of each multi-platform index (every 5th repository's `latest`).
    #[arg(long, default_value_t = 3)]
    platforms: usize,
    /// Shared base layers (each image is one of them plus its own top layer).
    #[arg(long, default_value_t = 50)]
    bases: usize,
    /// Durable commits (fsync). Off by default: the store is a fixture.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    commit: bool,
    /// Writer threads (default: 4 per core; the Threads backend waits on its blocking pool).
    #[arg(long)]
    threads: Option<usize>,
}

/// A run against berth started on a generated store (`search`, `ui`).
#[derive(clap::Args)]
struct StoreArgs {
    /// The berth binary (a release build).
    #[arg(long, default_value = "target/release/berth")]
    berth_bin: PathBuf,
    /// A store made by `berth-bench generate`.
    #[arg(long)]
    data_dir: PathBuf,
    /// Concurrent keep-alive connections.
    #[arg(short = 'c', long, default_value_t = 10)]
    concurrency: usize,
    /// Requests per workload.
    #[arg(short = 'n', long, default_value_t = 2000)]
    requests: usize,
    /// Runs only the workloads whose name matches this regex.
    #[arg(short = 't', long = "test-regex")]
    test_regex: Option<Regex>,
    /// Also writes the figures as JSON here.
    #[arg(long, alias = "json")]
    json_out: Option<PathBuf>,
}

impl StoreArgs {
    /// (berth binary, store), both made absolute.
    fn resolve(&self) -> Result<(PathBuf, PathBuf)> {
        let berth_bin = std::fs::canonicalize(&self.berth_bin)
            .with_context(|| format!("berth binary {}", self.berth_bin.display()))?;
        let data_dir = std::fs::canonicalize(&self.data_dir)
            .with_context(|| format!("store {}", self.data_dir.display()))?;
        Ok((berth_bin, data_dir))
    }

    fn write_json(&self, report: &impl serde::Serialize) -> Result<()> {
        if let Some(path) = &self.json_out {
            std::fs::write(path, serde_json::to_vec_pretty(report)?)?;
        }
        Ok(())
    }
}

#[derive(clap::Args)]
struct SearchArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Also times `Push Monolith 1MB` (-n pushes, -c connections) against berth with search
    /// off and on, alternately, on fresh empty stores under this directory.
    #[arg(long)]
    push_compare: Option<PathBuf>,
    /// Rounds of the push comparison.
    #[arg(long, default_value_t = 3)]
    push_rounds: usize,
    /// Pushes per run of the push comparison (all into one repository).
    #[arg(long, default_value_t = 1000)]
    push_requests: usize,
}

fn generate(args: GenerateArgs) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let options = berth_benches::catalogue::GenerateOptions {
        data_dir: args.data_dir,
        layout: berth_benches::catalogue::Layout {
            repos: args.repos,
            images: args.images,
            platforms: args.platforms,
            bases: args.bases,
            base_layers: Vec::new(),
        },
        commit: args.commit,
        threads: args.threads.unwrap_or(4 * cores),
    };
    let generated = berth_benches::catalogue::generate(&options)?;
    println!(
        "generated {} repositories, {} tagged images ({} bases besides) in {:.1} s; store {:.1} MiB; berth config {}",
        generated.repos,
        generated.images,
        args.bases,
        generated.seconds,
        generated.disk_bytes as f64 / (1024.0 * 1024.0),
        generated.config.display()
    );
    Ok(())
}

fn search(args: SearchArgs) -> Result<()> {
    let (berth_bin, data_dir) = args.store.resolve()?;
    let options = berth_benches::search::SearchOptions {
        berth_bin,
        data_dir,
        concurrency: args.store.concurrency.max(1),
        requests: args.store.requests.max(1),
        test_regex: args.store.test_regex.clone(),
        push_compare: args.push_compare.map(std::fs::canonicalize).transpose()?,
        push_rounds: args.push_rounds.max(1),
        push_requests: args.push_requests.max(1),
    };
    let report = berth_benches::search::run(&options)?;
    args.store.write_json(&report)?;
    print!("{}", report.table());
    Ok(())
}

fn ui(args: StoreArgs) -> Result<()> {
    let (berth_bin, data_dir) = args.resolve()?;
    let options = berth_benches::ui::UiOptions {
        berth_bin,
        data_dir,
        concurrency: args.concurrency.max(1),
        requests: args.requests.max(1),
        test_regex: args.test_regex.clone(),
    };
    let report = berth_benches::ui::run(&options)?;
    args.write_json(&report)?;
    print!("{}", report.table());
    Ok(())
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    /// A table on stdout (zb's `stdout`).
    Stdout,
    Json,
    /// zb's github-action-benchmark format, written to ci-cd.json.
    CiCd,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Registry base URL, e.g. http://127.0.0.1:5000
    url: String,
    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 1)]
    concurrency: usize,
    /// Operations per test.
    #[arg(short = 'n', long, default_value_t = 1)]
    requests: usize,
    /// Runs only the tests whose name matches this regex.
    #[arg(short = 't', long = "test-regex")]
    test_regex: Option<Regex>,
    /// Repository prefix for everything the tool pushes.
    #[arg(short = 'r', long, default_value = "berth-bench")]
    repo: String,
    #[arg(short = 'o', long = "output-format", value_enum, default_value_t = Output::Stdout)]
    output: Output,
    /// Where `-o ci-cd` writes.
    #[arg(long, default_value = "ci-cd.json")]
    ci_cd_file: PathBuf,
}

/// The registries a side-by-side run starts.
#[derive(clap::Args)]
struct RegistryArgs {
    /// The berth binary (a release build).
    #[arg(long, default_value = "target/release/berth")]
    berth_bin: PathBuf,
    /// Where the registries' fresh data directories are made (one filesystem for all).
    #[arg(long, default_value = ".")]
    data_dir: PathBuf,
}

impl RegistryArgs {
    /// (berth binary, data parent), both made absolute.
    fn resolve(&self) -> Result<(PathBuf, PathBuf)> {
        let berth_bin = std::fs::canonicalize(&self.berth_bin)
            .with_context(|| format!("berth binary {}", self.berth_bin.display()))?;
        Ok((berth_bin, std::fs::canonicalize(&self.data_dir)?))
    }
}

#[derive(clap::Args)]
struct CompareArgs {
    #[command(flatten)]
    registries: RegistryArgs,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(short = 'c', long, default_value_t = 10)]
    concurrency: usize,
    #[arg(short = 'n', long, default_value_t = 100)]
    requests: usize,
    /// Caps each test's bytes (fewer operations for 100 MB sizes); 0 = no cap.
    #[arg(long, default_value_t = 2_000_000_000)]
    max_bytes_per_test: u64,
    /// Operations of each per-request test (catalog, manifest HEAD/GET, tags list, 4 KiB
    /// GET): 100 of them take a few milliseconds against berth.
    #[arg(long, default_value_t = 5000)]
    small_requests: usize,
    #[arg(short = 't', long = "test-regex")]
    test_regex: Option<Regex>,
    /// Skips the pushes with `storage.commit: false`.
    #[arg(long)]
    no_nocommit: bool,
    /// Also writes every run's figures as JSON here.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// `files` (local disk) or `shared`: both registries on one SeaweedFS cluster (berth's
    /// index in PostgreSQL, Distribution's cache in Redis), started for the run; also three
    /// nodes of each behind haproxy, berth's three spread by the load tool, and berth
    /// embedded (benches/README.md).
    #[arg(long, default_value = "files", value_parser = ["files", "shared"])]
    backend: String,
}

#[derive(clap::Args)]
struct TlsArgs {
    #[command(flatten)]
    registries: RegistryArgs,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(short = 'c', long, default_value_t = 10)]
    concurrency: usize,
    /// Operations of each small-request workload (manifest GET, 4 KiB blob GET).
    #[arg(long, default_value_t = 20_000)]
    small_requests: usize,
    /// 100 MB pulls per round.
    #[arg(long, default_value_t = 40)]
    large_pulls: usize,
    /// New connections (a handshake and one GET /v2/ each) per round.
    #[arg(long, default_value_t = 2_000)]
    handshakes: usize,
}

#[derive(clap::Args)]
struct MirrorArgs {
    #[command(flatten)]
    registries: RegistryArgs,
    /// Rounds; each starts both mirrors with empty caches.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Image sizes (one single-layer image each): KB, MB or GB, binary units.
    #[arg(long, value_delimiter = ',', default_value = "100MB,1GB")]
    sizes: Vec<String>,
    /// Longest one pull may take, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Runs the berth mirror with `storage.commit: false` (no fsync): shows what durability
    /// costs a cold pull.
    #[arg(long)]
    berth_no_commit: bool,
    /// Also writes every pull's figures as JSON here.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

fn mirror(args: MirrorArgs) -> Result<()> {
    let sizes = args
        .sizes
        .iter()
        .map(|size| berth_benches::mirror::parse_size(size))
        .collect::<Result<Vec<u64>>>()?;
    let (berth_bin, data_parent) = args.registries.resolve()?;
    let options = berth_benches::mirror::MirrorOptions {
        berth_bin,
        data_parent,
        sizes,
        rounds: args.rounds.max(1),
        timeout: std::time::Duration::from_secs(args.timeout.max(1)),
        berth_commit: !args.berth_no_commit,
    };
    let report = berth_benches::mirror::run(&options)?;
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    print!("{}", report.table());
    Ok(())
}

fn compare(args: CompareArgs) -> Result<()> {
    let workloads = selected(args.test_regex.as_ref());
    if workloads.is_empty() {
        bail!("no test matches the regex");
    }
    let (berth_bin, data_parent) = args.registries.resolve()?;
    let options = berth_benches::compare::CompareOptions {
        berth_bin,
        data_parent,
        rounds: args.rounds.max(1),
        concurrency: args.concurrency.max(1),
        requests: args.requests,
        max_bytes_per_test: if args.max_bytes_per_test == 0 {
            u64::MAX
        } else {
            args.max_bytes_per_test
        },
        small_requests: args.small_requests.max(1),
        workloads,
        no_commit_pushes: !args.no_nocommit,
        progress: std::io::stderr().is_terminal(),
        shared_backend: args.backend == "shared",
    };
    let comparison = berth_benches::compare::run(&options)?;
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&comparison)?)?;
    }
    print!("{}", comparison.table());
    Ok(())
}

pub fn selected(regex: Option<&Regex>) -> Vec<Workload> {
    workloads::all()
        .into_iter()
        .filter(|w| regex.is_none_or(|r| r.is_match(&w.name)))
        .collect()
}

fn run(args: RunArgs) -> Result<()> {
    let tests = selected(args.test_regex.as_ref());
    if tests.is_empty() {
        bail!("no test matches the regex");
    }
    let addr = client::resolve(&args.url)?;
    let sizes: std::collections::BTreeSet<u64> = tests.iter().flat_map(|t| t.sizes()).collect();
    let data = Arc::new(TestData::generate(sizes));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let terminal = std::io::stderr().is_terminal();
    let mut session = Session::new(addr, data, args.concurrency, args.requests, &args.repo);
    session.progress = terminal;
    let mut results = Vec::new();
    for test in &tests {
        let result = runtime.block_on(session.run(test))?;
        if !terminal {
            eprintln!("{}", report::line(&result));
        }
        results.push(result);
    }
    match args.output {
        Output::Stdout => print!("{}", report::table(&results)),
        Output::Json => println!("{}", report::json(&results)),
        Output::CiCd => std::fs::write(&args.ci_cd_file, report::ci_cd_json(&results))?,
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::Compare(args) => compare(args),
        Command::Mirror(args) => mirror(args),
        Command::Generate(args) => generate(args),
        Command::Search(args) => search(args),
        Command::Ui(args) => ui(args),
        Command::Tls(args) => {
            let (berth_bin, data_parent) = args.registries.resolve()?;
            let report = berth_benches::tls::run(&berth_benches::tls::TlsOptions {
                berth_bin,
                data_parent,
                rounds: args.rounds.max(1),
                concurrency: args.concurrency.max(1),
                small_requests: args.small_requests.max(1),
                large_pulls: args.large_pulls.max(1),
                handshakes: args.handshakes.max(1),
            })?;
            print!("{report}");
            Ok(())
        }
        Command::List => {
            for workload in workloads::all() {
                println!("{}", workload.name);
            }
            Ok(())
        }
    }
}
