//! Manifest GET/HEAD/PUT/DELETE by tag or digest. The body of a PUT is read up to
//! [`MANIFEST_MAX_BYTES`] and handed byte-exact to the engine, which validates, checks the
//! referenced blobs and commits manifest, tags and referrer entry in one batch. The lint
//! extension, when enabled, checks an image's mandatory annotations first (ext/lint).

use berth_storage::oci::{Algorithm, Digest, Reference, RepoName, Tag};
use hyper::{header, Request, Response, StatusCode};

use crate::ext::lint;

use super::{
    body::{drain, empty, full, read_limited, RequestBody},
    error::ApiError,
    header_str, Body, Ctx, Query, MANIFEST_MAX_BYTES, MAX_TAG_PARAMS,
};

/// A reference to create (PUT): one outside the tag and digest grammars is a bad request.
fn parse_reference(text: &str) -> Result<Reference, ApiError> {
    if text.contains(':') {
        let digest = text
            .parse()
            .map_err(|e| ApiError::DigestInvalid(format!("{text}: {e}")))?;
        Ok(Reference::Digest(digest))
    } else {
        let tag = text
            .parse()
            .map_err(|_| ApiError::ManifestInvalid(format!("invalid tag {text:?}")))?;
        Ok(Reference::Tag(tag))
    }
}

/// A reference to look up (GET, HEAD, DELETE). One that is neither a valid tag nor a valid
/// digest of a supported algorithm cannot name a stored manifest, so it is not found, as from
/// Distribution and zot (the released conformance suite asks for `.INVALID_MANIFEST_NAME` and
/// expects 404): NAME_UNKNOWN when the repository does not exist, MANIFEST_UNKNOWN otherwise.
async fn lookup_reference(ctx: &Ctx, name: &RepoName, text: &str) -> Result<Reference, ApiError> {
    match text.parse() {
        Ok(reference) => Ok(reference),
        Err(_) => Err(not_found(ctx, name, text).await?),
    }
}

/// The 404 for a reference that names nothing in `name`.
async fn not_found(ctx: &Ctx, name: &RepoName, reference: &str) -> Result<ApiError, ApiError> {
    Ok(if ctx.engine.repo_exists(name).await? {
        ApiError::ManifestUnknown(reference.to_owned())
    } else {
        ApiError::NameUnknown(name.to_string())
    })
}

/// Whether an `Accept` header admits `media_type`. No header, or a wildcard, admits anything;
/// parameters (`;q=...`) are ignored. A client that lists only other manifest types gets
/// MANIFEST_UNKNOWN, as from Distribution, instead of a document it cannot read.
fn accepts(accept: Option<&str>, media_type: &str) -> bool {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return true;
    };
    accept
        .split(',')
        .map(|range| range.split(';').next().unwrap_or("").trim())
        .any(|range| {
            range == "*/*" || range == "application/*" || range.eq_ignore_ascii_case(media_type)
        })
}

pub async fn get(
    ctx: &Ctx,
    name: &RepoName,
    reference: &str,
    headers: &hyper::HeaderMap,
    head_only: bool,
) -> Result<Response<Body>, ApiError> {
    let reference = lookup_reference(ctx, name, reference).await?;
    let mut stored = ctx.engine.get_manifest(name, &reference).await?;
    if let Some(sync) = &ctx.sync {
        match (&stored, &reference) {
            (Some(found), Reference::Tag(tag)) => {
                sync.revalidate(name, tag.as_str(), &found.digest)
            }
            (Some(_), Reference::Digest(_)) => {}
            (None, _) => match sync.fetch_manifest(name, &reference).await {
                Ok(true) => stored = ctx.engine.get_manifest(name, &reference).await?,
                Ok(false) => {}
                // As zot: a failed sync is a miss (the cause is in the log).
                Err(error) => {
                    tracing::warn!(component = "sync", repository = %name, %reference, %error, "on-demand sync failed")
                }
            },
        }
    }
    let Some(manifest) = stored else {
        return Err(not_found(ctx, name, &reference.to_string()).await?);
    };
    // Several Accept headers are allowed; they form one list.
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let accept = (!accept.is_empty()).then(|| accept.join(","));
    if !accepts(accept.as_deref(), &manifest.media_type) {
        return Err(ApiError::ManifestUnknown(format!(
            "{reference} is a {}, which the Accept header does not admit",
            manifest.media_type
        )));
    }
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, manifest.media_type.as_str())
        .header(header::CONTENT_LENGTH, manifest.bytes.len())
        .header("Docker-Content-Digest", manifest.digest.to_string());
    let body = if head_only {
        empty()
    } else {
        // Retention's pulledWithin / mostRecentlyPulledCount (zot counts GETs, not HEADs).
        ctx.engine.record_pull(name, &manifest.digest);
        full(manifest.bytes)
    };
    Ok(response.body(body).expect("manifest headers are valid"))
}

/// Extra tags from `?tag=`: all valid or none applied; duplicates collapse.
fn tag_params(query: &Query) -> Result<Vec<Tag>, ApiError> {
    let mut tags: Vec<Tag> = Vec::new();
    for (count, text) in query.all("tag").enumerate() {
        if count >= MAX_TAG_PARAMS {
            return Err(ApiError::TooManyTags(MAX_TAG_PARAMS));
        }
        let tag: Tag = text
            .parse()
            .map_err(|_| ApiError::ManifestInvalid(format!("invalid tag {text:?}")))?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

pub async fn put(
    ctx: &Ctx,
    name: &RepoName,
    reference: &str,
    query: &Query,
    user: Option<&str>,
    req: Request<RequestBody>,
) -> Result<Response<Body>, ApiError> {
    let reference = parse_reference(reference)?;
    let tags = tag_params(query)?;
    let declared = header_str(req.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
    let content_type = header_str(req.headers(), header::CONTENT_TYPE).map(str::to_owned);
    let mut body = req.into_body();
    if declared.is_some_and(|len: u64| len > MANIFEST_MAX_BYTES as u64) {
        drain(&mut body, ctx.body_idle).await;
        return Err(ApiError::ManifestTooLarge(MANIFEST_MAX_BYTES));
    }
    let bytes = match read_limited(&mut body, MANIFEST_MAX_BYTES, ctx.body_idle).await? {
        Ok(bytes) => bytes,
        Err(limit) => {
            drain(&mut body, ctx.body_idle).await;
            return Err(ApiError::ManifestTooLarge(limit));
        }
    };
    // Cloned only when lint has something to check (a manifest PUT is on the push path).
    let lint = {
        let settings = ctx.live.settings();
        let active = settings.lint.enabled && !settings.lint.mandatory_annotations.is_empty();
        active.then(|| settings.lint.clone())
    };
    let missing = match &lint {
        Some(lint) => lint::missing_annotations(lint, &ctx.engine, name, &bytes).await,
        None => Vec::new(),
    };
    if !missing.is_empty() {
        let missing = missing.join(", ");
        return Err(ApiError::ManifestInvalid(format!(
            "missing mandatory annotations (lint): {missing}"
        )));
    }
    if ctx.quotas.limits_bytes(name) {
        let digest = Digest::of(Algorithm::Sha256, &bytes);
        if ctx
            .engine
            .get_manifest(name, &Reference::Digest(digest))
            .await?
            .is_none()
        {
            let added = bytes.len() as u64;
            ctx.quotas.check_bytes(&ctx.engine, name, added).await?;
        }
    }
    let named = reference.as_tag().into_iter().chain(&tags);
    let immutable = ctx.immutable_tags.select(name, named);
    let outcome = ctx
        .engine
        .put_manifest_guarded(
            name,
            &reference,
            content_type.as_deref(),
            bytes,
            &tags,
            &immutable,
            user,
        )
        .await?;
    if let Some(trust) = &ctx.trust {
        let named: Vec<&str> = reference
            .as_tag()
            .into_iter()
            .chain(&tags)
            .map(|tag| tag.as_str())
            .collect();
        trust
            .judge_pushed(name, &outcome.digest, outcome.subject.as_ref(), &named)
            .await;
    }
    let digest = outcome.digest.to_string();
    let mut response = Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/manifests/{digest}"))
        .header(header::CONTENT_LENGTH, 0)
        .header("Docker-Content-Digest", digest.as_str());
    if let Some(subject) = &outcome.subject {
        response = response.header("OCI-Subject", subject.to_string());
    }
    for tag in &tags {
        response = response.header("OCI-Tag", tag.as_str());
    }
    Ok(response.body(empty()).expect("manifest headers are valid"))
}

pub async fn delete(
    ctx: &Ctx,
    name: &RepoName,
    reference: &str,
) -> Result<Response<Body>, ApiError> {
    let reference = lookup_reference(ctx, name, reference).await?;
    if !ctx.engine.repo_exists(name).await? {
        return Err(ApiError::NameUnknown(name.to_string()));
    }
    ctx.engine
        .delete_manifest(name, &reference)
        .await
        .map_err(|e| match e {
            berth_storage::StorageError::ManifestUnknown => {
                ApiError::ManifestUnknown(reference.to_string())
            }
            other => other.into(),
        })?;
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(empty())
        .expect("static headers are valid"))
}

#[cfg(test)]
mod tests {
    use super::accepts;

    #[test]
    fn accept_negotiation() {
        let oci = "application/vnd.oci.image.manifest.v1+json";
        let docker = "application/vnd.docker.distribution.manifest.v2+json";
        assert!(accepts(None, oci));
        assert!(accepts(Some(""), oci));
        assert!(accepts(Some("*/*"), oci));
        assert!(accepts(Some("application/*;q=0.5"), oci));
        assert!(accepts(Some(&format!("{docker}, {oci};q=0.9")), oci));
        assert!(!accepts(Some(docker), oci));
        assert!(!accepts(Some("application/json"), oci));
    }
}
