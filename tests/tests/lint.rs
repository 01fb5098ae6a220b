//! The lint extension against the real daemon: with `mandatoryAnnotations`, an image manifest
//! lacking a key in both its annotations and its config's labels is refused with 400
//! MANIFEST_INVALID naming the missing keys and nothing changes; a key in either place passes;
//! indexes and artifacts are not linted; SIGHUP changes the rule; skopeo sees the same.

use std::process::Command;

use berth_tests::api::{code_of, send_manifest};
use berth_tests::{
    assert_no_state_change, http, push_blob, random_image, require_tool, run_cmd, sha256_digest,
    write_oci_layout, Berth, Client, Image,
};
use serde_json::{json, Value};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SOURCE: &str = "org.opencontainers.image.source";
const TEAM: &str = "com.example.team";

fn linting(keys: &[&str]) -> Berth {
    Berth::start_with(json!({
        "extensions": {"lint": {"enable": true, "mandatoryAnnotations": keys}}
    }))
}

/// A random image whose manifest carries `annotations` and whose config carries `labels`.
fn image(annotations: Value, labels: Value) -> Image {
    let mut image = random_image(1, 256);
    let mut config: Value = serde_json::from_slice(&image.config).expect("config json");
    config["config"] = json!({ "Labels": labels });
    image.config = serde_json::to_vec(&config).expect("config serializes");
    let mut manifest: Value = serde_json::from_slice(&image.manifest).expect("manifest json");
    manifest["config"]["digest"] = json!(sha256_digest(&image.config));
    manifest["config"]["size"] = json!(image.config.len());
    manifest["annotations"] = annotations;
    image.manifest = serde_json::to_vec(&manifest).expect("manifest serializes");
    image.digest = sha256_digest(&image.manifest);
    image
}

fn push_blobs(client: &Client, url: &str, repo: &str, image: &Image) {
    push_blob(client, url, repo, &image.config);
    for layer in &image.layers {
        push_blob(client, url, repo, layer);
    }
}

/// PUTs the manifest of `image` as `repo:tag`; returns (status, body).
fn put(client: &Client, url: &str, repo: &str, tag: &str, image: &Image) -> (u16, String) {
    let response = send_manifest(client, url, repo, tag, OCI_MANIFEST, image.manifest.clone());
    let status = response.status().as_u16();
    (status, response.text().expect("body"))
}

#[test]
fn missing_keys_are_refused_with_their_names_and_nothing_changes() {
    let berth = linting(&[SOURCE, TEAM]);
    let client = http();
    let url = &berth.url;
    let bare = image(json!({}), json!({}));
    let half = image(json!({ SOURCE: "https://example.com/src" }), json!({}));
    push_blobs(&client, url, "lint/app", &bare);
    push_blobs(&client, url, "lint/app", &half);
    let mut known = bare.blob_digests();
    known.extend(half.blob_digests());
    assert_no_state_change(&berth, &known, || {
        let (status, body) = put(&client, url, "lint/app", "v1", &bare);
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            code_of(body.as_bytes()).as_deref(),
            Some("MANIFEST_INVALID")
        );
        assert!(body.contains(SOURCE) && body.contains(TEAM), "{body}");
        // One key present: only the other is named.
        let (status, body) = put(&client, url, "lint/app", "v2", &half);
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(TEAM) && !body.contains(SOURCE), "{body}");
        let (status, _) = put(&client, url, "lint/app", &half.digest, &half);
        assert_eq!(status, 400);
    });
    let missing = client
        .get(format!("{url}/v2/lint/app/manifests/{}", bare.digest))
        .send()
        .expect("GET");
    assert_eq!(missing.status().as_u16(), 404);
}

#[test]
fn keys_in_annotations_or_config_labels_pass() {
    let berth = linting(&[SOURCE, TEAM]);
    let client = http();
    let url = &berth.url;
    let annotated = image(json!({ SOURCE: "s", TEAM: "t" }), json!({}));
    let labelled = image(json!({}), json!({ SOURCE: "s", TEAM: "t" }));
    let mixed = image(json!({ SOURCE: "s" }), json!({ TEAM: "t" }));
    for (tag, image) in [("a", &annotated), ("l", &labelled), ("m", &mixed)] {
        push_blobs(&client, url, "lint/ok", image);
        let (status, body) = put(&client, url, "lint/ok", tag, image);
        assert_eq!(status, 201, "{tag}: {body}");
    }
    // An index of linted images is not itself linted (it has no config).
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": annotated.digest,
            "size": annotated.manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    });
    let body = serde_json::to_vec(&index).expect("index serializes");
    let response = send_manifest(&client, url, "lint/ok", "multi", OCI_INDEX, body);
    assert_eq!(response.status().as_u16(), 201);
    // An artifact (a signature, an SBOM) is not an image: not linted.
    let mut artifact: Value = serde_json::from_slice(&annotated.manifest).expect("json");
    artifact["artifactType"] = json!("application/vnd.example.sbom");
    artifact["annotations"] = json!({});
    let body = serde_json::to_vec(&artifact).expect("artifact serializes");
    let response = send_manifest(&client, url, "lint/ok", "sbom", OCI_MANIFEST, body);
    assert_eq!(response.status().as_u16(), 201);
}

#[test]
fn disabled_or_empty_lint_accepts_anything_and_sighup_switches_it_on() {
    let berth = Berth::start_with(json!({
        "extensions": {"lint": {"enable": false, "mandatoryAnnotations": [SOURCE]}}
    }));
    let client = http();
    let bare = image(json!({}), json!({}));
    push_blobs(&client, &berth.url, "lint/off", &bare);
    assert_eq!(put(&client, &berth.url, "lint/off", "v1", &bare).0, 201);

    let mut config: Value =
        serde_json::from_slice(&std::fs::read(&berth.config_path).expect("read config"))
            .expect("config json");
    config["extensions"]["lint"]["enable"] = json!(true);
    std::fs::write(
        &berth.config_path,
        serde_json::to_vec(&config).expect("json"),
    )
    .expect("write config");
    berth.signal(libc::SIGHUP);
    // The reload is asynchronous: wait until a bare image is refused.
    let second = image(json!({}), json!({}));
    push_blobs(&client, &berth.url, "lint/off", &second);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) = put(&client, &berth.url, "lint/off", "v2", &second);
        if status == 400 {
            assert!(body.contains(SOURCE), "{body}");
            break;
        }
        assert_eq!(status, 201, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP never enabled lint"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn skopeo_sees_the_refusal_and_the_acceptance() {
    if !require_tool("skopeo") {
        return;
    }
    let berth = linting(&[SOURCE]);
    let work = tempfile::tempdir().expect("temp dir");
    for (name, image, accepted) in [
        ("bare", image(json!({}), json!({})), false),
        ("labelled", image(json!({}), json!({ SOURCE: "s" })), true),
    ] {
        let layout = work.path().join(name);
        write_oci_layout(&layout, "v1", &image);
        let (ok, _, stderr) = run_cmd(
            Command::new("skopeo")
                .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:v1", layout.display()))
                .arg(format!("docker://{}/lint/{name}:v1", berth.addr)),
        );
        assert_eq!(ok, accepted, "{name}: {stderr}");
        if !accepted {
            assert!(
                stderr.contains("manifest invalid") || stderr.contains("MANIFEST_INVALID"),
                "{stderr}"
            );
            assert!(stderr.contains(SOURCE), "{stderr}");
        }
    }
}
