//! OCI domain types and their strict parsers: digests, repository names, tags, references,
//! upload session ids, the `Content-Range` / `Range` headers and manifests.
//!
//! Rules:
//! - Pure Rust, no I/O and no heavy dependency: this module compiles with
//!   `default-features = false` so the fuzz workspace never builds RocksDB.
//! - Every string from the wire passes through one of these types before it reaches a
//!   filesystem path, an index key or a URL. Fields are private; the only way in is `FromStr`
//!   (serde goes through the same path).
//! - Validators are hand-written (no regex at run time) and tested differentially against the
//!   `regex` form of the spec grammar, in unit tests and in `fuzz/`.
//! - Error messages are written for the `detail` of an OCI error response.

/// Implements `Serialize` via `Display` and `Deserialize` via `FromStr` for a newtype.
macro_rules! serde_via_str {
    ($type:ty, $expecting:literal) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $type;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<$type, E> {
                        value.parse().map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
    };
}
pub(crate) use serde_via_str;

pub mod digest;
pub mod manifest;
pub mod name;
pub mod range;
pub mod reference;
pub mod tag;
pub mod upload_id;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use manifest::{
    media_types, parse_manifest, Descriptor, ManifestError, ManifestKind, ParsedManifest,
};
pub use name::{NameError, RepoName};
pub use range::{ByteRange, ContentRange, RangeError};
pub use reference::{Reference, ReferenceError};
pub use tag::{Tag, TagError};
pub use upload_id::{UploadId, UploadIdError};
