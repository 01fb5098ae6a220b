//! The scrape endpoint: the Prometheus exposition at `extensions.metrics.path` (outside `/v2/`,
//! only while enabled; the path is read from the reloadable settings on every request).
//!
//! Rules: with `http.accessControl`, a scrape needs `accessControl.metrics` ([`Need::Scrape`]).
//! A scrape (storage usage, then the exposition) runs on the blocking pool, never on the
//! shard. A failed scrape is a plain-text 500, logged.
use hyper::{header, Request, Response, StatusCode};

use super::expose;
use crate::api::{
    body::{full, Body, RequestBody},
    Ctx,
};
use crate::ext::{Extension, Need, Reply};

/// The metrics extension in the list: its operator endpoint.
pub struct MetricsExt;

impl Extension for MetricsExt {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn operator_path(&self, ctx: &Ctx, path: &str) -> Option<Need> {
        let settings = ctx.live.settings();
        let metrics = &settings.metrics;
        (metrics.enabled && metrics.path == path).then_some(Need::Scrape)
    }

    fn handle<'a>(
        &'a self,
        _req: Request<RequestBody>,
        ctx: &'a Ctx,
        _user: Option<&'a str>,
    ) -> Reply<'a> {
        Box::pin(async move { Ok(scrape(ctx).await) })
    }
}

async fn scrape(ctx: &Ctx) -> Response<Body> {
    let engine = ctx.engine.clone();
    let metrics = ctx.metrics.clone();
    let namespace = ctx.live.settings().metrics.namespace.clone();
    // Usage reads RocksDB and the exposition of 10,000 repositories takes milliseconds:
    // neither runs on the shard, whose other connections would wait.
    let sync = ctx.sync.clone();
    let trust = ctx.trust.clone();
    let auth = ctx.auth.clone();
    let scraped = tokio::task::spawn_blocking(move || {
        let reads = crate::runtime::blocking::block_on(super::IndexReads::of(&engine))?;
        Ok::<_, berth_storage::StorageError>(super::scrape(
            &metrics,
            &engine,
            &reads,
            &namespace,
            sync.as_deref(),
            trust.as_deref(),
            auth.as_deref(),
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
