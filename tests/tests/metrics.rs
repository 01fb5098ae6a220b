//! `/metrics` against the real daemon: every family of the contract with its type, counts
//! that match known traffic exactly (requests by method and code, zot's upload and download
//! counters, bytes per repository, storage per repository, blob store and dedupe figures),
//! promtool on the real output, and a real Prometheus scraping berth on loopback.

use std::time::Duration;

use berth_tests::{
    fetch_blob, fetch_manifest, http, metric_families, promtool_check_metrics, push_blob,
    push_image, random_bytes, random_image, require_prometheus, try_push_manifest, Berth, Client,
    Exposition, Image, Prometheus, ScrapeJob,
};
use serde_json::json;

fn scrape(client: &Client, berth: &Berth, path: &str) -> (String, Exposition) {
    let response = client
        .get(format!("{}{path}", berth.url))
        .send()
        .expect("GET metrics");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().expect("metrics body");
    let exposition = Exposition::parse(&text);
    (text, exposition)
}

fn image_bytes(image: &Image) -> u64 {
    let blobs: usize = image.layers.iter().map(Vec::len).sum::<usize>() + image.config.len();
    (blobs + image.manifest.len()) as u64
}

fn get_status(client: &Client, url: String) -> u16 {
    client.get(url).send().expect("GET").status().as_u16()
}

#[test]
fn every_family_is_exported_with_its_type_and_promtool_accepts_the_output() {
    for namespace in ["zot", "berth"] {
        let metrics = json!({"prometheus": {"namespace": namespace}});
        let berth = Berth::start_with(json!({"extensions": {"metrics": metrics}}));
        let client = http();
        push_image(&client, &berth.url, "lint/app", "v1", &random_image(1, 512));
        let (text, exposition) = scrape(&client, &berth, "/metrics");
        let expected = metric_families(namespace);
        for (family, kind) in &expected {
            assert_eq!(
                exposition.types.get(family).map(String::as_str),
                Some(*kind),
                "{family} under namespace {namespace}"
            );
        }
        let unexpected: Vec<_> = exposition
            .types
            .keys()
            .filter(|family| !expected.contains_key(*family))
            .collect();
        assert!(
            unexpected.is_empty(),
            "families outside the contract: {unexpected:?}"
        );
        let info = format!("{namespace}_info");
        assert_eq!(
            exposition.value(&info, &[("version", env!("CARGO_PKG_VERSION"))]),
            Some(1.0)
        );
        if !require_prometheus() {
            continue;
        }
        match (namespace, promtool_check_metrics(&text)) {
            ("berth", result) => result.unwrap_or_else(|problems| {
                panic!("promtool check metrics (berth namespace):\n{problems}")
            }),
            // zot's own label names are camelCase, which promtool's naming lint reports (as it
            // does for zot itself); nothing else may be reported.
            (_, Ok(())) => panic!("promtool accepted zot's camelCase labels: is the lint gone?"),
            (_, Err(problems)) => {
                // The harness heads its report with the exit status and stream markers.
                let reported = problems.lines().filter(|line| {
                    !line.trim().is_empty() && !line.starts_with('`') && !line.starts_with("---")
                });
                let mut count = 0;
                for line in reported {
                    count += 1;
                    let zot_family = line.starts_with("zot_info ")
                        || line.starts_with("zot_storage_lock_latency_seconds ");
                    assert!(
                        zot_family
                            && line.contains("label names should be written in 'snake_case'"),
                        "promtool problem beyond zot's label names: {line}\n{problems}"
                    );
                }
                assert!(count > 0, "no problem line in {problems}");
            }
        }
    }
}

#[test]
fn counts_match_known_traffic() {
    let berth = Berth::start_with(json!({"extensions": {"metrics": {}}}));
    let client = http();
    let url = &berth.url;
    let app = random_image(2, 4096);
    push_image(&client, url, "team/app", "v1", &app);
    // A second repository holding one of app's layers again: stored once.
    let shared_layer = app.layers[0].clone();
    push_blob(&client, url, "team/other", &shared_layer);
    let (_, before) = scrape(&client, &berth, "/metrics");

    for _ in 0..7 {
        let (status, _, _) = fetch_manifest(&client, url, "team/app", "v1");
        assert_eq!(status, 200);
    }
    for _ in 0..3 {
        let head = client
            .head(format!("{url}/v2/team/app/manifests/v1"))
            .send();
        assert_eq!(head.expect("HEAD").status().as_u16(), 200);
    }
    let mut error_bytes = 0;
    for _ in 0..2 {
        let missing = client
            .get(format!("{url}/v2/team/app/manifests/nope"))
            .send();
        let missing = missing.expect("GET missing manifest");
        assert_eq!(missing.status().as_u16(), 404);
        error_bytes += missing.bytes().expect("error body").len();
    }
    for i in 0..4 {
        let made_up = format!("{url}/v2/ghost{i}/x/manifests/latest");
        assert_eq!(get_status(&client, made_up), 404);
    }
    let layer_digest = &app.blob_digests()[1];
    let (status, body) = fetch_blob(&client, url, "team/app", layer_digest);
    assert_eq!((status, body.len()), (200, app.layers[0].len()));
    let (_, after) = scrape(&client, &berth, "/metrics");
    // Scrapes are not counted: a second one sees the same request counts.
    let (_, again) = scrape(&client, &berth, "/metrics");

    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels).unwrap_or(0.0) - before.value(name, labels).unwrap_or(0.0)
    };
    let requests = "zot_http_requests_total";
    assert_eq!(delta(requests, &[("method", "GET"), ("code", "200")]), 8.0);
    assert_eq!(delta(requests, &[("method", "HEAD"), ("code", "200")]), 3.0);
    assert_eq!(delta(requests, &[("method", "GET"), ("code", "404")]), 6.0);
    assert_eq!(after.sum(requests, &[]), again.sum(requests, &[]));
    // The push: 3 blob POST+PUT pairs and one manifest PUT in team/app, one pair in team/other.
    assert_eq!(
        before.value(requests, &[("method", "POST"), ("code", "202")]),
        Some(4.0)
    );
    assert_eq!(
        before.value(requests, &[("method", "PUT"), ("code", "201")]),
        Some(5.0)
    );

    // zot's counters: downloads are manifest GETs (not HEADs), uploads manifest PUTs.
    let app_repo = [("repo", "team/app")];
    assert_eq!(
        after.value("zot_repo_downloads_total", &app_repo),
        Some(7.0)
    );
    assert_eq!(after.value("zot_repo_uploads_total", &app_repo), Some(1.0));
    assert_eq!(
        after.value("zot_repo_uploads_total", &[("repo", "team/other")]),
        None
    );
    let latency_count = "zot_http_repo_latency_seconds_count";
    assert_eq!(delta(latency_count, &app_repo), 13.0);
    // Made-up repositories are not labels: their requests count under N/A.
    assert_eq!(delta(latency_count, &[("repo", "N/A")]), 4.0);
    assert!(after
        .matching(latency_count, &[])
        .all(|s| !s.labels["repo"].starts_with("ghost")));
    let get_latency = [("method", "GET")];
    assert_eq!(
        delta("zot_http_method_latency_seconds_count", &get_latency),
        14.0
    );

    // Bytes per repository: request bodies in, response bodies out, exactly.
    let pushed = image_bytes(&app);
    assert_eq!(
        after.value("berth_repo_received_bytes_total", &app_repo),
        Some(pushed as f64)
    );
    let sent = 7 * app.manifest.len() + app.layers[0].len() + error_bytes;
    assert_eq!(delta("berth_repo_sent_bytes_total", &app_repo), sent as f64);
    assert!(
        after
            .value("berth_http_sent_bytes_total", &[])
            .unwrap_or(0.0)
            >= sent as f64
    );

    // Storage: per repository, the blob store, and what storing blobs once saves.
    assert_eq!(
        after.value("zot_repo_storage_bytes", &app_repo),
        Some(pushed as f64)
    );
    let other = [("repo", "team/other")];
    assert_eq!(
        after.value("zot_repo_storage_bytes", &other),
        Some(shared_layer.len() as f64)
    );
    let blobs = app.layers.len() + 1;
    assert_eq!(
        after.value("berth_blob_store_blobs", &[]),
        Some(blobs as f64)
    );
    let blob_bytes = pushed - app.manifest.len() as u64;
    assert_eq!(
        after.value("berth_blob_store_bytes", &[]),
        Some(blob_bytes as f64)
    );
    assert_eq!(
        after.value("berth_dedupe_saved_bytes", &[]),
        Some(shared_layer.len() as f64)
    );

    // Durable commits were timed (storage.commit is on by default).
    for target in ["file", "directory", "wal"] {
        let count = after.value("berth_fsync_duration_seconds_count", &[("target", target)]);
        assert!(count.unwrap_or(0.0) >= 1.0, "no fsync of {target} recorded");
    }
    // Manifest PUTs waited on their repository's lock (possibly for no time at all).
    let lock = after.value(
        "zot_storage_lock_latency_seconds_count",
        &[("lockType", "RWLock")],
    );
    assert!(lock.unwrap_or(0.0) >= 1.0);
    // Every submitted io_uring operation has completed once the daemon is idle.
    let submitted = after.sum("berth_io_uring_submitted_total", &[]);
    assert_eq!(submitted, after.sum("berth_io_uring_completed_total", &[]));
    assert!(
        submitted > 0.0,
        "blob writes and reads went through io_uring"
    );
    assert_eq!(after.value("berth_http_requests_in_flight", &[]), Some(1.0));
}

#[test]
fn gauges_follow_sessions_and_deletes() {
    let berth = Berth::start_with(json!({"extensions": {"metrics": {}}}));
    let client = http();
    let url = &berth.url;
    let open = |client: &Client| {
        let (_, exposition) = scrape(client, &berth, "/metrics");
        exposition
            .value("berth_upload_sessions_open", &[])
            .expect("gauge")
    };
    assert_eq!(open(&client), 0.0);
    let session = client
        .post(format!("{url}/v2/gauges/blobs/uploads/"))
        .send()
        .expect("POST");
    assert_eq!(session.status().as_u16(), 202);
    let location = session.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(open(&client), 1.0);
    let cancel = client
        .delete(format!("{url}{location}"))
        .send()
        .expect("DELETE");
    assert_eq!(cancel.status().as_u16(), 204);
    assert_eq!(open(&client), 0.0);

    // Deleting the only manifest shrinks the repository to its blobs.
    let image = random_image(1, 2048);
    push_image(&client, url, "gauges", "v1", &image);
    let (_, pushed) = scrape(&client, &berth, "/metrics");
    let repo = [("repo", "gauges")];
    assert_eq!(
        pushed.value("zot_repo_storage_bytes", &repo),
        Some(image_bytes(&image) as f64)
    );
    let deleted = client
        .delete(format!("{url}/v2/gauges/manifests/{}", image.digest))
        .send()
        .expect("DELETE manifest");
    assert_eq!(deleted.status().as_u16(), 202);
    let (_, after) = scrape(&client, &berth, "/metrics");
    let blobs_only = image_bytes(&image) - image.manifest.len() as u64;
    assert_eq!(
        after.value("zot_repo_storage_bytes", &repo),
        Some(blobs_only as f64)
    );
    // A refused manifest (unknown blob) changes no storage figure.
    let refused = try_push_manifest(&client, url, "gauges", "bad", &random_bytes(64));
    assert!(refused.is_err());
    let (_, unchanged) = scrape(&client, &berth, "/metrics");
    for name in [
        "zot_repo_storage_bytes",
        "berth_blob_store_bytes",
        "berth_blob_store_blobs",
    ] {
        assert_eq!(unchanged.sum(name, &[]), after.sum(name, &[]), "{name}");
    }
    assert_eq!(unchanged.value("zot_repo_uploads_total", &repo), Some(1.0));
}

#[test]
fn figures_survive_a_restart_and_the_path_is_configurable() {
    let metrics = json!({"prometheus": {"path": "/internal/metrics"}});
    let mut berth = Berth::start_with(json!({"extensions": {"metrics": metrics}}));
    let client = http();
    assert_eq!(get_status(&client, format!("{}/metrics", berth.url)), 404);
    let image = random_image(2, 1000);
    push_image(&client, &berth.url, "restart/app", "v1", &image);
    berth.restart();
    // Storage figures come from the index, not from counters: a restart keeps them.
    let (_, exposition) = scrape(&client, &berth, "/internal/metrics");
    let repo = [("repo", "restart/app")];
    assert_eq!(
        exposition.value("zot_repo_storage_bytes", &repo),
        Some(image_bytes(&image) as f64)
    );
    assert_eq!(exposition.value("berth_blob_store_blobs", &[]), Some(3.0));
    // Request counters start again from zero.
    assert_eq!(exposition.value("zot_repo_uploads_total", &repo), None);
}

#[test]
fn disabled_metrics_are_not_served() {
    let berth = Berth::start_with(json!({"extensions": {"metrics": {"enable": false}}}));
    assert_eq!(get_status(&http(), format!("{}/metrics", berth.url)), 404);
    let berth = Berth::start();
    assert_eq!(get_status(&http(), format!("{}/metrics", berth.url)), 404);
}

#[test]
fn prometheus_scrapes_berth_and_sees_the_traffic() {
    if !require_prometheus() {
        return;
    }
    let berth = Berth::start_with(json!({"extensions": {"metrics": {}}}));
    let client = http();
    let image = random_image(1, 2048);
    push_image(&client, &berth.url, "prom/app", "v1", &image);
    for _ in 0..5 {
        let (status, _, _) = fetch_manifest(&client, &berth.url, "prom/app", "v1");
        assert_eq!(status, 200);
    }
    assert_eq!(
        get_status(&client, format!("{}/v2/prom/app/manifests/v9", berth.url)),
        404
    );
    let prometheus = Prometheus::start(&[ScrapeJob::new("berth", &berth.addr, "/metrics")]);
    prometheus.wait_for_up("berth", Duration::from_secs(30));
    let expect = |query: &str, value: f64| {
        let samples = prometheus.query_until(query, Duration::from_secs(20), |samples| {
            samples.len() == 1 && samples[0].value == value
        });
        assert_eq!(
            samples[0].labels.get("job").map(String::as_str),
            Some("berth"),
            "{query}"
        );
    };
    // Known traffic, as Prometheus stored it: 5 manifest GETs answered 200, one 404, the
    // push's 2 blob POSTs (202) and 3 PUTs (201); Prometheus's own scrapes are not counted.
    expect(r#"zot_http_requests_total{method="GET",code="200"}"#, 5.0);
    expect(r#"zot_http_requests_total{method="GET",code="404"}"#, 1.0);
    expect(r#"zot_http_requests_total{method="POST",code="202"}"#, 2.0);
    expect(r#"zot_http_requests_total{method="PUT",code="201"}"#, 3.0);
    expect(r#"zot_repo_downloads_total{repo="prom/app"}"#, 5.0);
    expect(r#"zot_repo_uploads_total{repo="prom/app"}"#, 1.0);
    let stored = image_bytes(&image) as f64;
    expect(r#"zot_repo_storage_bytes{repo="prom/app"}"#, stored);
    // PromQL over berth's histograms works: every GET finished under 50 ms's bucket or not,
    // but the +Inf bucket holds them all.
    expect(
        r#"zot_http_method_latency_seconds_bucket{method="GET",le="+Inf"}"#,
        6.0,
    );
    let up = prometheus.query(r#"up{job="berth"}"#);
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].value, 1.0);
}
