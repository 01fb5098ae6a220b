//! Two engines on one PostgreSQL index and one blob directory, as two berth nodes on a
//! shared index (issue 20): a tag moved on one is seen by the other at once, concurrent
//! pushes of one tag from both end in one winner both agree on, search listings follow the
//! other node's pushes, and GC on one node never removes a blob the other just linked.
//! RocksDB cannot be shared: on that index these tests say SKIPPED.

use std::sync::Arc;
use std::time::Duration;

use berth_storage::oci::{Reference, RepoName};
use berth_storage::{Engine, GcOptions, IoBackendKind, StorageError};
use bytes::Bytes;

use crate::{assert_clean, block_on, image_manifest, open, push_blob, repo, sha256, tag};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Two engines on the same root (so the same schema) when the suite runs on PostgreSQL.
pub(crate) fn two_nodes(dir: &std::path::Path) -> Option<(Engine, Engine)> {
    if !crate::on_postgres() {
        eprintln!("SKIPPED: two nodes need the PostgreSQL index (BERTH_TEST_INDEX=postgres)");
        return None;
    }
    Some((
        open(dir, IoBackendKind::Threads),
        open(dir, IoBackendKind::Threads),
    ))
}

pub(crate) async fn push_image(
    engine: &Engine,
    r: &RepoName,
    t: &str,
    layer: &[u8],
) -> Result<String, StorageError> {
    push_blob(engine, r, b"shared config").await;
    push_blob(engine, r, layer).await;
    let bytes = image_manifest(b"shared config", &[layer], None);
    let digest = sha256(&bytes).to_string();
    engine
        .put_manifest(r, &Reference::Tag(tag(t)), Some(OCI_MANIFEST), bytes, &[])
        .await?;
    Ok(digest)
}

async fn tag_target(engine: &Engine, r: &RepoName, t: &str) -> Option<String> {
    engine
        .get_manifest(r, &Reference::Tag(tag(t)))
        .await
        .expect("get manifest")
        .map(|manifest| manifest.digest.to_string())
}

#[test]
fn a_tag_moved_on_one_node_is_seen_on_the_other_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((a, b)) = two_nodes(dir.path()) else {
        return;
    };
    block_on(async {
        let r = repo("shared/app");
        let first = push_image(&a, &r, "latest", b"layer one")
            .await
            .expect("push on a");
        assert_eq!(
            tag_target(&b, &r, "latest").await.as_deref(),
            Some(first.as_str())
        );
        assert!(b.repo_exists(&r).await.expect("exists"));
        // Search's listing on b follows a push made on a.
        let listed = |engine: &Engine| {
            let engine = engine.clone();
            async move {
                let listing = engine.repo_listing().await.expect("listing");
                let names: Vec<String> = listing.iter().map(|(name, _)| name.to_string()).collect();
                names
            }
        };
        assert_eq!(listed(&b).await, ["shared/app"]);
        let second = push_image(&b, &r, "latest", b"layer two")
            .await
            .expect("push on b");
        assert_ne!(first, second);
        assert_eq!(
            tag_target(&a, &r, "latest").await.as_deref(),
            Some(second.as_str())
        );
        let other = repo("shared/other");
        push_image(&b, &other, "v1", b"layer three")
            .await
            .expect("push other on b");
        assert_eq!(listed(&a).await, ["shared/app", "shared/other"]);
        a.delete_manifest(&r, &Reference::Tag(tag("latest")))
            .await
            .expect("delete on a");
        assert_eq!(tag_target(&b, &r, "latest").await, None);
        assert_clean(&a).await;
        assert_clean(&b).await;
    });
}

#[test]
fn concurrent_pushes_of_one_tag_from_two_nodes_end_in_one_winner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((a, b)) = two_nodes(dir.path()) else {
        return;
    };
    let r = repo("shared/race");
    let pushed = block_on(async {
        // 50 pushes of one tag, alternating nodes, all in flight at once: each node's
        // commits meet the other's only in the database's locks.
        let pushes = (0..50).map(|i| {
            let engine = if i % 2 == 0 { a.clone() } else { b.clone() };
            let r = r.clone();
            async move {
                let layer = format!("race layer {i}");
                push_image(&engine, &r, "latest", layer.as_bytes())
                    .await
                    .expect("push")
            }
        });
        futures_util::future::join_all(pushes).await
    });
    block_on(async {
        let on_a = tag_target(&a, &r, "latest").await.expect("tag on a");
        let on_b = tag_target(&b, &r, "latest").await.expect("tag on b");
        assert_eq!(on_a, on_b);
        assert!(pushed.contains(&on_a), "the winner is one of the pushes");
        // Every pushed manifest is stored and readable by digest from both nodes.
        for digest in &pushed {
            let reference = Reference::Digest(digest.parse().expect("digest"));
            for engine in [&a, &b] {
                assert!(engine
                    .get_manifest(&r, &reference)
                    .await
                    .expect("get")
                    .is_some());
            }
        }
        assert_clean(&a).await;
        assert_clean(&b).await;
    });
}

#[test]
fn gc_on_one_node_while_the_other_pushes_never_loses_a_linked_blob() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((pusher, collector_node)) = two_nodes(dir.path()) else {
        return;
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut passes = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let options = GcOptions::new(Duration::ZERO);
                let report = block_on(collector_node.gc(&options)).expect("gc");
                assert!(report.errors.is_empty(), "{:?}", report.errors);
                passes += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            passes
        })
    };
    let r = repo("shared/gc");
    let stored = block_on(async {
        let mut stored = 0;
        for round in 0..60 {
            let layer = format!("layer {}", round % 3);
            for content in [&b"gc config"[..], layer.as_bytes()] {
                let mut writer = pusher.begin_monolithic(&r).await.expect("begin");
                writer
                    .write(Bytes::copy_from_slice(content))
                    .await
                    .expect("write");
                writer.finish(&sha256(content)).await.expect("finish");
            }
            let bytes = image_manifest(b"gc config", &[layer.as_bytes()], None);
            let reference = Reference::Tag(tag("t"));
            match pusher
                .put_manifest(&r, &reference, Some(OCI_MANIFEST), bytes, &[])
                .await
            {
                Ok(_) => {
                    stored += 1;
                    for content in [&b"gc config"[..], layer.as_bytes()] {
                        let digest = sha256(content);
                        assert!(pusher.stat_blob(&r, &digest).await.expect("stat").is_some());
                        assert!(
                            crate::blob_bytes_exist(&pusher, dir.path(), &digest).await,
                            "round {round}"
                        );
                    }
                }
                // The other node collected a blob before the manifest named it (gcDelay 0).
                Err(StorageError::ManifestBlobUnknown(_)) => {}
                Err(error) => panic!("round {round}: {error}"),
            }
            pusher.delete_manifest(&r, &reference).await.ok();
        }
        stored
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let passes = collector.join().expect("collector");
    assert!(passes > 1 && stored > 0, "passes {passes}, stored {stored}");
    block_on(assert_clean(&pusher));
}

#[test]
fn a_node_starting_leaves_the_upload_sessions_of_another_node_alone() {
    if !crate::on_postgres() {
        eprintln!("SKIPPED: two nodes need the PostgreSQL index (BERTH_TEST_INDEX=postgres)");
        return;
    }
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let options = |root: &std::path::Path| berth_storage::EngineOptions {
        root: root.to_path_buf(),
        commit: true,
        io: IoBackendKind::Threads,
        // Both nodes on node a's schema; each stages uploads in its own directory.
        postgres: crate::postgres_index(dir_a.path()),
        s3: crate::s3_blobs(dir_a.path()),
    };
    let r = repo("shared/upload");
    let a = Engine::open(options(dir_a.path())).expect("node a");
    let id = block_on(async {
        let id = a.start_upload(&r).await.expect("start on a");
        let mut writer = a.open_upload(&r, &id).await.expect("open on a");
        writer
            .write(Bytes::from_static(b"first chunk"))
            .await
            .expect("write");
        writer.persist().await.expect("persist");
        id
    });
    // Node b starts: the session's staged file is not in its directory.
    let b = Engine::open(options(dir_b.path())).expect("node b");
    drop(b);
    // Node a restarts: it still finds its session (record and staged file) and finishes it.
    drop(a);
    let a = Engine::open(options(dir_a.path())).expect("node a again");
    block_on(async {
        assert_eq!(a.upload_status(&r, &id).await.expect("session kept"), 11);
        let mut writer = a.open_upload(&r, &id).await.expect("reopen on a");
        writer
            .write(Bytes::from_static(b", second"))
            .await
            .expect("write");
        let digest = sha256(b"first chunk, second");
        writer.finish(&digest).await.expect("finish");
        assert_eq!(a.stat_blob(&r, &digest).await.expect("stat"), Some(19));
        assert_clean(&a).await;
    });
}
