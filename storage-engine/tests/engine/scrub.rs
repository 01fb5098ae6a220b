//! `Engine::scrub` directly: a clean store verifies clean and records every blob; a flipped
//! bit, a truncation and a deleted file (or object, on the S3 suite) are each found with the right damage and mapped to
//! the tag that reaches them; a cancelled pass stops early; pacing holds a pass to its rate.

use std::sync::atomic::Ordering;
use std::time::Instant;

use berth_storage::oci::Reference;
use berth_storage::{Damage, Engine, IoBackendKind, ScrubOptions};
use bytes::Bytes;

use crate::{image_manifest, open, push_blob, repo, sha256, tag};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

async fn tagged_image(engine: &Engine, name: &str, config: &'static [u8], layer: &'static [u8]) {
    let repo = repo(name);
    push_blob(engine, &repo, config).await;
    push_blob(engine, &repo, layer).await;
    let manifest: Bytes = image_manifest(config, &[layer], None);
    engine
        .put_manifest(
            &repo,
            &Reference::Tag(tag("v1")),
            Some(OCI_MANIFEST),
            manifest,
            &[],
        )
        .await
        .expect("put manifest");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn scrub_finds_planted_damage_and_maps_it_to_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let runtime = runtime();
    runtime.block_on(async {
        tagged_image(&engine, "flip", b"config-flip", b"layer to flip").await;
        tagged_image(&engine, "cut", b"config-cut", b"layer to truncate").await;
        tagged_image(&engine, "gone", b"config-gone", b"layer to delete").await;
        tagged_image(&engine, "fine", b"config-fine", b"layer that stays").await;
    });
    let options = ScrubOptions::new(2, None);
    let clean = runtime
        .block_on(engine.scrub(&options, &|_, _| {}))
        .expect("pass");
    assert!(clean.damaged.is_empty(), "{:?}", clean.damaged);
    assert_eq!((clean.blobs_checked, clean.manifests_checked), (8, 4));
    assert!(clean.images.iter().all(|image| image.affected.is_none()));

    // Damage planted behind the engine's back: in the files, or in the bucket (S3 suite).
    let root = dir.path();
    runtime.block_on(async {
        let flip = sha256(b"layer to flip");
        let mut bytes = crate::stored_blob_bytes(&engine, &flip).await;
        bytes[0] ^= 0x80;
        crate::write_blob_bytes(&engine, root, &flip, &bytes).await;
        crate::write_blob_bytes(&engine, root, &sha256(b"layer to truncate"), b"layer").await;
        crate::remove_blob_bytes(&engine, root, &sha256(b"layer to delete")).await;
    });

    let report = runtime
        .block_on(engine.scrub(&options, &|_, _| {}))
        .expect("pass");
    let damage_of = |name: &str| {
        report
            .images
            .iter()
            .find(|image| image.repo.as_str() == name)
            .and_then(|image| image.affected.clone())
    };
    let (digest, damage) = damage_of("flip").expect("flip affected");
    assert_eq!(digest, sha256(b"layer to flip"));
    assert!(matches!(damage, Damage::Content { .. }), "{damage}");
    let (_, damage) = damage_of("cut").expect("cut affected");
    assert_eq!(
        damage,
        Damage::Size {
            expected: 17,
            actual: 5
        }
    );
    assert_eq!(damage_of("gone").map(|(_, d)| d), Some(Damage::Missing));
    assert_eq!(damage_of("fine"), None);
    assert_eq!(report.damaged.len(), 3);
    let last = runtime
        .block_on(engine.last_scrub_report())
        .expect("read")
        .expect("stored");
    let last: serde_json::Value = serde_json::from_slice(&last).expect("json");
    assert_eq!(last["damaged"].as_array().map(Vec::len), Some(3));
}

#[test]
fn a_cancelled_pass_stops_and_a_paced_pass_keeps_its_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let runtime = runtime();
    let name = repo("paced");
    let blobs: Vec<&'static [u8]> = (0..8)
        .map(|i| &*Box::leak(vec![i as u8; 64 * 1024].into_boxed_slice()))
        .collect();
    runtime.block_on(async {
        for blob in &blobs {
            push_blob(&engine, &name, blob).await;
        }
    });
    let cancelled = ScrubOptions::new(1, None);
    cancelled.cancel.store(true, Ordering::Relaxed);
    let report = runtime
        .block_on(engine.scrub(&cancelled, &|_, _| {}))
        .expect("pass");
    assert_eq!(report.blobs_checked, 8, "listed");
    let verified = engine
        .stats()
        .maintenance
        .scrub_blobs_verified
        .load(Ordering::Relaxed);
    assert_eq!(verified, 0, "a cancelled pass hashes nothing");
    // 512 KiB at 1 MiB/s: at least half a second (the pause comes after each blob).
    let started = Instant::now();
    let paced = ScrubOptions::new(2, Some(1024 * 1024));
    runtime
        .block_on(engine.scrub(&paced, &|_, _| {}))
        .expect("pass");
    assert!(
        started.elapsed().as_millis() >= 450,
        "{:?}",
        started.elapsed()
    );
}
