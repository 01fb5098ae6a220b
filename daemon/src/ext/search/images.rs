//! `ImageSummary`, `ManifestSummary`, `Referrer` and `SignatureSummary` documents, computed
//! from the search records as zot's converters compute them (convert/metadb.go).
//!
//! Rules worth knowing (zot's, kept): sizes are strings except `Referrer.Size`; an image's
//! size is its manifest, config and every layer (duplicates twice), an index's the sum over
//! its manifests of each one's distinct blobs, without the index itself; text fields come
//! from the manifest's annotations, then the label-schema key, then the config's labels (""
//! when none); `LastUpdated` from the `created` annotation, else the config's `created`,
//! else its last history entry; a never-pulled image's `LastPullTimestamp` is the epoch and
//! an index's is null; `IsDeletable` only where the caller asks for it (ExpandedRepoInfo);
//! `Vulnerabilities` is the zero summary on images and null on manifests while CVE scanning
//! is off. Docker v2s2 manifests are listed like OCI ones (zot skips them).
use std::collections::HashSet;

use berth_storage::oci::{Digest, RepoName};
use berth_storage::search::meta::CREATED_KEYS;
use berth_storage::search::{signed_by_tag, ImageMeta, Platform, TagEntry};
use berth_storage::trust::signature_tool;
use berth_storage::{Engine, StorageError};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::view::{internal, Listed, View};

/// A JSON object of owned values, moved in (`json!` copies each `Value` it is given by
/// serializing it, which for a list of image summaries is a deep copy).
pub fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

/// An RFC 3339 time as gqlgen writes it (nanoseconds without trailing zeros).
pub fn format_time(time: OffsetDateTime) -> Value {
    time.format(&Rfc3339).map_or(Value::Null, Value::String)
}

pub fn time_ns(ns: i64) -> Value {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).map_or(Value::Null, format_time)
}

pub fn time_ms(ms: u64) -> Value {
    time_ns((ms as i64).saturating_mul(1_000_000))
}

const DESCRIPTION: &[&str] = &[
    "org.opencontainers.image.description",
    "org.label-schema.description",
];
const TITLE: &[&str] = &["org.opencontainers.image.title", "org.label-schema.name"];
const DOCUMENTATION: &[&str] = &[
    "org.opencontainers.image.documentation",
    "org.label-schema.usage",
];
const SOURCE: &[&str] = &[
    "org.opencontainers.image.source",
    "org.label-schema.vcs-url",
];
const LICENSES: &[&str] = &[
    "org.opencontainers.image.licenses",
    "org.label-schema.license",
];
const VENDOR: &[&str] = &["org.opencontainers.image.vendor", "org.label-schema.vendor"];
const LABELS: &[&str] = &["org.label-schema.labels"];
const AUTHORS: &[&str] = &["org.opencontainers.image.authors"];

/// A `created` annotation as zot shows it (the time with its own offset).
fn created_annotation(meta: &ImageMeta) -> Option<OffsetDateTime> {
    meta.annotation(CREATED_KEYS)
        .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
}

fn from_ns(ns: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).ok()
}

/// `LastUpdated` of a single image: the instant of [`ImageMeta::updated_ns`], with the
/// annotation's own offset when it comes from the annotation.
pub fn manifest_updated(meta: &ImageMeta) -> Option<OffsetDateTime> {
    created_annotation(meta).or_else(|| meta.updated_ns().and_then(from_ns))
}

/// `LastUpdated` of a listed image (an index: its annotation, else its first manifest's
/// annotation, else its newest manifest).
pub fn listed_updated(listed: &Listed) -> Option<OffsetDateTime> {
    if !listed.meta.index {
        return manifest_updated(&listed.meta);
    }
    created_annotation(&listed.meta)
        .or_else(|| {
            listed
                .manifests
                .first()
                .and_then(|(_, meta)| created_annotation(meta))
        })
        .or_else(|| {
            listed
                .manifests
                .iter()
                .filter_map(|(_, m)| manifest_updated(m))
                .max()
        })
}

fn manifest_size(meta: &ImageMeta) -> u64 {
    meta.image_size()
}

/// An index's size: each manifest's distinct blobs, summed over manifests.
fn index_size(manifests: &[(Digest, ImageMeta)]) -> u64 {
    manifests
        .iter()
        .map(|(digest, meta)| {
            let mut seen = HashSet::new();
            let mut size = 0;
            let blobs = std::iter::once((digest.to_string(), meta.manifest_size))
                .chain(
                    meta.config
                        .iter()
                        .map(|c| (c.blob.digest.clone(), c.blob.size)),
                )
                .chain(meta.layers.iter().map(|l| (l.digest.clone(), l.size)));
            for (blob, blob_size) in blobs {
                if seen.insert(blob) {
                    size += blob_size;
                }
            }
            size
        })
        .sum()
}

pub fn listed_size(listed: &Listed) -> u64 {
    match listed.meta.index {
        false => manifest_size(&listed.meta),
        true => index_size(&listed.manifests),
    }
}

/// (os, arch or arch/variant) of a platform, as zot shows and filters it.
pub fn os_arch(platform: &Platform) -> (String, String) {
    let arch = match platform.variant.is_empty() {
        true => platform.arch.clone(),
        false => format!("{}/{}", platform.arch, platform.variant),
    };
    (platform.os.clone(), arch)
}

/// zot's `Platform` document.
pub fn platform_document(platform: &Platform) -> Value {
    let (os, arch) = os_arch(platform);
    json!({"Os": os, "Arch": arch})
}

/// (os, arch or arch/variant) of a manifest, from its config (empty when unknown).
pub fn platform_of(meta: &ImageMeta) -> (String, String) {
    let platform = meta.config.as_ref().and_then(|c| c.platform.clone());
    os_arch(&platform.unwrap_or_default())
}

fn platform(meta: &ImageMeta) -> Value {
    let (os, arch) = platform_of(meta);
    json!({"Os": os, "Arch": arch})
}

fn artifact_type(meta: &ImageMeta) -> Value {
    meta.artifact_type
        .clone()
        .or_else(|| meta.config.as_ref().map(|c| c.blob.media_type.clone()))
        .map_or(Value::Null, Value::String)
}

fn history(meta: &ImageMeta) -> Value {
    let layer = |index: usize| {
        meta.layers.get(index).map_or(
            Value::Null,
            |layer| json!({"Size": layer.size.to_string(), "Digest": layer.digest}),
        )
    };
    let entries = meta
        .config
        .as_ref()
        .map(|c| c.history.as_slice())
        .unwrap_or_default();
    if entries.is_empty() {
        let empty = json!({"Created": null, "CreatedBy": null, "Author": null, "Comment": null, "EmptyLayer": null});
        return (0..meta.layers.len())
            .map(|index| json!({"Layer": layer(index), "HistoryDescription": empty}))
            .collect();
    }
    let mut next = 0;
    entries
        .iter()
        .map(|entry| {
            let this = match entry.empty_layer {
                true => Value::Null,
                false => {
                    next += 1;
                    layer(next - 1)
                }
            };
            json!({
                "Layer": this,
                "HistoryDescription": {
                    "Created": entry.created_ns.map_or(Value::Null, time_ns),
                    "CreatedBy": entry.created_by,
                    "Author": entry.author,
                    "Comment": entry.comment,
                    "EmptyLayer": entry.empty_layer,
                },
            })
        })
        .collect()
}

/// One signature layer as search and the UI show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShownSignature {
    /// `cosign` or `notation`.
    pub tool: String,
    /// Trusted now (a trusted verdict past its expiry is not).
    pub trusted: bool,
    /// Who signed, when trusted ("" otherwise, as zot).
    pub author: String,
    /// Why it is not trusted (berth's; "" when it is).
    pub reason: String,
}

/// The layers of signature manifest `signature` of `repo` from its stored verdict, or one
/// untrusted entry of `tool` while it is not judged.
async fn signature_layers(
    engine: &Engine,
    repo: &RepoName,
    signature: &Digest,
    tool: &str,
    now_unix: i64,
    found: &mut Vec<ShownSignature>,
) -> Result<(), StorageError> {
    match engine.signature_verdict(repo, signature).await? {
        Some(record) if !record.layers.is_empty() => {
            for layer in record.layers {
                let trusted = layer.trusted_at(now_unix);
                let reason = match (trusted, layer.trusted) {
                    (true, _) => String::new(),
                    (false, true) => "the signing certificate or signature has expired".into(),
                    (false, false) => layer.reason,
                };
                found.push(ShownSignature {
                    tool: layer.tool,
                    trusted,
                    author: if trusted { layer.author } else { String::new() },
                    reason,
                });
            }
        }
        _ => found.push(ShownSignature {
            tool: tool.to_owned(),
            trusted: false,
            author: String::new(),
            reason: "not verified (extensions.trust is off, or verification is pending)".into(),
        }),
    }
    Ok(())
}

/// The signatures of `digest` in `repo` (whose tags are `tags`): cosign signature tags and
/// signature referrers, one entry per signature layer, with their stored verdicts.
pub async fn shown_signatures(
    engine: &Engine,
    tags: &[TagEntry],
    repo: &RepoName,
    digest: &Digest,
) -> Result<Vec<ShownSignature>, StorageError> {
    let signed = digest.to_string();
    let now = crate::ext::trust::judge::now_unix();
    let mut found = Vec::new();
    for entry in tags {
        if signed_by_tag(&entry.tag).as_deref() == Some(signed.as_str()) {
            signature_layers(engine, repo, &entry.digest, "cosign", now, &mut found).await?;
        }
    }
    for referrer in engine.referrers(repo, digest, &[]).await? {
        let artifact_type = referrer.artifact_type.as_deref().unwrap_or_default();
        if let Some(tool) = signature_tool(artifact_type) {
            signature_layers(engine, repo, &referrer.digest, tool, now, &mut found).await?;
        }
    }
    Ok(found)
}

/// zot's `SignatureSummary` documents of `digest` in `repo`.
pub async fn signatures(
    view: &View,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Vec<Value>, String> {
    let tags = view.tags(repo).await?;
    let shown = shown_signatures(&view.engine, &tags, repo, digest)
        .await
        .map_err(internal)?;
    Ok(shown
        .into_iter()
        .map(
            |shown| json!({"Tool": shown.tool, "IsTrusted": shown.trusted, "Author": shown.author}),
        )
        .collect())
}

/// `Referrer` documents of `digest` in `repo`, optionally only these artifact types (`""`
/// admits every type).
pub async fn referrers(
    view: &View,
    repo: &RepoName,
    digest: &Digest,
    types: &[String],
) -> Result<Vec<Value>, String> {
    let admits = |artifact_type: &str| {
        types.is_empty() || types.iter().any(|t| t.is_empty() || t == artifact_type)
    };
    let descriptors = view
        .engine
        .referrers(repo, digest, &[])
        .await
        .map_err(internal)?;
    Ok(descriptors
        .into_iter()
        .filter(|d| admits(d.artifact_type.as_deref().unwrap_or_default()))
        .map(|d| {
            let annotations: Vec<Value> = d
                .annotations
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| json!({"Key": key, "Value": value}))
                .collect();
            json!({
                "MediaType": d.media_type,
                "ArtifactType": d.artifact_type,
                "Size": d.size,
                "Digest": d.digest.to_string(),
                "Annotations": annotations,
            })
        })
        .collect())
}

pub fn zero_vulnerabilities() -> Value {
    json!({"MaxSeverity": "", "Count": 0, "UnknownCount": 0, "LowCount": 0,
        "MediumCount": 0, "HighCount": 0, "CriticalCount": 0})
}

async fn manifest_summary(
    view: &View,
    repo: &RepoName,
    digest: &Digest,
    meta: &ImageMeta,
) -> Result<Value, String> {
    let signatures = signatures(view, repo, digest).await?;
    let pulls = view
        .engine
        .pull_stats(repo, digest)
        .await
        .map_err(internal)?;
    let layers = meta
        .layers
        .iter()
        .map(|l| json!({"Size": l.size.to_string(), "Digest": l.digest}))
        .collect::<Vec<_>>();
    Ok(object([
        ("Digest", digest.to_string().into()),
        (
            "ConfigDigest",
            meta.config.as_ref().map(|c| c.blob.digest.clone()).into(),
        ),
        (
            "LastUpdated",
            manifest_updated(meta).map_or(Value::Null, format_time),
        ),
        ("Size", manifest_size(meta).to_string().into()),
        ("IsSigned", (!signatures.is_empty()).into()),
        ("SignatureInfo", signatures.into()),
        ("Platform", platform(meta)),
        ("DownloadCount", pulls.count.into()),
        ("Layers", layers.into()),
        ("History", history(meta)),
        ("Vulnerabilities", Value::Null),
        (
            "Referrers",
            referrers(view, repo, digest, &[]).await?.into(),
        ),
        ("ArtifactType", artifact_type(meta)),
    ]))
}

/// Options of one `ImageSummary`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SummaryOptions {
    /// Set `IsDeletable` (ExpandedRepoInfo only, as zot).
    pub deletable: bool,
}

/// The `ImageSummary` of a listed image.
pub async fn image_summary(
    view: &View,
    listed: &Listed,
    options: SummaryOptions,
) -> Result<Value, String> {
    let repo = &listed.repo;
    let meta = &listed.meta;
    // Text fields of an index: its own annotations, else its first manifest's.
    let text = |keys: &[&str]| -> String {
        let own = match meta.index {
            true => keys
                .iter()
                .find_map(|key| meta.annotations.get(*key).filter(|v| !v.is_empty()))
                .map(String::as_str),
            false => meta.annotation(keys),
        };
        own.or_else(|| match meta.index {
            true => listed
                .manifests
                .first()
                .and_then(|(_, m)| m.annotation(keys)),
            false => None,
        })
        .unwrap_or_default()
        .to_owned()
    };
    let authors = match (text(AUTHORS), meta.index) {
        (authors, _) if !authors.is_empty() => authors,
        (_, false) => meta
            .config
            .as_ref()
            .and_then(|c| c.author.clone())
            .unwrap_or_default(),
        (_, true) => String::new(),
    };
    let signatures = signatures(view, repo, &listed.digest).await?;
    let pulls = view
        .engine
        .pull_stats(repo, &listed.digest)
        .await
        .map_err(internal)?;
    let mut manifests = Vec::with_capacity(listed.manifests.len());
    for (digest, manifest) in &listed.manifests {
        manifests.push(manifest_summary(view, repo, digest, manifest).await?);
    }
    let last_pull = match meta.index {
        true => Value::Null,
        false => time_ms(pulls.last_ms.unwrap_or(0)),
    };
    let media_type = match meta.index {
        true => "application/vnd.oci.image.index.v1+json".to_owned(),
        false => meta.media_type.clone(),
    };
    let tagged_ms = match listed.tagged_ms {
        0 => meta.pushed_ms,
        tagged => tagged,
    };
    let mut summary = object([
        ("RepoName", repo.as_str().into()),
        ("Tag", listed.tag.clone().into()),
        ("Digest", listed.digest.to_string().into()),
        ("MediaType", media_type.into()),
        ("Manifests", manifests.into()),
        ("Size", listed_size(listed).to_string().into()),
        ("DownloadCount", pulls.count.into()),
        ("LastPullTimestamp", last_pull),
        ("PushTimestamp", time_ms(meta.pushed_ms)),
        ("TaggedTimestamp", time_ms(tagged_ms)),
        (
            "LastUpdated",
            listed_updated(listed).map_or(Value::Null, format_time),
        ),
        ("Description", text(DESCRIPTION).into()),
        ("IsSigned", (!signatures.is_empty()).into()),
        ("SignatureInfo", signatures.into()),
        ("Licenses", text(LICENSES).into()),
        ("Labels", text(LABELS).into()),
        ("Title", text(TITLE).into()),
        ("Source", text(SOURCE).into()),
        ("Documentation", text(DOCUMENTATION).into()),
        ("Vendor", text(VENDOR).into()),
        ("Authors", authors.into()),
        ("Vulnerabilities", zero_vulnerabilities()),
        (
            "Referrers",
            referrers(view, repo, &listed.digest, &[]).await?.into(),
        ),
        ("IsDeletable", Value::Null),
    ]);
    if options.deletable {
        summary["IsDeletable"] = Value::Bool(view.can_delete(repo.as_str()));
    }
    Ok(summary)
}
