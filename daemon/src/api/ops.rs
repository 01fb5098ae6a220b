//! Operator endpoints outside `/v2/`: the health probes (`/livez`, `/readyz`, `/startupz`, as
//! zot has them, no auth) and the Prometheus metrics (`extensions.metrics`, at its configured
//! path, only when enabled).
//!
//! Rules: probes answer from in-memory flags only (no storage call), so a probe never waits
//! behind a slow disk. `/readyz` is 503 before every shard accepts and from the moment
//! shutdown begins. A scrape (storage usage, then the exposition) runs on the blocking pool,
//! never on the shard.
use hyper::{header, Method, Response, StatusCode};

use super::body::{full, Body};
use super::Ctx;
use crate::ext::metrics::{self, expose};

/// An operator endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ops {
    Livez,
    Readyz,
    Startupz,
    Metrics,
}

/// The operator endpoint at `path`, if any. Only GET and HEAD reach one; other methods fall
/// through to the OCI router (and its 404/405).
pub fn route(method: &Method, path: &str, ctx: &Ctx) -> Option<Ops> {
    // The OCI API's paths never reach the settings (the metrics path is outside /v2/).
    if path == "/v2"
        || path.starts_with("/v2/")
        || (method != Method::GET && method != Method::HEAD)
    {
        return None;
    }
    match path {
        "/livez" => Some(Ops::Livez),
        "/readyz" => Some(Ops::Readyz),
        "/startupz" => Some(Ops::Startupz),
        _ => {
            let settings = ctx.live.settings();
            let metrics = &settings.metrics;
            (metrics.enabled && metrics.path == path).then_some(Ops::Metrics)
        }
    }
}

pub async fn serve(ops: Ops, ctx: &Ctx) -> Response<Body> {
    let live = &ctx.live;
    match ops {
        Ops::Livez => probe(true),
        Ops::Startupz => probe(live.started()),
        Ops::Readyz => probe(live.started() && !live.draining()),
        Ops::Metrics => scrape(ctx).await,
    }
}

fn probe(ok: bool) -> Response<Body> {
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

async fn scrape(ctx: &Ctx) -> Response<Body> {
    let engine = ctx.engine.clone();
    let metrics = ctx.metrics.clone();
    let namespace = ctx.live.settings().metrics.namespace.clone();
    // Usage reads RocksDB and the exposition of 10,000 repositories takes milliseconds:
    // neither runs on the shard, whose other connections would wait.
    let sync = ctx.sync.clone();
    let scraped = tokio::task::spawn_blocking(move || {
        let usage = engine.usage()?;
        Ok::<_, berth_storage::StorageError>(metrics::scrape(
            &metrics,
            &engine,
            &usage,
            &namespace,
            sync.as_deref(),
        ))
    })
    .await;
    let text = match scraped {
        Ok(Ok(text)) => text,
        Ok(Err(error)) => return scrape_failed(&error),
        Err(error) => return scrape_failed(&error),
    };
    Response::builder()
        .header(header::CONTENT_TYPE, expose::CONTENT_TYPE)
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(text))
        .expect("static response parts are valid")
}

fn scrape_failed(error: &dyn std::fmt::Display) -> Response<Body> {
    tracing::error!(%error, "metrics scrape failed");
    Response::builder()
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full("metrics unavailable\n"))
        .expect("static response parts are valid")
}
