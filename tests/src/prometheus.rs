//! [`Prometheus`]: a real Prometheus server (Debian's `prometheus` package) scraping fixed
//! targets, and [`promtool_check_metrics`], the real `promtool check metrics` linter, so the
//! tests check berth's `/metrics` with the tools operators use.
//!
//! Rules: `--web.listen-address` with port 0 does not report the bound port, so a free port is
//! picked (bind 127.0.0.1:0, read it, close) and the start is retried on another port if
//! Prometheus exits (lost race). The scrape targets are fixed when the config is written; a job
//! may scrape Prometheus itself through [`ScrapeJob::OWN_ADDRESS`], replaced by the address of
//! each attempt. Readiness = `GET /-/ready` answers 200 within [`START_TIMEOUT`]. Every wait is
//! bounded and panics with what it last saw plus Prometheus's log. Drop SIGKILLs and reaps.
//! Callers check [`require_prometheus`] first (skip, or fail under `BERTH_REQUIRE_TOOLS=1`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::api::pct;
use crate::{require_tool, Client};

const SERVER: &str = "prometheus";
const PROMTOOL: &str = "promtool";
const START_ATTEMPTS: usize = 3;
/// How long Prometheus may take to answer `/-/ready` after it was spawned.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval between two polls of [`Prometheus::wait_for_up`] and [`Prometheus::query_until`].
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Timeout of one HTTP request to the Prometheus API.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// True when both `prometheus` and `promtool` are on `PATH`; see [`require_tool`] (prints
/// SKIPPED, or panics under `BERTH_REQUIRE_TOOLS=1`).
pub fn require_prometheus() -> bool {
    // Both are checked (no short circuit) so a skip names every missing tool.
    let server = require_tool(SERVER);
    let promtool = require_tool(PROMTOOL);
    server && promtool
}

/// One `scrape_configs` entry: a single static target scraped every second over plain HTTP.
#[derive(Clone, Debug)]
pub struct ScrapeJob {
    /// `job_name`, the `job` label of every series it scrapes.
    pub name: String,
    /// `127.0.0.1:PORT`, or [`ScrapeJob::OWN_ADDRESS`].
    pub target: String,
    /// e.g. `/metrics`
    pub metrics_path: String,
}

impl ScrapeJob {
    /// Placeholder target replaced by the Prometheus server's own `127.0.0.1:PORT`.
    pub const OWN_ADDRESS: &'static str = "prometheus-own-address";

    pub fn new(name: &str, target: &str, metrics_path: &str) -> ScrapeJob {
        ScrapeJob {
            name: name.to_string(),
            target: target.to_string(),
            metrics_path: metrics_path.to_string(),
        }
    }
}

/// One element of an instant vector: its labels (including `__name__` when the expression
/// keeps it) and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

pub struct Prometheus {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    client: Client,
    log_path: PathBuf,
    child: Child,
    // Last field: dropped after the child is killed.
    tmp: TempDir,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// `prometheus.yml` for `jobs`, with [`ScrapeJob::OWN_ADDRESS`] replaced by `own_addr`.
/// Written as JSON, which YAML parsers accept, so no value needs YAML quoting.
fn config_text(jobs: &[ScrapeJob], own_addr: &str) -> String {
    let scrape_configs: Vec<Value> = jobs
        .iter()
        .map(|job| {
            let target = if job.target == ScrapeJob::OWN_ADDRESS {
                own_addr
            } else {
                job.target.as_str()
            };
            json!({
                "job_name": job.name,
                "metrics_path": job.metrics_path,
                "scheme": "http",
                "static_configs": [{ "targets": [target] }],
            })
        })
        .collect();
    let config = json!({
        "global": {
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "evaluation_interval": "1s",
        },
        "scrape_configs": scrape_configs,
    });
    serde_json::to_string_pretty(&config).expect("config serializes")
}

impl Prometheus {
    /// Starts Prometheus on a free 127.0.0.1 port with a fresh TSDB, scraping `jobs`, and waits
    /// until it is ready. Panics with its log when no attempt becomes ready.
    pub fn start(jobs: &[ScrapeJob]) -> Prometheus {
        let tmp = tempfile::Builder::new()
            .prefix("berth-prometheus-")
            .tempdir()
            .expect("create temp dir");
        let log_path = tmp.path().join("prometheus.log");
        let config_path = tmp.path().join("prometheus.yml");
        let data_path = tmp.path().join("data");
        let client = crate::http();
        for _ in 0..START_ATTEMPTS {
            let addr = format!("127.0.0.1:{}", free_port());
            std::fs::write(&config_path, config_text(jobs, &addr)).expect("write prometheus.yml");
            let log = std::fs::File::create(&log_path).expect("create prometheus log");
            let mut child = Command::new(SERVER)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!("--storage.tsdb.path={}", data_path.display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {SERVER}: {e}"));
            let url = format!("http://{addr}");
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline {
                if child.try_wait().expect("wait prometheus").is_some() {
                    break;
                }
                let ready = client
                    .get(format!("{url}/-/ready"))
                    .timeout(REQUEST_TIMEOUT)
                    .send()
                    .map(|r| r.status().as_u16() == 200)
                    .unwrap_or(false);
                if ready {
                    return Prometheus {
                        url,
                        addr,
                        client,
                        log_path,
                        child,
                        tmp,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "{SERVER} did not become ready in {START_ATTEMPTS} attempts:\n--- config ---\n{}\n\
             --- log ---\n{}",
            std::fs::read_to_string(&config_path).unwrap_or_default(),
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Prometheus's combined stdout/stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The temporary directory holding config, TSDB and log (removed on drop).
    pub fn tmp_dir(&self) -> &std::path::Path {
        self.tmp.path()
    }

    /// GETs `path_and_query` from the API and returns the JSON body. Transport errors and
    /// non-JSON bodies are `Err` (the caller decides whether to retry).
    fn get_json(&self, path_and_query: &str) -> Result<Value, String> {
        let response = self
            .client
            .get(format!("{}{path_and_query}", self.url))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .map_err(|e| format!("GET {path_and_query}: {e}"))?;
        let status = response.status();
        let body = response
            .text()
            .map_err(|e| format!("GET {path_and_query}: reading body: {e}"))?;
        serde_json::from_str(&body)
            .map_err(|e| format!("GET {path_and_query}: {status}, not JSON ({e}): {body}"))
    }

    /// Polls `/api/v1/targets` until every target of `job` has health `up`. Panics after
    /// `timeout` with each target's health and `lastError`, and the log. Prometheus applies
    /// target lists at most every 5 s, so a job has no target for up to ~5 s after
    /// [`Prometheus::start`]: give this at least 15 s.
    pub fn wait_for_up(&self, job: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.get_json("/api/v1/targets?state=active") {
                Ok(body) => {
                    let targets: Vec<&Value> = body["data"]["activeTargets"]
                        .as_array()
                        .map(|all| {
                            all.iter()
                                .filter(|t| t["labels"]["job"].as_str() == Some(job))
                                .collect()
                        })
                        .unwrap_or_default();
                    if !targets.is_empty() && targets.iter().all(|t| t["health"] == "up") {
                        return;
                    }
                    if targets.is_empty() {
                        format!("no active target of job {job:?}: {body}")
                    } else {
                        targets
                            .iter()
                            .map(|t| {
                                format!(
                                    "{} health={} lastError={}",
                                    t["scrapeUrl"], t["health"], t["lastError"]
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    }
                }
                Err(error) => error,
            };
            if Instant::now() >= deadline {
                panic!(
                    "job {job:?} is not up after {timeout:?}:\n{last}\n--- prometheus log ---\n{}",
                    self.log()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Evaluates `promql` now (`/api/v1/query`); the result must be an instant vector.
    /// Panics with the answer and the log otherwise (a bad query is a test bug).
    pub fn query(&self, promql: &str) -> Vec<Sample> {
        self.try_query(promql).unwrap_or_else(|error| {
            panic!(
                "query {promql:?} failed: {error}\n--- prometheus log ---\n{}",
                self.log()
            )
        })
    }

    fn try_query(&self, promql: &str) -> Result<Vec<Sample>, String> {
        let body = self.get_json(&format!("/api/v1/query?query={}", pct(promql)))?;
        parse_vector(&body)
    }

    /// Evaluates `promql` every 250 ms until `predicate` accepts the samples, and returns them.
    /// Scrapes are asynchronous, so this is how a test waits for a value to show up. Panics
    /// after `timeout` with the last result and the log.
    pub fn query_until(
        &self,
        promql: &str,
        timeout: Duration,
        predicate: impl Fn(&[Sample]) -> bool,
    ) -> Vec<Sample> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.try_query(promql);
            if let Ok(samples) = &result {
                if predicate(samples) {
                    return samples.clone();
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "query {promql:?} did not satisfy the predicate within {timeout:?}; last \
                     result: {result:?}\n--- prometheus log ---\n{}",
                    self.log()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// The samples of a `/api/v1/query` answer whose `status` is `success` and whose `resultType`
/// is `vector`.
fn parse_vector(body: &Value) -> Result<Vec<Sample>, String> {
    if body["status"] != "success" {
        return Err(format!(
            "status {} ({}: {})",
            body["status"], body["errorType"], body["error"]
        ));
    }
    let data = &body["data"];
    if data["resultType"] != "vector" {
        return Err(format!(
            "resultType {} is not vector: {body}",
            data["resultType"]
        ));
    }
    let results = data["result"]
        .as_array()
        .ok_or_else(|| format!("no result array: {body}"))?;
    results
        .iter()
        .map(|item| {
            let labels = item["metric"]
                .as_object()
                .ok_or_else(|| format!("no metric object: {item}"))?
                .iter()
                .map(|(name, value)| {
                    value
                        .as_str()
                        .map(|v| (name.clone(), v.to_string()))
                        .ok_or_else(|| format!("label {name} is not a string: {item}"))
                })
                .collect::<Result<BTreeMap<_, _>, _>>()?;
            let text = item["value"][1]
                .as_str()
                .ok_or_else(|| format!("no [time, \"value\"] pair: {item}"))?;
            let value = parse_value(text).ok_or_else(|| format!("bad value {text:?}: {item}"))?;
            Ok(Sample { labels, value })
        })
        .collect()
}

/// A sample value as the API spells it: a Go float, or `NaN`, `+Inf`, `-Inf`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// Lints exposition-format `text` with `promtool check metrics` (text on stdin). `Err` holds
/// promtool's stdout and stderr when it exits non-zero (1: parse error, 3: lint problems in
/// 2.42) or prints anything at all, since every line it prints is a problem. Panics when
/// promtool cannot be run: check [`require_prometheus`] first.
pub fn promtool_check_metrics(text: &str) -> Result<(), String> {
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{PROMTOOL} check metrics`: {e}"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = text.to_owned();
    // A separate writer so a large input can never deadlock against promtool's output pipes.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait on `{PROMTOOL} check metrics`: {e}"));
    // promtool may exit before reading everything (parse error): a broken pipe is expected then.
    let _ = writer.join().expect("stdin writer thread");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let printed = stdout
        .lines()
        .chain(stderr.lines())
        .any(|l| !l.trim().is_empty());
    if output.status.success() && !printed {
        Ok(())
    } else {
        Err(format!(
            "`{PROMTOOL} check metrics` exited with {}\n--- stdout ---\n{stdout}--- stderr ---\n\
             {stderr}",
            output.status
        ))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- prometheus log ---\n{}", self.log());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vector_answers_and_rejects_the_rest() {
        let body = json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": "up", "job": "a"}, "value": [1.5, "1"]},
            {"metric": {}, "value": [1.5, "+Inf"]},
        ]}});
        let samples = parse_vector(&body).expect("valid vector");
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].labels["job"], "a");
        assert_eq!(samples[0].value, 1.0);
        assert_eq!(samples[1].value, f64::INFINITY);
        assert!(parse_value("NaN").expect("NaN parses").is_nan());
        assert_eq!(parse_value("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_value("1e-3"), Some(0.001));
        assert_eq!(parse_value("x"), None);

        let scalar = json!({"status": "success", "data": {"resultType": "scalar",
            "result": [1.5, "1"]}});
        assert!(parse_vector(&scalar).is_err());
        let error = json!({"status": "error", "errorType": "bad_data", "error": "parse error"});
        let message = parse_vector(&error).expect_err("error status");
        assert!(message.contains("parse error"), "{message}");
    }

    #[test]
    fn config_replaces_own_address_and_parses_with_promtool() {
        let jobs = [
            ScrapeJob::new("self", ScrapeJob::OWN_ADDRESS, "/metrics"),
            ScrapeJob::new("berth", "127.0.0.1:1", "/custom path"),
        ];
        let text = config_text(&jobs, "127.0.0.1:9");
        assert!(text.contains("\"127.0.0.1:9\""), "{text}");
        assert!(!text.contains(ScrapeJob::OWN_ADDRESS), "{text}");
        if !require_prometheus() {
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("prometheus.yml");
        std::fs::write(&path, &text).expect("write config");
        crate::run_ok(Command::new(PROMTOOL).args(["check", "config"]).arg(&path));
    }

    #[test]
    fn scrapes_itself_and_answers_queries() {
        if !require_prometheus() {
            return;
        }
        let prometheus =
            Prometheus::start(&[ScrapeJob::new("self", ScrapeJob::OWN_ADDRESS, "/metrics")]);
        prometheus.wait_for_up("self", Duration::from_secs(30));
        let up = prometheus.query_until("up{job=\"self\"}", Duration::from_secs(30), |s| {
            !s.is_empty()
        });
        assert_eq!(up.len(), 1, "{up:?}");
        assert_eq!(up[0].value, 1.0, "{up:?}");
        assert_eq!(up[0].labels["instance"], prometheus.addr, "{up:?}");
        assert_eq!(up[0].labels["__name__"], "up", "{up:?}");
        assert!(prometheus.query("up{job=\"nothing\"}").is_empty());
    }

    #[test]
    fn wait_for_up_reports_the_scrape_error() {
        if !require_prometheus() {
            return;
        }
        let closed = format!("127.0.0.1:{}", free_port());
        let prometheus = Prometheus::start(&[ScrapeJob::new("down", &closed, "/metrics")]);
        let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            prometheus.wait_for_up("down", Duration::from_secs(15));
        }))
        .expect_err("a target with nothing listening never becomes up");
        let message = payload
            .downcast_ref::<String>()
            .expect("formatted panic message");
        assert!(message.contains("is not up after"), "{message}");
        assert!(message.contains("connection refused"), "{message}");
    }

    #[test]
    fn promtool_accepts_prometheus_own_metrics() {
        if !require_prometheus() {
            return;
        }
        let prometheus = Prometheus::start(&[]);
        let text = crate::http()
            .get(format!("{}/metrics", prometheus.url()))
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.text())
            .expect("GET prometheus /metrics");
        assert!(
            text.contains("# TYPE prometheus_build_info gauge"),
            "{text}"
        );
        promtool_check_metrics(&text).expect("prometheus's own metrics lint clean");
    }

    #[test]
    fn promtool_rejects_bad_metrics() {
        if !require_prometheus() {
            return;
        }
        let clean = "# HELP demo_requests_total Requests.\n# TYPE demo_requests_total counter\n\
                     demo_requests_total{code=\"200\"} 3\n";
        promtool_check_metrics(clean).expect("clean text");
        let no_suffix = "# HELP demo_requests Requests.\n# TYPE demo_requests counter\n\
                         demo_requests 3\n";
        let error = promtool_check_metrics(no_suffix).expect_err("counter without _total");
        assert!(error.contains("_total"), "{error}");
        let no_help = "# TYPE demo_gauge gauge\ndemo_gauge 1\n";
        let error = promtool_check_metrics(no_help).expect_err("no HELP");
        assert!(error.contains("no help text"), "{error}");
        let error = promtool_check_metrics("demo_gauge{ 1\n").expect_err("invalid line");
        assert!(error.contains("parsing error"), "{error}");
        let twice = "# HELP demo_gauge G.\n# TYPE demo_gauge gauge\ndemo_gauge{a=\"1\"} 1\n\
                     # HELP demo_gauge G.\n# TYPE demo_gauge gauge\ndemo_gauge{a=\"2\"} 1\n";
        let error = promtool_check_metrics(twice).expect_err("family split in two");
        assert!(error.contains("second HELP"), "{error}");
    }
}
