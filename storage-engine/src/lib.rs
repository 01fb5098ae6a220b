//! berth's storage engine. `oci` holds the OCI domain types and their strict parsers and
//! compiles without any heavy dependency; everything else (blob store, upload sessions,
//! RocksDB index) sits behind the default `engine` feature.
pub mod oci;

#[cfg(feature = "engine")]
pub mod apikeys;
#[cfg(feature = "engine")]
mod blob_backend;
#[cfg(feature = "engine")]
mod blobstore;
#[cfg(feature = "engine")]
mod direct;
#[cfg(feature = "engine")]
mod engine;
#[cfg(feature = "engine")]
mod error;
#[cfg(feature = "engine")]
mod faults;
#[cfg(feature = "engine")]
mod fsck;
#[cfg(feature = "engine")]
mod gc;
#[cfg(feature = "engine")]
mod groups;
#[cfg(feature = "engine")]
mod hashstate;
#[cfg(feature = "engine")]
mod import;
#[cfg(feature = "engine")]
mod index;
#[cfg(feature = "engine")]
mod index_stats;
#[cfg(feature = "engine")]
mod io;
#[cfg(feature = "engine")]
mod listing;
#[cfg(feature = "engine")]
mod lock;
#[cfg(feature = "engine")]
mod manifests;
#[cfg(feature = "engine")]
mod s3;
#[cfg(feature = "engine")]
mod scrub;
#[cfg(feature = "engine")]
pub mod search;
#[cfg(feature = "engine")]
mod sessions;
#[cfg(feature = "engine")]
mod ssologins;
#[cfg(feature = "engine")]
pub mod stats;
#[cfg(feature = "engine")]
pub mod trust;
#[cfg(feature = "engine")]
mod upload;
#[cfg(feature = "engine")]
mod upload_shared;
#[cfg(feature = "engine")]
mod upload_state;
#[cfg(feature = "engine")]
mod usage;
#[cfg(feature = "engine")]
mod writer;
#[cfg(feature = "engine")]
mod writer_shared;

#[cfg(feature = "engine")]
pub use blob_backend::{BlobSource, S3Blob, PART_BYTES};
#[cfg(feature = "engine")]
pub use engine::{Engine, EngineOptions};
#[cfg(feature = "engine")]
pub use error::StorageError;
#[cfg(feature = "engine")]
pub use fsck::{FsckProblem, FsckReport};
#[cfg(feature = "engine")]
pub use gc::{GcAction, GcKind, GcOptions, GcReport, GcRun, RepoRules, Retention, TagInfo};
#[cfg(feature = "engine")]
pub use hashstate::HashState;
#[cfg(feature = "engine")]
pub use import::{BlobImport, VerifiedImport};
#[cfg(feature = "engine")]
pub use index::PostgresOptions;
#[cfg(feature = "engine")]
pub use index_stats::IndexStats;
#[cfg(feature = "engine")]
pub use io::{FaultInjector, FaultPoint, IoBackendKind, IoEvent};
#[cfg(feature = "engine")]
pub use listing::ListedManifest;
#[cfg(feature = "engine")]
pub use manifests::{PutManifestOutcome, StoredManifest};
#[cfg(feature = "engine")]
pub use s3::{
    BlobRead, ListedBlob, PartRecord, S3Blobs, S3Options, S3Upload, MAX_LIST_PAGE, MAX_PARTS,
    MAX_PRESIGN_EXPIRY, MAX_PUT_BYTES, MIN_PART_BYTES,
};
#[cfg(feature = "engine")]
pub use scrub::{Damage, ImageStatus, ScrubOptions, ScrubReport};
#[cfg(feature = "engine")]
pub use sessions::Session;
#[cfg(feature = "engine")]
pub use usage::UsageSnapshot;
#[cfg(feature = "engine")]
pub use writer::UploadWriter;
