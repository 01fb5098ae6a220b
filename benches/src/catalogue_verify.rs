//! After `generate`: the store's bytes, and a few repositories' search records read back so
//! that a broken fixture fails at once instead of in the middle of a benchmark.
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use berth_storage::oci::{Digest, RepoName};
use berth_storage::Engine;

use super::Layout;

/// Reads a few repositories' search records back; returns the manifests counted there.
pub(super) async fn verify(engine: &Engine, layout: &Layout, bases: &[Digest]) -> Result<u64> {
    let mut samples = vec![0, 1, layout.repos / 2, layout.repos - 1];
    samples.dedup();
    let mut manifests = 0;
    for number in samples {
        let name = layout.repo(number);
        let repo: RepoName = name.parse().map_err(|e| anyhow!("{name}: {e:?}"))?;
        let meta = engine
            .repo_meta(&repo)
            .await?
            .ok_or_else(|| anyhow!("no search record (repo_meta) for {name}"))?;
        let expected = layout.tag_count(number);
        if meta.tags != expected as u64 {
            bail!(
                "{name}: repo_meta counts {} tags, {expected} pushed",
                meta.tags
            );
        }
        let newest = meta
            .newest
            .as_ref()
            .ok_or_else(|| anyhow!("{name}: repo_meta has no newest image"))?;
        let digest: Digest = newest.digest.parse().map_err(|e| anyhow!("{e:?}"))?;
        if engine.image_meta(&repo, &digest).await?.is_none() {
            bail!("{name}: no image_meta for its newest image {digest}");
        }
        manifests += engine.tag_entries(&repo).await?.len() as u64;
        eprintln!(
            "berth-bench generate: {name}: {} tags, newest {} , {} platforms, vendors {:?}",
            meta.tags,
            newest.tag,
            meta.platforms.len(),
            meta.vendors
        );
    }
    let holders = engine.containing(&bases[0]).await?.len();
    eprintln!(
        "berth-bench generate: base layer 0 is in {holders} manifests (ImageListForDigest's set)"
    );
    if holders == 0 {
        bail!("the digests family has no entry for base layer 0");
    }
    let mut tagged = 0;
    engine
        .visit_tagged(&bases[0], |_| {
            tagged += 1;
            true
        })
        .await?;
    if tagged == 0 {
        bail!("the tagged family has no entry for base layer 0");
    }
    Ok(manifests)
}

/// Bytes of every file under `path`.
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => disk_usage(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}
