//! Judging one signature manifest: which layers carry signatures and of which kind
//! ([`plan`]), then a verdict per layer from their bytes and the trust store ([`verdicts`],
//! the cryptography is berth-trust's). Where the bytes come from is the caller's: the store
//! for pushed and synced signatures ([`judge_stored`]), an upstream for sync's `onlySigned`.
//!
//! Rules:
//! - A signature manifest is a cosign signature tag's (`sha256-<hex>.sig`: layers with the
//!   `dev.cosignproject.cosign/signature` annotation) or a referrer whose artifact type (or,
//!   without one, config media type) is a signature type: cosign's legacy referrer, the
//!   sigstore bundle, notation's signature.
//! - Each layer gets one verdict; a layer berth cannot judge (no signature, an envelope type
//!   it does not know, a blob over [`LAYER_MAX_BYTES`] or not linked in the repository) is
//!   untrusted with the reason. A tool that is off in the config judges nothing trusted.
use berth_storage::oci::{Digest, Reference, RepoName};
use berth_storage::trust::{signature_tool, LayerVerdict, SignatureManifest, SignatureRecord};
use berth_storage::{Engine, StorageError};
use berth_trust::{Subject, TrustStore};
use serde_json::Value;

/// Largest signature layer berth reads (payloads and envelopes are kilobytes).
pub const LAYER_MAX_BYTES: u64 = 4 << 20;
/// Most signature layers judged in one manifest (cosign appends one per signing).
pub const LAYERS_MAX: usize = 256;

const COSIGN_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The sigstore bundle's artifact type; its layers' media types start with
/// [`BUNDLE_MEDIA_TYPE_PREFIX`] (`...bundle.v0.3+json` or `...bundle+json;version=0.3`).
const BUNDLE_ARTIFACT_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const BUNDLE_MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";

/// Which tools `extensions.trust` verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tools {
    pub cosign: bool,
    pub notation: bool,
}

/// One layer of a signature manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// The cosign signature annotation.
    pub signature: Option<String>,
}

/// What judging a signature manifest needs from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `cosign` or `notation`.
    pub tool: &'static str,
    /// A sigstore bundle referrer: every layer is a bundle.
    pub bundle: bool,
    pub layers: Vec<Layer>,
    /// The manifest's own subject descriptor (digest, media type, size), if it has one.
    pub subject: Option<(Digest, String, u64)>,
}

/// The plan of `bytes` when they are a signature manifest: `by_tag` when a cosign signature
/// tag names it. `None` for any other manifest (or one that is not JSON).
pub fn plan(bytes: &[u8], by_tag: bool) -> Option<Plan> {
    let manifest: Value = serde_json::from_slice(bytes).ok()?;
    let artifact_type = manifest["artifactType"]
        .as_str()
        .or_else(|| manifest["config"]["mediaType"].as_str())
        .unwrap_or_default();
    let tool = match signature_tool(artifact_type) {
        Some(tool) => tool,
        None if by_tag => "cosign",
        None => return None,
    };
    let layers = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .take(LAYERS_MAX)
        .filter_map(|layer| {
            Some(Layer {
                media_type: layer["mediaType"].as_str()?.to_owned(),
                digest: layer["digest"].as_str()?.parse().ok()?,
                size: layer["size"].as_u64()?,
                signature: layer["annotations"][COSIGN_ANNOTATION]
                    .as_str()
                    .map(str::to_owned),
            })
        })
        .collect();
    let subject = &manifest["subject"];
    let subject = subject["digest"]
        .as_str()
        .and_then(|digest| digest.parse().ok())
        .map(|digest| {
            let media_type = subject["mediaType"].as_str().unwrap_or_default();
            (
                digest,
                media_type.to_owned(),
                subject["size"].as_u64().unwrap_or(0),
            )
        });
    Some(Plan {
        tool,
        bundle: artifact_type == BUNDLE_ARTIFACT_TYPE,
        layers,
        subject,
    })
}

fn untrusted(tool: &str, reason: impl Into<String>) -> LayerVerdict {
    LayerVerdict {
        tool: tool.to_owned(),
        trusted: false,
        author: String::new(),
        reason: reason.into(),
        expires_unix: None,
    }
}

fn from_verdict(verdict: berth_trust::Verdict) -> LayerVerdict {
    LayerVerdict {
        tool: verdict.tool.to_string(),
        trusted: verdict.trusted,
        author: if verdict.trusted {
            verdict.author
        } else {
            String::new()
        },
        reason: verdict.reason,
        expires_unix: verdict.expires_unix,
    }
}

/// The verdict on each layer of `plan`, given each layer's bytes (`Err`: why they could not
/// be read) and what the manifest signs.
pub fn verdicts(
    plan: &Plan,
    blobs: Vec<Result<Vec<u8>, String>>,
    subject: &Subject<'_>,
    store: &TrustStore,
    tools: Tools,
    now_unix: i64,
) -> Vec<LayerVerdict> {
    let tool = plan.tool;
    let enabled = match tool {
        "notation" => tools.notation,
        _ => tools.cosign,
    };
    if plan.layers.is_empty() {
        return vec![untrusted(tool, "the signature manifest has no layer")];
    }
    plan.layers
        .iter()
        .zip(blobs)
        .map(|(layer, blob)| {
            if !enabled {
                return untrusted(
                    tool,
                    format!("{tool} signatures are not verified (extensions.trust.{tool})"),
                );
            }
            let bytes = match blob {
                Ok(bytes) => bytes,
                Err(why) => return untrusted(tool, why),
            };
            let media_type = layer.media_type.as_str();
            let bundle = plan.bundle || media_type.starts_with(BUNDLE_MEDIA_TYPE_PREFIX);
            let verdict = match (tool, bundle, &layer.signature) {
                ("notation", _, _) => {
                    berth_trust::verify_notation(media_type, &bytes, subject, store, now_unix)
                }
                (_, true, _) => berth_trust::verify_cosign_bundle(&bytes, subject, store),
                (_, _, Some(signature)) => {
                    berth_trust::verify_cosign_legacy(&bytes, signature, subject, store)
                }
                (_, false, None) => {
                    return untrusted(
                        tool,
                        format!("layer of type {media_type} carries no cosign signature"),
                    )
                }
            };
            from_verdict(verdict)
        })
        .collect()
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// Reads a layer blob of `repo` for judging: linked in the repository, at most
/// [`LAYER_MAX_BYTES`]. Blocking (a small file read).
async fn read_layer(engine: &Engine, repo: &RepoName, layer: &Layer) -> Result<Vec<u8>, String> {
    match engine.stat_blob(repo, &layer.digest).await {
        Ok(Some(size)) if size > LAYER_MAX_BYTES => Err(format!(
            "signature layer of {size} bytes is over the {LAYER_MAX_BYTES}-byte limit"
        )),
        Ok(Some(_)) => match engine.read_blob_bytes(&layer.digest, LAYER_MAX_BYTES).await {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err("signature layer unreadable: not stored".into()),
            Err(error) => Err(format!("signature layer unreadable: {error}")),
        },
        Ok(None) => Err("signature layer not stored in this repository".into()),
        Err(error) => Err(format!("signature layer unreadable: {error}")),
    }
}

/// The verdicts on the stored signature manifest `signature`, against `store` of
/// `generation`; `None` when the manifest is gone or is not a signature manifest. Blocking:
/// run it on the blocking pool.
pub async fn judge_stored(
    engine: &Engine,
    signature: &SignatureManifest,
    store: &TrustStore,
    generation: u64,
    tools: Tools,
) -> Result<Option<SignatureRecord>, StorageError> {
    let repo = &signature.repo;
    let Some(stored) = engine
        .get_manifest(repo, &Reference::Digest(signature.digest.clone()))
        .await?
    else {
        return Ok(None);
    };
    let by_tag = stored.subject.is_none();
    let Some(plan) = plan(&stored.bytes, by_tag) else {
        return Ok(None);
    };
    let mut blobs = Vec::with_capacity(plan.layers.len());
    for layer in &plan.layers {
        blobs.push(read_layer(engine, repo, layer).await);
    }
    let signed = engine
        .get_manifest(repo, &Reference::Digest(signature.subject.clone()))
        .await?;
    let (media_type, size) = match (&signed, &plan.subject) {
        (Some(signed), _) => (signed.media_type.clone(), signed.bytes.len() as u64),
        (None, Some((_, media_type, size))) => (media_type.clone(), *size),
        (None, None) => (String::new(), 0),
    };
    let digest = signature.subject.to_string();
    let subject = Subject {
        digest: &digest,
        media_type: &media_type,
        size,
    };
    let layers = verdicts(&plan, blobs, &subject, store, tools, now_unix());
    Ok(Some(SignatureRecord::new(
        generation,
        &signature.subject,
        layers,
    )))
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
