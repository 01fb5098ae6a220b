//! The berth process a benchmark (search, ui) runs against: started on a store with a config
//! on port 0, timed to readiness, measured (RSS, CPU) and stopped.
//!
//! Rules: the address is read from berth's `berth listening on http://ADDR` line; every line
//! of its stdout is read so it never blocks on a full pipe; its stderr goes to `berth.log`
//! beside the config, and a failed start reports that log. A dropped `Berth` is killed.
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

/// Longest a start may take to `/readyz` 200 (a first start replays the write-ahead log).
pub const START_TIMEOUT: Duration = Duration::from_secs(300);

/// berth, started on a store.
pub struct Berth {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    /// From spawn to `/readyz` 200.
    pub ready_after: Duration,
    /// From spawn to the `berth listening` line.
    pub listening_after: Duration,
}

/// Plain-HTTP GET status (std socket, one request).
fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

impl Berth {
    /// Writes `config` to `dir/berth.json` and starts `bin serve` on it; returns once
    /// `/readyz` answers 200.
    pub fn start(bin: &Path, config: &serde_json::Value, dir: &Path) -> Result<Berth> {
        let config_path = dir.join("berth.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(config)?)?;
        let log = dir.join("berth.log");
        let started = Instant::now();
        let mut child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Reads every line so berth never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("berth listening on http://") {
                    let _ = sender.send(addr.trim().to_owned());
                }
            }
        });
        let fail = |child: &mut Child, why: String| -> anyhow::Error {
            let _ = child.kill();
            let _ = child.wait();
            anyhow!(
                "{why}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        };
        let addr: SocketAddr = loop {
            match receiver.recv_timeout(Duration::from_millis(20)) {
                Ok(addr) => break addr.parse()?,
                Err(_) if started.elapsed() > START_TIMEOUT => {
                    return Err(fail(&mut child, "berth printed no address".into()))
                }
                Err(_) => {
                    if let Some(status) = child.try_wait()? {
                        return Err(fail(&mut child, format!("berth exited ({status})")));
                    }
                }
            }
        };
        let listening_after = started.elapsed();
        loop {
            if get_status(addr, "/readyz") == Some(200) {
                break;
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(fail(&mut child, "/readyz never answered 200".into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Berth {
            child,
            addr,
            log,
            ready_after: started.elapsed(),
            listening_after,
        })
    }

    /// A `/proc/PID/status` figure given in KiB (`VmRSS:`, `VmHWM:`).
    pub fn status_kib(&self, key: &str) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status
            .lines()
            .find(|line| line.starts_with(key))
            .ok_or_else(|| anyhow!("no {key} in /proc status"))?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow!("malformed {line:?}"))?
            .parse()?)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + system) the process has used.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .map(|&i| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum();
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        ticks as f64 / per_second
    }

    /// SIGTERM, then SIGKILL after 20 s.
    pub fn stop(mut self) {
        crate::procs::stop_child(&mut self.child, Duration::from_secs(20));
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        crate::procs::kill_child(&mut self.child);
    }
}
