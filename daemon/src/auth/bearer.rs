//! Bearer tokens (`http.auth.bearer`, the Docker/Distribution token protocol): the keys that
//! verify tokens ([`TokenKeys`]), the check in front of every request ([`Bearer::admit`]), the
//! scopes a request needs ([`scopes`]) and the 401 challenges.
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
//!   `registry:catalog:*`, a mount `pull` on its `from` repository as well. `/v2/`, extension
//!   routes, the metrics path and unknown paths need a valid token and no scope. The token's
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
use std::path::Path;

use base64::Engine as _;
use berth_storage::oci::RepoName;
use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode, Uri};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use x509_parser::prelude::{FromDer as _, SubjectPublicKeyInfo};
use x509_parser::public_key::PublicKey;

use crate::api::body::{full, Body};
use crate::api::router::{self, Endpoint};
use crate::auth::access::Need;
use crate::config::{Action, BearerConfig};

/// Clock skew allowed on `exp` and `nbf`, in seconds (Distribution's leeway).
pub const LEEWAY_SECONDS: u64 = 60;
/// Longest Authorization header value looked at; a longer one is refused unparsed.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest `cert` file read (a bundle of keys is a few KiB).
pub const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Most keys in one `cert` file (each one may be tried for a token without `kid`).
pub const MAX_KEYS: usize = 64;

const OID_EC_P256: &str = "1.2.840.10045.3.1.7";
const OID_EC_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

/// The kind of a verifying key, which decides the algorithms it allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// The JWS algorithms a key of this kind verifies.
    pub fn algorithms(self) -> &'static [Algorithm] {
        match self {
            KeyKind::Rsa => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            KeyKind::P256 => &[Algorithm::ES256],
            KeyKind::P384 => &[Algorithm::ES384],
            KeyKind::Ed25519 => &[Algorithm::EdDSA],
        }
    }
}

/// One verifying key and the IDs a token's `kid` may name it by.
struct TokenKey {
    kind: KeyKind,
    decoding: DecodingKey,
    libtrust_id: String,
    thumbprint: String,
}

/// The keys that verify tokens (the `cert` file).
pub struct TokenKeys {
    keys: Vec<TokenKey>,
}

impl TokenKeys {
    /// Reads the `cert` file: PEM certificates and `PUBLIC KEY` blocks. Errors name the file,
    /// never the key.
    pub fn load(path: &Path) -> Result<TokenKeys, String> {
        let name = path.display();
        let size = std::fs::metadata(path)
            .map_err(|error| format!("cannot read {name}: {error}"))?
            .len();
        if size > MAX_KEY_FILE_BYTES {
            return Err(format!(
                "{name} is larger than {MAX_KEY_FILE_BYTES} bytes; it should hold PEM \
                 certificates or public keys"
            ));
        }
        let text = std::fs::read(path).map_err(|error| format!("cannot read {name}: {error}"))?;
        TokenKeys::parse(&text).map_err(|error| format!("{name}: {error}"))
    }

    /// The keys of PEM text (see [`TokenKeys::load`]).
    pub fn parse(pem: &[u8]) -> Result<TokenKeys, String> {
        let mut keys = Vec::new();
        for (index, block) in x509_parser::pem::Pem::iter_from_buffer(pem).enumerate() {
            let number = index + 1;
            let block = block.map_err(|_| format!("PEM block {number} is malformed"))?;
            let key = match block.label.as_str() {
                "CERTIFICATE" => {
                    let (_, certificate) = x509_parser::parse_x509_certificate(&block.contents)
                        .map_err(|_| format!("certificate {number} cannot be parsed"))?;
                    TokenKey::of(certificate.public_key())
                }
                "PUBLIC KEY" => {
                    let (_, spki) = SubjectPublicKeyInfo::from_der(&block.contents)
                        .map_err(|_| format!("public key {number} cannot be parsed"))?;
                    TokenKey::of(&spki)
                }
                other => Err(format!(
                    "PEM block {number} is a {other:?}; only CERTIFICATE and PUBLIC KEY blocks \
                     are read"
                )),
            };
            keys.push(key.map_err(|error| format!("PEM block {number}: {error}"))?);
            if keys.len() > MAX_KEYS {
                return Err(format!("more than {MAX_KEYS} keys"));
            }
        }
        if keys.is_empty() {
            return Err("no PEM certificate or public key found".to_owned());
        }
        Ok(TokenKeys { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Each key's kind, libtrust ID and JWK thumbprint, in file order.
    pub fn describe(&self) -> Vec<(KeyKind, &str, &str)> {
        self.keys
            .iter()
            .map(|key| (key.kind, key.libtrust_id.as_str(), key.thumbprint.as_str()))
            .collect()
    }
}

impl TokenKey {
    fn of(spki: &SubjectPublicKeyInfo<'_>) -> Result<TokenKey, String> {
        let algorithm = spki.algorithm.algorithm.to_id_string();
        let bits: &[u8] = &spki.subject_public_key.data;
        let (kind, decoding, jwk) = match algorithm.as_str() {
            OID_RSA_ENCRYPTION => {
                let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
                    return Err("the RSA key cannot be parsed".to_owned());
                };
                if rsa.key_size() < MIN_RSA_BITS {
                    return Err(format!(
                        "the RSA key has {} bits; at least {MIN_RSA_BITS} are needed",
                        rsa.key_size()
                    ));
                }
                let jwk = format!(
                    r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                    base64url(strip_zeros(rsa.exponent)),
                    base64url(strip_zeros(rsa.modulus))
                );
                (KeyKind::Rsa, DecodingKey::from_rsa_der(bits), jwk)
            }
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|parameters| parameters.as_oid().ok())
                    .map(|oid| oid.to_id_string());
                let (kind, crv, coordinate) = match curve.as_deref() {
                    Some(OID_EC_P256) => (KeyKind::P256, "P-256", 32),
                    Some(OID_EC_P384) => (KeyKind::P384, "P-384", 48),
                    _ => return Err("ECDSA keys must be on P-256 or P-384".to_owned()),
                };
                // ring verifies uncompressed points only: 0x04 || x || y.
                if bits.len() != 1 + 2 * coordinate || bits[0] != 4 {
                    return Err("the ECDSA key is not an uncompressed point".to_owned());
                }
                let (x, y) = bits[1..].split_at(coordinate);
                let jwk = format!(
                    r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
                    base64url(x),
                    base64url(y)
                );
                (kind, DecodingKey::from_ec_der(bits), jwk)
            }
            OID_ED25519 => {
                if bits.len() != 32 {
                    return Err("the Ed25519 key is not 32 bytes".to_owned());
                }
                let jwk = format!(
                    r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                    base64url(bits)
                );
                (KeyKind::Ed25519, DecodingKey::from_ed_der(bits), jwk)
            }
            other => {
                return Err(format!(
                    "key algorithm {other} is not supported (RSA, ECDSA P-256/P-384 or Ed25519)"
                ))
            }
        };
        Ok(TokenKey {
            kind,
            decoding,
            libtrust_id: libtrust_id(spki.raw),
            thumbprint: base64url(&Sha256::digest(jwk.as_bytes())),
        })
    }

    fn is_named(&self, kid: &str) -> bool {
        self.libtrust_id == kid || self.thumbprint == kid
    }
}

/// The libtrust key ID of a DER SubjectPublicKeyInfo (what Distribution's token servers put in
/// `kid`): base32 of the first 240 bits of its SHA-256, in groups of 4 joined by `:`.
pub fn libtrust_id(spki_der: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = Sha256::digest(spki_der);
    // 30 bytes = 48 base32 digits of 5 bits each, no padding.
    let mut digits = Vec::with_capacity(48);
    for chunk in hash[..30].chunks(5) {
        let value = chunk
            .iter()
            .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
        for shift in (0..8).rev() {
            digits.push(ALPHABET[((value >> (shift * 5)) & 31) as usize]);
        }
    }
    digits
        .chunks(4)
        .map(|group| std::str::from_utf8(group).expect("base32 digits are ASCII"))
        .collect::<Vec<_>>()
        .join(":")
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    &bytes[first..]
}

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
        Endpoint::Catalog => vec![Scope {
            resource: Resource::Registry,
            name: "catalog".to_owned(),
            actions: vec!["*"],
        }],
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
        let needed = match extension_route {
            true => Vec::new(),
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

#[cfg(test)]
#[path = "bearer_tests.rs"]
mod tests;
