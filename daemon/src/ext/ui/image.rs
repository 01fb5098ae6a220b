//! An image's page (a tag): its facts, pull commands, signatures and referrers, and one
//! section per platform with layers and history, labels and annotations, what it is built on
//! and what is built on it.
//!
//! Rules: everything but the labels and annotations comes from search (`Image`,
//! `BaseImageList`, `DerivedImageList`, the latter two per platform manifest); labels and
//! annotations are read from the manifest and its config as the API serves them (search has
//! no field for them), the config at most [`MAX_CONFIG_BYTES`].
use askama::Template;
use berth_storage::oci::{Digest, Reference, RepoName};
use hyper::Response;
use serde_json::{json, Value};

use super::data::{self, ManifestSummary, Referrer};
use super::pages::{Chrome, Page};
use super::view::{self, When};
use crate::api::body::Body;
use crate::ext::search::images::{shown_signatures, ShownSignature};

/// Keys and values, sorted by key.
type Pairs = Vec<(String, String)>;

/// Config media types of plain images (OCI and Docker).
const IMAGE_CONFIG_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// Base and derived images listed per platform.
const RELATED_LIMIT: u64 = 10;
/// Largest image config read for its labels.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

pub struct ReferrerRow {
    pub artifact_type: String,
    pub media_type: String,
    pub size: String,
    pub digest: String,
    pub digest_short: String,
}

pub struct LayerRow {
    pub index: usize,
    pub created_by: String,
    pub size: String,
    pub digest: String,
    pub digest_short: String,
    pub empty: bool,
}

pub struct PlatformView {
    pub label: String,
    pub digest: String,
    pub digest_short: String,
    pub config_digest: String,
    pub config_short: String,
    pub artifact_type: String,
    pub size: String,
    pub layers: Vec<LayerRow>,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    pub signatures: Vec<ShownSignature>,
    pub referrers: Vec<ReferrerRow>,
    pub base: Vec<(String, String)>,
    pub base_more: u64,
    pub derived: Vec<(String, String)>,
    pub derived_more: u64,
}

#[derive(Template)]
#[template(path = "image.html")]
struct ImagePage {
    chrome: Chrome,
    repo: String,
    tag: String,
    repo_href: String,
    delete_href: String,
    deletable: bool,
    description: String,
    digest: String,
    media_type: String,
    size: String,
    pushed: When,
    downloads: u64,
    facts: Vec<(&'static str, String)>,
    pulls: Vec<(&'static str, String)>,
    signatures: Vec<ShownSignature>,
    referrers: Vec<ReferrerRow>,
    platforms: Vec<PlatformView>,
}

pub async fn page(page: &Page<'_>, repo: &str, tag: &str) -> Response<Body> {
    let image_ref = format!("{repo}:{tag}");
    let answer: data::Image = match page
        .ask(data::image_document(), json!({"image": image_ref}))
        .await
    {
        Ok(answer) => answer,
        Err(failure) => return page.failed(failure),
    };
    let image = answer.image;
    let mut platforms = Vec::with_capacity(image.manifests.len());
    for manifest in &image.manifests {
        platforms.push(platform(page, repo, &image_ref, manifest).await);
    }
    let mut facts = Vec::new();
    for (name, value) in [
        ("Title", &image.title),
        ("Vendor", &image.vendor),
        ("Licenses", &image.licenses),
        ("Authors", &image.authors),
        ("Source", &image.source),
        ("Documentation", &image.documentation),
    ] {
        if let Some(value) = value.as_ref().filter(|value| !value.is_empty()) {
            facts.push((name, value.clone()));
        }
    }
    let href = view::tag_href(repo, tag);
    page.render(&ImagePage {
        chrome: page.chrome("explore"),
        repo: repo.to_owned(),
        tag: tag.to_owned(),
        repo_href: view::repo_href(repo),
        delete_href: format!("{href}/delete"),
        deletable: super::repo::may_delete(page, repo),
        description: image.description.clone().unwrap_or_default(),
        digest: image.digest.clone().unwrap_or_default(),
        media_type: image.media_type.clone().unwrap_or_default(),
        size: view::size(image.size.as_deref()),
        pushed: When::of(
            image
                .push_timestamp
                .as_deref()
                .or(image.last_updated.as_deref()),
            page.now,
        ),
        downloads: image.download_count.unwrap_or(0),
        facts,
        pulls: pull_commands(&page.host, repo, tag),
        signatures: signatures(page, repo, image.digest.as_deref().unwrap_or_default()).await,
        referrers: referrers(&image.referrers),
        platforms,
    })
}

async fn platform(
    page: &Page<'_>,
    repo: &str,
    image_ref: &str,
    manifest: &ManifestSummary,
) -> PlatformView {
    let related: data::Related = page
        .ask(
            data::RELATED_DOCUMENT.to_owned(),
            json!({"image": image_ref, "digest": manifest.digest, "limit": RELATED_LIMIT}),
        )
        .await
        .unwrap_or_default();
    let links = |refs: &data::ImageRefs| -> Vec<(String, String)> {
        refs.results
            .iter()
            .map(|found| {
                (
                    format!("{}:{}", found.repo_name, found.tag),
                    view::tag_href(&found.repo_name, &found.tag),
                )
            })
            .collect()
    };
    let (labels, annotations) = labels_and_annotations(page, repo, manifest).await;
    let config_digest = manifest.config_digest.clone().unwrap_or_default();
    PlatformView {
        label: manifest
            .platform
            .as_ref()
            .map_or_else(|| "?/?".to_owned(), data::Platform::label),
        digest_short: view::short_digest(&manifest.digest),
        digest: manifest.digest.clone(),
        config_short: view::short_digest(&config_digest),
        config_digest,
        // An image's "artifact type" is its config's media type: only an artifact's is news.
        artifact_type: manifest
            .artifact_type
            .clone()
            .filter(|kind| !IMAGE_CONFIG_TYPES.contains(&kind.as_str()))
            .unwrap_or_default(),
        size: view::size(manifest.size.as_deref()),
        layers: layers(manifest),
        labels,
        annotations,
        signatures: signatures(page, repo, &manifest.digest).await,
        referrers: referrers(&manifest.referrers),
        base_more: related
            .base
            .page
            .total_count
            .saturating_sub(related.base.results.len() as u64),
        base: links(&related.base),
        derived_more: related
            .derived
            .page
            .total_count
            .saturating_sub(related.derived.results.len() as u64),
        derived: links(&related.derived),
    }
}

/// One row per history entry, with the layer it made (empty layers have none); a config
/// without history gives one row per layer.
fn layers(manifest: &ManifestSummary) -> Vec<LayerRow> {
    let row = |index: usize, created_by: String, layer: Option<&data::Layer>, empty: bool| {
        let digest = layer
            .and_then(|layer| layer.digest.clone())
            .unwrap_or_default();
        LayerRow {
            index,
            created_by,
            size: match empty {
                true => "—".to_owned(),
                false => view::size(layer.and_then(|layer| layer.size.as_deref())),
            },
            digest_short: view::short_digest(&digest),
            digest,
            empty,
        }
    };
    if manifest.history.is_empty() {
        return manifest
            .layers
            .iter()
            .enumerate()
            .map(|(index, layer)| row(index + 1, String::new(), Some(layer), false))
            .collect();
    }
    manifest
        .history
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let description = entry.history_description.as_ref();
            let created_by = description
                .and_then(|d| d.created_by.clone().or_else(|| d.comment.clone()))
                .unwrap_or_default();
            let empty = description.and_then(|d| d.empty_layer).unwrap_or(false);
            row(index + 1, created_by, entry.layer.as_ref(), empty)
        })
        .collect()
}

/// The signatures of manifest `digest` of `repo`, each layer with its verdict and, when it is
/// not trusted, why (berth's verdicts, read as search reads them).
async fn signatures(page: &Page<'_>, repo: &str, digest: &str) -> Vec<ShownSignature> {
    let (Ok(repo), Ok(digest)) = (repo.parse::<RepoName>(), digest.parse::<Digest>()) else {
        return Vec::new();
    };
    let engine = &page.ctx.engine;
    let shown = match engine.tag_entries(&repo).await {
        Ok(tags) => shown_signatures(engine, &tags, &repo, &digest).await,
        Err(error) => Err(error),
    };
    match shown {
        Ok(shown) => shown,
        Err(error) => {
            tracing::warn!(component = "ui", repository = %repo, %digest, %error, "signatures unreadable");
            Vec::new()
        }
    }
}

fn referrers(found: &[Referrer]) -> Vec<ReferrerRow> {
    found
        .iter()
        .map(|referrer| ReferrerRow {
            artifact_type: referrer
                .artifact_type
                .clone()
                .filter(|kind| !kind.is_empty())
                .unwrap_or_else(|| "—".to_owned()),
            media_type: referrer.media_type.clone().unwrap_or_default(),
            size: referrer
                .size
                .map_or_else(|| "—".to_owned(), view::bytes_text),
            digest_short: view::short_digest(&referrer.digest),
            digest: referrer.digest.clone(),
        })
        .collect()
}

/// The config's labels and the manifest's annotations, sorted by key.
async fn labels_and_annotations(
    page: &Page<'_>,
    repo: &str,
    manifest: &ManifestSummary,
) -> (Pairs, Pairs) {
    let pairs = |value: &Value| -> Pairs {
        let mut pairs: Vec<(String, String)> = value
            .as_object()
            .map(|map| {
                map.iter()
                    .map(|(key, value)| {
                        let text = value
                            .as_str()
                            .map_or_else(|| value.to_string(), str::to_owned);
                        (key.clone(), text)
                    })
                    .collect()
            })
            .unwrap_or_default();
        pairs.sort();
        pairs
    };
    let (Ok(repo), Ok(digest)) = (repo.parse::<RepoName>(), manifest.digest.parse::<Digest>())
    else {
        return (Vec::new(), Vec::new());
    };
    let engine = &page.ctx.engine;
    let annotations = engine
        .get_manifest(&repo, &Reference::Digest(digest))
        .await
        .ok()
        .flatten()
        .and_then(|stored| serde_json::from_slice::<Value>(&stored.bytes).ok())
        .map(|document| pairs(&document["annotations"]))
        .unwrap_or_default();
    let config = match manifest
        .config_digest
        .as_deref()
        .and_then(|text| text.parse::<Digest>().ok())
    {
        Some(config) => engine
            .stat_blob(&repo, &config)
            .await
            .ok()
            .flatten()
            .is_some_and(|size| size <= MAX_CONFIG_BYTES)
            .then_some(config),
        None => None,
    };
    let bytes = match config {
        Some(config) => engine
            .read_blob_bytes(&config, MAX_CONFIG_BYTES)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let labels = bytes
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .map(|config| pairs(&config["config"]["Labels"]))
        .unwrap_or_default();
    (labels, annotations)
}

/// How each client pulls the image from the address the browser used. berth serves plain
/// HTTP (TLS is not in this build), so the commands say so where a client needs telling.
fn pull_commands(host: &str, repo: &str, tag: &str) -> Vec<(&'static str, String)> {
    let image = format!("{host}/{repo}:{tag}");
    let file = repo.rsplit('/').next().unwrap_or(repo);
    vec![
        ("docker", format!("docker pull {image}")),
        ("podman", format!("podman pull --tls-verify=false {image}")),
        (
            "skopeo",
            format!("skopeo copy --src-tls-verify=false docker://{image} oci:{file}:{tag}"),
        ),
        ("oras", format!("oras pull --plain-http {image}")),
        ("crane", format!("crane pull --insecure {image} {file}.tar")),
    ]
}
