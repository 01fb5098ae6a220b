//! One request, observed: its id and log span, the bytes it moved, and what happens when it
//! ends (its response body sent or abandoned): metrics, the access log line, the audit line.
//!
//! Rules:
//! - The request id is the client's `X-Request-Id` when that is a short token (a proxy's
//!   id carries through), else one berth makes (unique per process: a per-process prefix,
//!   the shard and a counter). It is echoed in the response's `X-Request-Id`.
//! - Nothing here reads or logs request headers other than `X-Request-Id`.
//! - Ending a request happens once, in `Drop`, whatever the way out (sent, error, client
//!   gone), so the in-flight gauge cannot drift.
//! - A failed request is attributed to its repository only if that exists, an index read
//!   the drop cannot await: it is made when the response is ready
//!   ([`RequestScope::answered`]). A request never answered (the client left) has none;
//!   its drop polls the read once, which the embedded index answers at that poll, and counts
//!   it under `N/A` if the read would have to wait.
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use berth_storage::oci::RepoName;
use berth_storage::Engine;
use bytes::Bytes;
use futures_util::FutureExt;
use hyper::{header::HeaderValue, HeaderMap, Method, Uri};

use crate::ext::metrics::{Finished, Metrics, RepoAction};
use crate::runtime::logging::{ACCESS_TARGET, AUDIT_TARGET};

/// Longest client-supplied request id accepted.
const REQUEST_ID_MAX: usize = 64;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Status recorded for a request whose client left before it was answered (nginx's code).
const CLIENT_CLOSED: u16 = 499;

/// Body bytes a request moved, counted by the request and response body wrappers.
#[derive(Default)]
pub struct ByteCounts {
    pub received: Cell<u64>,
    pub sent: Cell<u64>,
}

/// What the handler learnt about a request, for its metrics.
#[derive(Debug)]
pub struct RequestInfo {
    pub repo: Option<RepoName>,
    pub action: RepoAction,
    /// False for requests the metrics do not count (the metrics endpoint itself).
    pub counted: bool,
    /// The authenticated user (`http.auth`); None when anonymous.
    pub user: Option<String>,
    /// The API key `user` logged in with (auth/apikey.rs: its scopes confine the request).
    pub key: Option<std::sync::Arc<crate::auth::apikey::KeyGrant>>,
    /// The client's address (None only in tests that build a request by hand).
    pub peer: Option<SocketAddr>,
}

impl Default for RequestInfo {
    fn default() -> RequestInfo {
        RequestInfo {
            repo: None,
            action: RepoAction::Other,
            counted: true,
            user: None,
            key: None,
            peer: None,
        }
    }
}

/// What a shard's requests share for observation.
pub struct Observer {
    pub metrics: Arc<Metrics>,
    pub engine: Arc<Engine>,
    pub shard: usize,
    next_id: Cell<u64>,
}

impl Observer {
    pub fn new(metrics: Arc<Metrics>, engine: Arc<Engine>, shard: usize) -> Observer {
        Observer {
            metrics,
            engine,
            shard,
            next_id: Cell::new(0),
        }
    }

    /// Starts observing a request.
    pub fn begin(
        self: &Rc<Self>,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> RequestScope {
        let request_id = client_request_id(headers).unwrap_or_else(|| {
            let sequence = self.next_id.get();
            self.next_id.set(sequence + 1);
            let text = format!("{}-{}-{sequence:x}", process_prefix(), self.shard);
            HeaderValue::from_maybe_shared(Bytes::from(text))
                .expect("hex digits and dashes are a valid header value")
        });
        let span = tracing::info_span!("request", request_id = %id_text(&request_id));
        self.metrics.shard(self.shard).request_started();
        RequestScope {
            observer: Rc::clone(self),
            span,
            started: Instant::now(),
            method: method.clone(),
            uri: uri.clone(),
            peer,
            request_id,
            bytes: Rc::default(),
            status: 0,
            info: RequestInfo {
                peer: Some(peer),
                ..RequestInfo::default()
            },
            repo_exists: None,
        }
    }
}

/// A random-enough prefix that tells this process's ids from the last one's.
fn process_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        format!("{:08x}", nanos ^ std::process::id().rotate_left(16))
    })
}

fn client_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let value = headers.get(REQUEST_ID_HEADER)?;
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= REQUEST_ID_MAX
        && bytes
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    ok.then(|| value.clone())
}

/// A request id as text (they are ASCII tokens by construction).
fn id_text(id: &HeaderValue) -> &str {
    id.to_str().unwrap_or("")
}

/// One request in flight. Dropped when its response body is done.
pub struct RequestScope {
    observer: Rc<Observer>,
    pub span: tracing::Span,
    started: Instant,
    method: Method,
    uri: Uri,
    peer: SocketAddr,
    /// Echoed in the response's `X-Request-Id`.
    pub request_id: HeaderValue,
    pub bytes: Rc<ByteCounts>,
    pub status: u16,
    pub info: RequestInfo,
    /// Whether the repository of a failed request exists, read by [`RequestScope::answered`].
    repo_exists: Option<bool>,
}

impl RequestScope {
    /// Records the response's status and, when it is a failure naming a repository, whether
    /// that repository exists (for the metrics' repository label, decided in the drop).
    pub async fn answered(&mut self, status: u16) {
        self.status = status;
        if let (400.., Some(repo)) = (status, &self.info.repo) {
            let exists = self.observer.engine.repo_exists(repo).await;
            self.repo_exists = Some(exists.unwrap_or(false));
        }
    }

    fn mutating(&self) -> bool {
        matches!(
            self.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        // Never answered (the client went away first): counted as nginx's 499.
        if self.status == 0 {
            self.status = CLIENT_CLOSED;
        }
        let (received, sent) = (self.bytes.received.get(), self.bytes.sent.get());
        // A failed request for a repository that does not exist counts under N/A.
        let repo = self.info.repo.as_ref().filter(|repo| {
            self.status < 400
                || self.repo_exists.unwrap_or_else(|| {
                    let read = self.observer.engine.repo_exists(repo).now_or_never();
                    read.is_some_and(|exists| exists.unwrap_or(false))
                })
        });
        let shard = self.observer.metrics.shard(self.observer.shard);
        if self.info.counted {
            let action = match self.status {
                200..=299 => self.info.action,
                _ => RepoAction::Other,
            };
            shard.request_finished(&Finished {
                method: &self.method,
                status: self.status,
                elapsed,
                repo,
                action,
                received_bytes: received,
                sent_bytes: sent,
            });
        } else {
            shard.request_uncounted();
        }
        let _entered = self.span.enter();
        tracing::info!(
            target: ACCESS_TARGET,
            method = %self.method,
            path = %self.uri.path(),
            status = self.status,
            received_bytes = received,
            sent_bytes = sent,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            client = %self.peer,
            "request"
        );
        if self.mutating() {
            tracing::info!(
                target: AUDIT_TARGET,
                request_id = %id_text(&self.request_id),
                // Empty when anonymous.
                subject = self.info.user.as_deref().unwrap_or_default(),
                action = %self.method,
                object = %self.uri.path(),
                status = self.status,
                client = %self.peer,
                "audit"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_short_tokens() {
        let mut headers = HeaderMap::new();
        assert_eq!(client_request_id(&headers), None);
        headers.insert(REQUEST_ID_HEADER, "abc-123_x.y".parse().expect("valid"));
        let id = client_request_id(&headers).expect("a valid id");
        assert_eq!(id_text(&id), "abc-123_x.y");
        headers.insert(REQUEST_ID_HEADER, "a b".parse().expect("valid"));
        assert_eq!(client_request_id(&headers), None);
        headers.insert(REQUEST_ID_HEADER, "x".repeat(65).parse().expect("valid"));
        assert_eq!(client_request_id(&headers), None);
        headers.insert(REQUEST_ID_HEADER, "a\"}{".parse().expect("valid"));
        assert_eq!(client_request_id(&headers), None);
    }
}
