//! Keeping search's records in step with the index: [`refresh`] is called with every batch
//! that changes a repository's manifests or tags (manifest PUT and delete, tag delete, a GC
//! pass, the backfill) and adds to that same batch what follows from it, so search can never
//! disagree with what the registry serves.
//!
//! Rules: what follows is computed from the repository as it will be once the batch is
//! applied: the stored tags and images overlaid with the batch's own puts and deletes (the
//! caller holds the repository lock, so nothing else changes them meanwhile). It adds:
//! - for each `images` record the batch puts, its `digests` entries;
//! - for each `manifests` record the batch deletes, the deletion of its `images` record and
//!   `digests` entries;
//! - the repository's summary (`repo_meta`), recomputed whole; deleted when no image tag is
//!   left.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::counts;

use serde::{Deserialize, Serialize};

use super::meta::{ImageMeta, Platform};
use crate::error::StorageError;
use crate::index::{self, Batch, Cf, Index, TagRecord};

const VERSION: u8 = 1;

/// What a `digests` entry's digest is to its manifest.
pub(crate) const SELF: u8 = b's';
pub(crate) const CONFIG: u8 = b'c';
pub(crate) const LAYER: u8 = b'l';
pub(crate) const CHILD: u8 = b'm';

/// A repository's summary, for listings over every repository (`RepoListWithNewestImage`,
/// `GlobalSearch`) that must not read every image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RepoMeta {
    /// Image tags (signature tags are not images).
    pub tags: u64,
    /// The most recently updated image (by its `updated_ns`, then its tag time).
    pub newest: Option<NewestImage>,
    /// Bytes of every distinct blob and manifest the tagged images hold.
    pub size: u64,
    /// Platforms of the tagged images, from their configs (an index contributes its
    /// children's); a platform with neither OS nor architecture is left out.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub platforms: BTreeSet<Platform>,
    /// Vendors of the tagged images ([`vendor_of`]).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub vendors: BTreeSet<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewestImage {
    pub tag: String,
    pub digest: String,
    /// When the image was built (config `created`, else its last history entry; an index:
    /// its newest child).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_ns: Option<i64>,
    pub tagged_ms: u64,
}

impl RepoMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        serde_json::to_writer(&mut out, self).expect("repo meta serializes");
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<RepoMeta, StorageError> {
        match bytes.split_first() {
            Some((&VERSION, rest)) => serde_json::from_slice(rest)
                .map_err(|error| StorageError::Corrupt(format!("bad repo meta: {error}"))),
            _ => Err(StorageError::Corrupt("bad repo meta version".into())),
        }
    }
}

/// A cosign signature stored by tag (`sha256-<hex>.sig`): the signature of that manifest,
/// not an image of the repository (as zot keeps it).
pub fn is_signature_tag(tag: &str) -> bool {
    signed_by_tag(tag).is_some()
}

/// The digest a cosign signature tag signs (`sha256-<hex>.sig` -> `sha256:<hex>`).
pub fn signed_by_tag(tag: &str) -> Option<String> {
    let hex = tag.strip_prefix("sha256-")?.strip_suffix(".sig")?;
    let valid = hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    valid.then(|| format!("sha256:{hex}"))
}

/// When an image was built (zot's rule for a repository's newest image): its config's
/// `created`, else its last history entry's.
pub fn image_updated_ns(meta: &ImageMeta) -> Option<i64> {
    let config = meta.config.as_ref()?;
    config
        .created_ns
        .or_else(|| config.history.last().and_then(|h| h.created_ns))
}

/// A repository's vendor from one image: the manifest's annotations only (OCI key, then
/// label-schema key), as zot lists `RepoSummary.Vendors`.
pub fn vendor_of(meta: &ImageMeta) -> Option<&str> {
    ["org.opencontainers.image.vendor", "org.label-schema.vendor"]
        .iter()
        .find_map(|key| meta.annotations.get(*key).filter(|v| !v.is_empty()))
        .map(String::as_str)
}

/// Image records read through an overlay, each decoded once.
pub(crate) struct Images<'o, 'a> {
    overlay: &'o Overlay<'a>,
    seen: HashMap<String, Option<ImageMeta>>,
}

impl<'o, 'a> Images<'o, 'a> {
    pub(crate) fn new(overlay: &'o Overlay<'a>) -> Images<'o, 'a> {
        Images {
            overlay,
            seen: HashMap::new(),
        }
    }

    pub(crate) async fn get(&mut self, digest: &str) -> Result<Option<ImageMeta>, StorageError> {
        if let Some(meta) = self.seen.get(digest) {
            return Ok(meta.clone());
        }
        let meta = self.overlay.image(digest).await?;
        self.seen.insert(digest.to_owned(), meta.clone());
        Ok(meta)
    }
}

/// The repository's stored state overlaid with a batch not yet written.
pub(crate) struct Overlay<'a> {
    index: &'a Index,
    batch: &'a Batch,
    repo: &'a str,
}

impl<'a> Overlay<'a> {
    pub(crate) fn new(index: &'a Index, batch: &'a Batch, repo: &'a str) -> Overlay<'a> {
        Overlay { index, batch, repo }
    }

    /// The last op of the batch on `cf`/`key`: Some(Some(value)) put, Some(None) delete.
    fn pending(&self, cf: Cf, key: &[u8]) -> Option<Option<&'a [u8]>> {
        self.batch
            .ops()
            .iter()
            .rev()
            .find(|(op_cf, op_key, _)| *op_cf == cf && op_key == key)
            .map(|(_, _, value)| value.as_deref())
    }

    pub(crate) async fn image(&self, digest: &str) -> Result<Option<ImageMeta>, StorageError> {
        let key = index::key(&[self.repo, digest]);
        match self.pending(Cf::Images, &key) {
            Some(Some(value)) => Ok(Some(ImageMeta::decode(value)?)),
            Some(None) => Ok(None),
            None => match self.index.get(Cf::Images, &key).await? {
                Some(value) => Ok(Some(ImageMeta::decode(&value)?)),
                None => Ok(None),
            },
        }
    }

    /// One tag of the repository.
    pub(crate) async fn tag(&self, tag: &str) -> Result<Option<TagRecord>, StorageError> {
        let key = index::key(&[self.repo, tag]);
        let value = match self.pending(Cf::Tags, &key) {
            Some(pending) => pending.map(<[u8]>::to_vec),
            None => self.index.get(Cf::Tags, &key).await?,
        };
        value.map(|value| TagRecord::decode(&value)).transpose()
    }

    /// Every tag of the repository: tag -> record.
    pub(crate) async fn tags(&self) -> Result<BTreeMap<String, TagRecord>, StorageError> {
        let prefix = index::prefix(&[self.repo]);
        let mut tags = BTreeMap::new();
        self.index
            .visit(Cf::Tags, &prefix, None, |key, value| {
                let tag = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                tags.insert(tag, TagRecord::decode(value)?);
                Ok(true)
            })
            .await?;
        for (cf, key, value) in self.batch.ops() {
            if *cf != Cf::Tags || !key.starts_with(&prefix) {
                continue;
            }
            let tag = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            match value {
                Some(value) => tags.insert(tag, TagRecord::decode(value)?),
                None => tags.remove(&tag),
            };
        }
        Ok(tags)
    }

    /// True when the batch removes the repository itself.
    fn deletes_repo(&self) -> bool {
        matches!(self.pending(Cf::Repos, self.repo.as_bytes()), Some(None))
    }
}

/// The `digests` entries of one image record: (key, kind).
pub(crate) fn digest_entries(repo: &str, manifest: &str, meta: &ImageMeta) -> Vec<(Vec<u8>, u8)> {
    let mut entries = vec![(index::key(&[manifest, repo, manifest]), SELF)];
    if let Some(config) = &meta.config {
        entries.push((index::key(&[&config.blob.digest, repo, manifest]), CONFIG));
    }
    for layer in &meta.layers {
        entries.push((index::key(&[&layer.digest, repo, manifest]), LAYER));
    }
    for child in &meta.children {
        entries.push((index::key(&[&child.digest, repo, manifest]), CHILD));
    }
    entries
}

/// How a refresh brings the summary up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// From the batch's own tag changes (counts.rs), unless the batch changes an image that a
    /// tag already holds.
    Incremental,
    /// Recompute the summary and every count (the backfill, a config that arrived later).
    Full,
}

/// Adds what follows from `batch` for `repo` to it (see the module's rules).
pub(crate) async fn refresh(
    index: &Index,
    repo: &str,
    batch: &mut Batch,
    mode: Mode,
) -> Result<(), StorageError> {
    let prefix = index::prefix(&[repo]);
    let mut follow = Batch::default();
    let mut full = mode == Mode::Full;
    for (cf, key, value) in batch.ops() {
        if !key.starts_with(&prefix) {
            continue;
        }
        let manifest = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        match (cf, value) {
            (Cf::Images, Some(value)) => {
                let meta = ImageMeta::decode(value)?;
                for (key, kind) in digest_entries(repo, &manifest, &meta) {
                    follow.put(Cf::Digests, key, vec![kind]);
                }
                // A new child stored after the index that lists it changes a tagged image.
                if !full && !index.contains(Cf::Images, key).await? {
                    let parents = index::prefix(&[&manifest, repo]);
                    full |= index
                        .any_with_prefix(Cf::Digests, &parents, |_, value| Ok(value == [CHILD]))
                        .await?;
                }
            }
            (Cf::Manifests, None) => {
                if let Some(stored) = index.get(Cf::Images, key).await? {
                    let meta = ImageMeta::decode(&stored)?;
                    for (key, _) in digest_entries(repo, &manifest, &meta) {
                        follow.delete(Cf::Digests, key);
                    }
                }
                follow.delete(Cf::Images, key.clone());
            }
            _ => {}
        }
    }
    batch.extend(follow);
    let overlay = Overlay::new(index, batch, repo);
    if overlay.deletes_repo() {
        super::tagged::follow(index, repo, batch, true, true).await?;
        for (key, _) in counts::stored(index, repo).await? {
            batch.delete(Cf::RepoRefs, key);
        }
        batch.delete(Cf::RepoMeta, repo.as_bytes().to_vec());
        return Ok(());
    }
    super::tagged::follow(index, repo, batch, full, false).await?;
    let summary = match full {
        true => recompute(index, repo, batch).await?,
        false => update(index, repo, batch).await?,
    };
    match summary {
        Some(summary) => batch.put(Cf::RepoMeta, repo.as_bytes().to_vec(), summary.encode()),
        None => batch.delete(Cf::RepoMeta, repo.as_bytes().to_vec()),
    }
    Ok(())
}

/// The whole summary and every count, from every tag (the counts replace the stored ones).
async fn recompute(
    index: &Index,
    repo: &str,
    batch: &mut Batch,
) -> Result<Option<RepoMeta>, StorageError> {
    let (summary, contributions) = summarize_with(&Overlay::new(index, batch, repo)).await?;
    for (key, _) in counts::stored(index, repo).await? {
        batch.delete(Cf::RepoRefs, key);
    }
    for (key, value) in counts::count_all(repo, &contributions) {
        batch.put(Cf::RepoRefs, key, value);
    }
    Ok(summary)
}

/// The stored summary moved by the batch's tag changes.
async fn update(
    index: &Index,
    repo: &str,
    batch: &mut Batch,
) -> Result<Option<RepoMeta>, StorageError> {
    let prefix = index::prefix(&[repo]);
    let mut changes: BTreeMap<String, Option<TagRecord>> = BTreeMap::new();
    for (cf, key, value) in batch.ops() {
        if *cf == Cf::Tags && key.starts_with(&prefix) {
            let tag = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            changes.insert(tag, value.as_deref().map(TagRecord::decode).transpose()?);
        }
    }
    let mut summary = match index.get(Cf::RepoMeta, repo.as_bytes()).await? {
        Some(value) => RepoMeta::decode(&value)?,
        None => RepoMeta::default(),
    };
    // Before: what the store holds; after: the store overlaid with the batch.
    let nothing = Batch::default();
    let stored = Overlay::new(index, &nothing, repo);
    let mut before = Images::new(&stored);
    let overlay = Overlay::new(index, batch, repo);
    let mut after = Images::new(&overlay);
    let mut deltas = counts::Deltas::default();
    let mut lost_newest = false;
    let mut candidates: Vec<NewestImage> = Vec::new();
    for (tag, new) in changes {
        if is_signature_tag(&tag) {
            continue;
        }
        let old = index
            .get(Cf::Tags, &index::key(&[repo, &tag]))
            .await?
            .map(|v| TagRecord::decode(&v))
            .transpose()?;
        let is_newest = summary.newest.as_ref().is_some_and(|n| n.tag == tag);
        if let (Some(old), Some(new)) = (&old, &new) {
            if old.digest == new.digest {
                // The same image re-tagged: only its tag time moves, which may make it newest.
                match summary.newest.as_mut().filter(|_| is_newest) {
                    Some(newest) => newest.tagged_ms = new.pushed_ms,
                    None => {
                        let digest = new.digest.to_string();
                        if let Some(same) = counts::contribution(&mut after, &digest).await? {
                            candidates.push(NewestImage {
                                tag: tag.clone(),
                                digest,
                                updated_ns: same.updated,
                                tagged_ms: new.pushed_ms,
                            });
                        }
                    }
                }
                continue;
            }
        }
        if let Some(old) = &old {
            if let Some(gone) = counts::contribution(&mut before, &old.digest.to_string()).await? {
                deltas.add(repo, &gone, -1);
                summary.tags -= 1;
                lost_newest |= is_newest;
            }
        }
        if let Some(new) = &new {
            let digest = new.digest.to_string();
            if let Some(added) = counts::contribution(&mut after, &digest).await? {
                deltas.add(repo, &added, 1);
                summary.tags += 1;
                candidates.push(NewestImage {
                    tag: tag.clone(),
                    digest,
                    updated_ns: added.updated,
                    tagged_ms: new.pushed_ms,
                });
            }
        }
    }
    let (size_change, sets_changed) = deltas.apply(index, repo, batch).await?;
    summary.size = u64::try_from(summary.size as i64 + size_change)
        .map_err(|_| StorageError::Corrupt(format!("{repo}: search summary size below zero")))?;
    if sets_changed {
        let (platforms, vendors) = counts::sets(index, repo, batch).await?;
        summary.platforms = platforms;
        summary.vendors = vendors;
    }
    let previous = summary.newest.take();
    let best = candidates
        .into_iter()
        .reduce(|a, b| if counts::newer(&b, &a) { b } else { a });
    summary.newest = match (previous, best) {
        // The newest image's tag moved or went away: a newer candidate still wins over every
        // other tag (each was older than the previous newest); otherwise only a walk knows.
        (Some(previous), best) if lost_newest => match best {
            Some(best) if counts::newer(&best, &previous) => Some(best),
            _ => summarize_with(&Overlay::new(index, batch, repo))
                .await?
                .0
                .and_then(|summary| summary.newest),
        },
        (Some(previous), Some(best)) => Some(match counts::newer(&best, &previous) {
            true => best,
            false => previous,
        }),
        (previous, best) => best.or(previous),
    };
    Ok((summary.tags > 0).then_some(summary))
}

/// The summary of the repository `overlay` shows (`None` when it has no image tag) and the
/// contribution of every tagged image.
pub(crate) async fn summarize_with(
    overlay: &Overlay<'_>,
) -> Result<(Option<RepoMeta>, Vec<counts::Contribution>), StorageError> {
    let mut summary = RepoMeta::default();
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let mut load = Images::new(overlay);
    let mut contributions = Vec::new();
    for (tag, record) in overlay.tags().await? {
        if is_signature_tag(&tag) {
            continue;
        }
        let digest = record.digest.to_string();
        let Some(found) = counts::contribution(&mut load, &digest).await? else {
            continue;
        };
        summary.tags += 1;
        sizes.extend(found.digests.iter().map(|(d, s)| (d.clone(), *s)));
        summary.platforms.extend(found.platforms.iter().cloned());
        summary.vendors.extend(found.vendors.iter().cloned());
        let candidate = NewestImage {
            tag,
            digest,
            updated_ns: found.updated,
            tagged_ms: record.pushed_ms,
        };
        if summary
            .newest
            .as_ref()
            .is_none_or(|newest| counts::newer(&candidate, newest))
        {
            summary.newest = Some(candidate);
        }
        contributions.push(found);
    }
    summary.size = sizes.values().sum();
    Ok(((summary.tags > 0).then_some(summary), contributions))
}
