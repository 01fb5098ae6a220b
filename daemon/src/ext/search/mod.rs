//! The search extension: zot's GraphQL API at `/v2/_zot/ext/search` (`extensions.search`),
//! answered from the engine's search records (storage-engine/src/search).
//!
//! Owns: the schema (schema.graphql, zot's, built by schema.rs), the transport
//! (transport.rs), the resolvers (resolve.rs and digests.rs over view.rs, images.rs,
//! repos.rs, filter.rs, page.rs) and the limits (limits.rs).
//!
//! Rules: a request is decoded and checked on the shard, then executed on the blocking pool
//! (at most [`limits::max_concurrent`] at once): a query over 100k images never holds a
//! shard's other connections. Everything the caller may not read is invisible (view.rs).
//! A document is parsed once and kept by its text ([`limits::MAX_CACHED_DOCUMENTS`]).
mod digests;
mod filter;
mod hits;
pub mod images;
pub mod limits;
mod page;
mod repos;
mod resolve;
pub mod schema;
pub mod transport;
mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;
use berth_storage::Engine;
use tokio::sync::Semaphore;

pub use transport::{Answer, GraphqlRequest};
pub use view::Permits;

/// The route, as zot's.
pub const PATH: &str = "/v2/_zot/ext/search";

/// The built schema, the bound on concurrent searches and the parsed documents.
pub struct Search {
    schema: async_graphql::dynamic::Schema,
    running: Arc<Semaphore>,
    documents: Arc<Documents>,
}

/// Parsed documents by their text (at most [`limits::MAX_CACHED_DOCUMENTS`]).
#[derive(Default)]
struct Documents(Mutex<HashMap<String, ExecutableDocument>>);

impl Documents {
    /// The document `text` parses to; `None` when it does not parse (async-graphql then
    /// parses it again and reports the error as it always does).
    fn parsed(&self, text: &str) -> Option<ExecutableDocument> {
        let lock = || self.0.lock().expect("documents lock is never poisoned");
        if let Some(document) = lock().get(text) {
            return Some(document.clone());
        }
        let document = async_graphql::parser::parse_query(text).ok()?;
        let mut cache = lock();
        if cache.len() >= limits::MAX_CACHED_DOCUMENTS {
            cache.clear();
        }
        cache.insert(text.to_owned(), document.clone());
        Some(document)
    }
}

impl Search {
    pub fn new() -> Result<Search, String> {
        Ok(Search {
            schema: schema::build().map_err(|error| error.0)?,
            running: Arc::new(Semaphore::new(limits::max_concurrent())),
            documents: Arc::default(),
        })
    }

    /// Runs a decoded request as `user` (who may do what `permits` says).
    pub async fn execute(
        &self,
        request: GraphqlRequest,
        engine: Arc<Engine>,
        user: Option<String>,
        permits: Permits,
    ) -> Answer {
        if let Err(refused) = transport::precheck(&request) {
            return refused;
        }
        let Ok(_running) = self.running.clone().acquire_owned().await else {
            return transport::error_answer(503, "search is shutting down");
        };
        let view = Arc::new(view::View::new(engine, user, permits));
        let mut graphql = async_graphql::Request::new(request.query).data(view.clone());
        if let Some(variables) = request.variables {
            graphql = graphql.variables(async_graphql::Variables::from_json(variables));
        }
        if let Some(name) = request.operation_name {
            graphql = graphql.operation_name(name);
        }
        let schema = self.schema.clone();
        let documents = self.documents.clone();
        let handle = tokio::runtime::Handle::current();
        let executed = tokio::task::spawn_blocking(move || {
            if let Some(document) = documents.parsed(&graphql.query) {
                graphql.set_parsed_query(document);
            }
            handle.block_on(schema.execute(graphql))
        })
        .await;
        match executed {
            Ok(response) => {
                let failed = view
                    .failed
                    .lock()
                    .expect("failed list lock is never poisoned");
                transport::answer(response, &failed)
            }
            Err(error) => {
                tracing::error!(component = "search", %error, "search task failed");
                transport::error_answer(500, "internal error")
            }
        }
    }
}

/// The search extension in the list: its route, and the backfill of an older store.
pub struct SearchExt {
    search: Arc<Search>,
    engine: Arc<Engine>,
    /// `extensions.search.enable`: off, the route answers 404 like any unknown path.
    enabled: bool,
}

const ROUTES: &[crate::ext::Route] = &[crate::ext::Route {
    path: PATH,
    methods: &[
        hyper::Method::GET,
        hyper::Method::POST,
        hyper::Method::OPTIONS,
    ],
    need: crate::ext::Need::Nothing,
}];

impl SearchExt {
    /// `search` is shared with the UI, which asks it in process.
    pub fn new(search: Arc<Search>, engine: Arc<Engine>, enabled: bool) -> SearchExt {
        SearchExt {
            search,
            engine,
            enabled,
        }
    }
}

/// What `user` may do, as access control says (everything without it).
pub fn permits(ctx: &crate::api::Ctx, user: Option<&str>) -> Permits {
    let access = ctx.access.clone();
    let user = user.map(str::to_owned);
    Box::new(move |action, repo| {
        access
            .as_ref()
            .is_none_or(|access| access.can(user.as_deref(), action, repo))
    })
}

impl crate::ext::Extension for SearchExt {
    fn name(&self) -> &'static str {
        "search"
    }

    fn routes(&self) -> &[crate::ext::Route] {
        ROUTES
    }

    fn handle<'a>(
        &'a self,
        req: hyper::Request<crate::api::body::RequestBody>,
        ctx: &'a crate::api::Ctx,
        user: Option<&'a str>,
    ) -> crate::ext::Reply<'a> {
        Box::pin(async move {
            if !self.enabled {
                return Err(crate::api::error::ApiError::NotFound);
            }
            let decoded = match *req.method() {
                hyper::Method::OPTIONS => return Ok(crate::ext::preflight("GET,POST,OPTIONS")),
                hyper::Method::GET => transport::from_get(req.uri().query()),
                _ => {
                    let content_type = req
                        .headers()
                        .get(hyper::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let mut body = req.into_body();
                    let read = crate::api::body::read_limited(
                        &mut body,
                        limits::MAX_BODY_BYTES,
                        ctx.body_idle,
                    )
                    .await?;
                    match read {
                        Ok(bytes) => transport::from_post(content_type.as_deref(), &bytes),
                        Err(_) => {
                            crate::api::body::drain(&mut body, ctx.body_idle).await;
                            Err(transport::error_answer(413, "request body too large"))
                        }
                    }
                }
            };
            let answer = match decoded {
                Ok(request) => {
                    let permits = permits(ctx, user);
                    let user = user.map(str::to_owned);
                    self.search
                        .execute(request, self.engine.clone(), user, permits)
                        .await
                }
                Err(refused) => refused,
            };
            let status = hyper::StatusCode::from_u16(answer.status)
                .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
            Ok(hyper::Response::builder()
                .status(status)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::CONTENT_LENGTH, answer.body.len())
                .body(crate::api::body::full(answer.body))
                .expect("static headers are valid"))
        })
    }

    fn start(
        &self,
        stop: &Arc<std::sync::atomic::AtomicBool>,
    ) -> std::io::Result<Vec<crate::ext::Worker>> {
        // At start, on the main thread.
        if crate::runtime::blocking::block_on(self.engine.search_ready()).unwrap_or(false) {
            return Ok(Vec::new());
        }
        let engine = self.engine.clone();
        let stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("search-backfill".into())
            .spawn(move || backfill(&engine, &stop))?;
        Ok(vec![crate::ext::Worker::thread(thread)])
    }

    fn discover(&self, _ctx: &crate::api::Ctx) -> Vec<crate::ext::Listed> {
        match self.enabled {
            true => vec![crate::ext::Listed {
                entry: crate::ext::Entry::Zot,
                endpoint: PATH,
                offers: "search",
            }],
            false => Vec::new(),
        }
    }
}

/// Fills the search records of a store written before search existed, logging progress.
fn backfill(engine: &Engine, stop: &std::sync::atomic::AtomicBool) {
    let started = std::time::Instant::now();
    tracing::info!(
        component = "search",
        "search backfill: filling the search records of an older store"
    );
    let mut last_report = std::time::Instant::now();
    let outcome = crate::runtime::blocking::block_on(engine.search_backfill(stop, |progress| {
        if last_report.elapsed() >= std::time::Duration::from_secs(5) {
            last_report = std::time::Instant::now();
            tracing::info!(
                component = "search",
                repositories = progress.repos_done,
                of = progress.repos_total,
                images = progress.images,
                "search backfill"
            );
        }
    }));
    match outcome {
        Ok(true) => {
            tracing::info!(component = "search", elapsed = ?started.elapsed(), "search backfill done")
        }
        Ok(false) => tracing::info!(
            component = "search",
            "search backfill stopped; it resumes at the next start"
        ),
        Err(error) => {
            tracing::error!(component = "search", %error, "search backfill failed; it resumes at the next start")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_schema_builds_with_every_query() {
        let schema = super::schema::build().expect("schema.graphql builds");
        let sdl = schema.sdl();
        for query in [
            "GlobalSearch",
            "ImageList",
            "ExpandedRepoInfo",
            "StarredRepos",
            "CVEDiffListForImages",
        ] {
            assert!(sdl.contains(query), "{query} missing");
        }
    }
}
