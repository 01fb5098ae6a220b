//! `Engine::gc` directly: what a pass deletes and what it keeps (shared blobs, index
//! children, referrers, young links), dry runs that change nothing, incremental passes that
//! look only at what changed, orphan files, a retention hook, and GC racing pushes of the
//! same content with fsck clean after.

use std::sync::Arc;
use std::time::Duration;

use berth_storage::oci::{Digest, Reference, RepoName};
use berth_storage::{
    Engine, GcKind, GcOptions, IoBackendKind, RepoRules, Retention, StorageError, TagInfo,
};
use bytes::Bytes;

use crate::{block_on, image_manifest, index_manifest, open, push_blob, repo, sha256, tag};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Whether `content`'s blob is stored (a file, or an object on the S3 suite).
fn blob_stored(engine: &Engine, dir: &std::path::Path, content: &[u8]) -> bool {
    block_on(crate::blob_bytes_exist(engine, dir, &sha256(content)))
}

/// Pushes an image (config + layers) and its manifest under `reference`; returns the
/// manifest digest and size.
async fn image(
    engine: &Engine,
    repo: &RepoName,
    reference: Option<&str>,
    config: &[u8],
    layers: &[&[u8]],
    subject: Option<(&Digest, u64)>,
) -> (Digest, u64) {
    push_blob(engine, repo, config).await;
    for layer in layers {
        push_blob(engine, repo, layer).await;
    }
    let bytes = image_manifest(config, layers, subject);
    let digest = sha256(&bytes);
    let size = bytes.len() as u64;
    let reference = match reference {
        Some(name) => Reference::Tag(tag(name)),
        None => Reference::Digest(digest.clone()),
    };
    engine
        .put_manifest(repo, &reference, Some(OCI_MANIFEST), bytes, &[])
        .await
        .expect("put manifest");
    (digest, size)
}

fn now() -> GcOptions {
    GcOptions::new(Duration::ZERO)
}

async fn clean(engine: &Engine) {
    let report = engine.fsck().await.expect("fsck");
    assert!(report.is_clean(), "fsck: {report:?}");
}

#[test]
fn deleted_image_goes_shared_blobs_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let (a, b) = (repo("gc/a"), repo("gc/b"));
    let first = runtime().block_on(async {
        let first = image(
            &engine,
            &a,
            Some("v1"),
            b"config 1",
            &[b"shared", b"only 1"],
            None,
        )
        .await;
        image(&engine, &a, Some("v2"), b"config 2", &[b"shared"], None).await;
        image(&engine, &b, Some("v1"), b"config 3", &[b"shared"], None).await;
        engine
            .delete_manifest(&a, &Reference::Digest(first.0.clone()))
            .await
            .expect("delete");
        first
    });
    let report = block_on(engine.gc(&now())).expect("gc");
    assert!(report.full, "the first pass after open is full");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.performed(GcKind::Link), 2, "{:?}", report.actions);
    assert_eq!(report.performed(GcKind::Blob), 2);
    assert_eq!(report.performed(GcKind::Manifest), 0);
    assert_eq!(
        report.bytes_freed(),
        (b"config 1".len() + b"only 1".len()) as u64
    );
    for gone in [&b"config 1"[..], b"only 1"] {
        assert!(!blob_stored(&engine, dir.path(), gone));
        assert_eq!(
            block_on(engine.stat_blob(&a, &sha256(gone))).expect("stat"),
            None
        );
    }
    assert!(blob_stored(&engine, dir.path(), b"shared"));
    assert!(block_on(engine.stat_blob(&a, &sha256(b"shared")))
        .expect("stat")
        .is_some());
    assert!(block_on(engine.stat_blob(&b, &sha256(b"shared")))
        .expect("stat")
        .is_some());
    assert!(
        block_on(engine.get_manifest(&a, &Reference::Tag(tag("v2"))))
            .expect("get")
            .is_some()
    );
    assert!(
        block_on(engine.get_manifest(&a, &Reference::Digest(first.0)))
            .expect("get")
            .is_none()
    );
    let usage = block_on(engine.usage()).expect("usage");
    assert_eq!(usage.blobs, 3, "store totals follow the sweep");
    block_on(clean(&engine));
    // Nothing left: a second pass deletes nothing.
    let again = block_on(engine.gc(&now())).expect("gc");
    assert!(again.actions.is_empty(), "{:?}", again.actions);
}

#[test]
fn untagged_index_takes_its_children_along_and_young_links_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let r = repo("gc/index");
    runtime().block_on(async {
        let amd = image(&engine, &r, None, b"config amd", &[b"layer amd"], None).await;
        let arm = image(&engine, &r, None, b"config arm", &[b"layer arm"], None).await;
        let index = index_manifest(&[(&amd.0, amd.1), (&arm.0, arm.1)]);
        engine
            .put_manifest(
                &r,
                &Reference::Tag(tag("multi")),
                Some(OCI_INDEX),
                index,
                &[],
            )
            .await
            .expect("put index");
        push_blob(&engine, &r, b"uploaded, not yet referenced").await;
    });
    // Children are untagged but listed by a tagged index: kept. The young link too.
    let grace = GcOptions::new(Duration::from_secs(3600));
    let report = block_on(engine.gc(&grace)).expect("gc");
    assert!(report.actions.is_empty(), "{:?}", report.actions);
    runtime().block_on(async {
        engine
            .delete_manifest(&r, &Reference::Tag(tag("multi")))
            .await
            .expect("untag");
    });
    let report = block_on(engine.gc(&now())).expect("gc");
    assert_eq!(
        report.performed(GcKind::Manifest),
        3,
        "{:?}",
        report.actions
    );
    assert_eq!(report.performed(GcKind::Link), 5);
    assert_eq!(report.performed(GcKind::Blob), 5);
    assert_eq!(report.performed(GcKind::Repository), 1);
    assert!(block_on(engine.catalog(None, 10))
        .expect("catalog")
        .is_empty());
    block_on(clean(&engine));
}

#[test]
fn referrers_keep_their_subject_and_orphans_go_only_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let r = repo("gc/referrers");
    let (subject, signature) = runtime().block_on(async {
        let subject = image(&engine, &r, None, b"config s", &[b"layer s"], None).await;
        let signature = image(
            &engine,
            &r,
            None,
            b"sig config",
            &[b"signature"],
            Some((&subject.0, subject.1)),
        )
        .await;
        (subject, signature)
    });
    // An untagged image with a referrer is kept, and so is the referrer.
    let report = block_on(engine.gc(&now())).expect("gc");
    assert!(report.actions.is_empty(), "{:?}", report.actions);
    runtime().block_on(async {
        engine
            .delete_manifest(&r, &Reference::Digest(subject.0.clone()))
            .await
            .expect("delete subject");
    });
    // Default rules keep a referrer whose subject is gone.
    let report = block_on(engine.gc(&now())).expect("gc");
    assert_eq!(
        report.performed(GcKind::Manifest),
        0,
        "{:?}",
        report.actions
    );
    assert!(
        block_on(engine.get_manifest(&r, &Reference::Digest(signature.0.clone())))
            .expect("get")
            .is_some()
    );
    // deleteReferrers collects it (and then its blobs and the empty repository).
    let mut options = now();
    options.retention = Some(Arc::new(Policy {
        delete_referrers: true,
        keep_prefix: None,
    }));
    runtime().block_on(async {
        // Touch the repository so an incremental pass visits it.
        push_blob(&engine, &r, b"touch").await;
    });
    let report = block_on(engine.gc(&options)).expect("gc");
    assert_eq!(
        report.performed(GcKind::Manifest),
        1,
        "{:?}",
        report.actions
    );
    assert!(
        block_on(engine.get_manifest(&r, &Reference::Digest(signature.0)))
            .expect("get")
            .is_none()
    );
    assert_eq!(report.performed(GcKind::Repository), 1);
    block_on(clean(&engine));
}

/// A test policy: keeps tags starting with `keep_prefix` (when set).
struct Policy {
    delete_referrers: bool,
    keep_prefix: Option<&'static str>,
}

impl Retention for Policy {
    fn rules(&self, _repo: &str) -> RepoRules {
        RepoRules {
            delete_untagged: true,
            delete_referrers: self.delete_referrers,
            filters_tags: self.keep_prefix.is_some(),
        }
    }

    fn keep_tags(&self, _repo: &str, tags: &[TagInfo], _now_ms: u64) -> Vec<bool> {
        let prefix = self.keep_prefix.unwrap_or("");
        tags.iter()
            .map(|info| info.tag.starts_with(prefix))
            .collect()
    }

    fn filters_any(&self) -> bool {
        self.keep_prefix.is_some()
    }
}

#[test]
fn dry_runs_change_nothing_and_retention_drops_tags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let r = repo("gc/retention");
    runtime().block_on(async {
        image(&engine, &r, Some("v1"), b"config v1", &[b"layer v1"], None).await;
        image(
            &engine,
            &r,
            Some("dev"),
            b"config dev",
            &[b"layer dev"],
            None,
        )
        .await;
    });
    let mut options = now();
    options.retention = Some(Arc::new(Policy {
        delete_referrers: false,
        keep_prefix: Some("v"),
    }));
    let before = files(dir.path());
    options.dry_run = true;
    let planned = block_on(engine.gc(&options)).expect("dry run");
    assert_eq!(files(dir.path()), before, "a dry run removes no file");
    assert!(planned.actions.iter().all(|action| !action.performed));
    let kinds = |report: &berth_storage::GcReport| {
        let mut kinds: Vec<(GcKind, String)> = report
            .actions
            .iter()
            .map(|action| (action.kind, action.what.clone()))
            .collect();
        kinds.sort_by(|x, y| format!("{x:?}").cmp(&format!("{y:?}")));
        kinds
    };
    assert_eq!(planned.actions.len(), 6, "{:?}", planned.actions);
    // zot's retention dryRun: tags and manifests are only reported.
    options.dry_run = false;
    options.retention_dry_run = true;
    let reported = block_on(engine.gc(&options)).expect("retention dry run");
    assert_eq!(reported.performed(GcKind::Tag), 0);
    assert!(block_on(engine.tag_exists(&r, &tag("dev"))).expect("tag"));
    assert_eq!(files(dir.path()), before);
    options.retention_dry_run = false;
    let done = block_on(engine.gc(&options)).expect("gc");
    assert_eq!(
        kinds(&done),
        kinds(&planned),
        "the dry run planned exactly this"
    );
    assert!(!block_on(engine.tag_exists(&r, &tag("dev"))).expect("tag"));
    assert!(block_on(engine.tag_exists(&r, &tag("v1"))).expect("tag"));
    assert!(!blob_stored(&engine, dir.path(), b"layer dev"));
    assert!(blob_stored(&engine, dir.path(), b"layer v1"));
    block_on(clean(&engine));
}

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = crate::files_under(&dir.join("blobs"));
    files.sort();
    files
}

#[test]
fn later_passes_look_only_at_what_changed_and_full_passes_find_orphan_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let engine = open(dir.path(), IoBackendKind::Threads);
        runtime().block_on(async {
            for index in 0..20 {
                let r = repo(&format!("gc/many{index}"));
                let config = format!("config {index}");
                image(
                    &engine,
                    &r,
                    Some("v1"),
                    config.as_bytes(),
                    &[b"common"],
                    None,
                )
                .await;
            }
        });
        let first = block_on(engine.gc(&now())).expect("gc");
        assert_eq!((first.repos_visited, first.blobs_examined), (20, 21));
        let quiet = block_on(engine.gc(&now())).expect("gc");
        assert_eq!((quiet.repos_visited, quiet.blobs_examined), (0, 0));
        runtime().block_on(async {
            engine
                .delete_manifest(&repo("gc/many3"), &Reference::Tag(tag("v1")))
                .await
                .expect("untag");
        });
        let one = block_on(engine.gc(&now())).expect("gc");
        assert_eq!(one.repos_visited, 1);
        assert_eq!(one.blobs_examined, 2, "the two blobs gc/many3 unlinked");
        assert_eq!(one.performed(GcKind::Blob), 1, "the common layer stays");
        block_on(clean(&engine));
    }
    // A file left by a crash between a commit's rename and its index write.
    // (In the bucket on the S3 suite: an object left by a crash after its PUT.)
    let engine = open(dir.path(), IoBackendKind::Threads);
    let orphan = sha256(b"crash leftover");
    block_on(crate::write_blob_bytes(
        &engine,
        dir.path(),
        &orphan,
        b"crash leftover",
    ));
    let report = block_on(engine.gc(&now())).expect("gc");
    assert!(report.full);
    assert_eq!(
        report.performed(GcKind::OrphanFile),
        1,
        "{:?}",
        report.actions
    );
    assert!(!block_on(crate::blob_bytes_exist(
        &engine,
        dir.path(),
        &orphan
    )));
    block_on(clean(&engine));
}

#[test]
fn pulls_are_recorded_for_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let r = repo("gc/pulls");
    let pulled = runtime().block_on(async {
        image(
            &engine,
            &r,
            Some("pulled"),
            b"config p",
            &[b"layer p"],
            None,
        )
        .await;
        image(&engine, &r, Some("idle"), b"config i", &[b"layer i"], None).await
    });
    let _ = pulled;
    let digest = block_on(engine.get_manifest(&r, &Reference::Tag(tag("pulled"))))
        .expect("get")
        .expect("stored")
        .digest;
    engine.record_pull(&r, &digest);
    struct Seen(std::sync::Mutex<Vec<TagInfo>>);
    impl Retention for Seen {
        fn rules(&self, _repo: &str) -> RepoRules {
            RepoRules {
                filters_tags: true,
                ..RepoRules::default()
            }
        }
        fn keep_tags(&self, _repo: &str, tags: &[TagInfo], _now_ms: u64) -> Vec<bool> {
            self.0.lock().expect("lock").extend_from_slice(tags);
            vec![true; tags.len()]
        }
        fn filters_any(&self) -> bool {
            true
        }
    }
    let seen = Arc::new(Seen(Default::default()));
    let mut options = now();
    options.retention = Some(seen.clone());
    block_on(engine.gc(&options)).expect("gc");
    let tags = seen.0.lock().expect("lock").clone();
    let of = |name: &str| {
        tags.iter()
            .find(|info| info.tag == name)
            .expect("tag seen")
            .clone()
    };
    assert!(of("pulled").pulled_ms.is_some());
    assert_eq!(of("idle").pulled_ms, None);
    assert!(of("idle").pushed_ms > 0);
    assert_eq!(of("pulled").digest, digest.to_string());
}

#[test]
fn gc_racing_pushes_of_the_same_content_never_loses_a_linked_blob() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (engine, stop) = (engine.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut passes = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let report = block_on(engine.gc(&now())).expect("gc");
                assert!(report.errors.is_empty(), "{:?}", report.errors);
                passes += 1;
                // A pass with nothing to do takes microseconds: leave pushes some room.
                std::thread::sleep(Duration::from_millis(1));
            }
            passes
        })
    };
    // Each round re-pushes content GC keeps collecting (delay 0: an unreferenced link goes
    // at the next pass), then references it at once. A manifest PUT may find the blob
    // collected (MANIFEST_BLOB_UNKNOWN, fine with no grace), but a stored manifest must
    // always have its blobs.
    let r = repo("gc/race");
    let stored = runtime().block_on(async {
        let mut stored = 0;
        for round in 0..150 {
            let layer = format!("layer {}", round % 3);
            // Monolithic pushes: a session (start, then open) would be expired by a pass in
            // between, as gcDelay 0 says, and that is not what this test is about.
            for content in [&b"race config"[..], layer.as_bytes()] {
                let mut writer = engine.begin_monolithic(&r).await.expect("begin");
                writer
                    .write(Bytes::copy_from_slice(content))
                    .await
                    .expect("write");
                writer.finish(&sha256(content)).await.expect("finish");
            }
            let bytes: Bytes = image_manifest(b"race config", &[layer.as_bytes()], None);
            let result = engine
                .put_manifest(
                    &r,
                    &Reference::Tag(tag("t")),
                    Some(OCI_MANIFEST),
                    bytes,
                    &[],
                )
                .await;
            match result {
                Ok(_) => {
                    stored += 1;
                    for content in [&b"race config"[..], layer.as_bytes()] {
                        assert!(engine
                            .stat_blob(&r, &sha256(content))
                            .await
                            .expect("stat")
                            .is_some());
                        assert!(
                            crate::blob_bytes_exist(&engine, dir.path(), &sha256(content)).await,
                            "round {round}"
                        );
                    }
                }
                Err(StorageError::ManifestBlobUnknown(_)) => {}
                Err(error) => panic!("round {round}: {error}"),
            }
            engine
                .delete_manifest(&r, &Reference::Tag(tag("t")))
                .await
                .ok();
        }
        stored
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let passes = collector.join().expect("collector");
    assert!(passes > 1 && stored > 0, "passes {passes}, stored {stored}");
    block_on(clean(&engine));
}
