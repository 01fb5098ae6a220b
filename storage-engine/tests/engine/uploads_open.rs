//! The upload sessions open (`Engine::upload_sessions_open`: the `berth_upload_sessions_open`
//! gauge, the health page's figure): a started session counts until it is finished, cancelled
//! or refused for a bad digest, whichever backend holds it. With blobs in S3 the sessions are
//! in the index, and with a shared (PostgreSQL) index a second node counts them as well.
use berth_storage::oci::{RepoName, UploadId};
use berth_storage::{Engine, EngineOptions, IoBackendKind, StorageError};
use bytes::Bytes;

use crate::{assert_clean, block_on, repo, sha256};

const CONTENT: &[u8] = b"twelve bytes";

async fn sessions_open(engine: &Engine) -> u64 {
    engine.upload_sessions_open().await.expect("count sessions")
}

/// Starts a session and persists [`CONTENT`] into it (a PATCH).
async fn start_with_content(engine: &Engine, r: &RepoName) -> UploadId {
    let id = engine.start_upload(r).await.expect("start");
    let mut writer = engine.open_upload(r, &id).await.expect("open");
    writer
        .write(Bytes::from_static(CONTENT))
        .await
        .expect("write");
    assert_eq!(
        writer.persist().await.expect("persist"),
        CONTENT.len() as u64
    );
    id
}

#[test]
fn a_session_counts_until_it_is_finished_or_cancelled() {
    let dir = tempfile::tempdir().expect("a");
    let a = crate::open(dir.path(), IoBackendKind::Threads);
    // Node b: the same index and bucket, a root of its own; only sessions in the bucket on a
    // shared index are the same sessions on both nodes.
    let dir_b = tempfile::tempdir().expect("b");
    let b = (crate::on_postgres() && crate::on_s3()).then(|| {
        Engine::open(EngineOptions {
            root: dir_b.path().to_path_buf(),
            commit: true,
            io: IoBackendKind::Threads,
            postgres: crate::postgres_index(dir.path()),
            s3: crate::s3_blobs(dir.path()),
        })
        .expect("node b")
    });
    let nodes: Vec<&Engine> = [Some(&a), b.as_ref()].into_iter().flatten().collect();
    let last = *nodes.last().expect("node a");
    block_on(async {
        let r = repo("counted/sessions");
        assert_eq!(sessions_open(&a).await, 0);
        let kept = start_with_content(&a, &r).await;
        for node in &nodes {
            assert_eq!(sessions_open(node).await, 1);
        }

        // Started and cancelled on the last node (b when there are two).
        let cancelled = last.start_upload(&r).await.expect("start");
        assert_eq!(sessions_open(last).await, 2);
        last.cancel_upload(&r, &cancelled).await.expect("cancel");
        assert_eq!(sessions_open(last).await, 1);

        // A finish with the wrong digest deletes the session.
        let refused = start_with_content(&a, &r).await;
        assert_eq!(sessions_open(&a).await, 2);
        let writer = a.open_upload(&r, &refused).await.expect("open");
        assert!(matches!(
            writer.finish(&sha256(b"other bytes")).await,
            Err(StorageError::DigestMismatch { .. })
        ));
        assert_eq!(sessions_open(&a).await, 1);

        let writer = a.open_upload(&r, &kept).await.expect("open");
        let size = writer.finish(&sha256(CONTENT)).await.expect("finish");
        assert_eq!(size, CONTENT.len() as u64);
        assert_eq!(sessions_open(&a).await, 0);
        assert_clean(&a).await;
    });
}
