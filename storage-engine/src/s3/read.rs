//! Blob reads: one (ranged) GET, its body handed out as a stream of `Bytes` that ends with an
//! error, never silently, when the connection delivers fewer bytes than the range holds.
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore as _};

use super::{backend, invalid, S3Blobs};
use crate::error::StorageError;
use crate::oci::Digest;

/// `into_bytes` reserves at most this much up front.
const INITIAL_BUFFER_BYTES: u64 = 64 << 20;

/// An open blob GET. Dropping it closes the connection's body (no further reads).
pub struct BlobRead {
    key: ObjectPath,
    size: u64,
    start: u64,
    /// Bytes of the range not yet received.
    remaining: u64,
    body: BoxStream<'static, object_store::Result<Bytes>>,
}

impl std::fmt::Debug for BlobRead {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("BlobRead")
            .field("key", &self.key)
            .field("size", &self.size)
            .field("start", &self.start)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl S3Blobs {
    /// Opens the blob for reading: all of it, or the inclusive byte range `(first, last)`
    /// (as `ByteRange::resolve` gives it, so within the blob's size: a range starting past the
    /// end is an error). `None` if the blob is absent.
    pub async fn read(
        &self,
        digest: &Digest,
        range: Option<(u64, u64)>,
    ) -> Result<Option<BlobRead>, StorageError> {
        let key = self.blob_key(digest);
        let mut options = GetOptions::default();
        if let Some((first, last)) = range {
            if first > last || last == u64::MAX {
                return Err(invalid(format!("byte range {first}-{last} is inverted")));
            }
            options.range = Some(GetRange::Bounded(first..last + 1));
        }
        let result = match self.shared.client()?.get_opts(&key, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(backend("GET", &key, error)),
        };
        let (size, start, end) = (result.meta.size, result.range.start, result.range.end);
        Ok(Some(BlobRead {
            key,
            size,
            start,
            remaining: end - start,
            body: result.into_stream(),
        }))
    }
}

impl BlobRead {
    /// The whole blob's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The first byte this read delivers (0 without a range).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Bytes still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next piece of the body; `None` once every byte of the range has arrived. A body
    /// that ends early, or delivers more than the range, is an error.
    pub async fn next_chunk(&mut self) -> Option<Result<Bytes, StorageError>> {
        match self.body.next().await {
            Some(Ok(bytes)) => {
                let len = bytes.len() as u64;
                if len > self.remaining {
                    self.remaining = 0;
                    return Some(Err(StorageError::Io(std::io::Error::other(format!(
                        "S3 GET {}: more bytes than the range holds",
                        self.key
                    )))));
                }
                self.remaining -= len;
                Some(Ok(bytes))
            }
            Some(Err(error)) => Some(Err(backend("GET", &self.key, error))),
            None if self.remaining > 0 => {
                let missing = std::mem::take(&mut self.remaining);
                Some(Err(StorageError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("S3 GET {}: body ended {missing} bytes short", self.key),
                ))))
            }
            None => None,
        }
    }

    /// The rest of the body as a stream (for an HTTP response body).
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<Bytes, StorageError>> + Send + 'static {
        futures_util::stream::unfold(self, |mut read| async move {
            let chunk = read.next_chunk().await?;
            Some((chunk, read))
        })
    }

    /// The rest of the body in one buffer (small blobs, tests).
    pub async fn into_bytes(mut self) -> Result<Vec<u8>, StorageError> {
        let capacity = self.remaining.min(INITIAL_BUFFER_BYTES);
        let mut out = Vec::with_capacity(usize::try_from(capacity).expect("64 MiB fits"));
        while let Some(chunk) = self.next_chunk().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }
}
