//! berth, the daemon: configuration (config/), the thread-per-core runtime (runtime/), the OCI
//! Distribution API (api/), authentication and access control (auth/), the storage policies
//! (policy/), the extensions behind one trait (ext/), and the command line. `serve` is the
//! composition root: it alone knows the list of extensions.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod ext;
pub mod policy;
pub mod runtime;
pub mod serve;
