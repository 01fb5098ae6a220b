//! File I/O for staged uploads and blob commits, behind one narrow enum.
//!
//! Backends: `Uring` (tokio-uring: positional writes with owned buffers, fsync through the
//! ring; must run inside `tokio_uring::start`) and `Threads` (std::fs inside
//! `tokio::task::spawn_blocking`, any tokio runtime). Metadata calls that take microseconds
//! (stat, open of a directory, unlink of an abandoned staged file in `Drop`) run inline on
//! both. Anything that can stall on the device (write, fsync, rename, whole-file reads)
//! goes through the ring or the blocking pool, never the shard thread.
//!
//! Cancellation: a dropped write/fsync future may still complete (the ring or the blocking
//! pool owns the buffer until it does). Callers therefore treat the on-disk length after a
//! cancelled write as unknown and re-read it (see upload.rs).
//!
//! `FaultInjector` makes chosen calls fail with ENOSPC (a write fails after writing half its
//! buffer, like a disk filling up) so tests can check what each failure leaves behind.
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::oci::{Algorithm, Hasher};

/// Size of each read when re-hashing a staged or committed file.
pub(crate) const HASH_READ_BYTES: usize = 1 << 20;

/// Which file I/O backend the engine uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoBackendKind {
    /// io_uring through tokio-uring: engine async fns must run inside `tokio_uring::start`.
    Uring,
    /// std::fs on tokio's blocking pool: works on any tokio runtime.
    #[default]
    Threads,
}

/// Named places where `FaultInjector` can make the engine fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// Appending bytes to a staged upload file (fails after writing half the buffer).
    StagedWrite,
    /// fsync of a staged file before commit.
    StagedSync,
    /// rename of a staged file into blobs/.
    Rename,
    /// fsync of a blob fan-out directory after the rename.
    DirSync,
    /// A RocksDB write batch.
    IndexWrite,
}

/// Test hook: fail the n-th call (0-based, counted from arming) at a fault point.
#[derive(Default)]
pub struct FaultInjector {
    armed: Mutex<HashMap<FaultPoint, (u64, bool)>>,
}

impl FaultInjector {
    pub fn new() -> Arc<FaultInjector> {
        Arc::new(FaultInjector::default())
    }

    /// The call after `calls_ok` successful calls at `point` fails; later calls succeed.
    pub fn fail_once_after(&self, point: FaultPoint, calls_ok: u64) {
        self.lock().insert(point, (calls_ok, false));
    }

    /// Every call at `point` after `calls_ok` successful ones fails until `clear`.
    pub fn fail_always_after(&self, point: FaultPoint, calls_ok: u64) {
        self.lock().insert(point, (calls_ok, true));
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FaultPoint, (u64, bool)>> {
        self.armed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Err(ENOSPC) if this call at `point` must fail.
    pub(crate) fn check(&self, point: FaultPoint) -> io::Result<()> {
        let mut armed = self.lock();
        let Some((remaining, sticky)) = armed.get_mut(&point) else {
            return Ok(());
        };
        if *remaining > 0 {
            *remaining -= 1;
            return Ok(());
        }
        if !*sticky {
            armed.remove(&point);
        }
        Err(io::Error::from_raw_os_error(libc::ENOSPC))
    }
}

/// An open staged upload file.
pub(crate) enum StagedFile {
    Uring(Rc<tokio_uring::fs::File>),
    Threads(Arc<std::fs::File>),
}

/// The engine's file I/O: a backend plus optional fault injection.
pub(crate) struct Io {
    pub(crate) kind: IoBackendKind,
    pub(crate) faults: Option<Arc<FaultInjector>>,
}

fn joined<T>(result: Result<io::Result<T>, tokio::task::JoinError>) -> io::Result<T> {
    result.unwrap_or_else(|error| Err(io::Error::other(format!("blocking task failed: {error}"))))
}

impl Io {
    pub(crate) fn fault(&self, point: FaultPoint) -> io::Result<()> {
        match &self.faults {
            Some(faults) => faults.check(point),
            None => Ok(()),
        }
    }

    /// Creates an empty staged file; fails if it exists. Cancel: the file may or may not
    /// exist; recovery at open removes staged files without a session record.
    pub(crate) async fn create_new(&self, path: &Path) -> io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).mode(0o644);
        match self.kind {
            IoBackendKind::Uring => {
                let file = tokio_uring::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .await?;
                file.close().await
            }
            IoBackendKind::Threads => {
                let path = path.to_path_buf();
                joined(tokio::task::spawn_blocking(move || options.open(path).map(drop)).await)
            }
        }
    }

    /// Opens an existing staged file for reading and writing.
    pub(crate) async fn open_rw(&self, path: &Path) -> io::Result<StagedFile> {
        match self.kind {
            IoBackendKind::Uring => Ok(StagedFile::Uring(Rc::new(
                tokio_uring::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .await?,
            ))),
            IoBackendKind::Threads => {
                let path = path.to_path_buf();
                let file = joined(
                    tokio::task::spawn_blocking(move || {
                        OpenOptions::new().read(true).write(true).open(path)
                    })
                    .await,
                )?;
                Ok(StagedFile::Threads(Arc::new(file)))
            }
        }
    }

    /// Writes all of `bytes` at `position`. On error some prefix may have been written.
    /// The write runs as its own task holding `keepalive` until the write completes, even
    /// when this future is dropped: upload.rs passes its session guard, so a session is
    /// not handed to another writer while an abandoned write may still land.
    pub(crate) async fn write_all_at<K: Send + 'static>(
        &self,
        file: &StagedFile,
        bytes: Bytes,
        position: u64,
        keepalive: K,
    ) -> io::Result<()> {
        // Under a StagedWrite fault, model a disk filling up: half the buffer lands, ENOSPC.
        let (bytes, fault) = match self.fault(FaultPoint::StagedWrite) {
            Ok(()) => (bytes, None),
            Err(error) => (bytes.slice(..bytes.len() / 2), Some(error)),
        };
        let written = match file {
            StagedFile::Uring(file) => {
                let file = Rc::clone(file);
                let task = tokio_uring::spawn(async move {
                    let result = match bytes.is_empty() {
                        true => Ok(()),
                        false => file.write_all_at(bytes, position).await.0,
                    };
                    drop(keepalive);
                    result
                });
                joined(task.await)
            }
            StagedFile::Threads(file) => {
                let file = Arc::clone(file);
                let task = tokio::task::spawn_blocking(move || {
                    let result = file.write_all_at(&bytes, position);
                    drop(keepalive);
                    result
                });
                joined(task.await)
            }
        };
        written?;
        match fault {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// fsync of a staged file (data and metadata: its length matters).
    pub(crate) async fn sync_file(&self, file: &StagedFile) -> io::Result<()> {
        self.fault(FaultPoint::StagedSync)?;
        match file {
            StagedFile::Uring(file) => file.sync_all().await,
            StagedFile::Threads(file) => {
                let file = Arc::clone(file);
                joined(tokio::task::spawn_blocking(move || file.sync_all()).await)
            }
        }
    }

    /// Shrinks a staged file to `length` (only after a cancelled write left extra bytes).
    pub(crate) async fn truncate(&self, path: &Path, length: u64) -> io::Result<()> {
        let path = path.to_path_buf();
        let truncate = move || OpenOptions::new().write(true).open(path)?.set_len(length);
        match self.kind {
            // tokio-uring 0.5 has no ftruncate op; a shrink is a metadata update.
            IoBackendKind::Uring => truncate(),
            IoBackendKind::Threads => joined(tokio::task::spawn_blocking(truncate).await),
        }
    }

    /// Hashes the first `length` bytes of `path` with `algorithm` and returns the hasher (to
    /// continue or finalize). A file shorter than `length` is an error.
    pub(crate) async fn hash_file(
        &self,
        path: &Path,
        length: u64,
        algorithm: Algorithm,
    ) -> io::Result<Hasher> {
        match self.kind {
            IoBackendKind::Uring => {
                let file = tokio_uring::fs::File::open(path).await?;
                let mut hasher = algorithm.hasher();
                let mut position = 0u64;
                let mut buffer = Vec::with_capacity(HASH_READ_BYTES);
                while position < length {
                    let want = (length - position).min(HASH_READ_BYTES as u64) as usize;
                    buffer.clear();
                    buffer.reserve(want);
                    let (result, returned) = file.read_at(buffer, position).await;
                    buffer = returned;
                    let read = result?;
                    if read == 0 {
                        return Err(short_file(path, position, length));
                    }
                    let read = read.min(want);
                    hasher.update(&buffer[..read]);
                    position += read as u64;
                }
                file.close().await?;
                Ok(hasher)
            }
            IoBackendKind::Threads => {
                let path = path.to_path_buf();
                joined(
                    tokio::task::spawn_blocking(move || {
                        hash_file_blocking(&path, length, algorithm)
                    })
                    .await,
                )
            }
        }
    }

    /// rename(2); the caller fsyncs the target directory afterwards.
    pub(crate) async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.fault(FaultPoint::Rename)?;
        match self.kind {
            IoBackendKind::Uring => tokio_uring::fs::rename(from, to).await,
            IoBackendKind::Threads => {
                let (from, to) = (from.to_path_buf(), to.to_path_buf());
                joined(tokio::task::spawn_blocking(move || std::fs::rename(from, to)).await)
            }
        }
    }

    /// unlink(2); a missing file is not an error.
    pub(crate) async fn remove_file(&self, path: &Path) -> io::Result<()> {
        let result = match self.kind {
            IoBackendKind::Uring => tokio_uring::fs::remove_file(path).await,
            IoBackendKind::Threads => {
                let path = path.to_path_buf();
                joined(tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await)
            }
        };
        match result {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// mkdir(2); an existing directory is not an error.
    pub(crate) async fn create_dir(&self, path: &Path) -> io::Result<()> {
        let result = match self.kind {
            IoBackendKind::Uring => tokio_uring::fs::create_dir(path).await,
            IoBackendKind::Threads => {
                let path = path.to_path_buf();
                joined(tokio::task::spawn_blocking(move || std::fs::create_dir(path)).await)
            }
        };
        match result {
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }

    /// fsync of a directory, making renames into it durable.
    pub(crate) async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.fault(FaultPoint::DirSync)?;
        match self.kind {
            IoBackendKind::Uring => {
                let directory = std::fs::File::open(path)?;
                let directory = tokio_uring::fs::File::from_std(directory);
                directory.sync_all().await?;
                directory.close().await
            }
            IoBackendKind::Threads => {
                let path = path.to_path_buf();
                joined(tokio::task::spawn_blocking(move || sync_dir_blocking(&path)).await)
            }
        }
    }
}

fn short_file(path: &Path, position: u64, length: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "{} ends at {position}, expected {length} bytes",
            path.display()
        ),
    )
}

/// Blocking whole-file hash, also used by fsck.
pub(crate) fn hash_file_blocking(
    path: &Path,
    length: u64,
    algorithm: Algorithm,
) -> io::Result<Hasher> {
    let file = std::fs::File::open(path)?;
    let mut hasher = algorithm.hasher();
    let mut buffer = vec![0u8; HASH_READ_BYTES];
    let mut position = 0u64;
    while position < length {
        let want = (length - position).min(HASH_READ_BYTES as u64) as usize;
        let read = file.read_at(&mut buffer[..want], position)?;
        if read == 0 {
            return Err(short_file(path, position, length));
        }
        hasher.update(&buffer[..read]);
        position += read as u64;
    }
    Ok(hasher)
}

pub(crate) fn sync_dir_blocking(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// The parent directory of a path that always has one (paths built by blobstore.rs).
pub(crate) fn parent_of(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
