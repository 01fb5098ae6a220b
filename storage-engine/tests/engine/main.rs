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
mod listing;
mod manifests;
mod mirror;
mod model;
mod power_loss;
mod scrub;
mod search;
mod search_upgrade;
mod sessions;
mod shared;
mod shared_gc;
mod shared_uploads;
mod ssologins;
mod trust;
mod uploads_open;

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
        s3: crate::s3_blobs(root),
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

/// The bucket for the engine at `root` when the suite keeps blobs in S3
/// (`BERTH_TEST_BLOBS=s3`): one SeaweedFS cluster for the test binary (berth-tests'
/// `seaweedfs_shared`, removed at exit), each root its own root directory in its bucket, so
/// a reopened root finds its blobs.
pub fn s3_blobs(root: &Path) -> Option<berth_storage::S3Options> {
    if !on_s3() {
        return None;
    }
    let endpoint = berth_tests::seaweedfs_shared::endpoint()
        .expect("BERTH_TEST_BLOBS=s3 needs SeaweedFS's `weed` (scripts/test installs it)");
    let hash = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    Some(berth_storage::S3Options {
        bucket: berth_tests::seaweedfs_shared::BUCKET.to_owned(),
        region: berth_tests::seaweedfs::REGION.to_owned(),
        endpoint: Some(endpoint),
        secure: false,
        skip_verify: false,
        access_key: Some(berth_tests::seaweedfs::ACCESS_KEY.to_owned()),
        secret_key: Some(berth_tests::seaweedfs::SECRET_KEY.to_owned()),
        root_directory: format!("engine/{}", hex::encode(&hash[..12])),
        force_path_style: true,
    })
}

/// True when the suite keeps blobs in S3.
pub fn on_s3() -> bool {
    std::env::var("BERTH_TEST_BLOBS").as_deref() == Ok("s3")
}

/// Prints why a test that inspects blob files on disk does not run on S3; true then.
pub fn skip_on_s3(why: &str) -> bool {
    if on_s3() {
        eprintln!("SKIPPED: {why} (BERTH_TEST_BLOBS=s3)");
    }
    on_s3()
}

/// The object of `digest` for the engine at `root` (S3 suite), for tests that damage blobs
/// behind the engine's back.
pub fn blob_object(
    root: &Path,
    digest: &Digest,
) -> (object_store::aws::AmazonS3, object_store::path::Path) {
    let options = s3_blobs(root).expect("the suite runs on S3");
    let client = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(options.endpoint.clone().expect("an endpoint"))
        .with_allow_http(true)
        .with_region(&options.region)
        .with_access_key_id(options.access_key.clone().expect("a key"))
        .with_secret_access_key(options.secret_key.clone().expect("a secret"))
        .with_bucket_name(&options.bucket)
        .build()
        .expect("object_store client builds");
    let key = object_store::path::Path::from(format!(
        "{}/blobs/{}/{}",
        options.root_directory,
        digest.algorithm().name(),
        digest.hex()
    ));
    (client, key)
}

/// Replaces (or plants) the blob's bytes: on disk, or in the bucket on the S3 suite.
pub async fn write_blob_bytes(engine: &Engine, root: &Path, digest: &Digest, bytes: &[u8]) {
    if on_s3() {
        use object_store::ObjectStoreExt as _;
        let (client, key) = blob_object(root, digest);
        client
            .put(&key, bytes.to_vec().into())
            .await
            .expect("PUT the object");
    } else {
        let path = engine.blob_path(digest);
        std::fs::create_dir_all(path.parent().expect("a fan-out directory")).expect("mkdir");
        std::fs::write(path, bytes).expect("write the blob file");
    }
}

/// Removes the blob's bytes behind the engine's back: on disk, or in the bucket on S3.
pub async fn remove_blob_bytes(engine: &Engine, root: &Path, digest: &Digest) {
    if on_s3() {
        use object_store::ObjectStoreExt as _;
        let (client, key) = blob_object(root, digest);
        client.delete(&key).await.expect("DELETE the object");
    } else {
        std::fs::remove_file(engine.blob_path(digest)).expect("remove the blob file");
    }
}

/// Whether the blob's bytes are stored: a file, or an object on the S3 suite.
pub async fn blob_bytes_exist(engine: &Engine, root: &Path, digest: &Digest) -> bool {
    if on_s3() {
        use object_store::ObjectStoreExt as _;
        let (client, key) = blob_object(root, digest);
        match client.head(&key).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(error) => panic!("HEAD {key}: {error}"),
        }
    } else {
        engine.blob_path(digest).exists()
    }
}

/// How many blobs are stored: files under `blobs/`, or objects on the S3 suite.
pub async fn stored_blob_count(root: &Path) -> usize {
    if on_s3() {
        bucket_keys(root, "blobs").await.len()
    } else {
        files_under(&root.join("blobs")).len()
    }
}

/// The keys under `top` (`blobs`, `uploads`) of the engine at `root`'s bucket (S3 suite).
pub async fn bucket_keys(root: &Path, top: &str) -> Vec<String> {
    use futures_util::TryStreamExt as _;
    use object_store::ObjectStore as _;
    let (client, _) = blob_object(root, &sha256(b""));
    let options = s3_blobs(root).expect("the suite runs on S3");
    let prefix = object_store::path::Path::from(format!("{}/{top}", options.root_directory));
    let listed: Vec<object_store::ObjectMeta> = client
        .list(Some(&prefix))
        .try_collect()
        .await
        .expect("LIST");
    listed
        .into_iter()
        .map(|meta| meta.location.to_string())
        .collect()
}

/// The blob's bytes as stored (file or object).
pub async fn stored_blob_bytes(engine: &Engine, digest: &Digest) -> Vec<u8> {
    engine
        .read_blob_bytes(digest, u64::MAX)
        .await
        .expect("read the blob")
        .expect("the blob is stored")
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
