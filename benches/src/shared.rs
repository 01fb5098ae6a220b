//! `berth-bench compare --backend shared`: both registries on the same S3-compatible cluster
//! (SeaweedFS: one master, three volume servers with replication 001, a filer and its S3
//! gateway, started by berth-tests' harness), berth's index in PostgreSQL (a throwaway server)
//! and Distribution's blob-descriptor cache in Redis (Debian's `redis-server`), as issue 20
//! asks. Each registry started gets a key prefix of its own in the bucket (and berth a schema
//! of its own), so every round starts empty, as with the files backend.
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_tests::postgres::Postgres;
use berth_tests::seaweedfs::{SeaweedCluster, ACCESS_KEY, REGION, SECRET_KEY};

/// The bucket both registries use.
pub const BUCKET: &str = "bench";

/// The running services and where they are.
pub struct SharedServices {
    pub s3_endpoint: String,
    pub postgres_url: String,
    pub redis_addr: String,
    redis: Child,
    // Dropped last: they stop (with their data) when the comparison ends.
    _postgres: Postgres,
    _cluster: SeaweedCluster,
}

impl SharedServices {
    /// Starts SeaweedFS, PostgreSQL and Redis (installing `redis-server` when missing).
    pub fn start(parent: &Path) -> Result<SharedServices> {
        ensure_redis()?;
        eprintln!("berth-bench: starting SeaweedFS (3 volume servers), PostgreSQL and Redis");
        let cluster = SeaweedCluster::start();
        cluster.create_bucket(BUCKET);
        let postgres = Postgres::start();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let redis = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(parent)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        let redis_addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&redis_addr).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not listen on {redis_addr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(SharedServices {
            s3_endpoint: cluster.s3_endpoint(),
            postgres_url: postgres.url(),
            redis_addr,
            redis,
            _postgres: postgres,
            _cluster: cluster,
        })
    }

    /// berth's `storage` section for a registry whose data lives under `prefix`.
    pub fn berth_storage(&self, root: &Path, prefix: &str, commit: bool) -> serde_json::Value {
        serde_json::json!({
            "rootDirectory": root,
            "commit": commit,
            "storageDriver": {
                "name": "s3", "region": REGION, "bucket": BUCKET,
                "regionendpoint": self.s3_endpoint, "rootdirectory": prefix,
                "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY,
            },
            "index": {"postgres": {"url": self.postgres_url, "schema": prefix}},
        })
    }

    /// Distribution's `storage`, `redis` sections (YAML) for a registry under `prefix`.
    pub fn distribution_storage(&self, prefix: &str) -> String {
        format!(
            "storage:\n  s3:\n    region: {REGION}\n    regionendpoint: {}\n    bucket: {BUCKET}\n    \
             rootdirectory: /{prefix}\n    accesskey: {ACCESS_KEY}\n    secretkey: {SECRET_KEY}\n    \
             secure: false\n    v4auth: true\n  delete:\n    enabled: true\n  redirect:\n    \
             disable: true\n  cache:\n    blobdescriptor: redis\nredis:\n  addr: {}\n",
            self.s3_endpoint, self.redis_addr
        )
    }
}

impl Drop for SharedServices {
    fn drop(&mut self) {
        crate::procs::stop_child(&mut self.redis, Duration::from_secs(5));
    }
}

/// Installs Debian's redis-server when it is missing.
fn ensure_redis() -> Result<()> {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok()
    {
        return Ok(());
    }
    eprintln!("berth-bench: installing redis-server");
    let apt = |args: &[&str]| -> Result<()> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
        if !status.success() {
            bail!("apt-get {args:?} failed");
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "redis-server"])
}
