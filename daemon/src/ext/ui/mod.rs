//! The web UI (`extensions.ui`): server-rendered pages under `/` (zui's routes: `/home`,
//! `/explore`, `/image/<repo>`, `/image/<repo>/tag/<tag>`, `/login`) plus berth's operator
//! page (`/operator`) and, with `http.auth.apikey`, the API keys page (`/apikeys`, keys.rs),
//! with the stylesheet, script and icon embedded in the binary.
//!
//! Owns: the routes (here), who is browsing (session.rs), the data, asked of search in process
//! (data.rs), how it is written (view.rs) and the pages (pages.rs, repo.rs, image.rs,
//! operator.rs; templates in daemon/templates).
//!
//! Rules:
//! - Every answer carries zot's UI security headers ([`SECURITY_HEADERS`]): a CSP with
//!   `default-src 'none'` and only `'self'` sources (no inline script or style anywhere),
//!   no framing, nosniff, COOP, COEP, CORP. Pages are not cached; assets are, by version.
//! - A page shows only what search shows the visitor (access control applies through it).
//! - Reads are GET (and HEAD); every change is a POST from the UI's own origin with the
//!   session's CSRF token (session.rs).
mod data;
mod image;
mod keys;
mod operator;
mod pages;
mod repo;
pub mod session;
mod view;

use std::sync::Arc;

use berth_storage::Engine;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::api::body::{full, Body, RequestBody};
use crate::api::Ctx;
use crate::ext::search::Search;
use session::Visitor;

/// The headers of every UI answer (zot's, §2.9), plus a referrer policy.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; font-src 'self'; \
         img-src 'self' data:; connect-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-embedder-policy", "require-corp"),
    ("cross-origin-resource-policy", "same-origin"),
    ("referrer-policy", "same-origin"),
];

/// How often expired sessions are removed from the index.
const PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// An embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/assets/berth.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("assets/berth.css"),
    },
    Asset {
        path: "/assets/berth.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("assets/berth.js"),
    },
    Asset {
        path: "/assets/favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("assets/favicon.svg"),
    },
];

/// What a path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Root,
    Home,
    Explore,
    Login,
    Logout,
    Operator,
    /// The API keys page and its two forms (keys.rs).
    ApiKeys,
    CreateApiKey,
    RevokeApiKey,
    Favicon,
    Asset(usize),
    Repo(String),
    Toggle(String, berth_storage::search::Pref),
    Image(String, String),
    DeleteTag(String, String),
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        Some(match path {
            "/" => Route::Root,
            "/home" => Route::Home,
            "/explore" => Route::Explore,
            "/login" => Route::Login,
            "/logout" => Route::Logout,
            "/operator" => Route::Operator,
            "/apikeys" => Route::ApiKeys,
            "/apikeys/create" => Route::CreateApiKey,
            "/apikeys/revoke" => Route::RevokeApiKey,
            "/favicon.ico" => Route::Favicon,
            _ => {
                if let Some(found) = ASSETS.iter().position(|asset| asset.path == path) {
                    return Some(Route::Asset(found));
                }
                return image_route(path.strip_prefix("/image/")?);
            }
        })
    }

    /// Whether `method` may ask for it.
    fn allows(&self, method: &Method) -> bool {
        let read = method == Method::GET || method == Method::HEAD;
        match self {
            Route::Login | Route::DeleteTag(..) => read || method == Method::POST,
            Route::Logout | Route::Toggle(..) | Route::CreateApiKey | Route::RevokeApiKey => {
                method == Method::POST
            }
            _ => read,
        }
    }
}

/// `<repo>`, `<repo>/star`, `<repo>/bookmark`, `<repo>/tag/<tag>`, `<repo>/tag/<tag>/delete`,
/// each segment percent-decoded; the repository may be one encoded segment (the UI's links)
/// or several plain ones.
fn image_route(rest: &str) -> Option<Route> {
    let segments: Vec<String> = rest
        .split('/')
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .map(|text| text.into_owned())
        })
        .collect::<Result<_, _>>()
        .ok()?;
    if segments.iter().any(String::is_empty) {
        return None;
    }
    let count = segments.len();
    let repo = |end: usize| segments[..end].join("/");
    Some(match segments.as_slice() {
        [.., tag_word, tag, delete] if count > 3 && tag_word == "tag" && delete == "delete" => {
            Route::DeleteTag(repo(count - 3), tag.clone())
        }
        [.., tag_word, tag] if count > 2 && tag_word == "tag" => {
            Route::Image(repo(count - 2), tag.clone())
        }
        [.., last] if count > 1 && last == "star" => {
            Route::Toggle(repo(count - 1), berth_storage::search::Pref::Star)
        }
        [.., last] if count > 1 && last == "bookmark" => {
            Route::Toggle(repo(count - 1), berth_storage::search::Pref::Bookmark)
        }
        _ => Route::Repo(repo(count)),
    })
}

/// The UI extension in the list.
pub struct UiExt {
    search: Arc<Search>,
    engine: Arc<Engine>,
    enabled: bool,
    /// mgmt's document (`/v2/_zot/ext/mgmt`): the login page offers what it lists.
    mgmt: serde_json::Value,
    /// `http.auth.secureSession`.
    secure_session: bool,
    /// `http.auth.apikey`: the API keys page exists.
    apikeys: bool,
}

impl UiExt {
    pub fn new(search: Arc<Search>, engine: Arc<Engine>, config: &crate::config::Config) -> UiExt {
        UiExt {
            search,
            engine,
            enabled: config.ui.enabled,
            mgmt: crate::ext::mgmt::document(config),
            // Over HTTPS the cookie is always `Secure`; behind a TLS-terminating proxy
            // `http.auth.secureSession` says so.
            secure_session: config.http.tls.is_some()
                || config
                    .http
                    .auth
                    .as_ref()
                    .is_some_and(|auth| auth.secure_session),
            apikeys: config.http.apikey,
        }
    }
}

impl crate::ext::Extension for UiExt {
    fn name(&self) -> &'static str {
        "ui"
    }

    fn site(&self, path: &str) -> bool {
        match Route::of(path) {
            Some(Route::ApiKeys | Route::CreateApiKey | Route::RevokeApiKey) => {
                self.enabled && self.apikeys
            }
            Some(_) => self.enabled,
            None => false,
        }
    }

    fn handle<'a>(
        &'a self,
        req: Request<RequestBody>,
        ctx: &'a Ctx,
        _user: Option<&'a str>,
    ) -> crate::ext::Reply<'a> {
        Box::pin(async move {
            let Some(route) = Route::of(req.uri().path()) else {
                return Err(crate::api::error::ApiError::NotFound);
            };
            let mut response = if !route.allows(req.method()) {
                let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                let allow = match route.allows(&Method::GET) {
                    true if route.allows(&Method::POST) => "GET, HEAD, POST",
                    true => "GET, HEAD",
                    false => "POST",
                };
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                response
            } else {
                self.serve(route, req, ctx).await
            };
            let headers = response.headers_mut();
            for (name, value) in SECURITY_HEADERS {
                headers.insert(*name, HeaderValue::from_static(value));
            }
            Ok(response)
        })
    }

    fn start(
        &self,
        stop: &Arc<std::sync::atomic::AtomicBool>,
    ) -> std::io::Result<Vec<crate::ext::Worker>> {
        if !self.enabled {
            return Ok(Vec::new());
        }
        let engine = self.engine.clone();
        let stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ui-sessions".into())
            .spawn(move || prune_sessions(&engine, &stop))?;
        Ok(vec![crate::ext::Worker::thread(thread)])
    }
}

impl UiExt {
    async fn serve(&self, route: Route, req: Request<RequestBody>, ctx: &Ctx) -> Response<Body> {
        if let Route::Asset(index) = route {
            return asset(&ASSETS[index], req.headers());
        }
        if route == Route::Favicon {
            return redirect("/assets/favicon.svg", None);
        }
        let visitor = Visitor::of(ctx, req.headers()).await;
        let page = pages::Page::new(self, ctx, &req, visitor);
        match route {
            Route::Login => return pages::login(&page, req).await,
            Route::Logout => return pages::logout(&page, req).await,
            _ => {}
        }
        if page.visitor.must_log_in(ctx) {
            let next = view::segment(&page.here);
            return redirect(&format!("/login?next={next}"), None);
        }
        match route {
            Route::Root => redirect("/home", None),
            Route::Home => pages::home(&page).await,
            Route::Explore => pages::explore(&page).await,
            Route::Operator => operator::page(&page).await,
            Route::ApiKeys => keys::page(&page).await,
            Route::CreateApiKey => keys::create_key(&page, req).await,
            Route::RevokeApiKey => keys::revoke_key(&page, req).await,
            Route::Repo(name) => repo::page(&page, &name).await,
            Route::Toggle(name, pref) => repo::toggle(&page, req, &name, pref).await,
            Route::Image(name, tag) => image::page(&page, &name, &tag).await,
            Route::DeleteTag(name, tag) => match *req.method() {
                Method::POST => repo::delete_tag(&page, req, &name, &tag).await,
                _ => repo::confirm_delete(&page, &name, &tag).await,
            },
            Route::Login | Route::Logout | Route::Asset(_) | Route::Favicon => {
                unreachable!("answered above")
            }
        }
    }
}

/// An embedded file, cached by the browser for a day (links carry the version).
fn asset(asset: &Asset, headers: &hyper::HeaderMap) -> Response<Body> {
    let etag = concat!(
        "\"",
        env!("CARGO_PKG_VERSION"),
        "-",
        env!("BERTH_GIT_COMMIT"),
        "\""
    );
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|value| value.as_bytes() == etag.as_bytes());
    let builder = Response::builder()
        .header(header::CONTENT_TYPE, asset.content_type)
        .header(header::CACHE_CONTROL, "public, max-age=86400")
        .header(header::ETAG, etag);
    match matches {
        true => builder
            .status(StatusCode::NOT_MODIFIED)
            .body(crate::api::body::empty()),
        false => builder
            .header(header::CONTENT_LENGTH, asset.bytes.len())
            .body(full(asset.bytes)),
    }
    .expect("static headers are valid")
}

/// A page: HTML, not cached.
pub fn html(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::CONTENT_LENGTH, body.len())
        .body(full(body))
        .expect("static headers are valid")
}

fn text(status: StatusCode, message: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONTENT_LENGTH, message.len())
        .body(full(message))
        .expect("static headers are valid")
}

/// 303 See Other to a local `location`, setting `cookie` when given.
pub fn redirect(location: &str, cookie: Option<String>) -> Response<Body> {
    let mut builder = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::CONTENT_LENGTH, 0);
    if let Some(cookie) = cookie {
        builder = builder.header(header::SET_COOKIE, cookie);
    }
    builder
        .body(crate::api::body::empty())
        .unwrap_or_else(|_| text(StatusCode::BAD_REQUEST, "bad redirect"))
}

/// The pruning worker: every [`PRUNE_INTERVAL`], expired sessions leave the index.
fn prune_sessions(engine: &Engine, stop: &std::sync::atomic::AtomicBool) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(component = "ui", %error, "no runtime for pruning sessions");
            return;
        }
    };
    let tick = std::time::Duration::from_millis(250);
    let mut waited = PRUNE_INTERVAL;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if waited >= PRUNE_INTERVAL {
            waited = std::time::Duration::ZERO;
            match runtime.block_on(engine.prune_sessions()) {
                Ok(0) => {}
                Ok(count) => tracing::info!(component = "ui", count, "expired sessions removed"),
                Err(error) => tracing::warn!(component = "ui", %error, "pruning sessions failed"),
            }
        }
        std::thread::sleep(tick);
        waited += tick;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_storage::search::Pref;

    #[test]
    fn paths_name_the_pages_zui_has() {
        let route = |path| Route::of(path);
        assert_eq!(route("/"), Some(Route::Root));
        assert_eq!(route("/home"), Some(Route::Home));
        assert_eq!(
            route("/image/library%2Fnginx"),
            Some(Route::Repo("library/nginx".into()))
        );
        assert_eq!(
            route("/image/library/nginx"),
            Some(Route::Repo("library/nginx".into()))
        );
        assert_eq!(
            route("/image/library%2Fnginx/tag/1.27"),
            Some(Route::Image("library/nginx".into(), "1.27".into()))
        );
        assert_eq!(
            route("/image/a/b/tag/v1/delete"),
            Some(Route::DeleteTag("a/b".into(), "v1".into()))
        );
        assert_eq!(
            route("/image/a%2Fb/star"),
            Some(Route::Toggle("a/b".into(), Pref::Star))
        );
        assert_eq!(route("/image/tag"), Some(Route::Repo("tag".into())));
        assert_eq!(route("/image/"), None);
        assert_eq!(route("/image/a//b"), None);
        assert_eq!(route("/image/%ff"), None);
        assert_eq!(route("/v2/"), None);
        assert_eq!(route("/nothing"), None);
        assert!(Route::Home.allows(&Method::HEAD));
        assert!(!Route::Home.allows(&Method::POST));
        assert!(!Route::Logout.allows(&Method::GET));
    }
}
