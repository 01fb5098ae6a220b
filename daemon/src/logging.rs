//! Structured logs through `tracing`: text or JSON, level from the config (overridable with
//! `RUST_LOG`), to stderr or to the configured file. Stdout is kept for the one line that says
//! where berth listens. Request handlers never log headers, so credentials cannot leak.

use std::{fs::OpenOptions, sync::Mutex};

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogConfig, LogFormat};

pub fn init(log: &LogConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_thread_names(true);
    let json = matches!(log.format, LogFormat::Json);
    match &log.output {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            let writer = Mutex::new(file);
            if json {
                builder.json().with_writer(writer).with_ansi(false).init();
            } else {
                builder.with_writer(writer).with_ansi(false).init();
            }
        }
        None => {
            if json {
                builder.json().with_writer(std::io::stderr).init();
            } else {
                builder.with_writer(std::io::stderr).init();
            }
        }
    }
    Ok(())
}
