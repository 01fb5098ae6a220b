//! berth, the daemon: configuration, the thread-per-core runtime, the HTTP layer with the OCI
//! Distribution API, and the command line. `serve` is the composition root.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod ext;
pub mod policy;
pub mod runtime;
pub mod serve;
