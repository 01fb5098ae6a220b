//! The digest queries: `ImageListForDigest` (and `GlobalSearch` by a whole digest),
//! `DerivedImageList` and `BaseImageList`.
//!
//! Rules: candidates come from the engine's `tagged` family (one prefix scan per digest asked
//! for, no image record read) and are counted and paged as they stream in (hits.rs); only
//! the page's images are read. A tagged image is listed whole when the digest is, or is in, what its tag names
//! directly; an index is listed with only the children that matched. Sorting by downloads
//! reads every candidate's pull count, so it reads every candidate's images too. A partial
//! digest (zot's substring match) has no key to scan and reads every image.
use std::collections::BTreeSet;

use async_graphql::dynamic::ObjectAccessor;
use berth_storage::oci::{Digest, RepoName};
use berth_storage::search::{DigestRole, Tagged, TaggedFacts};
use serde_json::Value;

use super::hits::Pager;
use super::page::{Page, Sort};
use super::resolve::{image_reference, images_page, string_arg};
use super::view::{internal, Listed, View};

/// Streams every tagged image whose manifest, config or a layer is `digest` (or that lists
/// it as a child) into `pager`.
pub async fn scan(view: &View, digest: &Digest, pager: &mut Pager<'_>) -> Result<(), String> {
    view.engine
        .visit_tagged(digest, |entry| {
            pager.add(&entry);
            true
        })
        .await
        .map_err(internal)
}

/// Tagged images whose manifest (or an index child, config or layer) contains `id` as a
/// substring (zot's match for anything that is not a whole digest).
pub async fn images_containing(view: &View, id: &str) -> Result<Vec<Listed>, String> {
    let mut images = Vec::new();
    for mut listed in view.all_images(|_| true).await? {
        if listed.meta.index && listed.digest.to_string() == id {
            images.push(listed);
            continue;
        }
        listed.manifests.retain(|(digest, meta)| {
            digest.to_string().contains(id)
                || meta
                    .config
                    .as_ref()
                    .is_some_and(|c| c.blob.digest.contains(id))
                || meta.layers.iter().any(|l| l.digest.contains(id))
        });
        if !listed.manifests.is_empty() {
            images.push(listed);
        }
    }
    Ok(images)
}

pub async fn image_list_for_digest(
    view: &View,
    args: &ObjectAccessor<'_>,
) -> Result<Value, String> {
    let id = string_arg(args, "id");
    let page = Page::from_args(args);
    match id.parse::<Digest>() {
        Ok(digest) => {
            let mut pager = Pager::new(view, page, Sort::Relevance)?;
            scan(view, &digest, &mut pager).await?;
            pager.finish().await
        }
        Err(_) => {
            images_page(
                view,
                images_containing(view, id).await?,
                page,
                Sort::Relevance,
            )
            .await
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// Images built on the given one: they hold all of its layers.
    Derived,
    /// Images the given one is built on: all of their layers are in it.
    Base,
}

/// One tagged manifest holding a layer: (repository, tag, manifest) and its facts.
type Holder = ((String, String, String), TaggedFacts);

/// The tagged manifests related to one searched manifest with `layers`.
async fn related_to(
    view: &View,
    layers: &BTreeSet<String>,
    relation: Relation,
    pager: &mut Pager<'_>,
    found: &mut Vec<Holder>,
) -> Result<(), String> {
    // Each layer's holders come in (repository, tag, manifest) order: one sorted run per
    // layer, merged by a stable sort; a manifest holds as many of the layers as it has
    // entries in the merge.
    let mut held: Vec<Holder> = Vec::new();
    for layer in layers {
        let Ok(digest) = layer.parse::<Digest>() else {
            continue;
        };
        view.engine
            .visit_tagged(&digest, |entry| {
                if entry.role == DigestRole::Layer && pager.can_read(entry.repo) {
                    let at = (entry.repo.into(), entry.tag.into(), entry.manifest.into());
                    held.push((at, entry.facts));
                }
                true
            })
            .await
            .map_err(internal)?;
    }
    if layers.len() > 1 {
        held.sort_by(|(a, _), (b, _)| a.cmp(b));
    }
    let mut rest = held.as_slice();
    while let Some(((at, facts), _)) = rest.split_first() {
        let count = rest.iter().take_while(|(other, _)| other == at).count();
        let qualifies = facts.layers > 0
            && match relation {
                Relation::Derived => count == layers.len(),
                Relation::Base => count == facts.layers as usize,
            };
        if qualifies {
            found.push((at.clone(), *facts));
        }
        rest = &rest[count..];
    }
    Ok(())
}

pub async fn related(
    view: &View,
    args: &ObjectAccessor<'_>,
    relation: Relation,
) -> Result<Value, String> {
    let (repo, tag) = image_reference(string_arg(args, "image"))?;
    let name = repo
        .parse::<RepoName>()
        .map_err(|_| "repository not found".to_owned())?;
    if !view.can_read(name.as_str()) || !view.engine.repo_exists(&name).await.map_err(internal)? {
        return Err("repository not found".into());
    }
    let entry = view
        .tags(&name)
        .await?
        .iter()
        .find(|e| e.tag == tag)
        .cloned();
    let mut searched = match entry {
        Some(entry) => view.listed(&name, &entry).await?,
        None => None,
    }
    .ok_or_else(|| format!("can't find image: {repo}:{tag}"))?;
    if let Some(text) = args.get("digest").and_then(|v| v.string().ok()) {
        let digest: Digest = text
            .parse()
            .map_err(|_| format!("image meta not found for digest {text}"))?;
        let meta = view
            .image(&name, &digest)
            .await?
            .ok_or_else(|| format!("image meta not found for digest {text}"))?;
        searched.manifests = vec![(digest, meta)];
    }
    // The searched manifests themselves (a handful: a list beats hashing every entry).
    let excluded: Vec<String> = searched
        .manifests
        .iter()
        .map(|(d, _)| d.to_string())
        .collect();
    let layer_sets: Vec<BTreeSet<String>> = searched
        .manifests
        .iter()
        .map(|(_, meta)| meta.layers.iter().map(|l| l.digest.clone()).collect())
        .filter(|layers: &BTreeSet<String>| !layers.is_empty())
        .collect();
    let mut pager = Pager::new(view, Page::from_args(args), Sort::UpdateTime)?;
    if let [layers] = layer_sets.as_slice() {
        if let (1, Some(layer)) = (layers.len(), layers.first()) {
            // One layer (a base image's usual shape): its holders, in order, are the answer.
            let digest: Digest = layer.parse().map_err(|_| "internal error".to_owned())?;
            view.engine
                .visit_tagged(&digest, |entry| {
                    let qualifies = match relation {
                        Relation::Derived => entry.facts.layers > 0,
                        Relation::Base => entry.facts.layers == 1,
                    };
                    if entry.role == DigestRole::Layer
                        && qualifies
                        && !excluded.iter().any(|own| own == entry.manifest)
                    {
                        pager.add(&entry);
                    }
                    true
                })
                .await
                .map_err(internal)?;
            return pager.finish().await;
        }
    }
    let mut found = Vec::new();
    for layers in &layer_sets {
        related_to(view, layers, relation, &mut pager, &mut found).await?;
    }
    found.retain(|((_, _, manifest), _)| !excluded.contains(manifest));
    if layer_sets.len() > 1 {
        found.sort_by(|(a, _), (b, _)| a.cmp(b));
    }
    for ((repo, tag, manifest), facts) in &found {
        pager.add(&Tagged {
            repo,
            tag,
            manifest,
            role: DigestRole::Layer,
            facts: *facts,
        });
    }
    pager.finish().await
}
