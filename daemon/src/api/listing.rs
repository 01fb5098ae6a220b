//! Read-only listings: `/v2/`, extension discovery (what the extension list says), the
//! catalog, tag lists and referrers.
//! Page sizes come from the client but are clamped: no allocation is sized by a query value.
//! With `http.accessControl` the catalog lists only the repositories the caller may read.

use berth_storage::oci::{media_types, Digest, RepoName};
use hyper::{header, Response, StatusCode};
use serde_json::json;

use super::{body::json_response, error::ApiError, Body, Ctx, Query, PAGE_MAX_ENTRIES};
use crate::auth::access;

pub fn base() -> Response<Body> {
    let mut response = json_response(StatusCode::OK, "application/json", json!({}));
    response.headers_mut().insert(
        "Docker-Distribution-API-Version",
        header::HeaderValue::from_static("registry/2.0"),
    );
    response
}

/// The extension list: zot's `_zot` entry and berth's `_berth` entry with the endpoints the
/// extensions list now (ext/mod.rs), or `[]`, never null.
pub fn discover(ctx: &Ctx) -> Response<Body> {
    json_response(
        StatusCode::OK,
        "application/json",
        json!({ "extensions": ctx.extensions.discover(ctx) }),
    )
}

/// `n` as a page size: absent means the maximum page; negative or not a number is refused;
/// above the maximum it is clamped.
fn page_size(query: &Query) -> Result<usize, ApiError> {
    match query.get("n") {
        None | Some("") => Ok(PAGE_MAX_ENTRIES),
        Some(text) => {
            let n: u64 = text
                .parse()
                .map_err(|_| ApiError::PaginationNumberInvalid(format!("n={text}")))?;
            Ok(n.min(PAGE_MAX_ENTRIES as u64) as usize)
        }
    }
}

/// Adds `Link: <path?n=..&last=..>; rel="next"` when `items` holds one more entry than the
/// page (the probe entry is removed).
fn paginate<T: AsRef<str>>(items: &mut Vec<T>, n: usize, path: &str) -> Option<String> {
    if items.len() <= n {
        return None;
    }
    items.truncate(n);
    let last = items
        .last()
        .map(|l| l.as_ref().to_owned())
        .unwrap_or_default();
    let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
    Some(format!("<{path}?n={n}&last={last}>; rel=\"next\""))
}

fn with_link(mut response: Response<Body>, link: Option<String>) -> Response<Body> {
    if let Some(link) = link {
        let value = header::HeaderValue::from_str(&link).expect("link is built from valid names");
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

/// The catalog, filtered to the repositories `user` may read when access control is on and
/// to those in the scopes of the API key `key` when it has any (the pages then walk the
/// index until they are full or it ends).
pub async fn catalog(
    ctx: &Ctx,
    query: &Query,
    user: Option<&str>,
    key: Option<&crate::auth::apikey::KeyGrant>,
) -> Result<Response<Body>, ApiError> {
    let n = page_size(query)?;
    let mut last = query
        .get("last")
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    let mut repos: Vec<String> = Vec::new();
    loop {
        let batch = ctx.engine.catalog(last.as_deref(), n + 1).await?;
        let exhausted = batch.len() <= n;
        last = batch.last().map(|repo| repo.to_string());
        repos.extend(
            batch
                .into_iter()
                .filter(|repo| {
                    access::can_read(ctx, user, repo) && crate::auth::apikey::in_scope(key, repo)
                })
                .map(|repo| repo.to_string()),
        );
        if exhausted || repos.len() > n {
            break;
        }
    }
    let link = paginate(&mut repos, n, "/v2/_catalog");
    let body = json!({ "repositories": repos });
    Ok(with_link(
        json_response(StatusCode::OK, "application/json", body),
        link,
    ))
}

pub async fn tags(ctx: &Ctx, name: &RepoName, query: &Query) -> Result<Response<Body>, ApiError> {
    let n = page_size(query)?;
    if !ctx.engine.repo_exists(name).await? {
        return Err(ApiError::NameUnknown(name.to_string()));
    }
    let last = query.get("last").filter(|l| !l.is_empty());
    let mut tags: Vec<String> = ctx
        .engine
        .list_tags(name, last, n + 1)
        .await?
        .into_iter()
        .map(|t| t.to_string())
        .collect();
    let link = paginate(&mut tags, n, &format!("/v2/{name}/tags/list"));
    let body = json!({ "name": name.to_string(), "tags": tags });
    Ok(with_link(
        json_response(StatusCode::OK, "application/json", body),
        link,
    ))
}

/// Always an image index (200), even for an unknown repository or subject: the spec forbids
/// a 404 from a registry that supports the referrers API.
pub async fn referrers(
    ctx: &Ctx,
    name: &RepoName,
    digest: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let subject: Digest = digest
        .parse()
        .map_err(|e| ApiError::DigestInvalid(format!("{digest}: {e}")))?;
    let filters: Vec<String> = query
        .all("artifactType")
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    // A mirror never waits on upstream here: what is stored now, refreshed behind.
    if let Some(sync) = &ctx.sync {
        sync.refresh_referrers(name, &subject);
    }
    let descriptors = ctx.engine.referrers(name, &subject, &filters).await?;
    let body = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": descriptors,
    });
    let mut response = json_response(StatusCode::OK, media_types::OCI_INDEX, body);
    if !filters.is_empty() {
        response.headers_mut().insert(
            "OCI-Filters-Applied",
            header::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}
