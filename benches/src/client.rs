//! The load tool's HTTP client: one HTTP/1.1 keep-alive connection per worker (hyper's
//! connection API, no pool), and the registry operations the workloads are built from.
//!
//! Rules: every response body is read to the end, and every pulled body (manifest, config,
//! layer) is hashed while it arrives and compared with the digest it was asked for: a
//! mismatch is a failed request. A connection that saw an error is dropped and redialled by
//! the next request. Times to first byte are measured from the request being handed to hyper
//! to its response head.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use berth_storage::oci::{Algorithm, Digest};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::data::Blob;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A request body made of ready chunks. `sized` bodies send Content-Length; others are sent
/// with chunked transfer encoding (a streamed upload).
pub struct ChunkBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
    sized: bool,
}

impl ChunkBody {
    pub fn empty() -> ChunkBody {
        ChunkBody::sized(Vec::new())
    }

    pub fn sized(chunks: Vec<Bytes>) -> ChunkBody {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        ChunkBody {
            chunks: chunks.into(),
            remaining,
            sized: true,
        }
    }

    pub fn streamed(chunks: Vec<Bytes>) -> ChunkBody {
        ChunkBody {
            sized: false,
            ..ChunkBody::sized(chunks)
        }
    }
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.chunks.pop_front();
        if let Some(chunk) = &next {
            self.remaining -= chunk.len() as u64;
        }
        Poll::Ready(next.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sized && self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        match self.sized {
            true => SizeHint::with_exact(self.remaining),
            false => SizeHint::default(),
        }
    }
}

/// What one pulled body was: its length and the time to its response head.
#[derive(Clone, Copy, Debug)]
pub struct Fetched {
    pub bytes: u64,
    pub ttfb: Duration,
}

/// HTTPS to the registry: the connector (trusting the benchmark's own CA) and the name the
/// server's certificate is checked against.
pub struct Tls {
    pub connector: tokio_rustls::TlsConnector,
    pub server_name: rustls::pki_types::ServerName<'static>,
}

impl Tls {
    /// A client that trusts `ca_pem` only and offers HTTP/1.1 by ALPN (the load tool speaks
    /// HTTP/1.1, as zb does).
    pub fn trusting(ca_pem: &[u8], server_name: &str) -> Result<Arc<Tls>> {
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(certificate?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(Tls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name: rustls::pki_types::ServerName::try_from(server_name.to_owned())?,
        }))
    }
}

/// One worker's connection to the registry.
pub struct Conn {
    addr: SocketAddr,
    authority: String,
    tls: Option<Arc<Tls>>,
    sender: Option<SendRequest<ChunkBody>>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn::with_tls(addr, None)
    }

    /// A connection that speaks HTTPS when `tls` is given.
    pub fn with_tls(addr: SocketAddr, tls: Option<Arc<Tls>>) -> Conn {
        Conn {
            addr,
            authority: addr.to_string(),
            tls,
            sender: None,
        }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<ChunkBody>> {
        if let Some(sender) = &mut self.sender {
            if sender.ready().await.is_err() {
                self.sender = None;
            }
        }
        if self.sender.is_none() {
            let stream = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connect {}", self.addr))?;
            stream.set_nodelay(true)?;
            let sender = match &self.tls {
                None => {
                    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    sender
                }
                Some(tls) => {
                    let stream = tls
                        .connector
                        .connect(tls.server_name.clone(), stream)
                        .await
                        .with_context(|| format!("TLS handshake with {}", self.addr))?;
                    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    sender
                }
            };
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("connected above"))
    }

    /// Sends one request; returns the response head and the time it took to arrive. Any
    /// error drops the connection.
    pub async fn send(
        &mut self,
        method: Method,
        target: &str,
        headers: &[(header::HeaderName, &str)],
        body: ChunkBody,
    ) -> Result<(Response<Incoming>, Duration)> {
        let mut builder = Request::builder()
            .method(method)
            .uri(target)
            .header(header::HOST, &self.authority);
        for (name, value) in headers {
            builder = builder.header(name, *value);
        }
        if body.sized {
            builder = builder.header(header::CONTENT_LENGTH, body.remaining);
        }
        let request = builder.body(body)?;
        let sender = self.sender().await?;
        let started = Instant::now();
        match sender.send_request(request).await {
            Ok(response) => Ok((response, started.elapsed())),
            Err(error) => {
                self.sender = None;
                Err(anyhow!("{error}"))
            }
        }
    }

    /// Reads a body to the end, hashing it with `algorithm` when given.
    async fn drain(
        &mut self,
        response: Response<Incoming>,
        hash: Option<Algorithm>,
    ) -> Result<(u64, Option<Digest>)> {
        let mut body = response.into_body();
        let mut hasher = hash.map(|algorithm| algorithm.hasher());
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| {
                self.sender = None;
                anyhow!("reading body: {error}")
            })?;
            if let Ok(data) = frame.into_data() {
                bytes += data.len() as u64;
                if let Some(hasher) = &mut hasher {
                    hasher.update(&data);
                }
            }
        }
        Ok((bytes, hasher.map(|hasher| hasher.finalize())))
    }

    /// Sends a request and checks its status; the body is read and dropped. Returns the
    /// Location header as a request target, if there was one.
    async fn expect(
        &mut self,
        method: Method,
        target: &str,
        headers: &[(header::HeaderName, &str)],
        body: ChunkBody,
        expected: StatusCode,
    ) -> Result<Option<String>> {
        let label = format!("{method}");
        let (response, _) = self.send(method, target, headers, body).await?;
        let status = response.status();
        let location = response.headers().get(header::LOCATION).cloned();
        self.drain(response, None).await?;
        if status != expected {
            bail!("{label} answered {}", status.as_u16());
        }
        location.map(|value| as_target(&value)).transpose()
    }

    /// GET (or HEAD) of a path that must answer 200, body hashed and checked against `digest`
    /// when given.
    pub async fn fetch(
        &mut self,
        method: Method,
        target: &str,
        accept: Option<&str>,
        digest: Option<&Digest>,
    ) -> Result<Fetched> {
        let headers: Vec<_> = accept.map(|a| (header::ACCEPT, a)).into_iter().collect();
        let label = format!("{method}");
        let (response, ttfb) = self
            .send(method, target, &headers, ChunkBody::empty())
            .await?;
        let status = response.status();
        let (bytes, actual) = self.drain(response, digest.map(Digest::algorithm)).await?;
        if status != StatusCode::OK {
            bail!("{label} answered {}", status.as_u16());
        }
        if let (Some(expected), Some(actual)) = (digest, actual) {
            if *expected != actual {
                bail!("digest mismatch");
            }
        }
        Ok(Fetched { bytes, ttfb })
    }

    /// POST an upload session; returns its location as a request target.
    async fn start_upload(&mut self, repo: &str) -> Result<String> {
        let location = self
            .expect(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                ChunkBody::empty(),
                StatusCode::ACCEPTED,
            )
            .await?;
        required(location)
    }

    /// Monolithic push: POST a session, then one PUT with the whole body and `?digest=`.
    pub async fn push_monolithic(&mut self, repo: &str, blob: &Blob) -> Result<()> {
        let session = self.start_upload(repo).await?;
        let target = with_digest(&session, &blob.digest);
        self.expect(
            Method::PUT,
            &target,
            &[(header::CONTENT_TYPE, "application/octet-stream")],
            ChunkBody::sized(blob.chunks.clone()),
            StatusCode::CREATED,
        )
        .await?;
        Ok(())
    }

    /// Streamed push: POST, one PATCH with a chunked body, then PUT `?digest=` with no body.
    pub async fn push_streamed(&mut self, repo: &str, blob: &Blob) -> Result<()> {
        let session = self.start_upload(repo).await?;
        let location = self
            .expect(
                Method::PATCH,
                &session,
                &[(header::CONTENT_TYPE, "application/octet-stream")],
                ChunkBody::streamed(blob.chunks.clone()),
                StatusCode::ACCEPTED,
            )
            .await?;
        let session = required(location)?;
        self.expect(
            Method::PUT,
            &with_digest(&session, &blob.digest),
            &[],
            ChunkBody::empty(),
            StatusCode::CREATED,
        )
        .await?;
        Ok(())
    }

    pub async fn put_manifest(&mut self, repo: &str, tag: &str, manifest: Bytes) -> Result<()> {
        self.expect(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{tag}"),
            &[(header::CONTENT_TYPE, OCI_MANIFEST)],
            ChunkBody::sized(vec![manifest]),
            StatusCode::CREATED,
        )
        .await?;
        Ok(())
    }
}

/// A Location value as a request target (Distribution sends absolute URLs).
fn as_target(value: &http::HeaderValue) -> Result<String> {
    let text = value.to_str()?;
    let uri: http::Uri = text.parse()?;
    uri.path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .ok_or_else(|| anyhow!("Location {text:?} has no path"))
}

fn required(location: Option<String>) -> Result<String> {
    location.ok_or_else(|| anyhow!("no Location header"))
}

fn with_digest(session: &str, digest: &Digest) -> String {
    let separator = if session.contains('?') { '&' } else { '?' };
    format!("{session}{separator}digest={digest}")
}

/// Resolves `host:port` (or a URL's authority) to a socket address.
pub fn resolve(url: &str) -> Result<SocketAddr> {
    let uri: http::Uri = url.parse().with_context(|| format!("URL {url:?}"))?;
    if uri.scheme_str().is_some_and(|scheme| scheme != "http") {
        bail!("only http:// registries are supported (got {url})");
    }
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow!("URL {url:?} has no host"))?;
    let port = authority.port_u16().unwrap_or(80);
    use std::net::ToSocketAddrs;
    (authority.host(), port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow!("{url} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::service::service_fn;

    /// A server answering every request with `body` and `status`.
    async fn serve(body: &'static [u8], status: StatusCode) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = service_fn(move |_| async move {
                    let mut response =
                        Response::new(ChunkBody::sized(vec![Bytes::from_static(body)]));
                    *response.status_mut() = status;
                    Ok::<_, Infallible>(response)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        addr
    }

    #[test]
    fn pulled_bodies_are_verified_against_their_digest() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let right = Digest::of(Algorithm::Sha256, b"layer bytes");
            let wrong = Digest::of(Algorithm::Sha256, b"other bytes");
            let mut conn = Conn::new(serve(b"layer bytes", StatusCode::OK).await);
            let fetched = conn
                .fetch(Method::GET, "/x", None, Some(&right))
                .await
                .unwrap();
            assert_eq!(fetched.bytes, 11);
            let error = conn
                .fetch(Method::GET, "/x", None, Some(&wrong))
                .await
                .unwrap_err();
            assert_eq!(error.to_string(), "digest mismatch");
            // The connection is still usable after a mismatch (the body was read to the end).
            conn.fetch(Method::GET, "/x", None, Some(&right))
                .await
                .unwrap();

            let mut missing = Conn::new(serve(b"{}", StatusCode::NOT_FOUND).await);
            let error = missing
                .fetch(Method::GET, "/x", None, None)
                .await
                .unwrap_err();
            assert_eq!(error.to_string(), "GET answered 404");
        });
    }

    #[test]
    fn locations_become_request_targets() {
        let absolute =
            http::HeaderValue::from_static("http://127.0.0.1:5000/v2/a/blobs/uploads/u?_state=x");
        assert_eq!(
            as_target(&absolute).unwrap(),
            "/v2/a/blobs/uploads/u?_state=x"
        );
        let relative = http::HeaderValue::from_static("/v2/a/blobs/uploads/u");
        assert_eq!(as_target(&relative).unwrap(), "/v2/a/blobs/uploads/u");
        let digest = Digest::of(Algorithm::Sha256, b"");
        assert_eq!(
            with_digest("/u?_state=x", &digest),
            format!("/u?_state=x&digest={digest}")
        );
        assert_eq!(with_digest("/u", &digest), format!("/u?digest={digest}"));
    }
}
