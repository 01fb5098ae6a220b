//! Repository queries: `RepoListWithNewestImage`, `GlobalSearch`'s repository form,
//! `StarredRepos`, `BookmarkedRepos`, and the `RepoSummary` document.
//!
//! Rules: the candidates and their sort keys come from each repository's summary record
//! (one read per repository, no image read); documents are built for the page only.
//! `DownloadCount` is the sum over the repository's tags of their images' pulls (a digest
//! with two tags counts twice, as zot's), computed for every candidate only when the sort
//! needs it.
use std::cmp::Ordering;
use std::collections::HashSet;

use berth_storage::oci::RepoName;
use berth_storage::search::{Pref, RepoListing, RepoMeta};
use serde_json::Value;

use super::filter::Filter;
use super::images::{image_summary, platform_document, signatures, time_ns, SummaryOptions};
use super::page::{pick, select, Page, Sort};
use super::view::{internal, View};

/// zot's `RankRepoName`: lower is better, `None` excludes the repository.
///
/// Rules: allocates nothing (it runs once per readable repository); a query without `/`
/// that is not inside the name is refused before any other test.
pub fn rank(query: &str, repo: &str) -> Option<u64> {
    let query = query.trim_matches('/');
    if query.is_empty() && !repo.is_empty() {
        // Found at the start of the last part (RepoListWithNewestImage ranks every name so).
        return Some(1);
    }
    let wanted = query.split('/').count();
    if wanted == 1 && !occurs(repo.as_bytes(), query.as_bytes()) {
        // Every test below looks for `query` inside a part of `repo`, or for `repo` in it.
        return None;
    }
    if wanted > repo.split('/').count() {
        return None;
    }
    if query == repo {
        return Some(0);
    }
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let position = |haystack: &str, needle: &str| haystack.find(needle).map(|i| i as u64 + 1);
    if wanted == 1 {
        if let Some(i) = position(last, query) {
            return Some(i);
        }
        let first = repo.split('/').next().unwrap_or(repo);
        if let Some(i) = position(first, query) {
            return Some(i * 10);
        }
    }
    let prefix_matches = query
        .split('/')
        .take(wanted - 1)
        .zip(repo.split('/'))
        .all(|(w, p)| w == p);
    if prefix_matches {
        let wanted_last = query.rsplit('/').next().unwrap_or(query);
        if let Some(i) = position(last, wanted_last) {
            return Some(i);
        }
    }
    if repo.starts_with(query) {
        return Some(10);
    }
    position(repo, query).map(|i| i * 100)
}

/// Whether `needle` occurs in `haystack` (as `str::contains`). Names are short and one query
/// meets every name: a scan for the needle's first and last bytes, compared in full only
/// where both match, costs less than building a two-way searcher per name.
fn occurs(haystack: &[u8], needle: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (needle.first(), needle.last()) else {
        return true;
    };
    let Some(starts) = haystack.len().checked_sub(needle.len()) else {
        return false;
    };
    (0..=starts).any(|start| {
        haystack[start] == first
            && haystack[start + needle.len() - 1] == last
            && &haystack[start..start + needle.len()] == needle
    })
}

/// One candidate repository, borrowed from the listing (or list) it was found in: ranking
/// 10,000 repositories copies none of them.
#[derive(Clone, Copy)]
pub struct RepoHit<'a> {
    pub name: &'a RepoName,
    /// `None` for a repository without an image tag (starred or bookmarked lists keep them).
    pub meta: Option<&'a RepoMeta>,
    pub rank: u64,
    /// Pulls (sorting by `DOWNLOADS`) or stars (by `STARS`), read only for those sorts.
    pub count: u64,
}

/// Pulls over the repository's tags (signature tags excluded).
async fn downloads(view: &View, repo: &RepoName) -> Result<u64, String> {
    let mut total = 0;
    for entry in view.tags(repo).await?.iter() {
        if berth_storage::search::is_signature_tag(&entry.tag) {
            continue;
        }
        total += view
            .engine
            .pull_stats(repo, &entry.digest)
            .await
            .map_err(internal)?
            .count;
    }
    Ok(total)
}

async fn newest_signed(view: &View, hit: &RepoHit<'_>) -> Result<bool, String> {
    let Some(newest) = hit.meta.and_then(|m| m.newest.as_ref()) else {
        return Ok(false);
    };
    let Ok(digest) = newest.digest.parse() else {
        return Ok(false);
    };
    Ok(!signatures(view, hit.name, &digest).await?.is_empty())
}

/// Whether [`admitted`] admits every repository (no platform, signature, star or bookmark
/// condition): then the filter is not run at all.
fn admits_all(filter: &Filter) -> bool {
    filter.os.is_none()
        && filter.arch.is_none()
        && filter.signed != Some(true)
        && filter.starred.is_none()
        && filter.bookmarked.is_none()
}

/// Applies the repository filter (platforms of the summary, signed newest image, the caller's
/// stars and bookmarks).
async fn admitted(
    view: &View,
    filter: &Filter,
    hit: &RepoHit<'_>,
    prefs: &Prefs,
) -> Result<bool, String> {
    // Without an OS or architecture wanted, every platform list passes (filter.rs).
    if (filter.os.is_some() || filter.arch.is_some())
        && !filter.admits_stored(hit.meta.iter().flat_map(|m| m.platforms.iter()))
    {
        return Ok(false);
    }
    if filter
        .starred
        .is_some_and(|want| want != prefs.starred.contains(hit.name.as_str()))
    {
        return Ok(false);
    }
    if filter
        .bookmarked
        .is_some_and(|want| want != prefs.bookmarked.contains(hit.name.as_str()))
    {
        return Ok(false);
    }
    if filter.signed == Some(true) && !newest_signed(view, hit).await? {
        return Ok(false);
    }
    Ok(true)
}

/// The caller's stars and bookmarks.
pub struct Prefs {
    pub starred: HashSet<String>,
    pub bookmarked: HashSet<String>,
}

impl Prefs {
    pub async fn of(view: &View) -> Result<Prefs, String> {
        Ok(Prefs {
            starred: Prefs::read(view, Pref::Star).await?,
            bookmarked: Prefs::read(view, Pref::Bookmark).await?,
        })
    }

    async fn read(view: &View, pref: Pref) -> Result<HashSet<String>, String> {
        match &view.user {
            Some(user) => Ok(view
                .engine
                .prefs_of(user, pref)
                .await
                .map_err(internal)?
                .into_iter()
                .map(|r| r.to_string())
                .collect()),
            None => Ok(HashSet::new()),
        }
    }
}

fn updated(hit: &RepoHit<'_>) -> Option<i64> {
    hit.meta
        .and_then(|m| m.newest.as_ref())
        .and_then(|n| n.updated_ns)
}

/// A hit's sort key, computed once per hit: the criterion as one number (ascending), then
/// the name (descending for `ALPHABETIC_DSC`). Equal keys keep input order ([`select`]).
struct Key<'a> {
    primary: i128,
    name: &'a str,
}

impl<'a> Key<'a> {
    fn of(sort: Sort, hit: &RepoHit<'a>) -> Key<'a> {
        let primary = match sort {
            Sort::Relevance => i128::from(hit.rank),
            // Newest first; a repository without an update time after every dated one.
            Sort::UpdateTime => updated(hit).map_or(i128::MAX, |ns| -i128::from(ns)),
            // Most first.
            Sort::Downloads | Sort::Stars => -i128::from(hit.count),
            _ => 0,
        };
        Key {
            primary,
            name: hit.name.as_str(),
        }
    }
}

fn compare(sort: Sort) -> impl FnMut(&Key, &Key) -> Ordering {
    move |a, b| {
        a.primary.cmp(&b.primary).then_with(|| match sort {
            Sort::AlphabeticDsc => b.name.cmp(a.name),
            _ => a.name.cmp(b.name),
        })
    }
}

/// The `RepoSummary` of one repository.
pub async fn repo_summary(view: &View, hit: &RepoHit<'_>, prefs: &Prefs) -> Result<Value, String> {
    let name = hit.name.as_str();
    let none = RepoMeta::default();
    let meta: &RepoMeta = hit.meta.unwrap_or(&none);
    let newest = match &meta.newest {
        Some(newest) => {
            let entry = view
                .tags(hit.name)
                .await?
                .iter()
                .find(|e| e.tag == newest.tag)
                .cloned();
            let listed = match entry {
                Some(entry) => view.listed(hit.name, &entry).await?,
                None => None,
            };
            match listed {
                Some(listed) => image_summary(view, &listed, SummaryOptions::default()).await?,
                None => Value::Null,
            }
        }
        None => Value::Null,
    };
    let platforms: Vec<Value> = meta.platforms.iter().map(platform_document).collect();
    let vendors: Vec<Value> = meta
        .vendors
        .iter()
        .map(|v| Value::from(v.as_str()))
        .collect();
    // Built field by field: `json!` would copy the `NewestImage` document it is given.
    let mut summary = serde_json::Map::with_capacity(11);
    let mut field = |key: &str, value: Value| summary.insert(key.to_owned(), value);
    field("Name", name.into());
    field("LastUpdated", updated(hit).map_or(Value::Null, time_ns));
    field("Size", meta.size.to_string().into());
    field("Platforms", platforms.into());
    field("Vendors", vendors.into());
    field("NewestImage", newest);
    field("DownloadCount", downloads(view, hit.name).await?.into());
    field(
        "StarCount",
        view.engine
            .star_count(hit.name)
            .await
            .map_err(internal)?
            .into(),
    );
    field("IsBookmarked", prefs.bookmarked.contains(name).into());
    field("IsStarred", prefs.starred.contains(name).into());
    field("Rank", hit.rank.into());
    Ok(Value::Object(summary))
}

/// Filters, sorts and pages `hits`; returns zot's `PaginatedReposResult` parts.
pub async fn page_of(
    view: &View,
    mut hits: Vec<RepoHit<'_>>,
    filter: &Filter,
    page: Page,
    default: Sort,
) -> Result<(Vec<Value>, Value), String> {
    let (sort, limit, offset) = page.checked_for_repos(default)?;
    let prefs = Prefs::of(view).await?;
    if !admits_all(filter) {
        let mut kept = Vec::with_capacity(hits.len());
        for hit in hits.drain(..) {
            if admitted(view, filter, &hit, &prefs).await? {
                kept.push(hit);
            }
        }
        hits = kept;
    }
    match sort {
        Sort::Downloads => {
            let downloads = view.engine.downloads_by_repo().await.map_err(internal)?;
            for hit in &mut hits {
                hit.count = downloads.get(hit.name.as_str()).copied().unwrap_or(0);
            }
        }
        Sort::Stars => {
            let stars = view.engine.star_counts().await.map_err(internal)?;
            for hit in &mut hits {
                hit.count = stars.get(hit.name.as_str()).copied().unwrap_or(0);
            }
        }
        _ => {}
    }
    let keys: Vec<Key> = hits.iter().map(|hit| Key::of(sort, hit)).collect();
    let (positions, info) = select(&keys, limit, offset, compare(sort));
    drop(keys);
    let page = pick(hits, &positions);
    let mut results = Vec::with_capacity(page.len());
    for hit in &page {
        results.push(repo_summary(view, hit, &prefs).await?);
    }
    Ok((results, info))
}

/// Every repository of `listing` (the caller's readable ones) ranked against `query`
/// (`""` ranks 1).
pub fn search<'a>(listing: &'a RepoListing, query: &str) -> Vec<RepoHit<'a>> {
    // An empty query ranks every repository.
    let mut hits = match query.trim_matches('/').is_empty() {
        true => Vec::with_capacity(listing.len()),
        false => Vec::new(),
    };
    for (name, meta) in listing.iter() {
        if let Some(rank) = rank(query, name.as_str()) {
            hits.push(RepoHit {
                name,
                meta: Some(meta),
                rank,
                count: 0,
            });
        }
    }
    hits
}

/// A repository outside the shared listing, with its summary (none without an image tag).
pub type Owned = (RepoName, Option<RepoMeta>);

/// Hits borrowing from `repos`.
pub fn hits_of(repos: &[Owned]) -> Vec<RepoHit<'_>> {
    repos
        .iter()
        .map(|(name, meta)| RepoHit {
            name,
            meta: meta.as_ref(),
            rank: 0,
            count: 0,
        })
        .collect()
}

/// The readable repositories of the caller's stars or bookmarks (with or without images).
pub async fn preferred(view: &View, pref: Pref) -> Result<Vec<Owned>, String> {
    let Some(user) = &view.user else {
        return Ok(Vec::new());
    };
    let mut repos = Vec::new();
    for name in view.engine.prefs_of(user, pref).await.map_err(internal)? {
        if !view.can_read(name.as_str())
            || !view.engine.repo_exists(&name).await.map_err(internal)?
        {
            continue;
        }
        let meta = view.engine.repo_meta(&name).await.map_err(internal)?;
        repos.push((name, meta));
    }
    Ok(repos)
}

#[cfg(test)]
mod tests {
    use super::{occurs, rank};

    #[test]
    fn ranks_follow_zot() {
        assert_eq!(rank("bar", "foo/bar"), Some(1));
        assert_eq!(rank("bar", "bar"), Some(0));
        assert_eq!(rank("bar", "bar/baz"), Some(10));
        assert_eq!(rank("bar", "x/bar/y"), Some(300));
        assert_eq!(rank("foo/ba", "foo/bar"), Some(1));
        assert_eq!(rank("", "anything"), Some(1));
        assert_eq!(rank("/", "a/b"), Some(1));
        assert_eq!(rank("a/b/c", "a/b"), None);
        assert_eq!(rank("zzz", "foo/bar"), None);
        assert_eq!(
            rank("a/b/c", "a/b/x/yc"),
            Some(2),
            "prefix, then the last part"
        );
        assert_eq!(rank("o/b", "foo/bar"), Some(300));
        assert_eq!(rank("x/ba", "foo/bar"), None);
        assert_eq!(rank("foo", "foo/bar"), Some(10), "the first part");
        assert_eq!(rank("/bar/", "foo/bar"), Some(1));
    }

    #[test]
    fn occurs_is_contains() {
        let names = ["team-05/app-0123", "a", "", "aa", "abcabd", "x/app-01"];
        let needles = [
            "app-01",
            "",
            "a",
            "aa",
            "abd",
            "bca",
            "team-05/app-01234",
            "01",
        ];
        for name in names {
            for needle in needles {
                assert_eq!(
                    occurs(name.as_bytes(), needle.as_bytes()),
                    name.contains(needle),
                    "{name:?} {needle:?}"
                );
            }
        }
    }
}
