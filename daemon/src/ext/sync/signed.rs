//! `onlySigned`: an image is mirrored (on demand or periodically) only when its upstream
//! holds a signature of it that berth trusts, and then its signatures come along.
//!
//! Rules:
//! - The signatures looked at are upstream's cosign signature tag (`sha256-<hex>.sig`) and
//!   its signature referrers: from the referrers API, or else from the referrers tag schema's
//!   index (`sha256-<hex>`). Each is judged in
//!   memory, before anything is stored, by the trust extension's code against its store.
//! - With `extensions.trust` verifying, a signature counts when one of its layers is trusted;
//!   without it, any signature counts (zot's onlySigned checks presence only).
//! - What is not an image is admitted as it is: a signature manifest itself (a cosign tag, a
//!   referrer of a signature type), a referrer whose subject is stored already, a manifest an
//!   admitted index of the repository lists.
//! - A refusal is counted per registry (status API, metrics), logged, and answered like a
//!   manifest upstream does not have: nothing is stored.
use berth_storage::oci::{parse_manifest, Algorithm, Digest, Reference, RepoName};
use berth_storage::search::signed_by_tag;
use berth_storage::trust::signature_tool;
use berth_storage::Engine;
use berth_trust::Subject;

use super::ondemand::SyncError;
use super::registry::Registry;
use super::upstream::UpstreamError;
use crate::ext::trust::judge::{self, Plan, LAYER_MAX_BYTES};
use crate::ext::trust::Trust;

/// A signature of an image, as upstream holds it.
pub struct UpstreamSignature {
    /// The cosign tag naming it, for a tag-based signature.
    pub tag: Option<String>,
    pub digest: Digest,
}

/// What `onlySigned` decided about one image.
pub enum Admission {
    /// Admitted; these signatures are to be stored with it.
    Signed(Vec<UpstreamSignature>),
    /// Admitted without a signature check (not an image, or part of an admitted one).
    Exempt,
    Refused(String),
}

/// The cosign tag of `digest`: `sha256-<hex>.sig`.
pub fn cosign_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm(), digest.hex())
}

/// Whether `manifest` (just fetched for `reference` of local `repo`) needs no signature.
async fn exempt(
    engine: &Engine,
    repo: &RepoName,
    reference: &Reference,
    digest: &Digest,
    bytes: &[u8],
) -> Result<bool, SyncError> {
    if let Reference::Tag(tag) = reference {
        if signed_by_tag(tag.as_str()).is_some() {
            return Ok(true);
        }
    }
    let manifest: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let artifact_type = manifest["artifactType"].as_str().unwrap_or_default();
    if signature_tool(artifact_type).is_some() {
        return Ok(true);
    }
    if let Some(subject) = manifest["subject"]["digest"]
        .as_str()
        .and_then(|text| text.parse::<Digest>().ok())
    {
        return Ok(engine
            .get_manifest(repo, &Reference::Digest(subject))
            .await?
            .is_some());
    }
    // A child of an index this repository holds (admitted when the index was).
    let parents = engine.containing(digest).await?;
    Ok(parents.iter().any(|found| {
        &found.repo == repo
            && found.manifest != *digest
            && found.role == berth_storage::search::DigestRole::Child
    }))
}

/// A layer blob from upstream, at most [`LAYER_MAX_BYTES`].
async fn fetch_layer(
    registry: &Registry,
    upstream_repo: &str,
    layer: &judge::Layer,
) -> Result<Vec<u8>, String> {
    if layer.size > LAYER_MAX_BYTES {
        return Err(format!(
            "signature layer of {} bytes is over the limit",
            layer.size
        ));
    }
    let fetched = registry
        .upstream
        .blob(upstream_repo, &layer.digest)
        .await
        .map_err(|error| format!("signature layer: {error}"))?;
    let Some(mut blob) = fetched else {
        return Err("signature layer missing upstream".into());
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = blob.chunks.recv().await {
        let chunk = chunk.map_err(|error| format!("signature layer: {error}"))?;
        if bytes.len() + chunk.len() > LAYER_MAX_BYTES as usize {
            return Err("signature layer is over the limit".into());
        }
        bytes.extend_from_slice(&chunk);
    }
    if Digest::of(layer.digest.algorithm(), &bytes) != layer.digest {
        return Err("signature layer does not match its digest".into());
    }
    Ok(bytes)
}

/// Upstream's signature manifests of `digest`: its cosign tag and signature referrers.
async fn upstream_signatures(
    registry: &Registry,
    upstream_repo: &str,
    digest: &Digest,
) -> Result<Vec<(UpstreamSignature, Plan)>, UpstreamError> {
    let mut found = Vec::new();
    let tag = cosign_tag(digest);
    if let Some(manifest) = registry
        .upstream
        .manifest(upstream_repo, &tag, false)
        .await?
    {
        let signature_digest = manifest
            .digest
            .clone()
            .unwrap_or_else(|| Digest::of(Algorithm::Sha256, &manifest.bytes));
        if let Some(plan) = judge::plan(&manifest.bytes, true) {
            let signature = UpstreamSignature {
                tag: Some(tag),
                digest: signature_digest,
            };
            found.push((signature, plan));
        }
    }
    let list = match registry.upstream.referrers(upstream_repo, digest).await? {
        Some(list) => list,
        // The OCI 1.1 referrers tag schema: a registry without the referrers API
        // (Distribution 2.x) holds an index tagged `<algorithm>-<hex>` listing them, as
        // oras and notation push it there.
        None => {
            let tag = format!("{}-{}", digest.algorithm(), digest.hex());
            match registry
                .upstream
                .manifest(upstream_repo, &tag, false)
                .await?
            {
                Some(index) => index.bytes,
                None => return Ok(found),
            }
        }
    };
    let index: serde_json::Value = serde_json::from_slice(&list).unwrap_or_default();
    let referrers = index["manifests"].as_array().cloned().unwrap_or_default();
    for descriptor in referrers {
        let is_signature = descriptor["artifactType"]
            .as_str()
            .and_then(signature_tool)
            .is_some();
        let Some(referrer) = descriptor["digest"]
            .as_str()
            .and_then(|text| text.parse::<Digest>().ok())
        else {
            continue;
        };
        if !is_signature {
            continue;
        }
        let text = referrer.to_string();
        let Some(manifest) = registry
            .upstream
            .manifest(upstream_repo, &text, false)
            .await?
        else {
            continue;
        };
        if Digest::of(referrer.algorithm(), &manifest.bytes) != referrer {
            continue;
        }
        if let Some(plan) = judge::plan(&manifest.bytes, false) {
            let signature = UpstreamSignature {
                tag: None,
                digest: referrer,
            };
            found.push((signature, plan));
        }
    }
    Ok(found)
}

/// A manifest fetched upstream, about to be mirrored.
pub struct Fetched<'a> {
    /// The local repository and the reference it is stored under.
    pub repo: &'a RepoName,
    pub reference: &'a Reference,
    pub media_type: &'a str,
    pub digest: &'a Digest,
    pub bytes: &'a [u8],
}

/// Decides whether `fetched` (from `upstream_repo` of `registry`) may be mirrored under
/// `onlySigned`.
pub async fn admit(
    engine: &Engine,
    trust: Option<&Trust>,
    registry: &Registry,
    upstream_repo: &str,
    fetched: Fetched<'_>,
) -> Result<Admission, SyncError> {
    let Fetched {
        repo,
        reference,
        media_type,
        digest,
        bytes,
    } = fetched;
    if exempt(engine, repo, reference, digest, bytes).await? {
        return Ok(Admission::Exempt);
    }
    let signatures = upstream_signatures(registry, upstream_repo, digest).await?;
    if signatures.is_empty() {
        return Ok(Admission::Refused("no signature upstream".into()));
    }
    let Some(trust) = trust else {
        let found = signatures.into_iter().map(|(signature, _)| signature);
        return Ok(Admission::Signed(found.collect()));
    };
    let loaded = trust.loaded();
    let text = digest.to_string();
    let subject = Subject {
        digest: &text,
        media_type,
        size: bytes.len() as u64,
    };
    let mut trusted = Vec::new();
    let mut reasons = Vec::new();
    for (signature, plan) in signatures {
        let mut blobs = Vec::with_capacity(plan.layers.len());
        for layer in &plan.layers {
            blobs.push(fetch_layer(registry, upstream_repo, layer).await);
        }
        let now = judge::now_unix();
        let verdicts = judge::verdicts(&plan, blobs, &subject, &loaded.store, trust.tools, now);
        match verdicts.iter().any(|verdict| verdict.trusted) {
            true => trusted.push(signature),
            false => reasons.extend(verdicts.into_iter().map(|verdict| verdict.reason)),
        }
    }
    match trusted.is_empty() {
        true => Ok(Admission::Refused(format!(
            "no trusted signature upstream ({})",
            reasons.join("; ")
        ))),
        false => Ok(Admission::Signed(trusted)),
    }
}

/// The subject digest of a manifest, if it has one.
pub fn manifest_subject(bytes: &[u8]) -> Option<Digest> {
    let manifest: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    manifest["subject"]["digest"].as_str()?.parse().ok()
}

/// Stores a small manifest (a signature) fetched upstream as `bytes`, under `reference` of
/// local `repo`, with its blobs (each at most [`LAYER_MAX_BYTES`], imported: this runs on
/// any runtime). Returns its digest.
pub async fn store_small(
    engine: &Engine,
    registry: &Registry,
    upstream_repo: &str,
    repo: &RepoName,
    reference: &Reference,
    media_type: &str,
    bytes: bytes::Bytes,
) -> Result<Digest, SyncError> {
    let parsed =
        parse_manifest(&bytes, Some(media_type)).map_err(berth_storage::StorageError::from)?;
    for blob in parsed.blob_references() {
        if engine.stat_blob(repo, &blob.digest).await?.is_some()
            || engine.adopt_blob(repo, &blob.digest).await?
        {
            continue;
        }
        let layer = judge::Layer {
            media_type: blob.media_type.clone(),
            digest: blob.digest.clone(),
            size: blob.size,
            signature: None,
        };
        let content = fetch_layer(registry, upstream_repo, &layer)
            .await
            .map_err(SyncError::Download)?;
        let mut import = engine.begin_import(&blob.digest)?;
        import.write(&content)?;
        import.verify()?.commit(repo).await?;
        registry.succeeded(true);
    }
    let stored = engine
        .put_manifest(repo, reference, Some(media_type), bytes, &[])
        .await?;
    Ok(stored.digest)
}

/// Stores the admitted image `subject`'s `signatures` (manifest and layers) in local `repo`
/// and judges them.
pub async fn store(
    engine: &Engine,
    trust: Option<&Trust>,
    registry: &Registry,
    upstream_repo: &str,
    repo: &RepoName,
    subject: &Digest,
    signatures: Vec<UpstreamSignature>,
) -> Result<(), SyncError> {
    for signature in signatures {
        let reference = match &signature.tag {
            Some(tag) => Reference::Tag(
                tag.parse()
                    .map_err(|_| UpstreamError::Protocol(format!("bad tag {tag:?}")))?,
            ),
            None => Reference::Digest(signature.digest.clone()),
        };
        let name = reference.to_string();
        let Some(manifest) = registry
            .upstream
            .manifest(upstream_repo, &name, false)
            .await?
        else {
            continue;
        };
        let digest = store_small(
            engine,
            registry,
            upstream_repo,
            repo,
            &reference,
            &manifest.media_type,
            manifest.bytes,
        )
        .await?;
        if let Some(trust) = trust {
            let tags: Vec<&str> = signature.tag.as_deref().into_iter().collect();
            let signed = signature.tag.is_none().then_some(subject);
            trust.judge_pushed(repo, &digest, signed, &tags).await;
        }
    }
    Ok(())
}
