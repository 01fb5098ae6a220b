//! Whole-registry snapshots, for "a rejected request changed nothing" assertions.
//!
//! Owns: [`Snapshot`] (what a client can observe over HTTP plus the blob files on disk) and
//! [`assert_no_state_change`].
//!
//! Rules: a snapshot only reads (GET/HEAD); it observes the catalog, every repository's tags,
//! every tag's manifest (digest and exact bytes), the HEAD status of every known digest as a
//! blob and as a manifest in every repository, and the sorted (path, size) list of files under
//! `data_dir/blobs`. Two snapshots compare with `==`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{fetch_manifest, http, Berth, Client};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// `GET /v2/_catalog` (all pages): status and repository names.
    pub catalog: (u16, Vec<String>),
    pub repositories: BTreeMap<String, RepositorySnapshot>,
    /// Files under `data_dir/blobs`, relative path and size, sorted.
    pub blob_files: Vec<(String, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositorySnapshot {
    /// `GET tags/list` status and tags.
    pub tags: (u16, Vec<String>),
    /// tag -> (status, Docker-Content-Digest, body)
    pub manifests: BTreeMap<String, (u16, Option<String>, Vec<u8>)>,
    /// known digest -> (HEAD blob status, HEAD manifest status)
    pub digests: BTreeMap<String, (u16, u16)>,
}

/// Follows `Link: <...>; rel="next"` pages of a catalog or tags list, collecting `key`.
/// Returns the first non-200 status (or 200) and every name seen.
fn get_list(client: &Client, base_url: &str, path: &str, key: &str) -> (u16, Vec<String>) {
    let mut names = Vec::new();
    let mut next = Some(path.to_string());
    let mut pages = 0;
    while let Some(path) = next.take() {
        pages += 1;
        assert!(pages < 10_000, "pagination of {path} does not end");
        let response = client
            .get(format!("{base_url}{path}"))
            .send()
            .expect("snapshot GET");
        let status = response.status().as_u16();
        if status != 200 {
            return (status, names);
        }
        next = response
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(|link| Some(link.split_once('<')?.1.split_once('>')?.0.to_string()))
            .map(|target| match target.find("/v2/") {
                Some(at) => target[at..].to_string(),
                None => target,
            });
        let body: serde_json::Value =
            serde_json::from_slice(&response.bytes().expect("snapshot body")).unwrap_or_default();
        names.extend(
            body[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string)),
        );
    }
    (200, names)
}

fn head_status(client: &Client, url: &str, accept: Option<&str>) -> u16 {
    let mut request = client.head(url);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    request.send().expect("snapshot HEAD").status().as_u16()
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let entry = entry.expect("read blobs dir entry");
        let path = entry.path();
        let meta = entry.metadata().expect("stat blobs dir entry");
        if meta.is_dir() {
            list_files(root, &path, out);
        } else {
            let relative = path.strip_prefix(root).expect("under root");
            out.push((relative.display().to_string(), meta.len()));
        }
    }
}

/// Observes the registry (see the module doc). `known_blobs` are digests (blobs or manifests)
/// whose presence in each repository should be recorded.
pub fn snapshot(berth: &Berth, known_blobs: &[String]) -> Snapshot {
    let client = http();
    let url = &berth.url;
    let (status, names) = get_list(&client, url, "/v2/_catalog", "repositories");
    let mut repositories = BTreeMap::new();
    for repo in &names {
        let (tag_status, mut tags) =
            get_list(&client, url, &format!("/v2/{repo}/tags/list"), "tags");
        tags.sort();
        let manifests = tags
            .iter()
            .map(|tag| (tag.clone(), fetch_manifest(&client, url, repo, tag)))
            .collect();
        let digests = known_blobs
            .iter()
            .map(|digest| {
                let blob = head_status(&client, &format!("{url}/v2/{repo}/blobs/{digest}"), None);
                let manifest = head_status(
                    &client,
                    &format!("{url}/v2/{repo}/manifests/{digest}"),
                    Some(crate::MANIFEST_ACCEPT),
                );
                (digest.clone(), (blob, manifest))
            })
            .collect();
        repositories.insert(
            repo.clone(),
            RepositorySnapshot {
                tags: (tag_status, tags),
                manifests,
                digests,
            },
        );
    }
    let mut blob_files = Vec::new();
    let blobs_root = berth.data_dir.join("blobs");
    list_files(&blobs_root, &blobs_root, &mut blob_files);
    blob_files.sort();
    Snapshot {
        catalog: (status, names),
        repositories,
        blob_files,
    }
}

/// Snapshots the registry, runs `f`, snapshots again and asserts both are equal.
pub fn assert_no_state_change<F: FnOnce()>(berth: &Berth, known_blobs: &[String], f: F) {
    let before = snapshot(berth, known_blobs);
    f();
    let after = snapshot(berth, known_blobs);
    assert_eq!(before, after, "registry state changed");
}
