//! `berth serve` and `berth fsck`: the composition root. It loads the config, opens the
//! storage engine, binds the listeners, starts the shards and waits for a signal.

use std::{net::SocketAddr, path::Path, process::ExitCode, sync::Arc};

use anyhow::Context;
use berth_storage::{Engine, EngineOptions, IoBackendKind};
use tokio::sync::watch;

use crate::{config, logging, runtime};

fn load(path: Option<&Path>) -> anyhow::Result<config::Config> {
    let (config, warnings) = config::load(path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    for warning in &warnings {
        eprintln!("config warning: {warning}");
    }
    Ok(config)
}

fn engine_options(config: &config::Config, io: IoBackendKind) -> EngineOptions {
    EngineOptions {
        root: config.storage.root_directory.clone(),
        commit: config.storage.commit,
        io,
    }
}

pub fn serve(path: Option<&Path>) -> anyhow::Result<()> {
    let config = load(path)?;
    logging::init(&config.log)?;
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
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shards = runtime::start_shards(listeners, engine, settings, uring, shutdown_rx)?;
    tracing::info!(%bound, workers, uring, "berth started");
    println!("berth listening on http://{bound}");
    wait_for_signal()?;
    tracing::info!("shutting down: draining in-flight requests");
    let _ = shutdown_tx.send(true);
    for shard in shards {
        let _ = shard.join();
    }
    tracing::info!("stopped");
    Ok(())
}

fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        Ok(())
    })
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
    let report = engine.fsck()?;
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
