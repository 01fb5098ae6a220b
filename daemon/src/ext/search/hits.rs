//! Tagged images found through the engine's `tagged` family, paged while they stream in.
//!
//! Rules: entries arrive in (repository, tag, manifest) order, so one tagged image's entries
//! are adjacent; an image is complete when the next one starts. Every readable image is
//! counted (`TotalCount`), but only the ones the page can still need are kept: the window
//! at `offset` for name order, the best `offset + limit` for update time (a bounded heap),
//! everything for the sorts that need each image's records (downloads) or the end of the
//! list (descending names). Entries of repositories the caller may not read are skipped
//! before they are counted. Records are read for the page only.
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use berth_storage::oci::RepoName;
use berth_storage::search::{Tagged, TaggedFacts};
use serde_json::{json, Value};

use super::images::{image_summary, object, SummaryOptions};
use super::page::{Page, Sort};
use super::resolve::images_page;
use super::view::{Listed, View};

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

    fn is(&self, repo: &str, tag: &str) -> bool {
        let at = self.at.as_bytes();
        at.len() == repo.len() + 1 + tag.len()
            && at.starts_with(repo.as_bytes())
            && at[repo.len()] == 0
            && at.ends_with(tag.as_bytes())
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

    fn add(&mut self, manifest: &str, facts: TaggedFacts) {
        if facts.whole {
            self.whole = Some(facts);
            self.parts.clear();
        } else if self.whole.is_none() && !self.parts.iter().any(|(m, _)| m == manifest) {
            self.parts.push((manifest.to_owned(), facts));
        }
    }

    /// A copy to keep (the pager reuses its current hit's buffers).
    fn kept(&mut self) -> Hit {
        Hit {
            at: self.at.clone(),
            whole: self.whole,
            parts: std::mem::take(&mut self.parts),
        }
    }

    /// The image with its records (`None` when its tag moved or went away meanwhile).
    async fn listed(&self, view: &View) -> Result<Option<Listed>, String> {
        let repo: RepoName = self
            .repo()
            .parse()
            .map_err(|_| "internal error".to_owned())?;
        let tags = view.tags(&repo).await?;
        let Some(entry) = tags.iter().find(|entry| entry.tag == self.tag()) else {
            return Ok(None);
        };
        let Some(mut listed) = view.listed(&repo, entry).await? else {
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

/// A hit ranked by update time: greater is worse (older, then later by name), so a max-heap
/// keeps the worst of the best on top.
struct Ranked {
    updated: Option<i64>,
    hit: Hit,
}

impl Ranked {
    fn key(&self) -> (Reverse<Option<i64>>, &str) {
        (Reverse(self.updated), &self.hit.at)
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// What the pager keeps.
enum Keep {
    /// Every hit, in arrival order.
    All(Vec<Hit>),
    /// The hits numbered `from..to` in arrival (name) order.
    Window {
        from: usize,
        to: usize,
        hits: Vec<Hit>,
    },
    /// The `best` newest hits.
    Newest {
        best: usize,
        heap: BinaryHeap<Ranked>,
    },
}

/// Counts and pages hits as their entries stream in (see the module's rules).
pub struct Pager<'a> {
    view: &'a View,
    page: Page,
    default: Sort,
    sort: Sort,
    limit: usize,
    offset: usize,
    /// The last repository asked about, and the answer.
    readable: Option<(String, bool)>,
    current: Option<Hit>,
    total: usize,
    keep: Keep,
}

impl<'a> Pager<'a> {
    pub fn new(view: &'a View, page: Page, default: Sort) -> Result<Pager<'a>, String> {
        let (sort, limit, offset) = page.checked(default)?;
        let everything = limit == 0 && offset == 0;
        let keep = match sort {
            Sort::UpdateTime => Keep::Newest {
                best: match everything {
                    true => usize::MAX,
                    false => offset.saturating_add(limit),
                },
                heap: BinaryHeap::new(),
            },
            Sort::Downloads | Sort::AlphabeticDsc => Keep::All(Vec::new()),
            _ if everything => Keep::All(Vec::new()),
            _ => Keep::Window {
                from: offset,
                to: offset.saturating_add(limit),
                hits: Vec::new(),
            },
        };
        Ok(Pager {
            view,
            page,
            default,
            sort,
            limit,
            offset,
            readable: None,
            current: None,
            total: 0,
            keep,
        })
    }

    /// A pager that keeps every hit (for a filter that needs each image's records).
    pub fn everything(view: &'a View) -> Pager<'a> {
        Pager::new(view, Page::default(), Sort::Relevance).expect("the default page is valid")
    }

    pub fn can_read(&mut self, repo: &str) -> bool {
        let (last, answer) = self.readable.get_or_insert_with(|| (String::new(), false));
        if last.is_empty() || last != repo {
            last.clear();
            last.push_str(repo);
            *answer = self.view.can_read(repo);
        }
        *answer
    }

    /// One entry, in (repository, tag, manifest) order.
    pub fn add(&mut self, entry: &Tagged<'_>) {
        if !self.can_read(entry.repo) {
            return;
        }
        if !self
            .current
            .as_ref()
            .is_some_and(|hit| hit.is(entry.repo, entry.tag))
        {
            self.close();
            let current = self.current.get_or_insert_with(|| Hit {
                at: String::new(),
                whole: None,
                parts: Vec::new(),
            });
            current.at.clear();
            current.at.push_str(entry.repo);
            current.at.push('\0');
            current.at.push_str(entry.tag);
            current.whole = None;
            current.parts.clear();
        }
        let current = self.current.as_mut().expect("opened above");
        current.add(entry.manifest, entry.facts);
    }

    /// Counts the current hit and keeps it if the page may need it.
    fn close(&mut self) {
        let Some(current) = self.current.as_mut().filter(|hit| !hit.at.is_empty()) else {
            return;
        };
        let ordinal = self.total;
        self.total += 1;
        match &mut self.keep {
            Keep::All(hits) => hits.push(current.kept()),
            Keep::Window { from, to, hits } => {
                if (*from..*to).contains(&ordinal) {
                    hits.push(current.kept());
                }
            }
            Keep::Newest { best, heap } => {
                let updated = current.updated_ns();
                let better = heap.len() < *best
                    || heap
                        .peek()
                        .is_some_and(|worst| (Reverse(updated), current.at.as_str()) < worst.key());
                if better {
                    heap.push(Ranked {
                        updated,
                        hit: current.kept(),
                    });
                    if heap.len() > *best {
                        heap.pop();
                    }
                }
            }
        }
        current.at.clear();
    }

    /// Every hit (a pager made by [`Pager::everything`]).
    pub fn into_hits(mut self) -> Vec<Hit> {
        self.close();
        match self.keep {
            Keep::All(hits) | Keep::Window { hits, .. } => hits,
            Keep::Newest { heap, .. } => {
                heap.into_sorted_vec().into_iter().map(|r| r.hit).collect()
            }
        }
    }

    /// The `PaginatedImagesResult`: the page's records read, its summaries built.
    pub async fn finish(mut self) -> Result<Value, String> {
        self.close();
        let (view, total) = (self.view, self.total);
        let page: Vec<Hit> = match self.keep {
            Keep::All(hits) if self.sort == Sort::Downloads => {
                return images_page(
                    view,
                    listed_all(view, &hits).await?,
                    self.page,
                    self.default,
                )
                .await;
            }
            Keep::All(mut hits) => {
                if self.sort == Sort::AlphabeticDsc {
                    hits.reverse();
                }
                match (self.limit, self.offset) {
                    (0, 0) => hits,
                    (limit, offset) => hits.into_iter().skip(offset).take(limit).collect(),
                }
            }
            Keep::Window { hits, .. } => hits,
            Keep::Newest { heap, .. } => heap
                .into_sorted_vec()
                .into_iter()
                .skip(self.offset)
                .map(|ranked| ranked.hit)
                .collect(),
        };
        let mut results = Vec::with_capacity(page.len());
        for hit in &page {
            if let Some(listed) = hit.listed(view).await? {
                results.push(image_summary(view, &listed, SummaryOptions::default()).await?);
            }
        }
        let info = json!({"TotalCount": total, "ItemCount": results.len()});
        Ok(object([("Page", info), ("Results", results.into())]))
    }
}

/// Every hit with its records (for a filter or a sort that needs them).
pub async fn listed_all(view: &View, hits: &[Hit]) -> Result<Vec<Listed>, String> {
    let mut images = Vec::with_capacity(hits.len());
    for hit in hits {
        images.extend(hit.listed(view).await?);
    }
    Ok(images)
}
