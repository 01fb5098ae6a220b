//! The lint extension (`extensions.lint.mandatoryAnnotations`, as zot): a manifest PUT of a
//! container image must carry every mandatory key in the manifest's `annotations` or in its
//! config's `config.Labels`; otherwise 400 MANIFEST_INVALID naming the missing keys, and
//! nothing is stored.
//!
//! Rules:
//! - It runs before the engine sees the manifest, so a refused manifest changes nothing.
//! - It applies to image manifests (OCI and Docker v2s2) whose config is an image config.
//!   Indexes and manifest lists carry no config (their images are linted when pushed), and
//!   artifacts (signatures, SBOMs: an `artifactType` or a non-image config) are made by
//!   tools that cannot add a registry's house annotations.
//! - Anything it cannot read (bad JSON, a config the repository does not link, a config over
//!   [`CONFIG_MAX_BYTES`]) is left to the engine, which refuses it with its own error.
//! - It has no routes and no workers: it is a hook the manifest PUT calls
//!   ([`missing_annotations`]), with the reloadable settings of that request.
use std::collections::BTreeSet;
use std::sync::Arc;

use berth_storage::oci::{Digest, RepoName};
use berth_storage::Engine;
use serde_json::Value;

use crate::config::LintConfig;

/// The lint extension in the list: its name only (the manifest PUT calls the hook).
pub struct LintExt;

impl super::Extension for LintExt {
    fn name(&self) -> &'static str {
        "lint"
    }
}

/// Largest config blob lint reads to find labels (image configs are kilobytes).
pub const CONFIG_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Config media types of container images.
const IMAGE_CONFIGS: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// The mandatory keys `manifest` lacks, in config order; empty when it passes or is not
/// linted. Reads the config blob (blocking pool) only when the manifest's own annotations
/// are not enough.
pub async fn missing_annotations(
    config: &LintConfig,
    engine: &Arc<Engine>,
    repo: &RepoName,
    manifest: &[u8],
) -> Vec<String> {
    if !config.enabled || config.mandatory_annotations.is_empty() {
        return Vec::new();
    }
    let Some(image) = ImageManifest::parse(manifest) else {
        return Vec::new();
    };
    let mut missing = image.missing(&config.mandatory_annotations);
    if missing.is_empty() {
        return missing;
    }
    let labels = config_labels(engine, repo, &image.config).await;
    let Some(labels) = labels else {
        // Unreadable or unlinked config: the engine refuses the manifest itself.
        return Vec::new();
    };
    missing.retain(|key| !labels.contains(key));
    missing
}

struct ImageManifest {
    annotations: BTreeSet<String>,
    config: Digest,
}

impl ImageManifest {
    /// The annotations and config digest of an image manifest; `None` for anything lint
    /// does not apply to (or cannot read).
    fn parse(bytes: &[u8]) -> Option<ImageManifest> {
        let manifest: Value = serde_json::from_slice(bytes).ok()?;
        if manifest.get("artifactType").is_some() {
            return None;
        }
        let config = manifest.get("config")?;
        let media_type = config.get("mediaType")?.as_str()?;
        if !IMAGE_CONFIGS.contains(&media_type) {
            return None;
        }
        let digest = config.get("digest")?.as_str()?.parse().ok()?;
        Some(ImageManifest {
            annotations: keys_of(manifest.get("annotations")),
            config: digest,
        })
    }

    fn missing(&self, mandatory: &[String]) -> Vec<String> {
        mandatory
            .iter()
            .filter(|key| !self.annotations.contains(*key))
            .cloned()
            .collect()
    }
}

fn keys_of(object: Option<&Value>) -> BTreeSet<String> {
    object
        .and_then(Value::as_object)
        .map(|map| map.keys().cloned().collect())
        .unwrap_or_default()
}

/// The label keys of the config blob `digest` if `repo` links it and it is readable JSON.
async fn config_labels(
    engine: &Arc<Engine>,
    repo: &RepoName,
    digest: &Digest,
) -> Option<BTreeSet<String>> {
    let size = engine.stat_blob(repo, digest).await.ok()??;
    if size > CONFIG_MAX_BYTES {
        return None;
    }
    let bytes = engine
        .read_blob_bytes(digest, CONFIG_MAX_BYTES)
        .await
        .ok()??;
    let config: Value = serde_json::from_slice(&bytes).ok()?;
    Some(keys_of(config.get("config").and_then(|c| c.get("Labels"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG_DIGEST: &str =
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn manifest(config_type: &str, extra: &str) -> Vec<u8> {
        format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{config_type}","digest":"{CONFIG_DIGEST}","size":2}},"layers":[]{extra}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn only_image_manifests_are_linted() {
        let image = manifest(IMAGE_CONFIGS[0], r#","annotations":{"a":"1"}"#);
        let parsed = ImageManifest::parse(&image).expect("an image manifest");
        assert_eq!(parsed.config.to_string(), CONFIG_DIGEST);
        let mandatory = ["a".to_owned(), "b".to_owned()];
        assert_eq!(parsed.missing(&mandatory), vec!["b".to_owned()]);
        let docker = manifest(IMAGE_CONFIGS[1], "");
        assert!(ImageManifest::parse(&docker).is_some());
        let artifact = manifest(IMAGE_CONFIGS[0], r#","artifactType":"application/x""#);
        assert!(ImageManifest::parse(&artifact).is_none());
        let signature = manifest("application/vnd.dev.cosign.simplesigning.v1+json", "");
        assert!(ImageManifest::parse(&signature).is_none());
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(ImageManifest::parse(index).is_none());
        assert!(ImageManifest::parse(b"not json").is_none());
    }
}
