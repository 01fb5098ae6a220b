//! Sync with `onlySigned` against a real upstream (CNCF Distribution) holding three images:
//! one with a cosign signature by a key uploaded to berth, one unsigned, one signed by another
//! key. Pulling through berth (skopeo) brings the signed image with its signature, trusted in
//! search; the other two are refused with 404 MANIFEST_UNKNOWN and nothing of them is stored;
//! the status API and the metrics count the refusals. A periodic sync copies only the signed
//! image. A notation signature on such an upstream is found through the referrers tag schema.

use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::api::expect_error;
use berth_tests::trust::{
    self, admin, assert_verdicts, upload_key, Signer, Verdict, ADMIN, READER,
};
use berth_tests::{
    authed, fetch_blob, fetch_manifest, http, push_image, random_image, require_tool, run_cmd,
    run_ok, scrape_metrics, Berth, Client, Distribution, Image, HTPASSWD_SECRET,
};
use serde_json::{json, Value};

struct Upstream {
    registry: Distribution,
    signed: Image,
    unsigned: Image,
    wrong: Image,
    /// The PEM of the key that signed `signed` (`wrong` is signed by another).
    key_pem: String,
}

/// Distribution with `lib/signed:1` (cosign signature by the returned key), `lib/unsigned:1`
/// and `lib/wrong:1` (signed by a key berth never sees); signatures pushed with skopeo.
fn upstream() -> Upstream {
    let registry = Distribution::start();
    let client = http();
    let (signed, unsigned, wrong) = (
        random_image(1, 3000),
        random_image(1, 3000),
        random_image(1, 3000),
    );
    push_image(&client, &registry.url, "lib/signed", "1", &signed);
    push_image(&client, &registry.url, "lib/unsigned", "1", &unsigned);
    push_image(&client, &registry.url, "lib/wrong", "1", &wrong);
    let signer = Signer::new();
    let anonymous = |repo: &str, image: &Image, key: &str| {
        json!({
            "op": "cosign", "signers": [{"key": key}], "reference": format!("{}/{repo}", registry.addr),
            "subject": image.digest, "push": trust::target(&registry.addr, repo, None, "skopeo"),
        })
    };
    let made = signer.run(&[
        trust::key("good", "p256"),
        trust::key("other", "p256"),
        anonymous("lib/signed", &signed, "good"),
        anonymous("lib/wrong", &wrong, "other"),
    ]);
    Upstream {
        key_pem: made[0]["public_pem"].as_str().unwrap().to_string(),
        registry,
        signed,
        unsigned,
        wrong,
    }
}

/// berth with trust (cosign) and sync of `registry` (merged into the defaults) with
/// `onlySigned`, and the upstream's key uploaded.
fn mirror(upstream: &Upstream, registry: Value) -> Berth {
    let mut entry = json!({
        "urls": [upstream.registry.url], "onlySigned": true, "tlsVerify": false,
        "content": [{"prefix": "**"}],
    });
    berth_tests::merge_patch(&mut entry, &registry);
    let berth = trust::start(
        true,
        false,
        json!({"extensions": {"sync": {"registries": [entry]}}}),
    );
    let (status, body) = upload_key(&berth.url, &upstream.key_pem);
    assert_eq!(status, 200, "{body}");
    berth
}

fn sync_status(berth: &Berth) -> Value {
    let response = admin()
        .get(format!("{}/v2/_berth/ext/sync", berth.url))
        .send()
        .expect("GET sync status");
    assert_eq!(response.status().as_u16(), 200);
    serde_json::from_slice(&response.bytes().expect("body")).expect("status JSON")
}

fn catalog(client: &Client, berth: &Berth) -> Vec<String> {
    let response = client
        .get(format!("{}/v2/_catalog", berth.url))
        .send()
        .expect("GET catalog");
    let body: Value = serde_json::from_slice(&response.bytes().unwrap()).unwrap();
    let mut repos: Vec<String> =
        serde_json::from_value(body["repositories"].clone()).unwrap_or_default();
    repos.sort();
    repos
}

/// Nothing of `image` in `repo` on berth: no manifest by tag or digest, no blob.
#[track_caller]
fn assert_absent(client: &Client, berth: &Berth, repo: &str, image: &Image) {
    let (status, _, _) = fetch_manifest(client, &berth.url, repo, &image.digest);
    assert_eq!(status, 404, "{repo}@{}", image.digest);
    for digest in image.blob_digests() {
        let (status, _) = fetch_blob(client, &berth.url, repo, &digest);
        assert_eq!(status, 404, "{repo} blob {digest}");
    }
}

fn signature_tag(image: &Image) -> String {
    format!("sha256-{}.sig", image.digest.trim_start_matches("sha256:"))
}

#[test]
fn on_demand_sync_brings_signed_images_only() {
    if !trust::signer_available() || !require_tool("skopeo") {
        return;
    }
    let upstream = upstream();
    let berth = mirror(&upstream, json!({"onDemand": true}));
    let reader = authed(READER);

    // The signed image, pulled by skopeo through berth, byte for byte.
    let out = tempfile::tempdir().expect("tempdir");
    run_ok(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
            .args(["--src-creds", &format!("{READER}:{HTPASSWD_SECRET}")])
            .arg(format!("docker://{}/lib/signed:1", berth.addr))
            .arg(format!("oci:{}:1", out.path().display())),
    );
    let (status, _, manifest) = fetch_manifest(&reader, &berth.url, "lib/signed", "1");
    assert_eq!((status, &manifest), (200, &upstream.signed.manifest));
    // Its signature came along and is trusted.
    let (status, _, _) = fetch_manifest(
        &reader,
        &berth.url,
        "lib/signed",
        &signature_tag(&upstream.signed),
    );
    assert_eq!(status, 200, "the signature is stored with the image");
    assert_verdicts(
        &reader,
        &berth.url,
        "lib/signed",
        "1",
        &[Verdict::new("cosign", true, &upstream.key_pem)],
    );

    // Unsigned and wrongly signed: refused, nothing stored.
    let (ok, _, stderr) = run_cmd(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
            .args(["--src-creds", &format!("{READER}:{HTPASSWD_SECRET}")])
            .arg(format!("docker://{}/lib/unsigned:1", berth.addr))
            .arg(format!("oci:{}:2", out.path().display())),
    );
    assert!(!ok, "skopeo pulled an unsigned image");
    let wrong = reader
        .get(format!("{}/v2/lib/wrong/manifests/1", berth.url))
        .header("accept", trust::OCI_MANIFEST)
        .send()
        .expect("GET");
    // Counted: once per refused pull.
    let refused = |berth: &Berth| sync_status(berth)["registries"][0]["refusedUnsigned"].clone();
    assert_eq!(refused(&berth), json!(2), "{}", sync_status(&berth));
    assert_absent(&reader, &berth, "lib/unsigned", &upstream.unsigned);
    assert_absent(&reader, &berth, "lib/wrong", &upstream.wrong);
    assert_eq!(catalog(&reader, &berth), ["lib/signed"]);

    // Looking for them by digest asked again, and was refused again.
    let total = refused(&berth)
        .as_u64()
        .expect("refusedUnsigned is a count");
    assert!(total >= 2, "{}", sync_status(&berth));
    let metrics = scrape_metrics(&authed(ADMIN), &berth.url);
    assert_eq!(
        metrics.value(
            "berth_sync_unsigned_refused_total",
            &[("upstream", upstream.registry.addr.as_str())]
        ),
        Some(total as f64),
        "berth_sync_unsigned_refused_total agrees with the status API"
    );
    // The refusals' answers: as for what upstream does not have; nothing of these
    // repositories is stored, so the repository is unknown (berth's API decision).
    expect_error(wrong, 404, "NAME_UNKNOWN");
    assert!(stderr.contains("name unknown"), "{stderr}");
}

#[test]
fn periodic_sync_copies_signed_images_only() {
    if !trust::signer_available() {
        return;
    }
    let upstream = upstream();
    let berth = mirror(&upstream, json!({"pollInterval": "1s"}));
    let reader = authed(READER);
    // The key may arrive after the first pass: a later one copies the signed image.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, manifest) = fetch_manifest(&reader, &berth.url, "lib/signed", "1");
        if status == 200 {
            assert_eq!(manifest, upstream.signed.manifest);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lib/signed:1 not copied within 30 s: {}",
            sync_status(&berth)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Wait for a pass that refused both others, then check nothing of them is stored.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = sync_status(&berth);
        if status["registries"][0]["refusedUnsigned"]
            .as_u64()
            .is_some_and(|n| n >= 2)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no refusals counted within 30 s: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The image is readable before the same pass copies and judges its signature: wait for
    // the verdict (the pass may still be running when both refusals are counted).
    let deadline = Instant::now() + Duration::from_secs(30);
    while trust::verdicts(&reader, &berth.url, "lib/signed", "1")
        .1
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "no verdict for lib/signed:1 within 30 s: {}",
            sync_status(&berth)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(catalog(&reader, &berth), ["lib/signed"]);
    assert_absent(&reader, &berth, "lib/unsigned", &upstream.unsigned);
    assert_absent(&reader, &berth, "lib/wrong", &upstream.wrong);
    assert_verdicts(
        &reader,
        &berth.url,
        "lib/signed",
        "1",
        &[Verdict::new("cosign", true, &upstream.key_pem)],
    );
    let metrics = scrape_metrics(&authed(ADMIN), &berth.url);
    assert!(
        metrics.sum("berth_sync_unsigned_refused_total", &[]) >= 2.0,
        "berth_sync_unsigned_refused_total"
    );
}

/// A notation signature on an upstream without the referrers API (Distribution 2.x): found
/// through the referrers tag schema's index (`sha256-<hex>`, as oras pushes it there), judged
/// against the uploaded root, and the image is mirrored with it.
#[test]
fn on_demand_sync_finds_notation_signatures_through_the_referrers_tag_schema() {
    if !trust::signer_available() || !require_tool("docker-registry") {
        return;
    }
    let registry = Distribution::start();
    let client = http();
    let image = random_image(1, 2000);
    push_image(&client, &registry.url, "lib/notarized", "1", &image);
    let signer = Signer::new();
    let (mut ops, chain) = trust::chain("n", "p256");
    let chain: Vec<&str> = chain.iter().map(String::as_str).collect();
    let mut notation = trust::notation(&registry.addr, "lib/notarized", &image, &chain, json!({}));
    notation["push"] = trust::target(&registry.addr, "lib/notarized", None, "oras");
    ops.push(notation);
    let made = signer.run(&ops);
    let signature = &made[3];
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": trust::OCI_MANIFEST,
            "digest": signature["digest"], "size": signature["size"],
            "artifactType": "application/vnd.cncf.notary.signature",
        }],
    }))
    .unwrap();
    let fallback = format!("sha256-{}", image.digest.trim_start_matches("sha256:"));
    let put = client
        .put(format!(
            "{}/v2/lib/notarized/manifests/{fallback}",
            registry.url
        ))
        .header("content-type", "application/vnd.oci.image.index.v1+json")
        .body(index)
        .send()
        .expect("PUT the referrers tag");
    assert_eq!(put.status().as_u16(), 201);

    let entry = json!({
        "urls": [registry.url], "onlySigned": true, "tlsVerify": false, "onDemand": true,
        "content": [{"prefix": "**"}],
    });
    let berth = trust::start(
        false,
        true,
        json!({"extensions": {"sync": {"registries": [entry]}}}),
    );
    let (status, body) =
        trust::upload_certs(&berth.url, Some("ca"), made[0]["pem"].as_str().unwrap());
    assert_eq!(status, 200, "{body}");
    let reader = authed(READER);
    let (status, _, manifest) = fetch_manifest(&reader, &berth.url, "lib/notarized", "1");
    assert_eq!(
        (status, &manifest),
        (200, &image.manifest),
        "admitted by its notation signature"
    );
    assert_verdicts(
        &reader,
        &berth.url,
        "lib/notarized",
        "1",
        &[Verdict::new("notation", true, "CN=n signer,O=Example,C=US")],
    );
}
