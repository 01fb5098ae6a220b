//! One GC pass (`Engine::gc`) and its per-repository part: retention on tags, untagged
//! manifests and orphaned referrers, unreferenced links, the empty repository.
//!
//! Rules: a repository is decided from one consistent view taken under its repository lock
//! (no manifest PUT or delete runs meanwhile) and written as one synced batch under its link
//! lock held exclusively (no finish or mount links into it meanwhile). Manifests are decided
//! by simulation: a candidate leaves the live set and the loop runs again, so an untagged
//! index takes its children along in the same pass and a dry run reports the same cascade.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use super::{GcAction, GcKind, GcOptions, GcReport, GcRun, PassLease, RepoRules, TagInfo};
use crate::engine::{Engine, Inner};
use crate::error::StorageError;
use crate::gc::pulls::Pulls;
use crate::index::{self, Batch, Cf, ManifestHeader, TagRecord};
use crate::oci::RepoName;

/// A manifest as the pass sees it.
struct Manifest {
    pushed_ms: u64,
    /// Stored by sync (a cache entry): untagged, it ages from its last pull, not its fetch.
    mirrored: bool,
    subject: Option<String>,
    size: u64,
    /// (digest, is a child manifest) of everything it references.
    references: Vec<(String, bool)>,
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Engine {
    /// Remembers a pull of manifest `digest` in `repo` for retention (in memory; written to
    /// the index by the next GC pass or `flush_pulls`).
    pub fn record_pull(&self, repo: &RepoName, digest: &crate::oci::Digest) {
        self.inner
            .gc
            .pulls
            .record(repo.as_str(), digest, index::now_ms());
    }

    /// Writes the pulls recorded in memory into the index (at shutdown). Blocking (a synced
    /// write).
    pub async fn flush_pulls(&self) -> Result<(), StorageError> {
        self.inner.writable()?;
        self.inner.gc.pulls.flush(&self.inner).await
    }

    /// One GC pass (see the module docs of gc/ and the contract in DESIGN.md). Long and
    /// blocking (file deletes, synced writes): await it on a thread of its own (its own
    /// runtime), never on a shard. Problems with single repositories or blobs are reported
    /// in `GcReport::errors` and the pass goes on; only an index failure that stops the whole
    /// pass is an `Err`. On a shared index a pass runs only while it holds the registry's GC
    /// lease (lease.rs, `GcReport::run`); a dry run changes nothing and needs none.
    pub async fn gc(&self, options: &GcOptions) -> Result<super::GcReport, StorageError> {
        let inner = &self.inner;
        inner.writable()?;
        let _one_at_a_time = inner.gc.running.lock().await;
        let full = options.full || !inner.gc.first_done.load(Ordering::Acquire);
        let mut report = GcReport {
            full,
            ..GcReport::default()
        };
        // Even when another node collects: its retention then sees this node's pulls.
        inner.gc.pulls.flush(inner).await?;
        let mut lease = None;
        if !options.dry_run {
            match PassLease::take(inner, options.lease).await? {
                Ok(taken) => lease = Some(taken),
                Err(skipped) => {
                    report.run = skipped;
                    return Ok(report);
                }
            }
        }
        let result = self.run_pass(options, full, &mut lease, &mut report).await;
        // After a failed pass too, so that other nodes need not wait for it to expire; the
        // pass's own error is the one reported.
        let released = match lease {
            Some(lease) => lease.release(inner).await,
            None => Ok(()),
        };
        result.and(released)?;
        Ok(report)
    }

    async fn run_pass(
        &self,
        options: &GcOptions,
        full: bool,
        lease: &mut Option<PassLease>,
        report: &mut GcReport,
    ) -> Result<(), StorageError> {
        let inner = &self.inner;
        let now = index::now_ms();
        let repos = self.repos_to_visit(options, full, now).await?;
        for (at, repo) in repos.iter().enumerate() {
            if let Some(holder) = keep(lease, inner).await? {
                // This node's next pass visits what this one did not.
                for unvisited in &repos[at..] {
                    inner.usage.gc_dirty.mark(unvisited);
                }
                report.run = GcRun::Stopped { holder };
                return Ok(());
            }
            report.repos_visited += 1;
            if let Err(error) = self.gc_repo(repo, options, now, report).await {
                // Fail closed for this repository (nothing of it was written), go on.
                report.errors.push(format!("{repo}: {error}"));
                inner.gc.mark_pending(repo.as_str(), now);
            }
        }
        if let Some(holder) = self.sweep_blobs(options, full, lease, report).await? {
            report.run = GcRun::Stopped { holder };
            return Ok(());
        }
        if let Some(holder) = keep(lease, inner).await? {
            report.run = GcRun::Stopped { holder };
            return Ok(());
        }
        if full {
            self.sweep_orphan_files(options, now, report).await?;
        }
        if !options.dry_run {
            for id in self.expire_uploads(options.delay).await? {
                report.actions.push(GcAction {
                    kind: GcKind::Upload,
                    repo: None,
                    what: id,
                    reason: "idle",
                    bytes: 0,
                    performed: true,
                });
            }
        }
        if full && !options.dry_run {
            inner.gc.first_done.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Repositories this pass looks at: every one when `full`; else those changed since the
    /// last pass, those whose garbage has come of age, and those a tag-filtering policy covers.
    async fn repos_to_visit(
        &self,
        options: &GcOptions,
        full: bool,
        now: u64,
    ) -> Result<Vec<RepoName>, StorageError> {
        let inner = &self.inner;
        let mut names: HashSet<String> = inner
            .usage
            .gc_dirty
            .take()
            .into_iter()
            .map(|repo| repo.as_str().to_owned())
            .collect();
        names.extend(inner.gc.take_due(now));
        let policy_filters = options
            .retention
            .as_ref()
            .is_some_and(|retention| retention.filters_any());
        if full || policy_filters {
            inner
                .index
                .visit(Cf::Repos, b"", None, |key, _| {
                    let name = String::from_utf8_lossy(key).into_owned();
                    let wanted = full
                        || options
                            .retention
                            .as_ref()
                            .is_some_and(|retention| retention.rules(&name).filters_tags);
                    if wanted {
                        names.insert(name);
                    }
                    Ok(true)
                })
                .await?;
        }
        let mut repos: Vec<RepoName> = names
            .into_iter()
            .filter_map(|name| name.parse().ok())
            .collect();
        repos.sort();
        Ok(repos)
    }

    async fn gc_repo(
        &self,
        repo: &RepoName,
        options: &GcOptions,
        now: u64,
        report: &mut GcReport,
    ) -> Result<(), StorageError> {
        let inner = &self.inner;
        let name = repo.as_str();
        let mut held = crate::lock::Held::default();
        held.take(&inner.index, &inner.locks, name, false).await?;
        let rules = options
            .retention
            .as_ref()
            .map_or_else(RepoRules::default, |retention| retention.rules(name));
        let prefix = index::prefix(&[name]);
        let mut batch = Batch::default();
        let mut actions = Vec::new();
        let mut due: Option<u64> = None;
        let mut remember = |at: u64| due = Some(due.map_or(at, |due: u64| due.min(at)));
        let policy_acts = !options.dry_run && !options.retention_dry_run;

        // Tags, and retention on them.
        let mut tags = Vec::new();
        inner
            .index
            .visit(Cf::Tags, &prefix, None, |key, value| {
                let tag = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                tags.push((tag, TagRecord::decode(value)?));
                Ok(true)
            })
            .await?;
        if rules.filters_tags {
            let retention = options
                .retention
                .as_ref()
                .expect("filters_tags has a policy");
            let mut infos = Vec::with_capacity(tags.len());
            for (tag, record) in &tags {
                let digest = record.digest.to_string();
                infos.push(TagInfo {
                    tag: tag.clone(),
                    pulled_ms: Pulls::last(&inner.index, name, &digest).await?,
                    digest,
                    pushed_ms: record.pushed_ms,
                });
            }
            let keep = retention.keep_tags(name, &infos, now);
            let mut kept = Vec::with_capacity(tags.len());
            for (index, (tag, record)) in tags.into_iter().enumerate() {
                if keep.get(index).copied().unwrap_or(true) {
                    kept.push((tag, record));
                    continue;
                }
                actions.push(action(
                    GcKind::Tag,
                    name,
                    &tag,
                    "retention policy",
                    0,
                    policy_acts,
                ));
                if policy_acts {
                    batch.delete(Cf::Tags, index::key(&[name, &tag]));
                } else if !options.dry_run {
                    // retention dry run: the tag stays, and so does what it reaches.
                    kept.push((tag, record));
                }
            }
            tags = kept;
        }
        let tagged: HashSet<String> = tags
            .iter()
            .map(|(_, record)| record.digest.to_string())
            .collect();

        // Manifests: what is still reachable, decided by simulation. Their references come
        // from `blob_refs` (written with each manifest), so no manifest is parsed here.
        let mut manifests = HashMap::new();
        inner
            .index
            .visit(Cf::Manifests, &prefix, None, |key, value| {
                let digest = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                let header = ManifestHeader::decode(value)?;
                manifests.insert(
                    digest,
                    Manifest {
                        pushed_ms: header.pushed_ms,
                        mirrored: header.mirrored,
                        subject: header.subject.as_ref().map(ToString::to_string),
                        size: (value.len() - header.body_at) as u64,
                        references: Vec::new(),
                    },
                );
                Ok(true)
            })
            .await?;
        inner
            .index
            .visit(Cf::BlobRefs, &prefix, None, |key, value| {
                let parts = index::split_key(key)?;
                let [_, referenced, referrer] = parts[..] else {
                    return Err(StorageError::Corrupt(format!(
                        "bad blob_refs key {:?}",
                        String::from_utf8_lossy(key)
                    )));
                };
                let child = index::RefKind::decode(value)? == index::RefKind::Manifest;
                match manifests.get_mut(referrer) {
                    Some(manifest) => manifest.references.push((referenced.to_owned(), child)),
                    // A reference from a manifest that is not stored: fail closed (fsck reports it).
                    None => {
                        return Err(StorageError::Corrupt(format!(
                            "blob_refs entry of a missing manifest {referrer}"
                        )))
                    }
                }
                Ok(true)
            })
            .await?;
        let manifest_delay = millis(options.manifest_delay);
        loop {
            let children: HashSet<&str> = manifests
                .values()
                .flat_map(|manifest| manifest.references.iter())
                .filter(|(_, child)| *child)
                .map(|(digest, _)| digest.as_str())
                .collect();
            let subjects: HashSet<&str> = manifests
                .values()
                .filter_map(|manifest| manifest.subject.as_deref())
                .collect();
            let mut doomed = Vec::new();
            for (digest, manifest) in &manifests {
                if tagged.contains(digest) || children.contains(digest.as_str()) {
                    continue;
                }
                let reason = match &manifest.subject {
                    Some(subject) if rules.delete_referrers && !manifests.contains_key(subject) => {
                        "subject missing"
                    }
                    None if rules.delete_untagged && !subjects.contains(digest.as_str()) => {
                        "untagged"
                    }
                    _ => continue,
                };
                // A mirrored manifest nothing holds (fetched by digest) stays while clients
                // pull it: it ages from its last pull.
                let since = match manifest.mirrored && reason == "untagged" {
                    true => Pulls::last(&inner.index, name, digest)
                        .await?
                        .map_or(manifest.pushed_ms, |pulled| pulled.max(manifest.pushed_ms)),
                    false => manifest.pushed_ms,
                };
                let of_age = since.saturating_add(manifest_delay);
                if now < of_age {
                    remember(of_age);
                    continue;
                }
                doomed.push((digest.clone(), reason));
            }
            if doomed.is_empty() {
                break;
            }
            for (digest, reason) in doomed {
                let manifest = manifests.remove(&digest).expect("doomed manifests exist");
                actions.push(action(
                    GcKind::Manifest,
                    name,
                    &digest,
                    reason,
                    manifest.size,
                    policy_acts,
                ));
                if policy_acts {
                    delete_manifest_records(&mut batch, name, &digest, &manifest);
                } else if !options.dry_run {
                    // retention dry run: it stays, and keeps what it references.
                    manifests.insert(digest, manifest);
                }
            }
            if !policy_acts && !options.dry_run {
                break;
            }
        }

        // Links no remaining manifest references, once older than the push grace. From here
        // on no finish or mount may link into this repository until the batch is written.
        held.take(&inner.index, &inner.links, name, false).await?;
        let referenced: HashSet<&str> = manifests
            .values()
            .flat_map(|manifest| manifest.references.iter())
            .filter(|(_, child)| !child)
            .map(|(digest, _)| digest.as_str())
            .collect();
        let delay = millis(options.delay);
        let mut links_left = 0u64;
        inner
            .index
            .visit(Cf::RepoBlobs, &prefix, None, |key, value| {
                let digest = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                if referenced.contains(digest.as_str()) {
                    links_left += 1;
                    return Ok(true);
                }
                let linked_ms = value.get(..8).map_or(0, |bytes| {
                    u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
                });
                let of_age = linked_ms.saturating_add(delay);
                if now < of_age {
                    remember(of_age);
                    links_left += 1;
                    return Ok(true);
                }
                actions.push(action(
                    GcKind::Link,
                    name,
                    &digest,
                    "unreferenced",
                    0,
                    !options.dry_run,
                ));
                if !options.dry_run {
                    index::unlink(&mut batch, name, &digest);
                }
                Ok(true)
            })
            .await?;
        let empty = manifests.is_empty() && tags.is_empty() && links_left == 0;
        if empty && inner.index.contains(Cf::Repos, name.as_bytes()).await? {
            actions.push(action(
                GcKind::Repository,
                name,
                name,
                "empty",
                0,
                !options.dry_run,
            ));
            if !options.dry_run {
                batch.delete(Cf::Repos, name.as_bytes().to_vec());
                if inner.index.postgres().is_some() {
                    crate::usage::drop_change_token(&mut batch, name);
                }
            }
        }
        if !options.dry_run && !batch.is_empty() {
            crate::search::refresh::refresh(
                &inner.index,
                name,
                &mut batch,
                crate::search::refresh::Mode::Incremental,
            )
            .await?;
            inner.index.write_held(batch, inner.commit, &held).await?;
            inner.usage.touch_usage(repo);
        }
        if let Some(due) = due {
            inner.gc.mark_pending(name, due);
        }
        report.actions.extend(actions);
        Ok(())
    }
}

/// Renews the pass's lease if it has one and it is due: `Some(holder)` when it was lost.
pub(super) async fn keep(
    lease: &mut Option<PassLease>,
    inner: &Inner,
) -> Result<Option<u64>, StorageError> {
    match lease {
        Some(lease) => lease.keep(inner).await,
        None => Ok(None),
    }
}

fn action(
    kind: GcKind,
    repo: &str,
    what: &str,
    reason: &'static str,
    bytes: u64,
    performed: bool,
) -> GcAction {
    GcAction {
        kind,
        repo: Some(repo.to_owned()),
        what: what.to_owned(),
        reason,
        bytes,
        performed,
    }
}

/// The records a deleted manifest leaves behind: its own, its referrer entry, its
/// references, its pull record (its tags are gone already: it is untagged).
fn delete_manifest_records(batch: &mut Batch, repo: &str, digest: &str, manifest: &Manifest) {
    batch.delete(Cf::Manifests, index::key(&[repo, digest]));
    batch.delete(Cf::Pulls, index::key(&[repo, digest]));
    if let Some(subject) = &manifest.subject {
        batch.delete(Cf::Referrers, index::key(&[repo, subject, digest]));
    }
    for (referenced, _) in &manifest.references {
        batch.delete(Cf::BlobRefs, index::key(&[repo, referenced, digest]));
    }
}
