//! The sync extension (`extensions.sync`): pull-through (on demand) and periodic mirroring of
//! upstream registries, written through the same engine API as a push. Every upstream request
//! runs on sync's own multi-thread runtime (the shards are tokio-uring); the periodic copies
//! run on their own thread. Each registry's state is answered at `/v2/_berth/ext/sync`
//! (admins only with access control; listed in discover's `_berth` entry while sync runs).
//!
//! Rules: on shutdown, upstream I/O stops first (the runtime is shut down), so a periodic
//! copy in the middle of a blob fails (nothing is committed from a short download) and its
//! thread sees the stop flag.

pub mod auth;
pub mod content;
pub mod ondemand;
pub mod periodic;
pub mod registry;
pub mod signed;
pub mod upstream;
mod upstream_http;
mod upstream_request;
pub mod upstream_stats;
#[cfg(test)]
mod upstream_tests;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use berth_storage::Engine;
use hyper::{Request, StatusCode};

use super::{Entry, Extension, Listed, Need, Reply, Route, Worker, READ};
use crate::api::{
    body::{json_response, RequestBody},
    error::ApiError,
    Ctx,
};
use crate::config::SyncConfig;
use ondemand::OnDemand;

/// Each sync registry's state (berth's own extension prefix).
pub const STATUS_PATH: &str = "/v2/_berth/ext/sync";

const ROUTES: &[Route] = &[Route {
    path: STATUS_PATH,
    methods: READ,
    need: Need::Admin,
}];

/// The sync extension of a running daemon.
pub struct SyncExt {
    /// `None` when sync is off or has no registry.
    on_demand: Option<Arc<OnDemand>>,
    /// Sync's runtime until the workers start; their join shuts it down.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    uring: bool,
}

impl SyncExt {
    /// Starts sync's runtime when `extensions.sync` is enabled and builds its registries.
    /// `shards` is the number of shard threads.
    pub fn new(
        config: Option<&SyncConfig>,
        engine: &Arc<Engine>,
        trust: Option<Arc<crate::ext::trust::Trust>>,
        shards: usize,
        uring: bool,
    ) -> anyhow::Result<SyncExt> {
        // Its threads hash and write every byte that comes from upstream (about half a
        // core-second per GB), one blob per thread at a time: half as many threads as shards,
        // which serve the same bytes to the clients.
        let runtime = match config {
            Some(sync) if sync.enabled => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads((shards / 2).max(1))
                    .thread_name("sync")
                    .enable_all()
                    .build()
                    .context("starting the sync runtime")?,
            ),
            _ => None,
        };
        let on_demand = match (config, &runtime) {
            (Some(sync), Some(runtime)) => {
                registry::build(sync, engine.clone(), trust, runtime.handle().clone())
                    .map_err(|error| anyhow::anyhow!("extensions.sync: {error}"))?
            }
            _ => None,
        };
        Ok(SyncExt {
            on_demand,
            runtime: Mutex::new(runtime),
            uring,
        })
    }

    /// Pull-through, for the API's handlers (`Ctx::sync`).
    pub fn on_demand(&self) -> Option<Arc<OnDemand>> {
        self.on_demand.clone()
    }
}

impl Extension for SyncExt {
    fn name(&self) -> &'static str {
        "sync"
    }

    fn routes(&self) -> &[Route] {
        ROUTES
    }

    /// `GET /v2/_berth/ext/sync`: each sync registry's configuration, traffic and last
    /// outcome (404 NOT_FOUND when sync is off, like any unknown route).
    fn handle<'a>(
        &'a self,
        _req: Request<RequestBody>,
        _ctx: &'a Ctx,
        _user: Option<&'a str>,
    ) -> Reply<'a> {
        Box::pin(async {
            let sync = self.on_demand.as_ref().ok_or(ApiError::NotFound)?;
            Ok(json_response(
                StatusCode::OK,
                "application/json",
                sync.status(),
            ))
        })
    }

    fn start(&self, stop: &Arc<AtomicBool>) -> std::io::Result<Vec<Worker>> {
        let periodic = match &self.on_demand {
            Some(sync) => periodic::spawn(sync.clone(), self.uring, stop.clone())?,
            None => None,
        };
        let runtime = self
            .runtime
            .lock()
            .expect("the sync runtime lock is never poisoned")
            .take();
        Ok(vec![Worker::new(move || {
            if let Some(runtime) = runtime {
                runtime.shutdown_background();
            }
            if let Some(periodic) = periodic {
                let _ = periodic.join();
            }
        })])
    }

    fn discover(&self, _ctx: &Ctx) -> Vec<Listed> {
        match self.on_demand {
            Some(_) => vec![Listed {
                entry: Entry::Berth,
                endpoint: STATUS_PATH,
                offers: "the state of each sync registry",
            }],
            None => Vec::new(),
        }
    }
}
