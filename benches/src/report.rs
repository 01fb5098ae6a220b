//! Output of a `berth-bench run`: a table for people, JSON for scripts, and zb's `ci-cd`
//! JSON for github-action-benchmark (`[{"name","unit":"requests per sec","value","range"}]`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::{human_seconds, TestResult};

/// One row of zb's ci-cd format.
#[derive(Serialize)]
struct CiCdEntry<'a> {
    name: &'a str,
    unit: &'static str,
    value: f64,
    range: &'static str,
}

pub fn ci_cd_json(results: &[TestResult]) -> String {
    let entries: Vec<_> = results
        .iter()
        .map(|result| CiCdEntry {
            name: &result.name,
            unit: "requests per sec",
            value: (result.requests_per_second * 100.0).round() / 100.0,
            range: "3",
        })
        .collect();
    serde_json::to_string_pretty(&entries).expect("plain data serializes")
}

pub fn json(results: &[TestResult]) -> String {
    serde_json::to_string_pretty(results).expect("plain data serializes")
}

/// The main time to first byte of a result: the layer's for pulls, else the response's.
fn main_ttfb(result: &TestResult) -> String {
    ["layer", "response"]
        .iter()
        .find_map(|part| result.ttfb.get(*part))
        .map_or_else(|| "-".to_owned(), |summary| human_seconds(summary.p50))
}

pub fn table(results: &[TestResult]) -> String {
    let mut out = String::new();
    let width = results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:width$}  {:>6} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}",
        "test", "reqs", "fail", "req/s", "MB/s", "min", "p50", "p90", "p99", "ttfb p50", "cpu s"
    );
    for result in results {
        let l = &result.latency;
        let _ = writeln!(
            out,
            "{:width$}  {:>6} {:>5} {:>9.1} {:>8.1} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7.2}",
            result.name,
            result.requests,
            result.failures,
            result.requests_per_second,
            result.megabytes_per_second,
            human_seconds(l.min),
            human_seconds(l.p50),
            human_seconds(l.p90),
            human_seconds(l.p99),
            main_ttfb(result),
            result.client_cpu_seconds,
        );
        if result.ttfb.len() > 1 {
            let parts: Vec<String> = result
                .ttfb
                .iter()
                .map(|(part, s)| {
                    format!("{part} {}/{}", human_seconds(s.p50), human_seconds(s.p99))
                })
                .collect();
            let _ = writeln!(out, "{:width$}    ttfb p50/p99: {}", "", parts.join(", "));
        }
        if !result.mix.is_empty() && result.mix.len() > 1 {
            let mix: Vec<String> = result
                .mix
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            let _ = writeln!(out, "{:width$}    mix: {}", "", mix.join(", "));
        }
        for (error, count) in &result.errors {
            let _ = writeln!(out, "{:width$}    {count} x {error}", "");
        }
    }
    out
}

/// One plain line per finished test (when stderr is not a terminal).
pub fn line(result: &TestResult) -> String {
    format!(
        "{}: {} requests, {} failed, {:.1} req/s, {:.1} MB/s, p50 {}, p99 {}",
        result.name,
        result.requests,
        result.failures,
        result.requests_per_second,
        result.megabytes_per_second,
        human_seconds(result.latency.p50),
        human_seconds(result.latency.p99),
    )
}
