//! `S3Blobs`: blobs in an S3-compatible bucket (SHARED.md D3), the shared backend's blob layer.
//! Not wired into `Engine` yet: this module owns the bucket's layout and every S3 call.
//!
//! Layout under the configured root (`rootDirectory`, may be empty):
//!
//! ```text
//! <root>/blobs/<algorithm>/<hex>       a complete blob, content-addressed, written once
//! <root>/uploads/<upload-id>/multipart the object a multipart upload is completed into
//! <root>/uploads/<upload-id>/<name>    staging objects of a session (e.g. the tail below 5 MiB)
//! ```
//!
//! Rules:
//! - Keys are built only from `Digest` and `UploadId` values (and staging names checked to be
//!   `[a-z0-9_-]`), so no string from the wire reaches a key unparsed.
//! - Nothing appears under `blobs/` unless its digest was verified first: `put_once` hashes
//!   its bytes, a multipart upload is verified from its resumed hash state (or by hashing the
//!   assembled object) before `install` copies it into place. An existing blob is never
//!   replaced: `install` looks first and copies only onto an absent key, and `put_once` is a
//!   conditional PUT (`If-None-Match: *`). Same digest means same bytes, so losing a race to
//!   another writer of the same blob is success.
//! - One S3 client per runtime and thread (`client`): reqwest's connection pool shared across
//!   tokio current-thread runtimes hangs (SHARED.md findings), and berth runs one
//!   current-thread runtime per shard plus runtimes of its maintenance threads.
//! - The object store failing is `StorageError::Io` (kind `Other`, message naming the
//!   operation and key): a 500 to clients. Broken records (a part list S3 cannot complete, an
//!   object of the wrong size under a digest) are `StorageError::Corrupt`.
//! - Cancellation: every call is one or a few S3 requests; a dropped future leaves what the
//!   requests sent so far did, which each function's doc states. S3 itself never shows a
//!   half-written object.
mod client;
mod multipart;
mod read;
mod records;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer as _;
use object_store::{ObjectStore as _, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};

use crate::error::StorageError;
use crate::oci::{Digest, UploadId};

pub use multipart::{MAX_PARTS, MIN_PART_BYTES};
pub use read::BlobRead;
pub use records::{PartRecord, S3Upload};

/// The largest object one PUT may write (S3's limit); larger blobs go through multipart.
pub const MAX_PUT_BYTES: u64 = 5 << 30;
/// The longest a presigned URL may live (SigV4's limit: 7 days).
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most entries one `list_blobs` call returns (S3 lists 1000 keys per request).
pub const MAX_LIST_PAGE: usize = 1000;

/// Where the blobs are: zot's `storage.storageDriver` keys for `name: s3`.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Options {
    pub bucket: String,
    /// SigV4 signs it; SeaweedFS and MinIO ignore its value.
    pub region: String,
    /// zot's `regionendpoint`: `http(s)://host:port`, or `host:port` with the scheme taken from
    /// `secure`. `None`: AWS's endpoint for `region`.
    pub endpoint: Option<String>,
    /// https (rustls, webpki roots) rather than http.
    pub secure: bool,
    /// Accept any server certificate (zot's `skipverify`).
    pub skip_verify: bool,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// zot's `rootdirectory`: a key prefix, "" or e.g. "/zot" (slashes around it are ignored).
    pub root_directory: String,
    /// Path-style requests (`endpoint/bucket/key`); SeaweedFS and MinIO need them. Requests to
    /// a custom endpoint are always path-style (a virtual-hosted endpoint would have to name
    /// the bucket itself).
    pub force_path_style: bool,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("secure", &self.secure)
            .field("skip_verify", &self.skip_verify)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("root_directory", &self.root_directory)
            .field("force_path_style", &self.force_path_style)
            .finish()
    }
}

/// One listed object under `blobs/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedBlob {
    /// The key below `<root>/blobs/`, e.g. `sha256/<hex>`: the cursor of the next page.
    pub name: String,
    /// `None` for a key that does not name a digest (fsck reports it).
    pub digest: Option<Digest>,
    pub size: u64,
    /// When the object was written (ms since the Unix epoch), as the listing reports it.
    pub last_modified_ms: u64,
}

/// The blob layer on one bucket. Cheap to clone; usable from any thread and runtime.
#[derive(Clone, Debug)]
pub struct S3Blobs {
    shared: Arc<client::Shared>,
}

pub(crate) fn backend(
    operation: &str,
    key: &ObjectPath,
    error: object_store::Error,
) -> StorageError {
    StorageError::Io(std::io::Error::other(format!(
        "S3 {operation} {key}: {error}"
    )))
}

pub(crate) fn invalid(message: String) -> StorageError {
    StorageError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        message,
    ))
}

impl S3Blobs {
    /// Checks the options and builds a first client (no request is sent). Bad options are
    /// `StorageError::Io` of kind `InvalidInput`.
    pub fn new(options: S3Options) -> Result<S3Blobs, StorageError> {
        Ok(S3Blobs {
            shared: client::Shared::new(options)?,
        })
    }

    pub fn options(&self) -> &S3Options {
        &self.shared.options
    }

    /// How many S3 clients this value has built (one per runtime and thread that used it,
    /// plus the one `new` checks the options with).
    pub fn clients_built(&self) -> u64 {
        self.shared.clients_built()
    }

    pub(crate) fn blob_key(&self, digest: &Digest) -> ObjectPath {
        self.shared
            .root
            .clone()
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    pub(crate) fn upload_prefix(&self, upload_id: &UploadId) -> ObjectPath {
        self.shared
            .root
            .clone()
            .join("uploads")
            .join(upload_id.as_str())
    }

    /// The blob's size, or `None` if it is absent (one HEAD).
    pub async fn exists(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        self.head(&self.blob_key(digest), "HEAD").await
    }

    pub(crate) async fn head(
        &self,
        key: &ObjectPath,
        operation: &str,
    ) -> Result<Option<u64>, StorageError> {
        match self.shared.client()?.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(backend(operation, key, error)),
        }
    }

    /// Writes a whole blob in one conditional PUT, after checking that `bytes` hash to
    /// `digest` (`DigestMismatch` otherwise, nothing written). Returns whether this call
    /// created it: `false` when it already existed (same digest, same bytes; left as it was).
    /// Dropped: the blob is complete or absent.
    pub async fn put_once(&self, digest: &Digest, bytes: Bytes) -> Result<bool, StorageError> {
        if bytes.len() as u64 > MAX_PUT_BYTES {
            return Err(StorageError::TooLarge);
        }
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(StorageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        self.put_verified(digest, bytes).await
    }

    /// `put_once` of bytes the caller has verified to hash to `digest` (the engine's finish
    /// of an upload hashed them as they arrived).
    pub(crate) async fn put_verified(
        &self,
        digest: &Digest,
        bytes: Bytes,
    ) -> Result<bool, StorageError> {
        if bytes.len() as u64 > MAX_PUT_BYTES {
            return Err(StorageError::TooLarge);
        }
        let key = self.blob_key(digest);
        let put = self
            .shared
            .client()?
            .put_opts(
                &key,
                PutPayload::from(bytes),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(error) => Err(backend("PUT", &key, error)),
        }
    }

    /// Deletes a blob (GC's sweep, after its index commit); an absent blob is fine.
    pub async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        self.delete_key(&self.blob_key(digest)).await
    }

    pub(crate) async fn delete_key(&self, key: &ObjectPath) -> Result<(), StorageError> {
        match self.shared.client()?.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(backend("DELETE", key, error)),
        }
    }

    /// Up to `limit` (at most [`MAX_LIST_PAGE`]) objects under `blobs/` whose name sorts after
    /// `after` (a previous page's last `name`), in key order (S3 lists keys in UTF-8 binary
    /// order), for GC's orphan sweep and fsck. An empty page is the end.
    pub async fn list_blobs(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListedBlob>, StorageError> {
        use futures_util::StreamExt as _;
        let prefix = self.shared.root.clone().join("blobs");
        let client = self.shared.client()?;
        let mut listing = match after {
            Some(name) => {
                let offset = ObjectPath::parse(format!("{prefix}/{name}"))
                    .map_err(|error| invalid(format!("list cursor {name:?}: {error}")))?;
                client.list_with_offset(Some(&prefix), &offset)
            }
            None => client.list(Some(&prefix)),
        };
        let limit = limit.min(MAX_LIST_PAGE);
        let mut page = Vec::with_capacity(limit);
        while page.len() < limit {
            let Some(meta) = listing.next().await else {
                break;
            };
            let meta = meta.map_err(|error| backend("LIST", &prefix, error))?;
            let relative = meta
                .location
                .as_ref()
                .strip_prefix(prefix.as_ref())
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(meta.location.as_ref())
                .to_owned();
            let digest = relative
                .split_once('/')
                .and_then(|(algorithm, hex)| format!("{algorithm}:{hex}").parse().ok());
            page.push(ListedBlob {
                name: relative,
                digest,
                size: meta.size,
                last_modified_ms: u64::try_from(meta.last_modified.timestamp_millis()).unwrap_or(0),
            });
        }
        Ok(page)
    }

    /// A URL that lets its holder GET the blob for `expires` (at most [`MAX_PRESIGN_EXPIRY`])
    /// without credentials: zot's `redirectBlobURL`. Signed locally; no request is sent.
    pub async fn presign_get(
        &self,
        digest: &Digest,
        expires: Duration,
    ) -> Result<url::Url, StorageError> {
        if expires > MAX_PRESIGN_EXPIRY || expires.is_zero() {
            return Err(invalid(format!(
                "presigned URL lifetime {expires:?} is not within 1 s..7 days"
            )));
        }
        let key = self.blob_key(digest);
        let method = "GET".parse().expect("GET is a method");
        self.shared
            .client()?
            .signed_url(method, &key, expires)
            .await
            .map_err(|error| backend("presign GET", &key, error))
    }
}
