//! berth-bench, the load tool of benches/, run for real: against the real berth binary every
//! workload completes with no failure and with every pulled body verified, and `compare`
//! starts berth and CNCF Distribution and prints the side-by-side table with the limits.
//! Tiny request counts: this checks the tool works, it measures nothing.

use std::path::PathBuf;
use std::process::Command;

use berth_tests::{berth_bin, require_tool, Berth};
use serde_json::Value;

/// `berth-bench` sits next to `berth` (`cargo build --workspace --bins` builds both).
fn bench_bin() -> PathBuf {
    berth_bin().with_file_name("berth-bench")
}

fn run_bench(args: &[&str]) -> String {
    let output = Command::new(bench_bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (cargo build --workspace --bins)",
                bench_bin().display()
            )
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "berth-bench {args:?} failed:\n{stderr}"
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// `berth-bench compare` with one round of tiny counts, data under `data`, and `more`.
fn run_compare(data: &std::path::Path, more: &[&str]) -> String {
    let berth = berth_bin();
    let mut args = vec![
        "compare",
        "--berth-bin",
        berth.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--rounds",
        "1",
        "-c",
        "2",
        "-n",
        "3",
        "--small-requests",
        "20",
    ];
    args.extend_from_slice(more);
    run_bench(&args)
}

#[test]
fn every_workload_runs_against_berth_without_failures() {
    let berth = Berth::start();
    // Everything but the 100 MB sizes (and the mixes that contain them): seconds, not minutes.
    let regex =
        "Catalog|(Monolith|Streamed|Pull) (1|10)MB$|75% and Push 25% Mixed 1MB|Manifest|Tags|4KiB";
    let out = run_bench(&[
        "run", &berth.url, "-c", "3", "-n", "4", "-t", regex, "-o", "json",
    ]);
    let results: Vec<Value> = serde_json::from_str(&out).expect("JSON output");
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Get Catalog",
            "Push Monolith 1MB",
            "Push Monolith 10MB",
            "Push Chunk Streamed 1MB",
            "Push Chunk Streamed 10MB",
            "Pull 1MB",
            "Pull 10MB",
            "Pull 75% and Push 25% Mixed 1MB",
            "Manifest HEAD by tag",
            "Manifest GET by tag",
            "Tags List",
            "Blob GET 4KiB",
        ]
    );
    for result in &results {
        assert_eq!(result["requests"], 4, "{result}");
        assert_eq!(result["failures"], 0, "{result}");
        assert!(
            result["requests_per_second"].as_f64().unwrap() > 0.0,
            "{result}"
        );
    }
    let pull = &results[6];
    assert_eq!(
        pull["bytes"].as_u64().unwrap() / 4 / (1 << 20),
        10,
        "{pull}"
    );
    for part in ["manifest HEAD", "manifest GET", "config", "layer"] {
        assert_eq!(pull["ttfb"][part]["count"], 4, "{pull}");
    }
    // What was pushed is really stored: the repositories are in the catalog and fsck is clean.
    let catalog = berth_tests::http()
        .get(format!("{}/v2/_catalog", berth.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let catalog: Value = serde_json::from_str(&catalog).unwrap();
    let repos = catalog["repositories"].as_array().unwrap();
    assert!(
        repos.iter().any(|r| r == "berth-bench/push-monolith-10mb"),
        "{catalog}"
    );
    let (clean, report) = berth.fsck();
    assert!(clean, "{report}");
}

#[test]
fn compare_runs_berth_and_distribution_side_by_side() {
    if !require_tool("docker-registry") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let out = run_compare(data.path(), &["-t", "Push Monolith 1MB$|Blob GET 4KiB"]);
    assert!(out.starts_with("limits: loopback TCP "), "{out}");
    assert!(
        out.contains("verifying client from an in-memory server"),
        "{out}"
    );
    let row = |name: &str| {
        out.lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in:\n{out}"))
            .to_owned()
    };
    // berth, Distribution, ratio; the push also ran with commit:false.
    let push = row("Push Monolith 1MB");
    assert!(push.contains('x') && !push.contains("FAILURES"), "{push}");
    assert_eq!(
        push.split_whitespace().filter(|w| w.ends_with(')')).count(),
        3,
        "{push}"
    );
    let small = row("Blob GET 4KiB");
    assert_eq!(
        small
            .split_whitespace()
            .filter(|w| w.ends_with(')'))
            .count(),
        2,
        "{small}"
    );
    // The registries' data directories are gone.
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
}

/// `compare --backend shared` (issue 20's benchmark): berth as one node and as three (behind
/// haproxy, and spread by the load tool), Distribution as one node and three behind haproxy with its s3 driver and Redis, all on one SeaweedFS cluster, and berth
/// embedded beside them; both tables have a figure for every registry, no request failed, and
/// the data directories are gone after.
#[test]
fn compare_on_the_shared_backend_runs_one_node_three_nodes_and_embedded() {
    let tools = ["docker-registry", "haproxy", "redis-server"];
    if !berth_tests::nodes::shared_backend_available(&tools) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let out = run_compare(
        data.path(),
        &[
            "--backend",
            "shared",
            "--no-nocommit",
            "-t",
            "Push Monolith 1MB$|Manifest GET by tag",
        ],
    );
    assert!(out.contains("backend: shared (SeaweedFS S3"), "{out}");
    for name in ["Push Monolith 1MB", "Manifest GET by tag"] {
        let rows: Vec<&str> = out.lines().filter(|line| line.starts_with(name)).collect();
        // The main table (berth, Distribution), three nodes (berth and Distribution behind
        // haproxy, berth spread by the load tool), and what sharing costs (berth shared,
        // embedded).
        assert_eq!(rows.len(), 3, "{name} rows in:\n{out}");
        for (row, figures) in rows.iter().zip([2, 3, 2]) {
            assert!(!row.contains("FAILURES") && !row.contains("NaN"), "{row}");
            assert_eq!(
                row.split_whitespace().filter(|w| w.ends_with(')')).count(),
                figures,
                "{row}"
            );
        }
    }
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
}

/// `berth-bench mirror` (issue 6's benchmark): berth as an on-demand mirror and Distribution in
/// proxy mode in front of one upstream; every pull (cold, 2nd, 3rd, direct) succeeds, is
/// verified, and is reported with its CPU columns, and the data directories are gone after.
#[test]
fn mirror_runs_berth_and_distribution_proxy_side_by_side() {
    if !require_tool("docker-registry") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let json = data.path().join("mirror.json");
    let berth = berth_bin();
    let out = run_bench(&[
        "mirror",
        "--berth-bin",
        berth.to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
        "--sizes",
        "2MB",
        "--rounds",
        "1",
        "--json-out",
        json.to_str().unwrap(),
    ]);
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON report")).expect("JSON");
    std::fs::remove_file(&json).expect("remove the report");
    let samples = report["samples"].as_array().expect("samples");
    assert_eq!(
        samples.len(),
        7,
        "3 berth + 3 proxy + 1 direct pulls:\n{out}"
    );
    for sample in samples {
        assert!(sample["error"].is_null(), "{sample}\n{out}");
        assert!(sample["total_seconds"].as_f64().unwrap() > 0.0, "{sample}");
        assert!(
            sample["client_cpu_seconds"].as_f64().unwrap() >= 0.0,
            "{sample}"
        );
    }
    let header = out
        .lines()
        .find(|line| line.starts_with("size"))
        .unwrap_or_else(|| panic!("no table in:\n{out}"));
    assert!(header.contains("client CPU s"), "{header}");
    for mirror in ["berth", "distribution proxy"] {
        assert!(
            out.lines()
                .any(|line| line.starts_with("2MB") && line.contains(mirror) && line.contains('x')),
            "no ratio row for {mirror} in:\n{out}"
        );
    }
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
}

#[test]
fn tls_runs_berth_over_https_beside_http_and_distribution() {
    if !require_tool("docker-registry") {
        return;
    }
    let data = tempfile::tempdir().expect("temp dir");
    let berth = berth_bin();
    let out = run_bench(&[
        "tls",
        "--berth-bin",
        berth.to_str().expect("UTF-8 path"),
        "--data-dir",
        data.path().to_str().expect("UTF-8 path"),
        "--rounds",
        "1",
        "-c",
        "2",
        "--small-requests",
        "50",
        "--large-pulls",
        "1",
        "--handshakes",
        "20",
    ]);
    // The tool fails on any failed request, so every row means HTTPS worked end to end.
    for row in [
        "| Manifest GET by tag | req/s |",
        "| Blob GET 4KiB | req/s |",
        "| Pull 100MB | MB/s |",
        "| New connection + GET /v2/ | req/s |",
    ] {
        assert!(out.contains(row), "{row} missing:\n{out}");
    }
}
