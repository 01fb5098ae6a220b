//! [`Distribution`]: CNCF Distribution (Debian's `docker-registry`) as a real peer registry,
//! for registry-to-registry copies.
//!
//! Rules: `http.addr` with port 0 does not report the bound port, so a free port is picked
//! (bind 127.0.0.1:0, read it, close) and the start is retried on another port if the
//! registry exits (lost race). Readiness = `GET /v2/` answers 200. Drop SIGKILLs and reaps.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const BINARY: &str = "docker-registry";
const START_ATTEMPTS: usize = 3;
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Distribution {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    log_path: PathBuf,
    child: Child,
    _tmp: TempDir,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

impl Distribution {
    /// Starts Distribution with filesystem storage in a fresh temp dir and deletes enabled.
    pub fn start() -> Distribution {
        let tmp = tempfile::Builder::new()
            .prefix("berth-distribution-")
            .tempdir()
            .expect("create temp dir");
        let log_path = tmp.path().join("registry.log");
        let config_path = tmp.path().join("config.yml");
        let client = crate::http();
        for _ in 0..START_ATTEMPTS {
            let addr = format!("127.0.0.1:{}", free_port());
            let config = format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                tmp.path().join("data").display()
            );
            std::fs::write(&config_path, config).expect("write registry config");
            let log = std::fs::File::create(&log_path).expect("create registry log");
            let mut child = Command::new(BINARY)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {BINARY}: {e}"));
            let url = format!("http://{addr}");
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline {
                if child.try_wait().expect("wait registry").is_some() {
                    break;
                }
                let ready = client
                    .get(format!("{url}/v2/"))
                    .send()
                    .map(|r| r.status().as_u16() == 200)
                    .unwrap_or(false);
                if ready {
                    return Distribution {
                        url,
                        addr,
                        log_path,
                        child,
                        _tmp: tmp,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "{BINARY} did not become ready:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    /// The registry's combined stdout/stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- distribution log ---\n{}", self.log());
        }
    }
}
