//! The on-disk blob store: directory layout, paths, and the file half of the commit protocol.
//!
//! Layout under the root: `blobs/<alg>/<2 hex>/<hex>` (immutable, content-addressed, shared
//! by all repositories), `uploads/<upload-id>` (staged bytes of sessions), `index/` (RocksDB).
//! Rules: paths are built only from `Digest` and `UploadId` values (validated newtypes), so a
//! wire string never reaches the filesystem. Fan-out directories are created on first use,
//! once per directory per process (a bit per directory remembers it), and their creation is
//! made durable before any blob lands in them. Creating all 768 at open was measured at
//! 1.4 s here (and 2.3 s to remove), paid by every new store and every test.
//! A file appears under `blobs/` only by rename of a staged file that was fsynced and whose
//! digest was verified: whatever sits at a final path is complete.
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::io::{parent_of, sync_dir_blocking, Io};
use crate::oci::{Algorithm, Digest, UploadId};

/// Every algorithm the store accepts (fan-out directories exist for each).
pub(crate) const ALGORITHMS: [Algorithm; 3] =
    [Algorithm::Sha256, Algorithm::Sha512, Algorithm::Blake3];

pub(crate) struct BlobStore {
    root: PathBuf,
    /// One bit per `blobs/<alg>/<2 hex>` directory: known to exist durably.
    fanout_ready: Box<[AtomicBool]>,
}

fn fanout_slot(algorithm: Algorithm, byte: u8) -> usize {
    let position = ALGORITHMS
        .iter()
        .position(|known| *known == algorithm)
        .expect("every algorithm has fan-out directories");
    position * 256 + byte as usize
}

impl BlobStore {
    pub(crate) fn new(root: PathBuf) -> BlobStore {
        BlobStore {
            root,
            fanout_ready: (0..ALGORITHMS.len() * 256)
                .map(|_| AtomicBool::new(false))
                .collect(),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    pub(crate) fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub(crate) fn index_dir(&self) -> PathBuf {
        self.root.join("index")
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs_dir()
            .join(digest.algorithm().name())
            .join(&hex[..2])
            .join(hex)
    }

    pub(crate) fn upload_path(&self, id: &UploadId) -> PathBuf {
        self.uploads_dir().join(id.to_string())
    }

    /// Creates the root, `uploads/`, `blobs/` and `blobs/<alg>/` when missing, fsyncing each
    /// parent that gained an entry, then marks the fan-out directories that already exist
    /// (after one fsync of each `blobs/<alg>/`, so they are durable). Blocking, once at open.
    pub(crate) fn prepare(&self) -> io::Result<()> {
        let mut dirty_parents: Vec<PathBuf> = Vec::new();
        let mut ensure = |path: PathBuf| -> io::Result<()> {
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    dirty_parents.push(parent_of(&path));
                    Ok(())
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(error) => Err(error),
            }
        };
        std::fs::create_dir_all(&self.root)?;
        ensure(self.uploads_dir())?;
        ensure(self.blobs_dir())?;
        for algorithm in ALGORITHMS {
            ensure(self.blobs_dir().join(algorithm.name()))?;
        }
        dirty_parents.sort();
        dirty_parents.dedup();
        for parent in dirty_parents {
            sync_dir_blocking(&parent)?;
        }
        for algorithm in ALGORITHMS {
            let algorithm_dir = self.blobs_dir().join(algorithm.name());
            sync_dir_blocking(&algorithm_dir)?;
            for entry in std::fs::read_dir(&algorithm_dir)? {
                let name = entry?.file_name();
                let byte = name
                    .to_str()
                    .filter(|name| name.len() == 2)
                    .and_then(|name| u8::from_str_radix(name, 16).ok());
                if let Some(byte) = byte {
                    self.fanout_ready[fanout_slot(algorithm, byte)].store(true, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    /// Every file under blobs/ that is named by a digest in its right fan-out directory
    /// (fsck reports the others). Blocking: a directory walk.
    pub(crate) fn blob_files(&self) -> io::Result<Vec<(Digest, PathBuf)>> {
        let mut files = Vec::new();
        for algorithm_dir in std::fs::read_dir(self.blobs_dir())? {
            let algorithm_dir = algorithm_dir?.path();
            let Some(algorithm) = algorithm_dir.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            let algorithm = algorithm.to_owned();
            for fanout in std::fs::read_dir(&algorithm_dir)? {
                let fanout = fanout?.path();
                if !fanout.is_dir() {
                    continue;
                }
                for file in std::fs::read_dir(&fanout)? {
                    let path = file?.path();
                    let digest = path
                        .file_name()
                        .and_then(|name| name.to_str())
                        .and_then(|hex| format!("{algorithm}:{hex}").parse::<Digest>().ok());
                    if let Some(digest) = digest.filter(|digest| self.blob_path(digest) == path) {
                        files.push((digest, path));
                    }
                }
            }
        }
        Ok(files)
    }

    /// Makes sure the blob's fan-out directory exists durably. After the first success per
    /// directory this is one atomic load. Racing creators both fsync the parent, so neither
    /// can commit into a directory whose entry is not yet durable.
    async fn ensure_fanout(&self, io: &Io, digest: &Digest, durable: bool) -> io::Result<()> {
        let byte = u8::from_str_radix(&digest.hex()[..2], 16)
            .map_err(|_| io::Error::other("digest hex is not hex"))?;
        let ready = &self.fanout_ready[fanout_slot(digest.algorithm(), byte)];
        if ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let directory = parent_of(&self.blob_path(digest));
        io.create_dir(&directory).await?;
        if durable {
            io.sync_dir(&parent_of(&directory)).await?;
        }
        ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Moves a verified, fsynced staged file to its final path, or drops it when the blob is
    /// already stored, then (if `durable`) fsyncs the fan-out directory. The directory fsync
    /// also runs when the blob was already there: a concurrent commit of the same digest may
    /// have renamed it without having fsynced yet.
    ///
    /// Cancel: before the rename nothing changed; after it the file is complete at its final
    /// path with no index record yet (an orphan: invisible, reported by fsck as info,
    /// reclaimed by GC).
    pub(crate) async fn install(
        &self,
        io: &Io,
        staged: &Path,
        digest: &Digest,
        durable: bool,
    ) -> io::Result<()> {
        self.ensure_fanout(io, digest, durable).await?;
        let target = self.blob_path(digest);
        if std::fs::symlink_metadata(&target).is_ok() {
            io.remove_file(staged).await?;
        } else {
            // rename(2) replaces atomically: two commits racing on one digest both leave a
            // complete file with identical content.
            io.rename(staged, &target).await?;
        }
        if durable {
            io.sync_dir(&parent_of(&target)).await?;
        }
        Ok(())
    }
}
