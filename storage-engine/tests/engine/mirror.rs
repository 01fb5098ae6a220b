//! Manifests stored by sync (`put_manifest_mirrored`): stored without their blobs or child
//! manifests, marked so that fsck reports the absent ones as info, and the blobs they
//! reference are known (`blob_referenced`) so that sync may fetch them on demand.

use berth_storage::oci::Reference;
use berth_storage::{IoBackendKind, StorageError};

use crate::{image_manifest, index_manifest, open, push_blob, repo, sha256, tag};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[test]
fn mirrored_manifests_need_no_blobs_and_fsck_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let mirror = repo("mirror/library/alpine");
    let manifest = image_manifest(b"upstream config", &[b"upstream layer"], None);
    let digest = sha256(&manifest);
    let index = index_manifest(&[(&digest, manifest.len() as u64)]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // A push of the same bytes is refused: its blobs are not here.
        let pushed = engine
            .put_manifest(
                &mirror,
                &Reference::Tag(tag("pushed")),
                Some(OCI_MANIFEST),
                manifest.clone(),
                &[],
            )
            .await;
        assert!(
            matches!(pushed, Err(StorageError::ManifestBlobUnknown(_))),
            "{pushed:?}"
        );
        // The index by tag, before its child: a mirror stores what was asked for.
        engine
            .put_manifest_mirrored(
                &mirror,
                &Reference::Tag(tag("3.20")),
                Some(OCI_INDEX),
                index,
            )
            .await
            .expect("mirrored index");
        engine
            .put_manifest_mirrored(
                &mirror,
                &Reference::Digest(digest.clone()),
                Some(OCI_MANIFEST),
                manifest.clone(),
            )
            .await
            .expect("mirrored manifest");
        // A mirrored manifest is still checked against the digest it is stored under.
        let wrong = engine
            .put_manifest_mirrored(
                &mirror,
                &Reference::Digest(sha256(b"other")),
                Some(OCI_MANIFEST),
                manifest,
            )
            .await;
        assert!(
            matches!(wrong, Err(StorageError::DigestMismatch { .. })),
            "{wrong:?}"
        );
    });
    assert!(runtime
        .block_on(engine.blob_referenced(&mirror, &sha256(b"upstream layer")))
        .expect("refs"));
    assert!(!runtime
        .block_on(engine.blob_referenced(&mirror, &sha256(b"not in any manifest")))
        .expect("refs"));
    assert_eq!(
        runtime
            .block_on(engine.stat_blob(&mirror, &sha256(b"upstream layer")))
            .expect("stat"),
        None
    );
    let report = runtime.block_on(engine.fsck()).expect("fsck");
    assert!(report.is_clean(), "{report:?}");
    let absent: Vec<_> = report
        .info
        .iter()
        .filter(|line| line.0.contains("mirrored: fetched on demand"))
        .collect();
    assert_eq!(absent.len(), 2, "config and layer: {:?}", report.info);
    // Once fetched, the blob is an ordinary linked blob and the note goes away.
    runtime.block_on(async {
        push_blob(&engine, &mirror, b"upstream layer").await;
    });
    let report = runtime.block_on(engine.fsck()).expect("fsck");
    let absent = report
        .info
        .iter()
        .filter(|line| line.0.contains("mirrored"))
        .count();
    assert_eq!(absent, 1, "{:?}", report.info);
}

/// `BlobImport` (sync's blob fetches): readable while written, committed only when its digest
/// verifies, and leaving no staged file behind on a mismatch or a drop (a restart's cleanup is
/// tested on the daemon, tests/tests/sync_streaming.rs). Run on a plain tokio runtime
/// (sync's is one), whichever backend the engine was opened with.
fn imports_commit_only_verified_bytes(kind: IoBackendKind) {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let uploads = dir.path().join("uploads");
    let staged = || std::fs::read_dir(&uploads).expect("uploads").count();
    let engine = open(dir.path(), kind);
    let mirror = repo("mirror/imports");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let content = vec![7u8; 3 << 20];
    let digest = sha256(&content);
    runtime.block_on(async {
        // Bytes written so far are readable through the reader, before the end.
        let mut import = engine.begin_import(&digest).expect("begin");
        let reader = import.reader();
        import.write(&content[..1 << 20]).expect("write");
        let mut first = vec![0u8; 1 << 20];
        reader.read_exact_at(&mut first, 0).expect("read back");
        assert_eq!(first, content[..1 << 20]);
        import.write(&content[1 << 20..]).expect("write rest");
        assert_eq!(import.written(), content.len() as u64);
        assert_eq!(
            engine.stat_blob(&mirror, &digest).await.expect("stat"),
            None
        );
        let verified = import.verify().expect("digest verifies");
        assert_eq!(
            verified.commit(&mirror).await.expect("commit"),
            content.len() as u64
        );
        assert_eq!(
            engine.stat_blob(&mirror, &digest).await.expect("stat"),
            Some(content.len() as u64)
        );
        // The reader still reads the committed file.
        reader
            .read_exact_at(&mut first, 0)
            .expect("read after commit");
        assert_eq!(staged(), 0, "the committed file left uploads/");

        // Wrong bytes: refused, nothing stored, no staged file.
        let other = sha256(b"expected content");
        let mut import = engine.begin_import(&other).expect("begin");
        import.write(b"other content").expect("write");
        match import.verify() {
            Err(StorageError::DigestMismatch { expected, .. }) => assert_eq!(expected, other),
            Err(error) => panic!("wanted a digest mismatch, got {error}"),
            Ok(_) => panic!("wrong bytes verified"),
        }
        assert_eq!(engine.stat_blob(&mirror, &other).await.expect("stat"), None);
        assert_eq!(staged(), 0, "a mismatch removes the staged bytes");

        // Dropped half-way (the download failed): no staged file.
        let mut import = engine.begin_import(&other).expect("begin");
        import.write(b"expected").expect("write");
        assert_eq!(staged(), 1);
        drop(import);
        assert_eq!(staged(), 0, "a dropped import removes its staged bytes");
    });
    let report = runtime.block_on(engine.fsck()).expect("fsck");
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn imports_commit_only_verified_bytes_threads() {
    imports_commit_only_verified_bytes(IoBackendKind::Threads);
}

#[test]
fn imports_commit_only_verified_bytes_uring() {
    imports_commit_only_verified_bytes(IoBackendKind::Uring);
}

/// A mirrored manifest that nothing holds (fetched by digest, as a digest-pinned pull does) is
/// a cache entry: GC evicts it once it was neither fetched nor pulled for the delay. A pushed
/// untagged manifest still ages from its push, pulled or not.
#[test]
fn untagged_mirrored_manifests_age_from_their_last_pull() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let mirror = repo("mirror/pinned");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pulled = image_manifest(b"pulled config", &[b"pulled layer"], None);
    let idle = image_manifest(b"idle config", &[b"idle layer"], None);
    let pushed = runtime.block_on(async {
        for manifest in [&pulled, &idle] {
            engine
                .put_manifest_mirrored(
                    &mirror,
                    &Reference::Digest(sha256(manifest)),
                    Some(OCI_MANIFEST),
                    manifest.clone(),
                )
                .await
                .expect("mirrored manifest");
        }
        let config = push_blob(&engine, &mirror, b"pushed config").await;
        let layer = push_blob(&engine, &mirror, b"pushed layer").await;
        let _ = (config, layer);
        let pushed = image_manifest(b"pushed config", &[b"pushed layer"], None);
        engine
            .put_manifest(
                &mirror,
                &Reference::Digest(sha256(&pushed)),
                Some(OCI_MANIFEST),
                pushed.clone(),
                &[],
            )
            .await
            .expect("pushed manifest");
        pushed
    });
    let delay = std::time::Duration::from_millis(800);
    std::thread::sleep(delay + std::time::Duration::from_millis(200));
    engine.record_pull(&mirror, &sha256(&pulled));
    engine.record_pull(&mirror, &sha256(&pushed));
    let mut options = berth_storage::GcOptions::new(std::time::Duration::ZERO);
    options.manifest_delay = delay;
    runtime.block_on(engine.gc(&options)).expect("gc");
    let stored = |manifest: &bytes::Bytes| {
        runtime
            .block_on(engine.get_manifest(&mirror, &Reference::Digest(sha256(manifest))))
            .expect("get")
            .is_some()
    };
    assert!(stored(&pulled), "pulled within the delay: kept");
    assert!(
        !stored(&idle),
        "neither fetched nor pulled within the delay: evicted"
    );
    assert!(
        !stored(&pushed),
        "a pushed untagged manifest ages from its push"
    );
    // Once the pull is older than the delay too, the pulled one goes as well.
    std::thread::sleep(delay + std::time::Duration::from_millis(200));
    runtime.block_on(engine.gc(&options)).expect("gc");
    assert!(!stored(&pulled));
    let report = runtime.block_on(engine.fsck()).expect("fsck");
    assert!(report.is_clean(), "{report:?}");
}
