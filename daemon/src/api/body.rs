//! Request and response bodies. Responses are `!Send` boxed bodies (they may hold an io_uring
//! file of the shard that serves them). Request bodies are read frame by frame under an idle
//! timeout: a large push may take as long as it needs, but a stalled one is cut off.

use std::{
    cell::Cell,
    io,
    path::PathBuf,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use berth_storage::stats::ring_op;
use bytes::Bytes;
use http_body::SizeHint;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};

use super::error::ApiError;
use crate::runtime::observe::ByteCounts;

/// A response body that may be `!Send`: it lives and dies on the shard that produced it.
pub struct Body(Pin<Box<dyn http_body::Body<Data = Bytes, Error = io::Error>>>);

impl Body {
    fn new(body: impl http_body::Body<Data = Bytes, Error = io::Error> + 'static) -> Body {
        Body(Box::pin(body))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.0.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// A body that adds the length of every data frame it yields to one of `bytes`' counters,
/// and keeps `guard` alive until it is dropped: requests count what they receive, responses
/// what they send (and hold the request's observation until sent or abandoned).
pub struct Counted<B, G> {
    inner: B,
    bytes: Rc<ByteCounts>,
    counter: fn(&ByteCounts) -> &Cell<u64>,
    _guard: G,
}

impl<B, G> http_body::Body for Counted<B, G>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    G: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let counter = (this.counter)(&this.bytes);
                counter.set(counter.get() + data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Body {
    /// The same body, counting the bytes it sends into `bytes.sent` and holding `guard` until it
    /// is dropped.
    pub fn observed<G: Unpin + 'static>(self, bytes: Rc<ByteCounts>, guard: G) -> Body {
        Body::new(Counted {
            inner: self,
            bytes,
            counter: |bytes| &bytes.sent,
            _guard: guard,
        })
    }
}

/// A request body that counts the data bytes received.
pub type RequestBody = Counted<Incoming, ()>;

impl RequestBody {
    pub fn new(inner: Incoming, bytes: Rc<ByteCounts>) -> RequestBody {
        Counted {
            inner,
            bytes,
            counter: |bytes| &bytes.received,
            _guard: (),
        }
    }
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Body::new(Full::new(bytes.into()).map_err(|never| match never {}))
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// A complete JSON response (the listings, discover, the extensions' reports).
pub fn json_response(
    status: hyper::StatusCode,
    content_type: &str,
    value: serde_json::Value,
) -> hyper::Response<Body> {
    let bytes = Bytes::from(value.to_string());
    hyper::Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::CONTENT_LENGTH, bytes.len())
        .body(full(bytes))
        .expect("static headers are valid")
}

/// A body from a stream of frames (an error ends it, aborting the response).
pub fn stream_body(
    frames: impl futures_util::Stream<Item = io::Result<Frame<Bytes>>> + 'static,
) -> Body {
    Body::new(StreamBody::new(frames))
}

/// Pulls the next data chunk of a request body. `Ok(None)` is the end of the body; a gap of
/// more than `idle` between chunks, or a transport error, is an error (the connection is then
/// unusable, so the caller stops).
pub async fn next_chunk(
    body: &mut RequestBody,
    idle: Duration,
) -> Result<Option<Bytes>, BodyError> {
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(BodyError::Idle),
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => return Err(BodyError::Transport(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if !data.is_empty() {
                return Ok(Some(data));
            }
        }
    }
}

#[derive(Debug)]
pub enum BodyError {
    Idle,
    Transport(String),
}

impl From<BodyError> for ApiError {
    fn from(error: BodyError) -> Self {
        match error {
            BodyError::Idle => ApiError::BlobUploadInvalid("request body stalled".into()),
            BodyError::Transport(e) => ApiError::BlobUploadInvalid(format!("request body: {e}")),
        }
    }
}

/// Reads a whole body of at most `limit` bytes. Reading stops at `limit + 1`: the caller
/// never buffers more than the limit whatever the client declares or sends.
pub async fn read_limited(
    body: &mut RequestBody,
    limit: usize,
    idle: Duration,
) -> Result<Result<Bytes, usize>, BodyError> {
    let mut buf = Vec::new();
    while let Some(chunk) = next_chunk(body, idle).await? {
        if buf.len() + chunk.len() > limit {
            return Ok(Err(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Ok(Bytes::from(buf)))
}

/// Most bytes of a refused body read and discarded before answering, so that a client still
/// sending gets the error response instead of a broken pipe (Go's servers do the same).
pub const DRAIN_MAX_BYTES: usize = 256 * 1024;

/// Reads and discards up to [`DRAIN_MAX_BYTES`] of a body that is being refused.
pub async fn drain(body: &mut RequestBody, idle: Duration) {
    let mut drained = 0;
    while drained < DRAIN_MAX_BYTES {
        match next_chunk(body, idle).await {
            Ok(Some(chunk)) => drained += chunk.len(),
            Ok(None) | Err(_) => return,
        }
    }
}

/// Size of each read when streaming a blob file to a client.
const READ_CHUNK_BYTES: usize = 256 * 1024;

/// Streams `len` bytes of the file at `path` from `offset`. With io_uring the reads go through
/// the shard's ring; otherwise through tokio's blocking pool. A short read before `len` bytes
/// is an error (a truncated blob file), never a silent end of body.
pub async fn file_body(path: PathBuf, offset: u64, len: u64, uring: bool) -> io::Result<Body> {
    if uring {
        let file = ring_op(tokio_uring::fs::File::open(&path)).await?;
        let state = (file, offset, len);
        let stream = futures_util::stream::unfold(Some(state), |state| async move {
            let (file, offset, remaining) = state?;
            if remaining == 0 {
                let _ = ring_op(file.close()).await;
                return None;
            }
            let want = remaining.min(READ_CHUNK_BYTES as u64) as usize;
            let (res, mut buf) = ring_op(file.read_at(Vec::with_capacity(want), offset)).await;
            match res {
                Ok(0) => Some((Err(short_read()), None)),
                Ok(n) => {
                    buf.truncate(n);
                    let next = (file, offset + n as u64, remaining - n as u64);
                    Some((Ok(Frame::data(Bytes::from(buf))), Some(next)))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
        Ok(Body::new(StreamBody::new(stream)))
    } else {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut file = tokio::fs::File::open(&path).await?;
        file.seek(io::SeekFrom::Start(offset)).await?;
        let stream = futures_util::stream::unfold(Some((file, len)), |state| async move {
            let (mut file, remaining) = state?;
            if remaining == 0 {
                return None;
            }
            let want = remaining.min(READ_CHUNK_BYTES as u64) as usize;
            let mut buf = vec![0u8; want];
            match file.read(&mut buf).await {
                Ok(0) => Some((Err(short_read()), None)),
                Ok(n) => {
                    buf.truncate(n);
                    Some((
                        Ok(Frame::data(Bytes::from(buf))),
                        Some((file, remaining - n as u64)),
                    ))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
        Ok(Body::new(StreamBody::new(stream)))
    }
}

fn short_read() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "blob file is shorter than its record",
    )
}
