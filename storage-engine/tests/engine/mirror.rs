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
