//! Setup shared by the storage benches (gc, scrub, metrics_scrape): a current-thread
//! runtime, a scratch directory on the same ext4 as the other bench data
//! (/root/.cache/berth, not tmpfs), and an engine on it with `commit: false`, since setup
//! only has to be fast.
use berth_storage::{Engine, EngineOptions, IoBackendKind};

const DATA_PARENT: &str = "/root/.cache/berth";

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn scratch_dir() -> tempfile::TempDir {
    std::fs::create_dir_all(DATA_PARENT).expect("data parent");
    tempfile::TempDir::new_in(DATA_PARENT).expect("temp dir")
}

/// An engine on `root` without fsyncs, on the portable I/O backend.
pub fn open_unsynced(root: &std::path::Path) -> Engine {
    Engine::open(EngineOptions {
        root: root.to_path_buf(),
        commit: false,
        io: IoBackendKind::Threads,
        postgres: None,
        s3: None,
    })
    .expect("engine opens")
}
