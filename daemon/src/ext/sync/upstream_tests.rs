//! Tests of the upstream client against small hyper servers on 127.0.0.1:0 that play a
//! registry, a token server on another port, a CDN, a stalling or failing upstream.
//!
//! The servers and the client's I/O run on one "sync runtime" thread (as in the daemon); each
//! test awaits the client from its own current-thread runtime, as the shards would.
mod distribution;
mod security;
mod transfer;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use berth_storage::oci::{Algorithm, Digest};
use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};

use super::auth::Credentials;
use super::upstream::{Upstream, UpstreamError, UpstreamOptions, MAX_MANIFEST_BYTES};
use super::upstream_http::{check_repo, is_link_local, link_local_refusal, next_link};

type Body = BoxBody<Bytes, Infallible>;

/// One request as a test server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    authorization: Option<String>,
    accept: Option<String>,
}

enum Reply {
    Respond(Response<Body>),
    /// Never send response headers.
    Stall,
}

type Handler = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    closed: Arc<AtomicUsize>,
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }
}

/// The runtime the client's I/O and the servers run on: one thread, alive for the test binary.
fn sync_runtime() -> tokio::runtime::Handle {
    static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("sync runtime");
            let handle = runtime.handle().clone();
            std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));
            handle
        })
        .clone()
}

/// Runs a test body on its own runtime, not the sync runtime.
fn run(test: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime")
        .block_on(test)
}

fn serve(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Server {
    let handler: Handler = Arc::new(handler);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let closed = Arc::new(AtomicUsize::new(0));
    let (seen_task, closed_task) = (seen.clone(), closed.clone());
    sync_runtime().spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (handler, seen, closed) = (handler.clone(), seen_task.clone(), closed_task.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<_>| {
                    let header = |name: &str| {
                        request
                            .headers()
                            .get(name)
                            .and_then(|value| value.to_str().ok())
                            .map(str::to_owned)
                    };
                    let record = Seen {
                        method: request.method().to_string(),
                        target: request.uri().to_string(),
                        authorization: header("authorization"),
                        accept: header("accept"),
                    };
                    let index = {
                        let mut seen = seen.lock().expect("seen lock");
                        seen.push(record.clone());
                        seen.len() - 1
                    };
                    let reply = handler(&record, index);
                    async move {
                        match reply {
                            Reply::Respond(response) => Ok::<_, Infallible>(response),
                            Reply::Stall => std::future::pending().await,
                        }
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
                closed.fetch_add(1, SeqCst);
            });
        }
    });
    Server { addr, seen, closed }
}

fn respond(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    Reply::Respond(
        builder
            .body(Full::new(body.into()).boxed())
            .expect("response"),
    )
}

/// A chunked body of `total` bytes (or endless) in 64 KiB frames of byte `fill`.
fn streamed(total: Option<usize>, fill: u8) -> Body {
    let frames = futures_util::stream::unfold(0usize, move |sent| async move {
        let size = match total {
            Some(total) if sent >= total => return None,
            Some(total) => (total - sent).min(64 << 10),
            None => 64 << 10,
        };
        Some((
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![fill; size]))),
            sent + size,
        ))
    });
    BodyExt::boxed(StreamBody::new(frames))
}

fn options(urls: Vec<String>) -> UpstreamOptions {
    UpstreamOptions {
        name: "test".to_owned(),
        urls,
        credentials: Credentials::default(),
        tls_verify: true,
        cert_dir: None,
        max_retries: 0,
        retry_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_millis(10),
        req_concurrent: 3,
        req_per_sec: None,
        response_header_timeout: Duration::from_secs(5),
    }
}

fn upstream(options: UpstreamOptions) -> Upstream {
    Upstream::new(options, sync_runtime()).expect("upstream")
}

const MANIFEST: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn manifest_reply() -> Reply {
    let digest = Digest::of(Algorithm::Sha256, MANIFEST.as_bytes()).to_string();
    respond(
        200,
        &[
            ("content-type", OCI_MANIFEST),
            ("docker-content-digest", &digest),
        ],
        MANIFEST,
    )
}

fn basic(user: &str, password: &str) -> String {
    // Base64 by hand-picked fixtures keeps the test independent of the encoder under test.
    match (user, password) {
        ("alice", "secret") => "Basic YWxpY2U6c2VjcmV0".to_owned(),
        ("bob", "pw") => "Basic Ym9iOnB3".to_owned(),
        _ => unreachable!("no fixture for {user}"),
    }
}

/// A token server counting tokens, and a registry that accepts tokens in `accepted`.
fn bearer_pair(accepted: Arc<Mutex<Vec<String>>>) -> (Server, Server) {
    let issued = Arc::new(AtomicUsize::new(0));
    let token_server = serve(move |_, _| {
        let number = issued.fetch_add(1, SeqCst) + 1;
        respond(
            200,
            &[("content-type", "application/json")],
            format!(r#"{{"token":"tok-{number}","expires_in":300}}"#),
        )
    });
    let realm = format!("{}/token", token_server.url());
    let registry = serve(move |seen, _| {
        let ok = seen
            .authorization
            .as_deref()
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|token| {
                accepted
                    .lock()
                    .expect("accepted")
                    .iter()
                    .any(|good| good == token)
            });
        if ok {
            return manifest_reply();
        }
        let challenge = format!(
            r#"Bearer realm="{realm}",service="reg",scope="repository:library/alpine:pull""#
        );
        respond(401, &[("www-authenticate", &challenge)], "{}")
    });
    (token_server, registry)
}
