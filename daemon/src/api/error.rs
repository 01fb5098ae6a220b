//! `ApiError`: every failure a handler can answer with, its OCI error code, its status and its
//! body. Engine errors convert here, exhaustively: a new `StorageError` variant fails the build
//! until it is mapped. Internal failures are logged with context and answered as an opaque 500.

use berth_storage::StorageError;
use bytes::Bytes;
use hyper::{header, Response, StatusCode};
use serde_json::json;

use super::body::{full, Body};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("blob unknown to registry")]
    BlobUnknown(String),
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    /// A chunk that does not continue the session: 416 with the session's real state.
    #[error("requested range not satisfiable")]
    UploadRangeInvalid { location: String, offset: u64 },
    /// A blob GET range outside the blob: 416 with `Content-Range: bytes */size`.
    #[error("requested range not satisfiable")]
    BlobRangeInvalid { size: u64 },
    #[error("provided digest did not match uploaded content")]
    DigestInvalid(String),
    #[error("manifest references a blob unknown to this repository")]
    ManifestBlobUnknown(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest media type is not supported: {0}")]
    ManifestMediaType(String),
    #[error("manifest is larger than {0} bytes")]
    ManifestTooLarge(usize),
    #[error("manifest unknown")]
    ManifestUnknown(String),
    #[error("invalid repository name")]
    NameInvalid(String),
    #[error("repository name not known to registry")]
    NameUnknown(String),
    #[error("invalid pagination number")]
    PaginationNumberInvalid(String),
    #[error("provided length did not match content length")]
    SizeInvalid(String),
    #[error("too many tag parameters (at most {0})")]
    TooManyTags(usize),
    #[error("requested access to the resource is denied")]
    Denied(String),
    /// A policy refuses the change (immutable tags): 403 DENIED.
    #[error("requested access to the resource is denied")]
    Forbidden(String),
    #[error("the operation is unsupported")]
    Unsupported(String),
    /// A manifest format berth knows and refuses (Docker schema 1).
    #[error("the manifest format is unsupported")]
    ManifestFormatUnsupported(String),
    /// A bad argument to an extension endpoint (a malformed key or certificate, a bad
    /// query parameter): 400 INVALID_ARGUMENT.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A request body over an extension endpoint's limit: 413.
    #[error("request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// An extension's entry (a trust-store key or certificate) that does not exist: 404.
    #[error("unknown {0}")]
    EntryUnknown(String),
    /// Over `http.ratelimit`: 429 `TOOMANYREQUESTS` with `Retry-After` (whole seconds, at
    /// least 1).
    #[error("too many requests")]
    TooManyRequests(std::time::Duration),
    #[error("not found")]
    NotFound,
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn oci_code(&self) -> &'static str {
        match self {
            ApiError::BlobUnknown(_) => "BLOB_UNKNOWN",
            ApiError::BlobUploadInvalid(_) | ApiError::UploadRangeInvalid { .. } => {
                "BLOB_UPLOAD_INVALID"
            }
            ApiError::BlobRangeInvalid { .. } => "RANGE_INVALID",
            ApiError::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ApiError::DigestInvalid(_) => "DIGEST_INVALID",
            ApiError::ManifestBlobUnknown(_) => "MANIFEST_BLOB_UNKNOWN",
            ApiError::ManifestInvalid(_)
            | ApiError::ManifestMediaType(_)
            | ApiError::ManifestTooLarge(_) => "MANIFEST_INVALID",
            ApiError::ManifestUnknown(_) => "MANIFEST_UNKNOWN",
            ApiError::NameInvalid(_) => "NAME_INVALID",
            ApiError::NameUnknown(_) | ApiError::NotFound => "NAME_UNKNOWN",
            ApiError::PaginationNumberInvalid(_) => "PAGINATION_NUMBER_INVALID",
            ApiError::SizeInvalid(_) => "SIZE_INVALID",
            ApiError::TooManyTags(_) => "MANIFEST_INVALID",
            ApiError::Denied(_) | ApiError::Forbidden(_) => "DENIED",
            ApiError::Unsupported(_) | ApiError::ManifestFormatUnsupported(_) => "UNSUPPORTED",
            ApiError::InvalidArgument(_) => "INVALID_ARGUMENT",
            ApiError::TooManyRequests(_) => "TOOMANYREQUESTS",
            ApiError::BodyTooLarge(_) => "SIZE_INVALID",
            ApiError::EntryUnknown(_) => "NOT_FOUND",
            ApiError::Internal(_) => "UNKNOWN",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BlobUnknown(_)
            | ApiError::BlobUploadUnknown
            | ApiError::ManifestUnknown(_)
            | ApiError::NameUnknown(_)
            | ApiError::EntryUnknown(_)
            | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::UploadRangeInvalid { .. } | ApiError::BlobRangeInvalid { .. } => {
                StatusCode::RANGE_NOT_SATISFIABLE
            }
            ApiError::BlobUploadInvalid(_)
            | ApiError::DigestInvalid(_)
            | ApiError::ManifestBlobUnknown(_)
            | ApiError::ManifestInvalid(_)
            | ApiError::NameInvalid(_)
            | ApiError::PaginationNumberInvalid(_)
            | ApiError::SizeInvalid(_)
            | ApiError::InvalidArgument(_)
            | ApiError::ManifestFormatUnsupported(_) => StatusCode::BAD_REQUEST,
            ApiError::ManifestMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::ManifestTooLarge(_) | ApiError::BodyTooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::TooManyTags(_) => StatusCode::URI_TOO_LONG,
            ApiError::Denied(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unsupported(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `detail` object of the OCI error body: what the client sent that was wrong.
    fn detail(&self) -> serde_json::Value {
        match self {
            ApiError::BlobUnknown(d) | ApiError::ManifestBlobUnknown(d) => json!({ "digest": d }),
            ApiError::DigestInvalid(reason) => json!({ "reason": reason }),
            ApiError::ManifestUnknown(r) => json!({ "reference": r }),
            ApiError::NameInvalid(n) | ApiError::NameUnknown(n) => json!({ "name": n }),
            ApiError::BlobUploadInvalid(reason)
            | ApiError::ManifestInvalid(reason)
            | ApiError::ManifestMediaType(reason)
            | ApiError::PaginationNumberInvalid(reason)
            | ApiError::SizeInvalid(reason)
            | ApiError::Denied(reason)
            | ApiError::Forbidden(reason)
            | ApiError::Unsupported(reason)
            | ApiError::InvalidArgument(reason)
            | ApiError::ManifestFormatUnsupported(reason) => json!({ "reason": reason }),
            ApiError::EntryUnknown(what) => json!({ "entry": what }),
            ApiError::TooManyRequests(wait) => json!({ "retryAfterSeconds": retry_after(*wait) }),
            ApiError::TooManyTags(max)
            | ApiError::ManifestTooLarge(max)
            | ApiError::BodyTooLarge(max) => json!({ "limit": max }),
            ApiError::UploadRangeInvalid { offset, .. } => json!({ "offset": offset }),
            ApiError::BlobRangeInvalid { size } => json!({ "size": size }),
            ApiError::BlobUploadUnknown | ApiError::NotFound | ApiError::Internal(_) => json!({}),
        }
    }

    pub fn into_response(self, head_only: bool) -> Response<Body> {
        if let ApiError::Internal(context) = &self {
            tracing::error!(error = %context, "internal error");
        }
        let body = json!({ "errors": [{
            "code": self.oci_code(),
            "message": self.to_string(),
            "detail": self.detail(),
        }]});
        let bytes = Bytes::from(body.to_string());
        let mut builder = Response::builder()
            .status(self.status())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, bytes.len());
        match &self {
            ApiError::UploadRangeInvalid { location, offset } => {
                builder = builder
                    .header(header::LOCATION, location.as_str())
                    .header(header::RANGE, upload_range(*offset));
            }
            ApiError::BlobRangeInvalid { size } => {
                builder = builder.header(header::CONTENT_RANGE, format!("bytes */{size}"));
            }
            ApiError::TooManyRequests(wait) => {
                builder = builder.header(header::RETRY_AFTER, retry_after(*wait));
            }
            _ => {}
        }
        let body = if head_only {
            full(Bytes::new())
        } else {
            full(bytes)
        };
        builder.body(body).expect("static headers are valid")
    }
}

/// `Retry-After` of a rate-limited request: whole seconds, rounded up, at least 1.
fn retry_after(wait: std::time::Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

/// The `Range` header of an upload session: the inclusive range received so far. An empty
/// session reports `0-0`, as zot and Distribution do.
pub fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::BlobUnknown(d) => ApiError::BlobUnknown(d.to_string()),
            StorageError::BlobReferenced(d) => {
                ApiError::Denied(format!("blob {d} is referenced by a manifest"))
            }
            StorageError::UploadUnknown => ApiError::BlobUploadUnknown,
            StorageError::UploadOutOfOrder { offset } => {
                ApiError::BlobUploadInvalid(format!("chunk does not start at offset {offset}"))
            }
            StorageError::TooLarge => ApiError::SizeInvalid("content too large".into()),
            StorageError::UploadBusy => {
                ApiError::BlobUploadInvalid("another request is writing this upload".into())
            }
            StorageError::DigestMismatch { expected, actual } => {
                ApiError::DigestInvalid(format!("expected {expected}, content hashes to {actual}"))
            }
            StorageError::ManifestUnknown => ApiError::ManifestUnknown(String::new()),
            StorageError::ManifestInvalid(reason) => ApiError::ManifestInvalid(reason),
            StorageError::ManifestUnsupportedMediaType(t) => ApiError::ManifestMediaType(t),
            StorageError::ManifestUnsupported(reason) => {
                ApiError::ManifestFormatUnsupported(reason)
            }
            StorageError::ManifestBlobUnknown(d) => ApiError::ManifestBlobUnknown(d.to_string()),
            StorageError::ManifestReferenced(d) => {
                ApiError::Denied(format!("manifest is referenced by index {d}"))
            }
            StorageError::TagImmutable(tag) => ApiError::Forbidden(format!(
                "tag {tag} is immutable: it already names another manifest (delete it first)"
            )),
            StorageError::NameUnknown => ApiError::NameUnknown(String::new()),
            error @ (StorageError::Io(_) | StorageError::Index(_) | StorageError::Corrupt(_)) => {
                ApiError::Internal(error.to_string())
            }
        }
    }
}
