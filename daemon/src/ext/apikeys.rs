//! zot's API key endpoints (`http.auth.apikey`, zot §5.2): `POST /zot/auth/apikey` creates a
//! key, `GET` lists the caller's keys, `DELETE ?id=<uuid>` revokes one. The keys live in the
//! engine (storage-engine/src/apikeys.rs); logging in with one is auth/apikey.rs's. The web
//! UI's keys page (ext/ui/keys.rs) calls [`create`] and [`revoke`] in process.
//!
//! Rules:
//! - A site (outside `/v2/`): it authenticates its own requests, but is rate-limited like
//!   every API route. The caller is a Basic user with a password, or the UI's session cookie.
//!   A cookie-authenticated POST or DELETE must come from the UI's origin (session.rs's
//!   check) and carry the session's CSRF token in `X-CSRF-Token`. A request authenticated by
//!   an API key gets 403: a key never lists, creates or revokes keys. Anonymous: the 401
//!   Basic challenge. `apikey` off: 404.
//! - Create: a JSON body of at most [`MAX_BODY_BYTES`] (413 beyond), `{label, scopes,
//!   expirationDate}`; bad JSON, a label over [`MAX_LABEL_CHARS`] characters, a scope that is
//!   not a glob, or an expiry that is not RFC 3339 or already past: 400, nothing stored.
//!   201 with zot's `APIKeyDetails` plus `apiKey`, shown this once. Times are RFC 3339; no
//!   expiry and never used are Go's zero time, as zot writes them. No scope is `null`.
//! - Revoke: exactly one `id`, else 400; a uuid that is not one of the caller's keys
//!   (another user's included) is 404 and revokes nothing.
//! - Creation and revocation are logged at info with the user and the uuid, never the key.

use berth_storage::apikeys::{ApiKey, ListedApiKey, NewApiKey};
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::api::body::{self, json_response, read_limited, RequestBody};
use crate::api::error::ApiError;
use crate::api::Ctx;
use crate::auth::htpasswd;
use crate::ext::ui::session::{self, Visitor};
use crate::ext::{Extension, Reply};

/// The route, as zot's.
pub const PATH: &str = "/zot/auth/apikey";
/// Largest create body.
pub const MAX_BODY_BYTES: usize = 8 * 1024;
/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 256;
/// Most scopes of one key.
pub const MAX_SCOPES: usize = 64;
/// Go's zero `time.Time` as its JSON writes it: zot's "no expiry" and "never used".
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// The header a cookie-authenticated change carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The extension in the list: answers [`PATH`] always (404 when `apikey` is off).
pub struct ApiKeysExt {
    enabled: bool,
}

impl ApiKeysExt {
    pub fn new(config: &crate::config::Config) -> ApiKeysExt {
        ApiKeysExt {
            enabled: config.http.apikey,
        }
    }
}

impl Extension for ApiKeysExt {
    fn name(&self) -> &'static str {
        "apikey"
    }

    fn site(&self, path: &str) -> bool {
        path == PATH
    }

    fn handle<'a>(
        &'a self,
        req: Request<RequestBody>,
        ctx: &'a Ctx,
        _user: Option<&'a str>,
    ) -> Reply<'a> {
        Box::pin(async move {
            let Some(auth) = ctx.auth.as_ref().filter(|_| self.enabled) else {
                return Err(ApiError::NotFound);
            };
            let method = req.method().clone();
            if !matches!(
                method,
                Method::GET | Method::HEAD | Method::POST | Method::DELETE
            ) {
                return Err(ApiError::Unsupported(format!(
                    "method {method} not allowed"
                )));
            }
            let head_only = method == Method::HEAD;
            let peer = req
                .extensions()
                .get::<crate::api::Peer>()
                .and_then(|peer| peer.0);
            let user = if !htpasswd::sends_no_credentials(req.headers()) {
                match auth.admit(req.headers(), peer, head_only).await {
                    Ok(identity) if identity.key.is_some() => {
                        return Err(ApiError::Forbidden(
                            "an API key cannot manage API keys".into(),
                        ))
                    }
                    Ok(identity) => identity.user,
                    Err(refused) => return Ok(refused),
                }
            } else {
                let visitor = Visitor::of(ctx, req.headers()).await;
                let Some(user) = visitor.user.clone() else {
                    return Ok(auth.unauthorized(head_only));
                };
                let changes = method == Method::POST || method == Method::DELETE;
                if changes && !cookie_change_allowed(&visitor, req.headers()) {
                    return Err(ApiError::Forbidden(
                        "a change by session cookie needs this site's origin and X-CSRF-Token"
                            .into(),
                    ));
                }
                user
            };
            match method {
                Method::POST => {
                    let user_agent = header_text(req.headers(), header::USER_AGENT);
                    let mut body = req.into_body();
                    let bytes = match read_limited(&mut body, MAX_BODY_BYTES, ctx.body_idle).await?
                    {
                        Ok(bytes) => bytes,
                        Err(limit) => {
                            body::drain(&mut body, ctx.body_idle).await;
                            return Err(ApiError::BodyTooLarge(limit));
                        }
                    };
                    let request = parse_request(&bytes)?;
                    let (key, details) = create(ctx, &user, request, user_agent).await?;
                    let mut document = details_json(&details, None);
                    document["apiKey"] = Value::String(key);
                    Ok(json_response(
                        StatusCode::CREATED,
                        "application/json",
                        document,
                    ))
                }
                Method::DELETE => {
                    let query = req.uri().query().unwrap_or_default();
                    let ids: Vec<String> = form_urlencoded::parse(query.as_bytes())
                        .filter(|(name, _)| name == "id")
                        .map(|(_, value)| value.into_owned())
                        .collect();
                    let [id] = &ids[..] else {
                        return Err(ApiError::InvalidArgument(
                            "exactly one id parameter is needed".into(),
                        ));
                    };
                    match revoke(ctx, &user, id).await? {
                        true => Ok(Response::builder()
                            .status(StatusCode::OK)
                            .header(header::CONTENT_LENGTH, 0)
                            .body(body::empty())
                            .expect("static headers are valid")),
                        false => Err(ApiError::EntryUnknown(format!("API key {id}"))),
                    }
                }
                _ => {
                    let keys = ctx.engine.api_keys_of(&user).await?;
                    let listed: Vec<Value> = keys
                        .iter()
                        .map(|listed| details_json(&listed.key, listed.last_used_ms))
                        .collect();
                    Ok(json_response(
                        StatusCode::OK,
                        "application/json",
                        json!({ "apiKeys": listed }),
                    ))
                }
            }
        })
    }
}

/// A cookie-authenticated change: same origin and the session's CSRF token in the header.
fn cookie_change_allowed(visitor: &Visitor, headers: &HeaderMap) -> bool {
    session::same_origin(headers)
        && visitor.csrf_matches(
            headers
                .get(CSRF_HEADER)
                .and_then(|value| value.to_str().ok()),
        )
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// What a create asks for, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct CreateRequest {
    pub label: String,
    pub scopes: Vec<String>,
    pub expires_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    expiration_date: Option<String>,
}

/// The create body, checked (zot's field names).
pub fn parse_request(bytes: &[u8]) -> Result<CreateRequest, ApiError> {
    // serde would take an array for a struct: the body must be an object.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::InvalidArgument(
            "the body is not a JSON object".into(),
        ));
    }
    let payload: Payload = serde_json::from_slice(bytes)
        .map_err(|error| ApiError::InvalidArgument(format!("bad JSON body: {error}")))?;
    let expiry = payload.expiration_date.unwrap_or_default();
    check_request(
        payload.label.unwrap_or_default(),
        payload.scopes.unwrap_or_default(),
        parse_expiry(&expiry)?,
    )
}

/// The checks of every create (the API's and the UI's).
pub fn check_request(
    label: String,
    scopes: Vec<String>,
    expires: Option<OffsetDateTime>,
) -> Result<CreateRequest, ApiError> {
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(ApiError::InvalidArgument(format!(
            "the label is longer than {MAX_LABEL_CHARS} characters"
        )));
    }
    if scopes.len() > MAX_SCOPES {
        return Err(ApiError::InvalidArgument(format!(
            "more than {MAX_SCOPES} scopes"
        )));
    }
    for scope in &scopes {
        if scope.is_empty() || crate::policy::tag_policy::compile_glob(scope).is_err() {
            return Err(ApiError::InvalidArgument(format!(
                "scope {scope:?} is not a repository glob"
            )));
        }
    }
    let expires_ms = match expires {
        None => None,
        Some(at) if at <= OffsetDateTime::now_utc() => {
            return Err(ApiError::InvalidArgument(
                "the expiration date is in the past".into(),
            ))
        }
        Some(at) => Some(
            u64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| {
                ApiError::InvalidArgument("the expiration date is out of range".into())
            })?,
        ),
    };
    Ok(CreateRequest {
        label,
        scopes,
        expires_ms,
    })
}

/// `expirationDate`: RFC 3339; empty or Go's zero time means none.
fn parse_expiry(text: &str) -> Result<Option<OffsetDateTime>, ApiError> {
    if text.is_empty() || text == GO_ZERO_TIME {
        return Ok(None);
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .map(Some)
        .map_err(|_| ApiError::InvalidArgument(format!("expirationDate {text:?} is not RFC 3339")))
}

/// Creates a key for `user`; logs it (never the key).
pub async fn create(
    ctx: &Ctx,
    user: &str,
    request: CreateRequest,
    creator_ua: String,
) -> Result<(String, ApiKey), ApiError> {
    let (key, details) = ctx
        .engine
        .create_api_key(NewApiKey {
            user: user.to_owned(),
            label: request.label,
            scopes: request.scopes,
            expires_ms: request.expires_ms,
            creator_ua,
        })
        .await?;
    tracing::info!(user, uuid = %details.uuid, scopes = ?details.scopes, "API key created");
    Ok((key, details))
}

/// Revokes `user`'s key `uuid`; false when they have none such. Logs a revocation.
pub async fn revoke(ctx: &Ctx, user: &str, uuid: &str) -> Result<bool, ApiError> {
    let revoked = ctx.engine.revoke_api_key(user, uuid).await?;
    if revoked {
        tracing::info!(user, uuid, "API key revoked");
    }
    Ok(revoked)
}

/// Milliseconds since the Unix epoch as RFC 3339 (UTC); `None` is Go's zero time.
pub fn go_time(ms: Option<u64>) -> String {
    ms.and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| GO_ZERO_TIME.to_owned())
}

fn now_ms() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// zot's `APIKeyDetails` of a key.
pub fn details_json(key: &ApiKey, last_used_ms: Option<u64>) -> Value {
    json!({
        "createdAt": go_time(Some(key.created_ms)),
        "expirationDate": go_time(key.expires_ms),
        "isExpired": key.expired(now_ms()),
        "creatorUa": key.creator_ua,
        "generatedBy": "manual",
        "lastUsed": go_time(last_used_ms),
        "label": key.label,
        "scopes": if key.scopes.is_empty() { Value::Null } else { json!(key.scopes) },
        "uuid": key.uuid,
    })
}

/// The listed keys of `user` (for the UI).
pub async fn list(ctx: &Ctx, user: &str) -> Result<Vec<ListedApiKey>, ApiError> {
    Ok(ctx.engine.api_keys_of(user).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_are_checked() {
        let future = (OffsetDateTime::now_utc() + time::Duration::days(1))
            .format(&Rfc3339)
            .expect("format");
        let body = format!(
            r#"{{"label":"ci","scopes":["team/**"],"expirationDate":"{future}","other":1}}"#
        );
        let parsed = parse_request(body.as_bytes()).expect("good body");
        assert_eq!(parsed.label, "ci");
        assert_eq!(parsed.scopes, vec!["team/**".to_owned()]);
        assert!(parsed.expires_ms.is_some());
        let none = parse_request(b"{}").expect("empty body is a key without anything");
        assert_eq!(
            none,
            CreateRequest {
                label: String::new(),
                scopes: Vec::new(),
                expires_ms: None
            }
        );
        let zero = format!(r#"{{"expirationDate":"{GO_ZERO_TIME}"}}"#);
        assert_eq!(
            parse_request(zero.as_bytes()).expect("zero").expires_ms,
            None
        );
        let long_label = format!(r#"{{"label":"{}"}}"#, "x".repeat(MAX_LABEL_CHARS + 1));
        for bad in [
            "not json".to_owned(),
            "[]".to_owned(),
            r#"{"label":5}"#.to_owned(),
            r#"{"expirationDate":"tomorrow"}"#.to_owned(),
            r#"{"expirationDate":"2001-01-01T00:00:00Z"}"#.to_owned(),
            r#"{"scopes":[""]}"#.to_owned(),
            r#"{"scopes":["a[b"]}"#.to_owned(),
            long_label,
        ] {
            assert!(
                matches!(
                    parse_request(bad.as_bytes()),
                    Err(ApiError::InvalidArgument(_))
                ),
                "{bad}"
            );
        }
        let exact_label = format!(r#"{{"label":"{}"}}"#, "é".repeat(MAX_LABEL_CHARS));
        assert!(parse_request(exact_label.as_bytes()).is_ok());
    }

    #[test]
    fn times_are_rfc3339_or_go_zero() {
        assert_eq!(go_time(None), GO_ZERO_TIME);
        assert_eq!(go_time(Some(0)), "1970-01-01T00:00:00Z");
        assert_eq!(go_time(Some(1_700_000_000_123)), "2023-11-14T22:13:20.123Z");
    }
}
