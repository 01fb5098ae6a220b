//! Blob GET/HEAD (whole or one byte range) and DELETE. A repository sees only the blobs its
//! own index links, even though the bytes are stored once for the whole registry.

use berth_storage::oci::{ByteRange, Digest, RepoName};
use hyper::body::Frame;
use hyper::{header, HeaderMap, Response, StatusCode};

use berth_storage::BlobSource as BlobLocation;

use crate::ext::sync::ondemand::{BlobSource, BlobStream};

use super::{
    body::{empty, file_body, stream_body},
    error::ApiError,
    header_str, Body, Ctx,
};

fn parse_digest(text: &str) -> Result<Digest, ApiError> {
    text.parse()
        .map_err(|e| ApiError::DigestInvalid(format!("{text}: {e}")))
}

pub async fn get(
    ctx: &Ctx,
    name: &RepoName,
    digest: &str,
    headers: &HeaderMap,
    head_only: bool,
) -> Result<Response<Body>, ApiError> {
    let digest = parse_digest(digest)?;
    let size = match (ctx.engine.stat_blob(name, &digest).await?, &ctx.sync) {
        (Some(size), _) => size,
        (None, None) => return Err(ApiError::BlobUnknown(digest.to_string())),
        (None, Some(sync)) => {
            let plain_get = !head_only && !headers.contains_key(header::RANGE);
            match sync.blob(name, &digest, plain_get).await {
                Ok(BlobSource::Unknown) => return Err(ApiError::BlobUnknown(digest.to_string())),
                Ok(BlobSource::Stream(stream)) => return Ok(streamed(&digest, stream)),
                Ok(BlobSource::Stored) => ctx
                    .engine
                    .stat_blob(name, &digest)
                    .await?
                    .ok_or_else(|| ApiError::BlobUnknown(digest.to_string()))?,
                // A stored manifest references it but upstream failed: a 5xx, so that the
                // client retries, not a 404 that says the blob does not exist.
                Err(error) => {
                    return Err(ApiError::Internal(format!(
                        "on-demand sync of {digest} failed: {error}"
                    )))
                }
            }
        }
    };
    // A multi-range or non-byte Range header is ignored (RFC 9110 14.2): the whole blob. A
    // single byte range that is malformed, inverted or outside the blob is 416.
    let range = header_str(headers, header::RANGE)
        .filter(|r| r.starts_with("bytes=") && !r.contains(','))
        .map(|r| {
            r.parse::<ByteRange>()
                .ok()
                .and_then(|range| range.resolve(size))
        });
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
        Some(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(None) => return Err(ApiError::BlobRangeInvalid { size }),
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    let source = ctx.engine.blob_source(&digest);
    let redirect = ctx.redirect_blob_url && !head_only && status == StatusCode::OK;
    if let (BlobLocation::S3(object), true) = (&source, redirect) {
        // zot's redirectBlobURL: the client fetches the object itself (no Range: a ranged
        // GET is served here, so the 206 logic stays berth's).
        let url = object
            .presign_get(REDIRECT_URL_LIFETIME)
            .await
            .map_err(|e| ApiError::Internal(format!("presign blob {digest}: {e}")))?;
        return Ok(Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, url.as_str())
            .header(header::CONTENT_LENGTH, 0)
            .header("Docker-Content-Digest", digest.to_string())
            .body(empty())
            .expect("blob headers are valid"));
    }
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header("Docker-Content-Digest", digest.to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
    }
    let body = match source {
        _ if head_only || len == 0 => empty(),
        BlobLocation::File(path) => file_body(path, start, len, ctx.uring)
            .await
            .map_err(|e| ApiError::Internal(format!("open blob {digest}: {e}")))?,
        BlobLocation::S3(object) => {
            let range = (status == StatusCode::PARTIAL_CONTENT).then_some((start, end));
            let read = object
                .read(range)
                .await
                .map_err(|e| ApiError::Internal(format!("open blob {digest} in S3: {e}")))?
                .ok_or_else(|| {
                    ApiError::Internal(format!("blob {digest} is recorded but not in the bucket"))
                })?;
            s3_body(&digest, read)
        }
    };
    Ok(response.body(body).expect("blob headers are valid"))
}

/// How long a `redirectBlobURL` presigned URL is valid (zot's: 15 minutes).
const REDIRECT_URL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// A blob (or range) streamed from the bucket through berth. The length was checked when
/// the GET opened; a body that ends short or fails mid-way ends the response with an error
/// (logged), which aborts the client's connection rather than completing a short blob.
fn s3_body(digest: &Digest, read: berth_storage::BlobRead) -> Body {
    let digest = digest.to_string();
    let chunks = futures_util::StreamExt::map(read.into_stream(), move |chunk| match chunk {
        Ok(bytes) => Ok(Frame::data(bytes)),
        Err(error) => {
            tracing::error!(%digest, %error, "blob read from S3 aborted");
            Err(std::io::Error::other(error.to_string()))
        }
    });
    stream_body(chunks)
}

/// A blob passed on from upstream as it is stored (the flight's leader). An error mid-way
/// ends the body with an error, which aborts the client's connection: it never receives a
/// complete-looking blob that was not verified.
fn streamed(digest: &Digest, stream: Box<BlobStream>) -> Response<Body> {
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("Docker-Content-Digest", digest.to_string());
    if let Some(size) = stream.size() {
        response = response.header(header::CONTENT_LENGTH, size);
    }
    let chunks = futures_util::stream::unfold(Some(stream), |state| async move {
        let mut stream = state?;
        match stream.next().await {
            Ok(Some(chunk)) => Some((Ok(Frame::data(chunk)), Some(stream))),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(component = "sync", %error, "on-demand blob aborted");
                Some((Err(std::io::Error::other(error.to_string())), None))
            }
        }
    });
    response
        .body(stream_body(chunks))
        .expect("blob headers are valid")
}

pub async fn delete(ctx: &Ctx, name: &RepoName, digest: &str) -> Result<Response<Body>, ApiError> {
    let digest = parse_digest(digest)?;
    ctx.engine.delete_blob(name, &digest).await?;
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(empty())
        .expect("static headers are valid"))
}
