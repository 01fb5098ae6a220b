//! The S3 blob layer (`S3Blobs`, src/s3) against a real SeaweedFS cluster (berth-tests'
//! `SeaweedCluster`: three volume servers, replication 001).
//!
//! One cluster serves the whole test binary (berth-tests' `seaweedfs_shared`: started at first
//! use, removed at exit). Each test works under its own root directory of one bucket, so tests
//! stay independent while running in parallel. The one test that kills a volume server takes
//! the cluster exclusively, since writes in flight during the kill could fail.
//!
//! Without `weed` the tests print SKIPPED and pass, unless `BERTH_REQUIRE_TOOLS=1`.
mod blobs;
mod clients;
mod figures;
mod multipart;

use std::future::Future;
use std::time::Duration;

use berth_storage::oci::{Algorithm, Digest};
use berth_storage::{S3Blobs, S3Options};
use berth_tests::seaweedfs::SeaweedCluster;
use berth_tests::seaweedfs_shared as cluster;

/// Bound of one test's async work: a hang (the pooled-connection bug) fails instead of
/// blocking the run.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The one bucket of the tests.
pub const BUCKET: &str = cluster::BUCKET;

/// A root directory of its own in the shared bucket, and the S3 options to use it.
pub struct Bucket {
    pub options: S3Options,
    _shared: cluster::Shared,
}

/// Exclusive use of the cluster (killing servers).
pub struct Exclusive {
    pub options: S3Options,
    exclusive: cluster::Exclusive,
}

impl Exclusive {
    pub fn with_cluster<T>(&self, work: impl FnOnce(&mut SeaweedCluster) -> T) -> T {
        self.exclusive.with_cluster(work)
    }
}

/// The S3 options of `root_directory` in the shared bucket of the cluster at `endpoint`.
pub fn options(endpoint: &str, root_directory: &str) -> S3Options {
    S3Options {
        bucket: BUCKET.to_owned(),
        region: berth_tests::seaweedfs::REGION.to_owned(),
        endpoint: Some(endpoint.to_owned()),
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
    let shared = cluster::shared()?;
    Some(Bucket {
        options: options(&shared.endpoint, root_directory),
        _shared: shared,
    })
}

/// A root directory and the cluster to oneself.
pub fn exclusive_bucket(root_directory: &str) -> Option<Exclusive> {
    let exclusive = cluster::exclusive()?;
    Some(Exclusive {
        options: options(&exclusive.endpoint, root_directory),
        exclusive,
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
