//! Search data for a store written before search existed: at open, a store without the
//! `search.backfill.2` marker that already holds repositories is marked pending; the daemon
//! then calls [`Engine::search_backfill`] on a thread of its own and serves meanwhile.
//!
//! Rules: one repository per batch, under the repository lock, written together with the
//! marker `after:<repo>`; a crash or a stop resumes after the last repository written. A new
//! (empty) store is marked `done` at open and never backfills. The pass reads each image
//! config once, from the blob file, up to [`super::meta::CONFIG_MAX_BYTES`].
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::meta::{ImageMeta, CONFIG_MAX_BYTES};
use super::refresh;
use crate::engine::Engine;
use crate::error::StorageError;
use crate::index::{self, Batch, Cf, Index, ManifestRecord};
use crate::oci::{parse_manifest, RepoName};

/// The marker's name carries the version of the search records: a store filled by an
/// earlier version (without the `tagged` family: `search.backfill`) is filled again.
const MARKER: &[u8] = b"search.backfill.2";
const DONE: &[u8] = b"done";

/// How far a backfill has come.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackfillProgress {
    pub repos_done: u64,
    pub repos_total: u64,
    pub images: u64,
}

/// At open: marks a store with no repositories as done (nothing to fill). Blocking.
pub(crate) async fn init(index: &Index) -> Result<(), StorageError> {
    if index.get(Cf::Meta, MARKER).await?.is_some() {
        return Ok(());
    }
    if !index
        .any_with_prefix(Cf::Repos, b"", |_, _| Ok(true))
        .await?
    {
        let mut batch = Batch::default();
        batch.put(Cf::Meta, MARKER.to_vec(), DONE.to_vec());
        index.write(batch, true).await?;
    }
    Ok(())
}

/// The bytes of a config blob file, if present and at most the limit. Blocking.
pub(crate) fn read_config(path: &Path, size: u64) -> Option<Vec<u8>> {
    if size > CONFIG_MAX_BYTES {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    (bytes.len() as u64 == size).then_some(bytes)
}

impl Engine {
    /// True once every manifest has its search records (always, for a store created by a
    /// berth with search).
    pub async fn search_ready(&self) -> Result<bool, StorageError> {
        Ok(self.inner.index.get(Cf::Meta, MARKER).await?.as_deref() == Some(DONE))
    }

    /// Fills the search records of every repository not yet filled, reporting after each.
    /// Returns true when the store is complete, false when `stop` ended it early. Long and
    /// blocking (config reads, synced writes): await it on a thread of its own (its own
    /// runtime), never on a shard.
    pub async fn search_backfill(
        &self,
        stop: &AtomicBool,
        mut progress: impl FnMut(BackfillProgress),
    ) -> Result<bool, StorageError> {
        self.inner.writable()?;
        let index = &self.inner.index;
        let after = match index.get(Cf::Meta, MARKER).await? {
            Some(value) if value == DONE => return Ok(true),
            Some(value) => value.strip_prefix(b"after:").map(<[u8]>::to_vec),
            None => None,
        };
        let mut repos = Vec::new();
        index
            .visit(Cf::Repos, b"", None, |key, _| {
                repos.push(String::from_utf8_lossy(key).into_owned());
                Ok(true)
            })
            .await?;
        let mut state = BackfillProgress {
            repos_total: repos.len() as u64,
            ..BackfillProgress::default()
        };
        for repo in &repos {
            if stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            state.repos_done += 1;
            if after
                .as_deref()
                .is_some_and(|after| repo.as_bytes() <= after)
            {
                continue;
            }
            let name: RepoName = repo
                .parse()
                .map_err(|_| StorageError::Corrupt(format!("bad repository record {repo:?}")))?;
            state.images += self.backfill_repo(&name).await?;
            progress(state);
        }
        let mut batch = Batch::default();
        batch.put(Cf::Meta, MARKER.to_vec(), DONE.to_vec());
        batch.delete(Cf::Meta, b"search.backfill".to_vec());
        index.write(batch, self.inner.commit).await?;
        Ok(true)
    }

    /// One repository: an `images` record for each manifest without one, then the refresh;
    /// returns the images added.
    async fn backfill_repo(&self, repo: &RepoName) -> Result<u64, StorageError> {
        let inner = &self.inner;
        let name = repo.as_str();
        let guard = inner.lock_repo(repo).await?;
        let prefix = index::prefix(&[name]);
        let mut batch = Batch::default();
        let mut added = 0;
        let mut pages = index::Pages::new(Cf::Manifests, &prefix);
        while let Some(page) = pages.next(&inner.index).await? {
            for (key, value) in &page {
                if inner.index.contains(Cf::Images, key).await? {
                    continue;
                }
                let record = ManifestRecord::decode(value)?;
                // A stored manifest that no longer parses is fsck's finding, not search's.
                let Ok(parsed) = parse_manifest(&record.bytes, Some(&record.media_type)) else {
                    continue;
                };
                let config = match &parsed.config {
                    // Files are read inline, as before blobs could live in a bucket.
                    Some(config) => match inner.blob_file(&config.digest) {
                        Some(path) => read_config(&path, config.size),
                        None => inner.read_config(&config.digest, config.size).await,
                    },
                    None => None,
                };
                let meta = ImageMeta::new(
                    &parsed,
                    record.bytes.len() as u64,
                    config.as_deref(),
                    record.pushed_ms,
                    None,
                );
                batch.put(Cf::Images, key.to_vec(), meta.encode());
                added += 1;
            }
        }
        refresh::refresh(&inner.index, name, &mut batch, refresh::Mode::Full).await?;
        let mut marker = b"after:".to_vec();
        marker.extend_from_slice(name.as_bytes());
        batch.put(Cf::Meta, MARKER.to_vec(), marker);
        inner.write_held(batch, &guard).await?;
        Ok(added)
    }
}
