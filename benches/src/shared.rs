//! `berth-bench compare --backend shared`: both registries on the same S3-compatible cluster
//! (SeaweedFS: one master, three volume servers with replication 001, a filer and its S3
//! gateway, started by berth-tests' harness at its bench capacity), berth's index in
//! PostgreSQL (a throwaway server) and Distribution's blob-descriptor cache in Redis (Debian's
//! `redis-server`), as issue 20 asks. Beside them: berth as three nodes of one registry behind
//! Debian's `haproxy` (round robin), the same three nodes with the load tool spreading its
//! connections over them (no balancer process on the two cores), and berth on its embedded
//! backend.
//!
//! Each registry started gets a bucket of its own (plus a key prefix, and for berth a
//! PostgreSQL schema), so every round starts empty; the bucket is deleted when the registry
//! stops, which gives its space back at once (rounds of 100 MB pushes would otherwise fill
//! the cluster: deleted objects only return space at SeaweedFS's next vacuum).
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_tests::postgres::Postgres;
use berth_tests::seaweedfs::{Capacity, SeaweedCluster, ACCESS_KEY, REGION, SECRET_KEY};

use crate::procs::{self, Kind, Names, Registry};

/// The running services and where they are.
pub struct SharedServices {
    pub s3_endpoint: String,
    pub postgres_url: String,
    pub redis_addr: String,
    redis: Child,
    // Dropped last: they stop (with their data) when the comparison ends.
    _postgres: Postgres,
    cluster: SeaweedCluster,
}

impl SharedServices {
    /// Starts SeaweedFS, PostgreSQL and Redis (installing `redis-server` and `haproxy` when
    /// missing).
    pub fn start(parent: &Path) -> Result<SharedServices> {
        procs::ensure_package("redis-server", "redis-server")?;
        procs::ensure_package("haproxy", "haproxy")?;
        eprintln!("berth-bench: starting SeaweedFS (3 volume servers), PostgreSQL and Redis");
        let cluster = SeaweedCluster::start_with(Capacity::BENCH);
        let postgres = Postgres::start();
        let port = procs::free_port()?;
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
            cluster,
        })
    }

    /// Creates the bucket of a registry called `names`; returns its name.
    pub fn new_bucket(&self, names: &Names) -> String {
        self.cluster.create_bucket(&names.bucket);
        names.bucket.clone()
    }

    /// Deletes a stopped registry's bucket with its objects and volumes.
    pub fn remove_bucket(&self, bucket: &str) {
        self.cluster.delete_bucket(bucket);
    }

    /// berth's `storage` section for a registry whose blobs live in `bucket` under `prefix`,
    /// and whose index is the PostgreSQL schema `prefix`.
    pub fn berth_storage(
        &self,
        root: &Path,
        bucket: &str,
        prefix: &str,
        commit: bool,
    ) -> serde_json::Value {
        serde_json::json!({
            "rootDirectory": root,
            "commit": commit,
            "storageDriver": {
                "name": "s3", "region": REGION, "bucket": bucket,
                "regionendpoint": self.s3_endpoint, "rootdirectory": prefix,
                "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY,
            },
            "index": {"postgres": {"url": self.postgres_url, "schema": prefix}},
        })
    }

    /// Distribution's `storage`, `redis` sections (YAML) for a registry in `bucket` under
    /// `prefix`.
    pub fn distribution_storage(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "storage:\n  s3:\n    region: {REGION}\n    regionendpoint: {}\n    bucket: {bucket}\n    \
             rootdirectory: /{prefix}\n    accesskey: {ACCESS_KEY}\n    secretkey: {SECRET_KEY}\n    \
             secure: false\n    v4auth: true\n  delete:\n    enabled: true\n  redirect:\n    \
             disable: true\n  cache:\n    blobdescriptor: redis\nredis:\n  addr: {}\n",
            self.s3_endpoint, self.redis_addr
        )
    }
}

impl Drop for SharedServices {
    fn drop(&mut self) {
        procs::stop_child(&mut self.redis, Duration::from_secs(5));
    }
}

/// Nodes of [`Kind::BerthNodes`], [`Kind::BerthNodesSpread`] and [`Kind::DistributionNodes`].
pub const NODES: usize = 3;

/// Starts [`NODES`] nodes of one registry on the shared services (one bucket, one schema or
/// Redis, each node on a port of its own; Distribution's nodes share an `http.secret`, which
/// its upload state needs across nodes). For [`Kind::BerthNodes`] and
/// [`Kind::DistributionNodes`], haproxy in front of them balances requests round robin over
/// keep-alive connections, as a user would deploy them; the registry's address is haproxy's,
/// and its CPU and memory figures include haproxy's. For [`Kind::BerthNodesSpread`] the
/// address is the first node's, and the load tool spreads its connections over `nodes`.
pub fn start_nodes(
    kind: Kind,
    berth_bin: &Path,
    parent: &Path,
    shared: &SharedServices,
) -> Result<Registry> {
    if !matches!(
        kind,
        Kind::BerthNodes | Kind::BerthNodesSpread | Kind::DistributionNodes
    ) {
        bail!("{} is not several nodes", kind.label());
    }
    let (dir, names) = Registry::fresh_dir(kind, parent)?;
    let bucket = shared.new_bucket(&names);
    let log = dir.path().join("log");
    let mut processes = Vec::new();
    let mut nodes = Vec::new();
    let mut servers = String::new();
    for node in 0..NODES {
        let port = procs::free_port()?;
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let mut command = match kind {
            Kind::DistributionNodes => {
                let config = dir.path().join(format!("node{node}.yml"));
                std::fs::write(
                    &config,
                    format!(
                        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                         {}http:\n  addr: {addr}\n  secret: {}\n",
                        shared.distribution_storage(&bucket, &names.prefix),
                        names.prefix
                    ),
                )?;
                let mut command = Command::new("docker-registry");
                command.arg("serve").arg(config).env_remove("AWS_CA_BUNDLE");
                command
            }
            _ => {
                let data = dir.path().join(format!("node{node}"));
                let config = dir.path().join(format!("node{node}.json"));
                let document = serde_json::json!({
                    "storage": shared.berth_storage(&data, &bucket, &names.prefix, true),
                    "http": {"address": "127.0.0.1", "port": port.to_string()},
                    "log": {"level": "error"},
                });
                std::fs::write(&config, serde_json::to_vec_pretty(&document)?)?;
                let mut command = Command::new(berth_bin);
                command.arg("serve").arg(config);
                command
            }
        };
        let label = format!("{} node {node}", kind.label());
        let started = procs::spawn_ready(&label, &mut command, &log, addr, true);
        keep_or_kill_all(&mut processes, started)?;
        servers.push_str(&format!("  server node{node} {addr}\n"));
        nodes.push(addr);
    }
    if kind == Kind::BerthNodesSpread {
        return Registry::assembled(kind, nodes[0], nodes, Some(bucket), processes, log, dir);
    }
    let port = procs::free_port()?;
    let config = dir.path().join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 4096\n\
             defaults\n  mode http\n  option splice-auto\n  timeout connect 5s\n  \
             timeout client 300s\n  timeout server 300s\n\
             frontend registry\n  bind 127.0.0.1:{port}\n  default_backend nodes\n\
             backend nodes\n  balance roundrobin\n{servers}"
        ),
    )?;
    let addr = ([127, 0, 0, 1], port).into();
    let mut command = Command::new("haproxy");
    command.arg("-db").arg("-f").arg(&config);
    let started = procs::spawn_ready("haproxy", &mut command, &log, addr, true);
    keep_or_kill_all(&mut processes, started)?;
    Registry::assembled(kind, addr, nodes, Some(bucket), processes, log, dir)
}

/// Adds a started process to `processes`, or kills them all when it did not start.
fn keep_or_kill_all(processes: &mut Vec<Child>, started: Result<Child>) -> Result<()> {
    match started {
        Ok(child) => {
            processes.push(child);
            Ok(())
        }
        Err(error) => {
            processes.iter_mut().for_each(procs::kill_child);
            Err(error)
        }
    }
}
