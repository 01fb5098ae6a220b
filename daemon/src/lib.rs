//! berth, the daemon: configuration (config/), the thread-per-core runtime (runtime/), the OCI
//! Distribution API (api/), authentication and access control (auth/), the storage policies
//! (policy/), the extensions behind one trait (ext/), the command line and `berth migrate`
//! (migrate/). `serve` is the
//! composition root: it alone knows the list of extensions.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod ext;
pub mod migrate;
pub mod policy;
pub mod runtime;
pub mod serve;

/// What the daemon's unit tests share.
#[cfg(test)]
pub(crate) mod test_support {
    /// A committing engine on the Threads backend over `root`.
    pub fn engine(root: &std::path::Path) -> berth_storage::Engine {
        berth_storage::Engine::open(berth_storage::EngineOptions {
            root: root.to_path_buf(),
            commit: true,
            io: berth_storage::IoBackendKind::Threads,
            postgres: None,
            s3: None,
        })
        .expect("engine opens")
    }
}
