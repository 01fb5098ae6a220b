//! berth, the daemon: configuration, the thread-per-core runtime, the HTTP layer with the OCI
//! Distribution API, and the command line. `serve` is the composition root.

pub mod cli;
pub mod config;
pub mod gc;
pub mod http;
pub mod lint;
pub mod metrics;
pub mod quota;
pub mod retention;
pub mod runtime;
pub mod scrub;
pub mod serve;
pub mod sync;
pub mod tag_policy;
