//! Helpers of the bearer token tests (tests/tests/bearer*.rs): the independent token issuer
//! and minter (tests/tokens/issuer.py: keys, a Docker token server, JWTs of any shape) and
//! berth configured with `http.auth.bearer` pointing at it.
//!
//! Rules: the issuer shares no code with the daemon (it signs with Python `cryptography`);
//! its token server listens on 127.0.0.1 port 0 and dies with its [`Issuer`] (SIGKILL in
//! `Drop`). A missing python3 or `cryptography` skips the test, or fails it under
//! `BERTH_REQUIRE_TOOLS=1`.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::{require_tool, run_cmd, Berth};

/// The `service` berth and the issuer agree on.
pub const SERVICE: &str = "berth.test";
/// Passwords of the issuer's users.
pub const PASSWORD: &str = "token pass";

/// tests/tokens/issuer.py.
pub fn issuer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tokens/issuer.py")
}

/// True when python3 with `cryptography` is there; panics instead under
/// `BERTH_REQUIRE_TOOLS=1`.
pub fn issuer_available() -> bool {
    if !require_tool("python3") {
        return false;
    }
    let (ok, _, stderr) = run_cmd(Command::new("python3").args(["-c", "import cryptography"]));
    if !ok {
        if std::env::var("BERTH_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("python3 `cryptography` is missing (BERTH_REQUIRE_TOOLS=1): {stderr}");
        }
        eprintln!("SKIPPED: python3 `cryptography` is missing: {stderr}");
    }
    ok
}

/// Seconds since 1970, as JWT claims count.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Key pairs and certificates made by the issuer in `dir`: name -> {key, crt, pub, kid,
/// thumbprint, jwk}; names `rsa`, `rsa-other`, `p256`, `p384`, `ed25519`.
pub fn make_keys(dir: &Path) -> Value {
    let (ok, stdout, stderr) = run_cmd(
        Command::new("python3")
            .arg(issuer_script())
            .arg("keys")
            .arg(dir),
    );
    assert!(ok, "issuer.py keys failed: {stderr}");
    serde_json::from_str(stdout.trim()).expect("keys JSON")
}

/// Tokens for `specs` (see issuer.py `mint`), one python process for the batch.
#[track_caller]
pub fn mint(specs: &[Value]) -> Vec<String> {
    let mut child = Command::new("python3")
        .arg(issuer_script())
        .arg("mint")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start issuer.py mint");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&serde_json::to_vec(specs).expect("specs serialize"))
        .expect("write specs");
    let output = child.wait_with_output().expect("issuer.py output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "issuer.py mint failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tokens: Vec<String> = serde_json::from_str(stdout.trim()).expect("a JSON list");
    assert_eq!(tokens.len(), specs.len());
    tokens
}

/// Claims of a token for `sub` granting `access`, valid for 5 minutes.
pub fn claims(sub: &str, access: Value) -> Value {
    json!({
        "iss": "tokens.test", "sub": sub, "aud": SERVICE,
        "iat": now(), "nbf": now() - 1, "exp": now() + 300, "access": access,
    })
}

/// `{"type": "repository", "name", "actions"}`.
pub fn repository(name: &str, actions: &[&str]) -> Value {
    json!({"type": "repository", "name": name, "actions": actions})
}

/// The token server (issuer.py `serve`).
pub struct Issuer {
    child: Child,
    /// `http://127.0.0.1:PORT/token`
    pub realm: String,
}

impl Issuer {
    /// Starts the token server signing RS256 with `key` (kid: `kid`) for these users and
    /// policy (see issuer.py).
    pub fn start(dir: &Path, key: &str, kid: &str, users: &[&str], policy: Value) -> Issuer {
        let users: serde_json::Map<String, Value> = users
            .iter()
            .map(|user| ((*user).to_owned(), json!(PASSWORD)))
            .collect();
        let config = json!({
            "service": SERVICE, "key": key, "kid": kid, "issuer": "tokens.test",
            "users": users, "policy": policy,
        });
        let path = dir.join("issuer.json");
        std::fs::write(&path, config.to_string()).expect("issuer config");
        let mut child = Command::new("python3")
            .arg(issuer_script())
            .arg("serve")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start issuer.py serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("issuer's first line");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("issuer said {line:?}"));
        Issuer {
            child,
            realm: format!("http://127.0.0.1:{port}/token"),
        }
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// berth with `http.auth.bearer` {realm, [`SERVICE`], cert} and `patch` merged into the
/// config.
pub fn start_berth(realm: &str, cert: &str, patch: Value) -> Berth {
    let mut config = json!({
        "http": {"auth": {"bearer": {"realm": realm, "service": SERVICE, "cert": cert}}},
    });
    crate::merge_patch(&mut config, &patch);
    Berth::start_with(config)
}

/// A client that sends `Authorization: Bearer <token>` on every request.
pub fn client(token: &str) -> crate::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {token}").parse().expect("header value");
    headers.insert("authorization", value);
    crate::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .default_headers(headers)
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("client builds")
}
