//! Who is browsing: the session cookie, login and logout, and the checks that keep another
//! site from acting in a logged-in user's name.
//!
//! Rules:
//! - A login (the form, checked against `http.auth.htpasswd` as a Basic header would be)
//!   creates a session in the engine's index (storage-engine/src/sessions.rs: only a hash of
//!   the token is stored; it survives a restart) and sets the `session` cookie (zot's name):
//!   HttpOnly, SameSite=Strict, Path=/, for [`SESSION_LIFETIME`]. A refused login waits
//!   `failDelay` as a refused Basic login does.
//! - The cookie is honoured by the UI's pages only; the `/v2/` API never reads it, so no
//!   cookie can make a cross-site request to the API count as a user's.
//! - Every state-changing request (star, bookmark, delete tag, logout) is a POST that must
//!   come from the UI's own origin (`Origin` equal to the `Host` it was sent to; a browser's
//!   `Sec-Fetch-Site` not naming another site) and carry the session's CSRF token in its form.
//!   The login form is checked for origin too (no logging in a victim as the attacker).
use std::time::Duration;

use hyper::header::{self, HeaderMap};

use crate::api::Ctx;
use crate::auth::access::{self, Need};

/// How long a login lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The cookie's name, as zot's.
pub const COOKIE: &str = "session";
/// Longest form body the UI reads (a login, a toggle's token).
pub const MAX_FORM_BYTES: usize = 8 * 1024;

/// The person behind a request, as far as the UI knows.
#[derive(Debug, Default)]
pub struct Visitor {
    /// Logged in as.
    pub user: Option<String>,
    /// The session's token (from the cookie) and CSRF token, when logged in.
    pub token: Option<String>,
    pub csrf: Option<String>,
    /// May see the operator page (`adminPolicy`; everyone without access control).
    pub admin: bool,
    /// Authentication is on: the UI offers login and logout.
    pub login: bool,
}

impl Visitor {
    /// Reads the session cookie; an unknown, expired or malformed one is no session.
    pub async fn of(ctx: &Ctx, headers: &HeaderMap) -> Visitor {
        let login = ctx.auth.is_some();
        let session = match (login, cookie(headers)) {
            (true, Some(token)) => match ctx.engine.session(token).await {
                Ok(found) => found.map(|session| (token.to_owned(), session)),
                Err(error) => {
                    tracing::error!(component = "ui", %error, "reading a session failed");
                    None
                }
            },
            _ => None,
        };
        let (token, user, csrf) = match session {
            Some((token, session)) => (Some(token), Some(session.user), Some(session.csrf)),
            None => (None, None, None),
        };
        access::load_groups(ctx, user.as_deref()).await;
        let admin = (user.is_some() || !login)
            && access::permit(ctx, user.as_deref(), &Need::Admin, false).is_none();
        Visitor {
            user,
            token,
            csrf,
            admin,
            login,
        }
    }

    /// Pages other than login are closed to anonymous visitors when authentication is on and
    /// no `accessControl` lets anonymous read anything.
    pub fn must_log_in(&self, ctx: &Ctx) -> bool {
        self.login && self.user.is_none() && ctx.access.is_none()
    }

    /// Whether a POST's form token is this session's.
    pub fn csrf_matches(&self, sent: Option<&str>) -> bool {
        match (&self.csrf, sent) {
            (Some(expected), Some(sent)) => {
                constant_time_equal(expected.as_bytes(), sent.as_bytes())
            }
            _ => false,
        }
    }
}

/// The `session` cookie's value, when it looks like a token.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    cookie_named(headers, COOKIE)
        .filter(|value| value.len() == 64 && value.bytes().all(|byte| byte.is_ascii_hexdigit()))
}

/// The value of the request's cookie `wanted` (the first, trimmed).
pub fn cookie_named<'a>(headers: &'a HeaderMap, wanted: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.trim())
}

/// The `Set-Cookie` value that logs the browser in; `secure` (`http.auth.secureSession`)
/// keeps it to HTTPS.
pub fn set_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that forgets the session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether a POST comes from a page of this origin: a browser names the page's origin in
/// `Origin` (it must be the `Host` the request went to) and, in `Sec-Fetch-Site`, whether it
/// is another site. A client that sends neither (curl) passes here; the CSRF token still
/// stops it from acting for a logged-in browser.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    match text("origin") {
        None => true,
        Some(origin) => {
            let host = text("host").unwrap_or_default();
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            authority
                .is_some_and(|authority| !host.is_empty() && authority.eq_ignore_ascii_case(host))
        }
    }
}

/// A local path to go back to after login (`/...`, never `//host` or a scheme).
pub fn local_target(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.contains(['\r', '\n']) =>
        {
            path
        }
        _ => "/home",
    }
}

/// Whether two secrets are equal, in a time that does not depend on where they differ.
pub fn constant_time_equal(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_post_from_another_origin_or_site_is_refused() {
        let host = ("host", "127.0.0.1:5000");
        assert!(same_origin(&headers(&[host])));
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:5000")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        for refused in [
            vec![host, ("origin", "http://127.0.0.1:6000")],
            vec![host, ("origin", "http://evil.example")],
            vec![host, ("origin", "null")],
            vec![("origin", "http://127.0.0.1:5000")],
            vec![host, ("sec-fetch-site", "same-site")],
            vec![host, ("sec-fetch-site", "cross-site")],
        ] {
            assert!(!same_origin(&headers(&refused)), "{refused:?}");
        }
    }

    #[test]
    fn only_a_well_formed_session_cookie_is_read() {
        let token = "ab".repeat(32);
        let mut map = HeaderMap::new();
        map.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("theme=dark; session={token}")).unwrap(),
        );
        assert_eq!(cookie(&map), Some(token.as_str()));
        for bad in ["session=short", "session=", "other=1", "session=zz"] {
            assert_eq!(cookie(&headers(&[("cookie", bad)])), None, "{bad}");
        }
    }

    #[test]
    fn after_login_only_local_paths_are_followed() {
        assert_eq!(local_target(Some("/image/a%2Fb")), "/image/a%2Fb");
        for bad in [
            None,
            Some("//evil.example"),
            Some("https://evil"),
            Some("/\\evil"),
            Some("x"),
        ] {
            assert_eq!(local_target(bad), "/home", "{bad:?}");
        }
    }

    #[test]
    fn the_login_cookie_is_http_only_strict_and_secure_when_asked() {
        let token = "cd".repeat(32);
        let plain = set_cookie(&token, false);
        assert!(
            plain.starts_with(&format!("session={token}; Path=/;")),
            "{plain}"
        );
        assert!(plain.contains("; HttpOnly") && plain.contains("; SameSite=Strict"));
        assert!(!plain.contains("Secure"), "{plain}");
        assert!(plain.contains(&format!("Max-Age={}", SESSION_LIFETIME.as_secs())));
        assert!(set_cookie(&token, true).ends_with("; Secure"));
    }
}
