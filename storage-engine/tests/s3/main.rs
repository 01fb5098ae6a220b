//! The S3 blob layer (`S3Blobs`, src/s3) against a real SeaweedFS cluster (berth-tests'
//! `SeaweedCluster`: three volume servers, replication 001).
//!
//! One cluster serves the whole test binary: it is started by the first test that needs it
//! (`harness()`), and stopped by an `atexit` handler, since a `static` is never dropped. A
//! cluster costs about a second and 350 MiB, so one per test would cost more than the tests.
//! Each test works under its own root directory of one bucket, so tests stay independent while
//! running in parallel. (Not a bucket each: SeaweedFS gives every bucket its own collection of
//! volumes, and a dozen buckets exhaust the small cluster's volume slots: PUTs then fail with
//! 500 InternalError.) The one test that kills a volume server takes the cluster exclusively
//! (a write lock every other test holds for reading), since writes in flight during the kill
//! could fail.
//!
//! Without `weed` the tests print SKIPPED and pass, unless `BERTH_REQUIRE_TOOLS=1`.
mod blobs;
mod clients;
mod figures;
mod multipart;

use std::future::Future;
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use berth_storage::oci::{Algorithm, Digest};
use berth_storage::{S3Blobs, S3Options};
use berth_tests::seaweedfs::{seaweedfs_available, SeaweedCluster};

/// Bound of one test's async work: a hang (the pooled-connection bug) fails instead of
/// blocking the run.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The one bucket of the tests.
pub const BUCKET: &str = "berth-s3-tests";

struct Harness {
    cluster: Mutex<Option<SeaweedCluster>>,
    endpoint: String,
    /// Read by every test, written by the one that kills a volume server.
    gate: RwLock<()>,
}

static HARNESS: OnceLock<Option<Harness>> = OnceLock::new();

extern "C" fn stop_cluster_at_exit() {
    if let Some(Some(harness)) = HARNESS.get() {
        let taken = match harness.cluster.try_lock() {
            Ok(mut cluster) => cluster.take(),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner().take(),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        // Drop SIGKILLs the servers and removes the cluster's directory.
        drop(taken);
    }
}

fn harness() -> Option<&'static Harness> {
    HARNESS
        .get_or_init(|| {
            if !seaweedfs_available() {
                return None;
            }
            let cluster = SeaweedCluster::start();
            let endpoint = cluster.s3_endpoint();
            cluster.create_bucket(BUCKET);
            // SAFETY: registers a plain function with no arguments, run once at exit.
            let registered = unsafe { libc::atexit(stop_cluster_at_exit) };
            assert_eq!(registered, 0, "atexit registration");
            Some(Harness {
                cluster: Mutex::new(Some(cluster)),
                endpoint,
                gate: RwLock::new(()),
            })
        })
        .as_ref()
}

/// A root directory of its own in the shared bucket, and the S3 options to use it.
pub struct Bucket {
    pub options: S3Options,
    _shared: RwLockReadGuard<'static, ()>,
}

/// Exclusive use of the cluster (killing servers).
pub struct Exclusive {
    pub options: S3Options,
    harness: &'static Harness,
    _exclusive: RwLockWriteGuard<'static, ()>,
}

impl Exclusive {
    pub fn with_cluster<T>(&self, work: impl FnOnce(&mut SeaweedCluster) -> T) -> T {
        let mut cluster = self
            .harness
            .cluster
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        work(cluster.as_mut().expect("the cluster runs until exit"))
    }
}

fn options(harness: &Harness, root_directory: &str) -> S3Options {
    S3Options {
        bucket: BUCKET.to_owned(),
        region: berth_tests::seaweedfs::REGION.to_owned(),
        endpoint: Some(harness.endpoint.clone()),
        secure: false,
        skip_verify: false,
        access_key: Some(berth_tests::seaweedfs::ACCESS_KEY.to_owned()),
        secret_key: Some(berth_tests::seaweedfs::SECRET_KEY.to_owned()),
        root_directory: root_directory.to_owned(),
        force_path_style: true,
    }
}

/// A test's root directory on the shared cluster (`None`: SeaweedFS is not installed, skip).
/// Each test names its own.
pub fn bucket(root_directory: &str) -> Option<Bucket> {
    let harness = harness()?;
    let shared = harness
        .gate
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Some(Bucket {
        options: options(harness, root_directory),
        _shared: shared,
    })
}

/// A root directory and the cluster to oneself.
pub fn exclusive_bucket(root_directory: &str) -> Option<Exclusive> {
    let harness = harness()?;
    let exclusive = harness
        .gate
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Some(Exclusive {
        options: options(harness, root_directory),
        harness,
        _exclusive: exclusive,
    })
}

/// Runs `work` on a current-thread runtime of the calling thread, bounded by
/// [`TEST_TIMEOUT`].
pub fn block_on<F: Future>(work: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async {
            tokio::time::timeout(TEST_TIMEOUT, work)
                .await
                .expect("S3 work finished within the test timeout (a hang?)")
        })
}

/// Runs `work` on a new thread with its own current-thread runtime: another "node".
pub fn on_thread<T, F>(work: impl FnOnce() -> F + Send) -> T
where
    T: Send,
    F: Future<Output = T>,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| block_on(work()))
            .join()
            .expect("the thread's work did not panic")
    })
}

/// `len` bytes of a seeded pseudo-random pattern.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub fn sha256(bytes: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, bytes)
}

pub fn blobs(options: &S3Options) -> S3Blobs {
    S3Blobs::new(options.clone()).expect("valid S3 options")
}

/// A raw object_store client on the same bucket: to plant or inspect objects behind the
/// blob layer's back.
pub fn raw_client(options: &S3Options) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(options.endpoint.clone().expect("an endpoint"))
        .with_allow_http(true)
        .with_region(&options.region)
        .with_access_key_id(options.access_key.clone().expect("a key"))
        .with_secret_access_key(options.secret_key.clone().expect("a secret"))
        .with_bucket_name(&options.bucket)
        .build()
        .expect("object_store client builds")
}

/// The root directory's prefix of keys ("" or "root/").
pub fn root(options: &S3Options) -> String {
    match options.root_directory.trim_matches('/') {
        "" => String::new(),
        root => format!("{root}/"),
    }
}

/// Every key under `<root>/<prefix>`, relative to the root, sorted.
pub async fn keys(options: &S3Options, prefix: &str) -> Vec<String> {
    let root = root(options);
    raw_keys(options, &format!("{root}{prefix}"))
        .await
        .into_iter()
        .map(|key| key.strip_prefix(&root).expect("under the root").to_owned())
        .collect()
}

/// Every key in the bucket under `prefix`, sorted.
pub async fn raw_keys(options: &S3Options, prefix: &str) -> Vec<String> {
    use futures_util::TryStreamExt as _;
    use object_store::ObjectStore as _;
    let prefix = object_store::path::Path::from(prefix.trim_end_matches('/'));
    let mut keys: Vec<String> = raw_client(options)
        .list(Some(&prefix))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .expect("LIST");
    keys.sort();
    keys
}
