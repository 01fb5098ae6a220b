//! A store whose search records were filled by an earlier berth, before the `tagged` family
//! existed (marker `search.backfill` done, no `tagged` entry), is filled again at the next
//! backfill: the digest queries then find exactly what a store written by this berth holds.
use std::sync::atomic::AtomicBool;

use berth_storage::oci::{Digest, Reference};
use berth_storage::{Engine, IoBackendKind};

use crate::{index_manifest, open, push_blob, repo, sha256, tag};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Pushes an image of `layers` under `tag`, or by its own digest when `tag` is `None`.
async fn push_image(
    engine: &Engine,
    name: &str,
    tag_name: Option<&str>,
    layers: &[&[u8]],
) -> (Digest, u64) {
    let repository = repo(name);
    let config = br#"{"architecture":"amd64","os":"linux","created":"2024-02-02T00:00:00Z"}"#;
    push_blob(engine, &repository, config).await;
    let mut descriptors = Vec::new();
    for layer in layers {
        push_blob(engine, &repository, layer).await;
        descriptors.push(
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": sha256(layer).to_string(), "size": layer.len()}),
        );
    }
    let bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(config).to_string(), "size": config.len()},
        "layers": descriptors,
    }))
    .expect("json");
    let size = bytes.len() as u64;
    let reference = match tag_name {
        Some(name) => Reference::Tag(tag(name)),
        None => Reference::Digest(sha256(&bytes)),
    };
    let outcome = engine
        .put_manifest(
            &repository,
            &reference,
            Some(OCI_MANIFEST),
            bytes.into(),
            &[],
        )
        .await
        .expect("put");
    (outcome.digest, size)
}

async fn holders(engine: &Engine, digest: &Digest) -> Vec<(String, String, String, bool)> {
    let mut found = Vec::new();
    engine
        .visit_tagged(digest, |t| {
            let at = (
                t.repo.to_owned(),
                t.tag.to_owned(),
                t.manifest.to_owned(),
                t.facts.whole,
            );
            found.push(at);
            true
        })
        .await
        .expect("visit");
    found
}

/// Turns the index back into what an earlier berth left: no `tagged` entry, the old marker.
fn forget_tagged(root: &std::path::Path) {
    let path = root.join("index");
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).expect("families");
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, &names).expect("open");
    let tagged = db.cf_handle("tagged").expect("tagged family");
    let keys: Vec<Box<[u8]>> = db
        .iterator_cf(tagged, rocksdb::IteratorMode::Start)
        .map(|item| item.expect("read").0)
        .collect();
    assert!(!keys.is_empty(), "this berth wrote tagged entries");
    for key in keys {
        db.delete_cf(tagged, key).expect("delete");
    }
    let meta = db.cf_handle("meta").expect("meta family");
    db.delete_cf(meta, b"search.backfill.2")
        .expect("delete marker");
    db.put_cf(meta, b"search.backfill", b"done")
        .expect("old marker");
    db.flush_cf(tagged).expect("flush");
}

#[test]
fn a_store_filled_before_the_tagged_family_is_filled_again() {
    if crate::on_postgres() {
        eprintln!("SKIPPED: upgrades a RocksDB index written by an older berth");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let base: &[u8] = b"a base layer every image holds";
    let (index_digest, expected_base, expected_index) = runtime.block_on(async {
        let engine = open(dir.path(), IoBackendKind::Threads);
        push_image(&engine, "up/one", Some("v1"), &[base, b"one"]).await;
        let child = push_image(&engine, "up/multi", None, &[base, b"amd"]).await;
        let index = engine
            .put_manifest(
                &repo("up/multi"),
                &Reference::Tag(tag("latest")),
                Some(OCI_INDEX),
                index_manifest(&[(&child.0, child.1)]),
                &[],
            )
            .await
            .expect("put index")
            .digest;
        let found = (
            holders(&engine, &sha256(base)).await,
            holders(&engine, &index).await,
        );
        (index, found.0, found.1)
    });
    // The base layer: the index's child (not whole) and the image (whole).
    assert_eq!(expected_base.len(), 2, "{expected_base:?}");
    assert_eq!(expected_index.len(), 1, "{expected_index:?}");
    forget_tagged(dir.path());
    let engine = open(dir.path(), IoBackendKind::Threads);
    assert!(
        !runtime.block_on(engine.search_ready()).expect("ready"),
        "the old marker is not this version's"
    );
    assert!(runtime.block_on(holders(&engine, &sha256(base))).is_empty());
    let done = runtime
        .block_on(engine.search_backfill(&AtomicBool::new(false), |_| {}))
        .expect("backfill");
    assert!(done);
    assert!(runtime.block_on(engine.search_ready()).expect("ready"));
    assert_eq!(
        runtime.block_on(holders(&engine, &sha256(base))),
        expected_base
    );
    assert_eq!(
        runtime.block_on(holders(&engine, &index_digest)),
        expected_index
    );
    runtime.block_on(crate::assert_clean(&engine));
}
