//! `StorageError`: every way an engine call can fail, stated as domain facts.
//!
//! Rules: no HTTP status codes here (the daemon maps each variant exhaustively). Variants that
//! carry a `Digest` carry the digest the caller asked about (the blob or manifest it tried to
//! read, delete or reference), never an internal one.
use crate::oci::{Digest, Tag};

#[derive(thiserror::Error, Debug)]
pub enum StorageError {
    /// The blob is not linked in this repository.
    #[error("blob unknown to repository: {0}")]
    BlobUnknown(Digest),
    /// Delete refused: a manifest in this repository references the blob.
    #[error("blob {0} is referenced by a manifest in this repository")]
    BlobReferenced(Digest),
    /// No such upload session in this repository.
    #[error("upload session unknown")]
    UploadUnknown,
    /// Another writer holds the upload session.
    #[error("upload session is in use by another request")]
    UploadBusy,
    /// A chunk did not start at the session's offset (checked by the daemon).
    #[error("upload chunk out of order; session offset is {offset}")]
    UploadOutOfOrder { offset: u64 },
    /// The content does not hash to the digest the client gave.
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("manifest unknown")]
    ManifestUnknown,
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest media type unsupported: {0}")]
    ManifestUnsupportedMediaType(String),
    #[error("manifest unsupported: {0}")]
    ManifestUnsupported(String),
    /// A config/layer blob is not linked in the repository, or an index child is absent.
    #[error("manifest references unknown blob or manifest {0}")]
    ManifestBlobUnknown(Digest),
    /// Delete refused: an index in this repository lists the manifest (the digest is the
    /// manifest the caller tried to delete).
    #[error("manifest {0} is referenced by an index in this repository")]
    ManifestReferenced(Digest),
    /// The tag is immutable (by the caller's policy) and names another manifest.
    #[error("tag {0} is immutable and names another manifest")]
    TagImmutable(Tag),
    #[error("repository name unknown")]
    NameUnknown,
    #[error("content too large")]
    TooLarge,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// RocksDB failed (message from RocksDB).
    #[error("index error: {0}")]
    Index(String),
    /// Stored state violates an invariant (bad record encoding, impossible file length ...).
    #[error("storage corrupt: {0}")]
    Corrupt(String),
}

impl From<rocksdb::Error> for StorageError {
    fn from(error: rocksdb::Error) -> Self {
        StorageError::Index(error.into_string())
    }
}

impl From<crate::oci::ManifestError> for StorageError {
    fn from(error: crate::oci::ManifestError) -> Self {
        use crate::oci::ManifestError;
        match error {
            ManifestError::Invalid(message) => StorageError::ManifestInvalid(message),
            ManifestError::UnsupportedMediaType(media_type) => {
                StorageError::ManifestUnsupportedMediaType(media_type)
            }
            ManifestError::Unsupported(message) => StorageError::ManifestUnsupported(message),
        }
    }
}
