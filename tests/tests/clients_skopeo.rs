//! skopeo against berth: OCI layout in and back out (`dir:` and `oci:`), Docker v2s2
//! conversion, `inspect`, `list-tags`, registry-to-registry copies with CNCF Distribution as
//! the peer, and `delete`.
//!
//! Every comparison is by bytes: what berth serves must be exactly what was pushed.

use std::path::Path;
use std::process::Command;

use berth_tests::{
    fetch_blob, fetch_manifest, http, push_image, random_image, require_tool, run_cmd, run_ok,
    sha256_digest, write_oci_layout, Berth, Distribution, Image,
};
use serde_json::Value;

/// `skopeo copy` with `flags`, from `src` to `dest`; panics with skopeo's output on failure.
fn skopeo_copy(
    flags: &[&str],
    src: impl AsRef<std::ffi::OsStr>,
    dest: impl AsRef<std::ffi::OsStr>,
) {
    run_ok(skopeo().arg("copy").args(flags).arg(src).arg(dest));
}

fn skopeo() -> Command {
    let mut cmd = Command::new("skopeo");
    // Hermetic: no dependence on the machine's /etc/containers/policy.json.
    cmd.arg("--insecure-policy");
    cmd
}

fn blob_file(dir: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    // `dir:` names blobs by hex; `oci:` keeps them under blobs/sha256/.
    let path = if dir.join("oci-layout").exists() {
        dir.join("blobs/sha256").join(hex)
    } else {
        dir.join(hex)
    };
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn assert_blobs_identical(dir: &Path, image: &Image) {
    assert_eq!(
        blob_file(dir, &sha256_digest(&image.config)),
        image.config,
        "config differs"
    );
    for (i, layer) in image.layers.iter().enumerate() {
        assert_eq!(
            &blob_file(dir, &sha256_digest(layer)),
            layer,
            "layer {i} differs"
        );
    }
}

#[test]
fn oci_layout_round_trips_through_berth_byte_identical() {
    if !require_tool("skopeo") {
        return;
    }
    let berth = Berth::start();
    let work = tempfile::tempdir().unwrap();
    let image = random_image(3, 64 * 1024);
    let layout = work.path().join("layout");
    write_oci_layout(&layout, "v1", &image);

    let dest = format!("docker://{}/test/app:v1", berth.addr);
    skopeo_copy(
        &["--dest-tls-verify=false"],
        format!("oci:{}:v1", layout.display()),
        &dest,
    );

    // The registry holds the very manifest we wrote (no rewriting on the way in).
    let client = http();
    let (status, digest, body) = fetch_manifest(&client, &berth.url, "test/app", "v1");
    assert_eq!(status, 200);
    assert_eq!(digest.as_deref(), Some(image.digest.as_str()));
    assert_eq!(body, image.manifest);

    // Pull back to `dir:`.
    let dir_out = work.path().join("dir-out");
    skopeo_copy(
        &["--src-tls-verify=false"],
        &dest,
        format!("dir:{}", dir_out.display()),
    );
    assert_eq!(
        std::fs::read(dir_out.join("manifest.json")).unwrap(),
        image.manifest
    );
    assert_blobs_identical(&dir_out, &image);

    // Pull back to `oci:`.
    let oci_out = work.path().join("oci-out");
    skopeo_copy(
        &["--src-tls-verify=false"],
        &dest,
        format!("oci:{}:v1", oci_out.display()),
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(oci_out.join("index.json")).unwrap()).unwrap();
    let pulled = index["manifests"]
        .as_array()
        .expect("index.json lists manifests");
    assert_eq!(pulled.len(), 1, "{index}");
    assert_eq!(pulled[0]["digest"], image.digest.as_str());
    assert_eq!(blob_file(&oci_out, &image.digest), image.manifest);
    assert_blobs_identical(&oci_out, &image);
}

#[test]
fn docker_v2s2_push_and_pull() {
    if !require_tool("skopeo") {
        return;
    }
    let berth = Berth::start();
    let work = tempfile::tempdir().unwrap();
    let image = random_image(2, 32 * 1024);
    let layout = work.path().join("layout");
    write_oci_layout(&layout, "v1", &image);

    let dest = format!("docker://{}/test/v2s2:v1", berth.addr);
    skopeo_copy(
        &["--format", "v2s2", "--dest-tls-verify=false"],
        format!("oci:{}:v1", layout.display()),
        &dest,
    );

    let client = http();
    let response = client
        .get(format!("{}/v2/test/v2s2/manifests/v1", berth.url))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let served_digest = response.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    let served = response.bytes().unwrap().to_vec();
    assert_eq!(
        content_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(served_digest, sha256_digest(&served));
    let manifest: Value = serde_json::from_slice(&served).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);

    // `inspect --raw` sees the same bytes; a pull to `dir:` gets them and every blob intact.
    let raw = run_ok(
        skopeo()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(&dest),
    );
    assert_eq!(raw.as_bytes(), &served[..]);
    let dir_out = work.path().join("dir-out");
    skopeo_copy(
        &["--src-tls-verify=false"],
        &dest,
        format!("dir:{}", dir_out.display()),
    );
    assert_eq!(
        std::fs::read(dir_out.join("manifest.json")).unwrap(),
        served
    );
    let blobs = std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap());
    for descriptor in blobs {
        let digest = descriptor["digest"].as_str().unwrap();
        let file = blob_file(&dir_out, digest);
        assert_eq!(sha256_digest(&file), digest);
        assert_eq!(file.len() as u64, descriptor["size"].as_u64().unwrap());
        let (status, body) = fetch_blob(&client, &berth.url, "test/v2s2", digest);
        assert_eq!(status, 200);
        assert_eq!(body, file);
    }
}

#[test]
fn inspect_and_list_tags() {
    if !require_tool("skopeo") {
        return;
    }
    let berth = Berth::start();
    let client = http();
    let image = random_image(2, 4096);
    for tag in ["v1", "v2", "latest"] {
        push_image(&client, &berth.url, "team/tool", tag, &image);
    }
    let other = random_image(1, 4096);
    push_image(&client, &berth.url, "team/tool", "other", &other);

    let reference = format!("docker://{}/team/tool:v1", berth.addr);
    let inspect: Value = serde_json::from_str(&run_ok(
        skopeo()
            .args(["inspect", "--tls-verify=false"])
            .arg(&reference),
    ))
    .unwrap();
    assert_eq!(inspect["Digest"], image.digest.as_str());
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    let layers: Vec<String> = image.layers.iter().map(|l| sha256_digest(l)).collect();
    assert_eq!(inspect["Layers"], serde_json::json!(layers));

    let listed: Value = serde_json::from_str(&run_ok(
        skopeo()
            .args(["list-tags", "--tls-verify=false"])
            .arg(format!("docker://{}/team/tool", berth.addr)),
    ))
    .unwrap();
    let mut tags: Vec<&str> = listed["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["latest", "other", "v1", "v2"]);
}

/// Copies `from` -> `to` with skopeo and asserts the destination serves identical bytes.
fn copy_and_compare(from: (&str, &str, &str), to: (&str, &str, &str), image: &Image) {
    let (from_url, from_addr, from_repo) = from;
    let (to_url, to_addr, to_repo) = to;
    skopeo_copy(
        &["--src-tls-verify=false", "--dest-tls-verify=false"],
        format!("docker://{from_addr}/{from_repo}:v1"),
        format!("docker://{to_addr}/{to_repo}:v1"),
    );
    let client = http();
    let (status, digest, body) = fetch_manifest(&client, to_url, to_repo, "v1");
    assert_eq!(status, 200, "copy {from_url} -> {to_url}");
    assert_eq!(digest.as_deref(), Some(image.digest.as_str()));
    assert_eq!(body, image.manifest);
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        let (status, served) = fetch_blob(&client, to_url, to_repo, &sha256_digest(blob));
        assert_eq!(status, 200);
        assert_eq!(&served, blob);
    }
}

#[test]
fn registry_to_registry_copy_with_distribution() {
    if !require_tool("skopeo") || !require_tool("docker-registry") {
        return;
    }
    let berth = Berth::start();
    let peer = Distribution::start();
    let client = http();

    let outbound = random_image(2, 16 * 1024);
    push_image(&client, &berth.url, "src/app", "v1", &outbound);
    copy_and_compare(
        (&berth.url, &berth.addr, "src/app"),
        (&peer.url, &peer.addr, "mirror/app"),
        &outbound,
    );

    let inbound = random_image(3, 16 * 1024);
    push_image(&client, &peer.url, "upstream/app", "v1", &inbound);
    copy_and_compare(
        (&peer.url, &peer.addr, "upstream/app"),
        (&berth.url, &berth.addr, "copied/app"),
        &inbound,
    );
}

#[test]
fn delete_removes_the_manifest() {
    if !require_tool("skopeo") {
        return;
    }
    let berth = Berth::start();
    let client = http();
    let image = random_image(1, 4096);
    let kept = random_image(1, 4096);
    push_image(&client, &berth.url, "test/del", "v1", &image);
    push_image(&client, &berth.url, "test/del", "kept", &kept);

    let reference = format!("docker://{}/test/del:v1", berth.addr);
    run_ok(
        skopeo()
            .args(["inspect", "--tls-verify=false"])
            .arg(&reference),
    );
    run_ok(
        skopeo()
            .args(["delete", "--tls-verify=false"])
            .arg(&reference),
    );

    let (ok, _, stderr) = run_cmd(
        skopeo()
            .args(["inspect", "--tls-verify=false"])
            .arg(&reference),
    );
    assert!(!ok, "inspect after delete must fail");
    assert!(
        stderr.contains("manifest unknown") || stderr.contains("not found"),
        "{stderr}"
    );
    assert_eq!(
        fetch_manifest(&client, &berth.url, "test/del", &image.digest).0,
        404
    );
    assert_eq!(fetch_manifest(&client, &berth.url, "test/del", "v1").0, 404);
    // The other image is untouched.
    let (status, _, body) = fetch_manifest(&client, &berth.url, "test/del", "kept");
    assert_eq!(status, 200);
    assert_eq!(body, kept.manifest);
}
