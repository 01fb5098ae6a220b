//! The search benchmark's report: the workload table, start-up, memory and push figures.
use super::*;

pub(super) fn line(run: &SearchRun) -> String {
    let result = &run.result;
    format!(
        "{}: {:.0} req/s, p50 {}, p99 {}, {} failures, found {} ({} in page), server CPU {:.1} s",
        result.name,
        result.requests_per_second,
        human_seconds(result.latency.p50),
        human_seconds(result.latency.p99),
        result.failures,
        run.check_total,
        run.check_items,
        run.server_cpu_seconds
    )
}

fn ms(seconds: f64) -> String {
    format!("{:.2}", seconds * 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / MIB as f64)
}

impl SearchReport {
    /// Markdown tables: the workloads, then start-up and memory against the targets.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "store: {} repositories, {} images, {} bases, {} platforms per index; -c {}\n",
            self.layout.repos,
            self.layout.images,
            self.layout.bases,
            self.layout.platforms,
            self.concurrency
        );
        out.push_str(
            "| workload | requests/s | p50 ms | p90 ms | p99 ms | max ms | found | server CPU s | p99 ≤ 20 ms |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        for run in &self.runs {
            let r = &run.result;
            if r.failures > 0 {
                let first = r.errors.keys().next().cloned().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "| {} | **failed**: {} of {} requests ({first}) | | | | | | | |",
                    r.name, r.failures, r.requests
                );
                continue;
            }
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {} | {} | {} | {} | {:.1} | {} |",
                r.name,
                r.requests_per_second,
                ms(r.latency.p50),
                ms(r.latency.p90),
                ms(r.latency.p99),
                ms(r.latency.max),
                run.check_total,
                run.server_cpu_seconds,
                if r.latency.p99 <= TARGET_P99_SECONDS {
                    "met"
                } else {
                    "**missed**"
                }
            );
        }
        let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
        let _ = writeln!(
            out,
            "\n| measure | value | target |\n|---|---|---|\n\
             | start-up to /readyz 200 (first start) | {} (listening after {}) | ≤ 2 s: {} |\n\
             | start-up to /readyz 200 (second start) | {} | ≤ 2 s: {} |\n\
             | VmRSS when ready | {} | |\n\
             | VmRSS after the workloads | {} | ≤ 300 MiB: {} |\n\
             | VmHWM (peak) | {} | |",
            human_seconds(self.start_seconds),
            human_seconds(self.listening_seconds),
            verdict(self.start_seconds <= TARGET_START_SECONDS),
            human_seconds(self.second_start_seconds),
            verdict(self.second_start_seconds <= TARGET_START_SECONDS),
            mib(self.rss_ready_bytes),
            mib(self.rss_after_bytes),
            verdict(self.rss_after_bytes <= TARGET_RSS_BYTES),
            mib(self.peak_rss_bytes),
        );
        if !self.pushes.is_empty() {
            out.push_str(
                "\n| Push Monolith 1MB | round | requests/s | p50 ms | p99 ms | failures |\n\
                 |---|---|---|---|---|---|\n",
            );
            for push in &self.pushes {
                let r = &push.result;
                let _ = writeln!(
                    out,
                    "| search {} | {} | {:.1} | {} | {} | {} |",
                    if push.search { "on" } else { "off" },
                    push.round,
                    r.requests_per_second,
                    ms(r.latency.p50),
                    ms(r.latency.p99),
                    r.failures
                );
            }
        }
        out
    }
}
