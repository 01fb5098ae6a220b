//! Images for the search tests: real configs (platform, created, author, labels, history)
//! and manifest annotations ([`ImageBuilder`]), shared layers ([`Layer`]), indexes, OCI 1.1
//! artifacts with a subject, and cosign (`sha256-<hex>.sig` tag) and notation signatures.
//!
//! Rules: layers are gzip tars whose `diff_ids` match, so every client accepts the images;
//! pushes assert 201 throughout (via `push_image`).

use serde_json::{json, Map, Value};

use crate::api::{put_manifest, OCI_INDEX, OCI_MANIFEST};
use crate::{gzip_stored, push_image, random_bytes, sha256_digest, tar_layer, Client, Image};

pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
pub const NOTATION_SIGNATURE: &str = "application/vnd.cncf.notary.signature";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// One layer: the uncompressed tar (whose digest is the config's diff_id) and the gzip blob.
#[derive(Clone, Debug)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub blob: Vec<u8>,
}

impl Layer {
    /// A layer holding one file of `size` random bytes.
    pub fn random(size: usize) -> Layer {
        let tar = tar_layer("file.bin", &random_bytes(size));
        let blob = gzip_stored(&tar);
        Layer { tar, blob }
    }

    pub fn digest(&self) -> String {
        sha256_digest(&self.blob)
    }
}

/// An OCI image with a real config: platform, `created`, author, labels, history; and
/// manifest annotations.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    os: String,
    arch: String,
    variant: Option<String>,
    created: Option<String>,
    author: Option<String>,
    labels: Map<String, Value>,
    annotations: Map<String, Value>,
    history: Vec<Value>,
    layers: Vec<Layer>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        ImageBuilder::new()
    }
}

impl ImageBuilder {
    /// linux/amd64, no layers, no created time.
    pub fn new() -> ImageBuilder {
        ImageBuilder {
            os: "linux".into(),
            arch: "amd64".into(),
            variant: None,
            created: None,
            author: None,
            labels: Map::new(),
            annotations: Map::new(),
            history: Vec::new(),
            layers: Vec::new(),
        }
    }

    pub fn platform(mut self, os: &str, arch: &str, variant: Option<&str>) -> Self {
        self.os = os.into();
        self.arch = arch.into();
        self.variant = variant.map(str::to_string);
        self
    }

    /// The config's `created` (RFC 3339).
    pub fn created(mut self, time: &str) -> Self {
        self.created = Some(time.into());
        self
    }

    pub fn author(mut self, author: &str) -> Self {
        self.author = Some(author.into());
        self
    }

    /// A config label (`config.Labels`).
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), json!(value));
        self
    }

    /// A manifest annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.into(), json!(value));
        self
    }

    /// A history entry (its `created` is the image's).
    pub fn history(mut self, created_by: &str, empty_layer: bool) -> Self {
        let mut entry = json!({"created_by": created_by});
        if empty_layer {
            entry["empty_layer"] = json!(true);
        }
        self.history.push(entry);
        self
    }

    pub fn layer(mut self, layer: &Layer) -> Self {
        self.layers.push(layer.clone());
        self
    }

    /// A layer of `size` fresh random bytes.
    pub fn fresh_layer(self, size: usize) -> Self {
        self.layer(&Layer::random(size))
    }

    pub fn build(self) -> Image {
        let mut config = json!({
            "architecture": self.arch,
            "os": self.os,
            "config": {},
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(|l| sha256_digest(&l.tar)).collect::<Vec<_>>(),
            },
        });
        if let Some(variant) = &self.variant {
            config["variant"] = json!(variant);
        }
        if let Some(created) = &self.created {
            config["created"] = json!(created);
        }
        if let Some(author) = &self.author {
            config["author"] = json!(author);
        }
        if !self.labels.is_empty() {
            config["config"]["Labels"] = Value::Object(self.labels.clone());
        }
        if !self.history.is_empty() {
            let history: Vec<Value> = self
                .history
                .iter()
                .map(|entry| {
                    let mut entry = entry.clone();
                    if let Some(created) = &self.created {
                        entry["created"] = json!(created);
                    }
                    entry
                })
                .collect();
            config["history"] = json!(history);
        }
        let config = serde_json::to_vec(&config).expect("config serializes");
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len()},
            "layers": self.layers.iter().map(|l| json!({
                "mediaType": OCI_LAYER_GZIP, "digest": l.digest(), "size": l.blob.len(),
            })).collect::<Vec<_>>(),
        });
        if !self.annotations.is_empty() {
            manifest["annotations"] = Value::Object(self.annotations.clone());
        }
        let manifest = serde_json::to_vec(&manifest).expect("manifest serializes");
        Image {
            digest: sha256_digest(&manifest),
            config,
            layers: self.layers.into_iter().map(|l| l.blob).collect(),
            manifest,
        }
    }
}

/// config + manifest + every layer: zot's ImageSummary.Size of a single-manifest image.
pub fn image_size(image: &Image) -> usize {
    image.config.len() + image.manifest.len() + image.layers.iter().map(Vec::len).sum::<usize>()
}

/// An index over `children` (platforms from their configs), with `annotations`.
pub fn build_index(children: &[&Image], annotations: Value) -> (Vec<u8>, String) {
    let manifests: Vec<Value> = children
        .iter()
        .map(|child| {
            let config: Value = serde_json::from_slice(&child.config).expect("config is JSON");
            let mut platform = json!({"os": config["os"], "architecture": config["architecture"]});
            if let Some(variant) = config.get("variant") {
                platform["variant"] = variant.clone();
            }
            json!({
                "mediaType": OCI_MANIFEST, "digest": child.digest,
                "size": child.manifest.len(), "platform": platform,
            })
        })
        .collect();
    let mut index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        index["annotations"] = annotations;
    }
    let bytes = serde_json::to_vec(&index).expect("index serializes");
    let digest = sha256_digest(&bytes);
    (bytes, digest)
}

/// Pushes every child by digest, then the index under `tag`.
pub fn push_index(
    client: &Client,
    url: &str,
    repo: &str,
    tag: &str,
    children: &[&Image],
    index: &[u8],
) {
    for child in children {
        push_image(client, url, repo, &child.digest, child);
    }
    put_manifest(client, url, repo, tag, OCI_INDEX, index);
}

/// An OCI 1.1 artifact (empty config, one random blob) of `artifact_type` whose subject is
/// the manifest `subject` (`media_type`, `size`).
pub fn artifact(
    subject: (&str, &str, usize),
    artifact_type: &str,
    layer_type: &str,
    annotations: Value,
) -> Image {
    let (media_type, digest, size) = subject;
    let config = b"{}".to_vec();
    let blob = random_bytes(97);
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_CONFIG, "digest": sha256_digest(&config), "size": 2},
        "layers": [{"mediaType": layer_type, "digest": sha256_digest(&blob), "size": blob.len()}],
        "subject": {"mediaType": media_type, "digest": digest, "size": size},
    });
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        manifest["annotations"] = annotations;
    }
    let manifest = serde_json::to_vec(&manifest).expect("manifest serializes");
    Image {
        digest: sha256_digest(&manifest),
        config,
        layers: vec![blob],
        manifest,
    }
}

/// An artifact referring to the image manifest `subject`, pushed by digest; returns it.
pub fn push_referrer(
    client: &Client,
    url: &str,
    repo: &str,
    subject: &Image,
    artifact_type: &str,
    annotations: Value,
) -> Image {
    let referrer = artifact(
        (OCI_MANIFEST, &subject.digest, subject.manifest.len()),
        artifact_type,
        "application/octet-stream",
        annotations,
    );
    push_image(client, url, repo, &referrer.digest, &referrer);
    referrer
}

/// A notation signature of `subject` (artifactType `application/vnd.cncf.notary.signature`,
/// a JWS envelope layer), pushed by digest.
pub fn push_notation_signature(client: &Client, url: &str, repo: &str, subject: &Image) -> Image {
    let signature = artifact(
        (OCI_MANIFEST, &subject.digest, subject.manifest.len()),
        NOTATION_SIGNATURE,
        "application/jose+json",
        json!({"io.cncf.notary.x509chain.thumbprint#S256": "[\"0f0e0d\"]"}),
    );
    push_image(client, url, repo, &signature.digest, &signature);
    signature
}

/// A cosign signature of `subject` in the same repository: tag `sha256-<hex>.sig`, a
/// simple-signing payload layer carrying `dev.cosignproject.cosign/signature`. Returns the tag.
pub fn push_cosign_signature(client: &Client, url: &str, repo: &str, subject: &Image) -> String {
    let payload = serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": format!("127.0.0.1/{repo}")},
            "image": {"docker-manifest-digest": subject.digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .expect("payload serializes");
    let config = serde_json::to_vec(&json!({
        "architecture": "", "os": "", "config": {},
        "created": "0001-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&payload)]},
    }))
    .expect("config serializes");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len()},
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": sha256_digest(&payload), "size": payload.len(),
            "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQDtestsignaturebytesAiEA0123456789abcdef"},
        }],
    }))
    .expect("manifest serializes");
    let image = Image {
        digest: sha256_digest(&manifest),
        config,
        layers: vec![payload],
        manifest,
    };
    let tag = format!(
        "sha256-{}.sig",
        subject.digest.trim_start_matches("sha256:")
    );
    push_image(client, url, repo, &tag, &image);
    tag
}
