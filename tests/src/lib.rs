//! Shared harness for the integration tests in `tests/tests/*.rs`.
//!
//! Owns: starting and stopping the real `berth` binary ([`Berth`]), the CNCF Distribution peer
//! ([`Distribution`]), building valid OCI content ([`random_image`], [`write_oci_layout`]),
//! pushing it over plain HTTP ([`push_image`]), and whole-registry snapshots for "nothing
//! changed" assertions ([`assert_no_state_change`]), the seeded registry of the bad-input tests
//! ([`Seeded`]) and the request/response helpers for talking to the API directly ([`api`]).
//! The real Prometheus server and metrics linter ([`Prometheus`], [`promtool_check_metrics`]),
//! and berth's metric families with a strict exposition parser ([`METRIC_FAMILIES`],
//! [`Exposition`]). Real-browser scenarios in Debian's headless Chromium driven by Python
//! playwright, and a static site for pages berth does not serve ([`browser`]). The trust
//! extension's signer (tests/trust/sign.py), endpoints and verdicts ([`trust`]). The bearer
//! token issuer and minter (tests/tokens/issuer.py, [`tokens`]). The OpenID providers of the
//! single sign-on tests, a real one (`oidc-provider`, tests/oidc) and an adversarial one
//! (tests/tokens/oidc_idp.py), and a cookie-keeping user agent for code flows ([`oidc`]).
//! The shared backend's real parts (issue 20): a SeaweedFS cluster behind its S3 gateway
//! ([`seaweedfs`]) and a throwaway PostgreSQL server ([`postgres`]), each server leading its
//! own process group ([`MemoryUse`] tells what one holds).
//!
//! Rules: every process the harness starts dies with its handle (SIGKILL in `Drop`), every
//! test gets fresh temporary directories, nothing listens anywhere but 127.0.0.1 (the OpenID
//! provider also on [::1], where `localhost` may resolve), and a missing external client never
//! passes silently when `BERTH_REQUIRE_TOOLS=1` (CI sets it).

pub mod access;
pub mod api;
pub mod browser;
pub mod containers;
mod daemon;
pub mod faulty;
mod fixture;
pub mod gc;
mod image;
pub mod ldap;
mod metrics;
pub mod nodes;
pub mod oidc;
mod peer;
pub mod postgres;
mod process;
mod prometheus;
pub mod search;
pub mod seaweedfs;
pub mod seaweedfs_shared;
mod snapshot;
pub mod tokens;
pub mod trust;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use daemon::{merge_patch, Berth};
pub use fixture::{authed, basic, Seeded, HTPASSWD_SECRET};
pub use image::{
    fetch_blob, fetch_manifest, gzip_stored, push_blob, push_image, random_bytes, random_image,
    tar_layer, try_push_blob, try_push_manifest, write_oci_layout, Image, PushError,
    MANIFEST_ACCEPT,
};
pub use metrics::{metric_families, scrape_metrics, Exposition, MetricSample, METRIC_FAMILIES};
pub use peer::Distribution;
pub use process::MemoryUse;
pub use prometheus::{promtool_check_metrics, require_prometheus, Prometheus, Sample, ScrapeJob};
pub use snapshot::{assert_no_state_change, snapshot, Snapshot};

pub use reqwest::blocking::Client;

/// The `berth` binary under test: `$BERTH_BIN`, else `target/<profile>/berth` next to the
/// directory holding the test executable (`target/<profile>/deps/<test>`).
pub fn berth_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe is readable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    profile_dir.join("berth")
}

/// An HTTP client for talking to a registry directly: redirects are never followed (tests
/// assert on `Location`), no proxy from the environment, bounded timeouts.
pub fn http() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(120))
        .build()
        .expect("reqwest client builds")
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// True when `name` is an executable on `PATH`. When it is missing and `BERTH_REQUIRE_TOOLS=1`,
/// panics instead: CI must fail loudly rather than skip a client test.
pub fn require_tool(name: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths).any(|dir| {
                let candidate = dir.join(name);
                candidate.is_file()
                    && std::fs::metadata(&candidate)
                        .map(|m| {
                            use std::os::unix::fs::PermissionsExt as _;
                            m.permissions().mode() & 0o111 != 0
                        })
                        .unwrap_or(false)
            })
        })
        .unwrap_or(false);
    if !found {
        if std::env::var("BERTH_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("required tool `{name}` is not on PATH (BERTH_REQUIRE_TOOLS=1)");
        }
        eprintln!("SKIPPED: `{name}` is not on PATH (set BERTH_REQUIRE_TOOLS=1 to fail instead)");
    }
    found
}

/// Runs a command to completion and returns (success, stdout, stderr). Used for the real
/// clients, whose failures must show their stderr in the test output.
pub fn run_cmd(cmd: &mut std::process::Command) -> (bool, String, String) {
    let output = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Like [`run_cmd`] but panics with the command, its stdout and stderr on failure.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let (ok, stdout, stderr) = run_cmd(cmd);
    assert!(
        ok,
        "command failed: {cmd:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// How long a log line may take to reach its file (logs are written by a background thread).
pub const LOG_WAIT: Duration = Duration::from_secs(10);

/// Polls `read` until `done` holds on its text, returning it; panics after [`LOG_WAIT`] with
/// what was read last.
pub fn wait_for(what: &str, read: impl Fn() -> String, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + LOG_WAIT;
    loop {
        let text = read();
        if done(&text) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited {LOG_WAIT:?} for {what}; got:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `berth serve CONFIG`, which must exit on its own (a refused config) within 30 s; panics
/// naming `what` if it keeps running. Returns its exit status, stdout and stderr.
pub fn serve_refused(config: &Path, what: &str) -> (std::process::ExitStatus, String, String) {
    let mut serve = std::process::Command::new(berth_bin())
        .arg("serve")
        .arg(config)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("berth serve");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = serve.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = serve.kill();
            let _ = serve.wait();
            panic!("berth serve started with {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = serve.wait_with_output().expect("output");
    (
        status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `berth verify CONFIG`, which must refuse it (exit 2); returns its stderr.
#[track_caller]
pub fn verify_refused(config: &Path) -> String {
    let output = std::process::Command::new(berth_bin())
        .arg("verify")
        .arg(config)
        .output()
        .expect("berth verify");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    stderr
}
