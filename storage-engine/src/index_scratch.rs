//! The private scratch directory of a RocksDB secondary instance (read-only opens: fsck).
use std::path::{Path, PathBuf};

/// A private directory for a RocksDB secondary instance's own files (its info log).
pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    pub(crate) fn create() -> std::io::Result<ScratchDir> {
        let path = std::env::temp_dir().join(format!(
            "berth-index-secondary-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(ScratchDir(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
