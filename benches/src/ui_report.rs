//! The UI benchmark's report: per workload the latencies and the page weight against the
//! targets, then start-up and memory.
use std::fmt::Write as _;

use super::*;
use crate::data::MIB;

fn ms(seconds: f64) -> String {
    format!("{:.2}", seconds * 1e3)
}

fn kb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1000.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

pub(super) fn line(run: &UiRun) -> String {
    let result = &run.result;
    if result.failures > 0 {
        let first = result.errors.keys().next().cloned().unwrap_or_default();
        return format!(
            "{}: FAILED, {} of {} requests ({first})",
            result.name, result.failures, result.requests
        );
    }
    format!(
        "{}: {:.0} req/s, p50 {}, p95 {}, p99 {}, page {} KB (HTML {} KB), server CPU {:.1} s",
        result.name,
        result.requests_per_second,
        human_seconds(result.latency.p50),
        human_seconds(result.latency.p95),
        human_seconds(result.latency.p99),
        kb(run.weight.total_bytes()),
        kb(run.weight.html_bytes),
        run.server_cpu_seconds
    )
}

impl UiReport {
    /// Markdown tables: the workloads against both targets, then start-up and memory.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "store: {} repositories, {} images, {} bases, {} platforms per index; -c {} -n {}\n",
            self.layout.repos,
            self.layout.images,
            self.layout.bases,
            self.layout.platforms,
            self.concurrency,
            self.requests
        );
        out.push_str(
            "| workload | requests/s | p50 ms | p95 ms | p99 ms | max ms | failures | server CPU per request ms | HTML KB | page + assets KB | p95 ≤ 50 ms | ≤ 150 KB |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for run in &self.runs {
            let r = &run.result;
            if r.failures > 0 {
                let first = r.errors.keys().next().cloned().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "| {} | **failed**: {} of {} requests ({first}) | | | | | {} | | | | | |",
                    r.name, r.failures, r.requests, r.failures
                );
                continue;
            }
            let cpu_per_request = run.server_cpu_seconds / r.requests.max(1) as f64;
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {} | {} | {} | 0 | {} | {} | {} | {} | {} |",
                r.name,
                r.requests_per_second,
                ms(r.latency.p50),
                ms(r.latency.p95),
                ms(r.latency.p99),
                ms(r.latency.max),
                ms(cpu_per_request),
                kb(run.weight.html_bytes),
                kb(run.weight.total_bytes()),
                verdict(r.latency.p95 <= TARGET_P95_SECONDS),
                verdict(run.weight.total_bytes() <= TARGET_PAGE_BYTES),
            );
        }
        let assets: BTreeMap<&String, u64> = self
            .runs
            .iter()
            .flat_map(|run| run.weight.assets.iter().map(|(path, &bytes)| (path, bytes)))
            .collect();
        if !assets.is_empty() {
            out.push_str("\n| asset | KB |\n|---|---|\n");
            for (path, bytes) in assets {
                let _ = writeln!(out, "| `{path}` | {} |", kb(bytes));
            }
        }
        let mib = |bytes: u64| format!("{:.0} MiB", bytes as f64 / MIB as f64);
        let _ = writeln!(
            out,
            "\n| measure | value |\n|---|---|\n\
             | start-up to /readyz 200 | {} |\n\
             | VmRSS when ready | {} |\n\
             | VmRSS after the workloads | {} |\n\
             | VmHWM (peak) | {} |",
            human_seconds(self.start_seconds),
            mib(self.rss_ready_bytes),
            mib(self.rss_after_bytes),
            mib(self.peak_rss_bytes),
        );
        out
    }
}
