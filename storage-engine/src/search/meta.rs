//! What search knows of one manifest ([`ImageMeta`]): the facts of the manifest and of its
//! image config, read once, at commit, and kept in the `images` family next to the manifest.
//!
//! Rules: only facts are stored (annotations, labels, platform, times, sizes, history as the
//! config has them); what zot derives from them (`Description`, `Vendor`, `LastUpdated` ...)
//! is derived by the reader, so a change of a derivation rule needs no migration. A config
//! is read only up to [`CONFIG_MAX_BYTES`]; one that is larger, absent (a mirrored manifest
//! whose blobs come later) or not JSON leaves the config facts empty.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StorageError;
use crate::oci::{ManifestKind, ParsedManifest};

/// Largest image config read for search (configs are kilobytes; zot's lint uses 4 MiB too).
pub const CONFIG_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Where an image says when it was built (manifest annotation or config label).
pub const CREATED_KEYS: &[&str] = &[
    "org.opencontainers.image.created",
    "org.label-schema.build-date",
];

/// Value format version, the first byte of every `images` value.
const VERSION: u8 = 1;

/// One manifest as search sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// The manifest's media type.
    pub media_type: String,
    /// True for an index (or Docker manifest list).
    pub index: bool,
    /// The manifest's own `artifactType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Size of the manifest's bytes.
    pub manifest_size: u64,
    pub pushed_ms: u64,
    /// The authenticated user who pushed it (none: anonymous, or sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_by: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Image manifests: the config descriptor and what the config says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigMeta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<BlobMeta>,
    /// Indexes: the child manifests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildMeta>,
}

/// A config or layer descriptor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// An index entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildMeta {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

/// The config descriptor of an image manifest and, when the config could be read, its facts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigMeta {
    pub blob: BlobMeta,
    /// False when the config blob was absent, too large or not JSON at commit.
    pub read: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// `created`, as nanoseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// `config.Labels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryMeta>,
}

/// One `history` entry of an image config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    #[serde(default)]
    pub empty_layer: bool,
}

/// An RFC 3339 time as nanoseconds since the epoch (none if it does not parse or is outside
/// the years 1678-2261 that an i64 of nanoseconds holds).
pub fn parse_time(text: &str) -> Option<i64> {
    let parsed =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(parsed.unix_timestamp_nanos()).ok()
}

fn string_of(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_owned)
}

fn platform_of(value: &Value) -> Option<Platform> {
    let os = value.get("os").and_then(Value::as_str).unwrap_or("");
    let arch = value
        .get("architecture")
        .and_then(Value::as_str)
        .unwrap_or("");
    if os.is_empty() && arch.is_empty() {
        return None;
    }
    Some(Platform {
        os: os.to_owned(),
        arch: arch.to_owned(),
        variant: string_of(value.get("variant")).unwrap_or_default(),
    })
}

/// String values of a JSON object (other values are skipped: labels are strings).
fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|object| {
            object
                .iter()
                .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn blob_meta(descriptor: &crate::oci::Descriptor) -> BlobMeta {
    BlobMeta {
        digest: descriptor.digest.to_string(),
        size: descriptor.size,
        media_type: descriptor.media_type.clone(),
    }
}

impl ConfigMeta {
    /// Facts of a config's JSON; `None` bytes (unreadable) leave them empty.
    fn read(blob: BlobMeta, bytes: Option<&[u8]>) -> ConfigMeta {
        let mut meta = ConfigMeta {
            blob,
            ..ConfigMeta::default()
        };
        let Some(config) = bytes.and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
        else {
            return meta;
        };
        if !config.is_object() {
            return meta;
        }
        meta.read = true;
        meta.platform = platform_of(&config);
        meta.created_ns = config
            .get("created")
            .and_then(Value::as_str)
            .and_then(parse_time);
        meta.author = string_of(config.get("author"));
        meta.labels = string_map(config.get("config").and_then(|c| c.get("Labels")));
        meta.history = config
            .get("history")
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .map(|entry| HistoryMeta {
                        created_ns: entry
                            .get("created")
                            .and_then(Value::as_str)
                            .and_then(parse_time),
                        created_by: string_of(entry.get("created_by")).unwrap_or_default(),
                        author: string_of(entry.get("author")).unwrap_or_default(),
                        comment: string_of(entry.get("comment")).unwrap_or_default(),
                        empty_layer: entry
                            .get("empty_layer")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default();
        meta
    }
}

impl ImageMeta {
    /// The facts of a parsed manifest and of its config's bytes (`None`: not readable).
    pub fn new(
        parsed: &ParsedManifest,
        manifest_size: u64,
        config: Option<&[u8]>,
        pushed_ms: u64,
        pushed_by: Option<&str>,
    ) -> ImageMeta {
        ImageMeta {
            media_type: parsed.media_type.clone(),
            index: parsed.kind == ManifestKind::Index,
            artifact_type: parsed.artifact_type.clone(),
            manifest_size,
            pushed_ms,
            pushed_by: pushed_by.map(str::to_owned),
            annotations: parsed.annotations.clone().unwrap_or_default(),
            subject: parsed.subject.as_ref().map(|s| s.digest.to_string()),
            config: parsed
                .config
                .as_ref()
                .map(|descriptor| ConfigMeta::read(blob_meta(descriptor), config)),
            layers: parsed.layers.iter().map(blob_meta).collect(),
            children: parsed
                .manifests
                .iter()
                .map(|child| ChildMeta {
                    digest: child.digest.to_string(),
                    size: child.size,
                    media_type: child.media_type.clone(),
                    platform: child.platform.as_ref().and_then(platform_of),
                })
                .collect(),
        }
    }

    /// True when the config's facts are still to be read (a mirrored manifest stored before
    /// its config blob arrived).
    pub fn config_unread(&self) -> bool {
        self.config.as_ref().is_some_and(|config| !config.read)
    }

    /// Reads the config's facts from its bytes (a config that arrived after the manifest).
    pub(crate) fn read_config(&mut self, bytes: &[u8]) {
        if let Some(config) = self.config.take() {
            self.config = Some(ConfigMeta::read(config.blob, Some(bytes)));
        }
    }

    /// Every digest this manifest contains (config, layers, index children), for the
    /// store-wide digest lookup (`ImageListForDigest`).
    pub fn contained_digests(&self) -> impl Iterator<Item = &str> {
        self.config
            .iter()
            .map(|config| config.blob.digest.as_str())
            .chain(self.layers.iter().map(|layer| layer.digest.as_str()))
            .chain(self.children.iter().map(|child| child.digest.as_str()))
    }

    /// zot's annotation chain for one field: the manifest's annotations, then the config's
    /// labels, each in `keys` order; the first value that is not empty.
    pub fn annotation(&self, keys: &[&str]) -> Option<&str> {
        let labels = self.config.as_ref().map(|config| &config.labels);
        [Some(&self.annotations), labels]
            .into_iter()
            .flatten()
            .flat_map(|map| keys.iter().filter_map(move |key| map.get(*key)))
            .find(|value| !value.is_empty())
            .map(String::as_str)
    }

    /// The `created` annotation (or label), when it is an RFC 3339 time.
    pub fn created_annotation_ns(&self) -> Option<i64> {
        self.annotation(CREATED_KEYS).and_then(parse_time)
    }

    /// When a single image was last updated (zot's `LastUpdated`): the `created`
    /// annotation, else the config's `created`, else its last history entry's.
    pub fn updated_ns(&self) -> Option<i64> {
        self.created_annotation_ns().or_else(|| {
            let config = self.config.as_ref()?;
            config
                .created_ns
                .or_else(|| config.history.last().and_then(|h| h.created_ns))
        })
    }

    /// Bytes of an image: manifest, config and layers (an index adds its children itself).
    pub fn image_size(&self) -> u64 {
        self.manifest_size
            + self.config.as_ref().map_or(0, |config| config.blob.size)
            + self.layers.iter().map(|layer| layer.size).sum::<u64>()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        serde_json::to_writer(&mut out, self).expect("image meta serializes");
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<ImageMeta, StorageError> {
        match bytes.split_first() {
            Some((&VERSION, rest)) => serde_json::from_slice(rest)
                .map_err(|error| StorageError::Corrupt(format!("bad image meta: {error}"))),
            _ => Err(StorageError::Corrupt("bad image meta version".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_facts_are_read_and_bad_configs_leave_them_empty() {
        let config = br#"{"created":"2024-05-01T10:00:00.5+02:00","author":"me",
            "architecture":"arm64","os":"linux","variant":"v8",
            "config":{"Labels":{"a":"1","n":2}},
            "history":[{"created":"2024-05-01T08:00:00Z","created_by":"RUN x","empty_layer":true}]}"#;
        let blob = BlobMeta {
            digest: "sha256:00".into(),
            size: 9,
            media_type: "c".into(),
        };
        let meta = ConfigMeta::read(blob.clone(), Some(config));
        assert!(meta.read);
        assert_eq!(meta.created_ns, Some(1_714_550_400_500_000_000));
        assert_eq!(meta.platform.as_ref().unwrap().variant, "v8");
        assert_eq!(meta.labels.len(), 1, "only string labels");
        assert!(meta.history[0].empty_layer);
        assert_eq!(meta.history[0].created_by, "RUN x");
        for bad in [&b"not json"[..], b"[]", b"7"] {
            let meta = ConfigMeta::read(blob.clone(), Some(bad));
            assert!(!meta.read && meta.platform.is_none());
        }
        assert!(!ConfigMeta::read(blob, None).read);
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let meta = ImageMeta {
            media_type: "m".into(),
            manifest_size: 3,
            ..ImageMeta::default()
        };
        assert_eq!(ImageMeta::decode(&meta.encode()).unwrap(), meta);
        assert!(ImageMeta::decode(b"").is_err());
        assert!(ImageMeta::decode(b"\x01{").is_err());
        assert!(ImageMeta::decode(b"\x09{}").is_err());
    }

    #[test]
    fn times_parse_as_rfc3339_only() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
    }
}
