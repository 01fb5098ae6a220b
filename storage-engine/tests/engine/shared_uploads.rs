//! Upload sessions in the bucket (blobs in S3, SHARED.md D4): on two engines sharing a
//! PostgreSQL index and a bucket, as two berth nodes, a chunked upload continues on whichever
//! node gets the next chunk, one writer holds a session at a time, and a writer that goes
//! away without a word gives the session up. Without both S3 and PostgreSQL these tests say
//! SKIPPED (the single-node S3 path runs through the whole suite with BERTH_TEST_BLOBS=s3).

use berth_storage::oci::{RepoName, UploadId};
use berth_storage::{Engine, IoBackendKind, StorageError, PART_BYTES};
use bytes::Bytes;

use crate::{assert_clean, block_on, bucket_keys, repo, sha256};

/// Two engines on one index and one bucket (node a's), each with a root of its own.
fn two_nodes() -> Option<(tempfile::TempDir, Engine, Engine)> {
    if !(crate::on_postgres() && crate::on_s3()) {
        eprintln!(
            "SKIPPED: sessions across nodes need BERTH_TEST_INDEX=postgres and BERTH_TEST_BLOBS=s3"
        );
        return None;
    }
    let dir_a = tempfile::tempdir().expect("a");
    let dir_b = tempfile::tempdir().expect("b");
    let options = |root: &std::path::Path| berth_storage::EngineOptions {
        root: root.to_path_buf(),
        commit: true,
        io: IoBackendKind::Threads,
        postgres: crate::postgres_index(dir_a.path()),
        s3: crate::s3_blobs(dir_a.path()),
    };
    let a = Engine::open(options(dir_a.path())).expect("node a");
    let b = Engine::open(options(dir_b.path())).expect("node b");
    // Node b's root only stages monolithic uploads; it goes with the test.
    std::mem::forget(dir_b);
    Some((dir_a, a, b))
}

/// Deterministic bytes that differ from chunk to chunk.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4099) as u8).collect()
}

async fn send(engine: &Engine, r: &RepoName, id: &UploadId, chunk: &[u8]) -> u64 {
    let mut writer = engine.open_upload(r, id).await.expect("open");
    writer
        .write(Bytes::copy_from_slice(chunk))
        .await
        .expect("write");
    writer.persist().await.expect("persist")
}

#[test]
fn chunks_sent_to_two_nodes_in_turn_make_one_blob() {
    let Some((dir, a, b)) = two_nodes() else {
        return;
    };
    block_on(async {
        let r = repo("shared/chunks");
        // 3 MiB chunks: tails below S3's 5 MiB minimum, parts once 8 MiB gathered, chunks
        // that end inside a part.
        let data = content(20 * 1024 * 1024 + 12345);
        let id = a.start_upload(&r).await.expect("start on a");
        let mut offset = 0;
        for (turn, chunk) in data.chunks(3 << 20).enumerate() {
            let (here, there) = if turn % 2 == 0 { (&a, &b) } else { (&b, &a) };
            offset = send(here, &r, &id, chunk).await;
            assert_eq!(there.upload_status(&r, &id).await.expect("status"), offset);
        }
        assert_eq!(offset, data.len() as u64);
        let digest = sha256(&data);
        let writer = b.open_upload(&r, &id).await.expect("open for the PUT");
        assert_eq!(writer.finish(&digest).await.expect("finish"), offset);
        assert_eq!(crate::stored_blob_bytes(&a, &digest).await, data);
        assert_eq!(a.stat_blob(&r, &digest).await.expect("stat"), Some(offset));
        assert!(matches!(
            a.upload_status(&r, &id).await,
            Err(StorageError::UploadUnknown)
        ));
        // The session left nothing behind: no tail, no assembled object.
        assert_eq!(
            bucket_keys(dir.path(), "uploads").await,
            Vec::<String>::new()
        );
        assert_clean(&a).await;
    });
}

#[test]
fn one_writer_at_a_time_and_a_dropped_writer_gives_the_session_up() {
    let Some((dir, a, b)) = two_nodes() else {
        return;
    };
    block_on(async {
        let r = repo("shared/lease");
        let data = content(PART_BYTES as usize + (1 << 20));
        let id = a.start_upload(&r).await.expect("start");
        let mut writer = a.open_upload(&r, &id).await.expect("open on a");
        writer
            .write(Bytes::copy_from_slice(&data))
            .await
            .expect("write");
        // Held on a: busy on b, and on a for a second writer; cancel is refused too.
        assert!(matches!(
            b.open_upload(&r, &id).await,
            Err(StorageError::UploadBusy)
        ));
        assert!(matches!(
            a.open_upload(&r, &id).await,
            Err(StorageError::UploadBusy)
        ));
        assert!(matches!(
            b.cancel_upload(&r, &id).await,
            Err(StorageError::UploadBusy)
        ));
        // The client goes away: the writer is dropped without persist. The full part it
        // sent is recorded; the 1 MiB after it was never acknowledged.
        drop(writer);
        let mut resumed = None;
        for _ in 0..200 {
            match b.open_upload(&r, &id).await {
                Ok(writer) => {
                    resumed = Some(writer);
                    break;
                }
                Err(StorageError::UploadBusy) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
                Err(other) => panic!("reopen on b: {other:?}"),
            }
        }
        let mut writer = resumed.expect("the dropped writer's lease was given up");
        assert_eq!(writer.offset(), PART_BYTES);
        writer
            .write(Bytes::copy_from_slice(&data[PART_BYTES as usize..]))
            .await
            .expect("write the rest");
        let digest = sha256(&data);
        writer.finish(&digest).await.expect("finish on b");
        assert_eq!(crate::stored_blob_bytes(&b, &digest).await, data);
        assert_eq!(
            bucket_keys(dir.path(), "uploads").await,
            Vec::<String>::new()
        );
        assert_clean(&a).await;
    });
}

#[test]
fn a_wrong_digest_deletes_the_session_and_a_cancel_its_objects() {
    let Some((dir, a, b)) = two_nodes() else {
        return;
    };
    block_on(async {
        let r = repo("shared/refused");
        let data = content(PART_BYTES as usize + 4096);
        let id = a.start_upload(&r).await.expect("start");
        send(&a, &r, &id, &data).await;
        let writer = b.open_upload(&r, &id).await.expect("open on b");
        let wrong = sha256(b"something else");
        assert!(matches!(
            writer.finish(&wrong).await,
            Err(StorageError::DigestMismatch { .. })
        ));
        assert!(matches!(
            a.upload_status(&r, &id).await,
            Err(StorageError::UploadUnknown)
        ));
        assert_eq!(crate::stored_blob_count(dir.path()).await, 0);
        // A session with a part and a tail, cancelled from the other node.
        let id = a.start_upload(&r).await.expect("start");
        send(&a, &r, &id, &data).await;
        assert!(!bucket_keys(dir.path(), "uploads").await.is_empty());
        b.cancel_upload(&r, &id).await.expect("cancel on b");
        assert!(matches!(
            a.open_upload(&r, &id).await,
            Err(StorageError::UploadUnknown)
        ));
        assert_eq!(
            bucket_keys(dir.path(), "uploads").await,
            Vec::<String>::new()
        );
        assert_clean(&a).await;
    });
}
