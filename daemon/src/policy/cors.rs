//! `http.allowOrigin`: which web origins may read berth's answers from a browser (CORS).
//!
//! Rules:
//! - The config is zot's comma-separated list. An origin on it gets its own origin echoed,
//!   `Access-Control-Allow-Credentials: true` and `Vary: Origin`. `*` admits every origin
//!   WITHOUT credentials: berth never combines a wildcard with credentials (zot does; its
//!   2026 audit flagged it). Without the key, berth sends no CORS header (its own UI is
//!   same-origin).
//! - A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an admitted origin is
//!   answered 204 here, before routing and authentication, with the methods and the
//!   requested headers; any other preflight goes on to the routes (and is refused there).
//! - Browsers may read the registry's own headers (`Docker-Content-Digest`, `Location`,
//!   `OCI-Subject`, `Range`, `Link`, `WWW-Authenticate`, `X-Request-Id`).
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use crate::api::body::{empty, Body};

const METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
const DEFAULT_HEADERS: &str = "Authorization, Content-Type, Content-Range, X-ZOT-API-CLIENT";
const EXPOSED: &str =
    "Docker-Content-Digest, Location, OCI-Subject, Range, Link, WWW-Authenticate, X-Request-Id";
/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE_SECONDS: &str = "600";

/// The admitted origins.
#[derive(Debug)]
pub struct Cors {
    any: bool,
    origins: Vec<String>,
}

impl Cors {
    /// From the validated list (entries are `*` or `scheme://host[:port]`).
    pub fn new(origins: &[String]) -> Cors {
        Cors {
            any: origins.iter().any(|origin| origin == "*"),
            origins: origins.iter().filter(|o| *o != "*").cloned().collect(),
        }
    }

    /// (Access-Control-Allow-Origin, credentials allowed) for a request from `origin`.
    fn admit(&self, origin: Option<&HeaderValue>) -> Option<(HeaderValue, bool)> {
        let origin = origin?;
        let text = origin.to_str().ok()?;
        if self
            .origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(text))
        {
            return Some((origin.clone(), true));
        }
        self.any.then(|| (HeaderValue::from_static("*"), false))
    }

    fn set(headers: &mut HeaderMap, allow: HeaderValue, credentials: bool) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        if credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }

    /// Adds the CORS headers for a request from `origin` to an answer.
    pub fn decorate(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        if let Some((allow, credentials)) = self.admit(origin) {
            Self::set(headers, allow, credentials);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED),
            );
        }
    }

    /// The answer to a preflight from an admitted origin; `None` for anything else.
    pub fn preflight(&self, method: &hyper::Method, request: &HeaderMap) -> Option<Response<Body>> {
        if method != hyper::Method::OPTIONS
            || !request.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let (allow, credentials) = self.admit(request.get(header::ORIGIN))?;
        let mut response = Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(empty())
            .expect("an empty response builds");
        let headers = response.headers_mut();
        Self::set(headers, allow, credentials);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(METHODS),
        );
        let requested = request
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_HEADERS));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE_SECONDS),
        );
        Some(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    #[test]
    fn listed_origins_get_credentials_and_the_wildcard_never_does() {
        let cors = Cors::new(&["https://ui.example".into(), "*".into()]);
        let mut answer = HeaderMap::new();
        cors.decorate(
            Some(&HeaderValue::from_static("https://ui.example")),
            &mut answer,
        );
        assert_eq!(
            answer[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://ui.example"
        );
        assert_eq!(answer[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(answer[header::VARY], "Origin");
        let mut answer = HeaderMap::new();
        cors.decorate(
            Some(&HeaderValue::from_static("https://other.example")),
            &mut answer,
        );
        assert_eq!(answer[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(!answer.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));

        let listed_only = Cors::new(&["https://ui.example".into()]);
        let mut answer = HeaderMap::new();
        listed_only.decorate(
            Some(&HeaderValue::from_static("https://evil.example")),
            &mut answer,
        );
        assert!(answer.is_empty(), "{answer:?}");
        listed_only.decorate(None, &mut answer);
        assert!(answer.is_empty(), "no Origin, no CORS headers");
    }

    #[test]
    fn only_a_preflight_from_an_admitted_origin_is_answered_here() {
        let cors = Cors::new(&["https://ui.example".into()]);
        let preflight = headers(&[
            (header::ORIGIN, "https://ui.example"),
            (header::ACCESS_CONTROL_REQUEST_METHOD, "PUT"),
            (
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization, content-type",
            ),
        ]);
        let answer = cors
            .preflight(&hyper::Method::OPTIONS, &preflight)
            .expect("answered");
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            answer.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "authorization, content-type"
        );
        assert!(cors.preflight(&hyper::Method::GET, &preflight).is_none());
        let evil = headers(&[
            (header::ORIGIN, "https://evil.example"),
            (header::ACCESS_CONTROL_REQUEST_METHOD, "PUT"),
        ]);
        assert!(cors.preflight(&hyper::Method::OPTIONS, &evil).is_none());
        let plain_options = headers(&[(header::ORIGIN, "https://ui.example")]);
        assert!(cors
            .preflight(&hyper::Method::OPTIONS, &plain_options)
            .is_none());
    }
}
