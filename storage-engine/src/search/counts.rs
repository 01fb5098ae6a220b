//! A repository's summary kept up to date from a batch's own tag changes, so a push costs its
//! own image, not the repository's tags.
//!
//! Rules: `repo_refs` counts, per repository, what its tagged images hold: `repo\0d\0digest`
//! -> size u64, count u64 (each tagged image counts each distinct digest it holds once);
//! `repo\0p\0PLATFORM-JSON` and `repo\0v\0vendor` -> count u64. A tag put or delete adds or
//! removes one image's [`Contribution`]; the summary's size moves when a digest's count
//! crosses zero, and its platform and vendor sets are re-read when one of theirs does. The
//! newest image is re-found by walking the tags only when the newest one's tag moved to an
//! older image or went away. A change that alters an image without a tag change (a config
//! that arrived later, a child stored after its tagged index, the backfill) recomputes the
//! whole summary and every count instead. fsck compares both with a full recomputation.
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use super::meta::Platform;
use super::refresh::{image_updated_ns, vendor_of, NewestImage};
use crate::error::StorageError;
use crate::index::{self, Batch, Cf, Index};

/// What one tagged image adds to its repository's summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Contribution {
    /// Every distinct digest it holds (manifests, configs, layers) with its size.
    pub(crate) digests: BTreeMap<String, u64>,
    pub(crate) platforms: BTreeSet<Platform>,
    pub(crate) vendors: BTreeSet<String>,
    /// When it was built (an index: its newest child).
    pub(crate) updated: Option<i64>,
}

/// The contribution of the image `digest` (`None` without a record); `image` reads records.
pub(crate) async fn contribution(
    image: &mut super::refresh::Images<'_, '_>,
    digest: &str,
) -> Result<Option<Contribution>, StorageError> {
    let Some(meta) = image.get(digest).await? else {
        return Ok(None);
    };
    let mut parts = vec![(digest.to_owned(), meta.clone())];
    for child in &meta.children {
        if let Some(child_meta) = image.get(&child.digest).await? {
            parts.push((child.digest.clone(), child_meta));
        }
    }
    let mut found = Contribution::default();
    for (part_digest, part) in &parts {
        found
            .digests
            .insert(part_digest.clone(), part.manifest_size);
        if let Some(config) = &part.config {
            found
                .digests
                .insert(config.blob.digest.clone(), config.blob.size);
            if let Some(platform) = &config.platform {
                if !platform.os.is_empty() || !platform.arch.is_empty() {
                    found.platforms.insert(platform.clone());
                }
            }
        }
        for layer in &part.layers {
            found.digests.insert(layer.digest.clone(), layer.size);
        }
        // An index's own annotations give no vendor and no time (zot).
        if part.index {
            continue;
        }
        if let Some(vendor) = vendor_of(part) {
            found.vendors.insert(vendor.to_owned());
        }
        found.updated = found.updated.max(image_updated_ns(part));
    }
    Ok(Some(found))
}

/// The order of "newest": build time, then tag time, then the smaller tag.
pub(crate) fn newer(candidate: &NewestImage, than: &NewestImage) -> bool {
    (
        candidate.updated_ns,
        candidate.tagged_ms,
        Reverse(&candidate.tag),
    ) > (than.updated_ns, than.tagged_ms, Reverse(&than.tag))
}

fn digest_key(repo: &str, digest: &str) -> Vec<u8> {
    index::key(&[repo, "d", digest])
}

fn platform_key(repo: &str, platform: &Platform) -> Vec<u8> {
    let json = serde_json::to_string(platform).expect("a platform serializes");
    index::key(&[repo, "p", &json])
}

fn vendor_key(repo: &str, vendor: &str) -> Vec<u8> {
    let mut key = index::prefix(&[repo, "v"]);
    key.extend_from_slice(vendor.as_bytes());
    key
}

fn read_u64(bytes: &[u8], at: usize) -> Result<u64, StorageError> {
    bytes
        .get(at..at + 8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| StorageError::Corrupt("bad repo_refs value".into()))
}

/// Every count key and value of a set of contributions (a full recomputation).
pub(crate) fn count_all<'a>(
    repo: &str,
    contributions: impl IntoIterator<Item = &'a Contribution>,
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut counts: BTreeMap<Vec<u8>, (u64, u64)> = BTreeMap::new();
    for contribution in contributions {
        for key in keys(repo, contribution) {
            counts.entry(key.0).or_insert((0, key.1)).0 += 1;
        }
    }
    counts
        .into_iter()
        .map(|(key, (count, size))| {
            let value = encode(count, size, &key_kind(repo, &key));
            (key, value)
        })
        .collect()
}

/// (key, size) of every count a contribution holds.
fn keys(repo: &str, contribution: &Contribution) -> Vec<(Vec<u8>, u64)> {
    let digests = contribution
        .digests
        .iter()
        .map(|(d, s)| (digest_key(repo, d), *s));
    let platforms = contribution
        .platforms
        .iter()
        .map(|p| (platform_key(repo, p), 0));
    let vendors = contribution
        .vendors
        .iter()
        .map(|v| (vendor_key(repo, v), 0));
    digests.chain(platforms).chain(vendors).collect()
}

#[derive(PartialEq)]
enum Kind {
    Digest,
    Set,
}

fn key_kind(repo: &str, key: &[u8]) -> Kind {
    match key.starts_with(&index::prefix(&[repo, "d"])) {
        true => Kind::Digest,
        false => Kind::Set,
    }
}

fn encode(count: u64, size: u64, kind: &Kind) -> Vec<u8> {
    let mut out = count.to_be_bytes().to_vec();
    if *kind == Kind::Digest {
        out.extend_from_slice(&size.to_be_bytes());
    }
    out
}

/// Changes of counts gathered from a batch's tag changes, then applied to it.
#[derive(Default)]
pub(crate) struct Deltas {
    changes: BTreeMap<Vec<u8>, (i64, u64)>,
}

impl Deltas {
    pub(crate) fn add(&mut self, repo: &str, contribution: &Contribution, sign: i64) {
        for (key, size) in keys(repo, contribution) {
            self.changes.entry(key).or_insert((0, size)).0 += sign;
        }
    }

    /// Writes the new counts into `batch`; returns how the size moved and whether a platform
    /// or vendor appeared or vanished.
    pub(crate) async fn apply(
        self,
        index: &Index,
        repo: &str,
        batch: &mut Batch,
    ) -> Result<(i64, bool), StorageError> {
        let mut size_change = 0i64;
        let mut sets_changed = false;
        for (key, (delta, size)) in self.changes {
            if delta == 0 {
                continue;
            }
            let kind = key_kind(repo, &key);
            let stored = match index.get(Cf::RepoRefs, &key).await? {
                Some(value) => read_u64(&value, 0)?,
                None => 0,
            };
            let count = u64::try_from(stored as i64 + delta).map_err(|_| {
                StorageError::Corrupt(format!("repo_refs count below zero for {repo}"))
            })?;
            if (stored == 0) != (count == 0) {
                match kind {
                    Kind::Digest if count == 0 => size_change -= size as i64,
                    Kind::Digest => size_change += size as i64,
                    Kind::Set => sets_changed = true,
                }
            }
            match count {
                0 => batch.delete(Cf::RepoRefs, key),
                _ => batch.put(Cf::RepoRefs, key, encode(count, size, &kind)),
            }
        }
        Ok((size_change, sets_changed))
    }
}

/// The platform and vendor sets as the counts stand once `batch` is applied.
pub(crate) async fn sets(
    index: &Index,
    repo: &str,
    batch: &Batch,
) -> Result<(BTreeSet<Platform>, BTreeSet<String>), StorageError> {
    let mut present: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
    for kind in ["p", "v"] {
        index
            .visit(
                Cf::RepoRefs,
                &index::prefix(&[repo, kind]),
                None,
                |key, _| {
                    present.insert(key.to_vec(), true);
                    Ok(true)
                },
            )
            .await?;
    }
    for (cf, key, value) in batch.ops() {
        if *cf == Cf::RepoRefs
            && key_kind(repo, key) == Kind::Set
            && key.starts_with(&index::prefix(&[repo]))
        {
            present.insert(key.clone(), value.is_some());
        }
    }
    let (platform_prefix, vendor_prefix) =
        (index::prefix(&[repo, "p"]), index::prefix(&[repo, "v"]));
    let mut platforms = BTreeSet::new();
    let mut vendors = BTreeSet::new();
    for (key, _) in present.into_iter().filter(|(_, here)| *here) {
        if let Some(json) = key.strip_prefix(platform_prefix.as_slice()) {
            platforms.insert(
                serde_json::from_slice(json)
                    .map_err(|_| StorageError::Corrupt("bad platform count key".into()))?,
            );
        } else if let Some(vendor) = key.strip_prefix(vendor_prefix.as_slice()) {
            vendors.insert(String::from_utf8_lossy(vendor).into_owned());
        }
    }
    Ok((platforms, vendors))
}

/// Every stored count of `repo` (fsck, and a full recomputation's deletes).
pub(crate) async fn stored(
    index: &Index,
    repo: &str,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StorageError> {
    let mut found = BTreeMap::new();
    index
        .visit(Cf::RepoRefs, &index::prefix(&[repo]), None, |key, value| {
            found.insert(key.to_vec(), value.to_vec());
            Ok(true)
        })
        .await?;
    Ok(found)
}
