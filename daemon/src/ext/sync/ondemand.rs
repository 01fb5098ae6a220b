//! On-demand sync (pull-through): a manifest or blob a client asks for that is not stored
//! yet is fetched from the first on-demand upstream whose `content` admits the repository,
//! stored, and served.
//!
//! Rules:
//! * Manifests: a miss fetches the manifest (only it: the children of an index and the
//!   blobs come when asked for, so a multi-platform pull fetches one platform), checks it
//!   against the digest asked for or the upstream's `Docker-Content-Digest`, and stores it
//!   as mirrored. A tag served locally is revalidated in the background once
//!   `manifestCheckInterval` has passed since its last check (stale-while-revalidate); a
//!   digest is content-addressed and never rechecked. An upstream that is down changes
//!   nothing: what is stored is served.
//! * Blobs: only a blob that a stored manifest of the repository references is fetched
//!   (download.rs): one download per (repository, digest), hashed and written on sync's
//!   runtime, committed only if the digest verifies. Every client GET streams from it as it
//!   arrives; a HEAD or a Range request waits for the commit, then is served from the store.
//! * Single flight: one fetch per (repository, reference) for manifests and per
//!   (repository, digest) for blobs, whatever the number of clients.
//! * All upstream I/O runs on sync's own runtime (`Upstream` does that).
mod download;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use berth_storage::oci::{Digest, Reference, RepoName};
use berth_storage::{Engine, StorageError};
use tokio::sync::watch;

pub use download::BlobStream;
use download::{Download, End, Opened};

use super::registry::Registry;
use super::signed::{self, manifest_subject, Admission};
use super::upstream::{UpstreamBlob, UpstreamError};
use crate::ext::trust::{judge, Trust};
use berth_storage::oci::Algorithm;
use berth_storage::search::signed_by_tag;

/// Why an on-demand fetch gave up (the client then gets what a miss gets).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("upstream: {0}")]
    Upstream(#[from] UpstreamError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("upstream sent a manifest whose digest is {actual}, not {expected}")]
    DigestMismatch { expected: String, actual: String },
    #[error("staged blob: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Download(String),
}

/// Manifests in flight ("repo\0reference"), each with a channel that says "done".
type Flights = Mutex<HashMap<String, watch::Receiver<bool>>>;

/// The blob downloads in flight, and how many have left the table (each only after its
/// commit, download.rs `Settle`): a count unchanged across an index read means no download
/// stored anything meanwhile.
#[derive(Default)]
struct InFlight {
    by_key: HashMap<String, Arc<Download>>,
    left: u64,
}

pub struct OnDemand {
    registries: Vec<Registry>,
    engine: Arc<Engine>,
    /// `extensions.trust`: judges synced signatures and `onlySigned`'s upstream ones.
    trust: Option<Arc<Trust>>,
    /// The runtime background revalidations run on.
    runtime: tokio::runtime::Handle,
    manifests: Flights,
    /// Blob downloads in flight ("repo\0digest").
    downloads: Mutex<InFlight>,
    /// "repo:tag" -> when upstream was last asked about it.
    checked: Mutex<HashMap<String, Instant>>,
}

/// The leader of a flight: dropping it (done, failed or cancelled) wakes the followers.
pub struct FlightGuard {
    owner: Arc<OnDemand>,
    key: String,
    _done: watch::Sender<bool>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.owner
            .manifests
            .lock()
            .expect("flight table lock is never poisoned")
            .remove(&self.key);
    }
}

enum Flight {
    Leader(FlightGuard),
    Follower(watch::Receiver<bool>),
}

impl OnDemand {
    fn join(self: &Arc<Self>, key: String) -> Flight {
        let mut table = self
            .manifests
            .lock()
            .expect("flight table lock is never poisoned");
        if let Some(receiver) = table.get(&key) {
            return Flight::Follower(receiver.clone());
        }
        let (sender, receiver) = watch::channel(false);
        table.insert(key.clone(), receiver);
        Flight::Leader(FlightGuard {
            owner: Arc::clone(self),
            key,
            _done: sender,
        })
    }
}

/// Waits until the leader's guard is dropped.
async fn wait(mut receiver: watch::Receiver<bool>) {
    while receiver.changed().await.is_ok() {}
}

/// How many times a follower whose leader failed tries again itself.
const ATTEMPTS: usize = 3;

impl OnDemand {
    pub fn new(
        registries: Vec<Registry>,
        engine: Arc<Engine>,
        trust: Option<Arc<Trust>>,
        runtime: tokio::runtime::Handle,
    ) -> OnDemand {
        OnDemand {
            registries,
            engine,
            trust,
            runtime,
            manifests: Mutex::default(),
            downloads: Mutex::default(),
            checked: Mutex::default(),
        }
    }

    /// The on-demand registries that admit `repo`, with the upstream repository name.
    fn sources(&self, repo: &RepoName) -> impl Iterator<Item = (&Registry, String)> + '_ {
        let name = repo.as_str().to_owned();
        self.registries
            .iter()
            .filter(|registry| registry.on_demand)
            .filter_map(move |registry| {
                let upstream = registry.content.upstream_repo(&name)?;
                Some((registry, upstream))
            })
    }

    /// Every configured registry (on demand or not).
    pub fn registries(&self) -> &[Registry] {
        &self.registries
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn trust(&self) -> Option<&Trust> {
        self.trust.as_deref()
    }

    /// The sync status API's document.
    pub fn status(&self) -> serde_json::Value {
        super::registry::status(&self.registries)
    }

    /// True if some on-demand registry mirrors `repo`.
    pub fn covers(&self, repo: &RepoName) -> bool {
        self.sources(repo).next().is_some()
    }

    /// Makes sure the manifest `reference` names in `repo` is stored, fetching it upstream on
    /// a miss. Ok(false): no upstream has it (or none admits it).
    pub async fn fetch_manifest(
        self: &Arc<Self>,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<bool, SyncError> {
        let key = format!("{repo}\0{reference}");
        for _ in 0..ATTEMPTS {
            if self.engine.get_manifest(repo, reference).await?.is_some() {
                return Ok(true);
            }
            match self.join(key.clone()) {
                Flight::Follower(done) => wait(done).await,
                Flight::Leader(_guard) => return self.fetch_manifest_now(repo, reference).await,
            }
        }
        Ok(self.engine.get_manifest(repo, reference).await?.is_some())
    }

    async fn fetch_manifest_now(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<bool, SyncError> {
        let mut last_error = None;
        for (registry, upstream_repo) in self.sources(repo) {
            if let Reference::Tag(tag) = reference {
                if !registry.content.admits_tag(&upstream_repo, tag.as_str()) {
                    continue;
                }
            }
            let reference_text = reference.to_string();
            let fetch = registry
                .upstream
                .manifest(&upstream_repo, &reference_text, false);
            let fetched = match tokio::time::timeout(registry.sync_timeout, fetch).await {
                Ok(fetched) => fetched,
                Err(_) => Err(UpstreamError::Protocol(format!(
                    "no manifest within syncTimeout ({:?})",
                    registry.sync_timeout
                ))),
            };
            let manifest = match fetched {
                Ok(Some(manifest)) => manifest,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(component = "sync", repository = %repo, %reference, %error, "upstream manifest fetch failed");
                    registry.failed(&error);
                    last_error = Some(error);
                    continue;
                }
            };
            if let (Reference::Tag(_), Some(expected)) = (reference, &manifest.digest) {
                let actual = Digest::of(expected.algorithm(), &manifest.bytes);
                if actual != *expected {
                    let error = SyncError::DigestMismatch {
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    };
                    registry.failed(&error);
                    return Err(error);
                }
            }
            // Checked as of now, before it is visible: a hit right after the store must
            // not start a revalidation of what was just fetched.
            if let Reference::Tag(tag) = reference {
                self.mark_checked(repo, tag.as_str());
            }
            let digest = match reference {
                Reference::Digest(digest) => digest.clone(),
                Reference::Tag(_) => Digest::of(Algorithm::Sha256, &manifest.bytes),
            };
            let mut signatures = Vec::new();
            if registry.only_signed {
                let admission = signed::admit(
                    &self.engine,
                    self.trust(),
                    registry,
                    &upstream_repo,
                    signed::Fetched {
                        repo,
                        reference,
                        media_type: &manifest.media_type,
                        digest: &digest,
                        bytes: &manifest.bytes,
                    },
                )
                .await?;
                match admission {
                    Admission::Signed(found) => signatures = found,
                    Admission::Exempt => {}
                    Admission::Refused(why) => {
                        registry.refused_unsigned();
                        tracing::warn!(component = "sync", repository = %repo, %reference, why, "not synced: onlySigned");
                        continue;
                    }
                }
            }
            let tag = reference.as_tag().map(|tag| tag.as_str().to_owned());
            let by_tag = tag
                .as_deref()
                .is_some_and(|tag| signed_by_tag(tag).is_some());
            match (&self.trust, judge::plan(&manifest.bytes, by_tag)) {
                // A signature is stored whole (its layers are small) and judged at once.
                (Some(trust), Some(_)) => {
                    let subject = manifest_subject(&manifest.bytes);
                    signed::store_small(
                        &self.engine,
                        registry,
                        &upstream_repo,
                        repo,
                        reference,
                        &manifest.media_type,
                        manifest.bytes,
                    )
                    .await?;
                    let tags: Vec<&str> = tag.as_deref().into_iter().collect();
                    trust
                        .judge_pushed(repo, &digest, subject.as_ref(), &tags)
                        .await;
                }
                _ => {
                    self.engine
                        .put_manifest_mirrored(
                            repo,
                            reference,
                            Some(&manifest.media_type),
                            manifest.bytes,
                        )
                        .await?;
                }
            }
            signed::store(
                &self.engine,
                self.trust(),
                registry,
                &upstream_repo,
                repo,
                &digest,
                signatures,
            )
            .await?;
            registry.succeeded(false);
            tracing::info!(component = "sync", repository = %repo, %reference, "manifest synced on demand");
            return Ok(true);
        }
        match last_error {
            Some(error) => Err(error.into()),
            None => Ok(false),
        }
    }

    /// True if `key` was last checked longer than `interval` ago (or never); it is then
    /// marked checked now, so that concurrent hits start one check, not many.
    fn due(&self, key: String, interval: std::time::Duration) -> bool {
        let mut checked = self
            .checked
            .lock()
            .expect("check table lock is never poisoned");
        if checked.get(&key).is_some_and(|at| at.elapsed() < interval) {
            return false;
        }
        checked.insert(key, Instant::now());
        true
    }

    fn mark_checked(&self, repo: &RepoName, tag: &str) {
        self.checked
            .lock()
            .expect("check table lock is never poisoned")
            .insert(format!("{repo}:{tag}"), Instant::now());
    }

    /// A tag of `repo` was served from the store: if its last upstream check is older than
    /// the registry's `manifestCheckInterval`, check again in the background and store what
    /// upstream names now. The client is never kept waiting for this.
    pub fn revalidate(self: &Arc<Self>, repo: &RepoName, tag: &str, local: &Digest) {
        let Some((registry, _)) = self.sources(repo).next() else {
            return;
        };
        if !self.due(format!("{repo}:{tag}"), registry.check_interval) {
            return;
        }
        let (this, repo, tag, local) = (
            Arc::clone(self),
            repo.clone(),
            tag.to_owned(),
            local.clone(),
        );
        self.runtime.spawn(async move {
            if let Err(error) = this.recheck(&repo, &tag, &local).await {
                tracing::warn!(component = "sync", repository = %repo, tag, %error, "revalidation failed; serving the stored manifest");
            }
        });
    }

    async fn recheck(&self, repo: &RepoName, tag: &str, local: &Digest) -> Result<(), SyncError> {
        for (registry, upstream_repo) in self.sources(repo) {
            let Some(head) = registry
                .upstream
                .manifest(&upstream_repo, tag, true)
                .await?
            else {
                continue;
            };
            if head.digest.as_ref() == Some(local) {
                return Ok(());
            }
            let reference: Reference = Reference::Tag(tag.parse().map_err(|_| {
                SyncError::Upstream(UpstreamError::Protocol(format!("bad tag {tag}")))
            })?);
            // Moved upstream (or no digest header to compare): fetch it again.
            self.fetch_manifest_now(repo, &reference).await?;
            return Ok(());
        }
        Ok(())
    }

    /// A referrers list of `subject` in `repo` was asked for: answered from the store at
    /// once; here, at most once per `manifestCheckInterval`, the upstream's list is fetched
    /// in the background and every referrer not stored yet is synced (as a mirrored
    /// manifest, so it lists under its subject from then on).
    pub fn refresh_referrers(self: &Arc<Self>, repo: &RepoName, subject: &Digest) {
        let Some((registry, _)) = self.sources(repo).next() else {
            return;
        };
        if !self.due(
            format!("{repo}@referrers:{subject}"),
            registry.check_interval,
        ) {
            return;
        }
        let (this, repo, subject) = (Arc::clone(self), repo.clone(), subject.clone());
        self.runtime.spawn(async move {
            if let Err(error) = this.sync_referrers(&repo, &subject).await {
                tracing::warn!(component = "sync", repository = %repo, %subject, %error, "referrers refresh failed");
            }
        });
    }

    async fn sync_referrers(
        self: &Arc<Self>,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<(), SyncError> {
        for (registry, upstream_repo) in self.sources(repo) {
            let Some(list) = registry.upstream.referrers(&upstream_repo, subject).await? else {
                continue;
            };
            let index: serde_json::Value = serde_json::from_slice(&list).map_err(|error| {
                UpstreamError::Protocol(format!("referrers of {subject}: {error}"))
            })?;
            let digests = index["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|descriptor| descriptor["digest"].as_str()?.parse::<Digest>().ok());
            for digest in digests {
                self.fetch_manifest(repo, &Reference::Digest(digest))
                    .await?;
            }
            return Ok(());
        }
        Ok(())
    }

    /// For a blob GET that missed: if a stored manifest of `repo` references `digest`, the
    /// way to serve it. `stream_to_client`: the caller can stream (a plain GET); otherwise
    /// this returns once the blob is stored.
    pub async fn blob(
        self: &Arc<Self>,
        repo: &RepoName,
        digest: &Digest,
        stream_to_client: bool,
    ) -> Result<BlobSource, SyncError> {
        if !self.covers(repo) || !self.engine.blob_referenced(repo, digest).await? {
            return Ok(BlobSource::Unknown);
        }
        if self.engine.stat_blob(repo, digest).await?.is_some() {
            return Ok(BlobSource::Stored);
        }
        // Stored for another repository already: link it, no upstream request.
        if self.engine.adopt_blob(repo, digest).await? {
            return Ok(BlobSource::Stored);
        }
        let Some(download) = self.download(repo, digest).await? else {
            return Ok(BlobSource::Stored);
        };
        if stream_to_client {
            return Ok(match download::open(download).await {
                Opened::Stream(stream) => BlobSource::Stream(Box::new(stream)),
                Opened::Missing => BlobSource::Unknown,
                Opened::Failed(reason) => return Err(SyncError::Download(reason)),
            });
        }
        match download.settled().await {
            End::Missing => Ok(BlobSource::Unknown),
            End::Failed(reason) => Err(SyncError::Download(reason)),
            _ => Ok(BlobSource::Stored),
        }
    }

    /// The download of `digest` into `repo` in flight, started now if there is none; None
    /// if the blob is stored by now.
    async fn download(
        self: &Arc<Self>,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<Arc<Download>>, SyncError> {
        let key = format!("{repo}\0{digest}");
        let lock = || {
            self.downloads
                .lock()
                .expect("download table lock is never poisoned")
        };
        let (import, download) = loop {
            let left = {
                let table = lock();
                if let Some(download) = table.by_key.get(&key) {
                    return Ok(Some(Arc::clone(download)));
                }
                table.left
            };
            // A download leaves the table only after its commit: a miss before this read, a
            // blob not stored, then a miss with no download gone from the table meanwhile
            // mean that no download of it is running. One gone: look again.
            if self.engine.stat_blob(repo, digest).await?.is_some() {
                return Ok(None);
            }
            let mut table = lock();
            if let Some(download) = table.by_key.get(&key) {
                return Ok(Some(Arc::clone(download)));
            }
            if table.left != left {
                continue;
            }
            let import = self.engine.begin_import(digest)?;
            let download = Arc::new(Download::new(import.reader()));
            table.by_key.insert(key.clone(), Arc::clone(&download));
            break (import, download);
        };
        let settle = download::Settle::new(Arc::clone(self), key, Arc::clone(&download));
        self.runtime.spawn(download::drive(
            settle,
            repo.clone(),
            digest.clone(),
            import,
        ));
        Ok(Some(download))
    }

    async fn open_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<(usize, UpstreamBlob)>, SyncError> {
        let mut last_error = None;
        for (registry, upstream_repo) in self.sources(repo) {
            match registry.upstream.blob(&upstream_repo, digest).await {
                Ok(Some(blob)) => {
                    let index = self
                        .registries
                        .iter()
                        .position(|candidate| std::ptr::eq(candidate, registry))
                        .expect("the registry is one of ours");
                    return Ok(Some((index, blob)));
                }
                Ok(None) => continue,
                Err(error) => {
                    registry.failed(&error);
                    last_error = Some(error);
                }
            }
        }
        match last_error {
            Some(error) => Err(error.into()),
            None => Ok(None),
        }
    }
}

/// What a blob GET that missed should do.
pub enum BlobSource {
    /// Not mirrored, not referenced, or no upstream has it: the ordinary 404.
    Unknown,
    /// Now in the store: serve it from there.
    Stored,
    /// Stream it from the download in progress.
    Stream(Box<BlobStream>),
}
