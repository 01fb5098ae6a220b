//! Scrub: re-hash every stored blob and manifest against its digest, across all cores, and
//! say which images (repository:tag) the damage reaches.
//!
//! Rules:
//! - Blocking (an `async fn` for its index reads, but hashing holds the thread): the caller
//!   awaits it on its own thread (the daemon's maintenance thread or the `berth scrub`
//!   command, each on a runtime of its own), never on a shard. Blob files are immutable, so no lock is taken.
//! - Blobs in S3 are streamed through one GET each and hashed on the worker (each worker
//!   drives its requests on a runtime of its own).
//! - Parallel across blobs, largest first (sha256 of one blob is sequential, so the largest
//!   blobs start first and the tail is short), on `workers` threads.
//! - `max_bytes_per_second` paces the whole pass (checked between blobs), so a scrub leaves
//!   the disk to foreground traffic.
//! - Each blob's result (time and status) is written to the `scrub` column family in
//!   unsynced batches: results are advisory and the next pass rewrites them.
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::error::StorageError;
use crate::index::{self, BlobRecord, Cf, ManifestRecord, TagRecord};
use crate::io::hash_file_blocking;
use crate::manifests::references;
use crate::oci::{parse_manifest, Digest, RepoName, Tag};

/// Scrub results written per batch.
const RESULT_BATCH: usize = 1000;

/// How to run a pass.
#[derive(Clone, Debug)]
pub struct ScrubOptions {
    /// Hashing threads (at least 1).
    pub workers: usize,
    /// Pace of the whole pass in bytes per second; `None` = as fast as the disk allows.
    pub max_bytes_per_second: Option<u64>,
    /// Set to stop the pass early (checked before each blob); the report then covers what
    /// was verified.
    pub cancel: Arc<AtomicBool>,
}

impl ScrubOptions {
    pub fn new(workers: usize, max_bytes_per_second: Option<u64>) -> ScrubOptions {
        ScrubOptions {
            workers,
            max_bytes_per_second,
            cancel: Arc::default(),
        }
    }
}

/// What is wrong with a stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The blob's file is gone.
    Missing,
    /// The file's length is not the recorded size.
    Size { expected: u64, actual: u64 },
    /// The content hashes to another digest (a bit flip, a rewrite).
    Content { actual: Digest },
    /// The file could not be read.
    Unreadable(String),
}

impl fmt::Display for Damage {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Missing => formatter.write_str("blob file is missing"),
            Damage::Size { expected, actual } => {
                write!(
                    formatter,
                    "blob file has {actual} bytes, {expected} expected"
                )
            }
            Damage::Content { actual } => write!(formatter, "content hashes to {actual}"),
            Damage::Unreadable(error) => write!(formatter, "read failed: {error}"),
        }
    }
}

/// Checks one blob file: present, `size` bytes, content hashing to `digest`.
pub(crate) fn check_blob(path: &Path, size: u64, digest: &Digest) -> Result<(), Damage> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(Damage::Missing),
        Err(error) => return Err(Damage::Unreadable(error.to_string())),
    };
    if metadata.len() != size {
        return Err(Damage::Size {
            expected: size,
            actual: metadata.len(),
        });
    }
    let hasher = hash_file_blocking(path, size, digest.algorithm())
        .map_err(|error| Damage::Unreadable(error.to_string()))?;
    let actual = hasher.finalize();
    match actual == *digest {
        true => Ok(()),
        false => Err(Damage::Content { actual }),
    }
}

/// One tagged image and what scrub found for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageStatus {
    pub repo: RepoName,
    pub tag: Tag,
    pub manifest: Digest,
    /// The first damaged object the image reaches (its manifest, a child manifest, a config
    /// or a layer), or `None` when every one verified.
    pub affected: Option<(Digest, Damage)>,
}

/// The result of a pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubReport {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub manifests_checked: u64,
    /// Every damaged blob or manifest, by digest.
    pub damaged: Vec<(Digest, Damage)>,
    /// Every tagged image, by repository and tag.
    pub images: Vec<ImageStatus>,
    pub elapsed: Duration,
}

impl ScrubReport {
    /// The report as the API serves it: `finishedMs`, `durationSeconds`, counts, `damaged`
    /// (`digest`, `error`) and `images` (`repository`, `tag`, `manifest`, `status` = `ok` or
    /// `affected`, `affectedBlob`, `error`).
    pub fn to_json(&self) -> String {
        let images: Vec<serde_json::Value> = self
            .images
            .iter()
            .map(|image| {
                let (status, blob, error) = match &image.affected {
                    None => ("ok", None, None),
                    Some((digest, damage)) => (
                        "affected",
                        Some(digest.to_string()),
                        Some(damage.to_string()),
                    ),
                };
                serde_json::json!({
                    "repository": image.repo.as_str(),
                    "tag": image.tag.as_str(),
                    "manifest": image.manifest.to_string(),
                    "status": status,
                    "affectedBlob": blob,
                    "error": error,
                })
            })
            .collect();
        let damaged: Vec<serde_json::Value> = self
            .damaged
            .iter()
            .map(|(digest, damage)| {
                serde_json::json!({"digest": digest.to_string(), "error": damage.to_string()})
            })
            .collect();
        serde_json::json!({
            "finishedMs": index::now_ms(),
            "durationSeconds": self.elapsed.as_secs_f64(),
            "blobsChecked": self.blobs_checked,
            "bytesChecked": self.bytes_checked,
            "manifestsChecked": self.manifests_checked,
            "damaged": damaged,
            "images": images,
        })
        .to_string()
    }
}

/// Key of the last report in the `scrub` family (no digest starts with NUL).
const LAST_REPORT_KEY: &[u8] = b"\0last-report";

/// Progress callback: (bytes verified so far, bytes in the pass).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

impl Engine {
    /// Runs one scrub pass over the whole store. See the module comment.
    pub async fn scrub(
        &self,
        options: &ScrubOptions,
        progress: Progress<'_>,
    ) -> Result<ScrubReport, StorageError> {
        let started = Instant::now();
        let mut blobs = Vec::new();
        self.inner
            .index
            .visit(Cf::Blobs, b"", None, |key, value| {
                let digest = std::str::from_utf8(key)
                    .ok()
                    .and_then(|text| text.parse::<Digest>().ok())
                    .ok_or_else(|| StorageError::Corrupt("bad blob key".into()))?;
                blobs.push((digest, BlobRecord::decode(value)?.size));
                Ok(true)
            })
            .await?;
        blobs.sort_unstable_by_key(|(_, size)| std::cmp::Reverse(*size));
        let total: u64 = blobs.iter().map(|(_, size)| size).sum();
        let results = self.verify_blobs(&blobs, total, options, progress)?;
        let mut report = ScrubReport {
            blobs_checked: blobs.len() as u64,
            bytes_checked: total,
            ..ScrubReport::default()
        };
        let mut damaged: HashMap<Digest, Damage> = results.into_iter().collect();
        let mut manifests = Vec::new();
        self.inner
            .index
            .visit(Cf::Manifests, b"", None, |key, value| {
                manifests.push((key.to_vec(), value.to_vec()));
                Ok(true)
            })
            .await?;
        for (key, value) in &manifests {
            report.manifests_checked += 1;
            let parts = index::split_key(key)?;
            let (Some(digest), Ok(record)) = (parts.get(1), ManifestRecord::decode(value)) else {
                continue;
            };
            let Ok(digest) = digest.parse::<Digest>() else {
                continue;
            };
            let actual = Digest::of(digest.algorithm(), &record.bytes);
            if actual != digest {
                damaged.insert(digest, Damage::Content { actual });
            }
        }
        report.images = self.image_statuses(&damaged).await?;
        report.damaged = damaged.into_iter().collect();
        report
            .damaged
            .sort_unstable_by_key(|(digest, _)| digest.to_string());
        self.inner
            .stats
            .maintenance
            .scrub_runs
            .fetch_add(1, Relaxed);
        let affected = report.damaged.len() as u64;
        self.inner
            .stats
            .maintenance
            .scrub_affected_blobs
            .store(affected, Relaxed);
        report.elapsed = started.elapsed();
        if !self.inner.read_only {
            let mut batch = index::Batch::default();
            batch.put(
                Cf::Scrub,
                LAST_REPORT_KEY.to_vec(),
                report.to_json().into_bytes(),
            );
            self.inner.index.write(batch, false).await?;
        }
        Ok(report)
    }

    /// The last pass's report as JSON (see [`ScrubReport::to_json`]), if a pass ever ran on
    /// this store (by the daemon or `berth scrub`).
    pub async fn last_scrub_report(&self) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.index.get(Cf::Scrub, LAST_REPORT_KEY).await
    }

    /// Hashes `blobs` on the worker threads; returns the damaged ones and records every
    /// result in the index.
    fn verify_blobs(
        &self,
        blobs: &[(Digest, u64)],
        total: u64,
        options: &ScrubOptions,
        progress: Progress<'_>,
    ) -> Result<Vec<(Digest, Damage)>, StorageError> {
        let next = AtomicUsize::new(0);
        let done = AtomicU64::new(0);
        let started = Instant::now();
        let damaged = Mutex::new(Vec::new());
        let pending = Mutex::new(index::Batch::default());
        let pending_count = AtomicUsize::new(0);
        let failure: Mutex<Option<StorageError>> = Mutex::new(None);
        let maintenance = &self.inner.stats.maintenance;
        maintenance.scrub_progress_ppm.store(0, Relaxed);
        std::thread::scope(|scope| {
            for _ in 0..options.workers.max(1) {
                scope.spawn(|| {
                    // Blobs in S3: this worker's own runtime for its GETs (one client per
                    // runtime and thread, s3/client.rs); files are read without one.
                    let runtime = match self.inner.s3() {
                        None => None,
                        Some(_) => match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(runtime) => Some(runtime),
                            Err(error) => {
                                *failure.lock().expect("not poisoned") = Some(error.into());
                                return;
                            }
                        },
                    };
                    while let Some((digest, size)) = blobs.get(next.fetch_add(1, Relaxed)) {
                        if options.cancel.load(Relaxed) {
                            return;
                        }
                        let mut verdict = match &runtime {
                            None => check_blob(&self.blob_path(digest), *size, digest),
                            Some(runtime) => {
                                runtime.block_on(self.inner.check_stored_blob(digest, *size))
                            }
                        };
                        if verdict == Err(Damage::Missing)
                            && !index::block_on(self.blob_recorded(digest))
                        {
                            // Removed since the pass listed it (GC): not damage.
                            verdict = Ok(());
                        }
                        let record = scrub_record(&verdict);
                        if let Err(damage) = verdict {
                            damaged
                                .lock()
                                .expect("not poisoned")
                                .push((digest.clone(), damage));
                        }
                        let finished = done.fetch_add(*size, Relaxed) + size;
                        maintenance.scrub_blobs_verified.fetch_add(1, Relaxed);
                        maintenance.scrub_bytes_verified.fetch_add(*size, Relaxed);
                        let ppm = finished.saturating_mul(1_000_000) / total.max(1);
                        maintenance.scrub_progress_ppm.store(ppm, Relaxed);
                        progress(finished, total);
                        let full = {
                            let mut batch = pending.lock().expect("not poisoned");
                            batch.put(Cf::Scrub, digest.to_string().into_bytes(), record);
                            pending_count.fetch_add(1, Relaxed) + 1 >= RESULT_BATCH
                        };
                        if full {
                            if let Err(error) = self.flush_results(&pending, &pending_count) {
                                *failure.lock().expect("not poisoned") = Some(error);
                                return;
                            }
                        }
                        pace(started, finished, options.max_bytes_per_second);
                    }
                });
            }
        });
        maintenance.scrub_progress_ppm.store(1_000_000, Relaxed);
        if let Some(error) = failure.into_inner().expect("not poisoned") {
            return Err(error);
        }
        self.flush_results(&pending, &pending_count)?;
        Ok(damaged.into_inner().expect("not poisoned"))
    }

    /// Whether `digest` still has a blob record (errors count as recorded: report, not hide).
    async fn blob_recorded(&self, digest: &Digest) -> bool {
        let key = digest.to_string();
        self.inner
            .index
            .contains(Cf::Blobs, key.as_bytes())
            .await
            .unwrap_or(true)
    }

    fn flush_results(
        &self,
        pending: &Mutex<index::Batch>,
        count: &AtomicUsize,
    ) -> Result<(), StorageError> {
        if self.inner.read_only {
            return Ok(());
        }
        let batch = std::mem::take(&mut *pending.lock().expect("not poisoned"));
        count.store(0, Relaxed);
        index::block_on(self.inner.index.write(batch, false))
    }

    /// Every tag's image, with the first damaged object it reaches.
    async fn image_statuses(
        &self,
        damaged: &HashMap<Digest, Damage>,
    ) -> Result<Vec<ImageStatus>, StorageError> {
        let mut tags = Vec::new();
        self.inner
            .index
            .visit(Cf::Tags, b"", None, |key, value| {
                let parts = index::split_key(key)?;
                if let (Some(repo), Some(tag)) = (parts.first(), parts.get(1)) {
                    if let (Ok(repo), Ok(tag)) = (repo.parse::<RepoName>(), tag.parse::<Tag>()) {
                        tags.push((repo, tag, TagRecord::decode(value)?.digest));
                    }
                }
                Ok(true)
            })
            .await?;
        let mut images = Vec::with_capacity(tags.len());
        for (repo, tag, manifest) in tags {
            let affected = self.first_damage(&repo, &manifest, damaged, 0).await?;
            images.push(ImageStatus {
                repo,
                tag,
                manifest,
                affected,
            });
        }
        Ok(images)
    }

    /// The first damaged object `manifest` reaches in `repo` (itself, its blobs, its
    /// children's, depth-bounded like index nesting).
    async fn first_damage(
        &self,
        repo: &RepoName,
        manifest: &Digest,
        damaged: &HashMap<Digest, Damage>,
        depth: usize,
    ) -> Result<Option<(Digest, Damage)>, StorageError> {
        if let Some(damage) = damaged.get(manifest) {
            return Ok(Some((manifest.clone(), damage.clone())));
        }
        let key = index::key(&[repo.as_str(), &manifest.to_string()]);
        let Some(value) = self.inner.index.get(Cf::Manifests, &key).await? else {
            return Ok(None);
        };
        let record = ManifestRecord::decode(&value)?;
        let Ok(parsed) = parse_manifest(&record.bytes, Some(&record.media_type)) else {
            return Ok(None);
        };
        for (digest, kind) in references(&parsed) {
            if let Some(damage) = damaged.get(digest) {
                return Ok(Some((digest.clone(), damage.clone())));
            }
            if kind == index::RefKind::Manifest && depth < 4 {
                if let Some(found) =
                    Box::pin(self.first_damage(repo, digest, damaged, depth + 1)).await?
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }
}

/// Sleeps so that `done` bytes since `started` stay at or under `rate` bytes per second.
fn pace(started: Instant, done: u64, rate: Option<u64>) {
    let Some(rate) = rate.filter(|rate| *rate > 0) else {
        return;
    };
    let due = Duration::from_secs_f64(done as f64 / rate as f64);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        std::thread::sleep(wait);
    }
}

/// `scrub` column family value: verified_ms u64, status u8 (0 ok, 1 damaged), detail.
fn scrub_record(verdict: &Result<(), Damage>) -> Vec<u8> {
    let mut out = index::now_ms().to_be_bytes().to_vec();
    match verdict {
        Ok(()) => out.push(0),
        Err(damage) => {
            out.push(1);
            out.extend_from_slice(damage.to_string().as_bytes());
        }
    }
    out
}
