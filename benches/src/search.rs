//! `berth-bench search`: zot's GraphQL search API (`POST /v2/_zot/ext/search`) under load,
//! over a store made by `berth-bench generate` (catalogue.rs).
//!
//! Order: start the berth binary on the store with `extensions.search.enable: true` (port 0;
//! the address comes from its `berth listening on http://ADDR` line), time it to `/readyz`
//! 200, stop it and start it again (a second, warm start-up figure), then run each workload
//! once as a check (it must find something), `-c` untimed requests as a warm-up, and `-n`
//! timed requests over `-c` keep-alive connections. Last, berth's VmRSS and VmHWM from
//! /proc. With `--push-compare`, it also times `Push Monolith 1MB` against berth with search
//! off and on, alternately, on fresh empty stores: the cost search's records add to a push.
//!
//! Rules: each request's parameters (repository, fragment, digest) are drawn at random from
//! the generated layout. A request counts as done only with HTTP 200, a JSON body with
//! non-null `data` and no `errors`; anything else is a failure, and a workload with failures
//! is reported as failed, not timed. The queries select what zui selects for its lists.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http::{header, Method, StatusCode};
use http_body_util::BodyExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regex::Regex;
use serde::Serialize;

use crate::catalogue::{berth_config, Layout};
use crate::client::{ChunkBody, Conn};
use crate::daemon::Berth;
use crate::data::{TestData, MIB};
use crate::stats::{human_seconds, TestResult};
use crate::timed::{self, Probe, ProbeFuture};
use crate::workloads::{Op, PushMode, Session, Workload};

const PATH: &str = "/v2/_zot/ext/search";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// zui's image fields (its image lists and cards).
const IMAGE_FIELDS: &str = "RepoName Tag Digest MediaType Size LastUpdated Vendor Description \
    Licenses IsSigned DownloadCount Manifests { Digest ConfigDigest LastUpdated Size \
    Platform { Os Arch } }";
/// zui's repository card fields.
const REPO_FIELDS: &str = "Name LastUpdated Size Platforms { Os Arch } Vendors \
    NewestImage { RepoName Tag Digest LastUpdated Description Vendor IsSigned \
    Manifests { Digest Platform { Os Arch } } } StarCount DownloadCount";

/// The targets the figures are read against.
pub const TARGET_P99_SECONDS: f64 = 0.020;
pub const TARGET_START_SECONDS: f64 = 2.0;
pub const TARGET_RSS_BYTES: u64 = 300 * MIB;

pub struct SearchOptions {
    pub berth_bin: PathBuf,
    pub data_dir: PathBuf,
    pub concurrency: usize,
    pub requests: usize,
    pub test_regex: Option<Regex>,
    /// Where the push comparison's fresh stores go (none: no push comparison).
    pub push_compare: Option<PathBuf>,
    pub push_rounds: usize,
    pub push_requests: usize,
}

/// One search workload: a query and how to draw its variables.
struct Query {
    name: &'static str,
    text: String,
    variables: fn(&Layout, &mut StdRng) -> serde_json::Value,
    /// The field whose list must not be empty in the check request.
    list: &'static str,
}

fn random_repo(layout: &Layout, rng: &mut StdRng) -> String {
    layout.repo(rng.random_range(0..layout.repos))
}

fn queries() -> Vec<Query> {
    vec![
        Query {
            name: "GlobalSearch repo",
            text: format!(
                "query ($q: String!) {{ GlobalSearch(query: $q, requestedPage: {{limit: 10, \
                 offset: 0, sortBy: RELEVANCE}}) {{ Page {{ TotalCount ItemCount }} \
                 Repos {{ {REPO_FIELDS} }} }} }}"
            ),
            // `app-01` matches app-0100 to app-0199: 100 repositories at 10k.
            variables: |layout, rng| {
                let number = rng.random_range(0..layout.repos);
                serde_json::json!({"q": format!("app-{:02}", number / 100)})
            },
            list: "Repos",
        },
        Query {
            name: "GlobalSearch repo:tag",
            text: format!(
                "query ($q: String!) {{ GlobalSearch(query: $q, requestedPage: {{limit: 10, \
                 offset: 0, sortBy: RELEVANCE}}) {{ Page {{ TotalCount ItemCount }} \
                 Images {{ {IMAGE_FIELDS} }} }} }}"
            ),
            variables: |layout, rng| serde_json::json!({"q": format!("{}:v", random_repo(layout, rng))}),
            list: "Images",
        },
        Query {
            name: "RepoListWithNewestImage",
            text: format!(
                "{{ RepoListWithNewestImage(requestedPage: {{limit: 10, offset: 0, sortBy: \
                 UPDATE_TIME}}) {{ Page {{ TotalCount ItemCount }} Results {{ {REPO_FIELDS} }} \
                 }} }}"
            ),
            variables: |_, _| serde_json::json!({}),
            list: "Results",
        },
        Query {
            name: "ImageList",
            text: format!(
                "query ($r: String!) {{ ImageList(repo: $r) {{ Page {{ TotalCount ItemCount }} \
                 Results {{ {IMAGE_FIELDS} }} }} }}"
            ),
            variables: |layout, rng| serde_json::json!({"r": random_repo(layout, rng)}),
            list: "Results",
        },
        Query {
            name: "ExpandedRepoInfo",
            text: format!(
                "query ($r: String!) {{ ExpandedRepoInfo(repo: $r) {{ Images {{ {IMAGE_FIELDS} \
                 }} Summary {{ {REPO_FIELDS} }} }} }}"
            ),
            variables: |layout, rng| serde_json::json!({"r": random_repo(layout, rng)}),
            list: "Images",
        },
        Query {
            name: "ImageListForDigest",
            text: format!(
                "query ($d: String!) {{ ImageListForDigest(id: $d, requestedPage: {{limit: 10, \
                 offset: 0}}) {{ Page {{ TotalCount ItemCount }} Results {{ {IMAGE_FIELDS} }} \
                 }} }}"
            ),
            // A shared base layer: about images / bases images hold it.
            variables: |layout, rng| {
                let base = rng.random_range(0..layout.base_layers.len());
                serde_json::json!({"d": layout.base_layers[base]})
            },
            list: "Results",
        },
        Query {
            name: "DerivedImageList",
            text: format!(
                "query ($i: String!) {{ DerivedImageList(image: $i, requestedPage: {{limit: 10, \
                 offset: 0}}) {{ Page {{ TotalCount ItemCount }} Results {{ {IMAGE_FIELDS} }} \
                 }} }}"
            ),
            // A base image: every image built on its layer is derived from it.
            variables: |layout, rng| {
                let base = rng.random_range(0..layout.bases);
                serde_json::json!({"i": format!("{}:latest", Layout::base_repo(base))})
            },
            list: "Results",
        },
    ]
}

/// Sends one query; Ok(the `data` object) only for a 200 with data and no errors.
async fn post(conn: &mut Conn, body: Bytes) -> Result<(serde_json::Value, u64)> {
    let (response, _) = conn
        .send(
            Method::POST,
            PATH,
            &[(header::CONTENT_TYPE, "application/json")],
            ChunkBody::sized(vec![body]),
        )
        .await?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|error| anyhow!("reading body: {error}"))?
        .to_bytes();
    if status != StatusCode::OK {
        bail!(
            "HTTP {}: {}",
            status.as_u16(),
            String::from_utf8_lossy(&bytes)
        );
    }
    let mut answer: serde_json::Value =
        serde_json::from_slice(&bytes).context("answer is not JSON")?;
    if let Some(errors) = answer.get("errors").filter(|e| !e.is_null()) {
        bail!("errors: {errors}");
    }
    match answer.get_mut("data").map(serde_json::Value::take) {
        Some(data) if !data.is_null() => Ok((data, bytes.len() as u64)),
        _ => bail!("no data"),
    }
}

fn request_body(query: &Query, layout: &Layout, rng: &mut StdRng) -> Bytes {
    let body =
        serde_json::json!({"query": query.text, "variables": (query.variables)(layout, rng)});
    Bytes::from(serde_json::to_vec(&body).expect("request serializes"))
}

/// One workload's figures.
#[derive(Debug, Serialize)]
pub struct SearchRun {
    pub result: TestResult,
    /// What the check request found: total count and items in its page.
    pub check_total: u64,
    pub check_items: usize,
    pub server_cpu_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct PushRun {
    pub search: bool,
    pub round: usize,
    pub result: TestResult,
}

#[derive(Debug, Serialize)]
pub struct SearchReport {
    pub layout: Layout,
    pub concurrency: usize,
    pub start_seconds: f64,
    pub listening_seconds: f64,
    pub second_start_seconds: f64,
    pub rss_ready_bytes: u64,
    pub rss_after_bytes: u64,
    pub peak_rss_bytes: u64,
    pub runs: Vec<SearchRun>,
    pub pushes: Vec<PushRun>,
}

async fn check(addr: SocketAddr, query: &Query, layout: &Layout) -> Result<(u64, usize)> {
    let mut conn = Conn::new(addr);
    let mut rng = StdRng::seed_from_u64(7);
    let (data, _) = post(&mut conn, request_body(query, layout, &mut rng)).await?;
    let result = data
        .as_object()
        .and_then(|object| object.values().next())
        .ok_or_else(|| anyhow!("empty data"))?;
    let items = result
        .get(query.list)
        .and_then(serde_json::Value::as_array)
        .map_or(0, Vec::len);
    let total = result
        .pointer("/Page/TotalCount")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(items as u64);
    if items == 0 {
        bail!("{}: the check request found nothing: {data}", query.name);
    }
    Ok((total, items))
}

/// A query as the timed loop sends it: variables drawn from the layout.
struct QueryProbe {
    query: Arc<Query>,
    layout: Arc<Layout>,
}

impl Probe for QueryProbe {
    fn send<'a>(&'a self, conn: &'a mut Conn, rng: &'a mut StdRng) -> ProbeFuture<'a> {
        let body = request_body(&self.query, &self.layout, rng);
        Box::pin(async move { post(conn, body).await.map(|(_, bytes)| bytes) })
    }
}

pub fn run(options: &SearchOptions) -> Result<SearchReport> {
    let layout = Arc::new(Layout::load(&options.data_dir)?);
    if layout.base_layers.len() != layout.bases {
        bail!("the layout file lists no base layers: generate the store again");
    }
    let queries: Vec<Arc<Query>> = queries()
        .into_iter()
        .filter(|q| {
            options
                .test_regex
                .as_ref()
                .is_none_or(|r| r.is_match(q.name))
        })
        .map(Arc::new)
        .collect();
    if queries.is_empty() {
        bail!("no workload matches the regex");
    }
    let scratch = tempfile::Builder::new()
        .prefix("berth-bench-search-")
        .tempdir()?;
    let config = berth_config(&options.data_dir, true);
    let first = Berth::start(&options.berth_bin, &config, scratch.path())?;
    let (start_seconds, listening_seconds) = (
        first.ready_after.as_secs_f64(),
        first.listening_after.as_secs_f64(),
    );
    eprintln!(
        "berth-bench search: ready after {} (listening after {})",
        human_seconds(start_seconds),
        human_seconds(listening_seconds)
    );
    first.stop();
    let berth = Berth::start(&options.berth_bin, &config, scratch.path())?;
    let second_start_seconds = berth.ready_after.as_secs_f64();
    eprintln!(
        "berth-bench search: second start ready after {} on {}",
        human_seconds(second_start_seconds),
        berth.addr
    );
    let rss_ready_bytes = berth.status_kib("VmRSS:")? * 1024;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    for query in &queries {
        let (check_total, check_items) = runtime
            .block_on(check(berth.addr, query, &layout))
            .map_err(|error| {
                anyhow!(
                    "{error:#}\n{}",
                    std::fs::read_to_string(&berth.log).unwrap_or_default()
                )
            })?;
        let probe: Arc<dyn Probe> = Arc::new(QueryProbe {
            query: query.clone(),
            layout: layout.clone(),
        });
        // Warm-up: one request per connection, untimed.
        let load = |requests| {
            timed::load(
                berth.addr,
                query.name,
                probe.clone(),
                options.concurrency,
                requests,
                REQUEST_TIMEOUT,
            )
        };
        runtime.block_on(load(options.concurrency))?;
        let cpu_before = berth.cpu_seconds();
        let result = runtime.block_on(load(options.requests))?;
        let run = SearchRun {
            server_cpu_seconds: berth.cpu_seconds() - cpu_before,
            result,
            check_total,
            check_items,
        };
        eprintln!("berth-bench search: {}", report::line(&run));
        runs.push(run);
    }
    let rss_after_bytes = berth.status_kib("VmRSS:")? * 1024;
    let peak_rss_bytes = berth.status_kib("VmHWM:")? * 1024;
    berth.stop();
    let mut pushes = Vec::new();
    if let Some(parent) = &options.push_compare {
        pushes = push_compare(options, parent, &runtime)?;
    }
    Ok(SearchReport {
        layout: Layout::clone(&layout),
        concurrency: options.concurrency,
        start_seconds,
        listening_seconds,
        second_start_seconds,
        rss_ready_bytes,
        rss_after_bytes,
        peak_rss_bytes,
        runs,
        pushes,
    })
}

/// `Push Monolith 1MB` against berth with search off, then on, `push_rounds` times; each on
/// a fresh store under `parent`. Every push goes to one repository (tags t0, t1, ...), so a
/// cost per push that grows with the repository's tags shows as a lower rate with search on.
fn push_compare(
    options: &SearchOptions,
    parent: &Path,
    runtime: &tokio::runtime::Runtime,
) -> Result<Vec<PushRun>> {
    let workload = Workload {
        name: "Push Monolith 1MB".into(),
        op: Op::Push(PushMode::Monolith, vec![(MIB, 1)]),
    };
    let data = Arc::new(TestData::generate(
        workload
            .sizes()
            .into_iter()
            .collect::<std::collections::BTreeSet<u64>>(),
    ));
    let mut pushes = Vec::new();
    for round in 1..=options.push_rounds {
        for search in [false, true] {
            let dir = tempfile::Builder::new()
                .prefix("berth-bench-push-")
                .tempdir_in(parent)?;
            let store = dir.path().join("data");
            let berth = Berth::start(
                &options.berth_bin,
                &berth_config(&store, search),
                dir.path(),
            )?;
            let mut session = Session::new(
                berth.addr,
                data.clone(),
                options.concurrency,
                options.push_requests,
                "bench",
            );
            let result = runtime.block_on(session.run(&workload))?;
            let run = PushRun {
                search,
                round,
                result,
            };
            eprintln!(
                "berth-bench search: push round {round}, search {}: {:.1} req/s, p99 {}, {} failures",
                if search { "on" } else { "off" },
                run.result.requests_per_second,
                human_seconds(run.result.latency.p99),
                run.result.failures
            );
            berth.stop();
            pushes.push(run);
        }
    }
    Ok(pushes)
}

#[path = "search_report.rs"]
mod report;
