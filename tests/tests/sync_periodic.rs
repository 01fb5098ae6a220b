//! Periodic sync against a real upstream (CNCF Distribution): every `pollInterval` berth
//! copies what `content` admits (prefix, destination with stripPrefix, regex and semver tag
//! filters), complete and byte-exact, skips what it has, picks up new tags, and reports its
//! passes in the status API; nothing else is copied and fsck is clean.

use berth_tests::api::get_json;
use berth_tests::{
    fetch_blob, fetch_manifest, http, push_image, random_image, sha256_digest, wait_for, Berth,
    Distribution,
};
use serde_json::json;

/// The repository's tags, none while it does not exist yet.
fn tags(client: &berth_tests::Client, berth: &Berth, repo: &str) -> Vec<String> {
    let response = client
        .get(format!("{}/v2/{repo}/tags/list", berth.url))
        .send()
        .expect("GET tags");
    let body: serde_json::Value = match response.status().as_u16() {
        200 => serde_json::from_slice(&response.bytes().expect("tags body")).expect("tags json"),
        404 => return Vec::new(),
        other => panic!("tags list answered {other}"),
    };
    let mut tags: Vec<String> = serde_json::from_value(body["tags"].clone()).unwrap_or_default();
    tags.sort();
    tags
}

#[test]
fn periodic_sync_copies_what_content_admits_and_keeps_up() {
    let upstream = Distribution::start();
    let client = http();
    let images: Vec<_> = ["v1.0.0", "v1.1.0", "latest", "vnext"]
        .iter()
        .map(|tag| {
            let image = random_image(1, 20_000);
            push_image(&client, &upstream.url, "team/app", tag, &image);
            (tag.to_string(), image)
        })
        .collect();
    let other = random_image(1, 1000);
    push_image(&client, &upstream.url, "elsewhere/thing", "1.0.0", &other);
    let mut berth = Berth::start_with(
        json!({"extensions": {"metrics": {}, "sync": {"registries": [{
            "urls": [upstream.url],
            "tlsVerify": false,
            "pollInterval": "1s",
            "content": [{
                "prefix": "team/**",
                "destination": "/mirror",
                "stripPrefix": true,
                "tags": {"regex": "^v", "semver": true},
            }],
        }]}}}),
    );
    let copied = wait_for(
        "the admitted tags",
        || tags(&client, &berth, "mirror/app").join(","),
        |listed| listed == "v1.0.0,v1.1.0",
    );
    assert_eq!(
        copied, "v1.0.0,v1.1.0",
        "latest (regex) and vnext (semver) stay out"
    );
    for (tag, image) in images.iter().filter(|(tag, _)| tag.starts_with("v1")) {
        let (status, _, manifest) = fetch_manifest(&client, &berth.url, "mirror/app", tag);
        assert_eq!((status, &manifest), (200, &image.manifest), "{tag}");
        for digest in image.blob_digests() {
            let (status, body) = fetch_blob(&client, &berth.url, "mirror/app", &digest);
            assert_eq!((status, sha256_digest(&body)), (200, digest));
        }
    }
    let (_, catalog) = get_json(&client, &format!("{}/v2/_catalog", berth.url));
    assert_eq!(
        catalog["repositories"],
        json!(["mirror/app"]),
        "only what content admits"
    );
    // A new admitted tag upstream arrives with a later pass; the old ones are skipped.
    let newer = random_image(1, 1000);
    push_image(&client, &upstream.url, "team/app", "v1.2.0", &newer);
    wait_for(
        "the new tag",
        || tags(&client, &berth, "mirror/app").join(","),
        |listed| listed == "v1.0.0,v1.1.0,v1.2.0",
    );
    let status = wait_for(
        "a pass that skipped what it had",
        || {
            let (_, status) = get_json(&client, &format!("{}/v2/_berth/ext/sync", berth.url));
            status.to_string()
        },
        |text| {
            let status: serde_json::Value = serde_json::from_str(text).expect("json");
            let periodic = &status["registries"][0]["periodic"];
            periodic["imagesCopied"] == json!(3) && periodic["lastRun"]["skipped"] == json!(3)
        },
    );
    let status: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(
        status["registries"][0]["periodic"]["imagesFailed"],
        json!(0),
        "{status}"
    );
    let metrics = berth_tests::scrape_metrics(&client, &berth.url);
    let copied = [("upstream", upstream.addr.as_str()), ("result", "copied")];
    assert_eq!(metrics.value("berth_sync_images_total", &copied), Some(3.0));
    let upstream_label = [("upstream", upstream.addr.as_str())];
    let last = metrics.value("berth_sync_last_success_timestamp_seconds", &upstream_label);
    assert!(last.is_some_and(|at| at > 1.7e9), "{last:?}");
    berth.stop();
    let (clean, report) = berth.fsck();
    assert!(clean, "{report}");
    assert!(
        !report.contains("mirrored"),
        "periodic copies are complete: {report}"
    );
}
