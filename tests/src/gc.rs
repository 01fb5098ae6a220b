//! Helpers for the GC tests (tests/gc*.rs): waits on GC passes and their metrics, blob files
//! found on disk, replies read with their OCI error code, images pushed and checked blob by
//! blob, and a wait for GC to bring the files down to the live set.

use std::collections::HashSet;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::{code_of, get_json, OCI_MANIFEST};
use crate::{
    fetch_blob, fetch_manifest, scrape_metrics, sha256_digest, try_push_blob, Berth, Client, Image,
};

/// What berth answered: status, OCI error code and the error's `detail.digest`, and the body.
pub struct Reply {
    pub status: u16,
    pub code: Option<String>,
    pub digest: Option<String>,
    pub body: String,
}

impl Reply {
    pub fn is(&self, status: u16, code: &str) -> bool {
        self.status == status && self.code.as_deref() == Some(code)
    }
}

/// Reads a response; the daemon is never killed while these requests run, so a transport
/// error is a failure.
#[track_caller]
pub fn reply(response: reqwest::Result<reqwest::blocking::Response>) -> Reply {
    let response = response.unwrap_or_else(|e| panic!("transport error: {e:?}"));
    let status = response.status().as_u16();
    let body = response.bytes().expect("read body").to_vec();
    let digest = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v["errors"][0]["detail"]["digest"]
            .as_str()
            .map(str::to_string)
    });
    Reply {
        status,
        code: code_of(&body),
        digest,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// An OCI image over uncompressed tar `layers` (their digests are the `diff_ids`).
pub fn build_image(layers: Vec<Vec<u8>>) -> Image {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .expect("config serializes");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256_digest(&config), "size": config.len(),
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": sha256_digest(l), "size": l.len(),
        })).collect::<Vec<_>>(),
    }))
    .expect("manifest serializes");
    Image {
        digest: sha256_digest(&manifest),
        config,
        layers,
        manifest,
    }
}

pub fn put_manifest(
    client: &Client,
    url: &str,
    repo: &str,
    reference: &str,
    image: &Image,
) -> Reply {
    reply(
        client
            .put(format!("{url}/v2/{repo}/manifests/{reference}"))
            .header("content-type", OCI_MANIFEST)
            .body(image.manifest.clone())
            .send(),
    )
}

pub fn delete(client: &Client, url: String) -> Reply {
    reply(client.delete(url).send())
}

/// Uploads the config and every layer of `image` (POST, then PUT `?digest=` with the body).
pub fn upload_blobs(client: &Client, url: &str, repo: &str, image: &Image) -> Result<(), String> {
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        try_push_blob(client, url, repo, blob, false).map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub fn hex_of(digest: &str) -> String {
    digest.trim_start_matches("sha256:").to_string()
}

/// Names of every regular file under `data_dir/blobs/` (a GC may remove directories while
/// this walks: a vanished directory counts as empty).
pub fn blob_files(data_dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![data_dir.join("blobs")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => stack.push(entry.path()),
                Ok(_) => files.push(entry.file_name().to_string_lossy().into_owned()),
                Err(_) => {}
            }
        }
    }
    files
}

/// Asserts `repo:reference` serves `image` byte-identical and every blob it references
/// digest-correct.
#[track_caller]
pub fn assert_pulls(client: &Client, url: &str, repo: &str, reference: &str, image: &Image) {
    let (status, digest, body) = fetch_manifest(client, url, repo, reference);
    assert_eq!(status, 200, "{repo}:{reference} is gone");
    assert_eq!(
        digest.as_deref(),
        Some(image.digest.as_str()),
        "{repo}:{reference}"
    );
    assert!(
        body == image.manifest,
        "{repo}:{reference} serves other bytes"
    );
    for blob in image.blob_digests() {
        let (status, bytes) = fetch_blob(client, url, repo, &blob);
        assert_eq!(status, 200, "blob {blob} of {repo}:{reference} is gone");
        assert_eq!(sha256_digest(&bytes), blob, "blob of {repo}:{reference}");
    }
}

#[track_caller]
pub fn assert_fsck_clean(berth: &Berth, when: &str) {
    let (clean, report) = berth.fsck();
    assert!(clean, "fsck {when} found problems:\n{report}");
}

/// Asserts the manifest `digest` is not served from `repo` (it was deleted by 202).
#[track_caller]
pub fn assert_deleted(client: &Client, url: &str, repo: &str, digest: &str) {
    let (status, _, _) = fetch_manifest(client, url, repo, digest);
    assert_eq!(status, 404, "deleted {digest} in {repo} is served");
}

/// Hex names of every blob `images` reference.
pub fn blob_hexes<'a>(images: impl Iterator<Item = &'a Image>) -> HashSet<String> {
    images
        .flat_map(Image::blob_digests)
        .map(|d| hex_of(&d))
        .collect()
}

/// Polls the files under blobs/ until `left` (what GC still has to remove) says nothing, for
/// at most 30 s; every look asserts that no blob in `live` has gone.
#[track_caller]
pub fn await_gc(berth: &Berth, live: &HashSet<String>, left: impl Fn(&[String]) -> Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let files = blob_files(&berth.data_dir);
        let on_disk: HashSet<&String> = files.iter().collect();
        let missing: Vec<&String> = live.iter().filter(|h| !on_disk.contains(h)).collect();
        assert!(missing.is_empty(), "live blobs gone from disk: {missing:?}");
        let Some(left) = left(&files) else { return };
        assert!(Instant::now() < deadline, "GC did not finish: {left}");
        thread::sleep(Duration::from_millis(250));
    }
}

// ---------------------------------------------------------------------------------------
// L3: push / delete / GC race.

/// How long any GC effect may take to show.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `done` every 100 ms; panics naming `what` after [`DEADLINE`].
#[track_caller]
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "waited {DEADLINE:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GC passes finished so far (`zot_gc_runs_total`, both outcomes).
pub fn gc_runs(client: &Client, berth: &Berth) -> f64 {
    scrape_metrics(client, &berth.url).sum("zot_gc_runs_total", &[])
}

/// Waits until `n` more GC passes have finished (the last of them started after this call).
pub fn await_passes(client: &Client, berth: &Berth, n: u32) {
    let start = gc_runs(client, berth);
    eventually("GC passes", || {
        gc_runs(client, berth) >= start + f64::from(n)
    });
}

/// `zot_gc_deleted_total{type}` (0 when the series is absent).
pub fn deleted(client: &Client, berth: &Berth, kind: &str) -> f64 {
    scrape_metrics(client, &berth.url)
        .value("zot_gc_deleted_total", &[("type", kind)])
        .unwrap_or(0.0)
}

/// True when a file named by `digest`'s hex exists anywhere under `data_dir/blobs`.
pub fn on_disk(berth: &Berth, digest: &str) -> bool {
    fn find(dir: &Path, name: &str) -> bool {
        std::fs::read_dir(dir).into_iter().flatten().any(|entry| {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                find(&path, name)
            } else {
                path.file_name().is_some_and(|n| n == name)
            }
        })
    }
    let (_, hex) = digest.split_once(':').expect("algorithm:hex");
    find(&berth.data_dir.join("blobs"), hex)
}

pub fn head(client: &Client, url: String) -> u16 {
    client.head(url).send().expect("HEAD").status().as_u16()
}

pub fn tags(client: &Client, berth: &Berth, repo: &str) -> Vec<String> {
    let (_, body) = get_json(client, &format!("{}/v2/{repo}/tags/list", berth.url));
    let mut tags: Vec<String> = serde_json::from_value(body["tags"].clone()).unwrap_or_default();
    tags.sort();
    tags
}

#[track_caller]
pub fn stop_and_fsck(berth: &mut Berth) {
    berth.stop();
    let (clean, report) = berth.fsck();
    assert!(clean, "fsck after GC:\n{report}");
}
