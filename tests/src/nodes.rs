//! Several berth nodes serving one registry (issue 20): blobs in the binary's SeaweedFS
//! cluster (`seaweedfs_shared`, each registry under a root directory of its own in the shared
//! bucket), the index in a throwaway PostgreSQL server, nodes on loopback with port 0. Plus
//! the raw HTTP steps the multi-node tests take, each sent to the node whose base URL
//! (`Berth::url`) it is given: uploads whose requests go to chosen nodes, manifest PUTs and
//! tag reads.
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::postgres::Postgres;
use crate::seaweedfs::{ACCESS_KEY, REGION, SECRET_KEY};
use crate::seaweedfs_shared::BUCKET;
use crate::{sha256_digest, Berth};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Whether SeaweedFS and PostgreSQL are installed, and `tools` on `PATH`. Missing ones print
/// SKIPPED, or panic with `BERTH_REQUIRE_TOOLS=1`.
pub fn shared_backend_available(tools: &[&str]) -> bool {
    let require = std::env::var("BERTH_REQUIRE_TOOLS").as_deref() == Ok("1");
    for (name, found) in [
        ("SeaweedFS (weed)", crate::seaweedfs::seaweedfs_available()),
        ("PostgreSQL", crate::postgres::postgres_available()),
    ] {
        if !found {
            assert!(!require, "{name} is required (BERTH_REQUIRE_TOOLS=1)");
            eprintln!("SKIPPED: {name} is not installed");
            return false;
        }
    }
    tools.iter().all(|tool| crate::require_tool(tool))
}

/// The config patch of a node: S3 under `root`, the index in `postgres`, GC every second.
pub fn node_patch(endpoint: &str, root: &str, postgres: &Postgres) -> Value {
    json!({
        "storage": {
            "storageDriver": {
                "name": "s3",
                "region": REGION,
                "bucket": BUCKET,
                "regionendpoint": endpoint,
                "accesskey": ACCESS_KEY,
                "secretkey": SECRET_KEY,
                "rootdirectory": root,
            },
            "index": {"postgres": {"url": postgres.url()}},
            "gcDelay": "1h",
            "gcInterval": "1s",
        },
        "extensions": {"metrics": {}},
    })
}

/// `count` nodes of one registry.
pub fn start_nodes(count: usize, endpoint: &str, root: &str, postgres: &Postgres) -> Vec<Berth> {
    (0..count)
        .map(|_| Berth::start_with(node_patch(endpoint, root, postgres)))
        .collect()
}

/// An absolute session URL from a 202's Location.
pub fn location(node: &str, response: &reqwest::blocking::Response) -> String {
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii Location");
    match location.starts_with('/') {
        true => format!("{node}{location}"),
        false => location.to_owned(),
    }
}

/// The same session on another node: its path on `node`.
pub fn on_node(node: &str, session: &str) -> String {
    let path = session
        .find("/v2/")
        .map(|at| &session[at..])
        .expect("a /v2/ session URL");
    format!("{node}{path}")
}

/// Starts a session on `node`; returns its URL there.
pub fn start_upload(client: &Client, node: &str, repo: &str) -> String {
    let started = client
        .post(format!("{node}/v2/{repo}/blobs/uploads/"))
        .send()
        .expect("POST");
    assert_eq!(started.status().as_u16(), 202, "POST on {node}");
    location(node, &started)
}

/// Sends `chunk` at `offset` to the session through `node`; returns the new offset.
pub fn patch(client: &Client, node: &str, session: &str, offset: usize, chunk: &[u8]) -> u64 {
    let response = client
        .patch(on_node(node, session))
        .header("Content-Type", "application/octet-stream")
        .header(
            "Content-Range",
            format!("{offset}-{}", offset + chunk.len() - 1),
        )
        .body(chunk.to_vec())
        .send()
        .expect("PATCH");
    assert_eq!(response.status().as_u16(), 202, "PATCH on {node}");
    let range = response.headers()["range"].to_str().expect("ascii Range");
    let end: u64 = range
        .strip_prefix("0-")
        .and_then(|end| end.parse().ok())
        .expect("Range 0-N");
    end + 1
}

/// The session's offset as `node` reports it.
pub fn upload_offset(client: &Client, node: &str, session: &str) -> Option<u64> {
    let response = client.get(on_node(node, session)).send().expect("GET");
    if response.status().as_u16() != 204 {
        return None;
    }
    let range = response.headers()["range"].to_str().expect("ascii Range");
    range
        .strip_prefix("0-")
        .and_then(|end| end.parse::<u64>().ok())
        .map(|end| end + 1)
}

/// Finishes the session through `node` with `digest` (no body); returns the status.
pub fn finish(client: &Client, node: &str, session: &str, digest: &str) -> u16 {
    let url = on_node(node, session);
    let separator = if url.contains('?') { '&' } else { '?' };
    client
        .put(format!("{url}{separator}digest={digest}"))
        .header("Content-Length", "0")
        .send()
        .expect("PUT")
        .status()
        .as_u16()
}

/// A monolithic blob push (POST with `?digest=`) through `node`.
pub fn push_blob(client: &Client, node: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let response = client
        .post(format!("{}/v2/{repo}/blobs/uploads/?digest={digest}", node))
        .header("Content-Type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .expect("POST blob");
    assert_eq!(response.status().as_u16(), 201, "blob push on {node}");
    digest
}

/// An image manifest over `config` and `layers` (blobs already pushed).
pub fn manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let descriptor = |media: &str, bytes: &[u8]| json!({"mediaType": media, "digest": sha256_digest(bytes), "size": bytes.len()});
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": layers
            .iter()
            .map(|layer| descriptor("application/vnd.oci.image.layer.v1.tar", layer))
            .collect::<Vec<_>>(),
    }))
    .expect("manifest serializes")
}

/// PUT of `manifest` as `reference` through `node`; returns the status.
pub fn put_manifest(
    client: &Client,
    node: &str,
    repo: &str,
    reference: &str,
    manifest: &[u8],
) -> u16 {
    client
        .put(format!("{node}/v2/{repo}/manifests/{reference}"))
        .header("Content-Type", OCI_MANIFEST)
        .body(manifest.to_vec())
        .send()
        .map(|response| response.status().as_u16())
        .unwrap_or(0)
}

/// The digest `reference` resolves to on `node` (`None`: 404).
pub fn manifest_digest(client: &Client, node: &str, repo: &str, reference: &str) -> Option<String> {
    let response = client
        .get(format!("{node}/v2/{repo}/manifests/{reference}"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .expect("GET manifest");
    match response.status().as_u16() {
        200 => Some(
            response.headers()["docker-content-digest"]
                .to_str()
                .expect("ascii")
                .to_owned(),
        ),
        404 => None,
        other => panic!("GET {repo}:{reference} on {node}: {other}"),
    }
}

/// The blob's bytes through `node` (following no redirect: nodes stream from the bucket).
pub fn get_blob(client: &Client, node: &str, repo: &str, digest: &str) -> Vec<u8> {
    let response = client
        .get(format!("{node}/v2/{repo}/blobs/{digest}"))
        .send()
        .expect("GET blob");
    assert_eq!(response.status().as_u16(), 200, "GET {digest} on {node}");
    response.bytes().expect("blob body").to_vec()
}

/// A client that gives up on a request after `timeout`.
pub fn client_with_timeout(timeout: Duration) -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .build()
        .expect("reqwest client builds")
}
