//! [`Berth`]: one `berth serve` child process on 127.0.0.1 with its own temporary data
//! directory and config file.
//!
//! Rules: the port is always "0" in the config; the real address comes from the single
//! stdout line `berth listening on http://IP:PORT`, waited for at most [`START_TIMEOUT`].
//! The child's stdout is drained by a thread for its whole life so it can never block on a
//! full pipe. Dropping a `Berth` SIGKILLs and reaps the child; if the test is panicking, the
//! daemon's log is printed first so the failure explains itself.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::berth_bin;

/// How long `serve` may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERM'd daemon may take to drain and exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// What berth prints once it listens (`https://` with `http.tls`).
const LISTENING_PREFIX: &str = "berth listening on http(s)://";

pub struct Berth {
    /// `http://127.0.0.1:PORT` (`https://` with `http.tls`)
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// `storage.rootDirectory`
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    child: Option<Child>,
    log_path: PathBuf,
    stderr_path: PathBuf,
    // Last field: dropped after the child is killed.
    tmp: TempDir,
}

impl Berth {
    /// Starts berth with the default test config (see [`Berth::start_with`]).
    pub fn start() -> Berth {
        Berth::start_with(json!({}))
    }

    /// Starts berth with `patch` (RFC 7386 JSON merge patch) applied to the default test config:
    /// storage in a fresh temp dir, 127.0.0.1 port 0, 2 workers, info log to a file.
    pub fn start_with(patch: Value) -> Berth {
        let tmp = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir()
            .expect("create temp dir");
        let data_dir = tmp.path().join("data");
        let log_path = tmp.path().join("berth.log");
        let mut config = json!({
            "distSpecVersion": "1.1.1",
            "storage": { "rootDirectory": data_dir },
            "http": { "address": "127.0.0.1", "port": "0", "workers": 2 },
            "log": { "level": "info", "output": log_path },
        });
        merge_patch(&mut config, &patch);
        let config_path = tmp.path().join("config.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&config).expect("config serializes"),
        )
        .expect("write config");
        let mut berth = Berth {
            url: String::new(),
            addr: String::new(),
            data_dir,
            config_path,
            child: None,
            stderr_path: tmp.path().join("berth.stderr"),
            log_path,
            tmp,
        };
        berth.spawn();
        berth
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "berth is already running");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .expect("open stderr file");
        let bin = berth_bin();
        let mut child = Command::new(&bin)
            // The config decides the log level (RUST_LOG would win over it, also on SIGHUP).
            .env_remove("RUST_LOG")
            .arg("serve")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} (set BERTH_BIN?)", bin.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Receiver gone after the first line: keep draining regardless.
                let _ = sender.send(line);
            }
        });
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(remaining) {
                Ok(line) => {
                    let listening = ["http", "https"].into_iter().find_map(|scheme| {
                        let prefix = format!("berth listening on {scheme}://");
                        let addr = line.trim().strip_prefix(prefix.as_str())?.to_owned();
                        Some((scheme, addr))
                    });
                    if let Some((scheme, addr)) = listening {
                        self.addr = addr.trim_end_matches('/').to_string();
                        self.url = format!("{scheme}://{}", self.addr);
                        return;
                    }
                    seen.push(line);
                }
                Err(error) => {
                    let status = self
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten());
                    self.kill();
                    panic!(
                        "berth did not print `{LISTENING_PREFIX}IP:PORT` ({error:?}, exit status \
                         {status:?}); stdout so far: {seen:?}\n--- log ---\n{}",
                        self.log()
                    );
                }
            }
        }
    }

    /// Process id of the running daemon.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the running daemon; panics when it is not
    /// running. Use [`Berth::stop`] for SIGTERM-and-wait.
    pub fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("berth is running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid we own and have not reaped yet, so it cannot be reused.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({signal}) failed");
    }

    /// SIGKILL and reap. No-op when not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts berth again on the same config and data dir (a new port; `url`/`addr` updated).
    /// A still-running daemon is SIGKILLed first.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGTERM, then wait for a graceful exit (panics if it takes longer than
    /// [`STOP_TIMEOUT`] or the exit status is not success).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid we own and have not reaped yet, so it cannot be reused.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait on berth") {
                assert!(
                    status.success(),
                    "berth exited with {status} after SIGTERM\n--- log ---\n{}",
                    self.log()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "berth did not exit within {STOP_TIMEOUT:?} of SIGTERM\n--- log ---\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `berth fsck <config>` (the daemon may be running). Returns (clean, stdout+stderr).
    /// Exit 0 = clean, 1 = problems found; anything else is a harness or config bug and panics.
    pub fn fsck(&self) -> (bool, String) {
        let output = Command::new(berth_bin())
            .arg("fsck")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .output()
            .expect("run berth fsck");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        match output.status.code() {
            Some(0) => (true, text),
            Some(1) => (false, text),
            other => panic!("berth fsck exited with {other:?}:\n{text}"),
        }
    }

    /// The daemon's log file plus anything it wrote to stderr.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        format!(
            "{log}{}{stderr}",
            if stderr.is_empty() {
                ""
            } else {
                "--- stderr ---\n"
            }
        )
    }

    /// The temporary directory holding config, data and logs (removed on drop).
    pub fn tmp_dir(&self) -> &std::path::Path {
        self.tmp.path()
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: String = log
                .lines()
                .rev()
                .take(200)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("--- berth log (last 200 lines) ---\n{tail}");
        }
    }
}

/// RFC 7386 JSON merge patch: objects merge recursively, `null` removes a key, anything else
/// replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let target = target.as_object_mut().expect("just made an object");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "d": [1], "e": "x"});
        merge_patch(
            &mut doc,
            &json!({"a": {"b": null, "z": 3}, "d": {"k": 1}, "f": true}),
        );
        assert_eq!(
            doc,
            json!({"a": {"c": 2, "z": 3}, "d": {"k": 1}, "e": "x", "f": true})
        );
    }
}
