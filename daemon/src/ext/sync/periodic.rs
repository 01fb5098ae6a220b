//! Periodic sync: every `pollInterval`, each registry with `content` copies what its content
//! rules admit: the upstream catalog filtered by prefix, each repository's tags filtered by
//! regex / excludeRegex / semver, every platform of an index, and the referrers (signatures,
//! SBOMs) of what it copies.
//!
//! Rules:
//! * A tag whose stored digest equals the upstream's (one HEAD) is skipped; a blob the store
//!   holds already, for any repository, is linked instead of downloaded; so a pass costs what
//!   changed upstream plus one HEAD per admitted tag.
//! * Images are stored complete (blobs first, then child manifests, then the manifest), as
//!   ordinary manifests: a periodic copy never depends on the upstream afterwards.
//! * `reqConcurrent` images are copied at once, each within `syncTimeout`. One failed image
//!   is counted and logged and the pass goes on.
//! * One thread per daemon runs the passes (registry after registry), on a runtime of the
//!   shards' kind (blob writes need it); upstream I/O runs on sync's runtime. The first pass
//!   starts at once, the next `pollInterval` after the previous one ended. Setting `stop`
//!   ends the thread between images.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_storage::oci::{parse_manifest, Digest, Reference, RepoName};
use berth_storage::{Engine, StorageError};
use futures_util::StreamExt as _;

use super::ondemand::{OnDemand, SyncError};
use super::registry::{now_ms, Registry, RunResult};
use super::signed::{self, Admission};
use super::upstream::UpstreamError;
use crate::ext::trust::Trust;
use berth_storage::oci::Algorithm;
use berth_storage::search::signed_by_tag;

/// Starts the periodic sync thread when a registry has a poll interval.
pub fn spawn(
    sync: Arc<OnDemand>,
    uring: bool,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    if !sync
        .registries()
        .iter()
        .any(|registry| registry.poll_interval.is_some())
    {
        return Ok(None);
    }
    let handle = std::thread::Builder::new()
        .name("sync-periodic".into())
        .spawn(move || {
            let mut next: Vec<Instant> = vec![Instant::now(); sync.registries().len()];
            while !stop.load(Ordering::Relaxed) {
                for (index, registry) in sync.registries().iter().enumerate() {
                    let Some(every) = registry.poll_interval else {
                        continue;
                    };
                    if Instant::now() < next[index] || stop.load(Ordering::Relaxed) {
                        continue;
                    }
                    let pass = run_pass(&sync, registry, &stop);
                    if uring {
                        tokio_uring::start(pass);
                    } else {
                        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                            Ok(runtime) => runtime.block_on(pass),
                            Err(error) => tracing::error!(component = "sync", %error, "no runtime for a sync pass"),
                        }
                    }
                    next[index] = Instant::now() + every;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })?;
    Ok(Some(handle))
}

/// What copying one tag came to.
enum Copied {
    Stored,
    Skipped,
    /// `onlySigned` refused it (why).
    Refused(String),
}

async fn run_pass(sync: &OnDemand, registry: &Registry, stop: &AtomicBool) {
    let started = Instant::now();
    let mut result = RunResult::default();
    let jobs = match plan(registry).await {
        Ok(jobs) => jobs,
        Err(error) => {
            tracing::warn!(component = "sync", upstream = registry.upstream.stats().name(), %error, "sync pass: listing upstream failed");
            result.error = Some(error.to_string());
            Vec::new()
        }
    };
    let engine = sync.engine();
    let concurrency = registry.req_concurrent.max(1);
    let mut copies = futures_util::stream::iter(jobs.into_iter().map(
        |(upstream_repo, local, tag)| async move {
            if stop.load(Ordering::Relaxed) {
                return (
                    local,
                    tag,
                    Err(SyncError::Upstream(UpstreamError::Runtime(
                        "stopping".into(),
                    ))),
                );
            }
            let copy = copy_tag(engine, sync.trust(), registry, &upstream_repo, &local, &tag);
            let copied = match tokio::time::timeout(registry.sync_timeout, copy).await {
                Ok(copied) => copied,
                Err(_) => Err(SyncError::Upstream(UpstreamError::Protocol(format!(
                    "not copied within syncTimeout ({:?})",
                    registry.sync_timeout
                )))),
            };
            (local, tag, copied)
        },
    ))
    .buffer_unordered(concurrency);
    while let Some((local, tag, copied)) = copies.next().await {
        match copied {
            Ok(Copied::Stored) => {
                result.copied += 1;
                tracing::info!(component = "sync", repository = %local, tag, "image synced");
            }
            Ok(Copied::Skipped) => result.skipped += 1,
            Ok(Copied::Refused(why)) => {
                result.skipped += 1;
                registry.refused_unsigned();
                tracing::warn!(component = "sync", repository = %local, tag, why, "not synced: onlySigned");
            }
            Err(error) => {
                result.failed += 1;
                tracing::warn!(component = "sync", repository = %local, tag, %error, "image sync failed");
                result
                    .error
                    .get_or_insert_with(|| format!("{local}:{tag}: {error}"));
            }
        }
    }
    result.finished_ms = now_ms();
    tracing::info!(
        component = "sync",
        upstream = registry.upstream.stats().name(),
        copied = result.copied,
        skipped = result.skipped,
        failed = result.failed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "sync pass finished"
    );
    let mut outcome = registry
        .outcome
        .lock()
        .expect("outcome lock is never poisoned");
    outcome.runs += 1;
    outcome.images_copied += result.copied;
    outcome.images_skipped += result.skipped;
    outcome.images_failed += result.failed;
    if result.error.is_none() {
        outcome.last_success_ms = Some(result.finished_ms);
    }
    outcome.last_run = Some(result);
}

/// (upstream repository, local repository, tag) for every admitted tag.
async fn plan(registry: &Registry) -> Result<Vec<(String, RepoName, String)>, UpstreamError> {
    let mut jobs = Vec::new();
    for upstream_repo in registry.upstream.catalog().await? {
        let Some(local) = registry.content.local_repo(&upstream_repo) else {
            continue;
        };
        let Ok(local) = local.parse::<RepoName>() else {
            continue;
        };
        for tag in registry.upstream.tags(&upstream_repo).await? {
            // Under onlySigned, signatures come with the image they sign.
            if registry.only_signed && signed_by_tag(&tag).is_some() {
                continue;
            }
            if registry.content.admits_tag(&upstream_repo, &tag) {
                jobs.push((upstream_repo.clone(), local.clone(), tag));
            }
        }
    }
    Ok(jobs)
}

async fn copy_tag(
    engine: &Engine,
    trust: Option<&Trust>,
    registry: &Registry,
    upstream_repo: &str,
    local: &RepoName,
    tag: &str,
) -> Result<Copied, SyncError> {
    let reference: Reference = Reference::Tag(
        tag.parse()
            .map_err(|_| UpstreamError::Protocol(format!("bad tag {tag:?}")))?,
    );
    let head = registry.upstream.manifest(upstream_repo, tag, true).await?;
    let stored = engine.get_manifest(local, &reference).await?;
    if let (Some(head), Some(stored)) = (&head, &stored) {
        if head.digest.as_ref() == Some(&stored.digest) {
            return Ok(Copied::Skipped);
        }
    }
    let mut signatures = Vec::new();
    if registry.only_signed {
        let manifest = registry
            .upstream
            .manifest(upstream_repo, tag, false)
            .await?
            .ok_or_else(|| {
                UpstreamError::Protocol(format!("{upstream_repo}:{tag} vanished upstream"))
            })?;
        let digest = Digest::of(Algorithm::Sha256, &manifest.bytes);
        let admission = signed::admit(
            engine,
            trust,
            registry,
            upstream_repo,
            signed::Fetched {
                repo: local,
                reference: &reference,
                media_type: &manifest.media_type,
                digest: &digest,
                bytes: &manifest.bytes,
            },
        )
        .await?;
        match admission {
            Admission::Signed(found) => signatures = found,
            Admission::Exempt => {}
            Admission::Refused(why) => return Ok(Copied::Refused(why)),
        }
    }
    let digest = copy_manifest(engine, registry, upstream_repo, local, tag, &reference).await?;
    if let Some(trust) = trust {
        trust.judge_pushed(local, &digest, None, &[tag]).await;
    }
    signed::store(
        engine,
        trust,
        registry,
        upstream_repo,
        local,
        &digest,
        signatures,
    )
    .await?;
    copy_referrers(engine, trust, registry, upstream_repo, local, &digest).await?;
    Ok(Copied::Stored)
}

/// Copies the manifest `name` names upstream, with everything it references, and stores it
/// under `reference`. Returns its digest. Boxed: an index recurses into its children.
fn copy_manifest<'a>(
    engine: &'a Engine,
    registry: &'a Registry,
    upstream_repo: &'a str,
    local: &'a RepoName,
    name: &'a str,
    reference: &'a Reference,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Digest, SyncError>> + 'a>> {
    Box::pin(async move {
        let manifest = registry
            .upstream
            .manifest(upstream_repo, name, false)
            .await?
            .ok_or_else(|| {
                UpstreamError::Protocol(format!("{upstream_repo}:{name} vanished upstream"))
            })?;
        let parsed = parse_manifest(&manifest.bytes, Some(&manifest.media_type))
            .map_err(StorageError::from)?;
        for child in &parsed.manifests {
            let child_reference = Reference::Digest(child.digest.clone());
            if engine
                .get_manifest(local, &child_reference)
                .await?
                .is_none()
            {
                let text = child.digest.to_string();
                copy_manifest(
                    engine,
                    registry,
                    upstream_repo,
                    local,
                    &text,
                    &child_reference,
                )
                .await?;
            }
        }
        for blob in parsed.blob_references() {
            let foreign = blob.media_type.contains(".nondistributable.")
                || blob.media_type.contains(".rootfs.foreign.");
            if foreign || engine.stat_blob(local, &blob.digest).await?.is_some() {
                continue;
            }
            if engine.adopt_blob(local, &blob.digest).await? {
                continue;
            }
            copy_blob(engine, registry, upstream_repo, local, &blob.digest).await?;
        }
        let stored = engine
            .put_manifest(
                local,
                reference,
                Some(&manifest.media_type),
                manifest.bytes,
                &[],
            )
            .await?;
        Ok(stored.digest)
    })
}

async fn copy_blob(
    engine: &Engine,
    registry: &Registry,
    upstream_repo: &str,
    local: &RepoName,
    digest: &Digest,
) -> Result<(), SyncError> {
    let mut fetch = registry
        .upstream
        .blob(upstream_repo, digest)
        .await?
        .ok_or_else(|| UpstreamError::Protocol(format!("blob {digest} missing upstream")))?;
    let mut writer = engine.begin_monolithic(local).await?;
    while let Some(chunk) = fetch.chunks.recv().await {
        writer.write(chunk?).await?;
    }
    writer.finish(digest).await?;
    registry.succeeded(true);
    Ok(())
}

/// The referrers upstream lists for `subject`, copied by digest with their blobs.
async fn copy_referrers(
    engine: &Engine,
    trust: Option<&Trust>,
    registry: &Registry,
    upstream_repo: &str,
    local: &RepoName,
    subject: &Digest,
) -> Result<(), SyncError> {
    let Some(list) = registry.upstream.referrers(upstream_repo, subject).await? else {
        return Ok(());
    };
    let index: serde_json::Value = serde_json::from_slice(&list)
        .map_err(|error| UpstreamError::Protocol(format!("referrers of {subject}: {error}")))?;
    let digests = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|descriptor| descriptor["digest"].as_str()?.parse::<Digest>().ok());
    for digest in digests {
        let reference = Reference::Digest(digest.clone());
        if engine.get_manifest(local, &reference).await?.is_none() {
            let text = digest.to_string();
            copy_manifest(engine, registry, upstream_repo, local, &text, &reference).await?;
            if let Some(trust) = trust {
                trust.judge_pushed(local, &digest, Some(subject), &[]).await;
            }
        }
    }
    Ok(())
}
