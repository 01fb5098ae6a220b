//! The `Query` fields: each reads its arguments, asks the view, and answers with a document
//! shaped like its type. Errors are zot's texts (they reach the client as `errors[].message`
//! with `data: null`).
use std::cmp::Ordering;
use std::sync::Arc;

use async_graphql::dynamic::{ObjectAccessor, ResolverContext};
use berth_storage::oci::{Digest, RepoName};
use berth_storage::search::Pref;
use serde_json::{json, Value};

use super::digests::{self, Relation};
use super::filter::Filter;
use super::hits::{self, Pager};
use super::images::{
    image_summary, listed_updated, object, platform_of, referrers, SummaryOptions,
};
use super::limits::MAX_SEARCH_TEXT;
use super::page::{cut, Page, Sort};
use super::repos;
use super::view::{internal, Listed, View};

const CVE_DISABLED: &str = "cve search is disabled";
const REPO_NOT_FOUND: &str = "repo metadata not found for given repo name";

/// Answers the `Query` field `name`.
pub async fn query(name: &str, ctx: &ResolverContext<'_>) -> async_graphql::Result<Value> {
    let view = ctx.data::<Arc<View>>()?;
    let args = &ctx.args;
    let answer = match name {
        "CVEListForImage"
        | "CVEDiffListForImages"
        | "ImageListForCVE"
        | "ImageListWithCVEFixed" => Err(CVE_DISABLED.to_owned()),
        "ImageListForDigest" => digests::image_list_for_digest(view, args).await,
        "RepoListWithNewestImage" => repo_list(view, args).await,
        "ImageList" => image_list(view, args).await,
        "ExpandedRepoInfo" => expanded_repo_info(view, args).await,
        "GlobalSearch" => global_search(view, args).await,
        "DerivedImageList" => digests::related(view, args, Relation::Derived).await,
        "BaseImageList" => digests::related(view, args, Relation::Base).await,
        "Image" => image(view, args).await,
        "Referrers" => referrers_query(view, args).await,
        "StarredRepos" => preferred(view, args, Pref::Star).await,
        "BookmarkedRepos" => preferred(view, args, Pref::Bookmark).await,
        other => Err(format!("{other} is not served")),
    };
    answer.map_err(|message| {
        view.failed
            .lock()
            .expect("failed list lock is never poisoned")
            .push(name.to_owned());
        async_graphql::Error::new(message)
    })
}

pub(super) fn string_arg<'a>(args: &'a ObjectAccessor<'_>, name: &str) -> &'a str {
    args.get(name)
        .and_then(|v| v.string().ok())
        .unwrap_or_default()
}

pub(super) async fn images_page(
    view: &View,
    images: Vec<Listed>,
    page: Page,
    default: Sort,
) -> Result<Value, String> {
    let (sort, limit, offset) = page.checked(default)?;
    let mut keyed: Vec<(Listed, u64)> = images.into_iter().map(|l| (l, 0)).collect();
    if sort == Sort::Downloads {
        for (listed, downloads) in &mut keyed {
            *downloads = view
                .engine
                .pull_stats(&listed.repo, &listed.digest)
                .await
                .map_err(internal)?
                .count;
        }
    }
    let by_name = |a: &Listed, b: &Listed| {
        a.repo
            .as_str()
            .cmp(b.repo.as_str())
            .then_with(|| a.tag.cmp(&b.tag))
    };
    let compare = move |(a, da): &(Listed, u64), (b, db): &(Listed, u64)| -> Ordering {
        match sort {
            Sort::AlphabeticDsc => by_name(a, b).reverse(),
            Sort::UpdateTime => listed_updated(b)
                .cmp(&listed_updated(a))
                .then_with(|| by_name(a, b)),
            Sort::Downloads => db.cmp(da).then_with(|| by_name(a, b)),
            _ => by_name(a, b),
        }
    };
    let (page, info) = cut(keyed, limit, offset, compare);
    let mut results = Vec::with_capacity(page.len());
    for (listed, _) in &page {
        results.push(image_summary(view, listed, SummaryOptions::default()).await?);
    }
    Ok(object([("Page", info), ("Results", results.into())]))
}

/// Keeps the images the filter admits; an index keeps only its matching manifests.
async fn filtered(
    view: &View,
    images: Vec<Listed>,
    filter: &Filter,
) -> Result<Vec<Listed>, String> {
    let mut kept = Vec::with_capacity(images.len());
    for mut listed in images {
        if listed.meta.index && !listed.manifests.is_empty() {
            listed.manifests.retain(|(_, meta)| {
                let (os, arch) = platform_of(meta);
                filter.admits_platform((&os, &arch))
            });
            if listed.manifests.is_empty() {
                continue;
            }
        } else {
            let platforms: Vec<(String, String)> = listed
                .manifests
                .iter()
                .map(|(_, m)| platform_of(m))
                .collect();
            if !filter.admits_platforms(platforms.iter().map(|(o, a)| (o.as_str(), a.as_str()))) {
                continue;
            }
        }
        if filter.signed == Some(true)
            && super::images::signatures(view, &listed.repo, &listed.digest)
                .await?
                .is_empty()
        {
            continue;
        }
        kept.push(listed);
    }
    Ok(kept)
}

async fn image_list(view: &View, args: &ObjectAccessor<'_>) -> Result<Value, String> {
    let repo = string_arg(args, "repo");
    let page = Page::from_args(args);
    let images = match repo {
        "" => view.all_images(|_| true).await?,
        name => match name.parse::<RepoName>() {
            Ok(name) if view.can_read(name.as_str()) => view.images_of(&name).await?,
            _ => Vec::new(),
        },
    };
    images_page(view, images, page, Sort::Relevance).await
}

async fn expanded_repo_info(view: &View, args: &ObjectAccessor<'_>) -> Result<Value, String> {
    let Ok(repo) = string_arg(args, "repo").parse::<RepoName>() else {
        return Err(REPO_NOT_FOUND.into());
    };
    if !view.can_read(repo.as_str()) {
        // As zot: nothing for a potential attacker, and no error either.
        return Ok(json!({"Images": null, "Summary": null}));
    }
    if !view.engine.repo_exists(&repo).await.map_err(internal)? {
        return Err(REPO_NOT_FOUND.into());
    }
    let mut images = view.images_of(&repo).await?;
    images.sort_by(|a, b| {
        listed_updated(b)
            .cmp(&listed_updated(a))
            .then_with(|| a.tag.cmp(&b.tag))
    });
    let options = SummaryOptions { deletable: true };
    let mut documents = Vec::with_capacity(images.len());
    for listed in &images {
        documents.push(image_summary(view, listed, options).await?);
    }
    let prefs = repos::Prefs::of(view).await?;
    let repo = [(
        repo.clone(),
        view.engine.repo_meta(&repo).await.map_err(internal)?,
    )];
    let hit = repos::hits_of(&repo)[0];
    Ok(object([
        ("Images", documents.into()),
        ("Summary", repos::repo_summary(view, &hit, &prefs).await?),
    ]))
}

/// A `PaginatedReposResult` of `hits`, unfiltered, newest first by default.
async fn repos_result(
    view: &View,
    args: &ObjectAccessor<'_>,
    hits: Vec<repos::RepoHit<'_>>,
) -> Result<Value, String> {
    let page = Page::from_args(args);
    let (results, info) =
        repos::page_of(view, hits, &Filter::default(), page, Sort::UpdateTime).await?;
    Ok(object([("Page", info), ("Results", results.into())]))
}

async fn repo_list(view: &View, args: &ObjectAccessor<'_>) -> Result<Value, String> {
    let listing = view.readable().await?;
    repos_result(view, args, repos::search(&listing, "")).await
}

async fn preferred(view: &View, args: &ObjectAccessor<'_>, pref: Pref) -> Result<Value, String> {
    let preferred = repos::preferred(view, pref).await?;
    repos_result(view, args, repos::hits_of(&preferred)).await
}

fn check_global_search(query: &str, page: Page) -> Result<(), String> {
    if query.len() > MAX_SEARCH_TEXT {
        return Err(format!(
            "max string size limit exceeded for query parameter. max={MAX_SEARCH_TEXT} current={} request parameter has invalid value",
            query.len()
        ));
    }
    if page.limit < 0 {
        return Err(
            "requested page limit parameter can't be negative request parameter has invalid value"
                .into(),
        );
    }
    if page.offset < 0 {
        return Err(
            "requested page offset parameter can't be negative request parameter has invalid value"
                .into(),
        );
    }
    Ok(())
}

/// A `GlobalSearchResult` of images from a `PaginatedImagesResult`.
fn images_found(mut result: Value) -> Value {
    object([
        ("Page", result["Page"].take()),
        ("Images", result["Results"].take()),
        ("Repos", Value::Null),
        ("Layers", json!([])),
    ])
}

async fn global_search(view: &View, args: &ObjectAccessor<'_>) -> Result<Value, String> {
    let raw = string_arg(args, "query");
    let page = Page::from_args(args);
    check_global_search(raw, page)?;
    let filter = Filter::from_args(args)?;
    let query = raw.trim().trim_matches('/').to_lowercase();
    let images = if query.starts_with("sha256:") {
        match query.parse::<Digest>() {
            Ok(digest) if filter == Filter::default() => {
                let mut pager = Pager::new(view, page, Sort::Relevance)?;
                digests::scan(view, &digest, &mut pager).await?;
                return Ok(images_found(pager.finish().await?));
            }
            Ok(digest) => {
                let mut pager = Pager::everything(view);
                digests::scan(view, &digest, &mut pager).await?;
                hits::listed_all(view, &pager.into_hits()).await?
            }
            Err(_) => digests::images_containing(view, &query).await?,
        }
    } else if !query.contains(':') && !query.contains('@') {
        let listing = view.readable().await?;
        let hits = repos::search(&listing, &query);
        let (results, info) = repos::page_of(view, hits, &filter, page, Sort::Relevance).await?;
        return Ok(object([
            ("Page", info),
            ("Images", json!([])),
            ("Repos", results.into()),
            ("Layers", json!([])),
        ]));
    } else {
        match query.split_once(':') {
            Some((repo, tag)) if !repo.is_empty() => {
                let parts: Vec<&str> = query.split(':').collect();
                if parts.len() != 2 {
                    return Err("failed to parse search text, invalid format invalid image reference format, use [repo:tag] or [repo@digest]".into());
                }
                let (repo, tag) = (repo.trim(), tag.trim());
                match repo.parse::<RepoName>() {
                    Ok(name) if view.can_read(name.as_str()) => view
                        .images_of(&name)
                        .await?
                        .into_iter()
                        .filter(|l| l.tag.starts_with(tag))
                        .collect(),
                    _ => Vec::new(),
                }
            }
            Some(("", tag)) if !tag.is_empty() => view
                .all_images(|_| true)
                .await?
                .into_iter()
                .filter(|l| l.tag.to_lowercase().contains(tag))
                .collect(),
            _ => return Err("invalid search query".into()),
        }
    };
    let images = filtered(view, images, &filter).await?;
    let result = images_page(view, images, page, Sort::Relevance).await?;
    Ok(images_found(result))
}

/// `repo:tag` of the `image` argument (zot: the first `:`; no `@digest` form).
pub(super) fn image_reference(image: &str) -> Result<(&str, &str), String> {
    match image.split_once(':') {
        Some((repo, tag)) if !tag.is_empty() => Ok((repo, tag)),
        _ => Err("no reference provided".into()),
    }
}

async fn image(view: &View, args: &ObjectAccessor<'_>) -> Result<Value, String> {
    let (repo, tag) = image_reference(string_arg(args, "image"))?;
    let name = repo
        .parse::<RepoName>()
        .map_err(|_| REPO_NOT_FOUND.to_owned())?;
    if !view.can_read(name.as_str()) || !view.engine.repo_exists(&name).await.map_err(internal)? {
        return Err(REPO_NOT_FOUND.into());
    }
    let entry = view
        .tags(&name)
        .await?
        .iter()
        .find(|e| e.tag == tag)
        .cloned();
    let listed = match entry {
        Some(entry) => view.listed(&name, &entry).await?,
        None => None,
    };
    let listed = listed.ok_or_else(|| format!("can't find image: {repo}:{tag}"))?;
    image_summary(view, &listed, SummaryOptions::default()).await
}

async fn referrers_query(view: &View, args: &ObjectAccessor<'_>) -> Result<Value, String> {
    let text = string_arg(args, "digest");
    let digest: Digest = text.parse().map_err(|_| {
        format!(
            "bad digest string from request '{text}' {}",
            digest_problem(text)
        )
    })?;
    let name = string_arg(args, "repo")
        .parse::<RepoName>()
        .map_err(|_| REPO_NOT_FOUND.to_owned())?;
    if !view.can_read(name.as_str()) || !view.engine.repo_exists(&name).await.map_err(internal)? {
        return Err(REPO_NOT_FOUND.into());
    }
    let types: Vec<String> = match args.get("type").map(|v| v.list()) {
        Some(Ok(list)) => list
            .iter()
            .filter_map(|v| v.string().ok().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    Ok(Value::Array(referrers(view, &name, &digest, &types).await?))
}

/// What go-digest's `Validate` says of a digest that does not parse (zot quotes it).
fn digest_problem(text: &str) -> &'static str {
    const FORMAT: &str = "invalid checksum digest format";
    let Some((algorithm, encoded)) = text
        .split_once(':')
        .filter(|(a, e)| !a.is_empty() && !e.is_empty())
    else {
        return FORMAT;
    };
    let hex_length = match algorithm {
        "sha256" | "blake3" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return "unsupported digest algorithm",
    };
    if encoded.len() != hex_length {
        return "invalid checksum digest length";
    }
    FORMAT
}

#[cfg(test)]
mod tests {
    use super::digest_problem;

    #[test]
    fn bad_digests_are_described_as_go_digest_does() {
        assert_eq!(
            digest_problem("not-a-digest"),
            "invalid checksum digest format"
        );
        assert_eq!(
            digest_problem("sha256:abc"),
            "invalid checksum digest length"
        );
        assert_eq!(digest_problem("md5:abc"), "unsupported digest algorithm");
        let upper = format!("sha256:{}", "A".repeat(64));
        assert_eq!(digest_problem(&upper), "invalid checksum digest format");
    }
}
