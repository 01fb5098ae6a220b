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
//! cancelled write as unknown and re-read it (see writer.rs).
//!
//! Fault injection and the I/O journal for tests live in faults.rs; every call here checks
//! them (`Io::fault`, `Io::record`).
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::direct;
pub use crate::faults::{FaultInjector, FaultPoint, IoEvent};
use crate::oci::{Algorithm, Hasher};
use crate::stats::{ring_op, timed, EngineStats};

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

/// An open staged upload file. The path names it in the I/O journal.
pub(crate) struct StagedFile {
    path: PathBuf,
    handle: StagedHandle,
    /// Opened with O_DIRECT: writes must be aligned (direct.rs). False where the filesystem
    /// refuses O_DIRECT (tmpfs): then the same writes go through the page cache.
    pub(crate) direct: bool,
}

enum StagedHandle {
    Uring(Rc<tokio_uring::fs::File>),
    Threads(Arc<std::fs::File>),
}

/// The engine's file I/O: a backend plus optional fault injection.
pub(crate) struct Io {
    pub(crate) kind: IoBackendKind,
    pub(crate) faults: Option<Arc<FaultInjector>>,
    /// fsync latencies are recorded here.
    pub(crate) stats: Arc<EngineStats>,
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

    /// Journals a completed event if a journal is on (tests); `event` runs only then.
    fn record(&self, event: impl FnOnce() -> IoEvent) {
        if let Some(faults) = &self.faults {
            if let Some(journal) = faults.journal_lock().as_mut() {
                journal.push(event());
            }
        }
    }

    /// Creates an empty staged file; fails if it exists. Cancel: the file may or may not
    /// exist; recovery at open removes staged files without a session record.
    pub(crate) async fn create_new(&self, path: &Path) -> io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).mode(0o644);
        match self.kind {
            IoBackendKind::Uring => {
                let file = ring_op(
                    tokio_uring::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(path),
                )
                .await?;
                ring_op(file.close()).await?;
            }
            IoBackendKind::Threads => {
                let path = path.to_path_buf();
                joined(tokio::task::spawn_blocking(move || options.open(path).map(drop)).await)?;
            }
        }
        self.record(|| IoEvent::CreateFile(path.to_path_buf()));
        Ok(())
    }

    /// Opens an existing staged file for reading and writing, with O_DIRECT where the
    /// filesystem supports it (see direct.rs).
    pub(crate) async fn open_rw(&self, path: &Path) -> io::Result<StagedFile> {
        match self.open_staged(path, libc::O_DIRECT).await {
            Ok(handle) => Ok(StagedFile {
                path: path.to_path_buf(),
                handle,
                direct: true,
            }),
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => Ok(StagedFile {
                path: path.to_path_buf(),
                handle: self.open_staged(path, 0).await?,
                direct: false,
            }),
            Err(error) => Err(error),
        }
    }

    async fn open_staged(&self, path: &Path, flags: i32) -> io::Result<StagedHandle> {
        Ok(match self.kind {
            IoBackendKind::Uring => StagedHandle::Uring(Rc::new(
                ring_op(
                    tokio_uring::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .custom_flags(flags)
                        .open(path),
                )
                .await?,
            )),
            IoBackendKind::Threads => {
                let path = path.to_path_buf();
                let file = joined(
                    tokio::task::spawn_blocking(move || {
                        OpenOptions::new()
                            .read(true)
                            .write(true)
                            .custom_flags(flags)
                            .open(path)
                    })
                    .await,
                )?;
                StagedHandle::Threads(Arc::new(file))
            }
        })
    }

    /// Writes the unaligned tail of a staged file (under [`direct::ALIGN`] bytes) through the
    /// page cache, on a second descriptor without O_DIRECT. Inline: a small page-cache copy.
    pub(crate) fn write_tail_at(
        &self,
        file: &StagedFile,
        bytes: Bytes,
        position: u64,
    ) -> io::Result<()> {
        self.fault(FaultPoint::StagedWrite)?;
        OpenOptions::new()
            .write(true)
            .open(&file.path)?
            .write_all_at(&bytes, position)?;
        self.record(|| IoEvent::Write {
            path: file.path.clone(),
            offset: position,
            bytes,
        });
        Ok(())
    }

    /// Reads `[position, position + length)` of a staged file through the page cache
    /// (inline: at most one block, to resume an upload at an unaligned offset).
    pub(crate) fn read_tail(
        &self,
        file: &StagedFile,
        position: u64,
        length: usize,
    ) -> io::Result<Vec<u8>> {
        let mut buffer = vec![0u8; length];
        std::fs::File::open(&file.path)?.read_exact_at(&mut buffer, position)?;
        Ok(buffer)
    }

    /// Writes all of `bytes` at `position`. On error some prefix may have been written.
    /// The write runs as its own task holding `keepalive` until the write completes, even
    /// when this future is dropped: writer.rs passes its session guard, so a session is
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
            Err(error) => {
                // A direct write lands in whole blocks.
                let half = match file.direct {
                    true => bytes.len() / 2 / direct::ALIGN * direct::ALIGN,
                    false => bytes.len() / 2,
                };
                (bytes.slice(..half), Some(error))
            }
        };
        // A reference count, taken only when a test hook is installed.
        let journaled = self.faults.as_ref().map(|_| bytes.clone());
        let written = match &file.handle {
            StagedHandle::Uring(handle) => {
                let file = Rc::clone(handle);
                let task = tokio_uring::spawn(async move {
                    let result = match bytes.is_empty() {
                        true => Ok(()),
                        false => ring_op(file.write_all_at(bytes, position)).await.0,
                    };
                    drop(keepalive);
                    result
                });
                joined(task.await)
            }
            StagedHandle::Threads(handle) => {
                let file = Arc::clone(handle);
                let task = tokio::task::spawn_blocking(move || {
                    let result = file.write_all_at(&bytes, position);
                    drop(keepalive);
                    result
                });
                joined(task.await)
            }
        };
        written?;
        if let Some(bytes) = journaled {
            self.record(|| IoEvent::Write {
                path: file.path.clone(),
                offset: position,
                bytes,
            });
        }
        match fault {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// The same faults and stats on the thread backend: file work that may run on a
    /// runtime without io_uring (imports).
    pub(crate) fn portable(&self) -> Io {
        Io {
            kind: IoBackendKind::Threads,
            faults: self.faults.clone(),
            stats: Arc::clone(&self.stats),
        }
    }

    /// fsync of a staged file opened with std (imports), on the blocking pool.
    pub(crate) async fn sync_std_file(
        &self,
        path: &Path,
        file: Arc<std::fs::File>,
    ) -> io::Result<()> {
        self.fault(FaultPoint::StagedSync)?;
        let sync = async { joined(tokio::task::spawn_blocking(move || file.sync_all()).await) };
        timed(&self.stats.fsync_file, sync).await?;
        self.record(|| IoEvent::SyncFile(path.to_path_buf()));
        Ok(())
    }

    /// fsync of a staged file (data and metadata: its length matters).
    pub(crate) async fn sync_file(&self, file: &StagedFile) -> io::Result<()> {
        self.fault(FaultPoint::StagedSync)?;
        let sync = async {
            match &file.handle {
                StagedHandle::Uring(handle) => ring_op(handle.sync_all()).await,
                StagedHandle::Threads(handle) => {
                    let handle = Arc::clone(handle);
                    joined(tokio::task::spawn_blocking(move || handle.sync_all()).await)
                }
            }
        };
        timed(&self.stats.fsync_file, sync).await?;
        self.record(|| IoEvent::SyncFile(file.path.clone()));
        Ok(())
    }

    /// Shrinks a staged file to `length` (only after a cancelled write left extra bytes).
    pub(crate) async fn truncate(&self, path: &Path, length: u64) -> io::Result<()> {
        let owned = path.to_path_buf();
        let truncate = move || OpenOptions::new().write(true).open(owned)?.set_len(length);
        match self.kind {
            // tokio-uring 0.5 has no ftruncate op; a shrink is a metadata update.
            IoBackendKind::Uring => truncate()?,
            IoBackendKind::Threads => joined(tokio::task::spawn_blocking(truncate).await)?,
        }
        self.record(|| IoEvent::Truncate {
            path: path.to_path_buf(),
            length,
        });
        Ok(())
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
                let file = ring_op(tokio_uring::fs::File::open(path)).await?;
                let mut hasher = algorithm.hasher();
                let mut position = 0u64;
                let mut buffer = Vec::with_capacity(HASH_READ_BYTES);
                while position < length {
                    let want = (length - position).min(HASH_READ_BYTES as u64) as usize;
                    buffer.clear();
                    buffer.reserve(want);
                    let (result, returned) = ring_op(file.read_at(buffer, position)).await;
                    buffer = returned;
                    let read = result?;
                    if read == 0 {
                        return Err(short_file(path, position, length));
                    }
                    let read = read.min(want);
                    hasher.update(&buffer[..read]);
                    position += read as u64;
                }
                ring_op(file.close()).await?;
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
            IoBackendKind::Uring => ring_op(tokio_uring::fs::rename(from, to)).await?,
            IoBackendKind::Threads => {
                let (from, to) = (from.to_path_buf(), to.to_path_buf());
                joined(tokio::task::spawn_blocking(move || std::fs::rename(from, to)).await)?;
            }
        }
        self.record(|| IoEvent::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        });
        Ok(())
    }

    /// unlink(2); a missing file is not an error.
    pub(crate) async fn remove_file(&self, path: &Path) -> io::Result<()> {
        let result = match self.kind {
            IoBackendKind::Uring => ring_op(tokio_uring::fs::remove_file(path)).await,
            IoBackendKind::Threads => {
                let path = path.to_path_buf();
                joined(tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await)
            }
        };
        self.removed(path, result)
    }

    /// unlink(2) inline, for `Drop` (an unlink takes microseconds); a missing file is not an
    /// error.
    pub(crate) fn remove_file_now(&self, path: &Path) -> io::Result<()> {
        self.removed(path, std::fs::remove_file(path))
    }

    fn removed(&self, path: &Path, result: io::Result<()>) -> io::Result<()> {
        match result {
            Ok(()) => {
                self.record(|| IoEvent::RemoveFile(path.to_path_buf()));
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// mkdir(2); an existing directory is not an error.
    pub(crate) async fn create_dir(&self, path: &Path) -> io::Result<()> {
        let result = match self.kind {
            IoBackendKind::Uring => ring_op(tokio_uring::fs::create_dir(path)).await,
            IoBackendKind::Threads => {
                let path = path.to_path_buf();
                joined(tokio::task::spawn_blocking(move || std::fs::create_dir(path)).await)
            }
        };
        match result {
            Ok(()) => {
                self.record(|| IoEvent::CreateDir(path.to_path_buf()));
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// fsync of a directory, making renames into it durable.
    pub(crate) async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.fault(FaultPoint::DirSync)?;
        let sync = async {
            match self.kind {
                IoBackendKind::Uring => {
                    let directory = std::fs::File::open(path)?;
                    let directory = tokio_uring::fs::File::from_std(directory);
                    ring_op(directory.sync_all()).await?;
                    ring_op(directory.close()).await
                }
                IoBackendKind::Threads => {
                    let owned = path.to_path_buf();
                    joined(tokio::task::spawn_blocking(move || sync_dir_blocking(&owned)).await)
                }
            }
        };
        timed(&self.stats.fsync_directory, sync).await?;
        self.record(|| IoEvent::SyncDir(path.to_path_buf()));
        Ok(())
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
