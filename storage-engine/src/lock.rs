//! Striped async locks: per repository, and per digest for the first commit of a blob.
//!
//! Rules: there is no store-wide lock. A key (repository name or digest) hashes to one of
//! `STRIPES` tokio mutexes; two keys share a stripe only by hash collision (which costs some
//! concurrency, never correctness). The repository lock serialises the read-check-write
//! sequences that must not interleave inside one repository (manifest PUT, manifest delete,
//! blob unlink). Blob upload commits do not take it, so concurrent finishes reach RocksDB's
//! group commit together; only the commit that creates a blob record takes that digest's
//! stripe, so that the store's blob count counts it once. tokio's mutex is runtime-agnostic, so shards on different threads (each with its
//! own runtime) share it safely.
use std::hash::{DefaultHasher, Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

/// Number of stripes: large enough that collisions between busy repositories are rare.
pub(crate) const STRIPES: usize = 1024;

pub(crate) struct StripedLocks {
    stripes: Box<[Mutex<()>]>,
}

impl StripedLocks {
    pub(crate) fn new() -> StripedLocks {
        StripedLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    fn stripe(&self, key: &str) -> usize {
        // DefaultHasher::new() uses fixed keys: the same key always maps to the same stripe.
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % self.stripes.len() as u64) as usize
    }

    /// Waits for the key's stripe. Cancel-safe: dropping the future gives up the wait.
    pub(crate) async fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        self.stripes[self.stripe(key)].lock().await
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
