//! GC's sweep: blob records no repository links (with their files), and in a full pass the
//! files under blobs/ that have no record at all (left by a crash between a commit's rename
//! and its index write, or between GC's record delete and its file delete).
//!
//! Rules: candidates are the blobs that lost a link (`gc_queue`), and every record in a full
//! pass; only entries that are queued are deleted from the queue (a tombstone per blob record
//! would slow every later scan of the queue). They are decided in chunks: the chunk's digest locks are taken exclusively (in
//! stripe order), each candidate is re-checked (`blob_links`), the records go in one synced
//! batch, and only then are the files removed. A commit linking one of these blobs holds the
//! digest's lock shared from before its file is installed to its link, so it either ran
//! before (the blob is linked and stays) or runs after (it sees no record and creates one,
//! installing its own copy of the file).
use std::collections::HashSet;
use std::path::PathBuf;

use super::{GcAction, GcKind, GcOptions, GcReport};
use crate::engine::Engine;
use crate::error::StorageError;
use crate::index::{self, Batch, BlobRecord, Cf};
use crate::oci::Digest;

/// Candidates decided per synced batch.
const CHUNK: usize = 256;

/// Queue entries settled since the last compaction of the queue family above which it is
/// compacted again (its tombstones would otherwise slow every later scan of the queue).
const QUEUE_COMPACT_AFTER: usize = 1024;

impl Engine {
    pub(super) async fn sweep_blobs(
        &self,
        options: &GcOptions,
        full: bool,
        lease: &mut Option<super::PassLease>,
        report: &mut GcReport,
    ) -> Result<Option<u64>, StorageError> {
        let inner = &self.inner;
        // A dry run unlinked nothing: the links it would have removed count as gone.
        let simulated: HashSet<(String, String)> = report
            .actions
            .iter()
            .filter(|action| action.kind == GcKind::Link && !action.performed)
            .filter_map(|action| Some((action.what.clone(), action.repo.clone()?)))
            .collect();
        let mut queued = HashSet::new();
        inner
            .index
            .visit(Cf::GcQueue, b"", None, |key, _| {
                queued.insert(String::from_utf8_lossy(key).into_owned());
                Ok(true)
            })
            .await?;
        let mut candidates: Vec<String> =
            simulated.iter().map(|(digest, _)| digest.clone()).collect();
        candidates.extend(queued.iter().cloned());
        if full {
            inner
                .index
                .visit(Cf::Blobs, b"", None, |key, _| {
                    candidates.push(String::from_utf8_lossy(key).into_owned());
                    Ok(true)
                })
                .await?;
        }
        candidates.sort_unstable();
        candidates.dedup();
        let settled = queued.len();
        for chunk in candidates.chunks(CHUNK) {
            // Lost: the queue entries left are the next pass's (whichever node runs it).
            if let Some(holder) = super::pass::keep(lease, inner).await? {
                return Ok(Some(holder));
            }
            let mut held = crate::lock::Held::default();
            let keys: Vec<&str> = chunk.iter().map(String::as_str).collect();
            held.take_all(&inner.index, &inner.blob_locks, &keys)
                .await?;
            let mut batch = Batch::default();
            let mut files = Vec::new();
            for digest_text in chunk {
                report.blobs_examined += 1;
                let prefix = index::prefix(&[digest_text]);
                let linked = inner
                    .index
                    .any_with_prefix(Cf::BlobLinks, &prefix, |key, _| {
                        let repo = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                        Ok(!simulated.contains(&(digest_text.clone(), repo)))
                    })
                    .await?;
                let record = inner.index.get(Cf::Blobs, digest_text.as_bytes()).await?;
                let Some(record) = record.filter(|_| !linked) else {
                    // Linked again, or already gone: no longer a candidate.
                    if queued.contains(digest_text) {
                        batch.delete(Cf::GcQueue, digest_text.clone().into_bytes());
                    }
                    continue;
                };
                let size = match BlobRecord::decode(&record) {
                    Ok(record) => record.size,
                    Err(error) => {
                        report.errors.push(format!("{digest_text}: {error}"));
                        continue;
                    }
                };
                let Ok(digest) = digest_text.parse::<Digest>() else {
                    report.errors.push(format!("{digest_text}: bad digest key"));
                    continue;
                };
                report.actions.push(GcAction {
                    kind: GcKind::Blob,
                    repo: None,
                    what: digest_text.clone(),
                    reason: "no repository links it",
                    bytes: size,
                    performed: !options.dry_run,
                });
                batch.delete(Cf::Blobs, digest_text.clone().into_bytes());
                batch.delete(Cf::Scrub, digest_text.clone().into_bytes());
                if queued.contains(digest_text) {
                    batch.delete(Cf::GcQueue, digest_text.clone().into_bytes());
                }
                files.push((digest, size));
            }
            if options.dry_run || batch.is_empty() {
                continue;
            }
            // The records first (durably), then the files: a crash in between leaves
            // orphan files, which the next full pass removes.
            inner.index.write_held(batch, inner.commit, &held).await?;
            for (digest, size) in files {
                inner.delete_blob_bytes(&digest).await?;
                inner.usage.blob_removed(size);
            }
        }
        let since = &inner.gc.queue_settled;
        let settled = since.fetch_add(settled, std::sync::atomic::Ordering::Relaxed) + settled;
        if !options.dry_run && settled >= QUEUE_COMPACT_AFTER {
            since.store(0, std::sync::atomic::Ordering::Relaxed);
            if let Some(rocks) = inner.index.rocks() {
                rocks.compact(Cf::GcQueue)?;
            }
        }
        Ok(None)
    }

    /// Files under blobs/ without a record, older than the delay (full pass only).
    pub(super) async fn sweep_orphan_files(
        &self,
        options: &GcOptions,
        now: u64,
        report: &mut GcReport,
    ) -> Result<(), StorageError> {
        let inner = &self.inner;
        let delay = u64::try_from(options.delay.as_millis()).unwrap_or(u64::MAX);
        if inner.s3().is_some() {
            return self.sweep_orphan_objects(options, now, report).await;
        }
        let mut orphans = Vec::new();
        for (digest, path) in inner.store.blob_files()? {
            if inner
                .index
                .contains(Cf::Blobs, digest.to_string().as_bytes())
                .await?
            {
                continue;
            }
            let Ok(metadata) = std::fs::metadata(&path) else {
                continue;
            };
            let modified_ms = metadata
                .modified()
                .ok()
                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |since| since.as_millis() as u64);
            if now < modified_ms.saturating_add(delay) {
                continue;
            }
            orphans.push((digest, metadata.len(), Some(path)));
        }
        self.remove_orphans(orphans, options, report).await
    }

    /// Objects under the bucket's `blobs/` without a record, written longer than the delay
    /// ago by the listing's last-modified time (full pass only): as `sweep_orphan_files`.
    /// The listing's time is the server's clock and `now` this node's: skew between them
    /// only shifts the age rule by that skew, and the delay (default an hour) dwarfs it.
    async fn sweep_orphan_objects(
        &self,
        options: &GcOptions,
        now: u64,
        report: &mut GcReport,
    ) -> Result<(), StorageError> {
        let inner = &self.inner;
        let blobs = inner.s3().expect("called for blobs in S3");
        let delay = u64::try_from(options.delay.as_millis()).unwrap_or(u64::MAX);
        let mut orphans = Vec::new();
        for listed in crate::blob_backend::list_all(blobs).await? {
            // A key that names no digest is not the engine's to remove (fsck reports it).
            let Some(digest) = listed.digest else {
                continue;
            };
            if now < listed.last_modified_ms.saturating_add(delay) {
                continue;
            }
            if inner
                .index
                .contains(Cf::Blobs, digest.to_string().as_bytes())
                .await?
            {
                continue;
            }
            orphans.push((digest, listed.size, None));
        }
        self.remove_orphans(orphans, options, report).await
    }

    /// Removes stored blobs without a record (`path`: the file found, else the object), each
    /// under its digest's exclusive lock and only if no commit recorded it meanwhile.
    async fn remove_orphans(
        &self,
        orphans: Vec<(Digest, u64, Option<PathBuf>)>,
        options: &GcOptions,
        report: &mut GcReport,
    ) -> Result<(), StorageError> {
        let inner = &self.inner;
        for (digest, size, path) in orphans {
            let digest_text = digest.to_string();
            let mut held = crate::lock::Held::default();
            held.take(&inner.index, &inner.blob_locks, &digest_text, false)
                .await?;
            // A commit may have recorded it since.
            if inner
                .index
                .contains(Cf::Blobs, digest_text.as_bytes())
                .await?
            {
                continue;
            }
            report.actions.push(GcAction {
                kind: GcKind::OrphanFile,
                repo: None,
                what: digest_text,
                reason: "no record",
                bytes: size,
                performed: !options.dry_run,
            });
            if options.dry_run {
                continue;
            }
            match &path {
                Some(path) => inner.io.remove_file_now(path)?,
                None => inner.delete_blob_bytes(&digest).await?,
            }
        }
        Ok(())
    }
}
