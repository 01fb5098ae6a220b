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
}

impl StripedLocks {
    pub(crate) fn new() -> StripedLocks {
        StripedLocks {
            stripes: (0..STRIPES).map(|_| RwLock::new(())).collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_repo_same_stripe_and_spread() {
        let locks = StripedLocks::new();
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
