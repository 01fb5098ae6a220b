//! Striped async read-write locks, used three ways (engine.rs `Inner`): per repository for
//! manifest and tag commits, per repository for links, and per digest for blob records.
//!
//! Rules: there is no store-wide lock. A key (repository name or digest) hashes to one of
//! `STRIPES` tokio read-write locks; two keys share a stripe only by hash collision (which
//! costs some concurrency, never correctness).
//! * Repository lock (exclusive only): serialises the read-check-write sequences that must
//!   not interleave inside one repository (manifest PUT, manifest delete, blob unlink, a GC
//!   pass over the repository).
//! * Link lock: blob finishes and mounts hold it shared while they link a blob into the
//!   repository, so they still meet in RocksDB's group commit; GC holds it exclusively while
//!   it removes links or the repository record.
//! * Digest lock: held shared by a finish or mount from before the file is installed until
//!   its link is written; exclusively by the commit that creates the blob record (the store
//!   counts it once) and by GC removing a record and its file.
//! * Order, where two are held: repository, then link; digest, then link. GC's sweep holds
//!   digest locks only (several, taken in stripe order).
//!
//! tokio's locks are runtime-agnostic, so shards on different threads (each with its own
//! runtime) share them safely, and the maintenance passes (GC, search backfill), which run
//! on their own threads' runtimes, await them like any request.
use std::hash::{DefaultHasher, Hash, Hasher};

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Number of stripes: large enough that collisions between busy repositories are rare.
pub(crate) const STRIPES: usize = 1024;

pub(crate) struct StripedLocks {
    stripes: Box<[RwLock<()>]>,
    /// The namespace of these locks' keys in the PostgreSQL index (index_pg.rs `lock_key`).
    kind: u8,
}

impl StripedLocks {
    pub(crate) fn new(kind: u8) -> StripedLocks {
        StripedLocks {
            stripes: (0..STRIPES).map(|_| RwLock::new(())).collect(),
            kind,
        }
    }

    pub(crate) fn stripe(&self, key: &str) -> usize {
        // DefaultHasher::new() uses fixed keys: the same key always maps to the same stripe.
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % self.stripes.len() as u64) as usize
    }

    /// Waits for the key's stripe, exclusively. Cancel-safe: dropping the future gives up
    /// the wait.
    pub(crate) async fn lock(&self, key: &str) -> RwLockWriteGuard<'_, ()> {
        self.stripes[self.stripe(key)].write().await
    }

    /// Waits for the key's stripe, shared. Cancel-safe.
    pub(crate) async fn read(&self, key: &str) -> RwLockReadGuard<'_, ()> {
        self.stripes[self.stripe(key)].read().await
    }

    /// Exclusive guards on the stripes of all `keys`, taken in stripe order (so two callers
    /// can never deadlock), each stripe once. Cancel-safe: dropping the future releases the
    /// guards taken so far.
    pub(crate) async fn lock_all<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a str>,
    ) -> Vec<RwLockWriteGuard<'_, ()>> {
        let mut stripes: Vec<usize> = keys.into_iter().map(|key| self.stripe(key)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.stripes[stripe].write().await);
        }
        guards
    }
}

/// One guard of a [`Held`].
enum LocalGuard<'a> {
    Shared(#[allow(dead_code)] RwLockReadGuard<'a, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'a, ()>),
}

/// The locks one operation holds: its node's stripes and, on the PostgreSQL index, the same
/// locks in the database, all on one connection whose writes [`crate::index::Index::write_held`]
/// sends (SHARED.md D1). Each lock is taken on this node first, then in the database, so two
/// operations on one node queue on the stripe instead of each holding a connection. Dropping
/// it releases everything. Cancel-safe: a dropped `take` releases what it took.
#[derive(Default)]
pub(crate) struct Held<'a> {
    // Dropped first: the database's locks go before this node's.
    remote: Option<crate::index::pg::RemoteLocks>,
    local: Vec<LocalGuard<'a>>,
}

impl<'a> Held<'a> {
    /// The database connection holding the locks, if any.
    pub(crate) fn remote(&self) -> Option<&crate::index::pg::RemoteLocks> {
        self.remote.as_ref()
    }

    /// Takes `key`'s lock of `locks`, shared or exclusive, in addition to those held.
    pub(crate) async fn take(
        &mut self,
        index: &crate::index::Index,
        locks: &'a StripedLocks,
        key: &str,
        shared: bool,
    ) -> Result<(), crate::error::StorageError> {
        self.local.push(match shared {
            true => LocalGuard::Shared(locks.read(key).await),
            false => LocalGuard::Exclusive(locks.lock(key).await),
        });
        if let Some(pg) = index.postgres() {
            let mut keys = [(crate::index::pg::lock_key(locks.kind, key), shared)];
            pg.lock(&mut self.remote, &mut keys).await?;
        }
        Ok(())
    }

    /// Takes the exclusive locks of all `keys` (in an order that cannot deadlock).
    pub(crate) async fn take_all(
        &mut self,
        index: &crate::index::Index,
        locks: &'a StripedLocks,
        keys: &[&str],
    ) -> Result<(), crate::error::StorageError> {
        let guards = locks.lock_all(keys.iter().copied()).await;
        self.local
            .extend(guards.into_iter().map(LocalGuard::Exclusive));
        if let Some(pg) = index.postgres() {
            let mut remote_keys: Vec<(i64, bool)> = keys
                .iter()
                .map(|key| (crate::index::pg::lock_key(locks.kind, key), false))
                .collect();
            pg.lock(&mut self.remote, &mut remote_keys).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_repo_same_stripe_and_spread() {
        let locks = StripedLocks::new(b'R');
        assert_eq!(
            locks.stripe("library/alpine"),
            locks.stripe("library/alpine")
        );
        let used: std::collections::HashSet<usize> = (0..200)
            .map(|i| locks.stripe(&format!("repo{i}")))
            .collect();
        assert!(used.len() > 150, "stripes poorly spread: {}", used.len());
    }
}
