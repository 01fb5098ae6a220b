//! Striped per-repository async locks.
//!
//! Rules: there is no store-wide lock. A repository name hashes to one of `STRIPES` tokio
//! mutexes; two repositories share a stripe only by hash collision (which costs some
//! concurrency, never correctness). The lock serialises the read-check-write sequences that
//! must not interleave inside one repository (manifest PUT, manifest delete, blob unlink).
//! Blob upload commits do not take it, so concurrent finishes reach RocksDB's group commit
//! together. tokio's mutex is runtime-agnostic, so shards on different threads (each with its
//! own runtime) share it safely.
use std::hash::{DefaultHasher, Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

use crate::oci::RepoName;

/// Number of stripes: large enough that collisions between busy repositories are rare.
pub(crate) const STRIPES: usize = 1024;

pub(crate) struct RepoLocks {
    stripes: Box<[Mutex<()>]>,
}

impl RepoLocks {
    pub(crate) fn new() -> RepoLocks {
        RepoLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    fn stripe(&self, repo: &RepoName) -> usize {
        // DefaultHasher::new() uses fixed keys: the same repo always maps to the same stripe.
        let mut hasher = DefaultHasher::new();
        repo.as_str().hash(&mut hasher);
        (hasher.finish() % self.stripes.len() as u64) as usize
    }

    /// Waits for the repository's stripe. Cancel-safe: dropping the future gives up the wait.
    pub(crate) async fn lock(&self, repo: &RepoName) -> MutexGuard<'_, ()> {
        self.stripes[self.stripe(repo)].lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_repo_same_stripe_and_spread() {
        let locks = RepoLocks::new();
        let a: RepoName = "library/alpine".parse().expect("valid name");
        assert_eq!(locks.stripe(&a), locks.stripe(&a));
        let used: std::collections::HashSet<usize> = (0..200)
            .map(|i| locks.stripe(&format!("repo{i}").parse().expect("valid name")))
            .collect();
        assert!(used.len() > 150, "stripes poorly spread: {}", used.len());
    }
}
