//! What a running daemon may change without a restart, and its lifecycle state.
//!
//! Rules: the reloadable settings are one immutable [`Settings`] value behind an `ArcSwap`:
//! a request loads it once (a pointer read, no lock) and sees one consistent version, and
//! SIGHUP swaps in a new one whole. The lifecycle flags only ever move forward: started, then
//! draining.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, LintConfig, MetricsConfig, ScrubConfig};

/// The settings a SIGHUP can change (besides the log level, which logging.rs owns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub metrics: MetricsConfig,
    pub lint: LintConfig,
    pub scrub: ScrubConfig,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            metrics: config.metrics.clone(),
            lint: config.lint.clone(),
            scrub: config.scrub.clone(),
        }
    }
}

pub struct Live {
    settings: ArcSwap<Settings>,
    started: AtomicBool,
    draining: AtomicBool,
}

impl Live {
    pub fn new(settings: Settings) -> Live {
        Live {
            settings: ArcSwap::from_pointee(settings),
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    /// The current settings. A guard, not a clone: no shared reference count is touched.
    pub fn settings(&self) -> arc_swap::Guard<Arc<Settings>> {
        self.settings.load()
    }

    pub fn replace(&self, settings: Settings) {
        self.settings.store(Arc::new(settings));
    }

    /// Every shard is accepting: `/startupz` and `/readyz` turn 200.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// Shutdown began: `/readyz` turns 503 for good.
    pub fn mark_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
