//! Real clients through the Docker token dance against berth with `http.auth.bearer` and a
//! real token server (tests/tokens/issuer.py `serve`): podman logs in, pushes and pulls;
//! skopeo copies in and out; a pull-only user cannot push (the client fails, nothing is
//! stored); a wrong password cannot log in.
//!
//! How the clients run here: [`berth_tests::containers`]. Plain HTTP on loopback, so the
//! registry is marked insecure in registries.conf (podman) or `--*-tls-verify=false` (skopeo);
//! the token server's realm is plain HTTP on loopback too.

use std::process::Command;

use berth_tests::api::parts;
use berth_tests::containers::{Containers, Store};
use berth_tests::tokens::{
    claims, client, issuer_available, make_keys, mint, repository, start_berth, Issuer, PASSWORD,
};
use berth_tests::{random_image, require_tool, run_cmd, run_ok, write_oci_layout, Berth, Client};
use serde_json::{json, Value};

/// alice pushes under `alice/` and pulls everywhere; bob only pulls; anonymous gets nothing.
fn policy() -> Value {
    json!({
        "alice": [
            {"type": "repository", "glob": "alice/*", "actions": ["pull", "push"]},
            {"type": "repository", "glob": "*", "actions": ["pull"]},
        ],
        "bob": [{"type": "repository", "glob": "*", "actions": ["pull"]}],
    })
}

/// The token server and berth trusting its key; an admin client with a minted token.
fn start(dir: &std::path::Path) -> (Issuer, Berth, Value) {
    let keys = make_keys(&dir.join("keys"));
    let rsa = &keys["rsa"];
    let issuer = Issuer::start(
        dir,
        rsa["key"].as_str().expect("path"),
        rsa["kid"].as_str().expect("kid"),
        &["alice", "bob"],
        policy(),
    );
    let berth = start_berth(&issuer.realm, rsa["crt"].as_str().expect("path"), json!({}));
    (issuer, berth, keys)
}

fn admin(keys: &Value, repos: &[&str]) -> Client {
    let mut access: Vec<Value> = repos.iter().map(|repo| repository(repo, &["*"])).collect();
    access.push(json!({"type": "registry", "name": "catalog", "actions": ["*"]}));
    let spec = json!({"key": keys["rsa"]["key"], "alg": "RS256",
                      "header": {"kid": keys["rsa"]["kid"]}, "claims": claims("root", json!(access))});
    client(&mint(&[spec])[0])
}

fn manifest_status(admin: &Client, url: &str, repo: &str, tag: &str) -> u16 {
    let response = admin
        .get(format!("{url}/v2/{repo}/manifests/{tag}"))
        .header("accept", berth_tests::MANIFEST_ACCEPT)
        .send()
        .expect("GET manifest");
    parts(response).0
}

#[test]
fn podman_logs_in_pushes_and_pulls_through_the_token_server() {
    if !issuer_available() || !require_tool("podman") || !require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_issuer, berth, keys) = start(dir.path());
    let containers = Containers::new(&berth.addr);
    let podman = |store: Store| containers.cmd("podman", store);
    let image = random_image(1, 20_000);
    let local = containers.stage_image(&image);
    let remote = format!("{}/alice/app:v1", berth.addr);
    let admin = admin(&keys, &["alice/app"]);
    let (ok, _, stderr) = run_cmd(podman(Store::Build).args(["push", &local, &remote]));
    assert!(!ok, "an anonymous token cannot push: {stderr}");
    let (ok, _, stderr) =
        run_cmd(podman(Store::Build).args(["login", "-u", "alice", "-p", "wrong", &berth.addr]));
    assert!(!ok, "a wrong password gets no token: {stderr}");
    // bob (pull only) cannot push: the client fails and nothing is stored.
    let creds = format!("bob:{PASSWORD}");
    let (ok, _, stderr) =
        run_cmd(podman(Store::Build).args(["push", "--creds", &creds, &local, &remote]));
    assert!(!ok, "bob cannot push: {stderr}");
    assert_eq!(manifest_status(&admin, &berth.url, "alice/app", "v1"), 404);
    run_ok(podman(Store::Build).args(["login", "-u", "alice", "-p", PASSWORD, &berth.addr]));
    let digest_file = containers.dir().join("pushed.digest");
    run_ok(
        podman(Store::Build)
            .args(["push", "--digestfile"])
            .arg(&digest_file)
            .args([&local, &remote]),
    );
    let pushed = std::fs::read_to_string(&digest_file).expect("digest file");
    let response = admin
        .get(format!("{}/v2/alice/app/manifests/v1", berth.url))
        .header("accept", berth_tests::MANIFEST_ACCEPT)
        .send()
        .expect("GET");
    let (status, headers, _) = parts(response);
    assert_eq!(status, 200);
    assert_eq!(
        berth_tests::api::header(&headers, "docker-content-digest").as_deref(),
        Some(pushed.trim())
    );
    run_ok(podman(Store::Pull).args(["pull", "-q", &remote]));
    let pulled =
        run_ok(podman(Store::Pull).args(["image", "inspect", "--format", "{{.Digest}}", &remote]));
    assert_eq!(pulled.trim(), pushed.trim());
    // bob pulls too; after logout, anonymous cannot.
    run_ok(podman(Store::Pull).args(["rmi", &remote]));
    run_ok(podman(Store::Pull).args(["pull", "-q", "--creds", &creds, &remote]));
    run_ok(podman(Store::Pull).args(["rmi", &remote]));
    run_ok(podman(Store::Build).args(["logout", &berth.addr]));
    let (ok, _, stderr) = run_cmd(podman(Store::Pull).args(["pull", "-q", &remote]));
    assert!(!ok, "an anonymous token cannot pull: {stderr}");
}

#[test]
fn skopeo_copies_in_and_out_through_the_token_server() {
    if !issuer_available() || !require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_issuer, berth, keys) = start(dir.path());
    let image = random_image(2, 100_000);
    let layout = dir.path().join("layout");
    write_oci_layout(&layout, "v1", &image);
    let skopeo = || {
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy"]);
        cmd
    };
    let source = format!("oci:{}:v1", layout.display());
    let remote = format!("docker://{}/alice/skopeo:v1", berth.addr);
    let (ok, _, stderr) = run_cmd(
        skopeo()
            .args([
                "--dest-tls-verify=false",
                "--dest-creds",
                &format!("bob:{PASSWORD}"),
            ])
            .args([&source, &remote]),
    );
    assert!(!ok, "bob cannot push: {stderr}");
    let admin = admin(&keys, &["alice/skopeo"]);
    assert_eq!(
        manifest_status(&admin, &berth.url, "alice/skopeo", "v1"),
        404
    );
    run_ok(
        skopeo()
            .args([
                "--dest-tls-verify=false",
                "--dest-creds",
                &format!("alice:{PASSWORD}"),
            ])
            .args([&source, &remote]),
    );
    let out = dir.path().join("out");
    run_ok(
        skopeo()
            .args([
                "--src-tls-verify=false",
                "--src-creds",
                &format!("bob:{PASSWORD}"),
            ])
            .arg(&remote)
            .arg(format!("oci:{}:v1", out.display())),
    );
    let hex = image.digest.strip_prefix("sha256:").expect("sha256");
    let manifest = std::fs::read(out.join("blobs/sha256").join(hex)).expect("pulled manifest");
    assert_eq!(manifest, image.manifest);
    for (digest, bytes) in image
        .blob_digests()
        .iter()
        .zip(std::iter::once(&image.config).chain(&image.layers))
    {
        let hex = digest.strip_prefix("sha256:").expect("sha256");
        let pulled = std::fs::read(out.join("blobs/sha256").join(hex)).expect("pulled blob");
        assert_eq!(&pulled, bytes, "{digest}");
    }
}
