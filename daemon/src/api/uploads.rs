//! Blob uploads: POST (new session, monolithic `?digest=`, cross-repository `?mount=`), PATCH
//! (chunked with `Content-Range`, or streamed without), PUT `?digest=` (with or without a
//! final chunk), GET (status) and DELETE (cancel). Bytes are hashed by the engine as they
//! arrive; a 201 is sent only once the engine reports the blob durable.
//!
//! A session started by an authenticated user belongs to that user ([`session`]); a mount
//! never links from a repository the caller may not read (`http.accessControl`).

use berth_storage::{
    oci::{ContentRange, Digest, RepoName, UploadId},
    UploadWriter,
};
use hyper::{header, Request, Response, StatusCode};

use super::{
    access,
    body::{empty, next_chunk, RequestBody},
    error::{upload_range, ApiError},
    header_str, Body, Ctx, Query,
};

fn session_location(name: &RepoName, id: &UploadId) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// 202 with the session's location and what it holds so far.
fn accepted(name: &RepoName, id: &UploadId, offset: u64, status: StatusCode) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::LOCATION, session_location(name, id))
        .header(header::RANGE, upload_range(offset))
        .header(header::CONTENT_LENGTH, 0)
        .header("Docker-Upload-UUID", id.to_string())
        .body(empty())
        .expect("upload headers are valid")
}

fn created(name: &RepoName, digest: &Digest) -> Response<Body> {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
        .header(header::CONTENT_LENGTH, 0)
        .header("Docker-Content-Digest", digest.to_string())
        .body(empty())
        .expect("blob headers are valid")
}

/// The session named by `text` in `name`, if `user` may use it: a session with an owner
/// belongs to that user only; anyone else gets BLOB_UPLOAD_UNKNOWN, as for an unknown id.
pub async fn session(
    ctx: &Ctx,
    name: &RepoName,
    text: &str,
    user: Option<&str>,
) -> Result<UploadId, ApiError> {
    let id: UploadId = text.parse().map_err(|_| ApiError::BlobUploadUnknown)?;
    match ctx.engine.upload_owner(name, &id).await? {
        Some(owner) if Some(owner.as_str()) != user => Err(ApiError::BlobUploadUnknown),
        _ => Ok(id),
    }
}

fn digest_param(query: &Query) -> Result<Digest, ApiError> {
    let text = query
        .get("digest")
        .ok_or_else(|| ApiError::DigestInvalid("the digest parameter is missing".into()))?;
    text.parse()
        .map_err(|e| ApiError::DigestInvalid(format!("{text}: {e}")))
}

/// Streams the request body into the session. On a broken or stalled body the bytes that did
/// arrive stay in the session (the client can ask for the offset and resume).
async fn pump(
    ctx: &Ctx,
    writer: &mut UploadWriter,
    body: &mut RequestBody,
) -> Result<(), ApiError> {
    while let Some(chunk) = next_chunk(body, ctx.body_idle).await? {
        writer.write(chunk).await?;
    }
    Ok(())
}

/// Runs `pump`, and on failure hands the session back intact before reporting the error.
async fn pump_or_release(
    ctx: &Ctx,
    mut writer: UploadWriter,
    body: &mut RequestBody,
) -> Result<UploadWriter, ApiError> {
    match pump(ctx, &mut writer, body).await {
        Ok(()) => Ok(writer),
        Err(error) => {
            if let Err(release) = writer.abandon().await {
                tracing::warn!(error = %release, "could not release upload session");
            }
            Err(error)
        }
    }
}

/// Checks a chunk's `Content-Range` against the session: it must start where the session
/// ends and, when `Content-Length` is given too, both must describe the same byte count.
fn check_chunk(
    name: &RepoName,
    writer: &UploadWriter,
    req: &Request<RequestBody>,
) -> Result<(), ApiError> {
    let Some(text) = header_str(req.headers(), header::CONTENT_RANGE) else {
        return Ok(());
    };
    let out_of_range = || ApiError::UploadRangeInvalid {
        location: session_location(name, writer.id()),
        offset: writer.offset(),
    };
    let range: ContentRange = text.parse().map_err(|_| out_of_range())?;
    if range.start != writer.offset() {
        return Err(out_of_range());
    }
    let declared = header_str(req.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
    if let Some(declared) = declared.filter(|len: &u64| *len != range.len()) {
        return Err(ApiError::SizeInvalid(format!(
            "Content-Range {text} covers {} bytes, Content-Length says {declared}",
            range.len()
        )));
    }
    Ok(())
}

/// Opens the session, checks the request's chunk against it and appends the body: the
/// common part of PATCH and the final PUT. The session is handed back on any failure.
async fn receive_chunk(
    ctx: &Ctx,
    name: &RepoName,
    id: &UploadId,
    req: Request<RequestBody>,
) -> Result<UploadWriter, ApiError> {
    let writer = ctx.engine.open_upload(name, id).await?;
    if let Err(error) = check_chunk(name, &writer, &req) {
        writer.abandon().await?;
        return Err(error);
    }
    let mut body = req.into_body();
    pump_or_release(ctx, writer, &mut body).await
}

/// POST: a new session (owned by `user` when authenticated), a monolithic upload or a mount.
/// A mount links only from a repository `user` may read (`from`, else the target itself) and,
/// for a request admitted by an API key with scopes, one inside them; otherwise it is a fresh
/// upload (202), as when the blob is missing.
pub async fn start(
    ctx: &Ctx,
    name: &RepoName,
    query: &Query,
    user: Option<&str>,
    key: Option<&crate::auth::apikey::KeyGrant>,
    req: Request<RequestBody>,
) -> Result<Response<Body>, ApiError> {
    ctx.quotas.check_new_repository(&ctx.engine, name).await?;
    if let Some(mount) = query.get("mount") {
        let digest: Digest = mount
            .parse()
            .map_err(|e| ApiError::DigestInvalid(format!("{mount}: {e}")))?;
        let from = match query.get("from") {
            Some(from) => Some(
                from.parse::<RepoName>()
                    .map_err(|_| ApiError::NameInvalid(from.to_owned()))?,
            ),
            None => None,
        };
        let source = from.as_ref().unwrap_or(name);
        let readable =
            access::can_read(ctx, user, source) && crate::auth::apikey::in_scope(key, source);
        if let Some(from) = from
            .as_ref()
            .filter(|_| ctx.quotas.limits_bytes(name) && readable)
        {
            if ctx.engine.stat_blob(name, &digest).await?.is_none() {
                if let Some(size) = ctx.engine.stat_blob(from, &digest).await? {
                    ctx.quotas.check_bytes(&ctx.engine, name, size).await?;
                }
            }
        }
        if readable && ctx.engine.mount_blob(from.as_ref(), name, &digest).await? {
            return Ok(created(name, &digest));
        }
        let id = ctx.engine.start_upload_as(name, user).await?;
        return Ok(accepted(name, &id, 0, StatusCode::ACCEPTED));
    }
    if query.get("from").is_some() {
        return Err(ApiError::Unsupported("from= needs mount=".into()));
    }
    if query.get("digest").is_some() {
        let digest = digest_param(query)?;
        let writer = ctx.engine.begin_monolithic(name).await?;
        let mut body = req.into_body();
        let writer = pump_or_release(ctx, writer, &mut body).await?;
        if let Err(refused) = check_quota(ctx, name, &digest, writer.offset()).await {
            // A monolithic upload has no session: abandoning it deletes its staged bytes.
            writer.abandon().await?;
            return Err(refused);
        }
        writer.finish(&digest).await?;
        return Ok(created(name, &digest));
    }
    let id = ctx.engine.start_upload_as(name, user).await?;
    Ok(accepted(name, &id, 0, StatusCode::ACCEPTED))
}

pub async fn patch(
    ctx: &Ctx,
    name: &RepoName,
    id: &UploadId,
    req: Request<RequestBody>,
) -> Result<Response<Body>, ApiError> {
    let writer = receive_chunk(ctx, name, id, req).await?;
    // 202 promises the chunk survives a crash: persist fsyncs it when commits are durable.
    let offset = writer.persist().await?;
    Ok(accepted(name, id, offset, StatusCode::ACCEPTED))
}

pub async fn finish(
    ctx: &Ctx,
    name: &RepoName,
    id: &UploadId,
    query: &Query,
    req: Request<RequestBody>,
) -> Result<Response<Body>, ApiError> {
    let digest = digest_param(query)?;
    let writer = receive_chunk(ctx, name, id, req).await?;
    if let Err(refused) = check_quota(ctx, name, &digest, writer.offset()).await {
        // The session stays (the client may free space and PUT again, or cancel it).
        writer.abandon().await?;
        return Err(refused);
    }
    writer.finish(&digest).await?;
    Ok(created(name, &digest))
}

/// Refuses a blob of `size` bytes in `name` when a quota would pass its byte limit; a blob
/// the repository already links adds nothing.
async fn check_quota(
    ctx: &Ctx,
    name: &RepoName,
    digest: &Digest,
    size: u64,
) -> Result<(), ApiError> {
    if !ctx.quotas.limits_bytes(name) || ctx.engine.stat_blob(name, digest).await?.is_some() {
        return Ok(());
    }
    ctx.quotas.check_bytes(&ctx.engine, name, size).await
}

pub async fn status(ctx: &Ctx, name: &RepoName, id: &UploadId) -> Result<Response<Body>, ApiError> {
    let offset = ctx.engine.upload_status(name, id).await?;
    Ok(accepted(name, id, offset, StatusCode::NO_CONTENT))
}

pub async fn cancel(ctx: &Ctx, name: &RepoName, id: &UploadId) -> Result<Response<Body>, ApiError> {
    ctx.engine.cancel_upload(name, id).await?;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(empty())
        .expect("static headers are valid"))
}
