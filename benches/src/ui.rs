//! `berth-bench ui`: the web UI's server-rendered pages (`extensions.ui`) under load, over a
//! store made by `berth-bench generate` (catalogue.rs), and what each page weighs.
//!
//! Order: start the berth binary on the store with search and the UI on (port 0, no
//! `http.auth`, so every page is open to anonymous), then for each workload: one check
//! request, the page weight (the check's HTML plus every asset it links, each asset fetched
//! once), `-c` untimed requests as a warm-up and `-n` timed GETs over `-c` keep-alive
//! connections. Last, berth's VmRSS and VmHWM from /proc.
//!
//! Rules: each request's repository, tag, search text, filter or order is drawn at random
//! from the generated layout, so it names something that exists. A request counts as done
//! only with HTTP 200, a `text/html` body and every marker of its page in that body (the
//! repository's name in `<h1>`, the result list, the platform sections ...); anything else
//! is a failure, and a workload with failures (or a failed check) is reported as failed, not
//! timed. Weights are bytes as served (berth compresses nothing), in KB of 1,000 bytes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use http::{header, Method, StatusCode};
use http_body_util::BodyExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regex::Regex;
use serde::Serialize;

use crate::catalogue::{berth_config, Layout, ARCHITECTURES};
use crate::client::{ChunkBody, Conn};
use crate::daemon::Berth;
use crate::stats::{human_seconds, Recorder, TestResult};
use crate::timed::{self, Probe, ProbeFuture};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Results per explore page (the UI's `EXPLORE_PAGE`): page 50 starts at result 981.
const EXPLORE_PAGE: usize = 20;
const DEEP_PAGE: usize = 50;

/// The issue's targets: a page rendered in at most 50 ms at p95, and a page with its assets
/// at most 150 KB.
pub const TARGET_P95_SECONDS: f64 = 0.050;
pub const TARGET_PAGE_BYTES: u64 = 150_000;

pub struct UiOptions {
    pub berth_bin: PathBuf,
    pub data_dir: PathBuf,
    pub concurrency: usize,
    pub requests: usize,
    pub test_regex: Option<Regex>,
}

/// One page request: where, and what its body must contain.
#[derive(Clone, Debug, Serialize)]
pub struct Visit {
    pub target: String,
    pub markers: Vec<String>,
}

/// One UI workload: a page and how to draw its parameters.
struct PageKind {
    name: &'static str,
    draw: fn(&Layout, &mut StdRng) -> Visit,
}

/// `text` percent-encoded as one path segment or query value (all but unreserved bytes).
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte))
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn visit(target: String, markers: &[&str]) -> Visit {
    Visit {
        target,
        markers: markers.iter().map(|&m| m.to_owned()).collect(),
    }
}

/// The image page of `repo:tag`.
fn image_visit(repo: &str, tag: &str, markers: &[String]) -> Visit {
    let mut all = vec![
        format!("<h1>{repo}:{tag}</h1>"),
        "Layers and history".into(),
    ];
    all.extend_from_slice(markers);
    Visit {
        target: format!("/image/{}/tag/{}", segment(repo), segment(tag)),
        markers: all,
    }
}

fn pages() -> Vec<PageKind> {
    vec![
        PageKind {
            name: "UI home",
            draw: |_, _| {
                visit(
                    "/home".into(),
                    &[
                        "<h1>Container images on this registry</h1>",
                        "<ul class=\"cards\">",
                    ],
                )
            },
        },
        PageKind {
            name: "UI explore (empty query)",
            draw: |_, _| {
                visit(
                    "/explore".into(),
                    &["<h1>Explore</h1>", "<ol id=\"results\""],
                )
            },
        },
        PageKind {
            name: "UI explore (query)",
            // `app-01` matches app-0100 to app-0199: 100 repositories at 10k.
            draw: |layout, rng| {
                let text = format!("app-{:02}", rng.random_range(0..layout.repos) / 100);
                let echoed = format!("for “{text}”");
                visit(
                    format!("/explore?search={}", segment(&text)),
                    &["<ol id=\"results\"", &echoed],
                )
            },
        },
        PageKind {
            name: "UI explore (filters + sort)",
            // Every generated image is linux; single images are amd64, arm64 or ppc64le.
            draw: |_, rng| {
                let arch = ARCHITECTURES[rng.random_range(0..3)];
                let sort = ["updated", "name", "downloads", "stars"][rng.random_range(0..4)];
                visit(
                    format!("/explore?os=linux&arch={arch}&sort={sort}"),
                    &[
                        "<ol id=\"results\"",
                        &format!("value=\"{arch}\" checked"),
                        &format!("<option value=\"{sort}\" selected"),
                    ],
                )
            },
        },
        PageKind {
            name: "UI explore (page 50)",
            draw: |_, _| {
                let first = (DEEP_PAGE - 1) * EXPLORE_PAGE + 1;
                visit(
                    format!("/explore?page={DEEP_PAGE}"),
                    &[
                        &format!("<ol id=\"results\" class=\"cards\" start=\"{first}\""),
                        &format!("Page {DEEP_PAGE} of"),
                    ],
                )
            },
        },
        PageKind {
            name: "UI repository",
            draw: |layout, rng| {
                let number = rng.random_range(0..layout.repos);
                let repo = layout.repo(number);
                let count = layout.tag_count(number);
                visit(
                    format!("/image/{}", segment(&repo)),
                    &[
                        &format!("<h1>{repo}</h1>"),
                        &format!("Tags <span class=\"muted\">({count})</span>"),
                    ],
                )
            },
        },
        PageKind {
            name: "UI image (multi-platform)",
            // Every 5th repository's last tag, `latest`, is an index over `platforms` images.
            draw: |layout, rng| {
                let number = rng.random_range(0..layout.repos.div_ceil(5)) * 5;
                let markers: Vec<String> = ARCHITECTURES
                    .iter()
                    .cycle()
                    .take(layout.platforms)
                    .map(|arch| format!("data-platform=\"linux/{arch}\""))
                    .collect();
                image_visit(&layout.repo(number), "latest", &markers)
            },
        },
        PageKind {
            name: "UI image (single)",
            draw: |layout, rng| loop {
                let number = rng.random_range(0..layout.repos);
                let singles =
                    layout.tag_count(number) - usize::from(layout.is_multi_platform(number));
                if singles > 0 {
                    let tag = format!("v{}", rng.random_range(1..=singles));
                    break image_visit(&layout.repo(number), &tag, &["data-platform=".into()]);
                }
            },
        },
        PageKind {
            name: "UI image (base)",
            // A base image: about images / bases images are built on it ("Used by").
            draw: |layout, rng| {
                let base = Layout::base_repo(rng.random_range(0..layout.bases));
                image_visit(&base, "latest", &["<ul id=\"used-by\">".into()])
            },
        },
    ]
}

/// GET of a page: Ok(its body) only for a 200 `text/html` answer holding every marker.
async fn get_page(conn: &mut Conn, visit: &Visit) -> Result<Bytes> {
    let (response, _) = conn
        .send(Method::GET, &visit.target, &[], ChunkBody::empty())
        .await?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| anyhow!("reading body: {error}"))?
        .to_bytes();
    if status != StatusCode::OK {
        bail!("HTTP {}", status.as_u16());
    }
    if !content_type.starts_with("text/html") {
        bail!("content type {content_type:?}");
    }
    let text = std::str::from_utf8(&body).map_err(|_| anyhow!("the page is not UTF-8"))?;
    if let Some(missing) = visit.markers.iter().find(|m| !text.contains(m.as_str())) {
        bail!("the page lacks {missing:?}");
    }
    Ok(body)
}

/// A page as the timed loop asks for it.
struct PageProbe {
    draw: fn(&Layout, &mut StdRng) -> Visit,
    layout: Arc<Layout>,
}

impl Probe for PageProbe {
    fn send<'a>(&'a self, conn: &'a mut Conn, rng: &'a mut StdRng) -> ProbeFuture<'a> {
        let visit = (self.draw)(&self.layout, rng);
        Box::pin(async move { Ok(get_page(conn, &visit).await?.len() as u64) })
    }
}

/// The local targets of every `<link href>` and `<script src>` of a page.
fn linked_assets(html: &str) -> Result<Vec<String>> {
    static LINKS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"<(?:link\b[^>]*?\bhref|script\b[^>]*?\bsrc)\s*=\s*"([^"]*)""#)
            .expect("the pattern is valid")
    });
    let mut targets = Vec::new();
    for found in LINKS.captures_iter(html) {
        let target = found[1].replace("&amp;", "&");
        if !target.starts_with('/') || target.starts_with("//") {
            bail!("the page links {target:?}, not on this registry");
        }
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    Ok(targets)
}

/// A page's weight: its HTML and each asset it links, in bytes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Weight {
    pub html_bytes: u64,
    pub assets: BTreeMap<String, u64>,
}

impl Weight {
    pub fn asset_bytes(&self) -> u64 {
        self.assets.values().sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.html_bytes + self.asset_bytes()
    }
}

/// The check request and the page's weight; assets already fetched (in `known`) are not
/// fetched again.
async fn check(
    conn: &mut Conn,
    visit: &Visit,
    known: &mut BTreeMap<String, u64>,
) -> Result<Weight> {
    let html = get_page(conn, visit).await?;
    let text = std::str::from_utf8(&html).expect("get_page checked UTF-8");
    let mut weight = Weight {
        html_bytes: html.len() as u64,
        assets: BTreeMap::new(),
    };
    for target in linked_assets(text)? {
        let bytes = match known.get(&target) {
            Some(&bytes) => bytes,
            None => {
                let fetched = conn.fetch(Method::GET, &target, None, None).await;
                let bytes = fetched.map_err(|e| anyhow!("asset {target}: {e:#}"))?.bytes;
                known.insert(target.clone(), bytes);
                bytes
            }
        };
        weight.assets.insert(target, bytes);
    }
    Ok(weight)
}

/// One workload's figures.
#[derive(Debug, Serialize)]
pub struct UiRun {
    pub result: TestResult,
    /// The check request (the first the seed 7 draws).
    pub check: Visit,
    /// Why the check failed (then nothing was timed).
    pub check_error: Option<String>,
    pub weight: Weight,
    pub server_cpu_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct UiReport {
    pub layout: Layout,
    pub concurrency: usize,
    pub requests: usize,
    pub start_seconds: f64,
    pub rss_ready_bytes: u64,
    pub rss_after_bytes: u64,
    pub peak_rss_bytes: u64,
    pub runs: Vec<UiRun>,
}

/// berth's config for the store: search and the UI on, no `http.auth`.
fn config(options: &UiOptions) -> serde_json::Value {
    let mut config = berth_config(&options.data_dir, true);
    config["extensions"]["ui"] = serde_json::json!({"enable": true});
    config
}

fn one_workload(
    runtime: &tokio::runtime::Runtime,
    berth: &Berth,
    options: &UiOptions,
    kind: &PageKind,
    layout: &Arc<Layout>,
    known: &mut BTreeMap<String, u64>,
) -> Result<UiRun> {
    let check_visit = (kind.draw)(layout, &mut StdRng::seed_from_u64(7));
    let checked = runtime.block_on(async {
        let mut conn = Conn::new(berth.addr);
        check(&mut conn, &check_visit, known).await
    });
    let weight = match checked {
        Ok(weight) => weight,
        Err(error) => {
            let mut recorder = Recorder::default();
            recorder.fail(&error.context(format!("check GET {}", check_visit.target)));
            let result = TestResult::new(kind.name, 1, recorder, Duration::ZERO, Duration::ZERO);
            return Ok(UiRun {
                check_error: result.errors.keys().next().cloned(),
                result,
                check: check_visit,
                weight: Weight::default(),
                server_cpu_seconds: 0.0,
            });
        }
    };
    let probe: Arc<dyn Probe> = Arc::new(PageProbe {
        draw: kind.draw,
        layout: layout.clone(),
    });
    let load = |requests| {
        let (concurrency, probe) = (options.concurrency, probe.clone());
        timed::load(
            berth.addr,
            kind.name,
            probe,
            concurrency,
            requests,
            REQUEST_TIMEOUT,
        )
    };
    // Warm-up: one request per connection, untimed.
    runtime.block_on(load(options.concurrency))?;
    let cpu_before = berth.cpu_seconds();
    let result = runtime.block_on(load(options.requests))?;
    Ok(UiRun {
        server_cpu_seconds: berth.cpu_seconds() - cpu_before,
        result,
        check: check_visit,
        check_error: None,
        weight,
    })
}

pub fn run(options: &UiOptions) -> Result<UiReport> {
    let layout = Arc::new(Layout::load(&options.data_dir)?);
    let kinds: Vec<PageKind> = pages()
        .into_iter()
        .filter(|kind| {
            options
                .test_regex
                .as_ref()
                .is_none_or(|r| r.is_match(kind.name))
        })
        .collect();
    if kinds.is_empty() {
        bail!("no workload matches the regex");
    }
    let scratch = tempfile::Builder::new()
        .prefix("berth-bench-ui-")
        .tempdir()?;
    let berth = Berth::start(&options.berth_bin, &config(options), scratch.path())?;
    eprintln!(
        "berth-bench ui: berth (pid {}) ready after {} on {}",
        berth.pid(),
        human_seconds(berth.ready_after.as_secs_f64()),
        berth.addr
    );
    let rss_ready_bytes = berth.status_kib("VmRSS:")? * 1024;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut known = BTreeMap::new();
    let mut runs = Vec::new();
    for kind in &kinds {
        let run = one_workload(&runtime, &berth, options, kind, &layout, &mut known)?;
        eprintln!("berth-bench ui: {}", report::line(&run));
        runs.push(run);
    }
    let rss_after_bytes = berth.status_kib("VmRSS:")? * 1024;
    let peak_rss_bytes = berth.status_kib("VmHWM:")? * 1024;
    let start_seconds = berth.ready_after.as_secs_f64();
    berth.stop();
    Ok(UiReport {
        layout: Layout::clone(&layout),
        concurrency: options.concurrency,
        requests: options.requests,
        start_seconds,
        rss_ready_bytes,
        rss_after_bytes,
        peak_rss_bytes,
        runs,
    })
}

#[path = "ui_report.rs"]
mod report;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_the_links_and_scripts_of_a_page() {
        let html = r#"<link rel="stylesheet" href="/assets/berth.css?v=1">
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
<script src="/assets/berth.js?v=1&amp;x=2" defer></script>
<a href="/home">Home</a><link rel="stylesheet" href="/assets/berth.css?v=1">"#;
        assert_eq!(
            linked_assets(html).unwrap(),
            [
                "/assets/berth.css?v=1",
                "/assets/favicon.svg",
                "/assets/berth.js?v=1&x=2"
            ]
        );
        assert!(linked_assets(r#"<script src="https://cdn.example/x.js"></script>"#).is_err());
    }

    #[test]
    fn draws_name_what_the_generator_made() {
        let layout = Layout {
            repos: 10,
            images: 25,
            platforms: 3,
            bases: 4,
            base_layers: vec![],
        };
        assert_eq!(segment("team-00/app-0005"), "team-00%2Fapp-0005");
        let mut rng = StdRng::seed_from_u64(1);
        for kind in pages() {
            for _ in 0..20 {
                let drawn = (kind.draw)(&layout, &mut rng);
                assert!(drawn.target.starts_with('/'), "{}", kind.name);
                if kind.name == "UI image (multi-platform)" {
                    assert!(drawn.target.ends_with("/tag/latest"));
                    assert!(drawn.target.contains("app-0000") || drawn.target.contains("app-0005"));
                }
                if kind.name == "UI image (single)" {
                    assert!(!drawn.target.ends_with("/tag/latest"));
                }
            }
        }
    }
}
