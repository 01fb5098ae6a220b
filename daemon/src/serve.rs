//! `berth serve` and `berth fsck`: the composition root. It loads the config, opens the
//! storage engine, builds THE list of extensions ([`extensions`]) and the policies, binds the
//! listeners, starts the extensions' workers, GC and the shards, and then handles signals:
//! SIGHUP reloads the reloadable settings (log level, extension settings), SIGTERM/SIGINT
//! drain: `/readyz` turns 503, berth keeps serving for `http.shutdownDelay`, then stops
//! accepting and lets in-flight requests finish for at most `http.drainTimeout`.

use std::{net::SocketAddr, path::Path, process::ExitCode, sync::Arc};

use anyhow::Context;
use berth_storage::{Engine, EngineOptions, IoBackendKind};
use tokio::sync::watch;

use crate::{
    config::{self, Config},
    ext::{
        lint::LintExt,
        metrics::{Metrics, MetricsExt},
        mgmt::MgmtExt,
        scrub::ScrubExt,
        search::{Search, SearchExt},
        sync::SyncExt,
        trust::{Trust, TrustExt},
        ui::UiExt,
        userprefs::UserprefsExt,
        Registry,
    },
    policy::{gc, quota::Quotas, tag_policy::ImmutableTags},
    runtime::{
        self,
        live::{Live, Settings},
        logging::{self, Logging},
    },
};

pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<config::Config> {
    let (config, warnings) = config::load(path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    for warning in &warnings {
        eprintln!("config warning: {warning}");
    }
    Ok(config)
}

/// The engine's options from the config: the daemon and every command that opens the store
/// (`berth fsck`, `berth gc`, `berth scrub`) use these, so they all see the same blobs and
/// index (`storage.storageDriver`, `storage.index.postgres`).
pub(crate) fn engine_options(config: &config::Config, io: IoBackendKind) -> EngineOptions {
    let backends = &config.storage.backends;
    EngineOptions {
        root: config.storage.root_directory.clone(),
        commit: config.storage.commit,
        io,
        postgres: backends
            .postgres
            .as_ref()
            .map(|postgres| berth_storage::PostgresOptions {
                url: postgres.url.expose().to_owned(),
                schema: postgres.schema.clone(),
                pool_size: postgres.pool_size,
            }),
        s3: backends.s3.as_ref().map(s3_options),
    }
}

/// `storage.storageDriver` as the engine's S3 options. Without `accesskey`/`secretkey` the
/// engine reads `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` from the environment.
fn s3_options(driver: &config::S3Driver) -> berth_storage::S3Options {
    berth_storage::S3Options {
        bucket: driver.bucket.clone(),
        region: driver.region.clone(),
        endpoint: driver.region_endpoint.clone(),
        // With regionendpoint its scheme decides (config/backends.rs warns otherwise).
        secure: match &driver.region_endpoint {
            Some(endpoint) => endpoint.starts_with("https://"),
            None => driver.secure,
        },
        skip_verify: driver.skip_verify,
        access_key: driver
            .credentials
            .as_ref()
            .map(|credentials| credentials.access_key.clone()),
        secret_key: driver
            .credentials
            .as_ref()
            .map(|credentials| credentials.secret_key.expose().to_owned()),
        root_directory: driver.root_directory.clone(),
        force_path_style: driver.force_path_style,
    }
}

/// Loads the config at `path` and opens its storage for an offline command (`berth scrub`,
/// `berth gc`); fails with a hint when the daemon holds the store.
pub(crate) fn open_offline(path: &Path) -> anyhow::Result<(config::Config, Engine)> {
    let config = load(Some(path))?;
    let engine =
        Engine::open(engine_options(&config, IoBackendKind::Threads)).with_context(|| {
            format!(
                "opening storage at {} (is the daemon running? stop it first)",
                config.storage.root_directory.display()
            )
        })?;
    Ok((config, engine))
}

pub fn serve(path: Option<&Path>) -> anyhow::Result<()> {
    let mut config = load(path)?;
    let logging = logging::init(&config.log)?;
    let mut signals = Signals::install()?;
    let uring = runtime::uring_available();
    let io = if uring {
        IoBackendKind::Uring
    } else {
        IoBackendKind::Threads
    };
    if !uring {
        tracing::warn!("io_uring is not available: using the thread-pool file backend");
    }
    let engine = Engine::open(engine_options(&config, io)).with_context(|| {
        format!(
            "opening storage at {}",
            config.storage.root_directory.display()
        )
    })?;
    let engine = Arc::new(engine);
    let workers = config
        .http
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let addr = SocketAddr::new(config.http.address, config.http.port);
    let listeners = runtime::bind_all(addr, workers).with_context(|| format!("binding {addr}"))?;
    let bound = listeners[0].local_addr()?;
    let settings = Arc::new(runtime::ShardSettings {
        header_read_timeout: config.http.read_header_timeout,
        idle_timeout: config.http.idle_timeout,
        body_idle: config.http.body_idle_timeout,
        drain_timeout: config.http.drain_timeout,
    });
    let live = Arc::new(Live::new(Settings::from_config(&config)));
    let trust = runtime::blocking::block_on(Trust::open(&config.trust, &engine))
        .context("extensions.trust")?;
    // Sync's own runtime: every upstream request runs there (the shards are tokio-uring).
    let sync = SyncExt::new(config.sync.as_ref(), &engine, trust.clone(), workers, uring)?;
    let on_demand = sync.on_demand();
    // LDAP and OpenID logins write the groups the provider gives; access control reads them.
    let providers_groups = config
        .http
        .auth
        .as_ref()
        .is_some_and(|auth| auth.ldap.is_some() || auth.openid.is_some());
    let directory_groups = Arc::new(match providers_groups {
        true => crate::auth::ldap::DirectoryGroups::stored(engine.clone()),
        false => crate::auth::ldap::DirectoryGroups::default(),
    });
    let openid = crate::ext::openid::OpenIdExt::new(&config, directory_groups.clone())
        .map_err(|error| anyhow::anyhow!("http.auth.openid: {error}"))?;
    let extensions = Arc::new(extensions(
        &config,
        &engine,
        &live,
        sync,
        trust.clone(),
        openid,
    )?);
    let auth = match &config.http.auth {
        Some(auth) => {
            let authenticator = crate::auth::htpasswd::Authenticator::with_groups(
                auth,
                config.http.realm.as_deref(),
                directory_groups.clone(),
            )
            .map_err(|error| anyhow::anyhow!("http.auth: {error}"))?;
            Some(Arc::new(match config.http.apikey {
                true => authenticator.with_api_keys(engine.clone()),
                false => authenticator,
            }))
        }
        None => None,
    };
    let bearer = match &config.http.bearer {
        Some(bearer) => Some(Arc::new(
            crate::auth::bearer::Bearer::new(bearer)
                .map_err(|error| anyhow::anyhow!("http.auth.bearer: {error}"))?,
        )),
        None => None,
    };
    let access = match &config.http.access {
        Some(access) => Some(Arc::new(
            crate::auth::access::AccessControl::with_directory_groups(access, directory_groups)
                .map_err(|error| anyhow::anyhow!("http.accessControl: {error}"))?,
        )),
        None => None,
    };
    let tls = match &config.http.tls {
        Some(tls) => Some(
            runtime::tls::Tls::new(tls, &config.http.mtls)
                .map_err(|error| anyhow::anyhow!("http.tls: {error}"))?,
        ),
        None => None,
    };
    let shared = Arc::new(runtime::Shared {
        redirect_blob_url: config.storage.backends.redirect_blob_url,
        sync: on_demand,
        trust,
        tls: tls.clone(),
        cors: (!config.http.allow_origin.is_empty())
            .then(|| Arc::new(crate::policy::cors::Cors::new(&config.http.allow_origin))),
        rate_limits: config
            .http
            .ratelimit
            .as_ref()
            .map(|limits| Arc::new(crate::policy::ratelimit::RateLimits::new(limits))),
        extensions: extensions.clone(),
        auth,
        bearer,
        access,
        engine,
        live: live.clone(),
        metrics: Arc::new(Metrics::new(workers)),
        immutable_tags: Arc::new(
            ImmutableTags::new(&config.storage.immutable_tags)
                .map_err(|error| anyhow::anyhow!("storage.immutableTags: {error}"))?,
        ),
        quotas: Arc::new(
            Quotas::new(&config.storage.quotas)
                .map_err(|error| anyhow::anyhow!("storage.quotas: {error}"))?,
        ),
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let maintenance_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let extension_workers = extensions.start(&maintenance_stop)?;
    let tls_watch = match &tls {
        Some(tls) => Some(tls.watch(maintenance_stop.clone())?),
        None => None,
    };
    let collector = gc::spawn_periodic(
        shared.engine.clone(),
        &config.storage,
        maintenance_stop.clone(),
    )?;
    let engine = shared.engine.clone();
    let shards = runtime::start_shards(listeners, shared, settings, uring, shutdown_rx)?;
    live.mark_started();
    tracing::info!(%bound, workers, uring, "berth started");
    let scheme = if config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("berth listening on {scheme}://{bound}");
    signals.until_stop(path, &mut config, &logging, &live, tls.as_deref());
    live.mark_draining();
    maintenance_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let delay = config.http.shutdown_delay;
    tracing::info!(
        ?delay,
        "shutting down: /readyz answers 503; draining after the delay"
    );
    signals.delay(delay);
    tracing::info!("no longer accepting: draining in-flight requests");
    let _ = shutdown_tx.send(true);
    for shard in shards {
        let _ = shard.join();
    }
    if let Some(collector) = collector {
        let _ = collector.join();
    }
    if let Some(tls_watch) = tls_watch {
        let _ = tls_watch.join();
    }
    // Each extension's way to end: sync stops upstream I/O first, so that a periodic copy in
    // the middle of a blob fails (nothing is committed from a short download) and its thread
    // sees `stop`.
    for worker in extension_workers {
        worker.join();
    }
    if let Err(error) = runtime::blocking::block_on(engine.flush_pulls()) {
        tracing::warn!(%error, "pull times since the last GC pass were not saved");
    }
    tracing::info!("stopped");
    Ok(())
}

/// THE list of extensions. Adding one: its folder under ext/, its config section, and one line
/// here. Sync is built first because the API's handlers use its pull-through (`Ctx::sync`).
fn extensions(
    config: &Config,
    engine: &Arc<Engine>,
    live: &Arc<Live>,
    sync: SyncExt,
    trust: Option<Arc<Trust>>,
    openid: crate::ext::openid::OpenIdExt,
) -> anyhow::Result<Registry> {
    let search = config.search.enabled;
    let searcher =
        Arc::new(Search::new().map_err(|error| anyhow::anyhow!("extensions.search: {error}"))?);
    let ui = UiExt::new(searcher.clone(), engine.clone(), config);
    Ok(Registry::new(vec![
        Arc::new(SearchExt::new(searcher, engine.clone(), search)),
        Arc::new(UserprefsExt { enabled: search }),
        Arc::new(MgmtExt::new(config)),
        Arc::new(ScrubExt::new(engine.clone(), live.clone())),
        Arc::new(sync),
        Arc::new(LintExt),
        Arc::new(MetricsExt),
        Arc::new(ui),
        Arc::new(TrustExt::new(trust)),
        Arc::new(crate::ext::apikeys::ApiKeysExt::new(config)),
        Arc::new(openid),
    ]))
}

/// The signals berth handles, installed before it says where it listens: a supervisor that
/// signals right after that line must never hit the default action (which kills).
struct Signals {
    runtime: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let _context = runtime.enter();
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            runtime,
        })
    }

    /// Waits for SIGTERM or SIGINT, reloading on every SIGHUP meanwhile.
    fn until_stop(
        &mut self,
        path: Option<&Path>,
        config: &mut Config,
        logging: &Logging,
        live: &Live,
        tls: Option<&runtime::tls::Tls>,
    ) {
        let Signals {
            runtime,
            term,
            int,
            hup,
        } = self;
        runtime.block_on(async {
            loop {
                tokio::select! {
                    _ = term.recv() => return,
                    _ = int.recv() => return,
                    _ = hup.recv() => {
                        reload(path, config, logging, live);
                        if let Some(tls) = tls {
                            tls.reload();
                        }
                    }
                }
            }
        })
    }

    /// Sleeps for `delay`, cut short by a second SIGTERM or SIGINT (an operator who insists).
    fn delay(&mut self, delay: std::time::Duration) {
        let Signals {
            runtime, term, int, ..
        } = self;
        runtime.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = term.recv() => tracing::info!("second signal: skipping the shutdown delay"),
                _ = int.recv() => tracing::info!("second signal: skipping the shutdown delay"),
            }
        })
    }
}

/// Re-reads the config file and applies what can change while running. An invalid file
/// changes nothing. Changes that need a restart are named in the log and not applied.
fn reload(path: Option<&Path>, running: &mut Config, logging: &Logging, live: &Live) {
    let Some(path) = path else {
        tracing::info!("SIGHUP: running on the embedded default config; nothing to reload");
        return;
    };
    let (new, warnings) = match config::load(Some(path)) {
        Ok(loaded) => loaded,
        Err(errors) => {
            tracing::error!(%errors, "SIGHUP: the config is invalid; keeping the running config");
            return;
        }
    };
    for warning in &warnings {
        tracing::warn!(%warning, "config warning");
    }
    let mut applied = Vec::new();
    if new.log.level != running.log.level {
        match logging.set_level(&new.log.level) {
            Ok(true) => applied.push("log.level"),
            Ok(false) => tracing::warn!("SIGHUP: RUST_LOG is set and keeps deciding the log level"),
            Err(error) => tracing::error!(%error, "SIGHUP: cannot apply log.level"),
        }
        running.log.level = new.log.level.clone();
    }
    let settings = Settings::from_config(&new);
    if settings != Settings::from_config(running) || new.extensions != running.extensions {
        live.replace(settings);
        applied.push("extensions");
        running.metrics = new.metrics.clone();
        running.lint = new.lint.clone();
        running.scrub = new.scrub.clone();
        running.extensions = new.extensions.clone();
    }
    let mut restart = Vec::new();
    if new.storage != running.storage {
        restart.push("storage");
    }
    if new.http != running.http {
        restart.push("http");
    }
    let log_files = (&new.log.format, &new.log.output, &new.log.audit);
    if log_files != (&running.log.format, &running.log.output, &running.log.audit) {
        restart.push("log.format/output/audit");
    }
    if new.dist_spec_version != running.dist_spec_version {
        restart.push("distSpecVersion");
    }
    if new.sync != running.sync {
        restart.push("extensions.sync");
    }
    tracing::info!(
        config = %path.display(),
        applied = ?applied,
        needs_restart = ?restart,
        "SIGHUP: config reloaded"
    );
}

/// `berth fsck CONFIG`: 0 when the store is consistent, 1 when problems were found.
pub fn fsck(path: &Path) -> anyhow::Result<ExitCode> {
    let config = load(Some(path))?;
    let engine = Engine::open_read_only(engine_options(&config, IoBackendKind::Threads))
        .with_context(|| {
            format!(
                "opening storage at {}",
                config.storage.root_directory.display()
            )
        })?;
    let report = crate::runtime::blocking::block_on(engine.fsck())?;
    for problem in &report.problems {
        println!("{problem}");
    }
    println!(
        "checked {} blobs and {} manifests: {} problems",
        report.blobs_checked,
        report.manifests_checked,
        report.problems.len()
    );
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
