//! Upstream authentication for sync: the credentials file, `WWW-Authenticate` challenges, and
//! the bearer token cache.
//!
//! Rules: credentials are keyed by `host[:port]` and are only ever sent to that exact host
//! (reliability-plan S14, GHSA-3p65): a token realm on another host gets an anonymous token
//! request unless that host has its own entry. Passwords and tokens never reach a log: every
//! type holding one redacts it in `Debug`, and none implements `Display`.
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;

/// Token lifetime when the token server does not say (the distribution token spec's default).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A cached token is dropped this long before it expires, so no request carries a token that
/// dies in flight.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Largest token response read (a JWT is a few KiB).
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 1 << 20;

/// A username and password for one upstream host.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// zot's `credentialsFile`: `host[:port]` -> login.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    by_host: BTreeMap<String, Login>,
}

impl Credentials {
    /// Reads zot's credentials JSON `{"host:port": {"username": "..", "password": ".."}}`.
    /// The error names the file and the problem, never a password.
    pub fn load(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("credentials file {}: {error}", path.display()))?;
        Credentials::parse(&text)
            .map_err(|error| format!("credentials file {}: {error}", path.display()))
    }

    /// Parses the credentials JSON (see [`Credentials::load`]).
    pub fn parse(text: &str) -> Result<Credentials, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Entry {
            username: String,
            password: String,
        }
        let entries: BTreeMap<String, Entry> = serde_json::from_str(text).map_err(|error| {
            // serde_json's messages quote neither values nor input, only positions and types.
            format!(
                "not a JSON object of {{\"host[:port]\": {{\"username\", \"password\"}}}}: {error}"
            )
        })?;
        let mut credentials = Credentials::default();
        for (host, entry) in entries {
            let host = host.trim().to_ascii_lowercase();
            if host.is_empty() || host.contains('/') {
                return Err(format!("key {host:?} is not a host[:port]"));
            }
            credentials.insert(&host, &entry.username, &entry.password);
        }
        Ok(credentials)
    }

    /// Adds (or replaces) the login for `host[:port]`.
    pub fn insert(&mut self, host: &str, username: &str, password: &str) {
        self.by_host.insert(
            host.to_ascii_lowercase(),
            Login {
                username: username.to_owned(),
                password: password.to_owned(),
            },
        );
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }

    /// The login configured for exactly this URL's host: `host:port` when the URL names a port,
    /// else `host`, then `host:<default port>`.
    pub fn for_url(&self, url: &Url) -> Option<&Login> {
        let host = url.host_str()?.to_ascii_lowercase();
        match url.port() {
            Some(port) => self.by_host.get(&format!("{host}:{port}")),
            None => self.by_host.get(&host).or_else(|| {
                let port = url.port_or_known_default()?;
                self.by_host.get(&format!("{host}:{port}"))
            }),
        }
    }
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value and returns the first challenge berth can answer
/// (Bearer before Basic when both are offered). Scheme and parameter names are
/// case-insensitive; values are tokens or quoted strings (which may hold commas and `\"`).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let challenges = parse_all(header);
    let bearer = challenges.iter().find_map(|(scheme, params)| {
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let get = |key: &str| {
            params
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(key))
                .map(|(_, value)| value.clone())
        };
        Some(Challenge::Bearer {
            realm: get("realm").filter(|realm| !realm.is_empty())?,
            service: get("service"),
            scope: get("scope").filter(|scope| !scope.is_empty()),
        })
    });
    bearer.or_else(|| {
        challenges
            .iter()
            .any(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .then_some(Challenge::Basic)
    })
}

type Params = Vec<(String, String)>;

/// Splits a header into `(scheme, params)` challenges (RFC 9110 §11.6.1).
fn parse_all(header: &str) -> Vec<(String, Params)> {
    let mut out: Vec<(String, Params)> = Vec::new();
    let bytes = header.as_bytes();
    let mut at = 0;
    let skip_space = |at: &mut usize| {
        while *at < bytes.len() && (bytes[*at] == b' ' || bytes[*at] == b'\t' || bytes[*at] == b',')
        {
            *at += 1;
        }
    };
    let token = |at: &mut usize| {
        let start = *at;
        while *at < bytes.len() && !matches!(bytes[*at], b' ' | b'\t' | b',' | b'=' | b'"') {
            *at += 1;
        }
        header[start..*at].to_owned()
    };
    loop {
        skip_space(&mut at);
        if at >= bytes.len() {
            return out;
        }
        let word = token(&mut at);
        if word.is_empty() {
            // A stray '=' or '"': skip it rather than loop forever.
            at += 1;
            continue;
        }
        // Look past spaces: `name=` is a parameter of the current challenge, anything else
        // starts a new challenge.
        let mut peek = at;
        while peek < bytes.len() && (bytes[peek] == b' ' || bytes[peek] == b'\t') {
            peek += 1;
        }
        if peek < bytes.len() && bytes[peek] == b'=' && !out.is_empty() {
            at = peek + 1;
            while at < bytes.len() && (bytes[at] == b' ' || bytes[at] == b'\t') {
                at += 1;
            }
            let value = if at < bytes.len() && bytes[at] == b'"' {
                at += 1;
                let mut value = String::new();
                while at < bytes.len() && bytes[at] != b'"' {
                    if bytes[at] == b'\\' && at + 1 < bytes.len() {
                        at += 1;
                    }
                    let len = header[at..].chars().next().map_or(1, char::len_utf8);
                    value.push_str(&header[at..at + len]);
                    at += len;
                }
                at += 1;
                value
            } else {
                token(&mut at)
            };
            if let Some((_, params)) = out.last_mut() {
                params.push((word, value));
            }
        } else {
            out.push((word, Vec::new()));
        }
    }
}

/// A bearer token; `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn header(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Parses a token server's JSON answer: `token` or `access_token`, and `expires_in` seconds.
pub fn parse_token_response(body: &[u8]) -> Result<(Token, Duration), String> {
    #[derive(Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|error| format!("token response is not the expected JSON: {error}"))?;
    let token = answer
        .token
        .filter(|token| !token.is_empty())
        .or(answer.access_token.filter(|token| !token.is_empty()))
        .ok_or("token response has neither \"token\" nor \"access_token\"")?;
    let lifetime = answer
        .expires_in
        .filter(|seconds| *seconds > 0)
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    Ok((Token(token), lifetime))
}

/// The token request URL: `realm?service=..&scope=..` (existing query parameters kept).
pub fn token_url(realm: &Url, service: Option<&str>, scope: &str) -> Url {
    let mut url = realm.clone();
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = service {
            query.append_pair("service", service);
        }
        query.append_pair("scope", scope);
    }
    url
}

/// What a host asked for last time, so later requests authenticate up front instead of
/// collecting a 401 each time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheme {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Token cache per (realm, service, scope) plus the scheme each upstream host wants.
#[derive(Default)]
pub struct AuthState {
    tokens: Mutex<HashMap<TokenKey, (Token, Instant)>>,
    schemes: Mutex<HashMap<String, Scheme>>,
}

impl fmt::Debug for AuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthState").finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub realm: String,
    pub service: Option<String>,
    pub scope: String,
}

/// Bound on cached tokens: beyond it the cache is cleared (repos x scopes of one upstream).
const MAX_CACHED_TOKENS: usize = 4096;

impl AuthState {
    pub fn scheme(&self, host: &str) -> Option<Scheme> {
        lock(&self.schemes).get(host).cloned()
    }

    pub fn set_scheme(&self, host: &str, scheme: Scheme) {
        lock(&self.schemes).insert(host.to_owned(), scheme);
    }

    /// A cached token still valid for at least the expiry margin.
    pub fn token(&self, key: &TokenKey) -> Option<Token> {
        let mut tokens = lock(&self.tokens);
        match tokens.get(key) {
            Some((token, expires)) if Instant::now() + TOKEN_EXPIRY_MARGIN < *expires => {
                Some(token.clone())
            }
            Some(_) => {
                tokens.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn store_token(&self, key: TokenKey, token: Token, lifetime: Duration) {
        let mut tokens = lock(&self.tokens);
        if tokens.len() >= MAX_CACHED_TOKENS {
            tokens.clear();
        }
        tokens.insert(key, (token, Instant::now() + lifetime));
    }

    pub fn drop_token(&self, key: &TokenKey) {
        lock(&self.tokens).remove(key);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold plain data; a panic elsewhere cannot leave them inconsistent.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let cases: &[(&str, Option<Challenge>)] = &[
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
                Some(Challenge::Bearer {
                    realm: "https://auth.docker.io/token".into(),
                    service: Some("registry.docker.io".into()),
                    scope: Some("repository:library/alpine:pull".into()),
                }),
            ),
            (
                r#"bearer REALM="http://h/t", Scope="repository:a/b:pull,push""#,
                Some(Challenge::Bearer {
                    realm: "http://h/t".into(),
                    service: None,
                    scope: Some("repository:a/b:pull,push".into()),
                }),
            ),
            (r#"Basic realm="Registry Realm""#, Some(Challenge::Basic)),
            ("basic", Some(Challenge::Basic)),
            (
                r#"Basic realm="x, y", Bearer realm="http://t/\"q\"",service=s"#,
                Some(Challenge::Bearer {
                    realm: "http://t/\"q\"".into(),
                    service: Some("s".into()),
                    scope: None,
                }),
            ),
            ("Bearer service=x", None),
            ("Negotiate abc==", None),
            ("", None),
            ("=\"", None),
        ];
        for (header, expected) in cases {
            assert_eq!(&parse_challenge(header), expected, "{header}");
        }
    }

    #[test]
    fn credentials_match_host_and_port_exactly() {
        let credentials = Credentials::parse(
            r#"{"Registry.example:5000": {"username": "u1", "password": "p1"},
                "ghcr.io": {"username": "u2", "password": "p2"},
                "quay.io:443": {"username": "u3", "password": "p3"}}"#,
        )
        .expect("valid credentials");
        let user = |url: &str| {
            credentials
                .for_url(&Url::parse(url).expect("url"))
                .map(|login| login.username.clone())
        };
        assert_eq!(user("http://registry.example:5000/v2/"), Some("u1".into()));
        assert_eq!(user("http://registry.example/v2/"), None);
        assert_eq!(user("http://registry.example:5001/v2/"), None);
        assert_eq!(user("https://ghcr.io/token"), Some("u2".into()));
        assert_eq!(user("https://ghcr.io:8443/token"), None);
        assert_eq!(user("https://quay.io/v2/"), Some("u3".into()));
        assert_eq!(user("https://evil.ghcr.io/v2/"), None);
    }

    #[test]
    fn credentials_reject_bad_files_without_echoing_secrets() {
        for text in [
            r#"{"h": {"username": "u"}}"#,
            r#"{"h": {"username": "u", "password": "hunter2", "x": 1}}"#,
            r#"["hunter2"]"#,
            r#"{"a/b": {"username": "u", "password": "hunter2"}}"#,
        ] {
            let error = Credentials::parse(text).expect_err(text);
            assert!(!error.contains("hunter2"), "{error}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let error = Credentials::load(&dir.path().join("missing.json")).expect_err("missing file");
        assert!(error.contains("missing.json"), "{error}");
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let mut credentials = Credentials::default();
        credentials.insert("h:1", "alice", "hunter2");
        let text = format!("{credentials:?}");
        assert!(
            text.contains("alice") && !text.contains("hunter2"),
            "{text}"
        );
        let (token, lifetime) =
            parse_token_response(br#"{"access_token": "s3cr3t", "expires_in": 300}"#)
                .expect("token");
        assert_eq!(lifetime, Duration::from_secs(300));
        assert!(!format!("{token:?}").contains("s3cr3t"));
        assert_eq!(token.header(), "Bearer s3cr3t");
    }

    #[test]
    fn token_responses_parse() {
        let (token, lifetime) =
            parse_token_response(br#"{"token": "a", "access_token": "b"}"#).expect("token");
        assert_eq!(
            (token.header(), lifetime),
            ("Bearer a".to_owned(), DEFAULT_TOKEN_LIFETIME)
        );
        assert!(parse_token_response(br#"{"token": ""}"#).is_err());
        assert!(parse_token_response(b"not json").is_err());
        let url = token_url(
            &Url::parse("https://auth.example/token?x=1").expect("url"),
            Some("reg"),
            "repository:a b:pull",
        );
        assert_eq!(
            url.as_str(),
            "https://auth.example/token?x=1&service=reg&scope=repository%3Aa+b%3Apull"
        );
    }

    #[test]
    fn token_cache_expires_before_the_token_does() {
        let state = AuthState::default();
        let key = TokenKey {
            realm: "r".into(),
            service: None,
            scope: "s".into(),
        };
        let (token, _) = parse_token_response(br#"{"token": "t"}"#).expect("token");
        state.store_token(key.clone(), token.clone(), Duration::from_secs(5));
        assert_eq!(
            state.token(&key),
            None,
            "a token within the margin of expiry is not used"
        );
        state.store_token(key.clone(), token.clone(), Duration::from_secs(60));
        assert_eq!(state.token(&key), Some(token));
        state.drop_token(&key);
        assert_eq!(state.token(&key), None);
    }
}
