//! Per-test measurements: what the workers record and the summary a report prints.
//!
//! Every completed request keeps its latency (a few bytes each; a test has at most millions
//! of requests), so percentiles are exact, not bucketed. Failures are counted by their error
//! text's first line. Byte counts are payload bytes (blob and manifest bodies) moved in either
//! direction.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Min, percentiles and max of a set of durations, in seconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Summary {
    pub count: usize,
    pub min: f64,
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &mut [Duration]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        samples.sort_unstable();
        let at = |quantile: f64| {
            // Nearest rank: the smallest sample with at least `quantile` of samples at or below.
            let rank = (quantile * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1].as_secs_f64()
        };
        Summary {
            count: samples.len(),
            min: samples[0].as_secs_f64(),
            p50: at(0.50),
            p75: at(0.75),
            p90: at(0.90),
            p95: at(0.95),
            p99: at(0.99),
            max: samples[samples.len() - 1].as_secs_f64(),
        }
    }
}

/// What one worker saw during a test.
#[derive(Default)]
pub struct Recorder {
    pub latencies: Vec<Duration>,
    pub ttfb: BTreeMap<&'static str, Vec<Duration>>,
    pub errors: BTreeMap<String, u64>,
    pub bytes: u64,
    /// Requests per kind for the mixed tests ("pull 10MB", "push 1MB", ...).
    pub mix: BTreeMap<String, u64>,
}

impl Recorder {
    /// Waits for every worker and merges what each recorded.
    pub async fn gather(
        workers: Vec<tokio::task::JoinHandle<Recorder>>,
    ) -> Result<Recorder, tokio::task::JoinError> {
        let mut recorded = Recorder::default();
        for worker in workers {
            recorded.merge(worker.await?);
        }
        Ok(recorded)
    }

    pub fn merge(&mut self, other: Recorder) {
        self.latencies.extend(other.latencies);
        for (part, samples) in other.ttfb {
            self.ttfb.entry(part).or_default().extend(samples);
        }
        for (error, count) in other.errors {
            *self.errors.entry(error).or_default() += count;
        }
        for (kind, count) in other.mix {
            *self.mix.entry(kind).or_default() += count;
        }
        self.bytes += other.bytes;
    }

    pub fn fail(&mut self, error: &anyhow::Error) {
        let text = format!("{error:#}");
        let first_line = text.lines().next().unwrap_or("error").to_owned();
        *self.errors.entry(first_line).or_default() += 1;
    }
}

/// The result of one test against one registry.
#[derive(Clone, Debug, Serialize)]
pub struct TestResult {
    pub name: String,
    pub concurrency: usize,
    pub requests: u64,
    pub failures: u64,
    pub errors: BTreeMap<String, u64>,
    pub mix: BTreeMap<String, u64>,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub megabytes_per_second: f64,
    pub bytes: u64,
    pub latency: Summary,
    pub ttfb: BTreeMap<String, Summary>,
    /// CPU time (user + system) the load tool itself used during the test.
    pub client_cpu_seconds: f64,
}

impl TestResult {
    pub fn new(
        name: &str,
        concurrency: usize,
        mut recorded: Recorder,
        elapsed: Duration,
        client_cpu: Duration,
    ) -> TestResult {
        let failures = recorded.errors.values().sum::<u64>();
        let requests = recorded.latencies.len() as u64 + failures;
        let seconds = elapsed.as_secs_f64().max(1e-9);
        TestResult {
            name: name.to_owned(),
            concurrency,
            requests,
            failures,
            errors: recorded.errors,
            mix: recorded.mix,
            seconds,
            requests_per_second: recorded.latencies.len() as f64 / seconds,
            megabytes_per_second: recorded.bytes as f64 / 1e6 / seconds,
            bytes: recorded.bytes,
            latency: Summary::of(&mut recorded.latencies),
            ttfb: recorded
                .ttfb
                .into_iter()
                .map(|(part, mut samples)| (part.to_owned(), Summary::of(&mut samples)))
                .collect(),
            client_cpu_seconds: client_cpu.as_secs_f64(),
        }
    }
}

/// CPU time (user + system) this process has used so far.
pub fn process_cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Formats seconds for a table: µs below 1 ms, ms below 1 s.
pub fn human_seconds(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.0}µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.2}ms", seconds * 1e3)
    } else {
        format!("{seconds:.2}s")
    }
}

/// The median of the finite values (NaN when there are none).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() % 2 {
        1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let summary = Summary::of(&mut samples);
        assert_eq!(summary.count, 100);
        assert_eq!(summary.min, 0.001);
        assert_eq!(summary.p50, 0.050);
        assert_eq!(summary.p90, 0.090);
        assert_eq!(summary.p95, 0.095);
        assert_eq!(summary.p99, 0.099);
        assert_eq!(summary.max, 0.100);
        let mut one = vec![Duration::from_millis(7)];
        assert_eq!(Summary::of(&mut one).p99, 0.007);
    }
}
