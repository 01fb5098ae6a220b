//! Structured logs through `tracing`: text or JSON, level from the config (overridable with
//! `RUST_LOG`), to stderr or to the configured file; an access log line per request (target
//! [`ACCESS_TARGET`], in the main log) and an audit log of mutating requests (target
//! [`AUDIT_TARGET`], JSON lines, only in `log.audit`).
//!
//! Rules:
//! - Stdout is kept for the one line that says where berth listens.
//! - Files are written by a background thread (`tracing-appender`), in batches, so a shard
//!   never waits on a log write. The returned [`Logging`] must live until exit: dropping it
//!   flushes. Under a flood the main log drops what its queue cannot hold; the audit log
//!   never drops a line (the request waits instead).
//! - Every line of a request carries its request id (the `request` span's field).
//! - Request handlers never log headers, so credentials cannot leak.
//! - SIGHUP may change the level ([`Logging::set_level`]); format and files need a restart.
use std::fs::OpenOptions;

use std::io::BufWriter;

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{
    filter::Targets, fmt, layer::SubscriberExt, reload, util::SubscriberInitExt, EnvFilter, Layer,
    Registry,
};

use crate::config::{LogConfig, LogFormat};

/// Target of the access log events (one per request).
pub const ACCESS_TARGET: &str = "berth::access";
/// Target of the audit log events (mutating requests), written only to `log.audit`.
pub const AUDIT_TARGET: &str = "berth::audit";

/// Keeps the log writers alive and the level reloadable.
pub struct Logging {
    level: reload::Handle<EnvFilter, Registry>,
    /// The level came from `RUST_LOG`, which wins over the config (also on reload).
    from_env: bool,
    _guards: Vec<WorkerGuard>,
}

impl Logging {
    /// Applies a new `log.level`. Returns false (and changes nothing) when `RUST_LOG` is set.
    pub fn set_level(&self, level: &str) -> anyhow::Result<bool> {
        if self.from_env {
            return Ok(false);
        }
        let filter = EnvFilter::try_new(level)?.add_directive(audit_off());
        self.level.reload(filter)?;
        Ok(true)
    }
}

/// Bytes of log lines gathered before one write(2). The background writer flushes whenever
/// it has drained what is queued, so a line waits for its write only while more lines keep
/// arriving.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// A background writer for `path` (standard error when `None`). `lossless`: when the queue is
/// full the logging thread waits instead of dropping the line (the audit log); otherwise lines
/// beyond the queue are dropped (the main log under a flood).
fn writer(
    path: Option<&std::path::Path>,
    lossless: bool,
) -> anyhow::Result<(NonBlocking, WorkerGuard)> {
    let builder = NonBlockingBuilder::default().lossy(!lossless);
    Ok(match path {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            builder.finish(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file))
        }
        None => builder.finish(BufWriter::with_capacity(
            WRITE_BUFFER_BYTES,
            std::io::stderr(),
        )),
    })
}

/// The main log's directive that keeps audit events out of it. A static directive (not a
/// callback filter), so tracing still caches which call sites are off: a disabled event or
/// span costs one load on the hot path.
fn audit_off() -> tracing_subscriber::filter::Directive {
    format!("{AUDIT_TARGET}=off")
        .parse()
        .expect("a target directive parses")
}

pub fn init(log: &LogConfig) -> anyhow::Result<Logging> {
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(audit_off());
    let (level_filter, level) = reload::Layer::new(filter);
    let (main_writer, main_guard) = writer(log.output.as_deref(), false)?;
    let ansi = log.output.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let main = match log.format {
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_thread_names(true)
            .with_writer(main_writer)
            .boxed(),
        LogFormat::Text => fmt::layer()
            .with_thread_names(true)
            .with_ansi(ansi)
            .with_writer(main_writer)
            .boxed(),
    };
    let mut guards = vec![main_guard];
    let audit = match &log.audit {
        Some(path) => {
            let (audit_writer, audit_guard) = writer(Some(path), true)?;
            guards.push(audit_guard);
            let only_audit = Targets::new().with_target(AUDIT_TARGET, tracing::Level::INFO);
            Some(
                fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(audit_writer)
                    .with_filter(only_audit),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(main.with_filter(level_filter))
        .with(audit)
        .try_init()?;
    Ok(Logging {
        level,
        from_env,
        _guards: guards,
    })
}
