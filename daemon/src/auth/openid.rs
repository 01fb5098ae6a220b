//! Single sign-on against OpenID Connect and OAuth2 providers (`http.auth.openid`): the
//! relying party's side of the authorization-code flow. The routes, the state kept in the
//! index and the session are ext/openid.rs's; this module talks to the provider.
//!
//! Rules:
//! - Discovery (`ISSUER/.well-known/openid-configuration`) at the first login, kept for
//!   [`DISCOVERY_TTL`]; its `issuer` must be the configured one (a trailing slash aside), and
//!   every ID token's `iss` must then equal the document's exactly. The signing keys
//!   (`jwks_uri`) are kept as long and fetched again (at most every [`JWKS_REFETCH`]) when a
//!   token names a key that is not there, so a provider's key rotation needs no restart.
//! - Every flow uses PKCE (S256) and a nonce. The token request authenticates the client
//!   with HTTP Basic (`client_secret_post` when the provider lists only that), or sends the
//!   client ID alone for a public client.
//! - An ID token is accepted only when: its algorithm is RS256/384/512, PS256/384/512,
//!   ES256/384 or EdDSA (never `none` or HMAC: a client secret is not a signing key here); it
//!   verifies against a key of the provider's set (by `kid`, or the only key that fits); `iss`
//!   is the provider's, `aud` holds the client ID (and `azp`, when present, is it); `exp`
//!   lies ahead and `iat` not ahead, each within [`LEEWAY`]; `nonce` is the login's.
//! - The user name is `claimMapping.username` (default `email`) and the groups
//!   `claimMapping.groups` (default `groups`: a list or one string), read from the ID token,
//!   then from the userinfo response (whose `sub` must be the ID token's). A user name that
//!   is empty, over [`MAX_NAME_CHARS`], or holds a control character or `:` (it could not be
//!   a Basic user for API keys) is refused.
//! - GitHub (OAuth2, no ID token): the user is the primary verified e-mail
//!   (`GET /user/emails`), the groups the organisations' logins (`GET /user/orgs`), as zot.
//! - Every call to the provider is bounded by [`CALL_TIMEOUT`]; its answers by
//!   [`MAX_RESPONSE_BYTES`]. No secret, code or token reaches a log or an error message.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::bearer::KeyKind;
use crate::config::{OpenIdProvider, ProviderKind};

/// How long a discovery document and key set are trusted.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Shortest time between two key set fetches for an unknown `kid`.
pub const JWKS_REFETCH: Duration = Duration::from_secs(30);
/// Clock skew allowed on `exp` and `iat`.
pub const LEEWAY: u64 = 60;
/// Longest wait for one call to the provider.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from the provider.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Longest user name taken from a claim.
pub const MAX_NAME_CHARS: usize = 256;
/// Most groups taken from a claim (more are cut).
pub const MAX_GROUPS: usize = 1024;

/// The kinds of keys an ID token may be signed with (bearer tokens' set: RSA, P-256, P-384,
/// Ed25519; never HMAC).
const KEY_KINDS: [KeyKind; 4] = [KeyKind::Rsa, KeyKind::P256, KeyKind::P384, KeyKind::Ed25519];

/// Why a login failed: what the user is told and the log says (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The provider could not be reached or answered nonsense.
    #[error("the identity provider could not be reached: {0}")]
    Unavailable(String),
    /// The provider refused (or the user cancelled).
    #[error("the identity provider refused the login: {0}")]
    Refused(String),
    /// What came back does not prove who the user is.
    #[error("the identity provider's answer was not accepted: {0}")]
    Invalid(String),
}

/// Who logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn {
    pub user: String,
    pub groups: Vec<String>,
}

/// What the provider's discovery document says (the parts berth uses).
#[derive(Debug, Clone)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
    jwks_uri: String,
    secret_post_only: bool,
}

#[derive(Default)]
struct Cached {
    discovery: Option<(Instant, Discovery)>,
    keys: Option<(Instant, Vec<Jwk>)>,
}

/// One configured provider and what berth learned of it.
pub struct Provider {
    pub config: OpenIdProvider,
    client_id: String,
    client_secret: Option<String>,
    cached: Mutex<Cached>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Provider")
            .field("key", &self.config.key)
            .finish_non_exhaustive()
    }
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl Provider {
    /// The client's credentials file, when configured, is read here (blocking: at startup).
    pub fn new(config: &OpenIdProvider) -> Result<Provider, String> {
        let (mut client_id, mut client_secret) =
            (config.client_id.clone(), config.client_secret.clone());
        if let Some(file) = &config.credentials_file {
            let (id, secret) = read_credentials(file)?;
            client_id = Some(id);
            client_secret = secret.or(client_secret);
        }
        let client_id = client_id.ok_or("no clientid")?;
        Ok(Provider {
            config: config.clone(),
            client_id,
            client_secret,
            cached: Mutex::default(),
        })
    }

    /// The callback URL of this provider on a registry reached at `base_url`.
    pub fn redirect_uri(&self, base_url: &str) -> String {
        format!(
            "{}/zot/auth/callback/{}",
            base_url.trim_end_matches('/'),
            self.config.key
        )
    }

    /// The URL to send the browser to.
    pub async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, LoginError> {
        let endpoint = match &self.config.kind {
            ProviderKind::GitHub { auth_url, .. } => auth_url.clone(),
            ProviderKind::OpenIdConnect { .. } => self.discovery().await?.authorization_endpoint,
        };
        let scope = self.config.scopes.join(" ");
        let challenge = pkce_challenge(verifier);
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &scope)
            .append_pair("state", state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if matches!(self.config.kind, ProviderKind::OpenIdConnect { .. }) {
            query.append_pair("nonce", nonce);
        }
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        Ok(format!("{endpoint}{separator}{}", query.finish()))
    }

    /// Completes a login: the code for tokens, the tokens for who it is.
    pub async fn complete(
        &self,
        redirect_uri: &str,
        code: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<LoggedIn, LoginError> {
        let client = http_client()?;
        match &self.config.kind {
            ProviderKind::OpenIdConnect { .. } => {
                let discovery = self.discovery().await?;
                let tokens = self
                    .exchange(
                        &client,
                        &discovery.token_endpoint,
                        (redirect_uri, code, verifier),
                        discovery.secret_post_only,
                    )
                    .await?;
                let id_token = tokens["id_token"]
                    .as_str()
                    .ok_or_else(|| LoginError::Invalid("no ID token in the token answer".into()))?;
                let claims = self
                    .verify_id_token(&client, &discovery, id_token, nonce)
                    .await?;
                let userinfo = match (
                    &discovery.userinfo_endpoint,
                    tokens["access_token"].as_str(),
                ) {
                    (Some(endpoint), Some(access)) => {
                        let info = get_json(&client, endpoint, access).await?;
                        if info["sub"] != claims["sub"] {
                            return Err(LoginError::Invalid(
                                "the userinfo answer is about another subject".into(),
                            ));
                        }
                        info
                    }
                    _ => Value::Null,
                };
                self.identity(&[&claims, &userinfo])
            }
            ProviderKind::GitHub {
                token_url, api_url, ..
            } => {
                let tokens = self
                    .exchange(&client, token_url, (redirect_uri, code, verifier), true)
                    .await?;
                let access = tokens["access_token"]
                    .as_str()
                    .ok_or_else(|| LoginError::Invalid("no access token in the answer".into()))?;
                let emails = get_json(&client, &format!("{api_url}/user/emails"), access).await?;
                let user = emails
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|email| email["primary"] == true && email["verified"] != false)
                    .and_then(|email| email["email"].as_str())
                    .ok_or_else(|| {
                        LoginError::Invalid("the GitHub account has no primary e-mail".into())
                    })?;
                let orgs = get_json(&client, &format!("{api_url}/user/orgs"), access).await?;
                let groups = orgs
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|org| org["login"].as_str().map(str::to_owned))
                    .take(MAX_GROUPS)
                    .collect();
                Ok(LoggedIn {
                    user: checked_name(user)?,
                    groups,
                })
            }
        }
    }

    /// The user name and groups from the claims (the first source that has each).
    fn identity(&self, sources: &[&Value]) -> Result<LoggedIn, LoginError> {
        let username_claim = &self.config.username_claim;
        let user = sources
            .iter()
            .find_map(|claims| claims[username_claim].as_str())
            .ok_or_else(|| {
                LoginError::Invalid(format!("no {username_claim:?} claim names the user"))
            })?;
        let groups_claim = &self.config.groups_claim;
        let mut groups: Vec<String> = match sources
            .iter()
            .map(|claims| &claims[groups_claim])
            .find(|value| !value.is_null())
        {
            Some(Value::String(group)) => vec![group.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(|group| match group {
                    Value::String(group) => Some(group.clone()),
                    Value::Number(number) => Some(number.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        groups.sort();
        groups.dedup();
        groups.truncate(MAX_GROUPS);
        Ok(LoggedIn {
            user: checked_name(user)?,
            groups,
        })
    }

    async fn exchange(
        &self,
        client: &reqwest::Client,
        endpoint: &str,
        (redirect_uri, code, verifier): (&str, &str, &str),
        secret_in_body: bool,
    ) -> Result<Value, LoginError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
            ("client_id", self.client_id.as_str()),
        ];
        let mut request = client
            .post(endpoint)
            .header(reqwest::header::ACCEPT, "application/json");
        match (&self.client_secret, secret_in_body) {
            (Some(secret), true) => form.push(("client_secret", secret.as_str())),
            (Some(secret), false) => {
                // RFC 6749 2.3.1: both form-urlencoded before the Basic encoding.
                let encode = |text: &str| {
                    form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>()
                };
                request = request.basic_auth(encode(&self.client_id), Some(encode(secret)));
            }
            (None, _) => {}
        }
        let answer = send(request.form(&form)).await?;
        let (status, body) = answer;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if let Some(error) = json["error"].as_str() {
            return Err(LoginError::Refused(describe_error(error, &json)));
        }
        if !(200..300).contains(&status) {
            return Err(LoginError::Unavailable(format!(
                "the token endpoint answered {status}"
            )));
        }
        Ok(json)
    }

    async fn verify_id_token(
        &self,
        client: &reqwest::Client,
        discovery: &Discovery,
        token: &str,
        nonce: &str,
    ) -> Result<Value, LoginError> {
        let invalid = |why: &str| LoginError::Invalid(why.to_owned());
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the ID token is not a signed JWT of a known algorithm"))?;
        if !KEY_KINDS
            .iter()
            .any(|kind| kind.algorithms().contains(&header.alg))
        {
            return Err(LoginError::Invalid(format!(
                "the ID token is signed with {:?}, which berth does not accept",
                header.alg
            )));
        }
        let key = self
            .signing_key(client, discovery, header.kid.as_deref(), header.alg)
            .await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY;
        validation.set_issuer(&[discovery.issuer.as_str()]);
        validation.set_audience(&[self.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                let why = match error.kind() {
                    ErrorKind::InvalidSignature => "its signature does not verify",
                    ErrorKind::ExpiredSignature => "it has expired",
                    ErrorKind::InvalidIssuer => "it comes from another issuer",
                    ErrorKind::InvalidAudience => "it is meant for another client",
                    ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
                    ErrorKind::ImmatureSignature => "it is not valid yet",
                    _ => "it does not decode",
                };
                LoginError::Invalid(format!("ID token refused: {why}"))
            })?
            .claims;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        if claims["iat"].as_u64().is_none_or(|iat| iat > now + LEEWAY) {
            return Err(invalid("ID token refused: it was issued in the future"));
        }
        if let Some(azp) = claims.get("azp") {
            if azp.as_str() != Some(self.client_id.as_str()) {
                return Err(invalid("ID token refused: it was issued to another party"));
            }
        }
        let matches = claims["nonce"].as_str().is_some_and(|sent| {
            crate::ext::ui::session::constant_time_equal(sent.as_bytes(), nonce.as_bytes())
        });
        if !matches {
            return Err(invalid("ID token refused: its nonce is not this login's"));
        }
        Ok(claims)
    }

    /// The key that verifies a token naming `kid` with `alg`.
    async fn signing_key(
        &self,
        client: &reqwest::Client,
        discovery: &Discovery,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, LoginError> {
        for attempt in 0..2 {
            let keys = self.keys(client, discovery, attempt == 1).await?;
            let fitting: Vec<&Jwk> = keys
                .iter()
                .filter(|key| fits(key, alg))
                .filter(|key| kid.is_none() || key.common.key_id.as_deref() == kid)
                .collect();
            if let [key] = fitting.as_slice() {
                return DecodingKey::from_jwk(key)
                    .map_err(|_| LoginError::Invalid("the provider's key does not decode".into()));
            }
            if fitting.len() > 1 {
                return Err(LoginError::Invalid(
                    "the ID token names no key and several would fit".into(),
                ));
            }
        }
        Err(LoginError::Invalid(
            "the ID token was signed by a key the provider does not publish".into(),
        ))
    }

    /// The provider's signing keys; `refresh` fetches them again unless that happened
    /// within [`JWKS_REFETCH`].
    async fn keys(
        &self,
        client: &reqwest::Client,
        discovery: &Discovery,
        refresh: bool,
    ) -> Result<Vec<Jwk>, LoginError> {
        {
            let cached = self.cached.lock().expect("never poisoned");
            if let Some((fetched, keys)) = &cached.keys {
                let age = fetched.elapsed();
                let fresh = if refresh {
                    age < JWKS_REFETCH
                } else {
                    age < DISCOVERY_TTL
                };
                if fresh {
                    return Ok(keys.clone());
                }
            }
        }
        let set = get_json(client, &discovery.jwks_uri, "").await?;
        // One by one: a key of a kind berth does not know (an encryption key) is skipped,
        // not a reason to refuse the set.
        let keys: Vec<Jwk> = set["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|key| serde_json::from_value(key.clone()).ok())
            .collect();
        self.cached.lock().expect("never poisoned").keys = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }

    async fn discovery(&self) -> Result<Discovery, LoginError> {
        if let Some((fetched, discovery)) = &self.cached.lock().expect("never poisoned").discovery {
            if fetched.elapsed() < DISCOVERY_TTL {
                return Ok(discovery.clone());
            }
        }
        let ProviderKind::OpenIdConnect { issuer } = &self.config.kind else {
            return Err(LoginError::Unavailable("not an OpenID provider".into()));
        };
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let document = get_json(&http_client()?, &url, "").await?;
        let discovery = parse_discovery(&document, issuer)?;
        self.cached.lock().expect("never poisoned").discovery =
            Some((Instant::now(), discovery.clone()));
        Ok(discovery)
    }
}

fn parse_discovery(document: &Value, issuer: &str) -> Result<Discovery, LoginError> {
    let text = |key: &str| document[key].as_str().map(str::to_owned);
    let required = |key: &str| {
        text(key)
            .ok_or_else(|| LoginError::Unavailable(format!("the discovery document has no {key}")))
    };
    let stated = required("issuer")?;
    if stated.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(LoginError::Unavailable(format!(
            "the discovery document names the issuer {stated:?}, not the configured {issuer:?}"
        )));
    }
    let methods: Vec<&str> = document["token_endpoint_auth_methods_supported"]
        .as_array()
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Ok(Discovery {
        issuer: stated,
        authorization_endpoint: required("authorization_endpoint")?,
        token_endpoint: required("token_endpoint")?,
        userinfo_endpoint: text("userinfo_endpoint"),
        jwks_uri: required("jwks_uri")?,
        secret_post_only: methods.contains(&"client_secret_post")
            && !methods.contains(&"client_secret_basic"),
    })
}

/// Whether `key` can verify `alg` (its kind, declared algorithm and use allowing it).
fn fits(key: &Jwk, alg: Algorithm) -> bool {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, PublicKeyUse};
    let kind = match &key.algorithm {
        AlgorithmParameters::RSA(_) => Some(KeyKind::Rsa),
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => Some(KeyKind::P256),
            EllipticCurve::P384 => Some(KeyKind::P384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(params) => {
            (params.curve == EllipticCurve::Ed25519).then_some(KeyKind::Ed25519)
        }
        AlgorithmParameters::OctetKey(_) => None,
    };
    let kind_fits = kind.is_some_and(|kind| kind.algorithms().contains(&alg));
    let use_fits = !matches!(key.common.public_key_use, Some(PublicKeyUse::Encryption));
    let alg_fits = key
        .common
        .key_algorithm
        .is_none_or(|declared| format!("{declared:?}") == format!("{alg:?}"));
    kind_fits && use_fits && alg_fits
}

/// A user name a claim gave, checked.
fn checked_name(user: &str) -> Result<String, LoginError> {
    let bad = user.is_empty()
        || user.chars().count() > MAX_NAME_CHARS
        || user.chars().any(|c| c.is_control() || c == ':');
    match bad {
        true => Err(LoginError::Invalid(
            "the user name claim is empty, too long, or holds ':' or a control character".into(),
        )),
        false => Ok(user.to_owned()),
    }
}

#[path = "openid_http.rs"]
mod http;
use http::{describe_error, get_json, http_client, read_credentials, send};

#[cfg(test)]
#[path = "openid_tests.rs"]
mod tests;
