//! Online garbage collection: what GC deletes, the retention hook the daemon fills from
//! `storage.retention`, and the pass itself (`Engine::gc`).
//!
//! Rules (DESIGN.md "GC" draws the whole protocol):
//! * A repository pass holds the repository's lock (no manifest PUT or delete interleaves)
//!   and, while it unlinks blobs or removes the repository record, the repository's link
//!   lock exclusively (no blob finish or mount into that repository interleaves). A link
//!   younger than `delay` is never removed: that is the push grace between a blob's 201 and
//!   its manifest's PUT.
//! * A blob record and its file are removed only under the digest's exclusive lock, after
//!   checking that no repository links it (`blob_links`). Finishes and mounts hold that lock
//!   shared from before the file is installed until their link is written, so a sweep can
//!   never delete a blob a concurrent commit is linking.
//! * The record goes first (a synced batch), the file after: a crash in between leaves an
//!   orphan file (fsck: info), which the next full pass removes.
//! * Cost follows change: a pass visits the repositories changed since the last pass (plus
//!   those under a time-based retention policy) and the blobs that lost a link (`gc_queue`).
//!   The first pass after open is full: every repository, every blob record, every file.
//! * One pass at a time per node (`GcState::running`) and, on a shared index, per registry
//!   (lease.rs: a pass another node's pass holds the lease for does nothing).
//! * Blocking: call from a plain thread, never from inside an async runtime.
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod lease;
mod pass;
mod pulls;
pub(crate) use pulls::decode as decode_pulls;
mod sweep;

pub use lease::GcRun;
pub(crate) use lease::PassLease;
use pulls::Pulls;

/// What GC keeps between passes (in memory: a restart makes the next pass full).
#[derive(Default)]
pub(crate) struct GcState {
    pub(crate) pulls: Pulls,
    /// Set by the first full pass after open.
    pub(crate) first_done: AtomicBool,
    /// Queue entries settled since the queue family was last compacted (sweep.rs).
    pub(crate) queue_settled: std::sync::atomic::AtomicUsize,
    /// One pass at a time (the daemon's thread and an API call may meet).
    pub(crate) running: tokio::sync::Mutex<()>,
    /// Repositories holding garbage not old enough yet: name -> when it will be (ms).
    pending: Mutex<HashMap<String, u64>>,
}

impl GcState {
    pub(crate) fn mark_pending(&self, repo: &str, due_ms: u64) {
        let mut pending = self.pending.lock().expect("gc lock is never poisoned");
        let due = pending.entry(repo.to_owned()).or_insert(due_ms);
        *due = (*due).min(due_ms);
    }

    /// Takes the repositories whose garbage is of age at `now`.
    pub(crate) fn take_due(&self, now_ms: u64) -> Vec<String> {
        let mut pending = self.pending.lock().expect("gc lock is never poisoned");
        let due: Vec<String> = pending
            .iter()
            .filter(|(_, due)| **due <= now_ms)
            .map(|(repo, _)| repo.clone())
            .collect();
        for repo in &due {
            pending.remove(repo);
        }
        due
    }
}

/// One tag as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagInfo {
    pub tag: String,
    /// The manifest digest the tag names (text).
    pub digest: String,
    /// When the tag was last set (ms since the Unix epoch).
    pub pushed_ms: u64,
    /// When the tagged manifest was last pulled by GET (ms), if ever.
    pub pulled_ms: Option<u64>,
}

/// What the retention policy matching a repository says beyond its tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepoRules {
    /// Delete manifests that no tag, no index and no referrer reaches (zot default true).
    pub delete_untagged: bool,
    /// Delete referrers (manifests with a subject) whose subject is gone (zot default false).
    pub delete_referrers: bool,
    /// `keep_tags` must be asked for this repository (a policy with `keepTags` matched).
    pub filters_tags: bool,
}

impl Default for RepoRules {
    /// No policy matched: keep every tag, delete untagged manifests, keep referrers.
    fn default() -> RepoRules {
        RepoRules {
            delete_untagged: true,
            delete_referrers: false,
            filters_tags: false,
        }
    }
}

/// The daemon's retention policies (zot's `storage.retention.policies`).
pub trait Retention: Send + Sync {
    /// The rules for `repo` (the first matching policy's, or `RepoRules::default()`).
    fn rules(&self, repo: &str) -> RepoRules;
    /// For each tag of `repo` (same order), whether it is kept. Only called when
    /// `rules(repo).filters_tags`.
    fn keep_tags(&self, repo: &str, tags: &[TagInfo], now_ms: u64) -> Vec<bool>;
    /// True if any policy filters tags: such repositories are visited by every pass, since
    /// time passing (or a pull) changes what they keep.
    fn filters_any(&self) -> bool;
}

/// How to run a pass.
#[derive(Clone)]
pub struct GcOptions {
    /// `storage.gcDelay`: a blob link younger than this is never removed (push grace), nor
    /// an orphan file, nor an idle upload session.
    pub delay: Duration,
    /// `storage.retention.delay` (defaults to `gcDelay`): minimum age of an untagged
    /// manifest or an orphaned referrer before it is deleted.
    pub manifest_delay: Duration,
    /// Change nothing at all; report what would be deleted (`berth gc --dry-run`).
    pub dry_run: bool,
    /// zot's `retention.dryRun`: tags and manifests that policies would delete are only
    /// reported; blobs nothing references are still collected.
    pub retention_dry_run: bool,
    /// Visit every repository, blob record and blob file, not only what changed.
    pub full: bool,
    /// `None`: no policy (keep every tag, delete untagged manifests, keep referrers).
    pub retention: Option<Arc<dyn Retention>>,
    /// On a shared index, how long the registry's GC lease lasts unless the pass renews it
    /// (it does between steps, once a third has passed): a node whose pass stopped without
    /// giving it up (killed nodes free it at once) holds it this long. Default 5 minutes.
    pub lease: Duration,
}

impl GcOptions {
    /// A pass with `delay` for everything and no retention policy.
    pub fn new(delay: Duration) -> GcOptions {
        GcOptions {
            delay,
            manifest_delay: delay,
            dry_run: false,
            retention_dry_run: false,
            full: false,
            retention: None,
            lease: lease::DEFAULT_LEASE,
        }
    }
}

/// Kinds of garbage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GcKind {
    /// A tag a retention policy does not keep.
    Tag,
    /// An untagged manifest, or a referrer whose subject is gone.
    Manifest,
    /// A repository's link to a blob no manifest of that repository references.
    Link,
    /// A blob no repository links: its record and file.
    Blob,
    /// A file under blobs/ without a record (left by a crash).
    OrphanFile,
    /// A repository with nothing left in it.
    Repository,
    /// An upload session idle for longer than the delay.
    Upload,
}

impl GcKind {
    pub fn name(self) -> &'static str {
        match self {
            GcKind::Tag => "tag",
            GcKind::Manifest => "manifest",
            GcKind::Link => "link",
            GcKind::Blob => "blob",
            GcKind::OrphanFile => "orphan-file",
            GcKind::Repository => "repository",
            GcKind::Upload => "upload",
        }
    }
}

/// One deletion, done or (dry run) only planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcAction {
    pub kind: GcKind,
    /// The repository, for tags, manifests, links and repositories.
    pub repo: Option<String>,
    /// Tag, digest, upload id or file name.
    pub what: String,
    /// Why it is garbage, in a few words ("untagged", "subject missing", "policy", ...).
    pub reason: &'static str,
    /// Bytes this frees (blobs and orphan files: the file; manifests: their bytes).
    pub bytes: u64,
    /// False when only reported (dry run).
    pub performed: bool,
}

/// What a pass did.
#[derive(Clone, Debug, Default)]
pub struct GcReport {
    pub actions: Vec<GcAction>,
    /// Repositories visited (a full pass visits all of them).
    pub repos_visited: u64,
    /// Blob records examined by the sweep.
    pub blobs_examined: u64,
    pub full: bool,
    /// Repositories or blobs the pass had to leave alone (fail closed), with why.
    pub errors: Vec<String>,
    /// Whether it ran, or another node's pass held the registry's GC lease.
    pub run: GcRun,
}

impl GcReport {
    /// Deletions performed of `kind`.
    pub fn performed(&self, kind: GcKind) -> u64 {
        self.actions
            .iter()
            .filter(|action| action.kind == kind && action.performed)
            .count() as u64
    }

    /// Bytes freed on disk (blob files and orphan files removed).
    pub fn bytes_freed(&self) -> u64 {
        self.actions
            .iter()
            .filter(|action| {
                action.performed && matches!(action.kind, GcKind::Blob | GcKind::OrphanFile)
            })
            .map(|action| action.bytes)
            .sum()
    }
}
