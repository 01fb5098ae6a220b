//! Engine tests against a temp dir: a distribution-style suite run against both I/O backends
//! (uring tests run inside `tokio_uring::start`), fault injection, a model-based property
//! test, and the power-loss model (F8).
//!
//! The whole suite runs on either index: RocksDB by default, PostgreSQL with
//! `BERTH_TEST_INDEX=postgres` (scripts/test runs it both ways, SHARED.md step 3). Then one
//! throwaway server (berth-tests' harness) serves the run, each engine root gets a schema of
//! its own (so a reopened root finds its data), and the server is removed at exit.
use std::future::Future;
use std::path::Path;

use berth_storage::oci::{Algorithm, Digest, RepoName, Tag};
use berth_storage::{Engine, EngineOptions, IoBackendKind};
use bytes::Bytes;
use sha2::Digest as _;

mod apikeys;
mod blobs;
mod faults;
mod gc;
mod manifests;
mod mirror;
mod model;
mod power_loss;
mod scrub;
mod search;
mod search_upgrade;
mod sessions;
mod shared;
mod ssologins;
mod trust;

/// Runs a scenario on the runtime its backend needs.
pub fn run<F, Fut>(kind: IoBackendKind, scenario: F)
where
    F: FnOnce(IoBackendKind) -> Fut,
    Fut: Future<Output = ()>,
{
    match kind {
        IoBackendKind::Threads => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(scenario(kind)),
        IoBackendKind::Uring => tokio_uring::start(scenario(kind)),
    }
}

/// Runs `future` on a fresh current-thread runtime: engine calls from a plain `#[test]`.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

/// Generates `threads::<name>` and `uring::<name>` tests for each scenario in the module.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod threads {
            $(#[test] fn $name() { $crate::run(berth_storage::IoBackendKind::Threads, super::$name) })*
        }
        mod uring {
            $(#[test] fn $name() { $crate::run(berth_storage::IoBackendKind::Uring, super::$name) })*
        }
    };
}

pub fn open(root: &Path, kind: IoBackendKind) -> Engine {
    Engine::open(EngineOptions {
        root: root.to_path_buf(),
        commit: true,
        io: kind,
        postgres: crate::postgres_index(root),
    })
    .expect("engine opens")
}

/// The PostgreSQL index for the engine at `root` when the suite runs on PostgreSQL.
pub fn postgres_index(root: &Path) -> Option<berth_storage::PostgresOptions> {
    if !on_postgres() {
        return None;
    }
    let url = postgres_url();
    let hash = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    Some(berth_storage::PostgresOptions {
        url,
        schema: format!("t{}", hex::encode(&hash[..12])),
        pool_size: 4,
    })
}

/// True when the suite runs on the PostgreSQL index.
pub fn on_postgres() -> bool {
    std::env::var("BERTH_TEST_INDEX").as_deref() == Ok("postgres")
}

static POSTGRES: std::sync::Mutex<Option<berth_tests::postgres::Postgres>> =
    std::sync::Mutex::new(None);

/// The suite's server, started at first use and removed when the process exits.
fn postgres_url() -> String {
    let mut server = POSTGRES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if server.is_none() {
        assert!(
            berth_tests::postgres::postgres_available(),
            "BERTH_TEST_INDEX=postgres needs PostgreSQL's server (scripts/test installs it)"
        );
        *server = Some(berth_tests::postgres::Postgres::start());
        extern "C" fn remove_server() {
            if let Ok(mut server) = POSTGRES.lock() {
                server.take();
            }
        }
        // SAFETY: registers a plain function with no captured state.
        unsafe { libc::atexit(remove_server) };
    }
    server.as_ref().expect("started above").url()
}

pub fn repo(name: &str) -> RepoName {
    name.parse().expect("valid repository name")
}

pub fn tag(name: &str) -> Tag {
    name.parse().expect("valid tag")
}

pub fn sha256(bytes: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, bytes)
}

/// Uploads `bytes` into `repo` in `chunks` writes, returning the digest.
pub async fn push_blob(engine: &Engine, repo: &RepoName, bytes: &[u8]) -> Digest {
    let digest = sha256(bytes);
    let id = engine.start_upload(repo).await.expect("start upload");
    let mut writer = engine.open_upload(repo, &id).await.expect("open upload");
    for chunk in bytes.chunks(7) {
        writer
            .write(Bytes::copy_from_slice(chunk))
            .await
            .expect("write chunk");
    }
    let size = writer.finish(&digest).await.expect("finish upload");
    assert_eq!(size, bytes.len() as u64);
    digest
}

/// An image manifest with the given config and layers (as pushed bytes).
pub fn image_manifest(config: &[u8], layers: &[&[u8]], subject: Option<(&Digest, u64)>) -> Bytes {
    let descriptor = |media_type: &str, bytes: &[u8]| serde_json::json!({"mediaType": media_type, "digest": sha256(bytes).to_string(), "size": bytes.len()});
    let mut manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": layers.iter().map(|layer| descriptor("application/vnd.oci.image.layer.v1.tar", layer)).collect::<Vec<_>>(),
    });
    if let Some((digest, size)) = subject {
        manifest["subject"] = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest.to_string(),
            "size": size,
        });
        manifest["artifactType"] = "application/vnd.example.sbom".into();
        manifest["annotations"] = serde_json::json!({"org.example": "yes"});
    }
    Bytes::from(serde_json::to_vec_pretty(&manifest).expect("json"))
}

pub fn index_manifest(children: &[(&Digest, u64)]) -> Bytes {
    let manifests: Vec<_> = children
        .iter()
        .map(|(digest, size)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest.to_string(),
                "size": size,
            })
        })
        .collect();
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .expect("json"),
    )
}

/// Files under `dir` (recursively).
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

pub async fn assert_clean(engine: &Engine) {
    let report = engine.fsck().await.expect("fsck runs");
    assert!(report.is_clean(), "fsck problems: {:?}", report.problems);
}
