//! The extensions, one folder each, behind one small trait ([`Extension`]): a name, the routes
//! it answers and how, its background workers, and what it lists in `/v2/_oci/ext/discover`.
//! The composition root (serve.rs) builds THE list of them, a [`Registry`]; the API asks the
//! registry for any path before its own routes, and discover asks it what to list.
//!
//! Rules:
//! - A route is an exact path under `/v2/`, with its methods and the access it needs
//!   ([`Need`], auth's concept). The API answers another method with 405 UNSUPPORTED and
//!   checks the access before `handle` runs, exactly as for its own routes.
//! - An operator endpoint (outside `/v2/`, at a path from the reloadable settings, metrics'
//!   scrape path) is asked after the health probes, for GET and HEAD only; other methods fall
//!   through to the OCI router. Requests to it are not counted in the request metrics.
//! - A site (the web UI) answers paths outside `/v2/` that no probe or operator endpoint
//!   takes, for any method, and authenticates its own requests (session cookies): the API's
//!   Basic check and access check do not run in front of it.
//! - Shards are current-thread runtimes: `handle` returns a future that need not be `Send`.
//! - Workers watch the daemon's maintenance stop flag; serve.rs sets it, then joins them.
//! - Adding an extension: its folder, its config section, and one line in serve.rs's list.

pub mod apikeys;
pub mod health;
pub mod lint;
pub mod metrics;
pub mod mgmt;
pub mod openid;
pub mod scrub;
pub mod search;
pub mod sync;
pub mod trust;
pub mod ui;
pub mod userprefs;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use hyper::{Method, Request, Response};
use serde_json::json;

use crate::api::{
    body::{Body, RequestBody},
    error::ApiError,
    Ctx,
};
pub use crate::auth::access::Need;

/// What zot calls the binary type (`zot_info`, mgmt): the extensions built in.
pub const BINARY_TYPE: &str = "-imagetrust-lint-metrics-mgmt-scrub-search-sync-ui-userprefs";

/// The answer an extension's `handle` gives, on the shard that received the request.
pub type Reply<'a> = Pin<Box<dyn Future<Output = Result<Response<Body>, ApiError>> + 'a>>;

/// GET and HEAD: the methods of a read-only route.
pub const READ: &[Method] = &[Method::GET, Method::HEAD];

/// zot's answer to `OPTIONS` on its extension routes (a browser's preflight): 200, no body,
/// the methods and headers the route accepts.
pub fn preflight(methods: &'static str) -> Response<Body> {
    Response::builder()
        .status(hyper::StatusCode::OK)
        .header("Access-Control-Allow-Methods", methods)
        .header("Access-Control-Allow-Headers", "Authorization,content-type")
        .header(hyper::header::CONTENT_LENGTH, 0)
        .body(crate::api::body::empty())
        .expect("static headers are valid")
}

/// One exact path an extension answers.
#[derive(Debug)]
pub struct Route {
    /// The whole path, under `/v2/` (the raw path of the request must equal it).
    pub path: &'static str,
    pub methods: &'static [Method],
    /// What `http.accessControl` must grant first.
    pub need: Need,
}

/// An extension. Small on purpose: anything it needs from a request's shard comes in [`Ctx`].
pub trait Extension: Send + Sync {
    /// The extension's name, as in its config section.
    fn name(&self) -> &'static str;

    /// The exact `/v2/` paths it answers.
    fn routes(&self) -> &[Route] {
        &[]
    }

    /// `Some(need)` when `path`, outside `/v2/`, is its operator endpoint right now (read
    /// from the reloadable settings, so SIGHUP moves it).
    fn operator_path(&self, _ctx: &Ctx, _path: &str) -> Option<Need> {
        None
    }

    /// Whether it serves `path` (outside `/v2/`, not a probe or operator endpoint) as a site,
    /// for any method, authenticating the request itself.
    fn site(&self, _path: &str) -> bool {
        false
    }

    /// Answers a request to one of its routes (or its operator path), once admitted.
    fn handle<'a>(
        &'a self,
        _req: Request<RequestBody>,
        _ctx: &'a Ctx,
        _user: Option<&'a str>,
    ) -> Reply<'a> {
        Box::pin(async { Err(ApiError::NotFound) })
    }

    /// Starts its background workers; they end once `stop` is set.
    fn start(&self, _stop: &Arc<AtomicBool>) -> std::io::Result<Vec<Worker>> {
        Ok(Vec::new())
    }

    /// The endpoints it lists in `/v2/_oci/ext/discover` right now.
    fn discover(&self, _ctx: &Ctx) -> Vec<Listed> {
        Vec::new()
    }
}

/// A started background worker: how to wait for its end once the stop flag is set.
pub struct Worker(Box<dyn FnOnce() + Send>);

impl Worker {
    /// `join` runs on the thread that stops the daemon, after the shards ended.
    pub fn new(join: impl FnOnce() + Send + 'static) -> Worker {
        Worker(Box::new(join))
    }

    pub fn thread(handle: std::thread::JoinHandle<()>) -> Worker {
        Worker::new(move || {
            let _ = handle.join();
        })
    }

    pub fn join(self) {
        (self.0)()
    }
}

/// The entries of `/v2/_oci/ext/discover`, in the order they are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entry {
    /// zot's `_zot` entry: endpoints under `/v2/_zot/ext/`.
    Zot,
    /// berth's own `_berth` entry: endpoints under `/v2/_berth/ext/`.
    Berth,
}

impl Entry {
    const ALL: [Entry; 2] = [Entry::Zot, Entry::Berth];

    fn name(self) -> &'static str {
        match self {
            Entry::Zot => "_zot",
            Entry::Berth => "_berth",
        }
    }

    fn url(self) -> &'static str {
        match self {
            Entry::Zot => "https://github.com/project-zot/zot/blob/main/pkg/extensions/_zot.md",
            Entry::Berth => "https://github.com/berth-registry/berth/blob/main/README.md#mirroring",
        }
    }

    /// The entry's description, naming what its endpoints offer.
    fn description(self, offers: &str) -> String {
        match self {
            Entry::Zot => format!("zot registry extensions (berth: {offers})"),
            Entry::Berth => format!("berth extensions: {offers}"),
        }
    }
}

/// One endpoint listed in discover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub entry: Entry,
    pub endpoint: &'static str,
    /// What it offers, for the entry's description ("the scrub report").
    pub offers: &'static str,
}

/// THE list of extensions, built once by serve.rs and shared by every shard.
pub struct Registry {
    extensions: Vec<Arc<dyn Extension>>,
}

impl Registry {
    /// Two extensions answering the same path is a programming error.
    pub fn new(extensions: Vec<Arc<dyn Extension>>) -> Registry {
        let mut paths: Vec<&str> = extensions
            .iter()
            .flat_map(|extension| extension.routes().iter().map(|route| route.path))
            .collect();
        let count = paths.len();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(count, paths.len(), "two extensions answer the same path");
        Registry { extensions }
    }

    /// The extension and route that answer `path`, if any (any method).
    pub fn route(&self, path: &str) -> Option<(&dyn Extension, &Route)> {
        self.extensions.iter().find_map(|extension| {
            let route = extension.routes().iter().find(|route| route.path == path)?;
            Some((extension.as_ref(), route))
        })
    }

    /// The extension whose operator endpoint is `path` now, with what it needs. Only GET and
    /// HEAD outside `/v2/` reach one.
    pub fn operator(
        &self,
        ctx: &Ctx,
        method: &Method,
        path: &str,
    ) -> Option<(&dyn Extension, Need)> {
        if path == "/v2" || path.starts_with("/v2/") || !READ.contains(method) {
            return None;
        }
        self.extensions.iter().find_map(|extension| {
            let need = extension.operator_path(ctx, path)?;
            Some((extension.as_ref(), need))
        })
    }

    /// The extension serving `path` as a site (see [`Extension::site`]).
    pub fn site(&self, path: &str) -> Option<&dyn Extension> {
        if path == "/v2" || path.starts_with("/v2/") {
            return None;
        }
        self.extensions
            .iter()
            .find(|extension| extension.site(path))
            .map(|extension| extension.as_ref())
    }

    /// Starts every extension's workers, in list order.
    pub fn start(&self, stop: &Arc<AtomicBool>) -> std::io::Result<Vec<Worker>> {
        let mut workers = Vec::new();
        for extension in &self.extensions {
            workers.extend(extension.start(stop)?);
        }
        Ok(workers)
    }

    /// The `extensions` array of `/v2/_oci/ext/discover`.
    pub fn discover(&self, ctx: &Ctx) -> serde_json::Value {
        let listed: Vec<Listed> = self
            .extensions
            .iter()
            .flat_map(|extension| extension.discover(ctx))
            .collect();
        discover_document(&listed)
    }
}

/// One object per entry that lists something (`[]` when none does), its endpoints in list
/// order.
fn discover_document(listed: &[Listed]) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = Entry::ALL
        .into_iter()
        .filter_map(|entry| {
            let mine: Vec<&Listed> = listed.iter().filter(|item| item.entry == entry).collect();
            if mine.is_empty() {
                return None;
            }
            let offers: Vec<&str> = mine.iter().map(|item| item.offers).collect();
            let endpoints: Vec<&str> = mine.iter().map(|item| item.endpoint).collect();
            Some(json!({
                "name": entry.name(),
                "url": entry.url(),
                "description": entry.description(&offers.join(", ")),
                "endpoints": endpoints,
            }))
        })
        .collect();
    serde_json::Value::Array(entries)
}

#[cfg(test)]
mod tests;
