//! The upstream registry client sync uses: manifests, blobs (streamed), catalog, tags and
//! referrers from one configured upstream, with auth, retries, limits and metrics.
//!
//! Rules:
//! - All network I/O runs on the tokio runtime handle given to [`Upstream::new`]: the public
//!   methods spawn onto it and await the task, and blob bodies come through a bounded channel
//!   fed by a task there, so callers on other runtimes (the tokio-uring shards) never drive
//!   reqwest's connections. Dropping a method's future or a blob's receiver stops the work.
//! - Limits: `req_concurrent` requests in flight (a request holds its permit until its body is
//!   read or dropped), `req_per_sec` (token bucket), response headers within
//!   `response_header_timeout`, a body that delivers no byte for [`BODY_STALL_TIMEOUT`] is
//!   aborted, manifests and referrers are read up to [`MAX_MANIFEST_BYTES`], list pages up to
//!   [`MAX_LIST_PAGE_BYTES`].
//! - Security (reliability-plan S14): credentials go only to the host they are configured for
//!   (see `auth.rs`); redirects are followed up to [`MAX_REDIRECTS`] times, reqwest strips
//!   `Authorization` when the host changes, and redirects, token realms and DNS answers that
//!   point at link-local addresses (169.254.0.0/16, fe80::/10) are refused, except for hosts
//!   named in the configured `urls`.
//! - Retries: connect errors, header timeouts, 5xx and 429 (Retry-After honoured) are retried
//!   `max_retries` times with exponential backoff capped at `max_retry_delay`, then the next
//!   URL is tried. Other 4xx are answers, never retried.
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_storage::oci::Digest;
use bytes::Bytes;
use reqwest::{Method, Url};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

pub use super::auth::Credentials;
use super::auth::{AuthState, Login, Token, TokenKey};
use super::upstream_http::{
    build_client, check_component, check_repo, content_length, header_str, next_link, pull_scope,
    too_large,
};
pub use super::upstream_stats::UpstreamStats;
use super::upstream_stats::{InFlight, RateLimiter};

/// The manifest media types berth asks for (OCI and Docker v2, single and multi-platform).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";
const REFERRERS_ACCEPT: &str = "application/vnd.oci.image.index.v1+json";
/// Largest manifest (and referrers index) read from upstream; zot's and berth's PUT limit.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest catalog or tags page read.
pub const MAX_LIST_PAGE_BYTES: u64 = 16 << 20;
/// Most pages followed for one catalog or tags listing.
pub const MAX_LIST_PAGES: usize = 10_000;
/// A response body that delivers no byte for this long is aborted.
pub const BODY_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Redirects followed per request (blob downloads redirect to CDNs).
pub const MAX_REDIRECTS: usize = 5;
/// Blob chunks buffered between the download task and the consumer.
pub const BLOB_CHANNEL_CAPACITY: usize = 8;

/// Debug redacts passwords (see [`Credentials`]).
#[derive(Clone, Debug)]
pub struct UpstreamOptions {
    /// Metrics label: the first URL's host[:port].
    pub name: String,
    pub urls: Vec<String>,
    pub credentials: Credentials,
    pub tls_verify: bool,
    pub cert_dir: Option<PathBuf>,
    pub max_retries: u32,
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
    pub req_concurrent: usize,
    pub req_per_sec: Option<f64>,
    pub response_header_timeout: Duration,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{url}: {message}")]
    Connect { url: String, message: String },
    #[error("{url}: no response headers within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: upstream answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: upstream refused the credentials or has none configured ({status})")]
    Unauthorized { url: String, status: u16 },
    #[error("{what} from upstream exceeds {limit} bytes")]
    TooLarge { what: &'static str, limit: u64 },
    #[error("refused: {0}")]
    Refused(String),
    /// Upstream answered something that is not what the protocol says (or a bad argument).
    #[error("{0}")]
    Protocol(String),
    #[error("{url}: response body stalled (no byte for {timeout:?})")]
    Stalled { url: String, timeout: Duration },
    #[error("sync runtime: {0}")]
    Runtime(String),
}

impl UpstreamError {
    /// A failure of the path to upstream (connect error, timeout, 5xx, 429), as opposed to an
    /// answer: retried on the same URL, then the next one.
    pub fn is_transient(&self) -> bool {
        match self {
            UpstreamError::Connect { .. } | UpstreamError::Timeout { .. } => true,
            UpstreamError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

pub struct UpstreamManifest {
    pub media_type: String,
    /// Docker-Content-Digest, when upstream sent one.
    pub digest: Option<Digest>,
    pub size: u64,
    /// Empty for HEAD.
    pub bytes: Bytes,
}

pub struct UpstreamBlob {
    pub size: Option<u64>,
    pub chunks: mpsc::Receiver<Result<Bytes, UpstreamError>>,
}

#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) bases: Vec<Url>,
    pub(super) credentials: Credentials,
    pub(super) client: reqwest::Client,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) permits: Arc<Semaphore>,
    pub(super) limiter: Option<RateLimiter>,
    pub(super) auth: AuthState,
    pub(super) stats: Arc<UpstreamStats>,
    pub(super) max_retries: u32,
    pub(super) retry_delay: Duration,
    pub(super) max_retry_delay: Duration,
    pub(super) header_timeout: Duration,
    pub(super) body_stall_timeout: Duration,
}

/// One logical request: a path below the base URL, what to accept, and the token scope.
pub(super) struct Call {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) accept: Option<&'static str>,
    pub(super) scope: String,
}

/// A response whose headers arrived, with the permit and in-flight mark it holds until the
/// body is consumed or dropped.
pub(super) struct Sent {
    pub(super) response: reqwest::Response,
    pub(super) url: Url,
    pub(super) _permit: Option<OwnedSemaphorePermit>,
    pub(super) _in_flight: InFlight,
}

pub(super) enum Authorization {
    Anonymous,
    Basic(Login),
    Bearer(Token, TokenKey),
}

impl Upstream {
    /// Builds the client. All network I/O runs on `runtime` (a tokio runtime the daemon owns
    /// for sync), so the methods may be awaited from any runtime (the shards are tokio-uring).
    pub fn new(
        options: UpstreamOptions,
        runtime: tokio::runtime::Handle,
    ) -> Result<Upstream, String> {
        let bases = options
            .urls
            .iter()
            .map(|text| {
                let url = Url::parse(text).map_err(|error| format!("url {text:?}: {error}"))?;
                match url.scheme() {
                    "http" | "https" if url.host_str().is_some() => Ok(url),
                    _ => Err(format!(
                        "url {text:?}: only http:// and https:// URLs with a host"
                    )),
                }
            })
            .collect::<Result<Vec<Url>, String>>()?;
        if bases.is_empty() {
            return Err("urls: at least one URL is required".to_owned());
        }
        if let Some(rate) = options.req_per_sec {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("reqPerSec: {rate} is not a positive number"));
            }
        }
        let client = build_client(&options, &bases, &runtime)?;
        Ok(Upstream {
            inner: Arc::new(Inner {
                bases,
                credentials: options.credentials,
                client,
                runtime,
                permits: Arc::new(Semaphore::new(options.req_concurrent.max(1))),
                limiter: options.req_per_sec.map(RateLimiter::new),
                auth: AuthState::default(),
                stats: Arc::new(UpstreamStats::new(options.name)),
                max_retries: options.max_retries,
                retry_delay: options.retry_delay,
                max_retry_delay: options.max_retry_delay.max(options.retry_delay),
                header_timeout: options.response_header_timeout,
                body_stall_timeout: BODY_STALL_TIMEOUT,
            }),
        })
    }

    /// GET (or HEAD) of a manifest by tag or digest; None when upstream says 404.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        head: bool,
    ) -> Result<Option<UpstreamManifest>, UpstreamError> {
        check_repo(repo)?;
        check_component("reference", reference)?;
        let call = Call {
            method: if head { Method::HEAD } else { Method::GET },
            path: format!("/v2/{repo}/manifests/{reference}"),
            accept: Some(MANIFEST_ACCEPT),
            scope: pull_scope(repo),
        };
        self.on_runtime(move |inner| async move {
            let Some(mut sent) = inner.execute_found(&call).await? else {
                return Ok(None);
            };
            let headers = sent.response.headers();
            let media_type = header_str(headers, "content-type")
                .map(|value| {
                    value
                        .split(';')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                })
                .unwrap_or_default();
            let digest = match header_str(headers, "docker-content-digest") {
                None => None,
                Some(text) => Some(text.parse::<Digest>().map_err(|error| {
                    UpstreamError::Protocol(format!("{}: Docker-Content-Digest: {error}", sent.url))
                })?),
            };
            let length = content_length(headers);
            if length.is_some_and(|length| length > MAX_MANIFEST_BYTES) {
                return Err(too_large("manifest", MAX_MANIFEST_BYTES));
            }
            let (size, bytes) = if head {
                (length.unwrap_or(0), Bytes::new())
            } else {
                let bytes = inner
                    .read_limited(&mut sent, MAX_MANIFEST_BYTES, "manifest")
                    .await?;
                (bytes.len() as u64, bytes)
            };
            Ok(Some(UpstreamManifest {
                media_type,
                digest,
                size,
                bytes,
            }))
        })
        .await
    }

    /// GET of a blob, streamed: chunks arrive through a bounded channel fed by a task on the
    /// sync runtime. Dropping the receiver stops the download. None when upstream says 404.
    pub async fn blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<UpstreamBlob>, UpstreamError> {
        check_repo(repo)?;
        let call = Call {
            method: Method::GET,
            path: format!("/v2/{repo}/blobs/{digest}"),
            accept: None,
            scope: pull_scope(repo),
        };
        self.on_runtime(move |inner| async move {
            let Some(sent) = inner.execute_found(&call).await? else {
                return Ok(None);
            };
            let size = content_length(sent.response.headers());
            let (sender, chunks) = mpsc::channel(BLOB_CHANNEL_CAPACITY);
            tokio::spawn(pump_body(inner, sent, sender));
            Ok(Some(UpstreamBlob { size, chunks }))
        })
        .await
    }

    /// The upstream catalog, following `Link` pages.
    pub async fn catalog(&self) -> Result<Vec<String>, UpstreamError> {
        self.on_runtime(|inner| async move {
            inner
                .list(
                    "/v2/_catalog".to_owned(),
                    "registry:catalog:*".to_owned(),
                    "repositories",
                )
                .await
        })
        .await
    }

    /// The tags of `repo`, following `Link` pages; empty when upstream says 404.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, UpstreamError> {
        check_repo(repo)?;
        let path = format!("/v2/{repo}/tags/list");
        let scope = pull_scope(repo);
        self.on_runtime(|inner| async move { inner.list(path, scope, "tags").await })
            .await
    }

    /// The referrers index of `digest`; None when upstream says 404 (no referrers API).
    pub async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Bytes>, UpstreamError> {
        check_repo(repo)?;
        let call = Call {
            method: Method::GET,
            path: format!("/v2/{repo}/referrers/{digest}"),
            accept: Some(REFERRERS_ACCEPT),
            scope: pull_scope(repo),
        };
        self.on_runtime(move |inner| async move {
            let Some(mut sent) = inner.execute_found(&call).await? else {
                return Ok(None);
            };
            if content_length(sent.response.headers())
                .is_some_and(|length| length > MAX_MANIFEST_BYTES)
            {
                return Err(too_large("referrers index", MAX_MANIFEST_BYTES));
            }
            let bytes = inner
                .read_limited(&mut sent, MAX_MANIFEST_BYTES, "referrers index")
                .await?;
            Ok(Some(bytes))
        })
        .await
    }

    pub fn stats(&self) -> &UpstreamStats {
        &self.inner.stats
    }

    #[cfg(test)]
    pub(crate) fn set_body_stall_timeout(&mut self, timeout: Duration) {
        Arc::get_mut(&mut self.inner)
            .expect("set before the upstream is shared")
            .body_stall_timeout = timeout;
    }

    /// Runs `work` on the sync runtime; dropping the returned future aborts it.
    async fn on_runtime<T, F, Fut>(&self, work: F) -> Result<T, UpstreamError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<T, UpstreamError>> + Send + 'static,
    {
        struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
        impl<T> Drop for AbortOnDrop<T> {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let mut task = AbortOnDrop(self.inner.runtime.spawn(work(self.inner.clone())));
        match (&mut task.0).await {
            Ok(result) => result,
            Err(error) => Err(UpstreamError::Runtime(error.to_string())),
        }
    }
}

impl Inner {
    /// A paginated listing: `{"<field>": [..]}` pages linked by `Link: <..>; rel="next"`.
    async fn list(
        &self,
        first: String,
        scope: String,
        field: &'static str,
    ) -> Result<Vec<String>, UpstreamError> {
        let mut entries = Vec::new();
        let mut path = first;
        for page_number in 0..MAX_LIST_PAGES {
            let call = Call {
                method: Method::GET,
                path,
                accept: Some("application/json"),
                scope: scope.clone(),
            };
            let Some(mut sent) = self.execute_found(&call).await? else {
                // 404 on the first page: no such repository. On a later page the listing
                // would be silently cut short.
                if page_number == 0 {
                    return Ok(entries);
                }
                let message = format!(
                    "{}: page {} of the listing is gone (404)",
                    call.path,
                    page_number + 1
                );
                return Err(UpstreamError::Protocol(message));
            };
            let next = next_link(sent.response.headers(), &sent.url)?;
            let body = self
                .read_limited(&mut sent, MAX_LIST_PAGE_BYTES, "list page")
                .await?;
            let page: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
                .map_err(|error| {
                    UpstreamError::Protocol(format!(
                        "{}: list page is not a JSON object: {error}",
                        sent.url
                    ))
                })?;
            match page.get(field) {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::Array(values)) => {
                    entries.extend(
                        values
                            .iter()
                            .filter_map(|value| value.as_str().map(str::to_owned)),
                    );
                }
                Some(_) => {
                    return Err(UpstreamError::Protocol(format!(
                        "{}: \"{field}\" is not an array",
                        sent.url
                    )))
                }
            }
            match next {
                Some(next) => path = next,
                None => return Ok(entries),
            }
        }
        Err(UpstreamError::Protocol(format!(
            "{scope}: more than {MAX_LIST_PAGES} pages"
        )))
    }
}

/// Moves a blob body into `sender` until the body ends, fails, stalls, or the receiver goes.
async fn pump_body(
    inner: Arc<Inner>,
    mut sent: Sent,
    sender: mpsc::Sender<Result<Bytes, UpstreamError>>,
) {
    loop {
        let next = tokio::select! {
            _ = sender.closed() => break,
            next = inner.next_chunk(&mut sent) => next,
        };
        match next {
            Ok(Some(chunk)) => {
                if sender.send(Ok(chunk)).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(error) => {
                drop(sent);
                let _ = sender.send(Err(error)).await;
                return;
            }
        }
    }
    // The permit and the in-flight mark go before the receiver sees the end of the body.
    drop(sent);
}
