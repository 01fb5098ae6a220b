//! The registries the comparison starts: berth (the given binary, embedded defaults plus a
//! data directory, `storage.commit` on or off) and CNCF Distribution (Debian's
//! `docker-registry`, filesystem storage), each on 127.0.0.1 with a fresh data directory under
//! the chosen parent, so both use the same filesystem. For `berth-bench mirror`, either can
//! also start as a pull-through mirror of an upstream registry: berth with an on-demand
//! `extensions.sync` registry, Distribution with `proxy.remoteurl`.
//!
//! Rules: both log at error level only (Distribution's access log off; berth has none yet),
//! so neither pays for logging the other skips. Readiness is `GET /v2/` answering 200. A
//! registry is stopped with SIGTERM (SIGKILL after 10 s) and its data directory removed.
//! Peak RSS per workload comes from /proc (VmHWM, reset through clear_refs before each
//! workload), server CPU time from /proc/PID/stat, the client's own from getrusage(2).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Kind {
    /// berth with its default, durable settings.
    Berth,
    /// CNCF Distribution.
    Distribution,
    /// berth with `storage.commit: false` (no fsync, like Distribution and zot by default).
    BerthNoCommit,
    /// berth as an on-demand (pull-through) mirror of an upstream, default durable settings.
    BerthMirror,
    /// The same mirror with `storage.commit: false` (a diagnostic: what the fsyncs cost).
    BerthMirrorNoCommit,
    /// CNCF Distribution in proxy mode (`proxy.remoteurl`) in front of an upstream.
    DistributionProxy,
    /// In a shared-backend comparison: berth on its embedded backend (local files and
    /// RocksDB), to show what the shared one costs.
    BerthEmbedded,
    /// In a shared-backend comparison: three berth nodes of one registry behind haproxy
    /// (round robin), started by `shared::start_nodes`.
    BerthNodes,
    /// The same three nodes without a balancer: the load tool spreads its connections over
    /// them (`Session::spread`), as DNS round robin or a kernel L4 balancer would.
    BerthNodesSpread,
    /// Three Distribution nodes of one registry behind haproxy, as [`Kind::BerthNodes`].
    DistributionNodes,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Berth => "berth",
            Kind::Distribution => "distribution",
            Kind::BerthNoCommit => "berth commit:false",
            Kind::BerthMirror => "berth mirror",
            Kind::BerthMirrorNoCommit => "berth mirror commit:false",
            Kind::DistributionProxy => "distribution proxy",
            Kind::BerthEmbedded => "berth embedded",
            Kind::BerthNodes => "berth 3 nodes",
            Kind::BerthNodesSpread => "berth 3 nodes spread",
            Kind::DistributionNodes => "distribution 3 nodes",
        }
    }

    /// A pull-through mirror, started with `Registry::start_mirror`.
    pub fn is_mirror(self) -> bool {
        matches!(
            self,
            Kind::BerthMirror | Kind::BerthMirrorNoCommit | Kind::DistributionProxy
        )
    }
}

/// A certificate and key a registry serves HTTPS with (PEM files).
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Registry {
    pub kind: Kind,
    pub addr: SocketAddr,
    /// Several nodes: each node's address (empty for one process).
    pub nodes: Vec<SocketAddr>,
    /// On the shared backend: the bucket of this registry's blobs, which the caller deletes
    /// once the registry has stopped (`SharedServices::remove_bucket`).
    pub bucket: Option<String>,
    child: Child,
    /// Further processes of the registry (more nodes, their load balancer): CPU and memory
    /// figures add them up, and they stop with it.
    others: Vec<Child>,
    log: PathBuf,
    _dir: TempDir,
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `GET path` answers 200 (plain HTTP/1.1 over a std socket).
pub fn answers_ok(addr: SocketAddr, path: &str) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200"))
    };
    attempt().unwrap_or(false)
}

/// Installs Debian's `docker-registry` (CNCF Distribution) when it is missing.
pub fn ensure_distribution() -> Result<()> {
    ensure_package("docker-registry", "docker-registry")
}

/// Installs the Debian `package` that provides `binary` when `binary --version` cannot run
/// (one `apt-get update` first).
pub fn ensure_package(binary: &str, package: &str) -> Result<()> {
    if Command::new(binary).arg("--version").output().is_ok() {
        return Ok(());
    }
    eprintln!("berth-bench: installing {package}");
    let apt = |args: &[&str]| -> Result<()> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("apt-get")?;
        if !status.success() {
            bail!("apt-get {args:?} failed");
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", package])
}

impl Registry {
    /// Starts a registry of `kind` with a fresh data directory under `parent`.
    pub fn start(kind: Kind, berth_bin: &Path, parent: &Path) -> Result<Registry> {
        if kind.is_mirror() {
            bail!(
                "{} needs an upstream: use Registry::start_mirror",
                kind.label()
            );
        }
        Registry::launch(kind, berth_bin, parent, None, None, None)
    }

    /// Starts a registry of `kind` (berth or Distribution) on the shared services: blobs in
    /// their bucket, berth's index in PostgreSQL, Distribution's cache in Redis (shared.rs).
    pub fn start_shared(
        kind: Kind,
        berth_bin: &Path,
        parent: &Path,
        shared: &crate::shared::SharedServices,
    ) -> Result<Registry> {
        if kind.is_mirror() {
            bail!(
                "{} on the shared backend is not a benchmark here",
                kind.label()
            );
        }
        Registry::launch(kind, berth_bin, parent, None, None, Some(shared))
    }

    /// Starts a registry of `kind` (berth or Distribution) serving HTTPS with `tls`.
    pub fn start_tls(
        kind: Kind,
        berth_bin: &Path,
        parent: &Path,
        tls: &TlsFiles,
    ) -> Result<Registry> {
        if kind.is_mirror() {
            bail!("{} over TLS is not a benchmark here", kind.label());
        }
        Registry::launch(kind, berth_bin, parent, None, Some(tls), None)
    }

    /// Starts a pull-through mirror (a kind that `is_mirror`) of the plain-HTTP
    /// registry at `upstream`, with a fresh data directory under `parent`.
    pub fn start_mirror(
        kind: Kind,
        berth_bin: &Path,
        parent: &Path,
        upstream: SocketAddr,
    ) -> Result<Registry> {
        if !kind.is_mirror() {
            bail!("{} is not a mirror", kind.label());
        }
        Registry::launch(kind, berth_bin, parent, Some(upstream), None, None)
    }

    fn launch(
        kind: Kind,
        berth_bin: &Path,
        parent: &Path,
        upstream: Option<SocketAddr>,
        tls: Option<&TlsFiles>,
        shared: Option<&crate::shared::SharedServices>,
    ) -> Result<Registry> {
        let (dir, names) = Registry::fresh_dir(kind, parent)?;
        let data = dir.path().join("data");
        let log = dir.path().join("log");
        let port = free_port()?;
        let bucket = shared.map(|shared| shared.new_bucket(&names));
        let mut command = match kind {
            Kind::Distribution | Kind::DistributionProxy | Kind::DistributionNodes => {
                let config = dir.path().join("config.yml");
                let proxy = upstream.map_or_else(String::new, |upstream| {
                    format!("proxy:\n  remoteurl: http://{upstream}\n")
                });
                let tls = tls.map_or_else(String::new, |tls| {
                    format!(
                        "  tls:\n    certificate: {}\n    key: {}\n",
                        tls.cert.display(),
                        tls.key.display()
                    )
                });
                let storage = match (shared, &bucket) {
                    (Some(shared), Some(bucket)) => shared.distribution_storage(bucket, &names.prefix),
                    _ => format!(
                        "storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
                         cache:\n    blobdescriptor: inmemory\n",
                        data.display()
                    ),
                };
                std::fs::write(
                    &config,
                    format!(
                        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                         {storage}http:\n  addr: 127.0.0.1:{port}\n{tls}{proxy}"
                    ),
                )?;
                let mut command = Command::new("docker-registry");
                command.arg("serve").arg(config);
                // Its AWS SDK reads a CA bundle from the environment and refuses to start on
                // a plain-HTTP endpoint with one set.
                command.env_remove("AWS_CA_BUNDLE");
                command
            }
            Kind::Berth
            | Kind::BerthNoCommit
            | Kind::BerthMirror
            | Kind::BerthMirrorNoCommit
            | Kind::BerthEmbedded
            | Kind::BerthNodes
            | Kind::BerthNodesSpread => {
                let config = dir.path().join("config.json");
                let commit = !matches!(kind, Kind::BerthNoCommit | Kind::BerthMirrorNoCommit);
                let mut document = serde_json::json!({
                    "storage": {"rootDirectory": data, "commit": commit},
                    "http": {"address": "127.0.0.1", "port": port.to_string()},
                    "log": {"level": "error"},
                });
                if let (Some(shared), Some(bucket)) = (shared, &bucket) {
                    document["storage"] =
                        shared.berth_storage(&data, bucket, &names.prefix, commit);
                }
                if let Some(tls) = tls {
                    document["http"]["tls"] = serde_json::json!({"cert": tls.cert, "key": tls.key});
                }
                if let Some(upstream) = upstream {
                    document["extensions"] = serde_json::json!({"sync": {"registries": [{
                        "urls": [format!("http://{upstream}")],
                        "onDemand": true,
                        "tlsVerify": false,
                    }]}});
                }
                std::fs::write(&config, serde_json::to_vec_pretty(&document)?)?;
                let mut command = Command::new(berth_bin);
                command.arg("serve").arg(config);
                command
            }
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // Over TLS, a listening port is ready enough (the first request waits for the
        // shards); plain HTTP is asked for a 200.
        let child = spawn_ready(kind.label(), &mut command, &log, addr, tls.is_none())?;
        Ok(Registry {
            kind,
            addr,
            nodes: Vec::new(),
            bucket,
            child,
            others: Vec::new(),
            log,
            _dir: dir,
        })
    }

    /// A fresh directory for a registry of `kind` under `parent`, and the names it goes by on
    /// the shared services.
    pub fn fresh_dir(kind: Kind, parent: &Path) -> Result<(TempDir, Names)> {
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let started = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let names = Names {
            prefix: format!("bench_{}_{started}", std::process::id()),
            bucket: format!("bench-{}-{started}", std::process::id()),
        };
        let dir = tempfile::Builder::new()
            .prefix(&format!(
                "berth-bench-{}-",
                kind.label().replace([' ', ':'], "-")
            ))
            .tempdir_in(parent)?;
        Ok((dir, names))
    }

    /// A registry whose processes already run and answer at `addr` (its `nodes` each at
    /// their own).
    pub fn assembled(
        kind: Kind,
        addr: SocketAddr,
        nodes: Vec<SocketAddr>,
        bucket: Option<String>,
        mut processes: Vec<Child>,
        log: PathBuf,
        dir: TempDir,
    ) -> Result<Registry> {
        if processes.is_empty() {
            bail!("{} has no process", kind.label());
        }
        let child = processes.remove(0);
        Ok(Registry {
            kind,
            addr,
            nodes,
            bucket,
            child,
            others: processes,
            log,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every process of the registry.
    fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(&self.child)
            .chain(&self.others)
            .map(Child::id)
    }

    /// Resets the peak RSS (VmHWM) so the next reading covers only what follows.
    pub fn reset_peak_rss(&self) {
        for pid in self.pids() {
            let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
    }

    /// Peak resident set size since the last reset, in bytes (for several processes, the sum
    /// of their peaks: an upper bound of the peak they reached together).
    pub fn peak_rss(&self) -> Result<u64> {
        let mut total = 0;
        for pid in self.pids() {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
            let line = status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .ok_or_else(|| anyhow!("no VmHWM in /proc status"))?;
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .ok_or_else(|| anyhow!("malformed {line:?}"))?
                .parse()?;
            total += kib * 1024;
        }
        Ok(total)
    }

    /// CPU time (user + system) the registry's processes have used.
    pub fn cpu_time(&self) -> Result<Duration> {
        let mut ticks = 0;
        for pid in self.pids() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
            // Fields after the command name (which may contain spaces) start at its ')'.
            let rest = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest)
                .unwrap_or_default();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            ticks += fields.get(11).unwrap_or(&"0").parse::<u64>()?
                + fields.get(12).unwrap_or(&"0").parse::<u64>()?;
        }
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL after 10 s; the data directory goes with `self`. The further
    /// processes stop first (a load balancer before its nodes).
    pub fn stop(mut self) {
        for other in self.others.iter_mut().rev() {
            stop_child(other, Duration::from_secs(10));
        }
        stop_child(&mut self.child, Duration::from_secs(10));
    }
}

/// What a registry started on the shared services is called there: a key prefix and
/// PostgreSQL schema (`prefix`), and a bucket name for its blobs (`bucket`, `[a-z0-9-]`). New
/// for every start, so every start is empty.
pub struct Names {
    pub prefix: String,
    pub bucket: String,
}

/// Spawns `command` with its output in `log`; Ok once it answers at `addr` (a 200 to
/// `GET /v2/` when `http_ready`, else a connection), Err (with the log) when it exits first
/// or takes longer than 30 s.
pub fn spawn_ready(
    label: &str,
    command: &mut Command,
    log: &Path,
    addr: SocketAddr,
    http_ready: bool,
) -> Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {label}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{label} exited ({status}) before it was ready:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let ready = match http_ready {
            true => answers_ok(addr, "/v2/"),
            false => TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok(),
        };
        if ready {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(anyhow!(
        "{label} did not answer at {addr} within {START_TIMEOUT:?}"
    ))
}

/// SIGTERM, then SIGKILL once `grace` has passed.
pub fn stop_child(child: &mut std::process::Child, grace: Duration) {
    // SAFETY: kill has no memory preconditions; the pid is our own child's.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILL if still running (a registry dropped without `stop`).
pub fn kill_child(child: &mut std::process::Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for other in &mut self.others {
            kill_child(other);
        }
        kill_child(&mut self.child);
    }
}

/// CPU time (user + system) this process has used.
pub fn own_cpu_time() -> Duration {
    // SAFETY: getrusage writes one rusage into the zeroed value we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time =
        |value: libc::timeval| Duration::new(value.tv_sec as u64, value.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}
