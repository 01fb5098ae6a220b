//! One SeaweedFS cluster per test binary, shared by its tests: started by the first test that
//! asks (`shared()`), stopped by an `atexit` handler (a `static` is never dropped). A cluster
//! costs about a second and 350 MiB, so one per test would cost more than the tests.
//!
//! Tests share one bucket ([`BUCKET`]) and each works under a root directory of its own (not
//! a bucket each: SeaweedFS gives every bucket its own collection of volumes, and a dozen
//! buckets exhaust the small cluster's volume slots: PUTs then fail with 500 InternalError).
//! A test that kills servers takes the cluster exclusively (`exclusive()`, a write lock every
//! other user holds for reading through `shared()`), since writes in flight could fail.
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::seaweedfs::{seaweedfs_available, SeaweedCluster};

/// The one bucket of a test binary's cluster.
pub const BUCKET: &str = "berth-tests";

struct Harness {
    cluster: Mutex<Option<SeaweedCluster>>,
    endpoint: String,
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
            // On a thread of its own: the harness's blocking HTTP client must not run inside
            // the async context of a test that happens to ask first.
            let (cluster, endpoint) = std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        let cluster = SeaweedCluster::start();
                        cluster.create_bucket(BUCKET);
                        let endpoint = cluster.s3_endpoint();
                        (cluster, endpoint)
                    })
                    .join()
                    .expect("the SeaweedFS cluster starts")
            });
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

/// Shared use of the cluster: its S3 endpoint, valid while the guard lives.
pub struct Shared {
    pub endpoint: String,
    _shared: RwLockReadGuard<'static, ()>,
}

/// The cluster to oneself (killing servers).
pub struct Exclusive {
    pub endpoint: String,
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

/// The binary's cluster, started at first use (`None`: SeaweedFS is not installed).
pub fn shared() -> Option<Shared> {
    let harness = harness()?;
    let shared = harness
        .gate
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Some(Shared {
        endpoint: harness.endpoint.clone(),
        _shared: shared,
    })
}

/// The binary's cluster, to oneself until the guard is dropped.
pub fn exclusive() -> Option<Exclusive> {
    let harness = harness()?;
    let exclusive = harness
        .gate
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Some(Exclusive {
        endpoint: harness.endpoint.clone(),
        harness,
        _exclusive: exclusive,
    })
}

/// The cluster's endpoint without holding the gate (a harness that lives as long as the
/// process, e.g. an engine suite that never kills servers).
pub fn endpoint() -> Option<String> {
    harness().map(|harness| harness.endpoint.clone())
}
