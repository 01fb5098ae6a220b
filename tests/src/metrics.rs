//! berth's `/metrics` contract as the tests see it: the list of families ([`METRIC_FAMILIES`])
//! and a parser for the text exposition ([`Exposition`]) strict enough to catch what
//! promtool does not (duplicate series, samples outside their family).

use std::collections::{BTreeMap, BTreeSet};

/// Every family berth exports, with its Prometheus type. zot's families carry the
/// `${namespace}` prefix (`zot` by default, `berth` with
/// `extensions.metrics.prometheus.namespace`).
pub const METRIC_FAMILIES: &[(&str, &str)] = &[
    ("${namespace}_http_requests_total", "counter"),
    ("${namespace}_http_repo_latency_seconds", "summary"),
    ("${namespace}_http_method_latency_seconds", "histogram"),
    ("${namespace}_repo_storage_bytes", "gauge"),
    ("${namespace}_repo_uploads_total", "counter"),
    ("${namespace}_repo_downloads_total", "counter"),
    ("${namespace}_info", "gauge"),
    ("${namespace}_storage_lock_latency_seconds", "histogram"),
    ("${namespace}_scheduler_generators_total", "counter"),
    ("${namespace}_scheduler_generators_status", "gauge"),
    ("${namespace}_scheduler_workers_total", "gauge"),
    ("${namespace}_scheduler_workers", "gauge"),
    ("${namespace}_scheduler_tasksqueue_length", "gauge"),
    (
        "${namespace}_scheduler_workers_tasks_duration_seconds",
        "histogram",
    ),
    ("${namespace}_gc_runs_total", "counter"),
    ("${namespace}_gc_duration_seconds", "summary"),
    ("${namespace}_gc_deleted_total", "counter"),
    ("berth_gc_freed_bytes_total", "counter"),
    ("berth_http_requests_in_flight", "gauge"),
    ("berth_http_received_bytes_total", "counter"),
    ("berth_http_sent_bytes_total", "counter"),
    ("berth_repo_received_bytes_total", "counter"),
    ("berth_repo_sent_bytes_total", "counter"),
    ("berth_upload_sessions_open", "gauge"),
    ("berth_blob_store_blobs", "gauge"),
    ("berth_blob_store_bytes", "gauge"),
    ("berth_dedupe_saved_bytes", "gauge"),
    ("berth_index_sst_bytes", "gauge"),
    ("berth_index_memtable_bytes", "gauge"),
    ("berth_index_pending_compaction_bytes", "gauge"),
    ("berth_index_running_compactions", "gauge"),
    ("berth_index_write_stopped", "gauge"),
    ("berth_index_delayed_write_rate_bytes", "gauge"),
    ("berth_index_write_stalls_total", "counter"),
    ("berth_io_uring_submitted_total", "counter"),
    ("berth_io_uring_completed_total", "counter"),
    ("berth_fsync_duration_seconds", "histogram"),
    ("berth_scrub_runs_total", "counter"),
    ("berth_scrub_blobs_verified_total", "counter"),
    ("berth_scrub_bytes_verified_total", "counter"),
    ("berth_scrub_affected_blobs", "gauge"),
    ("berth_scrub_progress_ratio", "gauge"),
    ("berth_sync_upstream_requests_total", "counter"),
    ("berth_sync_upstream_bytes_total", "counter"),
    ("berth_sync_upstream_request_duration_seconds", "histogram"),
    ("berth_sync_upstream_in_flight", "gauge"),
    ("berth_sync_upstream_retries_total", "counter"),
    ("berth_sync_images_total", "counter"),
    ("berth_sync_last_success_timestamp_seconds", "gauge"),
    ("berth_sync_unsigned_refused_total", "counter"),
    ("process_cpu_seconds_total", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
    ("process_start_time_seconds", "gauge"),
];

/// [`METRIC_FAMILIES`] under `namespace`: family name -> type.
pub fn metric_families(namespace: &str) -> BTreeMap<String, &'static str> {
    METRIC_FAMILIES
        .iter()
        .map(|(family, kind)| (family.replace("${namespace}", namespace), *kind))
        .collect()
}

/// GETs `{url}/metrics` and parses it (strictly: see [`Exposition::parse`]).
pub fn scrape_metrics(client: &reqwest::blocking::Client, url: &str) -> Exposition {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .expect("scrape")
        .text()
        .expect("body");
    Exposition::parse(&text)
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed text exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name -> type, from `# TYPE` lines.
    pub types: BTreeMap<String, String>,
    pub samples: Vec<MetricSample>,
}

impl Exposition {
    /// Parses `text`, panicking on anything malformed: a sample before its family's TYPE
    /// line or after another family started, a repeated series, a bad label block or value.
    pub fn parse(text: &str) -> Exposition {
        let mut exposition = Exposition::default();
        let mut current: Option<String> = None;
        let mut closed = BTreeSet::new();
        let mut series = BTreeSet::new();
        for line in text.lines() {
            if let Some(declaration) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declaration.split_once(' ').expect("TYPE name kind");
                assert!(
                    closed.insert(name.to_owned()),
                    "family {name} declared twice"
                );
                exposition.types.insert(name.to_owned(), kind.to_owned());
                current = Some(name.to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let sample = parse_sample(line);
            let family = current
                .as_deref()
                .unwrap_or_else(|| panic!("sample before any TYPE: {line}"));
            let suffix = sample.name.strip_prefix(family).unwrap_or_else(|| {
                panic!("sample {} outside its family {family}: {line}", sample.name)
            });
            let kind = exposition.types[family].as_str();
            let allowed: &[&str] = match kind {
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["_sum", "_count", ""],
                _ => &[""],
            };
            assert!(allowed.contains(&suffix), "{line}: not a {kind} sample");
            let key = format!("{}{:?}", sample.name, sample.labels);
            assert!(series.insert(key), "series repeated: {line}");
            exposition.samples.push(sample);
        }
        exposition
    }

    /// The value of the series `name` whose labels include every pair of `labels`; panics if
    /// more than one series matches.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<&MetricSample> = self.matching(name, labels).collect();
        assert!(
            matching.len() <= 1,
            "{name} {labels:?} is ambiguous: {matching:?}"
        );
        matching.first().map(|sample| sample.value)
    }

    /// The sum over the series of `name` whose labels include every pair of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|sample| sample.value).sum()
    }

    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a MetricSample> + 'a {
        self.samples.iter().filter(move |sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
        })
    }
}

fn parse_sample(line: &str) -> MetricSample {
    let (series, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no value: {line}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number
            .parse()
            .unwrap_or_else(|_| panic!("bad value {number:?}: {line}")),
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("unclosed labels: {line}"));
            (name, parse_labels(body, line))
        }
    };
    MetricSample {
        name: name.to_owned(),
        labels,
        value,
    }
}

fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label {key} unquoted: {line}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => panic!("dangling escape: {line}"),
                },
                Some('"') => break,
                Some(other) => value.push(other),
                None => panic!("unterminated label value: {line}"),
            }
        }
        assert!(
            labels.insert(key.clone(), value).is_none(),
            "label {key} twice: {line}"
        );
        match chars.next() {
            Some(',') | None => {}
            Some(other) => panic!("unexpected {other:?} after label {key}: {line}"),
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_families_and_refuses_what_promtool_lets_through() {
        let text = "# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\n\"} 3\n\
                    # TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n";
        let exposition = Exposition::parse(text);
        assert_eq!(exposition.value("a_total", &[("y", "q\"\n")]), Some(3.0));
        assert_eq!(exposition.value("h_count", &[]), Some(2.0));
        assert_eq!(exposition.sum("h_bucket", &[]), 2.0);
        for bad in [
            "# TYPE a_total counter\na_total 1\na_total 2\n",
            "a_total 1\n",
            "# TYPE a gauge\nb 1\n",
            "# TYPE a counter\na_sum 1\n",
        ] {
            let parsed = std::panic::catch_unwind(|| Exposition::parse(bad));
            assert!(parsed.is_err(), "accepted {bad:?}");
        }
    }
}
