//! One accepted connection on a shard: the TLS handshake when `http.tls` is on, then hyper
//! (HTTP/1.1 and HTTP/2) until the client leaves, the connection idles out, or the shard
//! drains.
//!
//! Rules:
//! - The handshake is bounded by `readHeaderTimeout` and runs in the connection's own task:
//!   a slow or silent client never holds the accept loop.
//! - A verified client certificate's identity rides on every request of the connection
//!   ([`TlsIdentity`]); the API takes it as the caller (auth there).
//! - The connection watch sees every byte (handshake included) for the idle and head limits.
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use hyper::{body::Incoming, service::service_fn, Request};
use hyper_util::rt::TokioIo;
use hyper_util::server::{conn::auto, graceful::Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::Instrument;

use super::conn_watch::{ConnWatch, WatchedStream};
use super::observe::{Observer, REQUEST_ID_HEADER};
use super::LocalExec;
use crate::api::{self, body::RequestBody, Ctx};

/// The identity of the verified client certificate a request came with (mutual TLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsIdentity(pub String);

/// Encrypted bytes a TLS connection may buffer for the socket (rustls' default is 64 KiB).
const TLS_BUFFER_BYTES: usize = 1 << 20;

/// What serving one connection needs from its shard.
pub struct Connection {
    pub ctx: Rc<Ctx>,
    pub observer: Rc<Observer>,
    pub builder: auto::Builder<LocalExec>,
    pub graceful: Watcher,
    pub peer: SocketAddr,
    pub idle: Duration,
    pub head: Duration,
}

impl Connection {
    /// Serves `stream` to its end (after a TLS handshake with `tls` when given).
    pub async fn run(
        self,
        stream: TcpStream,
        tls: Option<(
            tokio_rustls::TlsAcceptor,
            std::sync::Arc<crate::auth::mtls::CertIdentity>,
        )>,
    ) {
        let watch = ConnWatch::new();
        let stream = WatchedStream::new(stream, watch.clone());
        let Some((acceptor, names)) = tls else {
            return self.serve(TokioIo::new(stream), watch, None).await;
        };
        match tokio::time::timeout(self.head, acceptor.accept(stream)).await {
            Ok(Ok(mut tls)) => {
                // rustls buffers at most 64 KiB of records by default: a large blob would be
                // encrypted and written in many small rounds.
                tls.get_mut().1.set_buffer_limit(Some(TLS_BUFFER_BYTES));
                let identity = super::tls::peer_identity(&names, tls.get_ref().1).map(TlsIdentity);
                self.serve(TokioIo::new(tls), watch, identity).await;
            }
            Ok(Err(error)) => {
                tracing::debug!(peer = %self.peer, %error, "TLS handshake failed");
            }
            Err(_) => {
                tracing::debug!(peer = %self.peer, "TLS handshake timed out");
            }
        }
    }

    async fn serve<S>(self, io: TokioIo<S>, watch: Rc<ConnWatch>, identity: Option<TlsIdentity>)
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let Connection {
            ctx,
            observer,
            builder,
            graceful,
            peer,
            idle,
            head,
        } = self;
        let requests = watch.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let guard = requests.request_started();
            let ctx = ctx.clone();
            let identity = identity.clone();
            let mut scope = observer.begin(req.method(), req.uri(), req.headers(), peer);
            async move {
                let span = scope.span.clone();
                let mut req = req.map(|body| RequestBody::new(body, scope.bytes.clone()));
                if let Some(identity) = identity {
                    req.extensions_mut().insert(identity);
                }
                let mut response = api::handle(req, ctx, &mut scope.info)
                    .instrument(span)
                    .await?;
                scope.answered(response.status().as_u16()).await;
                let id = scope.request_id.clone();
                response.headers_mut().insert(REQUEST_ID_HEADER, id);
                let bytes = scope.bytes.clone();
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| body.observed(bytes, (guard, scope))),
                )
            }
        });
        let connection = graceful.watch(builder.serve_connection(io, service).into_owned());
        tokio::select! {
            result = connection => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
            }
            expiry = watch.expired(idle, head) => {
                // No request is in flight: dropping the connection just closes it.
                tracing::debug!(%peer, ?expiry, "closing connection");
            }
        }
    }
}
