//! Per-connection time limits that hyper does not give us: a keep-alive connection may sit
//! idle for `idleTimeout` between requests, but once the first byte of a request head arrives
//! the whole head must arrive within `readHeaderTimeout` (slowloris). hyper's own head timer
//! starts as soon as a connection goes idle, which would cut idle connections after a few
//! seconds, so it is only a backstop here.
//!
//! The watch is fed from two sides: [`WatchedStream`] sees bytes arrive, and the service holds
//! a [`RequestGuard`] from the start of a request until its response body is dropped (sent or
//! abandoned). Nothing is timed while a request is in flight: bodies have their own idle
//! timeout. On HTTP/2 any frame counts as the start of a head, so a client that sends only
//! PINGs on an otherwise idle connection is closed after the head timeout.

use std::{
    cell::Cell,
    io,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::Notify,
    time::Instant,
};

#[derive(Clone, Copy)]
enum Phase {
    /// No request in flight and no byte of the next one yet, since this instant.
    Idle(Instant),
    /// The first bytes of a request head arrived at this instant.
    Head(Instant),
    /// At least one request is being served.
    Busy,
}

/// Why a connection was closed by the watch.
#[derive(Debug, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    Head,
}

pub struct ConnWatch {
    phase: Cell<Phase>,
    in_flight: Cell<usize>,
    /// Wakes the watchdog when a head starts: its deadline moves closer.
    head_started: Notify,
}

impl ConnWatch {
    pub fn new() -> Rc<ConnWatch> {
        Rc::new(ConnWatch {
            phase: Cell::new(Phase::Idle(Instant::now())),
            in_flight: Cell::new(0),
            head_started: Notify::new(),
        })
    }

    fn bytes_arrived(&self) {
        if let Phase::Idle(_) = self.phase.get() {
            self.phase.set(Phase::Head(Instant::now()));
            self.head_started.notify_one();
        }
    }

    /// Marks a request as in flight until the guard is dropped.
    pub fn request_started(self: &Rc<Self>) -> RequestGuard {
        self.in_flight.set(self.in_flight.get() + 1);
        self.phase.set(Phase::Busy);
        RequestGuard(self.clone())
    }

    /// Resolves when the connection has been idle, or has been receiving one request head,
    /// for too long.
    pub async fn expired(&self, idle: Duration, head: Duration) -> Expiry {
        loop {
            let deadline = match self.phase.get() {
                Phase::Idle(since) => since + idle,
                Phase::Head(since) => since + head,
                Phase::Busy => Instant::now() + head,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.head_started.notified() => continue,
            }
            let now = Instant::now();
            match self.phase.get() {
                Phase::Idle(since) if since + idle <= now => return Expiry::Idle,
                Phase::Head(since) if since + head <= now => return Expiry::Head,
                _ => {}
            }
        }
    }
}

/// Held by a request from its start until its response body is dropped.
pub struct RequestGuard(Rc<ConnWatch>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let left = self.0.in_flight.get().saturating_sub(1);
        self.0.in_flight.set(left);
        if left == 0 {
            self.0.phase.set(Phase::Idle(Instant::now()));
        }
    }
}

/// A stream that reports arriving bytes to its [`ConnWatch`].
pub struct WatchedStream<S> {
    inner: S,
    watch: Rc<ConnWatch>,
}

impl<S> WatchedStream<S> {
    pub fn new(inner: S, watch: Rc<ConnWatch>) -> WatchedStream<S> {
        WatchedStream { inner, watch }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.bytes_arrived();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
