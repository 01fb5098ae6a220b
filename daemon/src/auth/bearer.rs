//! Bearer tokens (`http.auth.bearer`, the Docker/Distribution token protocol): the keys that
//! verify tokens ([`TokenKeys`]), the check in front of every request ([`Bearer::admit`]), the
//! scopes a request needs ([`scopes`]) and the 401 challenges. Key loading and key IDs are in
//! auth/bearer_keys.rs.
//!
//! Rules:
//! - With `http.auth.bearer`, a token is the only way in (as zot): every request but the health
//!   probes and the public extension routes (zot's mgmt) needs `Authorization: Bearer <JWT>`.
//!   Basic credentials, a client certificate's identity or two Authorization headers are no
//!   token.
//! - Keys come from the `cert` file only: certificates and `PUBLIC KEY` blocks (a bundle may hold
//!   several). RSA of at least [`MIN_RSA_BITS`], ECDSA P-256 and P-384, Ed25519. Each key allows
//!   only its own algorithms: RSA RS256/384/512 and PS256/384/512, P-256 ES256, P-384 ES384,
//!   Ed25519 EdDSA. Never `none`, never HMAC. Key material in a token's header (`jwk`, `x5c`,
//!   `jku`) is never used (CVE-2025-24976).
//! - A `kid` header must name a configured key, by its libtrust ID (Distribution and
//!   docker_auth: base32 of the first 240 bits of SHA-256 of the DER SubjectPublicKeyInfo, 12
//!   groups of 4 joined by `:`) or its RFC 7638 JWK thumbprint. Without `kid`, each key is tried.
//! - Claims: `aud` must contain `service`; `exp` is required; `nbf` is checked; both with
//!   [`LEEWAY_SECONDS`] of clock skew. `iss` is not checked (zot has no key for it). `sub` names
//!   the user; a missing or empty `sub` is an anonymous token: its caller has only the token's
//!   `access` rights, and is anonymous to `http.accessControl`.
//! - Authorization, from the `access` claim (`[{type, name, actions}]`; `*` grants every action;
//!   zot's per-entry `exp` is ignored): GET/HEAD of a repository need `pull`, POST/PUT/PATCH
//!   `pull,push` (a push needs both, as in Distribution), DELETE `delete` (its own action,
//!   GHSA-qg67), every method of an upload session `pull,push` (Distribution), the catalog
//!   `registry:catalog:*`, a mount `pull` on its `from` repository as well. Extension routes
//!   (search, userprefs, trust, berth's reports: they can show any repository) need
//!   `registry:catalog:*` too. `/v2/`, the metrics path and unknown paths need a valid token
//!   and no scope. The token's
//!   user then also goes through `http.accessControl` when it is configured.
//! - Answers: 401 `UNAUTHORIZED` with `WWW-Authenticate: Bearer realm=..,service=..[,scope=..]`
//!   and `,error="invalid_token"` for a bad token or `,error="insufficient_scope"` for a token
//!   that lacks the scope. Repository names in a scope went through the router's grammar, and
//!   realm and service through the config's checks, so nothing in a challenge needs quoting.
//!   `failDelay` does not apply (no password is guessed here).
//! - A token is at most [`MAX_TOKEN_BYTES`], checked before any parsing. Refusals are logged at
//!   info with the reason and the remote address; a token never reaches a log.

use std::fmt;
use std::net::SocketAddr;

use berth_storage::oci::RepoName;
use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode, Uri};
use jsonwebtoken::Validation;
use serde::Deserialize;

use crate::api::body::{full, Body};
use crate::api::router::{self, Endpoint};
use crate::auth::access::Need;
use crate::config::{Action, BearerConfig};

/// Clock skew allowed on `exp` and `nbf`, in seconds (Distribution's leeway).
pub const LEEWAY_SECONDS: u64 = 60;
/// Longest Authorization header value looked at; a longer one is refused unparsed.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What a scope names: a repository or the registry (the catalog).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Repository,
    Registry,
}

impl Resource {
    fn as_str(self) -> &'static str {
        match self {
            Resource::Repository => "repository",
            Resource::Registry => "registry",
        }
    }
}

/// Access a request needs, as a challenge's `scope` names it: `repository:NAME:pull,push`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub resource: Resource,
    pub name: String,
    pub actions: Vec<&'static str>,
}

impl Scope {
    /// `registry:catalog:*`: what listing the whole registry needs.
    fn catalog() -> Scope {
        Scope {
            resource: Resource::Registry,
            name: "catalog".to_owned(),
            actions: vec!["*"],
        }
    }

    fn repository(name: &RepoName, actions: &[&'static str]) -> Scope {
        Scope {
            resource: Resource::Repository,
            name: name.as_str().to_owned(),
            actions: actions.to_vec(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resource = self.resource.as_str();
        write!(out, "{resource}:{}:{}", self.name, self.actions.join(","))
    }
}

/// The scopes an OCI request needs (empty: any valid token). `query` is the raw query string.
pub fn scopes(method: &Method, path: &str, query: Option<&str>) -> Vec<Scope> {
    const PULL: &[&str] = &["pull"];
    const PUSH: &[&str] = &["pull", "push"];
    let Ok(endpoint) = router::route(method, path) else {
        return Vec::new();
    };
    let by_method = match *method {
        Method::GET | Method::HEAD => PULL,
        Method::DELETE => &["delete"],
        _ => PUSH,
    };
    match endpoint {
        Endpoint::Base | Endpoint::Discover => Vec::new(),
        Endpoint::Catalog => vec![Scope::catalog()],
        Endpoint::Upload { name, .. } => vec![Scope::repository(&name, PUSH)],
        Endpoint::UploadStart { name } => {
            let mut needed = vec![Scope::repository(&name, PUSH)];
            let pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes());
            let (mut mount, mut from) = (false, None);
            for (key, value) in pairs {
                match key.as_ref() {
                    "mount" => mount = true,
                    "from" => from = value.parse::<RepoName>().ok(),
                    _ => {}
                }
            }
            if let (true, Some(from)) = (mount, from.filter(|from| *from != name)) {
                needed.push(Scope::repository(&from, PULL));
            }
            needed
        }
        Endpoint::TagsList { name }
        | Endpoint::Manifest { name, .. }
        | Endpoint::Blob { name, .. }
        | Endpoint::Referrers { name, .. } => vec![Scope::repository(&name, by_method)],
    }
}

/// One entry of a token's `access` claim.
#[derive(Debug, Deserialize)]
struct Access {
    #[serde(rename = "type")]
    resource: String,
    name: String,
    #[serde(default)]
    actions: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    access: Option<Vec<Access>>,
}

/// A verified token: who it names (`None`: anonymous) and what it grants.
#[derive(Debug)]
pub struct Token {
    pub subject: Option<String>,
    access: Vec<Access>,
}

impl Token {
    /// Whether the token grants every action of `scope`.
    pub fn grants(&self, scope: &Scope) -> bool {
        scope.actions.iter().all(|action| {
            self.access.iter().any(|entry| {
                entry.resource == scope.resource.as_str()
                    && entry.name == scope.name
                    && entry
                        .actions
                        .iter()
                        .any(|granted| granted == "*" || granted == action)
            })
        })
    }
}

/// Why a token was refused (logged; the client only sees `invalid_token`).
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    TwoHeaders,
    TooLong,
    NotBearer,
    Malformed,
    UnknownKid,
    AlgorithmNotAllowed,
    Signature,
    Claims(String),
}

impl fmt::Display for Invalid {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::TwoHeaders => write!(out, "more than one Authorization header"),
            Invalid::TooLong => write!(out, "Authorization header over {MAX_TOKEN_BYTES} bytes"),
            Invalid::NotBearer => write!(out, "not a Bearer token"),
            Invalid::Malformed => write!(out, "malformed token"),
            Invalid::UnknownKid => write!(out, "kid names no configured key"),
            Invalid::AlgorithmNotAllowed => write!(out, "algorithm not allowed for any key"),
            Invalid::Signature => write!(out, "signature does not verify"),
            Invalid::Claims(reason) => write!(out, "{reason}"),
        }
    }
}

/// `http.auth.bearer` of the running daemon.
pub struct Bearer {
    realm: String,
    service: String,
    keys: TokenKeys,
}

impl Bearer {
    /// Reads the keys (blocking: call before the shards start).
    pub fn new(config: &BearerConfig) -> Result<Bearer, String> {
        let keys = TokenKeys::load(&config.cert)?;
        tracing::info!(
            cert = %config.cert.display(),
            keys = keys.len(),
            realm = %config.realm,
            service = %config.service,
            "bearer token authentication on"
        );
        Ok(Bearer::with_keys(config, keys))
    }

    pub fn with_keys(config: &BearerConfig, keys: TokenKeys) -> Bearer {
        Bearer {
            realm: config.realm.clone(),
            service: config.service.clone(),
            keys,
        }
    }

    /// Checks the request's token and its scopes; returns the token's user (`None`:
    /// anonymous token), or the 401 to send (boxed: a response is large).
    /// `extension_route`: the path is an extension's route (no scope).
    pub fn admit(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        extension_route: bool,
        peer: Option<SocketAddr>,
        head_only: bool,
    ) -> Result<Option<String>, Box<Response<Body>>> {
        // An extension's route (search, userprefs, trust, berth's reports) may show any
        // repository: it needs what the catalog needs.
        let needed = match extension_route {
            true => vec![Scope::catalog()],
            false => scopes(method, uri.path(), uri.query()),
        };
        let remote = peer.map(|peer| peer.to_string()).unwrap_or_default();
        let token = match self.token(headers) {
            Ok(Some(token)) => token,
            Ok(None) => return Err(Box::new(self.unauthorized(&needed, None, head_only))),
            Err(invalid) => {
                tracing::info!(remote = %remote, reason = %invalid, "bearer token refused");
                let refused = self.unauthorized(&needed, Some("invalid_token"), head_only);
                return Err(Box::new(refused));
            }
        };
        if let Some(missing) = needed.iter().find(|scope| !token.grants(scope)) {
            let user = token.subject.as_deref().unwrap_or("");
            tracing::info!(remote = %remote, user, scope = %missing, "bearer token lacks the scope");
            let refused = self.unauthorized(&needed, Some("insufficient_scope"), head_only);
            return Err(Box::new(refused));
        }
        Ok(token.subject)
    }

    /// The verified token of the request; `None` when it sends no Authorization header.
    pub fn token(&self, headers: &HeaderMap) -> Result<Option<Token>, Invalid> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Invalid::TwoHeaders);
        }
        let value = value.as_bytes();
        if value.len() > MAX_TOKEN_BYTES {
            return Err(Invalid::TooLong);
        }
        if value.len() < 7 || !value[..7].eq_ignore_ascii_case(b"bearer ") {
            return Err(Invalid::NotBearer);
        }
        let token = std::str::from_utf8(&value[7..])
            .map_err(|_| Invalid::Malformed)?
            .trim();
        self.verify(token).map(Some)
    }

    /// Verifies a token (the JWT text) against the keys and the claims rules.
    pub fn verify(&self, token: &str) -> Result<Token, Invalid> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Invalid::TooLong);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Invalid::Malformed)?;
        let named: Vec<&TokenKey> = match &header.kid {
            Some(kid) => self
                .keys
                .keys
                .iter()
                .filter(|key| key.is_named(kid))
                .collect(),
            None => self.keys.keys.iter().collect(),
        };
        if named.is_empty() {
            return Err(Invalid::UnknownKid);
        }
        let mut outcome = Err(Invalid::AlgorithmNotAllowed);
        for key in named {
            if !key.kind.algorithms().contains(&header.alg) {
                continue;
            }
            let mut validation = Validation::new(header.alg);
            validation.leeway = LEEWAY_SECONDS;
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.set_audience(&[&self.service]);
            validation.set_required_spec_claims(&["exp", "aud"]);
            match jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation) {
                Ok(data) => {
                    let claims = data.claims;
                    return Ok(Token {
                        subject: claims.sub.filter(|sub| !sub.is_empty()),
                        access: claims.access.unwrap_or_default(),
                    });
                }
                Err(error) => {
                    use jsonwebtoken::errors::ErrorKind;
                    outcome = Err(match error.kind() {
                        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                            Invalid::Signature
                        }
                        ErrorKind::ExpiredSignature => Invalid::Claims("expired".into()),
                        ErrorKind::ImmatureSignature => Invalid::Claims("not yet valid".into()),
                        ErrorKind::InvalidAudience => Invalid::Claims("wrong audience".into()),
                        ErrorKind::MissingRequiredClaim(claim) => {
                            Invalid::Claims(format!("no {claim} claim"))
                        }
                        ErrorKind::InvalidToken
                        | ErrorKind::Base64(_)
                        | ErrorKind::Json(_)
                        | ErrorKind::Utf8(_) => Invalid::Malformed,
                        _ => Invalid::Claims("claims do not validate".into()),
                    });
                    // Claims are checked after the signature: this key signed it.
                    if !matches!(outcome, Err(Invalid::Signature)) {
                        return outcome;
                    }
                }
            }
        }
        outcome
    }

    /// The `WWW-Authenticate` value: realm, service, the scopes (space-separated) when any,
    /// and the error when any.
    pub fn challenge(&self, scopes: &[Scope], error: Option<&str>) -> String {
        let mut challenge = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm, self.service
        );
        if !scopes.is_empty() {
            let joined: Vec<String> = scopes.iter().map(Scope::to_string).collect();
            challenge.push_str(&format!(",scope=\"{}\"", joined.join(" ")));
        }
        if let Some(error) = error {
            challenge.push_str(&format!(",error=\"{error}\""));
        }
        challenge
    }

    /// 401 `UNAUTHORIZED` with the Bearer challenge; no body when `head_only`.
    pub fn unauthorized(
        &self,
        scopes: &[Scope],
        error: Option<&str>,
        head_only: bool,
    ) -> Response<Body> {
        let message = match error {
            Some("invalid_token") => "invalid token",
            Some(_) => "insufficient scope",
            None => "authentication required",
        };
        let body = Bytes::from(
            serde_json::json!({"errors": [{
                "code": "UNAUTHORIZED",
                "message": message,
                "detail": scopes.iter().map(|scope| serde_json::json!({
                    "Type": scope.resource.as_str(),
                    "Name": scope.name,
                    "Action": scope.actions.join(","),
                })).collect::<Vec<_>>(),
            }]})
            .to_string(),
        );
        let challenge = HeaderValue::from_str(&self.challenge(scopes, error))
            .expect("realm, service and repository names were checked for header safety");
        Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, challenge)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len())
            .body(full(if head_only { Bytes::new() } else { body }))
            .expect("static response parts are valid")
    }

    /// The answer when `http.accessControl` refuses an anonymous token's caller: the challenge
    /// with `insufficient_scope` and the scope the refused action maps to.
    pub fn refuse_anonymous(&self, need: &Need, head_only: bool) -> Response<Body> {
        let scopes = match need {
            Need::Action(action, repo) => {
                let actions: &[&'static str] = match action {
                    Action::Read => &["pull"],
                    Action::Create | Action::Update => &["pull", "push"],
                    Action::Delete => &["delete"],
                };
                vec![Scope::repository(repo, actions)]
            }
            _ => Vec::new(),
        };
        tracing::info!(user = "", "access denied to an anonymous token");
        self.unauthorized(&scopes, Some("insufficient_scope"), head_only)
    }
}

#[path = "bearer_keys.rs"]
mod keys;
use keys::TokenKey;
pub use keys::{libtrust_id, KeyKind, TokenKeys, MAX_KEYS, MAX_KEY_FILE_BYTES, MIN_RSA_BITS};

#[cfg(test)]
#[path = "bearer_tests.rs"]
mod tests;
