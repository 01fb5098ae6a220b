//! htpasswd Basic authentication (`http.auth.htpasswd`): the check in front of every `/v2/`
//! request and the metrics path, its cache, and the 401 answer.
//!
//! Rules:
//! - bcrypt (tens of milliseconds) never runs on a shard thread: it runs on the blocking pool
//!   (`spawn_blocking`). A successful verification is cached, keyed by the user name and a
//!   salted SHA-256 of the password (never the password itself), so a warm request costs a
//!   hash and a map lookup. A failure is never cached. The cache is bounded
//!   ([`MAX_CACHED_LOGINS`]) and belongs to one version of the file: a reload starts empty.
//! - The file is re-read when it changes: at most once per [`RELOAD_CHECK_INTERVAL`], the first
//!   request after the interval stats the file (on the blocking pool) and, when its size,
//!   mtime or inode changed, parses it again. A file that became unreadable or invalid keeps
//!   the users of the last good version (logged once per change). A user removed from the
//!   file is refused from the first check after the change.
//! - A refused login waits `http.auth.failDelay` (an async sleep, the shard keeps serving),
//!   then gets 401 `UNAUTHORIZED` with `WWW-Authenticate: Basic realm="<http.realm>"`. A
//!   request without credentials gets the 401 at once (clients probe `/v2/` that way).
//! - An unknown user costs a bcrypt verification too, so timing does not tell which user
//!   names exist.
//! - With `http.accessControl`, a request without credentials ([`sends_no_credentials`]) is
//!   anonymous and goes on to the policies (auth/access.rs); without it, it gets the 401.
//! - The Authorization header and passwords never reach a log; a failed login is logged at
//!   info with the user name and remote address only.
//! - With `http.auth.apikey`, a Basic password that begins with `zak_` is an API key
//!   (auth/apikey.rs), checked without bcrypt and never cached; its failures are failed logins
//!   as above. The UI's login form ([`Authenticator::verify`]) takes passwords only.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use base64::Engine as _;
use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::api::body::{full, Body};
use crate::config::{AuthConfig, Htpasswd};

/// zot's realm when `http.realm` is not set.
pub const DEFAULT_REALM: &str = "zot";
/// Most successful logins remembered per version of the htpasswd file; when full, the cache
/// starts over (the next request of each client pays one bcrypt again).
pub const MAX_CACHED_LOGINS: usize = 4096;
/// Shortest time between two looks at the htpasswd file.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Longest Authorization header value looked at (a Basic header is user + password in base64).
const MAX_AUTHORIZATION_BYTES: usize = 4096;
/// bcrypt cost of the hash verified for an unknown user (htpasswd -B's default).
const UNKNOWN_USER_COST: u32 = 10;

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No Authorization header (or another scheme): answered at once.
    Missing,
    /// Credentials that do not verify: answered after `failDelay`.
    Failed,
    /// Too many failed logins of this user from this address, or from this address: 429
    /// with `Retry-After` after this wait, the password not checked (auth/backoff.rs).
    Throttled(Duration),
}

/// The htpasswd users of the running daemon, their cache and the 401 answer.
pub struct Authenticator {
    /// `http.auth.htpasswd.path` (`None`: LDAP only).
    path: Option<PathBuf>,
    /// `http.auth.ldap`: asked before the htpasswd file, as zot does.
    ldap: Option<super::ldap::LdapLogins>,
    fail_delay: Duration,
    challenge: HeaderValue,
    /// Per-process random salt of the cache keys.
    salt: [u8; 32],
    /// Verified for an unknown user so that its refusal takes as long as a wrong password's:
    /// bcrypt of random bytes nobody knows, made at startup.
    unknown_user_hash: String,
    current: ArcSwap<Version>,
    /// Milliseconds since `epoch` of the last look at the file.
    checked_ms: AtomicU64,
    epoch: Instant,
    /// Failed logins by account and address (berth's backoff beyond `failDelay`).
    pub backoff: super::backoff::LoginBackoff,
    /// `http.auth.apikey`: keys are passwords too.
    api_keys: Option<super::apikey::ApiKeys>,
}

/// Who a Basic header names, once verified.
#[derive(Debug)]
pub struct Identity {
    pub user: String,
    /// Set when the password was an API key.
    pub key: Option<Arc<super::apikey::KeyGrant>>,
}

/// One version of the htpasswd file and the logins verified against it.
struct Version {
    identity: Option<FileIdentity>,
    users: Htpasswd,
    verified: Mutex<HashSet<(String, [u8; 32])>>,
}

/// What tells one version of the file from the next without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileIdentity {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    device: u64,
}

impl FileIdentity {
    fn of(path: &Path) -> std::io::Result<FileIdentity> {
        use std::os::unix::fs::MetadataExt as _;
        let metadata = std::fs::metadata(path)?;
        Ok(FileIdentity {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            inode: metadata.ino(),
            device: metadata.dev(),
        })
    }
}

impl Authenticator {
    /// Reads the htpasswd file (blocking: call before the shards start). `realm` is
    /// `http.realm`.
    pub fn new(config: &AuthConfig, realm: Option<&str>) -> Result<Authenticator, String> {
        Authenticator::with_groups(config, realm, Default::default())
    }

    /// [`Authenticator::new`], writing LDAP users' groups into `groups` (which access control
    /// reads).
    pub fn with_groups(
        config: &AuthConfig,
        realm: Option<&str>,
        groups: Arc<super::ldap::DirectoryGroups>,
    ) -> Result<Authenticator, String> {
        let realm = realm.unwrap_or(DEFAULT_REALM);
        let quoted = realm.replace('\\', "\\\\").replace('"', "\\\"");
        let challenge = HeaderValue::from_str(&format!("Basic realm=\"{quoted}\""))
            .map_err(|_| format!("http.realm {realm:?} cannot be sent in a header"))?;
        let (identity, users) = match &config.htpasswd_path {
            Some(path) => {
                let users = Htpasswd::load(path).map_err(|error| error.to_string())?;
                tracing::info!(path = %path.display(), users = users.len(), "htpasswd authentication on");
                (FileIdentity::of(path).ok(), users)
            }
            None => (None, Htpasswd::default()),
        };
        let ldap = match &config.ldap {
            Some(ldap) => Some(super::ldap::LdapLogins::new(ldap, groups)?),
            None => None,
        };
        let salt = random_salt()?;
        let unknown_user_hash =
            bcrypt::hash(salt, UNKNOWN_USER_COST).map_err(|error| format!("bcrypt: {error}"))?;
        Ok(Authenticator {
            path: config.htpasswd_path.clone(),
            ldap,
            fail_delay: config.fail_delay,
            challenge,
            salt: random_salt()?,
            unknown_user_hash,
            current: ArcSwap::from_pointee(Version::new(identity, users)),
            checked_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            backoff: Default::default(),
            api_keys: None,
        })
    }

    /// Turns API keys on (`http.auth.apikey`): a `zak_` password is looked up in `engine`.
    pub fn with_api_keys(mut self, engine: Arc<berth_storage::Engine>) -> Authenticator {
        self.api_keys = Some(super::apikey::ApiKeys::new(engine));
        self
    }

    /// Whether API keys are on.
    pub fn api_keys_on(&self) -> bool {
        self.api_keys.is_some()
    }

    /// Checks the request's Basic credentials (a password, or an API key when they are on);
    /// returns who it is, or the 401 response to send (without a body when `head_only`).
    pub async fn admit(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        head_only: bool,
    ) -> Result<Identity, Response<Body>> {
        match self.identify(headers, peer).await {
            Ok(identity) => Ok(identity),
            Err(Refusal::Throttled(wait)) => {
                Err(crate::api::error::ApiError::TooManyRequests(wait).into_response(head_only))
            }
            Err(refusal) => {
                if refusal == Refusal::Failed && !self.fail_delay.is_zero() {
                    tokio::time::sleep(self.fail_delay).await;
                }
                Err(self.unauthorized(head_only))
            }
        }
    }

    /// The check without the delay: who it is (a password or an API key), or why refused.
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Identity, Refusal> {
        let (user, password) = credentials(headers, peer)?;
        match &self.api_keys {
            Some(keys) if super::apikey::ApiKeys::is_key(&password) => {
                self.verify_key(keys, user, &password, peer).await
            }
            _ => self
                .verify(user, password, peer)
                .await
                .map(|user| Identity { user, key: None }),
        }
    }

    /// An API key for `user`: one index lookup, no cache. Failures count in the backoff as
    /// a wrong password's.
    async fn verify_key(
        &self,
        keys: &super::apikey::ApiKeys,
        user: String,
        key: &[u8],
        peer: Option<SocketAddr>,
    ) -> Result<Identity, Refusal> {
        use super::apikey::KeyRefusal;
        let address = peer.map(|peer| peer.ip());
        if let Some(address) = address {
            if let Err(wait) = self.backoff.check(&user, address, Instant::now()) {
                tracing::warn!(user = %user, client = %address, wait_s = wait.as_secs_f64(), "login refused: too many failed attempts");
                return Err(Refusal::Throttled(wait));
            }
        }
        let outcome = match keys.verify(&user, key).await {
            Ok(Ok(grant)) => Ok(grant),
            Ok(Err(KeyRefusal::Unknown)) => Err("unknown, revoked or expired API key"),
            Ok(Err(KeyRefusal::OtherUser)) => Err("API key of another user"),
            Err(error) => {
                tracing::error!(user = %user, %error, "reading an API key failed");
                Err("API key cannot be read")
            }
        };
        match outcome {
            Ok(grant) => {
                if let Some(address) = address {
                    self.backoff.succeeded(&user, address);
                }
                Ok(Identity {
                    user,
                    key: Some(Arc::new(grant)),
                })
            }
            Err(reason) => {
                log_failure(&user, peer, reason);
                if let Some(address) = address {
                    if let Some(block) = self.backoff.failed(&user, address, Instant::now()) {
                        tracing::warn!(user = %user, client = %address, block_s = block.as_secs_f64(), "failed logins: further attempts refused for a while");
                    }
                }
                Err(Refusal::Failed)
            }
        }
    }

    /// The password check without the delay: the user name, or why it was refused.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<String, Refusal> {
        let (user, password) = credentials(headers, peer)?;
        self.verify(user, password, peer).await
    }

    /// Verifies a user name and password (a Basic header's, or the UI's login form's), without
    /// the delay.
    pub async fn verify(
        &self,
        user: String,
        password: Vec<u8>,
        peer: Option<SocketAddr>,
    ) -> Result<String, Refusal> {
        self.refresh().await;
        let key = (user.clone(), self.password_key(&password));
        let name = user.clone();
        let version = self.current.load_full();
        if version.is_verified(&key) || self.ldap.as_ref().is_some_and(|ldap| ldap.is_cached(&key))
        {
            return Ok(user);
        }
        let address = peer.map(|peer| peer.ip());
        if let Some(address) = address {
            if let Err(wait) = self.backoff.check(&user, address, Instant::now()) {
                tracing::warn!(user = %user, client = %address, wait_s = wait.as_secs_f64(), "login refused: too many failed attempts");
                return Err(Refusal::Throttled(wait));
            }
        }
        // LDAP first (zot's order); a refusal or an unreachable directory falls back to the
        // htpasswd file when there is one.
        let mut directory_down = false;
        if let Some(ldap) = &self.ldap {
            match ldap.login(key.clone(), &password).await {
                super::ldap::Login::Verified => {
                    super::audit("login", "ldap", &user, peer);
                    if let Some(address) = address {
                        self.backoff.succeeded(&user, address);
                    }
                    return Ok(user);
                }
                super::ldap::Login::Refused(reason) if self.path.is_none() => {
                    log_failure(&user, peer, reason);
                    return Err(self.failed(&name, address));
                }
                super::ldap::Login::Unavailable if self.path.is_none() => {
                    log_failure(&user, peer, "the LDAP directory is unavailable");
                    return Err(Refusal::Failed);
                }
                super::ldap::Login::Refused(_) => {}
                super::ldap::Login::Unavailable => directory_down = true,
            }
        }
        let known = version.users.hash_of(&user).map(str::to_owned);
        let hash = known
            .clone()
            .unwrap_or_else(|| self.unknown_user_hash.clone());
        let verified = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .unwrap_or(Ok(false));
        let outcome = match (known.is_some(), verified) {
            (true, Ok(true)) => {
                version.remember(key);
                super::audit("login", "htpasswd", &user, peer);
                if let Some(ldap) = &self.ldap {
                    // Logged in by the file: no groups of the directory.
                    ldap.forget_groups(&user).await;
                }
                Ok(user)
            }
            (true, Err(error)) => {
                tracing::warn!(user = %user, %error, "htpasswd hash cannot be verified");
                log_failure(&user, peer, "hash cannot be verified");
                Err(Refusal::Failed)
            }
            (true, Ok(false)) => {
                log_failure(&user, peer, "wrong password");
                Err(Refusal::Failed)
            }
            (false, _) => {
                log_failure(&user, peer, "unknown user");
                Err(Refusal::Failed)
            }
        };
        match &outcome {
            Ok(user) => {
                if let Some(address) = address {
                    self.backoff.succeeded(user, address);
                }
            }
            // An unreachable directory is nobody's wrong password.
            Err(_) if directory_down => {}
            Err(_) => {
                self.failed(&name, address);
            }
        }
        outcome
    }

    /// Counts a failed login of `user` from `address` (the backoff); the refusal to return.
    fn failed(&self, user: &str, address: Option<std::net::IpAddr>) -> Refusal {
        if let Some(address) = address {
            if let Some(block) = self.backoff.failed(user, address, Instant::now()) {
                tracing::warn!(user = %user, client = %address, block_s = block.as_secs_f64(), "failed logins: further attempts refused for a while");
            }
        }
        Refusal::Failed
    }

    /// `http.auth.failDelay`: how long a refused login waits.
    pub fn fail_delay(&self) -> Duration {
        self.fail_delay
    }

    /// 401 `UNAUTHORIZED` with the Basic challenge; no body when `head_only`.
    pub fn unauthorized(&self, head_only: bool) -> Response<Body> {
        let body = Bytes::from_static(
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":{}}]}"#,
        );
        let length = body.len();
        Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, self.challenge.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, length)
            .body(if head_only {
                full(Bytes::new())
            } else {
                full(body)
            })
            .expect("static response parts are valid")
    }

    /// Re-reads the file when it changed, looking at most once per interval. Only the request
    /// that wins the interval looks; the others go on with the current version.
    async fn refresh(&self) {
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.checked_ms.load(Ordering::Relaxed);
        let interval_ms = RELOAD_CHECK_INTERVAL.as_millis() as u64;
        if now_ms.saturating_sub(last) < interval_ms
            || self
                .checked_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let Some(path) = self.path.clone() else {
            return;
        };
        let shown = path.display().to_string();
        let known = self.current.load().identity.clone();
        let looked = tokio::task::spawn_blocking(move || look(&path, known)).await;
        match looked {
            Ok(Look::Unchanged) | Err(_) => {}
            Ok(Look::Changed(identity, users)) => {
                tracing::info!(
                    path = %shown,
                    users = users.len(),
                    "htpasswd file changed: reloaded"
                );
                self.current
                    .store(Arc::new(Version::new(Some(identity), users)));
            }
            Ok(Look::Refused(identity, error)) => {
                tracing::error!(
                    %error,
                    "htpasswd file changed but cannot be used; keeping the users it had before"
                );
                // Remember the refused version so the error is logged once, not every second.
                let users = self.current.load().users.clone();
                self.current.store(Arc::new(Version::new(identity, users)));
            }
        }
    }

    /// SHA-256 of the salt, then the password: the cache never holds the password.
    fn password_key(&self, password: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        hasher.update(password);
        hasher.finalize().into()
    }
}

impl Version {
    fn new(identity: Option<FileIdentity>, users: Htpasswd) -> Version {
        Version {
            identity,
            users,
            verified: Mutex::new(HashSet::new()),
        }
    }

    fn is_verified(&self, key: &(String, [u8; 32])) -> bool {
        self.verified
            .lock()
            .expect("the login cache lock is never poisoned")
            .contains(key)
    }

    fn remember(&self, key: (String, [u8; 32])) {
        let mut verified = self
            .verified
            .lock()
            .expect("the login cache lock is never poisoned");
        if verified.len() >= MAX_CACHED_LOGINS {
            verified.clear();
        }
        verified.insert(key);
    }
}

/// What a look at the file found.
enum Look {
    Unchanged,
    Changed(FileIdentity, Htpasswd),
    /// Changed, but missing or invalid.
    Refused(Option<FileIdentity>, String),
}

/// Blocking: stats the file and parses it when it is not `known`.
fn look(path: &Path, known: Option<FileIdentity>) -> Look {
    let identity = FileIdentity::of(path).ok();
    if identity == known {
        return Look::Unchanged;
    }
    let Some(identity) = identity else {
        let error = format!("cannot read htpasswd file {}", path.display());
        return Look::Refused(None, error);
    };
    match Htpasswd::load(path) {
        Ok(users) => Look::Changed(identity, users),
        Err(error) => Look::Refused(Some(identity), error.to_string()),
    }
}

/// The Basic user name and password of a request: `Missing` without a Basic header, `Failed`
/// (logged) when it does not decode.
fn credentials(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<(String, Vec<u8>), Refusal> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Refusal::Missing);
    };
    let Some(encoded) = basic_payload(value.as_bytes()) else {
        return Err(Refusal::Missing);
    };
    decode_basic(encoded).ok_or_else(|| {
        log_failure("", peer, "malformed Basic credentials");
        Refusal::Failed
    })
}

fn log_failure(user: &str, peer: Option<SocketAddr>, reason: &str) {
    let remote = peer.map(|peer| peer.to_string()).unwrap_or_default();
    tracing::info!(user, remote = %remote, reason, "login failed");
    super::audit("login_failed", "basic", user, peer);
}

/// Whether the request carries no credentials: no Authorization header, another scheme, or
/// Basic with an empty user and password (`:`, what skopeo and podman send without a login).
/// With `http.accessControl` such a request is anonymous; without it, it gets the 401.
pub fn sends_no_credentials(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return true;
    };
    let Some(encoded) = basic_payload(value.as_bytes()) else {
        return true;
    };
    encoded.is_empty()
        || base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .is_ok_and(|decoded| decoded == b":")
}

/// The base64 part of `Basic <base64>` (scheme case-insensitive), if that is the scheme.
fn basic_payload(value: &[u8]) -> Option<&[u8]> {
    if value.len() > MAX_AUTHORIZATION_BYTES || value.len() < 6 {
        return None;
    }
    let (scheme, rest) = value.split_at(5);
    if !scheme.eq_ignore_ascii_case(b"basic") || rest[0] != b' ' {
        return None;
    }
    Some(rest.trim_ascii())
}

/// `user:password` from the base64 payload. The user must be UTF-8 and non-empty; the
/// password is bytes.
fn decode_basic(encoded: &[u8]) -> Option<(String, Vec<u8>)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let colon = decoded.iter().position(|&byte| byte == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?;
    if user.is_empty() {
        return None;
    }
    Some((user.to_owned(), decoded[colon + 1..].to_vec()))
}

/// 32 random bytes from the kernel (startup only).
/// 32 bytes from the kernel's random source.
pub(crate) fn random_salt() -> Result<[u8; 32], String> {
    use std::io::Read as _;
    let mut salt = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut salt))
        .map_err(|error| format!("reading /dev/urandom: {error}"))?;
    Ok(salt)
}

#[cfg(test)]
#[path = "htpasswd_tests.rs"]
mod tests;
