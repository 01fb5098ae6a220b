//! OpenID Connect peers for the single sign-on tests: a real OpenID provider ([`OidcProvider`]:
//! panva's `oidc-provider` in Node.js, tests/oidc/provider.mjs), an adversarial one
//! ([`EvilIdp`]: tests/tokens/oidc_idp.py, whose ID tokens are good or bad in one named way,
//! [`EvilMode`]), and (oidc_agent.rs) a cookie-keeping HTTP user agent that walks a code flow without
//! a browser ([`UserAgent`]), with PKCE ([`Pkce`]) and JWT decoding ([`jwt_parts`]).
//!
//! The real provider's accounts are alice / alice-pw (alice@example.org, groups `devs`) and
//! bob / bob-pw (bob@example.org, `ops`); its issuer is `http://localhost:PORT`, a different
//! site from berth on 127.0.0.1 as a real IdP is. Clients are registered after it started
//! ([`OidcProvider::register_client`]), because berth's callback URL is known only once berth
//! listens, and berth needs the issuer first. The adversarial IdP's issuer is
//! `http://127.0.0.1:PORT`; its one user is alice (sub [`EVIL_SUB`], alice@example.org, `devs`).
//!
//! Rules: both listen on loopback only and die with their handle (stdin closed, then SIGKILL
//! in `Drop`; each also exits by itself when its stdin closes). A missing Node.js (20 or
//! later), `oidc-provider` install, python3 or `jwcrypto` skips the test, or fails it under
//! `BERTH_REQUIRE_TOOLS=1` ([`oidc_provider_available`], [`evil_idp_available`]).
//! `oidc-provider` is installed by scripts/test into [`modules_dir`], outside the checkout.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::{require_tool, run_cmd};

/// How long a provider may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a provider may take to exit once its stdin is closed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The Node.js major version `oidc-provider` 9 runs on.
const NODE_MAJOR_MIN: u32 = 20;

/// The real provider's accounts: (login, password, email, groups).
pub const ACCOUNTS: [(&str, &str, &str, &str); 2] = [
    ("alice", "alice-pw", "alice@example.org", "devs"),
    ("bob", "bob-pw", "bob@example.org", "ops"),
];
/// The `sub` of the adversarial IdP's user (alice@example.org, groups `devs`).
pub const EVIL_SUB: &str = "alice-0001";

/// tests/oidc: provider.mjs and the package.json and package-lock.json that pin
/// `oidc-provider`.
pub fn provider_source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// Where `oidc-provider` is installed (`node_modules/` inside): `$BERTH_OIDC_PROVIDER_DIR`,
/// else `$HOME/.cache/berth/oidc-provider` (scripts/test installs it there).
pub fn modules_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_OIDC_PROVIDER_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    Path::new(&home).join(".cache/berth/oidc-provider")
}

/// tests/tokens/oidc_idp.py.
pub fn evil_idp_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tokens/oidc_idp.py")
}

/// Prints SKIPPED for `missing` and returns false, or panics under `BERTH_REQUIRE_TOOLS=1`.
fn unavailable(missing: &str) -> bool {
    if std::env::var("BERTH_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{missing} (BERTH_REQUIRE_TOOLS=1)");
    }
    eprintln!("SKIPPED: {missing} (set BERTH_REQUIRE_TOOLS=1 to fail instead)");
    false
}

/// True when Node.js 20+ and the pinned `oidc-provider` (in [`modules_dir`]) are installed.
pub fn oidc_provider_available() -> bool {
    static PROBLEM: OnceLock<Option<String>> = OnceLock::new();
    let problem = PROBLEM.get_or_init(|| {
        if !require_tool("node") {
            return Some("node is not on PATH".to_owned());
        }
        let (ok, version, _) = run_cmd(Command::new("node").arg("--version"));
        let major = version
            .trim()
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|major| major.parse::<u32>().ok());
        if !ok || major.is_none_or(|major| major < NODE_MAJOR_MIN) {
            return Some(format!(
                "oidc-provider needs Node.js {NODE_MAJOR_MIN} or later, node is {version:?}"
            ));
        }
        let pinned = pinned_version();
        let installed = modules_dir().join("node_modules/oidc-provider/package.json");
        let found = std::fs::read(&installed)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|package| package["version"].as_str().map(str::to_owned));
        if found.as_deref() != Some(pinned.as_str()) {
            return Some(format!(
                "oidc-provider {pinned} is not installed in {} (found {found:?}; scripts/test \
                 installs it)",
                modules_dir().display()
            ));
        }
        None
    });
    match problem {
        None => true,
        Some(problem) => unavailable(problem),
    }
}

/// The `oidc-provider` version tests/oidc/package.json pins.
fn pinned_version() -> String {
    let path = provider_source_dir().join("package.json");
    let package: Value = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())),
    )
    .expect("tests/oidc/package.json is JSON");
    package["dependencies"]["oidc-provider"]
        .as_str()
        .expect("package.json pins oidc-provider")
        .to_owned()
}

/// True when python3 with `cryptography` and `jwcrypto` is there (the adversarial IdP and
/// its independent verifier).
pub fn evil_idp_available() -> bool {
    static PROBLEM: OnceLock<Option<String>> = OnceLock::new();
    let problem = PROBLEM.get_or_init(|| {
        if !require_tool("python3") {
            return Some("python3 is not on PATH".to_owned());
        }
        let (ok, _, stderr) =
            run_cmd(Command::new("python3").args(["-c", "import cryptography, jwcrypto"]));
        (!ok).then(|| format!("python3 `cryptography` or `jwcrypto` is missing: {stderr}"))
    });
    match problem {
        None => true,
        Some(problem) => unavailable(problem),
    }
}

/// A child that printed one JSON line when ready; stdin held open (it exits when it closes),
/// stderr into a log file.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    ready: Value,
    log_path: PathBuf,
    _dir: TempDir,
}

impl Peer {
    fn start(what: &str, mut command: Command) -> Peer {
        let dir = tempfile::Builder::new()
            .prefix("berth-oidc-")
            .tempdir()
            .expect("temp dir");
        let log_path = dir.path().join("peer.log");
        let log = std::fs::File::create(&log_path).expect("peer log");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let _ = sender.send(lines.next());
            // Keep draining: the peer must never block on a full pipe.
            for _ in lines {}
        });
        let line = receiver.recv_timeout(START_TIMEOUT);
        let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let ready = match line {
            Ok(Some(Ok(line))) => serde_json::from_str::<Value>(&line)
                .unwrap_or_else(|_| panic!("{what} said {line:?}\n--- log ---\n{}", log_text())),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{what} printed no ready line ({other:?})\n--- log ---\n{}",
                    log_text()
                );
            }
        };
        Peer {
            child,
            stdin,
            ready,
            log_path,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Closes stdin and waits for the exit; true when it exited by itself in time.
    fn close_stdin_and_wait(&mut self) -> bool {
        drop(self.stdin.take());
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real OpenID provider (tests/oidc/provider.mjs). Call [`oidc_provider_available`]
/// first.
pub struct OidcProvider {
    peer: Peer,
    issuer: String,
}

impl OidcProvider {
    /// Starts it on a free port with issuer `http://localhost:PORT`.
    pub fn start() -> OidcProvider {
        let mut command = Command::new("node");
        command
            .arg(provider_source_dir().join("provider.mjs"))
            .env("BERTH_OIDC_PROVIDER_DIR", modules_dir());
        let peer = Peer::start("the OpenID provider (node provider.mjs)", command);
        let issuer = peer.ready["issuer"]
            .as_str()
            .unwrap_or_else(|| panic!("ready line without issuer: {}", peer.ready))
            .to_owned();
        OidcProvider { peer, issuer }
    }

    /// `http://localhost:PORT`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The addresses it listens on (127.0.0.1, and ::1 where the machine has it).
    pub fn listening(&self) -> Vec<String> {
        self.peer.ready["listening"]
            .as_array()
            .map(|addresses| {
                addresses
                    .iter()
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Registers (or replaces) a confidential web client: authorization code, PKCE,
    /// client_secret_basic. Panics when the provider refuses it.
    #[track_caller]
    pub fn register_client(&self, client_id: &str, client_secret: &str, redirect_uris: &[&str]) {
        let (status, body) = self.try_register_client(client_id, client_secret, redirect_uris);
        assert_eq!(status, 201, "registering client {client_id}: {body}");
    }

    /// Like [`OidcProvider::register_client`]: the status (201, or 400 when the metadata is
    /// refused) and the answer.
    pub fn try_register_client(
        &self,
        client_id: &str,
        client_secret: &str,
        redirect_uris: &[&str],
    ) -> (u16, Value) {
        let body = json!({
            "client_id": client_id, "client_secret": client_secret,
            "redirect_uris": redirect_uris,
        });
        let response = crate::http()
            .post(format!("{}/__test/clients", self.issuer))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .expect("POST /__test/clients");
        let status = response.status().as_u16();
        let answer = response.json_value();
        (status, answer)
    }

    /// Walks the provider's pages as `login` with `password`, from `authorize_url` (an
    /// authorization request) to the redirect back to the client, which is not followed:
    /// returns that URL (`code`, `state`, `iss`, or `error`). A session of `agent` at the
    /// provider skips the login page, an earlier grant the consent page.
    #[track_caller]
    pub fn log_in(
        &self,
        agent: &mut UserAgent,
        authorize_url: &str,
        login: &str,
        password: &str,
    ) -> Url {
        let at_provider = |url: &Url| url.as_str().starts_with(&self.issuer);
        let mut reply = agent.follow(authorize_url, |url| !at_provider(url));
        for _ in 0..3 {
            if !at_provider(&reply.url) {
                return reply.url;
            }
            assert_eq!(reply.status, 200, "at the provider: {}", reply.describe());
            if let Some(action) = form_action(&reply.body, "idp-login", &reply.url) {
                let login_reply =
                    agent.post_form(action.as_str(), &[("login", login), ("password", password)]);
                assert!(
                    login_reply.status == 303 || login_reply.status == 302,
                    "logging in as {login}: {}",
                    login_reply.describe()
                );
                reply = agent.follow_reply(login_reply, |url| !at_provider(url));
            } else if let Some(action) = form_action(&reply.body, "idp-consent", &reply.url) {
                let consent = agent.post_form(action.as_str(), &[]);
                reply = agent.follow_reply(consent, |url| !at_provider(url));
            } else {
                panic!("a provider page without a known form: {}", reply.describe());
            }
        }
        assert!(
            !at_provider(&reply.url),
            "stuck at the provider: {}",
            reply.describe()
        );
        reply.url
    }

    /// Its stderr: a line per request (`METHOD PATH -> STATUS`) and its warnings.
    pub fn log(&self) -> String {
        self.peer.log()
    }

    /// Closes its stdin and waits; true when it exited by itself (the self-test's check that
    /// it cannot outlive a test).
    pub fn close_stdin_and_wait(&mut self) -> bool {
        self.peer.close_stdin_and_wait()
    }
}

/// How the adversarial IdP's next ID tokens (and userinfo answers) are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvilMode {
    Good,
    /// `iss` is the same server under another URL (localhost for 127.0.0.1), same key.
    OtherIssuer,
    /// `exp` an hour ago.
    Expired,
    WrongAudience,
    WrongNonce,
    /// No `nonce` although one was sent.
    NoNonce,
    /// Signed by a key not in the JWKS, under the JWKS key's `kid`.
    BadSignature,
    AlgNone,
    /// HS256 keyed with the client secret.
    Hs256,
    /// No `email` claim, in the ID token or userinfo.
    NoEmail,
    /// Userinfo names another `sub` (and e-mail, and groups) than the ID token.
    UserinfoOtherSub,
}

impl EvilMode {
    /// Every mode berth must refuse.
    pub const BAD: [EvilMode; 10] = [
        EvilMode::OtherIssuer,
        EvilMode::Expired,
        EvilMode::WrongAudience,
        EvilMode::WrongNonce,
        EvilMode::NoNonce,
        EvilMode::BadSignature,
        EvilMode::AlgNone,
        EvilMode::Hs256,
        EvilMode::NoEmail,
        EvilMode::UserinfoOtherSub,
    ];

    /// The name oidc_idp.py knows it by.
    pub fn name(self) -> &'static str {
        match self {
            EvilMode::Good => "good",
            EvilMode::OtherIssuer => "other_issuer",
            EvilMode::Expired => "expired",
            EvilMode::WrongAudience => "wrong_audience",
            EvilMode::WrongNonce => "wrong_nonce",
            EvilMode::NoNonce => "no_nonce",
            EvilMode::BadSignature => "bad_signature",
            EvilMode::AlgNone => "alg_none",
            EvilMode::Hs256 => "hs256",
            EvilMode::NoEmail => "no_email",
            EvilMode::UserinfoOtherSub => "userinfo_other_sub",
        }
    }
}

/// The adversarial IdP (tests/tokens/oidc_idp.py `serve`). Call [`evil_idp_available`] first.
pub struct EvilIdp {
    peer: Peer,
    issuer: String,
    client_secret: String,
}

impl EvilIdp {
    /// Starts it for the one client `client_id` / `client_secret`, in mode `good`.
    pub fn start(client_id: &str, client_secret: &str) -> EvilIdp {
        let mut command = Command::new("python3");
        command
            .arg(evil_idp_script())
            .args([
                "serve",
                "--client-id",
                client_id,
                "--client-secret",
                client_secret,
            ])
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let peer = Peer::start("the adversarial IdP (oidc_idp.py serve)", command);
        let issuer = peer.ready["issuer"]
            .as_str()
            .unwrap_or_else(|| panic!("ready line without issuer: {}", peer.ready))
            .to_owned();
        EvilIdp {
            peer,
            issuer,
            client_secret: client_secret.to_owned(),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The mode of every token issued from now on.
    #[track_caller]
    pub fn set_mode(&self, mode: EvilMode) {
        let response = crate::http()
            .post(format!("{}/__test/mode", self.issuer))
            .header("content-type", "application/json")
            .body(json!({"mode": mode.name()}).to_string())
            .send()
            .expect("POST /__test/mode");
        assert_eq!(response.status(), 200, "set mode {mode:?}");
    }

    /// Every request it was sent, oldest first: `{method, path, query, form, authorization,
    /// outcome}`.
    pub fn requests(&self) -> Vec<Value> {
        let response = crate::http()
            .get(format!("{}/__test/requests", self.issuer))
            .send()
            .expect("GET /__test/requests");
        match response.json_value() {
            Value::Array(requests) => requests,
            other => panic!("requests: {other}"),
        }
    }

    /// Its JWKS (`/jwks`).
    pub fn jwks(&self) -> Value {
        crate::http()
            .get(format!("{}/jwks", self.issuer))
            .send()
            .expect("GET /jwks")
            .json_value()
    }

    /// `token` checked by jwcrypto (oidc_idp.py `verify`) against this IdP's JWKS and, for
    /// HS256, the client secret: `{header, claims, valid_jwks, valid_hmac}`.
    pub fn verify(&self, token: &str) -> Value {
        verify_id_token(token, &self.jwks(), Some(&self.client_secret))
    }

    pub fn log(&self) -> String {
        self.peer.log()
    }
}

/// `token` checked by jwcrypto against `jwks` (and HS256 against `hmac_secret`): `{header,
/// claims, valid_jwks, valid_hmac}` (oidc_idp.py `verify`).
pub fn verify_id_token(token: &str, jwks: &Value, hmac_secret: Option<&str>) -> Value {
    let mut child = Command::new("python3")
        .arg(evil_idp_script())
        .arg("verify")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start oidc_idp.py verify");
    let spec = json!({"token": token, "jwks": jwks, "hmac_secret": hmac_secret});
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(spec.to_string().as_bytes())
        .expect("write the token");
    let output = child.wait_with_output().expect("oidc_idp.py verify output");
    assert!(
        output.status.success(),
        "oidc_idp.py verify: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("verify prints JSON")
}

#[path = "oidc_agent.rs"]
mod agent;
pub use agent::*;
