//! The trust service, shared by the API (uploads, pushes), sync and the re-verification
//! worker: the trust store loaded from the index, and every way a verdict is made.
//!
//! Rules:
//! - The store in memory is a snapshot of the index's (`arc_swap`): replaced after each
//!   change, read without a lock.
//! - Verdict-making is serialised by one async lock (`judging`): a store change, a pushed
//!   signature's judgement and a pass never interleave, so a verdict is always made against
//!   the store generation it records. A store change re-judges every signature and commits
//!   with them in one batch (the engine's `change_trust`).
//! - Judging reads blobs and does public-key cryptography: it runs on the blocking pool,
//!   never on a shard's thread.
//! - A failure to judge a pushed signature never fails the push: it is logged, and the next
//!   pass (which makes every missing or stale verdict) judges it.
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;
use berth_storage::oci::{Digest, RepoName};
use berth_storage::search::signed_by_tag;
use berth_storage::trust::{
    SignatureManifest, SignatureRecord, TrustChange, TrustKind, TrustMaterial,
};
use berth_storage::{Engine, StorageError};
use berth_trust::{CosignKey, StoreType, TrustStore, TrustedCertificate};

use super::judge::{self, Tools};
use crate::config::TrustConfig;

/// The trust store as loaded from the index.
pub struct Loaded {
    pub generation: u64,
    pub store: TrustStore,
    /// Every entry as stored (for listing), ordered by kind and id.
    pub materials: Vec<TrustMaterial>,
}

/// Verdict counts by tool and result, for the metrics.
#[derive(Default)]
pub struct Counts {
    /// `[cosign, notation] x [trusted, untrusted]`.
    verified: [[AtomicU64; 2]; 2],
    /// Re-verification passes finished.
    pub passes: AtomicU64,
}

impl Counts {
    fn record(&self, record: &SignatureRecord) {
        for layer in &record.layers {
            let tool = usize::from(layer.tool == "notation");
            let result = usize::from(!layer.trusted);
            self.verified[tool][result].fetch_add(1, Relaxed);
        }
    }

    /// `(tool, result, count)` for each combination.
    pub fn verified(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::with_capacity(4);
        for (tool_index, tool) in ["cosign", "notation"].into_iter().enumerate() {
            for (result_index, result) in ["trusted", "untrusted"].into_iter().enumerate() {
                let count = self.verified[tool_index][result_index].load(Relaxed);
                out.push((tool, result, count));
            }
        }
        out
    }
}

/// `extensions.trust` at run time.
pub struct Trust {
    engine: Arc<Engine>,
    pub tools: Tools,
    pub interval: std::time::Duration,
    loaded: ArcSwap<Loaded>,
    judging: tokio::sync::Mutex<()>,
    pub counts: Counts,
    /// The earliest time a trusted verdict lapses (Unix seconds; `i64::MAX`: none known).
    /// The worker re-judges then.
    pub next_expiry: AtomicI64,
}

/// Why a trust change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("judging signatures failed: {0}")]
    Judging(String),
}

/// Builds the in-memory store from stored entries; an entry that no longer parses (written
/// by another berth version) is skipped with a warning.
fn build_store(materials: &[TrustMaterial]) -> TrustStore {
    let mut store = TrustStore::default();
    for material in materials {
        let loaded = match material.kind {
            TrustKind::Cosign => {
                CosignKey::from_pem(&material.bytes).map(|key| store.cosign.push(key))
            }
            kind => TrustedCertificate::from_der(store_type(kind), &material.bytes)
                .map(|certificate| store.certificates.push(certificate)),
        };
        if let Err(error) = loaded {
            tracing::warn!(component = "trust", id = %material.id, %error, "stored trust entry skipped");
        }
    }
    store
}

/// The notation trust-store type of a certificate entry.
pub fn store_type(kind: TrustKind) -> StoreType {
    match kind {
        TrustKind::SigningAuthority => StoreType::SigningAuthority,
        TrustKind::Tsa => StoreType::Tsa,
        TrustKind::Ca | TrustKind::Cosign => StoreType::Ca,
    }
}

impl Trust {
    /// `None` when `extensions.trust` verifies nothing.
    pub async fn open(
        config: &TrustConfig,
        engine: &Arc<Engine>,
    ) -> Result<Option<Arc<Trust>>, StorageError> {
        if !config.active() {
            return Ok(None);
        }
        let (generation, materials) = engine.trust_store().await?;
        let store = build_store(&materials);
        Ok(Some(Arc::new(Trust {
            engine: engine.clone(),
            tools: Tools {
                cosign: config.cosign,
                notation: config.notation,
            },
            interval: config.interval,
            loaded: ArcSwap::from_pointee(Loaded {
                generation,
                store,
                materials,
            }),
            judging: tokio::sync::Mutex::new(()),
            counts: Counts::default(),
            next_expiry: AtomicI64::new(i64::MAX),
        })))
    }

    pub fn loaded(&self) -> Arc<Loaded> {
        self.loaded.load_full()
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    fn note_expiry(&self, record: &SignatureRecord) {
        if let Some(expiry) = record.next_expiry() {
            self.next_expiry.fetch_min(expiry, Relaxed);
        }
    }

    /// Judges `signatures` against `loaded` on the blocking pool.
    async fn judge_all(
        &self,
        signatures: Vec<SignatureManifest>,
        loaded: Arc<Loaded>,
    ) -> Result<Vec<(SignatureManifest, SignatureRecord)>, ChangeError> {
        let engine = self.engine.clone();
        let tools = self.tools;
        let judged = tokio::task::spawn_blocking(move || {
            crate::runtime::blocking::block_on(async {
                let mut judged = Vec::with_capacity(signatures.len());
                for signature in signatures {
                    let record = judge::judge_stored(
                        &engine,
                        &signature,
                        &loaded.store,
                        loaded.generation,
                        tools,
                    )
                    .await?;
                    if let Some(record) = record {
                        judged.push((signature, record));
                    }
                }
                Ok::<_, StorageError>(judged)
            })
        })
        .await
        .map_err(|error| ChangeError::Judging(error.to_string()))??;
        for (_, record) in &judged {
            self.counts.record(record);
            self.note_expiry(record);
        }
        Ok(judged)
    }

    /// Adds or removes a trust-store entry and re-judges every signature against the changed
    /// store, in one commit. `Ok(false)`: nothing changed (already there / not there).
    pub async fn change(&self, change: TrustChange) -> Result<bool, ChangeError> {
        let _judging = self.judging.lock().await;
        let current = self.loaded();
        let mut materials = current.materials.clone();
        match &change {
            TrustChange::Add(material) => {
                if materials
                    .iter()
                    .any(|m| m.kind == material.kind && m.id == material.id)
                {
                    return Ok(false);
                }
                materials.push(material.clone());
                materials.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
            }
            TrustChange::Remove(kind, id) => {
                let before = materials.len();
                materials.retain(|m| !(m.kind == *kind && &m.id == id));
                if materials.len() == before {
                    return Ok(false);
                }
            }
        }
        let next = Arc::new(Loaded {
            generation: current.generation + 1,
            store: build_store(&materials),
            materials,
        });
        let signatures = self.engine.signature_manifests().await?;
        let verdicts = self.judge_all(signatures, next.clone()).await?;
        let Some(generation) = self.engine.change_trust(&change, verdicts).await? else {
            return Ok(false);
        };
        let (stored_generation, materials) = self.engine.trust_store().await?;
        debug_assert_eq!(stored_generation, generation);
        self.loaded.store(Arc::new(Loaded {
            generation,
            store: build_store(&materials),
            materials,
        }));
        Ok(true)
    }

    /// Judges the manifest `digest` just stored in `repo` under `tags` if it is a signature
    /// manifest (a cosign signature tag among `tags`, or a signature referrer of `subject`).
    /// Never fails: a failure is logged for the next pass to repair.
    pub async fn judge_pushed(
        &self,
        repo: &RepoName,
        digest: &Digest,
        subject: Option<&Digest>,
        tags: &[&str],
    ) {
        let signed = match subject {
            Some(subject) => Some(subject.clone()),
            None => tags
                .iter()
                .find_map(|tag| signed_by_tag(tag))
                .and_then(|signed| signed.parse().ok()),
        };
        let Some(signed) = signed else {
            return;
        };
        let signature = SignatureManifest {
            repo: repo.clone(),
            digest: digest.clone(),
            subject: signed,
        };
        let _judging = self.judging.lock().await;
        let outcome = async {
            let judged = self.judge_all(vec![signature], self.loaded()).await?;
            self.engine.put_signature_verdicts(judged, &[]).await?;
            Ok::<_, ChangeError>(())
        };
        if let Err(error) = outcome.await {
            tracing::warn!(component = "trust", repository = %repo, %digest, %error, "signature not judged; the next pass will");
        }
    }

    /// One pass: judges every signature whose verdict is missing, made against an older
    /// store, or (with `full`, or once lapsed) every one; forgets verdicts of signatures that
    /// are gone. Returns how many were judged.
    pub async fn pass(&self, full: bool) -> Result<usize, ChangeError> {
        let _judging = self.judging.lock().await;
        let loaded = self.loaded();
        let now = judge::now_unix();
        let mut verdicts = self.engine.signature_verdicts().await?;
        self.next_expiry.store(i64::MAX, Relaxed);
        let mut due = Vec::new();
        for signature in self.engine.signature_manifests().await? {
            let key = (signature.repo.clone(), signature.digest.clone());
            let stale = match verdicts.remove(&key) {
                None => true,
                Some(record) => {
                    let stale = full
                        || record.generation != loaded.generation
                        || record.next_expiry().is_some_and(|expiry| expiry <= now);
                    if !stale {
                        // Kept as it is: its expiry still schedules the worker.
                        self.note_expiry(&record);
                    }
                    stale
                }
            };
            if stale {
                due.push(signature);
            }
        }
        let gone: Vec<(RepoName, Digest)> = verdicts.into_keys().collect();
        let judged = self.judge_all(due, loaded).await?;
        let count = judged.len();
        self.engine.put_signature_verdicts(judged, &gone).await?;
        self.counts.passes.fetch_add(1, Relaxed);
        Ok(count)
    }
}
