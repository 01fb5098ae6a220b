//! Search records: written with the manifest, moved with every tag change, removed with the
//! manifest, and always what fsck recomputes from tags and images.
use berth_storage::oci::Reference;
use berth_storage::search::{DigestRole, Platform, Pref};
use berth_storage::{Engine, IoBackendKind};
use bytes::Bytes;
use serde_json::json;

use crate::{index_manifest, open, push_blob, repo, sha256, tag};

/// fsck is clean, and the in-memory summaries (what listings read) equal the index's.
async fn assert_clean(engine: &Engine) {
    crate::assert_clean(engine).await;
    let mut listed = Vec::new();
    engine
        .visit_repo_metas(|name, meta| {
            listed.push((name, (*meta).clone()));
            true
        })
        .await
        .expect("visit");
    for (name, meta) in &listed {
        assert_eq!(
            engine.repo_meta(name).await.expect("read").as_ref(),
            Some(meta),
            "{name}"
        );
    }
    let mut stored = Vec::new();
    for name in engine.catalog(None, 10_000).await.expect("catalog") {
        if let Some(meta) = engine.repo_meta(&name).await.expect("read") {
            stored.push((name, meta));
        }
    }
    assert_eq!(
        listed, stored,
        "summaries in memory = summaries in the index"
    );
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn config(created: &str, arch: &str, vendor: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "created": created,
        "architecture": arch,
        "os": "linux",
        "config": {"Labels": {"org.opencontainers.image.vendor": vendor}},
        "history": [{"created": created, "created_by": "/bin/sh -c make", "author": "ci"}],
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .expect("json")
}

fn manifest(config: &[u8], layers: &[&[u8]], annotations: serde_json::Value) -> Bytes {
    let descriptor = |media_type: &str, bytes: &[u8]| json!({"mediaType": media_type, "digest": sha256(bytes).to_string(), "size": bytes.len()});
    Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": layers.iter().map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
            "annotations": annotations,
        }))
        .expect("json"),
    )
}

/// Push by the manifest's own digest (no tag).
const BY_DIGEST: &str = "";

async fn push(
    engine: &Engine,
    name: &str,
    reference: &str,
    config: &[u8],
    layers: &[&[u8]],
) -> (berth_storage::oci::Digest, u64) {
    let repository = repo(name);
    push_blob(engine, &repository, config).await;
    for layer in layers {
        push_blob(engine, &repository, layer).await;
    }
    let annotations =
        json!({"org.opencontainers.image.description": "d", "org.label-schema.vendor": "Acme"});
    let bytes = manifest(config, layers, annotations);
    let size = bytes.len() as u64;
    let reference = match reference {
        BY_DIGEST => Reference::Digest(sha256(&bytes)),
        tag_name => Reference::Tag(tag(tag_name)),
    };
    let outcome = engine
        .put_manifest_guarded(
            &repository,
            &reference,
            Some(OCI_MANIFEST),
            bytes,
            &[],
            &[],
            Some("alice"),
        )
        .await
        .expect("put");
    (outcome.digest, size)
}

async fn records_follow_pushes_tags_and_deletes(kind: IoBackendKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), kind);
    assert!(
        engine.search_ready().await.expect("ready"),
        "a new store needs no backfill"
    );
    let name = repo("app");
    let base: &[u8] = b"shared base layer";
    let old_config = config("2024-01-01T00:00:00Z", "amd64", "Acme");
    let new_config = config("2024-06-01T00:00:00Z", "arm64", "Acme");
    let (old, old_size) = push(&engine, "app", "v1", &old_config, &[base, b"old top"]).await;
    let (new, _) = push(&engine, "app", "v2", &new_config, &[base, b"new top"]).await;

    let meta = engine
        .image_meta(&name, &old)
        .await
        .expect("read")
        .expect("present");
    assert_eq!(meta.pushed_by.as_deref(), Some("alice"));
    assert_eq!(meta.manifest_size, old_size);
    let config_meta = meta.config.as_ref().expect("config");
    assert!(config_meta.read);
    assert_eq!(
        config_meta.platform,
        Some(Platform {
            os: "linux".into(),
            arch: "amd64".into(),
            variant: String::new()
        })
    );
    assert_eq!(config_meta.history[0].created_by, "/bin/sh -c make");
    assert_eq!(
        meta.annotations["org.opencontainers.image.description"],
        "d"
    );

    let summary = engine
        .repo_meta(&name)
        .await
        .expect("read")
        .expect("summary");
    assert_eq!(summary.tags, 2);
    let newest = summary.newest.as_ref().expect("newest");
    assert_eq!(
        (newest.tag.as_str(), &newest.digest),
        ("v2", &new.to_string())
    );
    assert_eq!(summary.platforms.len(), 2);
    assert_eq!(
        summary.vendors.iter().collect::<Vec<_>>(),
        vec!["Acme"],
        "from annotations only"
    );
    let blobs =
        old_config.len() + new_config.len() + base.len() + b"old top".len() + b"new top".len();
    let manifests = old_size as usize
        + engine
            .image_meta(&name, &new)
            .await
            .unwrap()
            .unwrap()
            .manifest_size as usize;
    assert_eq!(
        summary.size,
        (blobs + manifests) as u64,
        "each blob counted once"
    );

    let holders = engine.containing(&sha256(base)).await.expect("containing");
    assert_eq!(holders.len(), 2);
    assert!(holders
        .iter()
        .all(|h| h.role == DigestRole::Layer && h.repo == name));
    let itself = engine.containing(&old).await.expect("containing");
    assert_eq!(itself.len(), 1);
    assert_eq!(itself[0].role, DigestRole::Manifest);
    assert_clean(&engine).await;

    // A cosign signature tag is not an image of the repository.
    let signature_tag = format!("sha256-{}.sig", new.hex());
    let sig_config = config("2024-07-01T00:00:00Z", "amd64", "Sig");
    push(
        &engine,
        "app",
        &signature_tag,
        &sig_config,
        &[b"signature payload"],
    )
    .await;
    let summary = engine
        .repo_meta(&name)
        .await
        .expect("read")
        .expect("summary");
    assert_eq!(summary.tags, 2, "the signature tag is no image");
    assert_eq!(summary.newest.as_ref().unwrap().tag, "v2");
    assert_clean(&engine).await;

    // Moving tags away moves the newest image; the last image tag gone, no summary.
    engine
        .delete_manifest(&name, &Reference::Tag(tag("v2")))
        .await
        .expect("untag");
    let summary = engine
        .repo_meta(&name)
        .await
        .expect("read")
        .expect("summary");
    assert_eq!(summary.newest.as_ref().unwrap().tag, "v1");
    assert_eq!(summary.tags, 1);
    assert_clean(&engine).await;
    engine
        .delete_manifest(&name, &Reference::Digest(old.clone()))
        .await
        .expect("delete");
    assert!(engine
        .image_meta(&name, &old)
        .await
        .expect("read")
        .is_none());
    assert!(
        engine.repo_meta(&name).await.expect("read").is_none(),
        "no image tag left"
    );
    assert_eq!(
        engine
            .containing(&sha256(base))
            .await
            .expect("containing")
            .len(),
        1,
        "v2's manifest still holds it"
    );
    assert!(engine
        .containing(&old)
        .await
        .expect("containing")
        .is_empty());
    assert_clean(&engine).await;
    drop(engine);
    assert_clean(&open(dir.path(), kind)).await;
}

async fn an_index_summarises_its_children(kind: IoBackendKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), kind);
    let name = repo("multi");
    let amd = config("2024-01-01T00:00:00Z", "amd64", "A");
    let arm = config("2024-03-01T00:00:00Z", "arm64", "B");
    let (amd_digest, amd_size) = push(&engine, "multi", BY_DIGEST, &amd, &[b"amd layer"]).await;
    let (arm_digest, arm_size) = push(&engine, "multi", BY_DIGEST, &arm, &[b"arm layer"]).await;
    assert!(
        engine.repo_meta(&name).await.expect("read").is_none(),
        "untagged images are no summary"
    );
    let index = index_manifest(&[(&amd_digest, amd_size), (&arm_digest, arm_size)]);
    let index_digest = engine
        .put_manifest(
            &name,
            &Reference::Tag(tag("latest")),
            Some(OCI_INDEX),
            index,
            &[],
        )
        .await
        .expect("put index")
        .digest;
    let summary = engine
        .repo_meta(&name)
        .await
        .expect("read")
        .expect("summary");
    let newest = summary.newest.expect("newest");
    assert_eq!(newest.digest, index_digest.to_string());
    assert_eq!(
        newest.updated_ns,
        Some(1_709_251_200_000_000_000),
        "the newest child's time"
    );
    let arches: Vec<_> = summary.platforms.iter().map(|p| p.arch.as_str()).collect();
    assert_eq!(arches, vec!["amd64", "arm64"]);
    let children = engine.containing(&amd_digest).await.expect("containing");
    assert!(children
        .iter()
        .any(|c| c.role == DigestRole::Child && c.manifest == index_digest));
    // The tagged family: a child's layer names the index's tag with that child only; the
    // index's own digest names the whole image.
    let tagged = async |digest: &berth_storage::oci::Digest| {
        let mut found = Vec::new();
        engine
            .visit_tagged(digest, |t| {
                found.push((
                    t.repo.to_owned(),
                    t.tag.to_owned(),
                    t.manifest.to_owned(),
                    t.role,
                    t.facts.whole,
                ));
                true
            })
            .await
            .expect("visit");
        found
    };
    let amd_layer = sha256(b"amd layer");
    assert_eq!(
        tagged(&amd_layer).await,
        vec![(
            "multi".into(),
            "latest".into(),
            amd_digest.to_string(),
            DigestRole::Layer,
            false
        )]
    );
    assert_eq!(
        tagged(&index_digest).await,
        vec![(
            "multi".into(),
            "latest".into(),
            index_digest.to_string(),
            DigestRole::Manifest,
            true
        )]
    );
    // A second tag on the arm image alone is a whole image of its own.
    let arm_bytes = engine
        .get_manifest(&name, &Reference::Digest(arm_digest.clone()))
        .await
        .expect("get")
        .expect("stored")
        .bytes;
    engine
        .put_manifest(
            &name,
            &Reference::Tag(tag("arm")),
            Some(OCI_MANIFEST),
            arm_bytes,
            &[],
        )
        .await
        .expect("tag arm");
    let arm_config = sha256(&arm);
    assert_eq!(
        tagged(&arm_config).await,
        vec![
            (
                "multi".into(),
                "arm".into(),
                arm_digest.to_string(),
                DigestRole::Config,
                true
            ),
            (
                "multi".into(),
                "latest".into(),
                arm_digest.to_string(),
                DigestRole::Config,
                false
            ),
        ]
    );
    engine
        .delete_manifest(&name, &Reference::Tag(tag("latest")))
        .await
        .expect("untag");
    assert!(tagged(&index_digest).await.is_empty(), "untagged: gone");
    assert_eq!(tagged(&amd_layer).await, vec![]);
    assert_eq!(tagged(&arm_config).await.len(), 1);
    assert_clean(&engine).await;
}

async fn stars_and_bookmarks_are_per_user_and_counted(kind: IoBackendKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), kind);
    let name = repo("starred/app");
    assert!(engine
        .toggle_pref("alice", &name, Pref::Star)
        .await
        .expect("toggle"));
    assert!(engine
        .toggle_pref("bob", &name, Pref::Star)
        .await
        .expect("toggle"));
    assert!(engine
        .toggle_pref("bob", &name, Pref::Bookmark)
        .await
        .expect("toggle"));
    assert_eq!(engine.star_count(&name).await.expect("count"), 2);
    assert!(!engine
        .toggle_pref("alice", &name, Pref::Star)
        .await
        .expect("toggle"));
    assert_eq!(engine.star_count(&name).await.expect("count"), 1);
    assert!(engine
        .prefs_of("alice", Pref::Star)
        .await
        .expect("prefs")
        .is_empty());
    assert_eq!(
        engine.prefs_of("bob", Pref::Star).await.expect("prefs"),
        vec![name.clone()]
    );
    assert_eq!(
        engine.prefs_of("bob", Pref::Bookmark).await.expect("prefs"),
        vec![name.clone()]
    );
    // A user whose name extends another's sees only their own.
    assert!(engine
        .prefs_of("bo", Pref::Star)
        .await
        .expect("prefs")
        .is_empty());
    assert!(engine
        .has_pref("bob", &name, Pref::Bookmark)
        .await
        .expect("has"));
    drop(engine);
    let engine = open(dir.path(), kind);
    assert_eq!(engine.star_count(&name).await.expect("count"), 1, "durable");
}

crate::backend_tests!(
    records_follow_pushes_tags_and_deletes,
    an_index_summarises_its_children,
    stars_and_bookmarks_are_per_user_and_counted,
);

/// A mirrored manifest stored before its config blob (on-demand sync) gets the config's facts
/// when the blob is imported.
#[test]
fn a_config_imported_after_its_mirrored_manifest_fills_the_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let name = repo("mirror/app");
    let config_bytes = config("2024-05-05T00:00:00Z", "arm64", "Up");
    let bytes = manifest(&config_bytes, &[b"upstream layer"], json!({}));
    let digest = sha256(&bytes);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        engine
            .put_manifest_mirrored(&name, &Reference::Tag(tag("v1")), Some(OCI_MANIFEST), bytes)
            .await
            .expect("mirrored");
        let before = engine
            .image_meta(&name, &digest)
            .await
            .expect("read")
            .expect("record");
        assert!(before.config_unread(), "no config yet");
        let mut import = engine.begin_import(&sha256(&config_bytes)).expect("import");
        import.write(&config_bytes).expect("write");
        import
            .verify()
            .expect("verify")
            .commit(&name)
            .await
            .expect("commit");
        let after = engine
            .image_meta(&name, &digest)
            .await
            .expect("read")
            .expect("record");
        assert!(!after.config_unread());
        let platform = after.config.unwrap().platform.unwrap();
        assert_eq!(platform.arch, "arm64");
        let summary = engine
            .repo_meta(&name)
            .await
            .expect("read")
            .expect("summary");
        assert_eq!(
            summary.newest.unwrap().updated_ns,
            Some(1_714_867_200_000_000_000)
        );
    });
}

/// The summary kept from each batch's tag changes always equals a full recomputation (fsck
/// compares both, the counts and the `tagged` entries): random pushes of images and indexes,
/// tag moves, re-tags, untags and deletes,
/// with equal build times so that the tie-breaks are exercised too.
#[test]
fn incremental_summaries_equal_full_recomputation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let name = repo("churn/app");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |bound: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % bound
    };
    runtime.block_on(async {
        let mut pushed = Vec::new();
        let mut sizes = Vec::new();
        let mut indexes = 0;
        for round in 0..120 {
            let tag_name = format!("t{}", next(6));
            match next(6) {
                0 | 1 => {
                    let created = format!("2024-0{}-01T00:00:00Z", 1 + next(3));
                    let arch = ["amd64", "arm64"][next(2) as usize];
                    let config_bytes = config(&created, arch, "V");
                    let top = format!("top {}", next(8)).into_bytes();
                    let (digest, _size) = push(
                        &engine,
                        "churn/app",
                        &tag_name,
                        &config_bytes,
                        &[b"base", &top],
                    )
                    .await;
                    pushed.push(digest.clone());
                    sizes.push((digest, _size));
                }
                4 if !sizes.is_empty() => {
                    // An index of one or two stored images (children may repeat).
                    let a = sizes[next(sizes.len() as u64) as usize].clone();
                    let b = sizes[next(sizes.len() as u64) as usize].clone();
                    let children = match next(2) {
                        0 => vec![(&a.0, a.1)],
                        _ => vec![(&a.0, a.1), (&b.0, b.1)],
                    };
                    let outcome = engine
                        .put_manifest(
                            &name,
                            &Reference::Tag(tag(&tag_name)),
                            Some(OCI_INDEX),
                            index_manifest(&children),
                            &[],
                        )
                        .await;
                    if let Ok(outcome) = outcome {
                        pushed.push(outcome.digest);
                        indexes += 1;
                    }
                }
                2 if !pushed.is_empty() => {
                    // Re-tag an image already stored (a move, or the same digest again).
                    let digest = pushed[next(pushed.len() as u64) as usize].clone();
                    let stored = engine
                        .get_manifest(&name, &Reference::Digest(digest))
                        .await
                        .expect("get");
                    if let Some(stored) = stored {
                        engine
                            .put_manifest(
                                &name,
                                &Reference::Tag(tag(&tag_name)),
                                Some(&stored.media_type),
                                stored.bytes,
                                &[],
                            )
                            .await
                            .expect("re-tag");
                    }
                }
                3 => {
                    let _ = engine
                        .delete_manifest(&name, &Reference::Tag(tag(&tag_name)))
                        .await;
                }
                _ if !pushed.is_empty() => {
                    let digest = pushed[next(pushed.len() as u64) as usize].clone();
                    let _ = engine
                        .delete_manifest(&name, &Reference::Digest(digest))
                        .await;
                }
                _ => {}
            }
            let report = engine.fsck().await.expect("fsck");
            assert!(report.is_clean(), "round {round}: {:?}", report.problems);
        }
        assert!(indexes >= 5, "the churn tags indexes too ({indexes})");
    });
    runtime.block_on(assert_clean(&engine));
}
