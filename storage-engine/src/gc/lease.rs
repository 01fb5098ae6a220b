//! The registry's GC lease (SHARED.md D5): on a shared index one node at a time runs a pass.
//!
//! Rules:
//! * The lease is one record, `meta/gc.lease` = holder node id (u64 BE), expiry (ms, u64 BE),
//!   read and written only under the lock `gc.lease` of `Inner::named` (exclusive; a database
//!   lock on PostgreSQL), so two nodes can never both take it.
//! * A pass takes it when there is none, when it is this node's (a pass of this node that
//!   was stopped: `GcState::running` lets only one pass per node run), when it expired, or
//!   when its holder's node is gone (its node lock is free, index_pg.rs). Otherwise the pass
//!   does nothing and says who holds it (`GcRun::Skipped`).
//! * It is held for the pass only: taken at the start, renewed between steps (repositories,
//!   sweep chunks) once a third of its duration has passed, deleted at the end. Each node's
//!   passes visit the repositories that node changed (usage.rs `gc_dirty`), so every node
//!   still runs its own passes, one node at a time.
//! * A renewal that finds another holder (ours expired and was taken) stops the pass at that
//!   step (`GcRun::Stopped`): what it already did stays, what it had not visited is kept for
//!   this node's next pass. Collecting is safe on any node at any time (the database's
//!   locks, gc/); the lease only avoids passes that repeat each other's work.
//! * On RocksDB (one node: the index is the process's own) there is no record at all.
use crate::engine::Inner;
use crate::error::StorageError;
use crate::index::{self, Batch, Cf};
use crate::lock::Held;

/// The lease's key in `meta`.
const KEY: &[u8] = b"gc.lease";

/// How long a lease lasts unless renewed ([`crate::GcOptions::lease`]'s default): far longer
/// than one step of a pass (a repository, a chunk of 256 blobs) takes.
pub(crate) const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// Whether a pass ran, as far as the registry's GC lease is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GcRun {
    /// The pass ran to its end.
    #[default]
    Ran,
    /// Another node's pass holds the lease: this pass did nothing.
    Skipped {
        /// The holder's node id.
        holder: u64,
        /// When its lease ends unless renewed (ms since the Unix epoch).
        expires_ms: u64,
    },
    /// The lease was lost during the pass (not renewed in time, then taken by another node):
    /// the pass stopped at its next step. Its actions up to there were done.
    Stopped {
        /// The node that holds the lease now.
        holder: u64,
    },
}

/// A lease record: (holder, expiry ms).
fn decode(value: &[u8]) -> Result<(u64, u64), StorageError> {
    match (value.len(), value.get(..8), value.get(8..)) {
        (16, Some(holder), Some(expires)) => Ok((
            u64::from_be_bytes(holder.try_into().expect("8 bytes")),
            u64::from_be_bytes(expires.try_into().expect("8 bytes")),
        )),
        _ => Err(StorageError::Corrupt("bad gc lease record".into())),
    }
}

fn encode(holder: u64, expires_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&holder.to_be_bytes());
    out.extend_from_slice(&expires_ms.to_be_bytes());
    out
}

/// The lease as one pass holds it.
pub(crate) struct PassLease {
    duration_ms: u64,
    /// When this pass last wrote the lease (ms); renewed once a third of it has passed.
    renewed_ms: u64,
    /// False on RocksDB: nothing to take.
    shared: bool,
}

impl PassLease {
    /// Takes the lease for a pass, or says who holds it.
    pub(crate) async fn take(
        inner: &Inner,
        duration: std::time::Duration,
    ) -> Result<Result<PassLease, GcRun>, StorageError> {
        let mut lease = PassLease {
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            renewed_ms: 0,
            shared: inner.index.postgres().is_some(),
        };
        if !lease.shared {
            return Ok(Ok(lease));
        }
        match lease.write(inner).await? {
            None => Ok(Ok(lease)),
            Some((holder, expires_ms)) => Ok(Err(GcRun::Skipped { holder, expires_ms })),
        }
    }

    /// Renews the lease when a third of it has passed. `Some(holder)` when another node took
    /// it: the pass stops.
    pub(crate) async fn keep(&mut self, inner: &Inner) -> Result<Option<u64>, StorageError> {
        if !self.shared || index::now_ms() < self.renewed_ms.saturating_add(self.duration_ms / 3) {
            return Ok(None);
        }
        Ok(self.write(inner).await?.map(|(holder, _)| holder))
    }

    /// Gives the lease up at the end of a pass (if it is still this node's).
    pub(crate) async fn release(self, inner: &Inner) -> Result<(), StorageError> {
        if !self.shared {
            return Ok(());
        }
        let held = lock(inner).await?;
        if let Some(value) = inner.index.get(Cf::Meta, KEY).await? {
            if decode(&value)?.0 == inner.node_id() {
                let mut batch = Batch::default();
                batch.delete(Cf::Meta, KEY.to_vec());
                inner.index.write_held(batch, true, &held).await?;
            }
        }
        Ok(())
    }

    /// Writes the lease as this node's if it is free (module rules); else returns the holder
    /// and its expiry.
    async fn write(&mut self, inner: &Inner) -> Result<Option<(u64, u64)>, StorageError> {
        let me = inner.node_id();
        let held = lock(inner).await?;
        let now = index::now_ms();
        if let Some(value) = inner.index.get(Cf::Meta, KEY).await? {
            let (holder, expires_ms) = decode(&value)?;
            let free = holder == me || expires_ms <= now || !holder_alive(inner, holder).await?;
            if !free {
                return Ok(Some((holder, expires_ms)));
            }
        }
        let mut batch = Batch::default();
        batch.put(
            Cf::Meta,
            KEY.to_vec(),
            encode(me, now.saturating_add(self.duration_ms)),
        );
        inner.index.write_held(batch, true, &held).await?;
        self.renewed_ms = now;
        Ok(None)
    }
}

async fn lock(inner: &Inner) -> Result<Held<'_>, StorageError> {
    let mut held = Held::default();
    held.take(&inner.index, &inner.named, "gc.lease", false)
        .await?;
    Ok(held)
}

async fn holder_alive(inner: &Inner, holder: u64) -> Result<bool, StorageError> {
    match inner.index.postgres() {
        Some(pg) => pg.node_alive(holder).await,
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_reject_garbage() {
        assert_eq!(decode(&encode(7, 3)).unwrap(), (7, 3));
        assert!(decode(&[0; 15]).is_err());
    }
}
