//! The health probes outside `/v2/` (`/livez`, `/readyz`, `/startupz`, as zot has them, no
//! auth). The metrics scrape, the other operator endpoint, is the metrics extension's
//! (ext/metrics/endpoint.rs).
//!
//! Rules: probes answer from in-memory flags only (no storage call), so a probe never waits
//! behind a slow disk. `/readyz` is 503 before every shard accepts and from the moment
//! shutdown begins.
use hyper::{header, Method, Response, StatusCode};

use super::body::{full, Body};
use super::Ctx;

/// A health probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    Livez,
    Readyz,
    Startupz,
}

/// The probe at `path`, if any. Only GET and HEAD reach one; other methods fall through to
/// the OCI router (and its 404/405).
pub fn route(method: &Method, path: &str) -> Option<Probe> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    match path {
        "/livez" => Some(Probe::Livez),
        "/readyz" => Some(Probe::Readyz),
        "/startupz" => Some(Probe::Startupz),
        _ => None,
    }
}

pub fn serve(probe: Probe, ctx: &Ctx) -> Response<Body> {
    let live = &ctx.live;
    let ok = match probe {
        Probe::Livez => true,
        Probe::Startupz => live.started(),
        Probe::Readyz => live.started() && !live.draining(),
    };
    let (status, text) = match ok {
        true => (StatusCode::OK, "ok\n"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(text))
        .expect("static response parts are valid")
}
