//! Pull times for retention (`pulledWithin`, `mostRecentlyPulledCount`) without a write per
//! pull: a manifest GET records its time in memory; GC writes the times into the `pulls`
//! family at the start of each pass (and the daemon at shutdown), so a pass always decides on
//! every pull made before it.
//!
//! Rules: `pulls` maps `repo\0digest` to `last_ms u64, count u64`. The in-memory table is
//! striped like the session table and bounded by the number of distinct manifests pulled
//! between two flushes. A crash loses the pulls since the last flush: retention may then see
//! an older last-pull time for them (never a newer one).
//! * Several nodes on one index each buffer their own pulls; a flush adds them to the stored
//!   records (later time, summed counts) under the lock `gc.pulls` of `Inner::named` (a
//!   database lock on PostgreSQL), so two nodes flushing at once both count. A pass decides
//!   on the pulls every node flushed before it: its own, and another node's up to that
//!   node's last pass (a pass skipped for the lease flushes too) or shutdown.
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use crate::engine::Inner;
use crate::error::StorageError;
use crate::index::{self, Batch, Cf, Index};
use crate::oci::Digest;

const STRIPES: usize = 64;

/// `repo\0digest` (the `pulls` key itself) -> (last pull ms, pulls since the last flush).
type Table = HashMap<Vec<u8>, (u64, u64)>;

pub(crate) struct Pulls {
    stripes: Box<[Mutex<Table>]>,
}

impl Default for Pulls {
    fn default() -> Pulls {
        Pulls {
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
        }
    }
}

/// A `pulls` value.
pub(crate) fn decode(value: &[u8]) -> Result<(u64, u64), StorageError> {
    match (value.len(), value.get(..8), value.get(8..)) {
        (16, Some(last), Some(count)) => Ok((
            u64::from_be_bytes(last.try_into().expect("8 bytes")),
            u64::from_be_bytes(count.try_into().expect("8 bytes")),
        )),
        _ => Err(StorageError::Corrupt("bad pull record".into())),
    }
}

fn stripe_of(key: &[u8]) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % STRIPES as u64) as usize
}

fn encode(last_ms: u64, count: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&last_ms.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out
}

impl Pulls {
    /// Called on every manifest GET: one key allocation and one striped lock.
    pub(crate) fn record(&self, repo: &str, digest: &Digest, now_ms: u64) {
        let (algorithm, hex) = (digest.algorithm().name(), digest.hex());
        let mut key = Vec::with_capacity(repo.len() + algorithm.len() + hex.len() + 2);
        key.extend_from_slice(repo.as_bytes());
        key.push(0);
        key.extend_from_slice(algorithm.as_bytes());
        key.push(b':');
        key.extend_from_slice(hex.as_bytes());
        let mut table = self.stripes[stripe_of(&key)]
            .lock()
            .expect("pull table lock is never poisoned");
        let entry = table.entry(key).or_insert((0, 0));
        entry.0 = entry.0.max(now_ms);
        entry.1 += 1;
    }

    /// Pulls of `key` (`repo\0digest`) recorded since the last flush: (last ms, count).
    pub(crate) fn pending(&self, key: &[u8]) -> (u64, u64) {
        let table = self.stripes[stripe_of(key)]
            .lock()
            .expect("pull table lock is never poisoned");
        table.get(key).copied().unwrap_or((0, 0))
    }

    /// Calls `visit` with every key and (last ms, count) recorded since the last flush.
    pub(crate) fn visit_pending(&self, mut visit: impl FnMut(&[u8], (u64, u64))) {
        for stripe in self.stripes.iter() {
            let table = stripe.lock().expect("pull table lock is never poisoned");
            for (key, pulls) in table.iter() {
                visit(key, *pulls);
            }
        }
    }

    /// Adds the pulls recorded so far to the index's records (one unsynced batch: pull times
    /// are advisory), under the flush lock (module rules). Blocking.
    pub(crate) async fn flush(&self, inner: &Inner) -> Result<(), StorageError> {
        let index = &inner.index;
        let mut held = crate::lock::Held::default();
        held.take(index, &inner.named, "gc.pulls", false).await?;
        let mut taken = Vec::new();
        for stripe in self.stripes.iter() {
            let mut table = stripe.lock().expect("pull table lock is never poisoned");
            taken.extend(table.drain());
        }
        if taken.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::default();
        for (key, (last_ms, count)) in taken {
            // Only manifests still stored get a record (a pull may race a delete).
            if !index.contains(Cf::Manifests, &key).await? {
                continue;
            }
            let (stored_last, stored_count) = match index.get(Cf::Pulls, &key).await? {
                Some(value) => decode(&value)?,
                None => (0, 0),
            };
            batch.put(
                Cf::Pulls,
                key,
                encode(stored_last.max(last_ms), stored_count + count),
            );
        }
        index.write_held(batch, false, &held).await
    }

    /// Last pull of `digest` in `repo` as recorded in the index (flush first).
    pub(crate) async fn last(
        index: &Index,
        repo: &str,
        digest: &str,
    ) -> Result<Option<u64>, StorageError> {
        match index.get(Cf::Pulls, &index::key(&[repo, digest])).await? {
            Some(value) => Ok(Some(decode(&value)?.0)),
            None => Ok(None),
        }
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
