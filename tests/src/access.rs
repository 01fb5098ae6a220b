//! Helpers of the `http.accessControl` tests (tests/tests/access_control*.rs): berth behind
//! htpasswd with an access-control section, and requests whose refusals are asserted by
//! status and OCI code.

use std::process::Command;

use serde_json::{json, Value};

use crate::api::{code_of, parts};
use crate::{run_cmd, Berth, Client, Image, HTPASSWD_SECRET};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const ALL: [&str; 4] = ["read", "create", "update", "delete"];
pub const USERS: [&str; 6] = ["alice", "bob", "carol", "dave", "root", "prometheus"];

/// berth behind htpasswd (every user of [`USERS`] with [`HTPASSWD_SECRET`]) with
/// `accessControl` = `access`, metrics on, and `patch` merged into the whole config.
pub fn start(access: Value, patch: Value) -> Berth {
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let htpasswd = dir.join("htpasswd");
    let hash = bcrypt::hash(HTPASSWD_SECRET, 4).expect("bcrypt");
    let text: String = USERS
        .iter()
        .map(|user| format!("{user}:{hash}\n"))
        .collect();
    std::fs::write(&htpasswd, text).expect("write htpasswd");
    let mut config = json!({
        "http": {"auth": {"htpasswd": {"path": htpasswd}}, "accessControl": access},
        "extensions": {"metrics": {}},
    });
    crate::merge_patch(&mut config, &patch);
    Berth::start_with(config)
}

/// Status and OCI code of a response.
pub fn outcome(response: reqwest::blocking::Response) -> (u16, Option<String>) {
    let (status, _, body) = parts(response);
    (status, code_of(&body))
}

#[track_caller]
pub fn assert_denied(response: reqwest::blocking::Response) {
    assert_eq!(outcome(response), (403, Some("DENIED".into())));
}

#[track_caller]
pub fn assert_challenged(response: reqwest::blocking::Response) {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    assert_eq!(outcome(response), (401, Some("UNAUTHORIZED".into())));
    assert_eq!(challenge.as_deref(), Some("Basic realm=\"zot\""));
}

pub fn get(client: &Client, url: impl reqwest::IntoUrl) -> reqwest::blocking::Response {
    client.get(url).send().expect("GET")
}

pub fn delete(client: &Client, url: String) -> reqwest::blocking::Response {
    client.delete(url).send().expect("DELETE")
}

pub fn post_upload(client: &Client, url: &str, repo: &str) -> reqwest::blocking::Response {
    client
        .post(format!("{url}/v2/{repo}/blobs/uploads/"))
        .send()
        .expect("POST upload")
}

pub fn put_manifest(
    client: &Client,
    url: &str,
    repo: &str,
    reference: &str,
    manifest: &[u8],
) -> reqwest::blocking::Response {
    client
        .put(format!("{url}/v2/{repo}/manifests/{reference}"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.to_vec())
        .send()
        .expect("PUT manifest")
}

/// The digests `image` stored, for `assert_no_state_change`.
pub fn known(images: &[&Image]) -> Vec<String> {
    let mut known = Vec::new();
    for image in images {
        known.extend(image.blob_digests());
        known.push(image.digest.clone());
    }
    known
}

pub fn skopeo_copy(args: &[&str], from: String, to: String) -> (bool, String) {
    let (ok, _, stderr) = run_cmd(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
            .arg("--dest-tls-verify=false")
            .args(args)
            .arg(from)
            .arg(to),
    );
    (ok, stderr)
}
