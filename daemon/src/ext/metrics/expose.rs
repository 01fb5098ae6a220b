//! The Prometheus text exposition format (version 0.0.4), written straight into one buffer.
//!
//! Why not a crate: berth sums per-shard counters at scrape time and must emit zot's summary
//! families (`zot_http_repo_latency_seconds`, `zot_gc_duration_seconds`). `prometheus-client`
//! has no summary type and writes OpenMetrics (counter families without `_total`, which
//! `promtool check metrics` reads differently); the `prometheus` crate would need one protobuf
//! object per series, tens of thousands per scrape with 10,000 repositories. The format is a
//! handful of line rules, checked by `promtool check metrics` in the integration tests.
//!
//! Rules: a family's `# HELP` and `# TYPE` come first, then all of its samples, contiguous.
//! Label values are escaped (`\\`, `\"`, `\n`); values are Go-style floats (`+Inf`, `NaN`).
use std::fmt::Write;

use berth_storage::stats::HistogramSnapshot;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

/// An exposition being written.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn with_capacity(bytes: usize) -> Exposition {
        Exposition {
            out: String::with_capacity(bytes),
        }
    }

    pub fn finish(self) -> String {
        self.out
    }

    /// Starts a family: its help text and type.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
    }

    /// One sample of a counter or gauge.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        self.labels(labels, None);
        self.value(value);
    }

    /// An integer sample (the common case: counts and bytes).
    pub fn count(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// The `_bucket`, `_sum` and `_count` samples of one histogram series.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        histogram: &HistogramSnapshot,
    ) {
        let mut bound_text = String::new();
        for (bound, cumulative) in histogram.bounds.iter().zip(&histogram.cumulative) {
            bound_text.clear();
            let _ = write!(bound_text, "{}", Float(*bound));
            self.bucket(name, labels, &bound_text, *cumulative);
        }
        self.bucket(name, labels, "+Inf", histogram.count);
        self.summary(name, labels, histogram.sum_seconds, histogram.count);
    }

    /// The `_sum` and `_count` samples of a summary (zot's summaries have no quantiles).
    pub fn summary(&mut self, name: &str, labels: &[(&str, &str)], sum: f64, count: u64) {
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        self.value(sum);
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {count}");
    }

    fn bucket(&mut self, name: &str, labels: &[(&str, &str)], le: &str, cumulative: u64) {
        let _ = write!(self.out, "{name}_bucket");
        self.labels(labels, Some(le));
        let _ = writeln!(self.out, " {cumulative}");
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        let extra = le.map(|le| ("le", le));
        for (name, value) in labels.iter().copied().chain(extra) {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(name);
            self.out.push_str("=\"");
            escape_label_into(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push('}');
    }

    fn value(&mut self, value: f64) {
        let _ = writeln!(self.out, " {}", Float(value));
    }
}

/// A float as Prometheus (Go's strconv) writes it.
struct Float(f64);

impl std::fmt::Display for Float {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            value if value.is_nan() => formatter.write_str("NaN"),
            value if value == f64::INFINITY => formatter.write_str("+Inf"),
            value if value == f64::NEG_INFINITY => formatter.write_str("-Inf"),
            value => write!(formatter, "{value}"),
        }
    }
}

fn escape_label_into(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for character in value.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut exposition = Exposition::default();
        exposition.family("zot_http_requests_total", Kind::Counter, "Total requests.");
        exposition.count(
            "zot_http_requests_total",
            &[("method", "GET"), ("code", "200")],
            7,
        );
        exposition.family("x_gauge", Kind::Gauge, "a\\b\nc");
        exposition.sample("x_gauge", &[("repo", "a\"b\\c\nd")], 0.25);
        exposition.sample("x_gauge", &[], f64::INFINITY);
        let text = exposition.finish();
        assert_eq!(
            text,
            "# HELP zot_http_requests_total Total requests.\n\
             # TYPE zot_http_requests_total counter\n\
             zot_http_requests_total{method=\"GET\",code=\"200\"} 7\n\
             # HELP x_gauge a\\\\b\\nc\n\
             # TYPE x_gauge gauge\n\
             x_gauge{repo=\"a\\\"b\\\\c\\nd\"} 0.25\n\
             x_gauge +Inf\n"
        );
    }

    #[test]
    fn histogram_and_summary_series() {
        let snapshot = HistogramSnapshot {
            bounds: &[0.05, 0.5],
            cumulative: vec![1, 3],
            count: 4,
            sum_seconds: 2.5,
        };
        let mut exposition = Exposition::default();
        exposition.histogram("h", &[("method", "PUT")], &snapshot);
        exposition.summary("s", &[], 1.5, 2);
        assert_eq!(
            exposition.finish(),
            "h_bucket{method=\"PUT\",le=\"0.05\"} 1\n\
             h_bucket{method=\"PUT\",le=\"0.5\"} 3\n\
             h_bucket{method=\"PUT\",le=\"+Inf\"} 4\n\
             h_sum{method=\"PUT\"} 2.5\n\
             h_count{method=\"PUT\"} 4\n\
             s_sum 1.5\n\
             s_count 2\n"
        );
    }
}
