//! The relying party's side a test plays without a browser: a cookie-keeping HTTP user agent
//! that walks a code flow ([`UserAgent`], its [`Reply`] and [`SetCookie`]), PKCE ([`Pkce`]),
//! authorization requests and code redemption, JWT decoding ([`jwt_parts`]) and small URL
//! and form helpers. Re-exported by oidc.rs.

use base64::Engine as _;
use reqwest::blocking::Client;
use reqwest::Url;
use serde_json::Value;
use sha2::Digest as _;

/// The most redirects [`UserAgent::follow`] takes before it calls it a loop.
const MAX_REDIRECTS: usize = 20;

/// A PKCE pair (RFC 7636, S256).
#[derive(Clone, Debug)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Pkce {
        let verifier = random_token();
        let challenge = base64url(&sha2::Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Pkce::new()
    }
}

/// 32 random bytes, base64url without padding (43 characters).
pub fn random_token() -> String {
    base64url(&crate::random_bytes(32))
}

pub fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The header and claims of a compact JWS (not verified: see [`verify_id_token`]).
#[track_caller]
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut decode = |what: &str| -> Value {
        let part = parts
            .next()
            .unwrap_or_else(|| panic!("a JWT without {what}: {token}"));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap_or_else(|e| panic!("JWT {what} is not base64url ({e}): {token}"));
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("JWT {what} is not JSON ({e}): {token}"))
    };
    let header = decode("header");
    let claims = decode("claims");
    (header, claims)
}

/// The first value of query parameter `name` of `url`.
pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// `base` with `params` appended to its query.
pub fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    let mut url = Url::parse(base).unwrap_or_else(|e| panic!("{base}: {e}"));
    url.query_pairs_mut().extend_pairs(params);
    url.into()
}

/// The absolute `action` of `<form id="FORM_ID" ... action="...">` in `html`, resolved
/// against `page`; None when there is no such form. (For the provider's own pages, whose
/// markup is tests/oidc/provider.mjs's.)
pub fn form_action(html: &str, form_id: &str, page: &Url) -> Option<Url> {
    let start = html.find(&format!("<form id=\"{form_id}\""))?;
    let tag = &html[start..start + html[start..].find('>')?];
    let action = tag.split("action=\"").nth(1)?.split('"').next()?;
    let action = action.replace("&#38;", "&").replace("&amp;", "&");
    page.join(&action).ok()
}

pub(crate) trait JsonValue {
    fn json_value(self) -> Value;
}

impl JsonValue for reqwest::blocking::Response {
    fn json_value(self) -> Value {
        let status = self.status();
        let bytes = self.bytes().expect("read the body");
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "status {status}, not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    }
}

/// One `Set-Cookie` of a reply.
#[derive(Clone, Debug)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    /// The attributes in order, names as sent (`Path`, `HttpOnly`: value "").
    pub attributes: Vec<(String, String)>,
    /// The whole header, for messages.
    pub raw: String,
}

impl SetCookie {
    fn parse(raw: &str) -> Option<SetCookie> {
        let mut parts = raw.split(';');
        let (name, value) = parts.next()?.split_once('=')?;
        let attributes = parts
            .map(|part| {
                let (key, value) = part.split_once('=').unwrap_or((part, ""));
                (key.trim().to_owned(), value.trim().to_owned())
            })
            .collect();
        Some(SetCookie {
            name: name.trim().to_owned(),
            value: value.trim().to_owned(),
            attributes,
            raw: raw.to_owned(),
        })
    }

    /// The value of attribute `name` (case-insensitive); `Some("")` for a flag.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether it deletes the cookie: `Max-Age` zero or less, or an `Expires` in the past.
    pub fn clears(&self) -> bool {
        if let Some(max_age) = self.attribute("Max-Age") {
            if max_age.parse::<i64>().is_ok_and(|seconds| seconds <= 0) {
                return true;
            }
        }
        self.attribute("Expires").is_some_and(|expires| {
            // Deleting cookies expire in the past; a test's cookies never live to 2000.
            expires
                .split_whitespace()
                .find_map(|word| word.parse::<u32>().ok().filter(|n| *n > 1900))
                .is_some_and(|year| year < 2000)
        })
    }
}

/// A reply, with its URL, its cookies and its body read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub url: Url,
    pub headers: reqwest::header::HeaderMap,
    pub set_cookies: Vec<SetCookie>,
    pub body: String,
}

impl Reply {
    /// `Location`, resolved against the request URL.
    pub fn location(&self) -> Option<Url> {
        let location = self.headers.get("location")?.to_str().ok()?;
        self.url.join(location).ok()
    }

    /// The `Set-Cookie` of cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<&SetCookie> {
        self.set_cookies.iter().find(|cookie| cookie.name == name)
    }

    /// The header `name`, when present and ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Status, URL, headers and the start of the body, for messages.
    pub fn describe(&self) -> String {
        let body: String = self.body.chars().take(2000).collect();
        format!("{} {}\n{:?}\n{body}", self.status, self.url, self.headers)
    }
}

#[derive(Clone, Debug)]
struct StoredCookie {
    host: String,
    path: String,
    name: String,
    value: String,
}

/// An HTTP user agent for walking a login without a browser: keeps cookies per host and path
/// (as RFC 6265 for one host: no domain cookies, `Secure` and `SameSite` ignored, deletion by
/// `Max-Age`/`Expires` only), never follows a redirect unless asked ([`UserAgent::follow`]),
/// no proxy.
pub struct UserAgent {
    client: Client,
    cookies: Vec<StoredCookie>,
}

impl Default for UserAgent {
    fn default() -> Self {
        UserAgent::new()
    }
}

impl UserAgent {
    pub fn new() -> UserAgent {
        UserAgent {
            client: crate::http(),
            cookies: Vec::new(),
        }
    }

    /// `GET url` with the cookies for it.
    pub fn get(&mut self, url: &str) -> Reply {
        let url = Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let request = self.client.get(url.clone());
        self.send(request, &url)
    }

    /// `POST url` with a urlencoded `form`, the cookies for it and the `Origin` of `url`
    /// (as a browser sends for a form on the same site).
    pub fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Reply {
        let url = Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = self
            .client
            .post(url.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", url.origin().ascii_serialization())
            .body(body);
        self.send(request, &url)
    }

    /// `request` (for `url`) with the cookies for `url` added; remembers the reply's cookies.
    pub fn send(&mut self, request: reqwest::blocking::RequestBuilder, url: &Url) -> Reply {
        let request = match self.cookie_header(url) {
            Some(cookies) => request.header("cookie", cookies),
            None => request,
        };
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("request to {url}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let set_cookies: Vec<SetCookie> = headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(SetCookie::parse)
            .collect();
        let body = response.text().unwrap_or_default();
        for cookie in &set_cookies {
            self.store(url, cookie);
        }
        Reply {
            status,
            url: url.clone(),
            headers,
            set_cookies,
            body,
        }
    }

    /// GETs `url` and follows redirects (any 30x with a `Location`, as GETs) until one leads
    /// to a URL where `stop` holds, which is not requested: the last reply is returned (its
    /// `url` is then the stopping one, status 0 and no body). Otherwise returns the first
    /// reply that is not a redirect.
    pub fn follow(&mut self, url: &str, stop: impl Fn(&Url) -> bool) -> Reply {
        let first = self.get(url);
        self.follow_reply(first, stop)
    }

    /// [`UserAgent::follow`] from a reply already received.
    pub fn follow_reply(&mut self, mut reply: Reply, stop: impl Fn(&Url) -> bool) -> Reply {
        for _ in 0..MAX_REDIRECTS {
            if !(300..400).contains(&reply.status) {
                return reply;
            }
            let Some(next) = reply.location() else {
                return reply;
            };
            if stop(&next) {
                return Reply {
                    status: 0,
                    url: next,
                    headers: reqwest::header::HeaderMap::new(),
                    set_cookies: Vec::new(),
                    body: String::new(),
                };
            }
            reply = self.get(next.as_str());
        }
        panic!("more than {MAX_REDIRECTS} redirects: {}", reply.describe());
    }

    /// The value of cookie `name` kept for `host` (any path).
    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|cookie| cookie.host == host && cookie.name == name)
            .map(|cookie| cookie.value.clone())
    }

    /// Forgets every cookie of `host` named `name`.
    pub fn forget(&mut self, host: &str, name: &str) {
        self.cookies
            .retain(|cookie| !(cookie.host == host && cookie.name == name));
    }

    /// Keeps `name=value` for `host` and `path`, as a `Set-Cookie` would.
    pub fn set(&mut self, host: &str, path: &str, name: &str, value: &str) {
        self.forget_exact(host, path, name);
        self.cookies.push(StoredCookie {
            host: host.to_owned(),
            path: path.to_owned(),
            name: name.to_owned(),
            value: value.to_owned(),
        });
    }

    fn forget_exact(&mut self, host: &str, path: &str, name: &str) {
        self.cookies
            .retain(|cookie| !(cookie.host == host && cookie.path == path && cookie.name == name));
    }

    fn store(&mut self, url: &Url, cookie: &SetCookie) {
        let host = url.host_str().unwrap_or_default().to_owned();
        let path = match cookie.attribute("Path") {
            Some(path) if path.starts_with('/') => path.to_owned(),
            // RFC 6265 5.1.4: the request path up to its last `/`.
            _ => match url.path().rfind('/') {
                Some(0) | None => "/".to_owned(),
                Some(slash) => url.path()[..slash].to_owned(),
            },
        };
        if cookie.clears() {
            self.forget_exact(&host, &path, &cookie.name);
        } else {
            self.set(&host, &path, &cookie.name, &cookie.value);
        }
    }

    fn cookie_header(&self, url: &Url) -> Option<String> {
        let host = url.host_str()?;
        let request_path = url.path();
        let mut matching: Vec<&StoredCookie> = self
            .cookies
            .iter()
            .filter(|cookie| cookie.host == host && path_matches(request_path, &cookie.path))
            .collect();
        // Longer paths first (RFC 6265 5.4).
        matching.sort_by_key(|cookie| std::cmp::Reverse(cookie.path.len()));
        let header: Vec<String> = matching
            .iter()
            .map(|cookie| format!("{}={}", cookie.name, cookie.value))
            .collect();
        (!header.is_empty()).then(|| header.join("; "))
    }
}

/// RFC 6265 5.1.4 path-match.
fn path_matches(request_path: &str, cookie_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/')
                || request_path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

/// The parameters of an authorization request made by a test (not by berth).
pub struct AuthorizationRequest {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce: Pkce,
}

impl AuthorizationRequest {
    /// A code-flow request to `authorization_endpoint` for `client_id` and `redirect_uri`,
    /// with `scope`, a fresh state and nonce, and PKCE S256 (`pkce: false`: none).
    pub fn new(
        authorization_endpoint: &str,
        client_id: &str,
        redirect_uri: &str,
        scope: &str,
        pkce: bool,
    ) -> AuthorizationRequest {
        let state = random_token();
        let nonce = random_token();
        let challenge = Pkce::new();
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("scope", scope),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
        ];
        if pkce {
            params.push(("code_challenge", challenge.challenge.as_str()));
            params.push(("code_challenge_method", "S256"));
        }
        AuthorizationRequest {
            url: with_query(authorization_endpoint, &params),
            state,
            nonce,
            pkce: challenge,
        }
    }
}

/// POSTs an authorization code to `token_endpoint` as `client_id`/`client_secret`
/// (client_secret_basic) with `code_verifier`: (status, JSON answer).
pub fn redeem_code(
    token_endpoint: &str,
    client_id: &str,
    client_secret: &str,
    code: &str,
    redirect_uri: &str,
    code_verifier: Option<&str>,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
    ];
    if let Some(verifier) = code_verifier {
        form.push(("code_verifier", verifier));
    }
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    let response = crate::http()
        .post(token_endpoint)
        .basic_auth(client_id, Some(client_secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .expect("POST the token endpoint");
    let status = response.status().as_u16();
    (status, response.json_value())
}

/// `GET url` as JSON (discovery, JWKS, userinfo with `bearer`): (status, answer).
pub fn get_json(url: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut request = crate::http().get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.json_value())
}
