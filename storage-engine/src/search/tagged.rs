//! Which tagged images hold a digest, in one prefix scan: the `tagged` family answers
//! `ImageListForDigest`, `DerivedImageList` and `BaseImageList` without reading an image
//! record per candidate (a base layer is held by thousands of images; a page shows ten).
//!
//! Rules: `digest\0repo\0tag\0manifest` -> [`TaggedFacts`], for every tag that names an
//! image (signature tags do not) and every manifest the tag lists: the tagged manifest
//! itself, or, for an index, each child search has a record of that is not an index, in
//! index order. The digests of a manifest are the manifest, its config and its layers; an
//! index adds its own digest, listed as the whole image. The entries are a function of the
//! repository's tags and image records: [`follow`] runs inside `refresh`, recomputes the
//! entries of every tag the batch moves (every tag, in a full refresh) before and after the
//! batch, and puts the difference in the same batch. fsck recomputes them all.
use std::collections::{BTreeMap, BTreeSet};

use super::meta::ImageMeta;
use super::refresh::{is_signature_tag, Images, Overlay, CONFIG, LAYER, SELF};
use super::DigestRole;
use crate::engine::Engine;
use crate::error::StorageError;
use crate::index::{self, Batch, Cf, Index, TagRecord};
use crate::oci::Digest;

/// Value format version, the first byte of every `tagged` value.
const VERSION: u8 = 1;
const VALUE_LEN: usize = 1 + 1 + 1 + 4 + 4 + 3 * 9;

/// What the listings need of one manifest of a tagged image, without its record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaggedFacts {
    /// The manifest is what the tag names (the whole image), not a child of it.
    pub whole: bool,
    /// Its position among the index's listed children (0 for the whole image).
    pub position: u32,
    /// Distinct layers of the manifest (0 for an index).
    pub layers: u32,
    /// The tagged index's own `created` annotation (none for an image).
    pub index_created_ns: Option<i64>,
    /// The manifest's `created` annotation (the index itself: its first child's).
    pub created_ns: Option<i64>,
    /// When the manifest was updated (the index itself: its newest child).
    pub updated_ns: Option<i64>,
}

/// One tagged image's manifest holding the digest asked for.
#[derive(Clone, Copy, Debug)]
pub struct Tagged<'a> {
    pub repo: &'a str,
    pub tag: &'a str,
    pub manifest: &'a str,
    /// What the digest is to the manifest (never [`DigestRole::Child`]: a child is listed
    /// as a manifest of its own).
    pub role: DigestRole,
    pub facts: TaggedFacts,
}

fn put_time(out: &mut Vec<u8>, time: Option<i64>) {
    out.push(u8::from(time.is_some()));
    out.extend_from_slice(&time.unwrap_or_default().to_be_bytes());
}

fn get_time(bytes: &[u8]) -> Option<i64> {
    (bytes[0] == 1).then(|| i64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes")))
}

impl TaggedFacts {
    fn encode(&self, role: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(VALUE_LEN);
        out.push(VERSION);
        out.push(role);
        out.push(u8::from(self.whole));
        out.extend_from_slice(&self.position.to_be_bytes());
        out.extend_from_slice(&self.layers.to_be_bytes());
        put_time(&mut out, self.index_created_ns);
        put_time(&mut out, self.created_ns);
        put_time(&mut out, self.updated_ns);
        out
    }

    fn decode(bytes: &[u8]) -> Result<(DigestRole, TaggedFacts), StorageError> {
        let bad = || StorageError::Corrupt("bad tagged value".into());
        if bytes.len() != VALUE_LEN || bytes[0] != VERSION {
            return Err(bad());
        }
        let role = match bytes[1] {
            SELF => DigestRole::Manifest,
            CONFIG => DigestRole::Config,
            LAYER => DigestRole::Layer,
            _ => return Err(bad()),
        };
        let u32_at = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4"));
        let facts = TaggedFacts {
            whole: bytes[2] == 1,
            position: u32_at(3),
            layers: u32_at(7),
            index_created_ns: get_time(&bytes[11..20]),
            created_ns: get_time(&bytes[20..29]),
            updated_ns: get_time(&bytes[29..38]),
        };
        Ok((role, facts))
    }

    /// zot's `LastUpdated` of a tagged image listed with these of its manifests: the whole
    /// image's when one is whole; else the index's `created` annotation, else the first
    /// manifest's, else the newest manifest's update.
    pub fn listed_updated_ns(manifests: &[TaggedFacts]) -> Option<i64> {
        if let Some(whole) = manifests.iter().find(|facts| facts.whole) {
            return whole
                .index_created_ns
                .or(whole.created_ns)
                .or(whole.updated_ns);
        }
        let first = manifests.iter().min_by_key(|facts| facts.position)?;
        first
            .index_created_ns
            .or(first.created_ns)
            .or_else(|| manifests.iter().filter_map(|facts| facts.updated_ns).max())
    }
}

fn distinct_layers(meta: &ImageMeta) -> u32 {
    let layers: BTreeSet<&str> = meta.layers.iter().map(|l| l.digest.as_str()).collect();
    layers.len() as u32
}

fn add_manifest(
    entries: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    at: [&str; 3],
    meta: &ImageMeta,
    facts: TaggedFacts,
) {
    let [repo, tag, manifest] = at;
    let digests = std::iter::once((manifest, SELF))
        .chain(meta.config.iter().map(|c| (c.blob.digest.as_str(), CONFIG)))
        .chain(meta.layers.iter().map(|l| (l.digest.as_str(), LAYER)));
    for (digest, role) in digests {
        entries.insert(
            index::key(&[digest, repo, tag, manifest]),
            facts.encode(role),
        );
    }
}

/// The entries of `tag` naming `target` (none for a signature tag or an image search has
/// no record of); `image` reads image records.
pub(crate) async fn entries(
    repo: &str,
    tag: &str,
    target: Option<&str>,
    image: &mut Images<'_, '_>,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StorageError> {
    let mut entries = BTreeMap::new();
    let Some(target) = target.filter(|_| !is_signature_tag(tag)) else {
        return Ok(entries);
    };
    let Some(meta) = image.get(target).await? else {
        return Ok(entries);
    };
    if !meta.index {
        let facts = TaggedFacts {
            whole: true,
            layers: distinct_layers(&meta),
            created_ns: meta.created_annotation_ns(),
            updated_ns: meta.updated_ns(),
            ..TaggedFacts::default()
        };
        add_manifest(&mut entries, [repo, tag, target], &meta, facts);
        return Ok(entries);
    }
    let mut children = Vec::new();
    for child in &meta.children {
        if let Some(child_meta) = image.get(&child.digest).await?.filter(|m| !m.index) {
            children.push((child.digest.as_str(), child_meta));
        }
    }
    let index_created_ns = meta.created_annotation_ns();
    let whole = TaggedFacts {
        whole: true,
        index_created_ns,
        created_ns: children
            .first()
            .and_then(|(_, m)| m.created_annotation_ns()),
        updated_ns: children.iter().filter_map(|(_, m)| m.updated_ns()).max(),
        ..TaggedFacts::default()
    };
    entries.insert(index::key(&[target, repo, tag, target]), whole.encode(SELF));
    for (position, (digest, child)) in children.iter().enumerate() {
        let facts = TaggedFacts {
            whole: false,
            position: position as u32,
            layers: distinct_layers(child),
            index_created_ns,
            created_ns: child.created_annotation_ns(),
            updated_ns: child.updated_ns(),
        };
        add_manifest(&mut entries, [repo, tag, digest], child, facts);
    }
    Ok(entries)
}

/// Adds to `batch` the `tagged` changes it implies for `repo`: for the tags it moves, or for
/// every tag when `all_tags`; `gone` when the batch removes the repository.
pub(crate) async fn follow(
    index: &Index,
    repo: &str,
    batch: &mut Batch,
    all_tags: bool,
    gone: bool,
) -> Result<(), StorageError> {
    let changes = changes(index, repo, batch, all_tags, gone).await?;
    batch.extend(changes);
    Ok(())
}

async fn changes(
    index: &Index,
    repo: &str,
    batch: &Batch,
    all_tags: bool,
    gone: bool,
) -> Result<Batch, StorageError> {
    let prefix = index::prefix(&[repo]);
    let overlay = Overlay::new(index, batch, repo);
    let mut tags: BTreeSet<String> = BTreeSet::new();
    for (cf, key, _) in batch.ops() {
        if *cf == Cf::Tags && key.starts_with(&prefix) {
            tags.insert(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
        }
    }
    if all_tags {
        index
            .visit(Cf::Tags, &prefix, None, |key, _| {
                tags.insert(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
                Ok(true)
            })
            .await?;
    }
    let nothing = Batch::default();
    let stored = Overlay::new(index, &nothing, repo);
    let mut before = Images::new(&stored);
    let mut after = Images::new(&overlay);
    let mut changes = Batch::default();
    for tag in &tags {
        let old_target = index
            .get(Cf::Tags, &index::key(&[repo, tag]))
            .await?
            .map(|value| TagRecord::decode(&value))
            .transpose()?
            .map(|record| record.digest.to_string());
        // One tag at a time: a push into a repository of thousands of tags reads its own.
        let new_target = match gone {
            true => None,
            false => overlay
                .tag(tag)
                .await?
                .map(|record| record.digest.to_string()),
        };
        let old = entries(repo, tag, old_target.as_deref(), &mut before).await?;
        let new = entries(repo, tag, new_target.as_deref(), &mut after).await?;
        for key in old.keys().filter(|key| !new.contains_key(*key)) {
            changes.delete(Cf::Tagged, key.clone());
        }
        for (key, value) in new {
            if all_tags || old.get(&key) != Some(&value) {
                changes.put(Cf::Tagged, key, value);
            }
        }
    }
    Ok(changes)
}

/// Every entry the stored tags and images of `repo` give (fsck's expectation).
pub(crate) async fn expected(
    index: &Index,
    repo: &str,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StorageError> {
    let batch = Batch::default();
    let stored = Overlay::new(index, &batch, repo);
    let mut image = Images::new(&stored);
    let mut all = BTreeMap::new();
    for (tag, record) in stored.tags().await? {
        let target = record.digest.to_string();
        all.extend(entries(repo, &tag, Some(&target), &mut image).await?);
    }
    Ok(all)
}

impl Engine {
    /// Calls `visit` with every manifest of a tagged image that is or holds `digest` (as
    /// itself, its config or a layer), in (repository, tag, manifest) order, until it
    /// returns false. One prefix scan; no image record is read.
    pub async fn visit_tagged(
        &self,
        digest: &Digest,
        mut visit: impl FnMut(Tagged<'_>) -> bool,
    ) -> Result<(), StorageError> {
        let prefix = index::prefix(&[&digest.to_string()]);
        self.inner
            .index
            .visit(Cf::Tagged, &prefix, None, |key, value| {
                let rest = std::str::from_utf8(&key[prefix.len()..])
                    .map_err(|_| StorageError::Corrupt("bad tagged key".into()))?;
                let mut parts = rest.split('\0');
                let (Some(repo), Some(tag), Some(manifest), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(StorageError::Corrupt("bad tagged key".into()));
                };
                let (role, facts) = TaggedFacts::decode(value)?;
                Ok(visit(Tagged {
                    repo,
                    tag,
                    manifest,
                    role,
                    facts,
                }))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_round_trip() {
        let facts = TaggedFacts {
            whole: true,
            position: 7,
            layers: 3,
            index_created_ns: None,
            created_ns: Some(-5),
            updated_ns: Some(1_700_000_000_000_000_000),
        };
        let (role, decoded) = TaggedFacts::decode(&facts.encode(LAYER)).unwrap();
        assert_eq!((role, decoded), (DigestRole::Layer, facts));
        assert!(TaggedFacts::decode(&facts.encode(LAYER)[1..]).is_err());
        assert!(TaggedFacts::decode(&facts.encode(b'x')).is_err());
    }

    #[test]
    fn listed_update_follows_zot() {
        let child = |position, created, updated| TaggedFacts {
            position,
            created_ns: created,
            updated_ns: updated,
            ..TaggedFacts::default()
        };
        // No annotation: the newest manifest.
        let manifests = [child(1, None, Some(5)), child(0, None, Some(3))];
        assert_eq!(TaggedFacts::listed_updated_ns(&manifests), Some(5));
        // The first manifest's annotation wins over a newer manifest.
        let manifests = [child(1, Some(9), Some(9)), child(0, Some(2), Some(2))];
        assert_eq!(TaggedFacts::listed_updated_ns(&manifests), Some(2));
        assert_eq!(TaggedFacts::listed_updated_ns(&[]), None);
    }
}
