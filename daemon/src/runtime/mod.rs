//! The thread-per-core runtime. Each shard is one OS thread running a current-thread tokio
//! runtime driven by io_uring (tokio-uring), with its own SO_REUSEPORT listener: the kernel
//! spreads connections over shards and a request never leaves the shard that accepted it
//! (no work stealing). Where io_uring is unavailable, shards run plain tokio and the engine
//! uses its thread-pool file backend.
//!
//! Shutdown: SIGTERM or SIGINT flips a watch channel (after `http.shutdownDelay`, serve.rs);
//! every shard stops accepting, lets hyper finish in-flight requests (graceful shutdown) for
//! at most the drain timeout, then exits.
//!
//! Every request is observed (observe.rs): a log span with its id, byte counts, and on its
//! end the metrics, access and audit lines.
//!
//! Also here, what the shards run on: the connection watch (idle and header limits), the
//! reloadable settings and lifecycle flags (live.rs), logging, the loop of the periodic
//! maintenance threads, and how threads that are not async call the engine (blocking.rs).

pub mod blocking;
pub mod conn_watch;
pub mod connection;
pub mod live;
pub mod logging;
pub mod observe;
pub mod periodic;
pub mod tls;

use std::{
    io,
    net::{SocketAddr, TcpListener as StdTcpListener},
    rc::Rc,
    sync::Arc,
    thread,
    time::Duration,
};

use hyper_util::{
    rt::TokioTimer,
    server::{conn::auto, graceful::GracefulShutdown},
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use crate::{
    api::Ctx,
    ext::metrics::Metrics,
    policy::{quota::Quotas, tag_policy::ImmutableTags},
};
use connection::Connection;
use live::Live;
use observe::Observer;

/// Submission queue entries per shard ring. Small rings stay far below the 8 MiB memlock
/// limit of the machines we run on; a shard rarely has more than a few hundred ops in flight.
const RING_ENTRIES: u32 = 256;
/// HTTP/2 limits per connection.
const H2_MAX_STREAMS: u32 = 256;
const H2_MAX_PENDING_RESETS: usize = 64;
const H2_MAX_LOCAL_RESETS: usize = 256;
/// Listen backlog per shard.
const LISTEN_BACKLOG: i32 = 1024;

/// What every shard shares.
pub struct Shared {
    pub engine: Arc<berth_storage::Engine>,
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    pub immutable_tags: Arc<ImmutableTags>,
    pub quotas: Arc<Quotas>,
    pub sync: Option<Arc<crate::ext::sync::ondemand::OnDemand>>,
    pub auth: Option<Arc<crate::auth::htpasswd::Authenticator>>,
    pub bearer: Option<Arc<crate::auth::bearer::Bearer>>,
    pub access: Option<Arc<crate::auth::access::AccessControl>>,
    pub extensions: Arc<crate::ext::Registry>,
    pub trust: Option<Arc<crate::ext::trust::Trust>>,
    pub rate_limits: Option<Arc<crate::policy::ratelimit::RateLimits>>,
    pub cors: Option<Arc<crate::policy::cors::Cors>>,
    /// `http.tls`: every shard serves HTTPS.
    pub tls: Option<Arc<tls::Tls>>,
    /// `storage.redirectBlobURL` (only ever true with blobs in S3).
    pub redirect_blob_url: bool,
}

pub struct ShardSettings {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_idle: Duration,
    pub drain_timeout: Duration,
}

/// True when this kernel lets us create an io_uring instance.
pub fn uring_available() -> bool {
    let mut builder = tokio_uring::builder();
    builder.entries(8);
    tokio_uring::Runtime::new(&builder).is_ok()
}

/// Binds `workers` listeners on the same address (the first decides the port when it is 0).
pub fn bind_all(addr: SocketAddr, workers: usize) -> io::Result<Vec<StdTcpListener>> {
    let first = bind_one(addr)?;
    let bound = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(bind_one(bound)?);
    }
    Ok(listeners)
}

fn bind_one(addr: SocketAddr) -> io::Result<StdTcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Starts one thread per listener and returns their handles.
pub fn start_shards(
    listeners: Vec<StdTcpListener>,
    shared: Arc<Shared>,
    settings: Arc<ShardSettings>,
    uring: bool,
    shutdown: watch::Receiver<bool>,
) -> io::Result<Vec<thread::JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let shared = shared.clone();
        let settings = settings.clone();
        let shutdown = shutdown.clone();
        let handle = thread::Builder::new()
            .name(format!("shard-{index}"))
            .spawn(move || {
                let shard = shard_main(listener, index, shared, settings, uring, shutdown);
                if uring {
                    let mut builder = tokio_uring::builder();
                    builder.entries(RING_ENTRIES);
                    let runtime = tokio_uring::Runtime::new(&builder).expect("io_uring was probed");
                    runtime.block_on(shard);
                } else {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a current-thread runtime builds");
                    tokio::task::LocalSet::new().block_on(&runtime, shard);
                }
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Spawns `!Send` futures (hyper's HTTP/2 streams) on the shard's local task set.
#[derive(Clone, Copy)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: std::future::Future + 'static,
{
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

async fn shard_main(
    listener: StdTcpListener,
    index: usize,
    shared: Arc<Shared>,
    settings: Arc<ShardSettings>,
    uring: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener is nonblocking");
    let ctx = Rc::new(Ctx {
        engine: shared.engine.clone(),
        body_idle: settings.body_idle,
        uring,
        live: shared.live.clone(),
        metrics: shared.metrics.clone(),
        immutable_tags: shared.immutable_tags.clone(),
        quotas: shared.quotas.clone(),
        sync: shared.sync.clone(),
        auth: shared.auth.clone(),
        bearer: shared.bearer.clone(),
        access: shared.access.clone(),
        extensions: shared.extensions.clone(),
        trust: shared.trust.clone(),
        rate_limits: shared.rate_limits.clone(),
        cors: shared.cors.clone(),
        redirect_blob_url: shared.redirect_blob_url,
    });
    let observer = Rc::new(Observer::new(
        shared.metrics.clone(),
        shared.engine.clone(),
        index,
    ));
    let mut builder = auto::Builder::new(LocalExec);
    builder
        .http1()
        .timer(TokioTimer::new())
        // Backstop only: hyper starts this timer when a connection goes idle; the real idle
        // and head limits are enforced by the connection watch.
        .header_read_timeout(settings.idle_timeout + settings.header_read_timeout)
        .keep_alive(true);
    // Explicit reset-flood limits (hyper#3782, hyper#2877) and a stream cap per connection.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_pending_accept_reset_streams(Some(H2_MAX_PENDING_RESETS))
        .max_local_error_reset_streams(Some(H2_MAX_LOCAL_RESETS))
        .max_concurrent_streams(H2_MAX_STREAMS);
    // Over TLS, a response's head and body go out as one buffer: one TLS record and one
    // encryption instead of one per piece.
    let mut tls_builder = builder.clone();
    tls_builder.http1().writev(false);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            ctx: ctx.clone(),
            observer: observer.clone(),
            builder: match shared.tls {
                Some(_) => tls_builder.clone(),
                None => builder.clone(),
            },
            graceful: graceful.watcher(),
            peer,
            idle: settings.idle_timeout,
            head: settings.header_read_timeout,
        };
        let tls = shared
            .tls
            .as_ref()
            .map(|tls| (tls.acceptor(), tls.identity()));
        tokio::task::spawn_local(connection.run(stream, tls));
    }
    drop(listener);
    if tokio::time::timeout(settings.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached with requests still in flight");
    }
}
