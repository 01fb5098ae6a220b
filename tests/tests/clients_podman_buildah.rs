//! buildah and podman against berth: build from scratch, `buildah push`, `podman pull` into a
//! separate store, and a two-platform `podman manifest push --all`.
//!
//! How the clients run here: [`berth_tests::containers`] (buildah 1.28, podman 4.3). Push and
//! pull use separate stores so the pull really downloads.

use std::collections::BTreeSet;

use berth_tests::containers::{Containers, Store};
use berth_tests::{
    fetch_blob, fetch_manifest, http, random_bytes, require_tool, run_ok, sha256_digest, Berth,
};
use serde_json::Value;

/// `buildah from scratch`, add one file of random bytes, set the architecture, commit as
/// `localhost/<name>`. Returns the file's content.
fn build_scratch_image(containers: &Containers, name: &str, arch: &str) -> Vec<u8> {
    let content = random_bytes(8 * 1024);
    let file = containers.dir().join(format!("{arch}.bin"));
    std::fs::write(&file, &content).unwrap();
    let container = run_ok(
        containers
            .cmd("buildah", Store::Build)
            .args(["from", "scratch"]),
    );
    let container = container.trim();
    run_ok(
        containers
            .cmd("buildah", Store::Build)
            .args(["copy", container])
            .arg(&file)
            .arg("/payload.bin"),
    );
    run_ok(
        containers
            .cmd("buildah", Store::Build)
            .args(["config", "--arch", arch, "--os", "linux", container]),
    );
    run_ok(containers.cmd("buildah", Store::Build).args([
        "commit",
        "-q",
        container,
        &format!("localhost/{name}"),
    ]));
    run_ok(
        containers
            .cmd("buildah", Store::Build)
            .args(["rm", container]),
    );
    content
}

/// Every blob of the image manifest `digest` in `repo` is served with its digest.
fn assert_image_complete(url: &str, repo: &str, digest: &str) -> Value {
    let client = http();
    let (status, served_digest, body) = fetch_manifest(&client, url, repo, digest);
    assert_eq!(status, 200, "manifest {repo}@{digest}");
    assert_eq!(served_digest.as_deref(), Some(digest));
    assert_eq!(sha256_digest(&body), digest);
    let manifest: Value = serde_json::from_slice(&body).unwrap();
    let layers = manifest["layers"]
        .as_array()
        .expect("image manifest has layers");
    for descriptor in std::iter::once(&manifest["config"]).chain(layers) {
        let blob_digest = descriptor["digest"].as_str().unwrap();
        let (status, blob) = fetch_blob(&client, url, repo, blob_digest);
        assert_eq!(status, 200, "blob {blob_digest}");
        assert_eq!(sha256_digest(&blob), blob_digest);
        assert_eq!(blob.len() as u64, descriptor["size"].as_u64().unwrap());
    }
    manifest
}

fn pulled_digest(containers: &Containers, image: &str) -> String {
    run_ok(containers.cmd("podman", Store::Pull).args([
        "image",
        "inspect",
        "--format",
        "{{.Digest}}",
        image,
    ]))
    .trim()
    .to_string()
}

#[test]
fn buildah_push_then_podman_pull_same_digest() {
    if !require_tool("buildah") || !require_tool("podman") {
        return;
    }
    let berth = Berth::start();
    let containers = Containers::new(&berth.addr);
    build_scratch_image(&containers, "hello:v1", "amd64");

    let digest_file = containers.dir().join("pushed.digest");
    let remote = format!("{}/test/hello:v1", berth.addr);
    run_ok(
        containers
            .cmd("buildah", Store::Build)
            .args(["push", "--tls-verify=false", "--digestfile"])
            .arg(&digest_file)
            .arg("localhost/hello:v1")
            .arg(format!("docker://{remote}")),
    );
    let pushed = std::fs::read_to_string(&digest_file)
        .unwrap()
        .trim()
        .to_string();
    let (status, by_tag, _) = fetch_manifest(&http(), &berth.url, "test/hello", "v1");
    assert_eq!(status, 200);
    assert_eq!(
        by_tag.as_deref(),
        Some(pushed.as_str()),
        "tag resolves to the pushed digest"
    );
    assert_image_complete(&berth.url, "test/hello", &pushed);

    run_ok(containers.cmd("podman", Store::Pull).args([
        "pull",
        "-q",
        "--tls-verify=false",
        &remote,
    ]));
    assert_eq!(pulled_digest(&containers, &remote), pushed);
}

#[test]
fn podman_manifest_push_all_of_two_platforms() {
    if !require_tool("buildah") || !require_tool("podman") {
        return;
    }
    let berth = Berth::start();
    let containers = Containers::new(&berth.addr);
    build_scratch_image(&containers, "multi:amd64", "amd64");
    build_scratch_image(&containers, "multi:arm64", "arm64");

    let podman = || containers.cmd("podman", Store::Build);
    run_ok(podman().args(["manifest", "create", "localhost/multi:list"]));
    for arch in ["amd64", "arm64"] {
        run_ok(
            podman()
                .args(["manifest", "add", "localhost/multi:list"])
                .arg(format!("containers-storage:localhost/multi:{arch}")),
        );
    }
    let remote = format!("{}/test/multi:v1", berth.addr);
    run_ok(
        podman()
            .args([
                "manifest",
                "push",
                "--all",
                "--tls-verify=false",
                "localhost/multi:list",
            ])
            .arg(format!("docker://{remote}")),
    );

    let (status, digest, body) = fetch_manifest(&http(), &berth.url, "test/multi", "v1");
    assert_eq!(status, 200);
    assert_eq!(digest, Some(sha256_digest(&body)));
    let index: Value = serde_json::from_slice(&body).unwrap();
    let media_type = index["mediaType"].as_str().unwrap_or_default();
    assert!(
        media_type == "application/vnd.oci.image.index.v1+json"
            || media_type == "application/vnd.docker.distribution.manifest.list.v2+json",
        "{index}"
    );
    let children = index["manifests"]
        .as_array()
        .expect("index lists manifests");
    assert_eq!(children.len(), 2, "{index}");
    let mut architectures = BTreeSet::new();
    let mut arm64_config = String::new();
    for child in children {
        let child_digest = child["digest"].as_str().unwrap();
        let arch = child["platform"]["architecture"]
            .as_str()
            .unwrap()
            .to_string();
        let manifest = assert_image_complete(&berth.url, "test/multi", child_digest);
        assert!(manifest["layers"].as_array().is_some_and(|l| !l.is_empty()));
        if arch == "arm64" {
            arm64_config = manifest["config"]["digest"].as_str().unwrap().to_string();
        }
        architectures.insert(arch);
    }
    assert_eq!(
        architectures,
        BTreeSet::from(["amd64".to_string(), "arm64".to_string()])
    );

    // A client on another platform resolves the index to its own child (podman records the
    // index digest as the image digest, so identify the child by its config = image ID).
    run_ok(containers.cmd("podman", Store::Pull).args([
        "pull",
        "-q",
        "--tls-verify=false",
        "--arch",
        "arm64",
        &remote,
    ]));
    let inspected = run_ok(containers.cmd("podman", Store::Pull).args([
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Architecture}}",
        &remote,
    ]));
    let expected = format!("{} arm64", arm64_config.trim_start_matches("sha256:"));
    assert_eq!(inspected.trim(), expected);
    assert_eq!(pulled_digest(&containers, &remote), digest.unwrap());
}
