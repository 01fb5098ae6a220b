//! Test hooks of the engine's file I/O (io.rs).
//!
//! `FaultInjector` makes chosen calls fail with ENOSPC (a write fails after writing half its
//! buffer, like a disk filling up) so tests can check what each failure leaves behind.
//!
//! The same injector can also keep a journal of every successful mutation and fsync of
//! berth's own files (`IoEvent`: create, write, truncate, rename, remove, mkdir, fsync of a
//! file or a directory), in the order they completed. The power-loss model
//! (tests/engine/power_loss.rs) replays it to compute what a power cut would leave: file
//! contents as of their last fsync, directory entries as of their directory's last fsync.
//! Why a runtime hook on the existing injector rather than `cfg`: `cfg(test)` does not reach
//! the integration tests (they link the library built without it), and a Cargo feature
//! would need a self dev-dependency, a second build configuration to lint, and break the
//! rule that features exist only to drop heavy dependencies. In production `faults` is
//! `None`: each call pays the one `Option` test it already pays for fault points (next to a
//! syscall), no event is built (events are built in a closure) and no lock is taken. Staged
//! files carry their path so that writes and fsyncs can be journaled by name. Not journaled:
//! what `Engine::open` does before the journal starts (creating the top directories,
//! removing stale staged files), RocksDB's own files (RocksDB fsyncs its WAL itself), and a
//! write whose future was dropped (it lands unrecorded; the scripted workload cancels none).
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

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

/// A completed mutation or fsync of one of berth's files, as journaled for the power-loss
/// model. Paths are absolute (under the engine's root).
#[derive(Clone, Debug)]
pub enum IoEvent {
    /// A new empty file.
    CreateFile(PathBuf),
    /// `bytes` landed at `offset`.
    Write {
        path: PathBuf,
        offset: u64,
        bytes: Bytes,
    },
    /// The file was cut to `length` bytes.
    Truncate { path: PathBuf, length: u64 },
    /// fsync of a file: its data and length are durable.
    SyncFile(PathBuf),
    /// rename(2), replacing `to` if it exists.
    Rename { from: PathBuf, to: PathBuf },
    /// unlink(2) of an existing file.
    RemoveFile(PathBuf),
    /// mkdir(2) of a new directory.
    CreateDir(PathBuf),
    /// fsync of a directory: its entries are durable.
    SyncDir(PathBuf),
}

/// Test hook: fail the n-th call (0-based, counted from arming) at a fault point, and
/// optionally journal every file mutation and fsync (`record_io`).
#[derive(Default)]
pub struct FaultInjector {
    armed: Mutex<HashMap<FaultPoint, (u64, bool)>>,
    /// Some while journaling.
    journal: Mutex<Option<Vec<IoEvent>>>,
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

    /// Starts journaling every file mutation and fsync (an empty journal).
    pub fn record_io(&self) {
        *self.journal_lock() = Some(Vec::new());
    }

    /// The events journaled since the last call (or since `record_io`); keeps journaling.
    pub fn take_io_journal(&self) -> Vec<IoEvent> {
        self.journal_lock()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub(crate) fn journal_lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<IoEvent>>> {
        self.journal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
