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
    assert!(engine
        .blob_referenced(&mirror, &sha256(b"upstream layer"))
        .expect("refs"));
    assert!(!engine
        .blob_referenced(&mirror, &sha256(b"not in any manifest"))
        .expect("refs"));
    assert_eq!(
        engine
            .stat_blob(&mirror, &sha256(b"upstream layer"))
            .expect("stat"),
        None
    );
    let report = engine.fsck().expect("fsck");
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
    let report = engine.fsck().expect("fsck");
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
        assert_eq!(engine.stat_blob(&mirror, &digest).expect("stat"), None);
        let verified = import.verify().expect("digest verifies");
        assert_eq!(
            verified.commit(&mirror).await.expect("commit"),
            content.len() as u64
        );
        assert_eq!(
            engine.stat_blob(&mirror, &digest).expect("stat"),
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
        assert_eq!(engine.stat_blob(&mirror, &other).expect("stat"), None);
        assert_eq!(staged(), 0, "a mismatch removes the staged bytes");

        // Dropped half-way (the download failed): no staged file.
        let mut import = engine.begin_import(&other).expect("begin");
        import.write(b"expected").expect("write");
        assert_eq!(staged(), 1);
        drop(import);
        assert_eq!(staged(), 0, "a dropped import removes its staged bytes");
    });
    let report = engine.fsck().expect("fsck");
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
