//! zot's single sign-on routes (`http.auth.openid`, zot §5.3): `GET /zot/auth/login?provider=
//! NAME[&callback_ui=URL]` sends the browser to the provider, `GET /zot/auth/callback/NAME`
//! completes the login into the UI's session (ext/ui/session.rs), `POST /zot/auth/logout`
//! ends a session. The provider is spoken to by auth/openid.rs.
//!
//! Rules:
//! - A login in flight lives in the storage engine's index (`sso_logins`, keyed by the hash
//!   of its random `state`) with its provider, nonce, PKCE verifier, callback URL and where
//!   to go after, for [`LOGIN_LIFETIME`]; the browser holds the state in the `berth_oidc`
//!   cookie (HttpOnly, SameSite=Lax: the provider's redirect is a cross-site navigation,
//!   Path=/zot/auth/callback). A callback completes only when its `state` is the cookie's
//!   and the record is taken from the index (once: a replayed callback is refused), for the
//!   provider whose path it came to. So a login started in one browser cannot be completed
//!   in another (no login CSRF), and a login survives a restart of berth in between.
//! - The callback URL is `http.externalUrl` + `/zot/auth/callback/NAME`, or, without it, the
//!   scheme and `Host` this request came with (decided: zot's `address:port` is wrong behind
//!   a proxy and for `0.0.0.0`).
//! - `callback_ui` may be a path of this registry, or a URL on an origin of
//!   `callbackAllowOrigins` or `http.externalUrl`; anything else (and no `callback_ui`) lands
//!   on `/home` (no open redirect).
//! - Success: the groups the provider gave replace the user's kept groups (read by access
//!   control, as LDAP's), a UI session is created, `login` is audited with method
//!   `openid:NAME`, and the answer is a 200 page that moves on to the target with a meta
//!   refresh: a SameSite=Strict session cookie set by a redirect chain that began on the
//!   provider's site would not be sent to the target, one set on this page is. Any failure
//!   is a 401 page saying why (no secret), `login_failed` audited, no session.
//! - Logout: the session cookie, from this site's pages (`Origin`); 200 `{}`.
use std::sync::Arc;

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use askama::Template;

use crate::api::body::{full, Body, RequestBody};
use crate::api::error::ApiError;
use crate::api::Ctx;
use crate::auth::ldap::DirectoryGroups;
use crate::auth::openid::{LoginError, Provider};
use crate::ext::ui::session;
use crate::ext::{Extension, Reply};

/// How long a login may take at the provider.
pub const LOGIN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);
/// The cookie that binds a login in flight to its browser.
pub const STATE_COOKIE: &str = "berth_oidc";
const LOGIN_PATH: &str = "/zot/auth/login";
const CALLBACK_PREFIX: &str = "/zot/auth/callback/";
/// The state cookie's path: every provider's callback.
const CALLBACK_PATH: &str = "/zot/auth/callback";
const LOGOUT_PATH: &str = "/zot/auth/logout";

/// What the index keeps of a login in flight.
#[derive(Serialize, Deserialize)]
struct InFlight {
    provider: String,
    nonce: String,
    verifier: String,
    redirect_uri: String,
    target: String,
}

#[derive(Template)]
#[template(path = "sso.html")]
struct SsoPage<'a> {
    title: &'a str,
    message: &'a str,
    /// Where to go next (a meta refresh) on success.
    target: Option<&'a str>,
    stylesheet: bool,
}

/// The extension: its routes exist when `http.auth` is on; login and callback need
/// `http.auth.openid`.
pub struct OpenIdExt {
    providers: Vec<Arc<Provider>>,
    /// Origins `callback_ui` may name, besides this registry's pages.
    allowed_origins: Vec<String>,
    external_url: Option<String>,
    tls: bool,
    secure_cookie: bool,
    logins: bool,
    stylesheet: bool,
    groups: Arc<DirectoryGroups>,
}

impl OpenIdExt {
    /// Reads the providers' credential files (blocking: at startup).
    pub fn new(
        config: &crate::config::Config,
        groups: Arc<DirectoryGroups>,
    ) -> Result<OpenIdExt, String> {
        let auth = config.http.auth.as_ref();
        let openid = auth.and_then(|auth| auth.openid.as_ref());
        let providers = openid
            .map(|openid| {
                openid
                    .providers
                    .iter()
                    .map(Provider::new)
                    .collect::<Result<Vec<_>, String>>()
            })
            .transpose()?
            .unwrap_or_default()
            .into_iter()
            .map(Arc::new)
            .collect();
        let external_url = config
            .http
            .external_url
            .as_ref()
            .map(|url| url.trim_end_matches('/').to_owned());
        let mut allowed_origins: Vec<String> = openid
            .map(|openid| openid.callback_allow_origins.clone())
            .unwrap_or_default();
        allowed_origins.extend(external_url.as_deref().map(origin_of));
        Ok(OpenIdExt {
            providers,
            allowed_origins,
            external_url,
            tls: config.http.tls.is_some(),
            secure_cookie: auth.is_some_and(|auth| auth.secure_session)
                || config.http.tls.is_some(),
            logins: auth.is_some(),
            stylesheet: config.ui.enabled,
            groups,
        })
    }

    fn provider(&self, key: &str) -> Option<&Arc<Provider>> {
        self.providers
            .iter()
            .find(|provider| provider.config.key == key)
    }
}

impl Extension for OpenIdExt {
    fn name(&self) -> &'static str {
        "openid"
    }

    fn site(&self, path: &str) -> bool {
        match path {
            LOGOUT_PATH => self.logins,
            LOGIN_PATH => !self.providers.is_empty(),
            _ => path.starts_with(CALLBACK_PREFIX) && !self.providers.is_empty(),
        }
    }

    fn handle<'a>(
        &'a self,
        req: Request<RequestBody>,
        ctx: &'a Ctx,
        _user: Option<&'a str>,
    ) -> Reply<'a> {
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let method = req.method().clone();
            let mut response = match (path.as_str(), &method) {
                (LOGOUT_PATH, &Method::OPTIONS) => {
                    return Ok(crate::ext::preflight("POST,OPTIONS"))
                }
                (LOGOUT_PATH, &Method::POST) => self.logout(ctx, &req).await?,
                (LOGOUT_PATH, _) => {
                    return Err(ApiError::Unsupported(format!(
                        "method {method} not allowed"
                    )))
                }
                (_, &Method::GET | &Method::HEAD) if path == LOGIN_PATH => {
                    self.login(ctx, &req).await
                }
                (_, &Method::GET | &Method::HEAD) => {
                    let key = &path[CALLBACK_PREFIX.len()..];
                    self.callback(ctx, &req, key).await
                }
                _ => {
                    return Err(ApiError::Unsupported(format!(
                        "method {method} not allowed"
                    )))
                }
            };
            let headers = response.headers_mut();
            for (name, value) in crate::ext::ui::SECURITY_HEADERS {
                headers.insert(*name, HeaderValue::from_static(value));
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(response)
        })
    }
}

impl OpenIdExt {
    async fn login(&self, ctx: &Ctx, req: &Request<RequestBody>) -> Response<Body> {
        let query = query_pairs(req);
        let param = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let Some(provider) = param("provider").and_then(|key| self.provider(key)) else {
            return self.page(
                StatusCode::BAD_REQUEST,
                "Log in",
                "There is no such identity provider here.",
                None,
            );
        };
        let target = match param("callback_ui").filter(|target| !target.is_empty()) {
            None => "/home".to_owned(),
            Some(asked) => self.allowed_target(asked).unwrap_or_else(|| {
                tracing::info!(
                    callback_ui = asked,
                    "callback_ui not allowed: the login lands on /home"
                );
                "/home".to_owned()
            }),
        };
        let secrets = match (
            crate::auth::htpasswd::random_salt(),
            crate::auth::htpasswd::random_salt(),
            crate::auth::htpasswd::random_salt(),
        ) {
            (Ok(state), Ok(nonce), Ok(verifier)) => (
                base64_url(&state),
                base64_url(&nonce),
                base64_url(&verifier),
            ),
            _ => {
                return self.page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Log in",
                    "No randomness for the login.",
                    None,
                )
            }
        };
        let (state, nonce, verifier) = secrets;
        let redirect_uri = provider.redirect_uri(&self.base_url(req.headers()));
        let url = match provider
            .authorization_url(&redirect_uri, &state, &nonce, &verifier)
            .await
        {
            Ok(url) => url,
            Err(error) => {
                tracing::warn!(provider = %provider.config.key, %error, "single sign-on login cannot start");
                return self.page(
                    StatusCode::BAD_GATEWAY,
                    "Login failed",
                    &error.to_string(),
                    None,
                );
            }
        };
        let record = InFlight {
            provider: provider.config.key.clone(),
            nonce,
            verifier,
            redirect_uri,
            target,
        };
        let payload = serde_json::to_vec(&record).expect("strings serialise");
        if let Err(error) = ctx
            .engine
            .put_sso_login(&state, &payload, LOGIN_LIFETIME)
            .await
        {
            tracing::error!(%error, "storing a single sign-on login failed");
            return self.page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Log in",
                "The login could not be saved.",
                None,
            );
        }
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        let cookie = format!(
            "{STATE_COOKIE}={state}; Path={CALLBACK_PATH}; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            LOGIN_LIFETIME.as_secs()
        );
        Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, url)
            .header(header::SET_COOKIE, cookie)
            .header(header::CONTENT_LENGTH, 0)
            .body(crate::api::body::empty())
            .unwrap_or_else(|_| {
                self.page(
                    StatusCode::BAD_GATEWAY,
                    "Log in",
                    "The provider's login URL is not valid.",
                    None,
                )
            })
    }

    async fn callback(&self, ctx: &Ctx, req: &Request<RequestBody>, key: &str) -> Response<Body> {
        let peer = req
            .extensions()
            .get::<crate::api::Peer>()
            .and_then(|peer| peer.0);
        let method = format!("openid:{key}");
        match self.complete(ctx, req, key).await {
            Ok((user, token, target)) => {
                tracing::info!(provider = key, user = %user, "logged in through single sign-on");
                crate::auth::audit("login", &method, &user, peer);
                let mut response = self.page(
                    StatusCode::OK,
                    "Logged in",
                    &format!("Logged in as {user}."),
                    Some(&target),
                );
                let headers = response.headers_mut();
                if let Ok(value) =
                    HeaderValue::from_str(&session::set_cookie(&token, self.secure_cookie))
                {
                    headers.append(header::SET_COOKIE, value);
                }
                headers.append(header::SET_COOKIE, clear_state_cookie());
                response
            }
            Err(error) => {
                tracing::info!(provider = key, %error, client = ?peer, "single sign-on login refused");
                crate::auth::audit("login_failed", &method, "", peer);
                let message = format!("{error}. Start again from the login page.");
                let mut response =
                    self.page(StatusCode::UNAUTHORIZED, "Login failed", &message, None);
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, clear_state_cookie());
                response
            }
        }
    }

    /// The callback's work: `(user, session token, target)`.
    async fn complete(
        &self,
        ctx: &Ctx,
        req: &Request<RequestBody>,
        key: &str,
    ) -> Result<(String, String, String), LoginError> {
        let query = query_pairs(req);
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, value)| value.as_str())
        };
        let invalid = |why: &str| LoginError::Invalid(why.to_owned());
        let state = param("state").ok_or_else(|| invalid("the answer carries no state"))?;
        let cookie = session::cookie_named(req.headers(), STATE_COOKIE)
            .ok_or_else(|| invalid("this browser started no login (no state cookie)"))?;
        if !session::constant_time_equal(state.as_bytes(), cookie.as_bytes()) {
            return Err(invalid("the answer's state is not this browser's login"));
        }
        let payload = ctx
            .engine
            .take_sso_login(state)
            .await
            .map_err(|error| LoginError::Unavailable(format!("reading the login: {error}")))?
            .ok_or_else(|| invalid("the login is unknown, expired or already completed"))?;
        let record: InFlight = serde_json::from_slice(&payload)
            .map_err(|_| invalid("the stored login does not decode"))?;
        if record.provider != key {
            return Err(invalid("the login was started with another provider"));
        }
        if let Some(error) = param("error") {
            let printable: String = error
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect();
            return Err(LoginError::Refused(printable));
        }
        let code = param("code")
            .filter(|code| !code.is_empty())
            .ok_or_else(|| invalid("the answer carries no code"))?;
        let provider = self
            .provider(key)
            .ok_or_else(|| invalid("no such provider"))?;
        let logged_in = provider
            .complete(&record.redirect_uri, code, &record.nonce, &record.verifier)
            .await?;
        self.groups.set(&logged_in.user, logged_in.groups).await;
        let (token, _) = ctx
            .engine
            .create_session(&logged_in.user, session::SESSION_LIFETIME)
            .await
            .map_err(|error| LoginError::Unavailable(format!("saving the session: {error}")))?;
        Ok((logged_in.user, token, record.target))
    }

    async fn logout(
        &self,
        ctx: &Ctx,
        req: &Request<RequestBody>,
    ) -> Result<Response<Body>, ApiError> {
        let headers = req.headers();
        let peer = req
            .extensions()
            .get::<crate::api::Peer>()
            .and_then(|peer| peer.0);
        if !session::same_origin(headers) {
            return Err(ApiError::Forbidden(
                "a logout must come from this site's pages".into(),
            ));
        }
        let visitor = session::Visitor::of(ctx, headers).await;
        if let (Some(token), Some(user)) = (&visitor.token, &visitor.user) {
            ctx.engine
                .end_session(token)
                .await
                .map_err(ApiError::from)?;
            crate::auth::audit("logout", "ui", user, peer);
        }
        let mut response = crate::api::body::json_response(
            StatusCode::OK,
            "application/json",
            serde_json::json!({}),
        );
        if let Ok(value) = HeaderValue::from_str(&session::clear_cookie()) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        Ok(response)
    }

    /// Where browsers reach this registry.
    fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(external) = &self.external_url {
            return external.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .unwrap_or("localhost");
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}")
    }

    /// `target` when this registry may send a browser there after the login.
    fn allowed_target(&self, target: &str) -> Option<String> {
        if target.starts_with('/') {
            let local = session::local_target(Some(target));
            return (local == target).then(|| target.to_owned());
        }
        let allowed = crate::config::is_http_url(target)
            && self
                .allowed_origins
                .iter()
                .any(|origin| origin_of(target) == *origin);
        allowed.then(|| target.to_owned())
    }

    fn page(
        &self,
        status: StatusCode,
        title: &str,
        message: &str,
        target: Option<&str>,
    ) -> Response<Body> {
        // Sentences: the errors' own text starts in lower case (it is also a log line's).
        let mut chars = message.chars();
        let message = match chars.next() {
            Some(first) => format!("{}{}", first.to_uppercase(), chars.as_str()),
            None => String::new(),
        };
        let page = SsoPage {
            title,
            message: &message,
            target,
            stylesheet: self.stylesheet,
        };
        let body = page.render().unwrap_or_else(|_| message.to_owned());
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .header(header::CONTENT_LENGTH, body.len())
            .body(full(body))
            .expect("static headers are valid")
    }
}

/// `scheme://host[:port]` of an absolute URL, lowercased.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!("{scheme}://{authority}").to_ascii_lowercase()
}

fn query_pairs(req: &Request<RequestBody>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|query| {
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn clear_state_cookie() -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{STATE_COOKIE}=; Path={CALLBACK_PATH}; HttpOnly; SameSite=Lax; Max-Age=0"
    ))
    .expect("a static cookie is a valid header")
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_by_scheme_host_and_port() {
        assert_eq!(
            origin_of("https://UI.example.com/a?b"),
            "https://ui.example.com"
        );
        assert_eq!(origin_of("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_ne!(
            origin_of("https://ui.example.com.evil"),
            "https://ui.example.com"
        );
    }

    #[test]
    fn only_the_state_cookie_is_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("session=x; berth_oidc=abc"),
        );
        assert_eq!(session::cookie_named(&headers, STATE_COOKIE), Some("abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("xberth_oidc=abc"));
        assert_eq!(session::cookie_named(&headers, STATE_COOKIE), None);
    }
}
