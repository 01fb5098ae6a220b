//! API keys at the door (`http.auth.apikey`): a Basic password that begins with `zak_` is a
//! key (storage-engine/src/apikeys.rs keeps them), and what a request admitted by one may do.
//!
//! Rules:
//! - A key is checked with one SHA-256 and one index lookup (no bcrypt, no cache): a revoked
//!   or expired key fails from the next request on. It logs in only as its owner: the Basic
//!   user name must be the user who created it (zot's rule). A failure is a failed login like
//!   a wrong password (htpasswd.rs: `failDelay`, the login backoff, the 401, the log line).
//! - Its last use is recorded at most once per [`LAST_USE_INTERVAL`] per key (an in-memory
//!   throttle of [`MAX_THROTTLED_KEYS`] keys), in a task of its own: a request never waits
//!   for it nor fails because of it.
//! - Scopes (repository globs, doublestar as `http.accessControl`'s) confine a key: with any
//!   scope, a request for a repository outside them gets 403 DENIED, the catalog lists only
//!   the repositories inside them, and every endpoint that is not about one repository (the
//!   extensions' routes, the operator endpoints) gets 403, except `/v2/` and public ones.
//!   No scope: the user's full rights. zot stores scopes without enforcing them; berth
//!   enforces them. `http.accessControl` applies to the key's user as to their password.
//! - A key never manages keys (ext/apikeys.rs refuses it with 403): a leaked key cannot mint
//!   more.
//! - Neither the key nor its hash is ever logged; the key's uuid may be.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_storage::apikeys::ApiKeyHash;
use berth_storage::oci::RepoName;
use berth_storage::Engine;
use globset::GlobMatcher;
use hyper::Response;

use crate::api::body::Body;
use crate::api::error::ApiError;
use crate::api::router::Endpoint;
use crate::auth::access::Need;
use crate::policy::tag_policy::compile_glob;

/// Shortest time between two recorded uses of one key.
pub const LAST_USE_INTERVAL: Duration = Duration::from_secs(60);
/// Most keys whose last recorded use is remembered; when full, the throttle starts over.
pub const MAX_THROTTLED_KEYS: usize = 4096;

/// What a request admitted by an API key carries (`RequestInfo::key`).
#[derive(Debug)]
pub struct KeyGrant {
    /// The key's uuid (for logs; never the key).
    pub uuid: String,
    /// `None`: the user's full rights.
    pub scopes: Option<Scopes>,
}

/// A key's scopes, compiled.
#[derive(Debug)]
pub struct Scopes(Vec<GlobMatcher>);

impl Scopes {
    /// `None` for no scope; a pattern that does not compile (checked at creation, so only a
    /// record from elsewhere) matches nothing.
    pub fn compile(patterns: &[String]) -> Option<Scopes> {
        if patterns.is_empty() {
            return None;
        }
        let globs = patterns
            .iter()
            .filter_map(|pattern| compile_glob(pattern).ok())
            .collect();
        Some(Scopes(globs))
    }

    pub fn admits(&self, repo: &str) -> bool {
        self.0.iter().any(|glob| glob.is_match(repo))
    }
}

/// Whether `scopes` confine the key to `repo` (always, without scopes).
pub fn in_scope(grant: Option<&KeyGrant>, repo: &RepoName) -> bool {
    grant
        .and_then(|grant| grant.scopes.as_ref())
        .is_none_or(|scopes| scopes.admits(repo.as_str()))
}

/// The 403 for a request outside the key's scopes, needing `need`; `None` when allowed.
pub fn confine(grant: Option<&KeyGrant>, need: &Need, head_only: bool) -> Option<Response<Body>> {
    let scopes = grant?.scopes.as_ref()?;
    let allowed = match need {
        Need::Public | Need::Base => true,
        Need::Action(_, repo) => scopes.admits(repo.as_str()),
        Need::Nothing | Need::Admin | Need::Scrape => false,
    };
    (!allowed).then(|| refusal(grant, need, head_only))
}

/// [`confine`] for an OCI endpoint: a repository's must be in scope; `/v2/`, the catalog
/// (filtered) and discover are open.
pub fn confine_endpoint(
    grant: Option<&KeyGrant>,
    endpoint: &Endpoint,
    head_only: bool,
) -> Option<Response<Body>> {
    let repo = endpoint.repo()?;
    (!in_scope(grant, repo)).then(|| {
        let need = Need::Action(crate::config::Action::Read, repo.clone());
        refusal(grant, &need, head_only)
    })
}

fn refusal(grant: Option<&KeyGrant>, need: &Need, head_only: bool) -> Response<Body> {
    let what = match need {
        Need::Action(_, repo) => repo.to_string(),
        _ => "this endpoint".to_owned(),
    };
    let key = grant.map_or("", |grant| grant.uuid.as_str());
    tracing::info!(key, %what, "access denied: outside the API key's scopes");
    ApiError::Forbidden(format!("access to {what} is outside the API key's scopes"))
        .into_response(head_only)
}

/// Why a key did not log in (the log line's reason).
#[derive(Debug, PartialEq, Eq)]
pub enum KeyRefusal {
    /// Malformed, unknown, revoked or expired.
    Unknown,
    /// A live key of another user.
    OtherUser,
}

/// The keys' side of the Basic check: lookups and last-use recording.
pub struct ApiKeys {
    engine: Arc<Engine>,
    /// When each key's use was last recorded.
    recorded: Mutex<HashMap<ApiKeyHash, Instant>>,
}

impl ApiKeys {
    pub fn new(engine: Arc<Engine>) -> ApiKeys {
        ApiKeys {
            engine,
            recorded: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `password` is to be checked as a key rather than against htpasswd.
    pub fn is_key(password: &[u8]) -> bool {
        password.starts_with(berth_storage::apikeys::API_KEY_PREFIX.as_bytes())
    }

    /// Checks `key` for `user`: the grant, why not, or the index's error.
    pub async fn verify(
        &self,
        user: &str,
        key: &[u8],
    ) -> Result<Result<KeyGrant, KeyRefusal>, berth_storage::StorageError> {
        let Ok(key) = std::str::from_utf8(key) else {
            return Ok(Err(KeyRefusal::Unknown));
        };
        let Some((hash, details)) = self.engine.api_key(key).await? else {
            return Ok(Err(KeyRefusal::Unknown));
        };
        if details.user != user {
            return Ok(Err(KeyRefusal::OtherUser));
        }
        self.note_use(hash);
        Ok(Ok(KeyGrant {
            uuid: details.uuid,
            scopes: Scopes::compile(&details.scopes),
        }))
    }

    /// Records the use of `hash` unless recorded within [`LAST_USE_INTERVAL`]; the write
    /// runs in its own task and its failure is only logged.
    fn note_use(&self, hash: ApiKeyHash) {
        let now = Instant::now();
        {
            let mut recorded = self
                .recorded
                .lock()
                .expect("the last-use throttle lock is never poisoned");
            if recorded
                .get(&hash)
                .is_some_and(|last| now.duration_since(*last) < LAST_USE_INTERVAL)
            {
                return;
            }
            if recorded.len() >= MAX_THROTTLED_KEYS {
                recorded.clear();
            }
            recorded.insert(hash, now);
        }
        let engine = self.engine.clone();
        let at_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let at_ms = u64::try_from(at_ms).unwrap_or(0);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            if let Err(error) = engine.record_api_key_use(hash, at_ms).await {
                tracing::warn!(%error, "recording an API key's last use failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_confine_a_key_to_their_repositories() {
        let patterns = vec!["team/**".to_owned(), "tools".to_owned()];
        let scopes = Scopes::compile(&patterns).expect("scopes");
        assert!(scopes.admits("team/x"));
        assert!(scopes.admits("team/a/b"));
        assert!(scopes.admits("tools"));
        assert!(!scopes.admits("other/x"));
        assert!(!scopes.admits("teams/x"));
        assert!(Scopes::compile(&[]).is_none(), "no scope: full rights");
        let grant = KeyGrant {
            uuid: "u".into(),
            scopes: Some(scopes),
        };
        let repo = |name: &str| name.parse::<RepoName>().expect("name");
        assert!(in_scope(Some(&grant), &repo("team/x")));
        assert!(!in_scope(Some(&grant), &repo("other/x")));
        assert!(in_scope(None, &repo("other/x")));
        assert!(confine(Some(&grant), &Need::Base, false).is_none());
        for denied in [Need::Nothing, Need::Admin, Need::Scrape] {
            assert!(
                confine(Some(&grant), &denied, false).is_some(),
                "{denied:?}"
            );
        }
        let action = |name: &str| Need::Action(crate::config::Action::Read, repo(name));
        assert!(confine(Some(&grant), &action("team/x"), false).is_none());
        let refused = confine(Some(&grant), &action("other/x"), false).expect("refused");
        assert_eq!(refused.status(), hyper::StatusCode::FORBIDDEN);
        let unscoped = KeyGrant {
            uuid: "u".into(),
            scopes: None,
        };
        assert!(confine(Some(&unscoped), &Need::Admin, false).is_none());
        assert!(confine(None, &Need::Admin, false).is_none());
    }

    #[test]
    fn only_a_zak_password_is_a_key() {
        assert!(ApiKeys::is_key(b"zak_0123"));
        assert!(!ApiKeys::is_key(b"secret"));
        assert!(!ApiKeys::is_key(b"ZAK_0123"));
    }
}
