//! The durable state beside the images that users would miss after a migration: stars and
//! bookmarks (userprefs), API keys, the trust store and its signature verdicts.
//!
//! Rules: each goes in through an engine call that writes one record set atomically and is
//! skipped when the destination has it already, so a rerun is harmless. API keys keep their
//! stored hash (the keys themselves are never known), so every key keeps working. Verdicts
//! are derived data: they are copied only when the destination's trust store ends up holding
//! exactly the source's entries (then they hold there too, at the destination's generation);
//! otherwise the daemon's trust pass judges the signatures again.
//!
//! Not copied (no engine call lists them, or they are not worth keeping): user groups (the
//! next login records them again), browser sessions and single sign-on logins in flight
//! (users log in again), pull times and counts (retention's `pulledWithin` starts afresh),
//! scrub results, open upload sessions, and search data (the destination builds its own).
use std::collections::BTreeSet;

use berth_storage::trust::{SignatureManifest, TrustChange};
use berth_storage::{Engine, StorageError};

/// Verdicts written per batch.
const VERDICT_BATCH: usize = 256;

/// What was copied and skipped of each kind.
#[derive(Debug, Default)]
pub(super) struct StateCounts {
    pub(super) prefs: super::Counts,
    pub(super) api_keys: super::Counts,
    pub(super) trust: super::Counts,
    pub(super) verdicts: super::Counts,
}

pub(super) async fn copy_state(src: &Engine, dst: &Engine) -> Result<StateCounts, StorageError> {
    let mut counts = StateCounts::default();
    for (user, pref, repo) in src.all_prefs().await? {
        if dst.has_pref(&user, &repo, pref).await? {
            counts.prefs.skipped += 1;
        } else {
            // Checked just above, and nothing else writes the destination: this sets it.
            dst.toggle_pref(&user, &repo, pref).await?;
            counts.prefs.copied += 1;
        }
    }
    for (hash, listed) in src.all_api_keys().await? {
        match dst.restore_api_key(hash, &listed).await? {
            true => counts.api_keys.copied += 1,
            false => counts.api_keys.skipped += 1,
        }
    }
    let (_, materials) = src.trust_store().await?;
    for material in &materials {
        match dst
            .change_trust(&TrustChange::Add(material.clone()), Vec::new())
            .await?
        {
            Some(_) => counts.trust.copied += 1,
            None => counts.trust.skipped += 1,
        }
    }
    let (generation, copied) = dst.trust_store().await?;
    let entries = |list: &[berth_storage::trust::TrustMaterial]| -> BTreeSet<(String, String)> {
        list.iter()
            .map(|material| (material.kind.as_str().to_owned(), material.id.clone()))
            .collect()
    };
    if entries(&materials[..]) != entries(&copied[..]) {
        return Ok(counts);
    }
    let mut batch = Vec::new();
    for ((repo, digest), mut record) in src.signature_verdicts().await? {
        let Ok(subject) = record.subject.parse() else {
            continue;
        };
        if dst.signature_verdict(&repo, &digest).await?.is_some() {
            counts.verdicts.skipped += 1;
            continue;
        }
        record.generation = generation;
        batch.push((
            SignatureManifest {
                repo,
                digest,
                subject,
            },
            record,
        ));
        counts.verdicts.copied += 1;
        if batch.len() == VERDICT_BATCH {
            dst.put_signature_verdicts(std::mem::take(&mut batch), &[])
                .await?;
        }
    }
    dst.put_signature_verdicts(batch, &[]).await?;
    Ok(counts)
}
