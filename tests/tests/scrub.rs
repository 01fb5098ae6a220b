//! Scrub against the real daemon's store: bit flips, truncated and missing blob files planted
//! by the test are found and reported exactly, offline (`berth scrub CONFIG`, zot's table,
//! exit status) and online (`extensions.scrub`: the log's `component=scrub` lines and the
//! `berth_scrub_*` metrics), and both through the report API (`GET /v2/_zot/ext/scrub`).

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::api::get_json;
use berth_tests::{
    berth_bin, http, push_image, random_image, scrape_metrics, wait_for, Berth, Image,
};
use serde_json::json;

fn blob_file(data_dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    data_dir.join("blobs/sha256").join(&hex[..2]).join(hex)
}

fn flip_a_bit(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read blob file");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(path, bytes).expect("write blob file");
}

fn scrub(berth: &Berth) -> (i32, String) {
    let output = Command::new(berth_bin())
        .arg("scrub")
        .arg(&berth.config_path)
        .output()
        .expect("run berth scrub");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code().expect("exit code"), text)
}

/// The table row of `repo` `tag`, split on whitespace.
fn row<'a>(table: &'a str, repo: &str, tag: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.len() >= 3 && cells[0] == repo && cells[1] == tag)
        .unwrap_or_else(|| panic!("no row for {repo}:{tag} in\n{table}"))
}

#[test]
fn offline_scrub_reports_planted_damage_exactly() {
    let mut berth = Berth::start();
    let client = http();
    let images: Vec<(&str, &str, Image)> = vec![
        ("scrub/flipped", "v1", random_image(2, 50_000)),
        ("scrub/truncated", "v1", random_image(1, 20_000)),
        ("scrub/missing", "v1", random_image(1, 20_000)),
        ("scrub/fine", "v1", random_image(2, 30_000)),
    ];
    for (repo, tag, image) in &images {
        push_image(&client, &berth.url, repo, tag, image);
    }
    berth.stop();
    let (status, table) = scrub(&berth);
    assert_eq!(status, 0, "a clean store scrubs clean:\n{table}");
    assert!(table.starts_with("REPOSITORY"), "{table}");
    for (repo, tag, _) in &images {
        assert_eq!(row(&table, repo, tag)[2], "ok", "{table}");
    }

    let flipped = images[0].2.blob_digests()[2].clone();
    flip_a_bit(&blob_file(&berth.data_dir, &flipped));
    let truncated = images[1].2.blob_digests()[1].clone();
    let path = blob_file(&berth.data_dir, &truncated);
    let length = std::fs::metadata(&path).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(length - 100)
        .expect("truncate");
    let missing = images[2].2.blob_digests()[0].clone();
    std::fs::remove_file(blob_file(&berth.data_dir, &missing)).expect("remove");

    let (status, table) = scrub(&berth);
    assert_eq!(status, 1, "damage must fail the scrub:\n{table}");
    let flipped_row = row(&table, "scrub/flipped", "v1");
    assert_eq!(
        &flipped_row[2..5],
        ["affected", flipped.as_str(), "content"],
        "{table}"
    );
    let truncated_row = row(&table, "scrub/truncated", "v1");
    assert_eq!(
        &truncated_row[2..4],
        ["affected", truncated.as_str()],
        "{table}"
    );
    let expected_size = format!("{length} expected");
    assert!(truncated_row.join(" ").contains(&expected_size), "{table}");
    let missing_row = row(&table, "scrub/missing", "v1");
    assert_eq!(
        &missing_row[2..4],
        ["affected", missing.as_str()],
        "{table}"
    );
    assert!(missing_row.join(" ").contains("missing"), "{table}");
    assert_eq!(row(&table, "scrub/fine", "v1")[2], "ok", "{table}");
    // One `damaged DIGEST: WHAT` line per damaged object: exactly the planted three.
    let mut damaged: Vec<&str> = table
        .lines()
        .filter_map(|line| line.strip_prefix("damaged "))
        .filter_map(|rest| rest.split_once(": ").map(|(digest, _)| digest))
        .collect();
    damaged.sort_unstable();
    let mut planted = vec![flipped.as_str(), truncated.as_str(), missing.as_str()];
    planted.sort_unstable();
    assert_eq!(damaged, planted, "{table}");

    // The offline pass's report is what the daemon's API serves after a start.
    berth.restart();
    let report = scrub_api(&berth);
    let mut reported: Vec<&str> = report["damaged"]
        .as_array()
        .expect("damaged list")
        .iter()
        .map(|entry| entry["digest"].as_str().expect("digest"))
        .collect();
    reported.sort_unstable();
    assert_eq!(reported, planted, "{report}");
    let status_of = |repo: &str| {
        report["images"]
            .as_array()
            .expect("images")
            .iter()
            .find(|image| image["repository"] == repo)
            .map(|image| (image["status"].clone(), image["affectedBlob"].clone()))
    };
    assert_eq!(
        status_of("scrub/flipped"),
        Some((json!("affected"), json!(flipped)))
    );
    assert_eq!(status_of("scrub/fine"), Some((json!("ok"), json!(null))));
}

/// `GET /v2/_zot/ext/scrub`'s `lastPass`.
fn scrub_api(berth: &Berth) -> serde_json::Value {
    let (_, body) = get_json(&http(), &format!("{}/v2/_zot/ext/scrub", berth.url));
    body["lastPass"].clone()
}

#[test]
fn online_scrub_logs_and_counts_damage() {
    let berth = Berth::start_with(json!({
        "extensions": {"scrub": {"interval": "1s"}, "metrics": {}},
    }));
    let client = http();
    let image = random_image(1, 40_000);
    push_image(&client, &berth.url, "online/app", "v1", &image);
    let layer = image.blob_digests()[1].clone();
    flip_a_bit(&blob_file(&berth.data_dir, &layer));
    let log = wait_for(
        "the scrub line of the damaged image",
        || berth.log(),
        |log| log.contains("blobs/manifest affected") && log.contains(&layer),
    );
    let line = log
        .lines()
        .find(|line| line.contains("blobs/manifest affected"))
        .expect("found above");
    assert!(
        line.contains("component=\"scrub\"") || line.contains("component=scrub"),
        "{line}"
    );
    assert!(line.contains("online/app") && line.contains("v1"), "{line}");
    let metrics = scrape_metrics(&client, &berth.url);
    assert_eq!(metrics.value("berth_scrub_affected_blobs", &[]), Some(1.0));
    assert!(metrics.value("berth_scrub_runs_total", &[]).unwrap_or(0.0) >= 1.0);
    assert!(
        metrics
            .value("berth_scrub_blobs_verified_total", &[])
            .unwrap_or(0.0)
            >= 2.0
    );
    let bytes = metrics
        .value("berth_scrub_bytes_verified_total", &[])
        .unwrap_or(0.0);
    assert!(bytes >= 40_000.0, "{bytes}");
    assert_eq!(metrics.value("berth_scrub_progress_ratio", &[]), Some(1.0));
    let report = scrub_api(&berth);
    let image = &report["images"][0];
    assert_eq!(image["repository"], "online/app", "{report}");
    assert_eq!(image["status"], "affected", "{report}");
    assert_eq!(image["affectedBlob"], json!(layer), "{report}");
    let (_, discover) = get_json(&client, &format!("{}/v2/_oci/ext/discover", berth.url));
    assert_eq!(
        discover["extensions"][0]["endpoints"],
        json!(["/v2/_zot/ext/scrub"])
    );
}

#[test]
fn the_report_is_null_before_the_first_pass_and_discover_is_empty_without_scrub() {
    let berth = Berth::start();
    assert_eq!(scrub_api(&berth), serde_json::Value::Null);
    let (_, discover) = get_json(&http(), &format!("{}/v2/_oci/ext/discover", berth.url));
    assert_eq!(discover, json!({"extensions": []}));
}
