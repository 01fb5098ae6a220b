//! Search data in the index: what zot's search extension (GraphQL), userprefs and the UI read,
//! kept by the engine so that it is committed with the change it describes.
//!
//! Families (DESIGN.md draws them):
//! - `images`: `repo\0manifest` -> [`ImageMeta`], written in the manifest's own batch;
//! - `digests`: `digest\0repo\0manifest` -> what the digest is to the manifest (itself, its
//!   config, a layer, an index child): `ImageListForDigest` and base/derived lookups;
//! - `repo_meta`: `repo` -> [`RepoMeta`], recomputed in every batch that changes the
//!   repository's tags or manifests (refresh.rs);
//! - `user_prefs`: stars and bookmarks per user, and each repository's star count (prefs.rs);
//! - `tagged`: `digest\0repo\0tag\0manifest` for every digest a tagged image holds, so the
//!   digest queries need one prefix scan (tagged.rs).
//!
//! Rules: every writer of manifests or tags calls [`refresh::refresh`] on its batch before
//! writing it, under the repository lock. Reads take no lock. A store written before these
//! families existed is filled by [`Engine::search_backfill`] (backfill.rs), resumable,
//! while the daemon serves.
pub(crate) mod backfill;
mod counts;
mod fsck;
pub mod meta;
mod prefs;
pub(crate) mod refresh;
pub(crate) mod summaries;
mod tagged;

use crate::engine::Engine;
use crate::error::StorageError;
use crate::index::{self, Cf, TagRecord};
use crate::oci::{Digest, RepoName};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use backfill::BackfillProgress;
pub use meta::{BlobMeta, ChildMeta, ConfigMeta, HistoryMeta, ImageMeta, Platform};
pub use prefs::Pref;
pub use refresh::{
    image_updated_ns, is_signature_tag, signed_by_tag, vendor_of, NewestImage, RepoMeta,
};
pub use summaries::RepoListing;
pub use tagged::{Tagged, TaggedFacts};

/// What a digest is to a manifest that contains it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestRole {
    /// The manifest itself.
    Manifest,
    Config,
    Layer,
    /// A child manifest of an index.
    Child,
}

/// One manifest containing a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Containing {
    pub repo: RepoName,
    pub manifest: Digest,
    pub role: DigestRole,
}

/// A tag as search lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagEntry {
    pub tag: String,
    pub digest: Digest,
    /// When the tag was last moved.
    pub tagged_ms: u64,
}

/// How stale [`Engine::downloads_by_repo`] may be.
pub const DOWNLOADS_MAX_AGE: Duration = Duration::from_secs(2);

/// Downloads per repository ([`Engine::downloads_by_repo`]).
pub type Downloads = Arc<HashMap<String, u64>>;

/// The last per-repository download count and when it was made.
#[derive(Default)]
pub(crate) struct DownloadsCache(Mutex<Option<(Instant, Downloads)>>);

/// Manifest GETs of an image: how many, and the last one's time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PullStats {
    pub count: u64,
    pub last_ms: Option<u64>,
}

fn repo_of(text: &str) -> Result<RepoName, StorageError> {
    text.parse()
        .map_err(|_| StorageError::Corrupt(format!("bad repository name in a key: {text:?}")))
}

fn digest_of(text: &str) -> Result<Digest, StorageError> {
    text.parse()
        .map_err(|_| StorageError::Corrupt(format!("bad digest in a key: {text:?}")))
}

impl crate::engine::Inner {
    /// A blob just linked into `repo` by sync may be the config of mirrored manifests stored
    /// before it arrived: their records get the config's facts now, in one batch under the
    /// repository lock. Configs are small; anything larger than the limit is skipped.
    pub(crate) async fn config_arrived(
        self: &std::sync::Arc<Self>,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<(), StorageError> {
        if size > meta::CONFIG_MAX_BYTES {
            return Ok(());
        }
        let prefix = index::prefix(&[&digest.to_string(), repo.as_str()]);
        let mut manifests = Vec::new();
        self.index
            .visit(Cf::Digests, &prefix, None, |key, value| {
                if value == [refresh::CONFIG] {
                    manifests.push(key[prefix.len()..].to_vec());
                }
                Ok(true)
            })
            .await?;
        if manifests.is_empty() {
            return Ok(());
        }
        let bytes = self.read_config(digest, size).await;
        let Some(bytes) = bytes else {
            return Ok(());
        };
        let guard = self.lock_repo(repo).await?;
        let mut batch = index::Batch::default();
        for manifest in manifests {
            let key = index::key(&[repo.as_str(), &String::from_utf8_lossy(&manifest)]);
            let Some(value) = self.index.get(Cf::Images, &key).await? else {
                continue;
            };
            let mut meta = ImageMeta::decode(&value)?;
            if meta.config_unread() {
                meta.read_config(&bytes);
                batch.put(Cf::Images, key, meta.encode());
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        refresh::refresh(&self.index, repo.as_str(), &mut batch, refresh::Mode::Full).await?;
        self.write_held(batch, &guard).await
    }
}

impl Engine {
    /// The search record of manifest `digest` in `repo`.
    pub async fn image_meta(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ImageMeta>, StorageError> {
        let key = index::key(&[repo.as_str(), &digest.to_string()]);
        match self.inner.index.get(Cf::Images, &key).await? {
            Some(value) => Ok(Some(ImageMeta::decode(&value)?)),
            None => Ok(None),
        }
    }

    /// The summary of `repo` (none when it has no image tag).
    pub async fn repo_meta(&self, repo: &RepoName) -> Result<Option<RepoMeta>, StorageError> {
        match self
            .inner
            .index
            .get(Cf::RepoMeta, repo.as_str().as_bytes())
            .await?
        {
            Some(value) => Ok(Some(RepoMeta::decode(&value)?)),
            None => Ok(None),
        }
    }

    /// Every repository that has an image tag with its summary, in name order (the in-memory
    /// copy of the summaries, shared with other readers: no index read, no copy).
    pub async fn repo_listing(&self) -> Result<RepoListing, StorageError> {
        self.inner.index.repo_listing().await
    }

    /// Calls `visit` with every repository that has an image tag, in name order, until it
    /// returns false (from the in-memory copy of the summaries: no index read).
    pub async fn visit_repo_metas(
        &self,
        mut visit: impl FnMut(RepoName, std::sync::Arc<RepoMeta>) -> bool,
    ) -> Result<(), StorageError> {
        for (name, meta) in self.repo_listing().await?.iter() {
            if !visit(name.clone(), meta.clone()) {
                break;
            }
        }
        Ok(())
    }

    /// Every tag of `repo` (signature tags included), in tag order.
    pub async fn tag_entries(&self, repo: &RepoName) -> Result<Vec<TagEntry>, StorageError> {
        let prefix = index::prefix(&[repo.as_str()]);
        let mut tags = Vec::new();
        self.inner
            .index
            .visit(Cf::Tags, &prefix, None, |key, value| {
                let record = TagRecord::decode(value)?;
                tags.push(TagEntry {
                    tag: String::from_utf8_lossy(&key[prefix.len()..]).into_owned(),
                    digest: record.digest,
                    tagged_ms: record.pushed_ms,
                });
                Ok(true)
            })
            .await?;
        Ok(tags)
    }

    /// Every manifest, in every repository, that is or contains `digest`.
    pub async fn containing(&self, digest: &Digest) -> Result<Vec<Containing>, StorageError> {
        let prefix = index::prefix(&[&digest.to_string()]);
        let mut found = Vec::new();
        self.inner
            .index
            .visit(Cf::Digests, &prefix, None, |key, value| {
                let parts = index::split_key(key)?;
                let [_, repo, manifest] = parts[..] else {
                    return Err(StorageError::Corrupt("bad digests key".into()));
                };
                let role = match value {
                    [refresh::SELF] => DigestRole::Manifest,
                    [refresh::CONFIG] => DigestRole::Config,
                    [refresh::LAYER] => DigestRole::Layer,
                    [refresh::CHILD] => DigestRole::Child,
                    _ => return Err(StorageError::Corrupt("bad digests value".into())),
                };
                found.push(Containing {
                    repo: repo_of(repo)?,
                    manifest: digest_of(manifest)?,
                    role,
                });
                Ok(true)
            })
            .await?;
        Ok(found)
    }

    /// Manifest GETs of `digest` in `repo`, the recorded ones and those not yet flushed.
    pub async fn pull_stats(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<PullStats, StorageError> {
        let key = index::key(&[repo.as_str(), &digest.to_string()]);
        let (stored_last, stored_count) = match self.inner.index.get(Cf::Pulls, &key).await? {
            Some(value) => crate::gc::decode_pulls(&value)?,
            None => (0, 0),
        };
        let (pending_last, pending_count) = self.inner.gc.pulls.pending(&key);
        let last = stored_last.max(pending_last);
        Ok(PullStats {
            count: stored_count + pending_count,
            last_ms: (last > 0).then_some(last),
        })
    }

    /// `DownloadCount` of every repository that has one (a repository missing here has 0),
    /// as counted at most [`DOWNLOADS_MAX_AGE`] ago: sorting by downloads orders by this,
    /// while each repository's own `DownloadCount` is read live.
    ///
    /// Counting is one pass over the pull records and, when anything was pulled, one over
    /// the tags: about 100 ms for 10,000 pulled repositories of 10 tags, too much for every
    /// request of a busy home page, so requests share one count for a moment. Two requests
    /// that find it stale may both count; neither waits for the other.
    pub async fn downloads_by_repo(&self) -> Result<Downloads, StorageError> {
        let cache = &self.inner.downloads;
        if let Some((at, counts)) = cache.0.lock().expect("never poisoned").as_ref() {
            if at.elapsed() < DOWNLOADS_MAX_AGE {
                return Ok(counts.clone());
            }
        }
        let counts = Arc::new(self.count_downloads_by_repo().await?);
        *cache.0.lock().expect("never poisoned") = Some((Instant::now(), counts.clone()));
        Ok(counts)
    }

    /// [`Engine::downloads_by_repo`] counted now: the manifest GETs of the images each
    /// repository's tags (signature tags excluded) name, pulls not yet flushed included.
    async fn count_downloads_by_repo(&self) -> Result<HashMap<String, u64>, StorageError> {
        let mut pulled: HashMap<Vec<u8>, u64> = HashMap::new();
        self.inner
            .index
            .visit(Cf::Pulls, b"", None, |key, value| {
                *pulled.entry(key.to_vec()).or_default() += crate::gc::decode_pulls(value)?.1;
                Ok(true)
            })
            .await?;
        self.inner
            .gc
            .pulls
            .visit_pending(|key, (_, count)| *pulled.entry(key.to_vec()).or_default() += count);
        let mut totals: HashMap<String, u64> = HashMap::new();
        if pulled.is_empty() {
            return Ok(totals);
        }
        let repos: std::collections::HashSet<&[u8]> = pulled
            .keys()
            .filter_map(|key| key.iter().position(|&b| b == 0).map(|nul| &key[..nul]))
            .collect();
        let mut pull_key = Vec::with_capacity(256);
        self.inner
            .index
            .visit(Cf::Tags, b"", None, |key, value| {
                let Some(nul) = key.iter().position(|&b| b == 0) else {
                    return Ok(true);
                };
                let (repo, tag) = (&key[..nul], &key[nul + 1..]);
                if !repos.contains(repo) || is_signature_tag(&String::from_utf8_lossy(tag)) {
                    return Ok(true);
                }
                let record = TagRecord::decode(value)?;
                pull_key.clear();
                pull_key.extend_from_slice(&index::key(&[
                    &String::from_utf8_lossy(repo),
                    &record.digest.to_string(),
                ]));
                if let Some(count) = pulled.get(&pull_key) {
                    *totals
                        .entry(String::from_utf8_lossy(repo).into_owned())
                        .or_default() += count;
                }
                Ok(true)
            })
            .await?;
        Ok(totals)
    }
}
