//! Manifests and indexes: media types, descriptors and the one strict manifest parser.
//!
//! Rules of [`parse_manifest`] (the engine stores the input bytes unchanged; this only decides
//! whether they are acceptable and extracts what the index needs):
//! - The manifest's media type is the body's `mediaType`, else the request Content-Type
//!   (parameters after `;` ignored); neither -> invalid. When both are present they must be
//!   equal (GHSA-77vh-xpmg-72qh: one byte string must not be readable as two document types).
//! - Accepted: OCI image manifest and index, Docker v2 schema 2 manifest and manifest list.
//!   Docker schema 1 is `Unsupported`; any other type is `UnsupportedMediaType`.
//! - `schemaVersion` must be 2. An image manifest carrying `manifests`, or an index carrying
//!   `config` or `layers`, is invalid, even when the value is `null`.
//! - Image manifests need a `config` descriptor; `layers` may be missing or empty (artifacts).
//!   Indexes need `manifests` (may be empty).
//! - Descriptors: JSON objects (never arrays) with a `mediaType` matching the image-spec
//!   pattern, a strictly parsed [`Digest`] and a non-negative integer `size`. Unknown fields,
//!   unknown layer/config media types and duplicate annotation keys are accepted; duplicate
//!   known fields are rejected.
//! - The body is UTF-8 JSON (RFC 8259), unknown fields included.
//! - Depth: at most [`MAX_NESTING_DEPTH`] nested arrays/objects anywhere, unknown fields
//!   included, checked by a linear pre-scan before parsing (serde_json's own recursion limit of
//!   128 does not cover ignored fields, which it skips iteratively). Deep input fails fast and
//!   never exhausts the stack. Size is bounded by the caller (manifest body limit).

use std::collections::BTreeMap;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::digest::Digest;

/// Deepest nesting of JSON arrays and objects accepted in a manifest. Real manifests nest 4
/// levels (index -> manifests -> descriptor -> platform/annotations); Go's encoding/json
/// refuses beyond 10 000, serde_json's derive beyond 128.
pub const MAX_NESTING_DEPTH: usize = 64;

/// The media types berth knows by name.
pub mod media_types {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const OCTET_STREAM: &str = "application/octet-stream";
}

/// Why a manifest was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// Maps to `MANIFEST_INVALID`.
    #[error("manifest invalid: {0}")]
    Invalid(String),
    /// The manifest's own media type is not one berth stores.
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    /// A known but refused format (Docker schema 1).
    #[error("unsupported manifest format: {0}")]
    Unsupported(String),
}

/// Longest error message kept: serde echoes offending strings, which the client controls and
/// which end up in the `detail` of the error response.
const MAX_ERROR_MESSAGE_LEN: usize = 512;

fn bounded(mut message: String) -> String {
    if message.len() > MAX_ERROR_MESSAGE_LEN {
        let mut end = MAX_ERROR_MESSAGE_LEN;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

fn invalid(message: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(bounded(message.into()))
}

/// A content descriptor, as found in manifests and returned by the referrers API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "JsonObject<DescriptorFields>")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorFields {
    media_type: String,
    digest: Digest,
    size: u64,
    artifact_type: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
    urls: Option<Vec<String>>,
    platform: Option<Value>,
}

impl TryFrom<JsonObject<DescriptorFields>> for Descriptor {
    type Error = String;

    fn try_from(object: JsonObject<DescriptorFields>) -> Result<Descriptor, String> {
        let fields = object.0;
        if !is_media_type(&fields.media_type) {
            return Err(format!("invalid mediaType {:?}", fields.media_type));
        }
        let artifact_type = non_empty_media_type(fields.artifact_type, "artifactType")?;
        Ok(Descriptor {
            media_type: fields.media_type,
            digest: fields.digest,
            size: fields.size,
            artifact_type,
            annotations: fields.annotations,
            urls: fields.urls,
            platform: fields.platform,
        })
    }
}

/// Deserializes `T` only from a JSON object. Derived structs also accept a JSON array
/// (fields by position), which would let one document be read two ways.
struct JsonObject<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for JsonObject<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = JsonObject<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<JsonObject<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(JsonObject)
            }
        }
        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

/// Image-spec descriptor `mediaType` pattern:
/// `^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$`.
fn is_media_type(media_type: &str) -> bool {
    fn is_restricted_name(name: &str) -> bool {
        let bytes = name.as_bytes();
        match bytes.split_first() {
            Some((first, rest)) => {
                first.is_ascii_alphanumeric()
                    && rest.len() <= 126
                    && rest.iter().all(|&byte| {
                        byte.is_ascii_alphanumeric()
                            || matches!(byte, b'!' | b'#' | b'$' | b'&' | b'^' | b'_')
                            || matches!(byte, b'.' | b'+' | b'-')
                    })
            }
            None => false,
        }
    }
    media_type
        .split_once('/')
        .is_some_and(|(kind, subtype)| is_restricted_name(kind) && is_restricted_name(subtype))
}

/// `artifactType`: absent or empty means "none" (distribution-spec referrers rules).
fn non_empty_media_type(value: Option<String>, field: &str) -> Result<Option<String>, String> {
    match value {
        Some(media_type) if media_type.is_empty() => Ok(None),
        Some(media_type) if !is_media_type(&media_type) => {
            Err(format!("invalid {field} {media_type:?}"))
        }
        other => Ok(other),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ManifestKind {
    Image,
    Index,
}

/// What the engine needs to know about an accepted manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedManifest {
    pub kind: ManifestKind,
    /// Effective media type: the body's `mediaType`, else the Content-Type.
    pub media_type: String,
    /// The body's `artifactType` (an empty string counts as absent).
    pub artifact_type: Option<String>,
    /// Image only.
    pub config: Option<Descriptor>,
    /// Image only.
    pub layers: Vec<Descriptor>,
    /// Index only.
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ParsedManifest {
    /// The blobs this manifest references: config then layers (empty for an index).
    pub fn blob_references(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(self.layers.iter())
    }

    /// The `artifactType` reported for this manifest in a referrers response: the manifest's
    /// `artifactType`, else for an image manifest its config's media type, else none.
    pub fn referrer_artifact_type(&self) -> Option<String> {
        match (&self.artifact_type, self.kind) {
            (Some(artifact_type), _) => Some(artifact_type.clone()),
            (None, ManifestKind::Image) => self.config.as_ref().map(|c| c.media_type.clone()),
            (None, ManifestKind::Index) => None,
        }
    }
}

/// The top level fields berth looks at. Each is kept as a raw value so that presence (even
/// `null`) is visible and each error can name its field.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestFields {
    #[serde(default, deserialize_with = "present")]
    schema_version: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    media_type: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    artifact_type: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    config: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    layers: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    manifests: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    subject: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    annotations: Option<Value>,
}

/// `Some(value)` for any present field, `null` included; absent fields use the default `None`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

fn field<T: serde::de::DeserializeOwned>(value: Value, name: &str) -> Result<T, ManifestError> {
    serde_json::from_value(value).map_err(|error| invalid(format!("{name}: {error}")))
}

fn descriptors(value: Option<Value>, name: &str) -> Result<Vec<Descriptor>, ManifestError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(invalid(format!("{name} must be an array of descriptors")));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| field(item, &format!("{name}[{index}]")))
        .collect()
}

/// The media type without parameters, or `None` when empty.
fn essence(content_type: &str) -> Option<&str> {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    (!essence.is_empty()).then_some(essence)
}

fn is_schema1(media_type: &str) -> bool {
    media_type.eq_ignore_ascii_case(media_types::DOCKER_SCHEMA1)
        || media_type.eq_ignore_ascii_case(media_types::DOCKER_SCHEMA1_SIGNED)
}

/// The known manifest media type equal (ASCII case-insensitively) to `media_type`.
fn known_kind(media_type: &str) -> Option<(ManifestKind, &'static str)> {
    [
        (ManifestKind::Image, media_types::OCI_MANIFEST),
        (ManifestKind::Image, media_types::DOCKER_MANIFEST),
        (ManifestKind::Index, media_types::OCI_INDEX),
        (ManifestKind::Index, media_types::DOCKER_MANIFEST_LIST),
    ]
    .into_iter()
    .find(|(_, known)| known.eq_ignore_ascii_case(media_type))
}

/// One pass over the raw JSON before serde sees it. Refuses nesting deeper than
/// [`MAX_NESTING_DEPTH`] and `\u` escapes naming a lone UTF-16 surrogate: serde_json skips
/// unknown fields without decoding them, so neither would be caught there, and either would
/// break a client that decodes the whole document. Exact for valid JSON; anything it lets
/// through that is not valid JSON is refused by the parser.
fn prescan(bytes: &[u8]) -> Result<(), ManifestError> {
    let lone_surrogate = || invalid("a \\u escape names a lone UTF-16 surrogate");
    let mut depth = 0usize;
    let mut in_string = false;
    // The previous string character was a high-surrogate escape: a low one must follow.
    let mut want_low = false;
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        i += 1;
        if in_string {
            let mut unit = None;
            if byte == b'\\' {
                let escape = bytes.get(i).copied();
                i += 1;
                if escape == Some(b'u') {
                    unit = bytes
                        .get(i..i + 4)
                        .and_then(|hex| std::str::from_utf8(hex).ok())
                        .and_then(|hex| u16::from_str_radix(hex, 16).ok());
                    i += 4;
                }
            }
            let is_low = matches!(unit, Some(0xDC00..=0xDFFF));
            if want_low != is_low {
                return Err(lone_surrogate());
            }
            want_low = matches!(unit, Some(0xD800..=0xDBFF));
            if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING_DEPTH {
                    return Err(invalid(format!(
                        "JSON nested deeper than {MAX_NESTING_DEPTH} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses and validates a manifest or index. See the module comment for the rules.
pub fn parse_manifest(
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<ParsedManifest, ManifestError> {
    let content_type = content_type.and_then(essence);
    if let Some(content_type) = content_type.filter(|ct| is_schema1(ct)) {
        return Err(ManifestError::Unsupported(format!(
            "Docker schema 1 ({content_type}) is not accepted; push schema 2 or OCI"
        )));
    }
    // serde_json skips ignored fields without validating their UTF-8, so check it up front.
    let text =
        std::str::from_utf8(bytes).map_err(|error| invalid(format!("not UTF-8: {error}")))?;
    prescan(bytes)?;
    let JsonObject(fields) = serde_json::from_str::<JsonObject<ManifestFields>>(text)
        .map_err(|error| invalid(format!("not a JSON object: {error}")))?;

    let body_media_type = match fields.media_type {
        None => None,
        Some(Value::String(media_type)) => Some(media_type),
        Some(_) => return Err(invalid("mediaType must be a string")),
    };
    let media_type = match (body_media_type, content_type) {
        (Some(body), Some(header)) if !body.eq_ignore_ascii_case(header) => {
            return Err(invalid(format!(
                "mediaType {body:?} does not match Content-Type {header:?}"
            )))
        }
        (Some(body), _) => body,
        (None, Some(header)) => header.to_owned(),
        (None, None) => return Err(invalid("no mediaType in the body and no Content-Type")),
    };
    if is_schema1(&media_type) {
        return Err(ManifestError::Unsupported(format!(
            "Docker schema 1 ({media_type}) is not accepted; push schema 2 or OCI"
        )));
    }
    let (kind, canonical_media_type) = known_kind(&media_type)
        .ok_or_else(|| ManifestError::UnsupportedMediaType(bounded(media_type)))?;

    match fields.schema_version {
        Some(Value::Number(version)) if version.as_u64() == Some(2) => {}
        Some(other) => return Err(invalid(format!("schemaVersion must be 2, got {other}"))),
        None => return Err(invalid("schemaVersion is missing")),
    }

    let artifact_type = match fields.artifact_type {
        None => None,
        Some(value) => {
            non_empty_media_type(field(value, "artifactType")?, "artifactType").map_err(invalid)?
        }
    };
    let subject = fields
        .subject
        .map(|value| field::<Descriptor>(value, "subject"))
        .transpose()?;
    let annotations = fields
        .annotations
        .map(|value| field::<BTreeMap<String, String>>(value, "annotations"))
        .transpose()?;

    let (config, layers, manifests) = match kind {
        ManifestKind::Image => {
            if fields.manifests.is_some() {
                return Err(invalid(
                    "an image manifest must not have a manifests field (ambiguous with an index)",
                ));
            }
            let config = fields
                .config
                .ok_or_else(|| invalid("an image manifest needs a config descriptor"))?;
            let config = field::<Descriptor>(config, "config")?;
            (
                Some(config),
                descriptors(fields.layers, "layers")?,
                Vec::new(),
            )
        }
        ManifestKind::Index => {
            if fields.config.is_some() || fields.layers.is_some() {
                return Err(invalid(
                    "an index must not have config or layers fields (ambiguous with a manifest)",
                ));
            }
            let manifests = fields
                .manifests
                .ok_or_else(|| invalid("an index needs a manifests array"))?;
            (None, Vec::new(), descriptors(Some(manifests), "manifests")?)
        }
    };

    Ok(ParsedManifest {
        kind,
        media_type: canonical_media_type.to_owned(),
        artifact_type,
        config,
        layers,
        manifests,
        subject,
        annotations,
    })
}

#[cfg(test)]
mod tests;
