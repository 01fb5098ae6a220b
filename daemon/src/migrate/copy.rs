//! One repository copied: its blobs, then its manifests in dependency order, then its tags;
//! then checked against the source.
//!
//! Rules:
//! - Every step asks the destination first and skips what it holds (blob linked in this
//!   repository, manifest of this digest stored, tag naming this digest), so a rerun after
//!   an interruption finishes the rest and copies nothing twice. A blob another repository of
//!   the destination holds already is linked (`adopt_blob`), not copied again.
//! - Blob bytes stream from the source's file or object into the destination's import in
//!   [`COPY_CHUNK_BYTES`] pieces (never a whole blob in memory); the import verifies the
//!   digest before it commits.
//! - Manifests go in by digest through the engine's PUT, which requires their blobs and
//!   children; children come before an index and a subject before its referrers. Tags come
//!   last, so an interrupted run never leaves a tag at an incomplete image.
use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;

use berth_storage::oci::{parse_manifest, Digest, Reference, RepoName, Tag};
use berth_storage::{BlobSource, Engine, StorageError};

use super::{Counts, Progress, Totals};

/// Bytes read from the source and written to the destination at a time.
pub(super) const COPY_CHUNK_BYTES: usize = 1 << 20;
/// Entries listed per page (blobs, manifests, tags).
pub(super) const PAGE: usize = 256;

/// What copying one repository found wrong (each is a line of the report).
pub(super) type Problems = Vec<String>;

/// Copies `repo`'s blobs, manifests and tags from `src` into `dst`, adding to `totals`.
pub(super) async fn copy_repo(
    src: &Engine,
    dst: &Engine,
    repo: &RepoName,
    totals: &mut Totals,
    progress: &Progress,
) -> Result<Problems, StorageError> {
    copy_blobs(src, dst, repo, totals, progress).await?;
    let mirrored = copy_manifests(src, dst, repo, &mut totals.manifests).await?;
    copy_tags(src, dst, repo, &mirrored, &mut totals.tags, progress).await
}

async fn copy_blobs(
    src: &Engine,
    dst: &Engine,
    repo: &RepoName,
    totals: &mut Totals,
    progress: &Progress,
) -> Result<(), StorageError> {
    let mut after: Option<Digest> = None;
    loop {
        let page = src.repo_blobs(repo, after.as_ref(), PAGE).await?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = Some(last.clone());
        for (digest, size) in page {
            if dst.stat_blob(repo, &digest).await?.is_some() {
                totals.blobs.skipped += 1;
                totals.bytes.skipped += size;
                progress.advance(size);
            } else if dst.adopt_blob(repo, &digest).await? {
                // Stored for another repository already: only the link is new.
                totals.blobs.linked += 1;
                totals.bytes.skipped += size;
                progress.advance(size);
            } else {
                copy_blob(src, dst, repo, &digest, progress).await?;
                totals.blobs.copied += 1;
                totals.bytes.copied += size;
            }
        }
    }
}

/// Streams one blob from `src` into `dst` and commits it in `repo` once its digest verified.
/// Cancel or error: the import's staged file is removed; nothing is linked.
async fn copy_blob(
    src: &Engine,
    dst: &Engine,
    repo: &RepoName,
    digest: &Digest,
    progress: &Progress,
) -> Result<(), StorageError> {
    let mut import = dst.begin_import(digest)?;
    match src.blob_source(digest) {
        BlobSource::File(path) => {
            let mut file = std::fs::File::open(&path)?;
            let mut buffer = vec![0; COPY_CHUNK_BYTES];
            loop {
                let read = match file.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(error.into()),
                };
                import.write(&buffer[..read])?;
                progress.advance(read as u64);
            }
        }
        BlobSource::S3(object) => {
            let mut read = object
                .read(None)
                .await?
                .ok_or_else(|| StorageError::BlobUnknown(digest.clone()))?;
            while let Some(chunk) = read.next_chunk().await {
                let chunk = chunk?;
                import.write(&chunk)?;
                progress.advance(chunk.len() as u64);
            }
        }
    }
    import.verify()?.commit(repo).await?;
    Ok(())
}

/// Copies every manifest of `repo` (tagged or not), dependencies first. Returns the digests
/// of those stored as mirrors (their tags go in through the mirrored PUT).
async fn copy_manifests(
    src: &Engine,
    dst: &Engine,
    repo: &RepoName,
    counts: &mut Counts,
) -> Result<HashSet<Digest>, StorageError> {
    // digest -> (media type, mirrored, what must be stored before it)
    let mut nodes: BTreeMap<Digest, (String, bool, Vec<Digest>)> = BTreeMap::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = src.repo_manifests(repo, after.as_ref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        for listed in page {
            let mut needs: Vec<Digest> = listed.subject.iter().cloned().collect();
            let stored = src
                .get_manifest(repo, &Reference::Digest(listed.digest.clone()))
                .await?
                .ok_or_else(|| gone(repo, &listed.digest))?;
            let parsed = parse_manifest(&stored.bytes, Some(&listed.media_type))?;
            needs.extend(parsed.manifests.iter().map(|child| child.digest.clone()));
            nodes.insert(listed.digest, (listed.media_type, listed.mirrored, needs));
        }
    }
    for digest in dependency_order(&nodes) {
        let reference = Reference::Digest(digest.clone());
        if dst.get_manifest(repo, &reference).await?.is_some() {
            counts.skipped += 1;
            continue;
        }
        let (media_type, mirrored, _) = &nodes[&digest];
        let stored = src
            .get_manifest(repo, &reference)
            .await?
            .ok_or_else(|| gone(repo, &digest))?;
        match *mirrored {
            true => {
                dst.put_manifest_mirrored(repo, &reference, Some(media_type), stored.bytes)
                    .await?
            }
            false => {
                dst.put_manifest(repo, &reference, Some(media_type), stored.bytes, &[])
                    .await?
            }
        };
        counts.copied += 1;
    }
    Ok(nodes
        .into_iter()
        .filter(|(_, (_, mirrored, _))| *mirrored)
        .map(|(digest, _)| digest)
        .collect())
}

fn gone(repo: &RepoName, digest: &Digest) -> StorageError {
    StorageError::Corrupt(format!("{repo}@{digest} was listed but cannot be read"))
}

/// The digests of `nodes` so that each comes after what it needs (those of its needs that
/// are in `nodes`; a subject may be elsewhere or absent). Depth first, iterative; a cycle
/// (which digests make impossible) cannot loop: a digest is entered once.
fn dependency_order<V>(nodes: &BTreeMap<Digest, (V, bool, Vec<Digest>)>) -> Vec<Digest> {
    let mut order = Vec::with_capacity(nodes.len());
    let mut entered: HashSet<&Digest> = HashSet::new();
    for root in nodes.keys() {
        let mut stack = vec![(root, false)];
        while let Some((digest, needs_done)) = stack.pop() {
            if needs_done {
                order.push(digest.clone());
                continue;
            }
            if !entered.insert(digest) {
                continue;
            }
            stack.push((digest, true));
            for need in &nodes[digest].2 {
                if let Some((need, _)) = nodes.get_key_value(need) {
                    if !entered.contains(need) {
                        stack.push((need, false));
                    }
                }
            }
        }
    }
    order
}

/// Points the destination's tags where the source's point. A tag of the destination that
/// names another digest is moved (the source wins) and reported.
async fn copy_tags(
    src: &Engine,
    dst: &Engine,
    repo: &RepoName,
    mirrored: &HashSet<Digest>,
    counts: &mut Counts,
    progress: &Progress,
) -> Result<Problems, StorageError> {
    let mut problems = Problems::new();
    let mut after: Option<Tag> = None;
    loop {
        let page = src.repo_tags(repo, after.as_ref(), PAGE).await?;
        let Some((last, _)) = page.last() else {
            return Ok(problems);
        };
        after = Some(last.clone());
        for (tag, digest) in page {
            let at = dst.get_manifest(repo, &Reference::Tag(tag.clone())).await?;
            if at.as_ref().is_some_and(|stored| stored.digest == digest) {
                counts.skipped += 1;
                continue;
            }
            let Some(stored) = src
                .get_manifest(repo, &Reference::Digest(digest.clone()))
                .await?
            else {
                problems.push(format!("{repo}:{tag} names {digest}, absent in the source"));
                continue;
            };
            let media_type = Some(stored.media_type.as_str());
            if mirrored.contains(&digest) {
                // The mirrored PUT has no extra tags; by tag it names the SHA-256 of the bytes.
                dst.put_manifest_mirrored(
                    repo,
                    &Reference::Tag(tag.clone()),
                    media_type,
                    stored.bytes,
                )
                .await?;
            } else {
                let by_digest = Reference::Digest(digest.clone());
                dst.put_manifest(
                    repo,
                    &by_digest,
                    media_type,
                    stored.bytes,
                    std::slice::from_ref(&tag),
                )
                .await?;
            }
            if let Some(before) = at {
                progress.line(&format!(
                    "moved {repo}:{tag} from {} to {digest} (as in the source)",
                    before.digest
                ));
            }
            counts.copied += 1;
        }
    }
}

/// What the destination holds of `repo` against the source: every tag at the same digest,
/// every manifest and linked blob present. Returns (tags checked, problems).
pub(super) async fn verify_repo(
    src: &Engine,
    dst: &Engine,
    repo: &RepoName,
) -> Result<(u64, Problems), StorageError> {
    let mut problems = Problems::new();
    let mut checked = 0;
    let mut after: Option<Tag> = None;
    loop {
        let page = src.repo_tags(repo, after.as_ref(), PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (tag, digest) in page {
            checked += 1;
            let at = dst.get_manifest(repo, &Reference::Tag(tag.clone())).await?;
            match at.map(|stored| stored.digest) {
                Some(found) if found == digest => {}
                Some(found) => problems.push(format!(
                    "MISMATCH {repo}:{tag}: source {digest}, destination {found}"
                )),
                None => problems.push(format!(
                    "MISMATCH {repo}:{tag}: source {digest}, missing in the destination"
                )),
            }
        }
    }
    let mut after: Option<Digest> = None;
    loop {
        let page = src.repo_manifests(repo, after.as_ref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        for listed in page {
            let reference = Reference::Digest(listed.digest.clone());
            if dst.get_manifest(repo, &reference).await?.is_none() {
                problems.push(format!("MISSING manifest {repo}@{}", listed.digest));
            }
        }
    }
    let mut after: Option<Digest> = None;
    loop {
        let page = src.repo_blobs(repo, after.as_ref(), PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (digest, size) in page {
            if dst.stat_blob(repo, &digest).await? != Some(size) {
                problems.push(format!("MISSING blob {repo}@{digest} ({size} bytes)"));
            }
        }
    }
    Ok((checked, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::of(berth_storage::oci::Algorithm::Sha256, &[n])
    }

    #[test]
    fn needs_come_first_and_absent_ones_are_ignored() {
        let (child, index, referrer, elsewhere) = (digest(1), digest(2), digest(3), digest(4));
        let mut nodes = BTreeMap::new();
        nodes.insert(referrer.clone(), ((), false, vec![index.clone()]));
        nodes.insert(index.clone(), ((), false, vec![child.clone()]));
        nodes.insert(child.clone(), ((), false, vec![elsewhere]));
        let order = dependency_order(&nodes);
        let at = |d: &Digest| order.iter().position(|o| o == d).expect("ordered");
        assert_eq!(order.len(), 3);
        assert!(
            at(&child) < at(&index) && at(&index) < at(&referrer),
            "{order:?}"
        );
    }

    #[test]
    fn a_cycle_ends() {
        let (a, b) = (digest(1), digest(2));
        let mut nodes = BTreeMap::new();
        nodes.insert(a.clone(), ((), false, vec![b.clone()]));
        nodes.insert(b.clone(), ((), false, vec![a.clone()]));
        assert_eq!(dependency_order(&nodes).len(), 2);
    }
}
