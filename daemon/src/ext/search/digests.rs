//! The digest queries: `ImageListForDigest` (and `GlobalSearch` by a whole digest),
//! `DerivedImageList` and `BaseImageList`.
//!
//! Rules: candidates come from the engine's `tagged` family (one prefix scan per digest asked
//! for, no image record read), are counted, sorted and cut there, and only the page's images
//! are read. A tagged image is listed whole when the digest is, or is in, what its tag names
//! directly; an index is listed with only the children that matched. Sorting by downloads
//! reads every candidate's pull count, so it reads every candidate's images too. A partial
//! digest (zot's substring match) has no key to scan and reads every image.
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashSet};

use async_graphql::dynamic::ObjectAccessor;
use berth_storage::oci::{Digest, RepoName};
use berth_storage::search::{DigestRole, Tagged, TaggedFacts};
use serde_json::{json, Value};

use super::images::{image_summary, object, SummaryOptions};
use super::page::{cut, Page, Sort};
use super::resolve::{image_reference, images_page, string_arg};
use super::view::{internal, Listed, View};

/// A tagged image holding a digest, before any of its records is read.
pub struct Hit {
    /// `repo\0tag`: one allocation, ordered as (repository, tag) are.
    at: String,
    /// The whole image's facts, when it is listed whole.
    whole: Option<TaggedFacts>,
    /// Otherwise the children of its index that matched, with their facts.
    parts: Vec<(String, TaggedFacts)>,
}

impl Hit {
    fn repo(&self) -> &str {
        self.at.split_once('\0').map_or(&self.at, |(repo, _)| repo)
    }

    fn tag(&self) -> &str {
        self.at.split_once('\0').map_or("", |(_, tag)| tag)
    }

    fn updated_ns(&self) -> Option<i64> {
        match self.whole {
            Some(facts) => TaggedFacts::listed_updated_ns(&[facts]),
            None => {
                let facts: Vec<TaggedFacts> = self.parts.iter().map(|(_, f)| *f).collect();
                TaggedFacts::listed_updated_ns(&facts)
            }
        }
    }

    fn by_name(&self, other: &Hit) -> Ordering {
        self.at.cmp(&other.at)
    }

    fn add(&mut self, manifest: &str, facts: TaggedFacts) {
        if facts.whole {
            self.whole = Some(facts);
            self.parts.clear();
        } else if self.whole.is_none() && !self.parts.iter().any(|(m, _)| m == manifest) {
            self.parts.push((manifest.to_owned(), facts));
        }
    }

    /// The image with its records (`None` when its tag moved or went away meanwhile).
    fn listed(&self, view: &View) -> Result<Option<Listed>, String> {
        let repo: RepoName = self
            .repo()
            .parse()
            .map_err(|_| "internal error".to_owned())?;
        let tags = view.tags(&repo)?;
        let Some(entry) = tags.iter().find(|entry| entry.tag == self.tag()) else {
            return Ok(None);
        };
        let Some(mut listed) = view.listed(&repo, entry)? else {
            return Ok(None);
        };
        if self.whole.is_some() {
            return Ok(Some(listed));
        }
        listed
            .manifests
            .retain(|(digest, _)| self.parts.iter().any(|(m, _)| *m == digest.to_string()));
        Ok((!listed.manifests.is_empty()).then_some(listed))
    }
}

/// Collects hits in (repository, tag) order from entries that come in that order; entries of
/// repositories the caller may not read are skipped.
struct Collector<'a> {
    view: &'a View,
    readable: Option<(String, bool)>,
    hits: Vec<Hit>,
}

impl<'a> Collector<'a> {
    fn new(view: &'a View) -> Collector<'a> {
        Collector {
            view,
            readable: None,
            hits: Vec::new(),
        }
    }

    fn can_read(&mut self, repo: &str) -> bool {
        match &self.readable {
            Some((last, answer)) if last == repo => *answer,
            _ => {
                let answer = self.view.can_read(repo);
                self.readable = Some((repo.to_owned(), answer));
                answer
            }
        }
    }

    fn add(&mut self, entry: &Tagged<'_>) {
        if !self.can_read(entry.repo) {
            return;
        }
        let same = self
            .hits
            .last()
            .is_some_and(|hit| hit.repo() == entry.repo && hit.tag() == entry.tag);
        if !same {
            let mut at = String::with_capacity(entry.repo.len() + 1 + entry.tag.len());
            at.push_str(entry.repo);
            at.push('\0');
            at.push_str(entry.tag);
            self.hits.push(Hit {
                at,
                whole: None,
                parts: Vec::new(),
            });
        }
        let hit = self.hits.last_mut().expect("just pushed");
        hit.add(entry.manifest, entry.facts);
    }
}

/// Tagged images whose manifest, config or a layer is `digest` (or that list it as a child).
pub fn digest_hits(view: &View, digest: &Digest) -> Result<Vec<Hit>, String> {
    let mut collector = Collector::new(view);
    view.engine
        .visit_tagged(digest, |entry| {
            collector.add(&entry);
            true
        })
        .map_err(internal)?;
    Ok(collector.hits)
}

/// Every hit with its records (for a filter or a sort that needs them).
pub fn listed_all(view: &View, hits: &[Hit]) -> Result<Vec<Listed>, String> {
    let mut images = Vec::with_capacity(hits.len());
    for hit in hits {
        images.extend(hit.listed(view)?);
    }
    Ok(images)
}

/// A `PaginatedImagesResult` of `hits`, reading only the page's records.
pub fn hits_page(
    view: &View,
    mut hits: Vec<Hit>,
    page: Page,
    default: Sort,
) -> Result<Value, String> {
    let (sort, limit, offset) = page.checked(default)?;
    if sort == Sort::Downloads {
        return images_page(view, listed_all(view, &hits)?, page, default);
    }
    if sort == Sort::UpdateTime {
        // The comparator would recompute each update time at every comparison.
        let mut keyed: Vec<(Option<i64>, Hit)> =
            hits.drain(..).map(|hit| (hit.updated_ns(), hit)).collect();
        keyed.sort_by(|(ta, a), (tb, b)| tb.cmp(ta).then_with(|| a.by_name(b)));
        hits = keyed.into_iter().map(|(_, hit)| hit).collect();
    }
    let compare = |a: &Hit, b: &Hit| match sort {
        Sort::AlphabeticDsc => a.by_name(b).reverse(),
        Sort::UpdateTime => Ordering::Equal,
        _ => a.by_name(b),
    };
    let (page, mut info) = cut(hits, limit, offset, compare);
    let mut results = Vec::with_capacity(page.len());
    for hit in &page {
        if let Some(listed) = hit.listed(view)? {
            results.push(image_summary(view, &listed, SummaryOptions::default())?);
        }
    }
    info["ItemCount"] = json!(results.len());
    Ok(object([("Page", info), ("Results", results.into())]))
}

/// Tagged images whose manifest (or an index child, config or layer) contains `id` as a
/// substring (zot's match for anything that is not a whole digest).
pub fn images_containing(view: &View, id: &str) -> Result<Vec<Listed>, String> {
    let mut images = Vec::new();
    for mut listed in view.all_images(|_| true)? {
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

pub fn image_list_for_digest(view: &View, args: &ObjectAccessor<'_>) -> Result<Value, String> {
    let id = string_arg(args, "id");
    let page = Page::from_args(args);
    match id.parse::<Digest>() {
        Ok(digest) => hits_page(view, digest_hits(view, &digest)?, page, Sort::Relevance),
        Err(_) => images_page(view, images_containing(view, id)?, page, Sort::Relevance),
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
fn related_to(
    view: &View,
    layers: &BTreeSet<String>,
    relation: Relation,
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
        let mut collector = Collector::new(view);
        view.engine
            .visit_tagged(&digest, |entry| {
                if entry.role == DigestRole::Layer && collector.can_read(entry.repo) {
                    let at = (entry.repo.into(), entry.tag.into(), entry.manifest.into());
                    held.push((at, entry.facts));
                }
                true
            })
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

pub fn related(
    view: &View,
    args: &ObjectAccessor<'_>,
    relation: Relation,
) -> Result<Value, String> {
    let (repo, tag) = image_reference(string_arg(args, "image"))?;
    let name = repo
        .parse::<RepoName>()
        .map_err(|_| "repository not found".to_owned())?;
    if !view.can_read(name.as_str()) || !view.engine.repo_exists(&name).map_err(internal)? {
        return Err("repository not found".into());
    }
    let entry = view.tags(&name)?.iter().find(|e| e.tag == tag).cloned();
    let mut searched = match entry {
        Some(entry) => view.listed(&name, &entry)?,
        None => None,
    }
    .ok_or_else(|| format!("can't find image: {repo}:{tag}"))?;
    if let Some(text) = args.get("digest").and_then(|v| v.string().ok()) {
        let digest: Digest = text
            .parse()
            .map_err(|_| format!("image meta not found for digest {text}"))?;
        let meta = view
            .image(&name, &digest)?
            .ok_or_else(|| format!("image meta not found for digest {text}"))?;
        searched.manifests = vec![(digest, meta)];
    }
    let excluded: HashSet<String> = searched
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
    let mut collector = Collector::new(view);
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
                        && !excluded.contains(entry.manifest)
                    {
                        collector.add(&entry);
                    }
                    true
                })
                .map_err(internal)?;
            return hits_page(
                view,
                collector.hits,
                Page::from_args(args),
                Sort::UpdateTime,
            );
        }
    }
    let mut found = Vec::new();
    for layers in &layer_sets {
        related_to(view, layers, relation, &mut found)?;
    }
    found.retain(|((_, _, manifest), _)| !excluded.contains(manifest));
    if layer_sets.len() > 1 {
        found.sort_by(|(a, _), (b, _)| a.cmp(b));
    }
    for ((repo, tag, manifest), facts) in &found {
        collector.add(&Tagged {
            repo,
            tag,
            manifest,
            role: DigestRole::Layer,
            facts: *facts,
        });
    }
    hits_page(
        view,
        collector.hits,
        Page::from_args(args),
        Sort::UpdateTime,
    )
}
