//! The Grafana dashboard shipped in `config/grafana/berth.json`, checked against the metric
//! families berth exports at `/metrics`.
//!
//! Owns: loading the dashboard and collecting every PromQL `expr` of every panel (rows hold
//! their own `panels` when collapsed), and the names a text exposition (format 0.0.4) makes
//! queryable. The PromQL scanner naming the metrics an expression reads is in [`promql`].
//!
//! Rules: zot's families are written `${namespace}_...` in the dashboard and checked under both
//! namespaces berth can use (`zot`, the default, and `berth`); berth's own families are always
//! `berth_...`. A name in the dashboard must be exported by a real daemon, and also be one of the
//! families in the metrics contract (`METRIC_FAMILIES`), so a typo fails without a daemon.
//! An unknown Grafana variable in an expression is an error, never silently skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use berth_tests::{http, push_image, random_image, require_tool, run_cmd, Berth, METRIC_FAMILIES};
use serde_json::{json, Value};

#[path = "grafana_dashboard/promql.rs"]
mod promql;

use promql::{metric_names, substitute_namespace, with_grafana_variables};

const DASHBOARD_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/grafana/berth.json");

/// The values of the dashboard's `namespace` variable: zot's families are exported under one
/// of them (`extensions.metrics.prometheus.namespace`).
const NAMESPACES: [&str; 2] = ["zot", "berth"];

/// Families the dashboard must keep reading, so it cannot silently shrink.
const REQUIRED_NAMES: &[&str] = &[
    "${namespace}_http_requests_total",
    "${namespace}_http_method_latency_seconds_bucket",
    "${namespace}_repo_storage_bytes",
    "berth_http_sent_bytes_total",
    "${namespace}_gc_runs_total",
    "berth_scrub_progress_ratio",
    "berth_sync_upstream_requests_total",
];

// ------------------------------------------------------------------ the dashboard

fn load_dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD_PATH)
        .unwrap_or_else(|e| panic!("cannot read {DASHBOARD_PATH}: {e}"));
    let dashboard: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{DASHBOARD_PATH} is not valid JSON: {e}"));
    let panels = dashboard["panels"].as_array();
    assert!(
        panels.is_some_and(|panels| !panels.is_empty()),
        "{DASHBOARD_PATH} has no panels"
    );
    dashboard
}

/// Every panel, rows included, depth first (a collapsed row holds its panels itself).
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// (panel title, expr) of every target of every panel. Panics when there is none.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in all_panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("<untitled>");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.to_owned(), expr.to_owned()));
            }
        }
    }
    assert!(
        !out.is_empty(),
        "{DASHBOARD_PATH} has no target expressions"
    );
    out
}

/// Every metric name the dashboard reads under `namespace`, with the panels reading it.
fn dashboard_names(dashboard: &Value, namespace: &str) -> BTreeMap<String, Vec<String>> {
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (title, expr) in expressions(dashboard) {
        let used = metric_names(&expr, namespace)
            .unwrap_or_else(|e| panic!("panel {title:?}: cannot read `{expr}`: {e}"));
        assert!(
            !used.is_empty(),
            "panel {title:?}: `{expr}` reads no metric"
        );
        for name in used {
            names.entry(name).or_default().push(title.clone());
        }
    }
    names
}

// ------------------------------------------------------------------ exposition

/// The series names a text exposition makes queryable: each `# TYPE` family (a histogram as
/// `_bucket`/`_sum`/`_count`, a summary as `_sum`/`_count`, anything else under its own name;
/// a counter's name already ends in `_total`), plus the name of every sample line.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let line = line.trim();
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let mut parts = declaration.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
        } else if !line.is_empty() && !line.starts_with('#') {
            let end = line
                .find(|c: char| c == '{' || c.is_whitespace())
                .unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// The names the metrics contract exports under `namespace`, through [`exported_names`].
fn contract_names(namespace: &str) -> BTreeSet<String> {
    let exposition: String = METRIC_FAMILIES
        .iter()
        .map(|(family, kind)| {
            format!(
                "# TYPE {} {kind}\n",
                substitute_namespace(family, namespace)
            )
        })
        .collect();
    exported_names(&exposition)
}

/// Names the dashboard reads under `namespace` that are not in `exported`, one line each with
/// the panels reading them.
fn missing_from(dashboard: &Value, namespace: &str, exported: &BTreeSet<String>) -> Vec<String> {
    dashboard_names(dashboard, namespace)
        .into_iter()
        .filter(|(name, _)| !exported.contains(name))
        .map(|(name, panels)| format!("{name} (panels: {})", panels.join(", ")))
        .collect()
}

// ------------------------------------------------------------------ tests without berth

#[test]
fn exposition_names_follow_family_types() {
    let exposition = "\
# HELP zot_http_requests_total Requests.
# TYPE zot_http_requests_total counter
zot_http_requests_total{method=\"GET\",code=\"200\"} 3
# TYPE zot_http_method_latency_seconds histogram
# TYPE zot_gc_duration_seconds summary
zot_gc_duration_seconds{quantile=\"0.5\"} 0.1
# TYPE process_open_fds gauge
process_open_fds 12
";
    assert_eq!(
        exported_names(exposition),
        BTreeSet::from(
            [
                "zot_http_requests_total",
                "zot_http_method_latency_seconds_bucket",
                "zot_http_method_latency_seconds_sum",
                "zot_http_method_latency_seconds_count",
                "zot_gc_duration_seconds",
                "zot_gc_duration_seconds_sum",
                "zot_gc_duration_seconds_count",
                "process_open_fds",
            ]
            .map(String::from)
        )
    );
}

#[test]
fn dashboard_is_importable() {
    let dashboard = load_dashboard();
    assert_eq!(dashboard["title"], "berth registry");
    assert_eq!(dashboard["uid"], "berth-registry");
    assert_eq!(dashboard["schemaVersion"], 39);
    let input = &dashboard["__inputs"][0];
    assert_eq!(
        (&input["name"], &input["type"], &input["pluginId"]),
        (
            &json!("DS_PROMETHEUS"),
            &json!("datasource"),
            &json!("prometheus")
        )
    );
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let namespace = variables
        .iter()
        .find(|variable| variable["name"] == "namespace")
        .expect("a `namespace` variable");
    assert_eq!(namespace["type"], "custom");
    assert_eq!(namespace["current"]["value"], "zot");
    let options: Vec<&Value> = namespace["options"]
        .as_array()
        .expect("namespace options")
        .iter()
        .map(|option| &option["value"])
        .collect();
    assert_eq!(options, [&json!("zot"), &json!("berth")]);

    let datasource = json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});
    let mut ids = BTreeSet::new();
    for panel in all_panels(&dashboard) {
        let title = &panel["title"];
        let id = panel["id"].as_u64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "panel id {id} ({title}) is used twice");
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64(), grid["w"].as_u64());
        assert!(
            x.zip(w).is_some_and(|(x, w)| w > 0 && x + w <= 24),
            "panel {title}: gridPos {grid} is not inside the 24-column grid"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"], datasource, "panel {title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no targets");
        let ref_ids: BTreeSet<&str> = targets
            .iter()
            .map(|target| target["refId"].as_str().expect("refId"))
            .collect();
        assert_eq!(ref_ids.len(), targets.len(), "panel {title}: refIds repeat");
        for target in targets {
            assert_eq!(target["datasource"], datasource, "panel {title}");
        }
    }
}

#[test]
fn dashboard_reads_only_contract_families() {
    let dashboard = load_dashboard();
    let problems: Vec<String> = NAMESPACES
        .iter()
        .flat_map(|namespace| {
            missing_from(&dashboard, namespace, &contract_names(namespace))
                .into_iter()
                .map(move |missing| format!("namespace {namespace}: {missing}"))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "the dashboard reads names outside the metrics contract:\n{}",
        problems.join("\n")
    );
}

#[test]
fn dashboard_covers_the_core_families() {
    let dashboard = load_dashboard();
    let mut absent = Vec::new();
    for namespace in NAMESPACES {
        let used = dashboard_names(&dashboard, namespace);
        absent.extend(
            REQUIRED_NAMES
                .iter()
                .map(|name| substitute_namespace(name, namespace))
                .filter(|name| !used.contains_key(name)),
        );
    }
    assert!(
        absent.is_empty(),
        "the dashboard no longer reads {absent:?}"
    );
}

/// Every expression, with Grafana's variables set to plausible values, is valid PromQL for the
/// real parser: `promtool check rules` on one recording rule per expression.
#[test]
fn dashboard_expressions_parse_with_promtool() {
    if !require_tool("promtool") {
        return;
    }
    let dashboard = load_dashboard();
    let dir = tempfile::tempdir().expect("tempdir");
    for namespace in NAMESPACES {
        let mut legend = Vec::new();
        let mut rules = Vec::new();
        for (index, (title, expr)) in expressions(&dashboard).iter().enumerate() {
            let record = format!("berth_dashboard:expression_{index}");
            let expr = with_grafana_variables(&substitute_namespace(expr, namespace));
            legend.push(format!("{record} (panel {title:?}): {expr}"));
            rules.push(json!({"record": record, "expr": expr}));
        }
        let path = dir.path().join(format!("rules-{namespace}.json"));
        let file = json!({"groups": [{"name": "berth-dashboard", "rules": rules}]});
        std::fs::write(&path, serde_json::to_vec(&file).expect("serializes"))
            .expect("write rules file");
        let (ok, stdout, stderr) =
            run_cmd(Command::new("promtool").args(["check", "rules"]).arg(&path));
        assert!(
            ok,
            "namespace {namespace}: promtool rejects a dashboard expression:\n{stdout}{stderr}\n{}",
            legend.join("\n")
        );
    }
}

// ------------------------------------------------------------------ against a real berth

/// Starts berth with `metrics` as its `extensions.metrics` section, pushes one image so request
/// series exist, and checks every name the dashboard reads under `namespace` is exported.
fn assert_dashboard_matches_exporter(metrics: Value, namespace: &str) {
    let dashboard = load_dashboard();
    let berth = Berth::start_with(json!({"extensions": {"metrics": metrics}}));
    let client = http();
    let image = random_image(1, 4096);
    push_image(&client, &berth.url, "grafana/app", "v1", &image);

    let response = client
        .get(format!("{}/metrics", berth.url))
        .send()
        .expect("GET /metrics");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.text().expect("read /metrics body");
    assert_eq!(status, 200, "GET /metrics: {body}");
    assert!(
        content_type.starts_with("text/plain"),
        "GET /metrics: content type {content_type:?}"
    );

    let exported = exported_names(&body);
    let requests = format!("{namespace}_http_requests_total");
    assert!(
        body.lines()
            .any(|line| line.starts_with(&format!("{requests}{{"))),
        "no {requests} series after a push:\n{body}"
    );
    let missing = missing_from(&dashboard, namespace, &exported);
    assert!(
        missing.is_empty(),
        "namespace {namespace}: {} dashboard names are not exported by berth:\n{}\n\
         --- /metrics ---\n{body}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn dashboard_names_are_exported_under_the_zot_namespace() {
    assert_dashboard_matches_exporter(json!({"enable": true}), "zot");
}

#[test]
fn dashboard_names_are_exported_under_the_berth_namespace() {
    assert_dashboard_matches_exporter(
        json!({"enable": true, "prometheus": {"namespace": "berth"}}),
        "berth",
    );
}
