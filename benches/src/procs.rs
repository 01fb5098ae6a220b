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
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `GET path` answers 200 (plain HTTP/1.1 over a std socket).
fn answers_ok(addr: SocketAddr, path: &str) -> bool {
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

/// Installs Debian's docker-registry when it is missing (one apt-get update first).
pub fn ensure_distribution() -> Result<()> {
    if Command::new("docker-registry")
        .arg("--version")
        .output()
        .is_ok()
    {
        return Ok(());
    }
    eprintln!("berth-bench: installing docker-registry (CNCF Distribution)");
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
    apt(&["install", "-y", "-qq", "docker-registry"])
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
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        // A key prefix and schema of its own on the shared services: every start is empty.
        let prefix = format!(
            "bench_{}_{}",
            std::process::id(),
            STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!(
                "berth-bench-{}-",
                kind.label().replace([' ', ':'], "-")
            ))
            .tempdir_in(parent)?;
        let data = dir.path().join("data");
        let log = dir.path().join("log");
        let port = free_port()?;
        let mut command = match kind {
            Kind::Distribution | Kind::DistributionProxy => {
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
                let storage = match shared {
                    Some(shared) => shared.distribution_storage(&prefix),
                    None => format!(
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
            Kind::Berth | Kind::BerthNoCommit | Kind::BerthMirror | Kind::BerthMirrorNoCommit => {
                let config = dir.path().join("config.json");
                let commit = matches!(kind, Kind::Berth | Kind::BerthMirror);
                let mut document = serde_json::json!({
                    "storage": {"rootDirectory": data, "commit": commit},
                    "http": {"address": "127.0.0.1", "port": port.to_string()},
                    "log": {"level": "error"},
                });
                if let Some(shared) = shared {
                    document["storage"] = shared.berth_storage(&data, &prefix, commit);
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
        let log_file = std::fs::File::create(&log)?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", kind.label()))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited ({status}) before it was ready:\n{}",
                    kind.label(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            // Over TLS, a listening port is ready enough (the first request waits for the
            // shards); plain HTTP is asked for a 200.
            let ready = match tls {
                Some(_) => TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok(),
                None => answers_ok(addr, "/v2/"),
            };
            if ready {
                return Ok(Registry {
                    kind,
                    addr,
                    child,
                    log,
                    _dir: dir,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        Err(anyhow!(
            "{} did not answer GET /v2/ within {START_TIMEOUT:?}",
            kind.label()
        ))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn proc_file(&self, name: &str) -> Result<String> {
        Ok(std::fs::read_to_string(format!(
            "/proc/{}/{name}",
            self.pid()
        ))?)
    }

    /// Resets the peak RSS (VmHWM) so the next reading covers only what follows.
    pub fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }

    /// Peak resident set size since the last reset, in bytes.
    pub fn peak_rss(&self) -> Result<u64> {
        let status = self.proc_file("status")?;
        let line = status
            .lines()
            .find(|line| line.starts_with("VmHWM:"))
            .ok_or_else(|| anyhow!("no VmHWM in /proc status"))?;
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow!("malformed {line:?}"))?
            .parse()?;
        Ok(kib * 1024)
    }

    /// CPU time (user + system) the registry process has used.
    pub fn cpu_time(&self) -> Result<Duration> {
        let stat = self.proc_file("stat")?;
        // Fields after the command name (which may contain spaces) start at its closing ')'.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields.get(11).unwrap_or(&"0").parse::<u64>()?
            + fields.get(12).unwrap_or(&"0").parse::<u64>()?;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL after 10 s; the data directory goes with `self`.
    pub fn stop(mut self) {
        stop_child(&mut self.child, Duration::from_secs(10));
    }
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
