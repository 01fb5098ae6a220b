//! Fault injection (ENOSPC at each commit step) and fsck's detection of damage.
use std::sync::Arc;

use berth_storage::oci::Reference;
use berth_storage::{
    Engine, EngineOptions, FaultInjector, FaultPoint, IoBackendKind, StorageError,
};
use bytes::Bytes;

use crate::{assert_clean, files_under, image_manifest, open, push_blob, repo, sha256, tag};

fn open_faulty(root: &std::path::Path, kind: IoBackendKind) -> (Engine, Arc<FaultInjector>) {
    let faults = FaultInjector::new();
    let options = EngineOptions {
        root: root.to_path_buf(),
        commit: true,
        io: kind,
        postgres: crate::postgres_index(root),
        s3: crate::s3_blobs(root),
    };
    let engine = Engine::open_with_faults(options, Arc::clone(&faults)).expect("engine opens");
    (engine, faults)
}

/// ENOSPC mid-write: the writer fails, the session keeps exactly the bytes that landed,
/// and the client can resume from the reported offset after space is freed. Bytes reach the
/// file in whole 1 MiB O_DIRECT buffers, so the sizes here are in MiB.
async fn enospc_during_write_then_resume(kind: IoBackendKind) {
    const MIB: usize = 1 << 20;
    if crate::skip_on_s3("sessions in the bucket write no staged file") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, faults) = open_faulty(dir.path(), kind);
    let name = repo("full");
    let content: Vec<u8> = (0..3 * MIB + 123).map(|i| (i % 251) as u8).collect();
    let id = engine.start_upload(&name).await.expect("start");
    let mut writer = engine.open_upload(&name, &id).await.expect("open");
    // One buffer written, half a buffer waiting.
    writer
        .write(Bytes::copy_from_slice(&content[..MIB + MIB / 2]))
        .await
        .expect("write");
    faults.fail_once_after(FaultPoint::StagedWrite, 0);
    let error = writer
        .write(Bytes::copy_from_slice(
            &content[MIB + MIB / 2..2 * MIB + MIB / 2],
        ))
        .await
        .expect_err("disk full");
    assert!(matches!(error, StorageError::Io(_)), "{error:?}");
    assert!(
        writer.write(Bytes::from_static(b"x")).await.is_err(),
        "poisoned"
    );
    drop(writer);
    let offset = engine.upload_status(&name, &id).await.expect("status");
    assert_eq!(
        offset as usize,
        MIB + MIB / 2,
        "half of the failed buffer landed"
    );
    let mut writer = engine.open_upload(&name, &id).await.expect("reopen");
    writer
        .write(Bytes::copy_from_slice(&content[offset as usize..]))
        .await
        .expect("resume");
    writer.finish(&sha256(&content)).await.expect("finish");
    assert_clean(&engine).await;
}

/// A failure at each commit step: the blob is either absent or complete, never visible
/// half-way; the index and files stay consistent across a restart.
async fn failure_at_each_commit_step(kind: IoBackendKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = repo("steps");
    for (round, point) in [
        FaultPoint::StagedSync,
        FaultPoint::Rename,
        FaultPoint::DirSync,
        FaultPoint::IndexWrite,
    ]
    .into_iter()
    // Blobs in S3 have no staged fsync, rename or directory fsync: the index write is the
    // one step of theirs here (an object without a record is an orphan, info for fsck).
    .filter(|point| !crate::on_s3() || *point == FaultPoint::IndexWrite)
    .enumerate()
    {
        let content = format!("blob for step {round}").into_bytes();
        let digest = sha256(&content);
        {
            let (engine, faults) = open_faulty(dir.path(), kind);
            let id = engine.start_upload(&name).await.expect("start");
            let mut writer = engine.open_upload(&name, &id).await.expect("open");
            writer
                .write(Bytes::from(content.clone()))
                .await
                .expect("write");
            faults.fail_once_after(point, 0);
            assert!(
                writer.finish(&digest).await.is_err(),
                "{point:?} fails the finish"
            );
            assert_eq!(
                engine.stat_blob(&name, &digest).await.expect("stat"),
                None,
                "{point:?}"
            );
            if crate::on_s3() {
                // The session keeps what it recorded: nothing, as nothing was persisted.
                let writer = engine.open_upload(&name, &id).await.expect("reopen");
                assert_eq!(writer.offset(), 0);
            } else if point == FaultPoint::StagedSync {
                // Before the rename the session survives and can be finished later.
                let writer = engine.open_upload(&name, &id).await.expect("reopen");
                assert_eq!(writer.offset(), content.len() as u64);
                writer.finish(&digest).await.expect("finish after fault");
            } else {
                assert!(matches!(
                    engine.open_upload(&name, &id).await,
                    Err(StorageError::UploadUnknown)
                ));
            }
        }
        // "Crash" and restart: the store is consistent (orphans are info only).
        let engine = open(dir.path(), kind);
        assert_clean(&engine).await;
        assert!(
            files_under(&dir.path().join("uploads")).is_empty(),
            "{point:?}"
        );
    }
}

/// A failed index write during manifest PUT leaves tags and manifests untouched.
async fn failed_manifest_commit_changes_nothing(kind: IoBackendKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, faults) = open_faulty(dir.path(), kind);
    let name = repo("atomic");
    push_blob(&engine, &name, b"config").await;
    let first = image_manifest(b"config", &[], None);
    let first_digest = engine
        .put_manifest(&name, &Reference::Tag(tag("latest")), None, first, &[])
        .await
        .expect("put")
        .digest;
    push_blob(&engine, &name, b"new layer").await;
    let second = image_manifest(b"config", &[b"new layer"], None);
    faults.fail_once_after(FaultPoint::IndexWrite, 0);
    assert!(engine
        .put_manifest(
            &name,
            &Reference::Tag(tag("latest")),
            None,
            second.clone(),
            &[]
        )
        .await
        .is_err());
    let stored = engine
        .get_manifest(&name, &Reference::Tag(tag("latest")))
        .await
        .expect("get")
        .expect("old manifest still tagged");
    assert_eq!(stored.digest, first_digest);
    assert!(engine
        .get_manifest(&name, &Reference::Digest(sha256(&second)))
        .await
        .expect("get")
        .is_none());
    assert_clean(&engine).await;
}

/// fsck finds a flipped byte, a truncated file and a missing file; orphans are info.
async fn fsck_detects_damage(kind: IoBackendKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), kind);
    let name = repo("damaged");
    let flipped = push_blob(&engine, &name, b"flip one byte").await;
    let truncated = push_blob(&engine, &name, b"truncate me").await;
    let missing = push_blob(&engine, &name, b"delete me").await;
    let orphan = sha256(b"orphan");
    crate::write_blob_bytes(&engine, dir.path(), &orphan, b"orphan").await;
    assert_clean(&engine).await;
    let report = engine.fsck().await.expect("fsck");
    assert_eq!(report.blobs_checked, 3);
    assert!(report
        .info
        .iter()
        .any(|line| line.to_string().contains(&orphan.to_string())));

    // Behind the engine's back: in the files, or in the bucket on the S3 suite.
    let root = dir.path();
    let mut bytes = crate::stored_blob_bytes(&engine, &flipped).await;
    bytes[0] ^= 1;
    crate::write_blob_bytes(&engine, root, &flipped, &bytes).await;
    crate::write_blob_bytes(&engine, root, &truncated, b"trunc").await;
    crate::remove_blob_bytes(&engine, root, &missing).await;
    let bad_name = sha256(b"right name");
    crate::write_blob_bytes(&engine, root, &bad_name, b"wrong content").await;
    let report = engine.fsck().await.expect("fsck");
    assert_eq!(report.problems.len(), 4, "{:?}", report.problems);
    for digest in [&flipped, &truncated, &missing] {
        assert!(
            report
                .problems
                .iter()
                .any(|line| line.to_string().contains(&digest.to_string())),
            "{digest} not reported: {:?}",
            report.problems
        );
    }
}

crate::backend_tests!(
    enospc_during_write_then_resume,
    failure_at_each_commit_step,
    failed_manifest_commit_changes_nothing,
    fsck_detects_damage,
);
