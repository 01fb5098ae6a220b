//! On-demand sync (pull-through) against a real upstream, CNCF Distribution on loopback:
//! skopeo pulls through berth byte-exact; the manifest and blobs are then stored (served with
//! the upstream gone); concurrent cold pulls of one blob make one upstream request; a tag
//! that moved upstream is picked up after `manifestCheckInterval`; misses stay misses; fsck
//! is clean after.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_tests::api::{expect_error, get_json};
use berth_tests::containers::{Containers, Store};
use berth_tests::{
    fetch_blob, fetch_manifest, http, push_image, random_image, require_tool, run_ok,
    sha256_digest, wait_for, Berth, Distribution,
};
use serde_json::json;

fn mirror_of(upstream: &Distribution, patch: serde_json::Value) -> Berth {
    let mut registry = json!({"urls": [upstream.url], "onDemand": true, "tlsVerify": false});
    berth_tests::merge_patch(&mut registry, &patch);
    Berth::start_with(json!({
        "extensions": {"sync": {"registries": [registry]}, "metrics": {}},
    }))
}

/// Upstream requests for `path` (Distribution logs one line per request, with the URI).
fn upstream_requests(upstream: &Distribution, method: &str, path: &str) -> usize {
    upstream
        .log()
        .lines()
        .filter(|line| line.contains(&format!("http.request.method={method}")))
        // logrus quotes a value only when it has to (a digest's ':' makes it).
        .filter(|line| {
            line.contains(&format!("http.request.uri=\"{path}\""))
                || line.contains(&format!("http.request.uri={path} "))
        })
        .count()
}

fn blob_in_oci_dir(dir: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256");
    std::fs::read(dir.join("blobs/sha256").join(hex)).expect("blob in OCI layout")
}

#[test]
fn skopeo_pulls_through_berth_and_the_copy_outlives_the_upstream() {
    if !require_tool("skopeo") {
        return;
    }
    let upstream = Distribution::start();
    let client = http();
    let image = random_image(2, 300_000);
    push_image(&client, &upstream.url, "library/app", "1.0", &image);
    let mut berth = mirror_of(&upstream, json!({}));
    let out = tempfile::tempdir().expect("tempdir");
    let dest = out.path().join("app");
    run_ok(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
            .arg(format!("docker://{}/library/app:1.0", berth.addr))
            .arg(format!("oci:{}:1.0", dest.display())),
    );
    for (digest, bytes) in image
        .blob_digests()
        .iter()
        .zip(std::iter::once(&image.config).chain(&image.layers))
    {
        assert_eq!(&blob_in_oci_dir(&dest, digest), bytes, "blob {digest}");
    }
    let (status, _, manifest) = fetch_manifest(&client, &berth.url, "library/app", "1.0");
    assert_eq!((status, manifest), (200, image.manifest.clone()));
    // Everything is stored now: with the upstream gone berth still serves it all.
    drop(upstream);
    for digest in image.blob_digests() {
        let (status, body) = fetch_blob(&client, &berth.url, "library/app", &digest);
        assert_eq!(status, 200);
        assert_eq!(sha256_digest(&body), digest);
    }
    let (status, _, _) = fetch_manifest(&client, &berth.url, "library/app", &image.digest);
    assert_eq!(status, 200);
    // A miss with the upstream down is a miss, not an error page.
    let missing = client
        .get(format!("{}/v2/library/app/manifests/2.0", berth.url))
        .send()
        .expect("GET");
    expect_error(missing, 404, "MANIFEST_UNKNOWN");
    berth.stop();
    let (clean, report) = berth.fsck();
    assert!(clean, "{report}");
}

#[test]
fn fifty_concurrent_cold_pulls_make_one_upstream_request_each() {
    let upstream = Distribution::start();
    let client = http();
    let image = random_image(1, 4 << 20);
    push_image(&client, &upstream.url, "library/big", "v1", &image);
    let berth = mirror_of(&upstream, json!({}));
    let layer = sha256_digest(&image.layers[0]);
    // Fifty clients pull the same cold image at once: manifest, then its layer.
    let pulls: Vec<_> = (0..50)
        .map(|_| {
            let (url, layer) = (berth.url.clone(), layer.clone());
            std::thread::spawn(move || {
                let client = http();
                let (status, _, manifest) = fetch_manifest(&client, &url, "library/big", "v1");
                (
                    status,
                    manifest,
                    fetch_blob(&client, &url, "library/big", &layer),
                )
            })
        })
        .collect();
    for pull in pulls {
        let (status, manifest, (blob_status, body)) = pull.join().expect("puller");
        assert_eq!((status, &manifest), (200, &image.manifest));
        assert_eq!(blob_status, 200);
        assert_eq!(
            sha256_digest(&body),
            layer,
            "every client gets the right bytes"
        );
    }
    let path = format!("/v2/library/big/blobs/{layer}");
    assert_eq!(
        upstream_requests(&upstream, "GET", &path),
        1,
        "one upstream GET for fifty cold pulls:\n{}",
        upstream.log()
    );
    assert_eq!(
        upstream_requests(&upstream, "GET", "/v2/library/big/manifests/v1"),
        1,
        "one upstream manifest GET for fifty cold pulls:\n{}",
        upstream.log()
    );
    // The upstream's families count what went to it: the manifest and the config and layer
    // fetched once each, all 200, and at least the layer's bytes.
    let metrics = berth_tests::scrape_metrics(&client, &berth.url);
    let label = [("upstream", upstream.addr.as_str()), ("code", "200")];
    assert_eq!(
        metrics.value("berth_sync_upstream_requests_total", &label),
        Some(2.0)
    );
    let bytes = metrics
        .value(
            "berth_sync_upstream_bytes_total",
            &[("upstream", upstream.addr.as_str())],
        )
        .expect("bytes series");
    assert!(bytes >= image.layers[0].len() as f64, "{bytes}");
    // The status API says the same, and discover lists it.
    let (_, status) = get_json(&client, &format!("{}/v2/_berth/ext/sync", berth.url));
    let registry = &status["registries"][0];
    assert_eq!(registry["urls"], json!([upstream.url]));
    assert_eq!(
        (&registry["manifestsSynced"], &registry["blobsSynced"]),
        (&json!(1), &json!(1)),
        "{status}"
    );
    assert_eq!(registry["requests"]["200"], json!(2), "{status}");
    assert!(registry["lastError"].is_null(), "{status}");
    assert!(registry["lastSuccessUnixMs"].as_u64().is_some(), "{status}");
    let (_, discover) = get_json(&client, &format!("{}/v2/_oci/ext/discover", berth.url));
    assert_eq!(
        discover["extensions"][0]["endpoints"],
        json!(["/v2/_berth/ext/sync"]),
        "{discover}"
    );
    // A blob no stored manifest references is never fetched, even if upstream has it.
    let stray = berth_tests::push_blob(&client, &upstream.url, "library/big", b"stray blob");
    let (status, _) = fetch_blob(&client, &berth.url, "library/big", &stray);
    assert_eq!(status, 404);
    assert_eq!(
        upstream_requests(&upstream, "GET", &format!("/v2/library/big/blobs/{stray}")),
        0
    );
}

#[test]
fn a_tag_moved_upstream_is_picked_up_after_the_check_interval() {
    let upstream = Distribution::start();
    let client = http();
    let first = random_image(1, 1000);
    push_image(&client, &upstream.url, "library/moving", "latest", &first);
    let berth = mirror_of(&upstream, json!({"manifestCheckInterval": "1s"}));
    let (_, _, served) = fetch_manifest(&client, &berth.url, "library/moving", "latest");
    assert_eq!(served, first.manifest);
    let second = random_image(1, 1000);
    push_image(&client, &upstream.url, "library/moving", "latest", &second);
    std::thread::sleep(Duration::from_millis(1200));
    // The next hit is served from the store and starts a background check; a later one sees
    // the new manifest.
    let seen = wait_for(
        "the moved tag",
        || {
            let (_, _, body) = fetch_manifest(&client, &berth.url, "library/moving", "latest");
            String::from_utf8_lossy(&body).into_owned()
        },
        |body| body.as_bytes() == second.manifest.as_slice(),
    );
    assert_eq!(seen.as_bytes(), second.manifest.as_slice());
    // Within the interval, hits do not touch upstream.
    let before = upstream_requests(&upstream, "HEAD", "/v2/library/moving/manifests/latest")
        + upstream_requests(&upstream, "GET", "/v2/library/moving/manifests/latest");
    for _ in 0..5 {
        fetch_manifest(&client, &berth.url, "library/moving", "latest");
    }
    let after = upstream_requests(&upstream, "HEAD", "/v2/library/moving/manifests/latest")
        + upstream_requests(&upstream, "GET", "/v2/library/moving/manifests/latest");
    assert!(
        after <= before + 1,
        "cache hits within the interval: {before} -> {after}"
    );
}

/// `/referrers` never waits on upstream: the first answer is what is stored, and the
/// upstream's referrers (here a second berth, which serves the referrers API) arrive in the
/// background and list under their subject, their blobs fetched on demand.
#[test]
fn referrers_come_along_in_the_background() {
    let upstream = Berth::start();
    let client = http();
    let subject = random_image(1, 1000);
    push_image(&client, &upstream.url, "signed/app", "v1", &subject);
    let empty = b"{}".to_vec();
    let signature = b"a signature".to_vec();
    for blob in [&empty, &signature] {
        berth_tests::push_blob(&client, &upstream.url, "signed/app", blob);
    }
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": sha256_digest(&empty), "size": empty.len()},
        "layers": [{"mediaType": "application/vnd.example.signature",
                    "digest": sha256_digest(&signature), "size": signature.len()}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": subject.digest, "size": subject.manifest.len()},
    }))
    .expect("json");
    let referrer_digest = sha256_digest(&referrer);
    berth_tests::api::put_manifest(
        &client,
        &upstream.url,
        "signed/app",
        &referrer_digest,
        "application/vnd.oci.image.manifest.v1+json",
        &referrer,
    );
    let mirror = Berth::start_with(json!({"extensions": {"sync": {"registries": [
        {"urls": [upstream.url], "onDemand": true, "manifestCheckInterval": "1s"}]}}}));
    let (status, _, _) = fetch_manifest(&client, &mirror.url, "signed/app", "v1");
    assert_eq!(status, 200);
    let url = format!("{}/v2/signed/app/referrers/{}", mirror.url, subject.digest);
    let listed = wait_for(
        "the upstream's referrer",
        || client.get(&url).send().expect("GET").text().expect("body"),
        |body| body.contains(&referrer_digest),
    );
    assert!(
        listed.contains("application/vnd.example.signature"),
        "{listed}"
    );
    let (status, _, body) = fetch_manifest(&client, &mirror.url, "signed/app", &referrer_digest);
    assert_eq!((status, body), (200, referrer));
    let (status, body) = fetch_blob(
        &client,
        &mirror.url,
        "signed/app",
        &sha256_digest(&signature),
    );
    assert_eq!((status, body), (200, signature));
}

/// podman pulls through berth into its own storage (vfs), as a node behind a mirror would.
#[test]
fn podman_pulls_through_berth() {
    if !require_tool("podman") {
        return;
    }
    let upstream = Distribution::start();
    let client = http();
    let image = random_image(2, 50_000);
    push_image(&client, &upstream.url, "library/podman", "1.0", &image);
    let berth = mirror_of(&upstream, json!({}));
    let containers = Containers::new(&berth.addr);
    let podman = || containers.cmd("podman", Store::Pull);
    let reference = format!("{}/library/podman:1.0", berth.addr);
    run_ok(podman().args(["pull", "-q", &reference]));
    let inspected =
        run_ok(podman().args(["image", "inspect", "--format", "{{.Digest}}", &reference]));
    assert_eq!(
        inspected.trim(),
        image.digest,
        "podman keeps the upstream's manifest digest"
    );
    for digest in image.blob_digests() {
        let head = client
            .head(format!("{}/v2/library/podman/blobs/{digest}", berth.url))
            .send()
            .expect("HEAD");
        assert_eq!(head.status().as_u16(), 200, "{digest} is stored in berth");
    }
}
