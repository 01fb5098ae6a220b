//! Multipart uploads that move between "nodes" (threads with their own runtimes and clients),
//! what completion refuses, abort, and what SeaweedFS itself does with conditional copies and
//! small parts.
use berth_storage::oci::{Algorithm, UploadId};
use berth_storage::{HashState, PartRecord, S3Upload, StorageError, MIN_PART_BYTES};
use bytes::Bytes;
use object_store::multipart::MultipartStore as _;
use object_store::{ObjectStoreExt as _, PutPayload};

use super::{bucket, keys, on_thread, pattern, sha256};

const PART: usize = MIN_PART_BYTES as usize;

/// What a session record holds between chunks: all of it plain bytes.
#[derive(Clone)]
struct Record {
    upload: Vec<u8>,
    parts: Vec<u8>,
    hash: Vec<u8>,
}

#[test]
fn an_upload_moves_between_four_runtime_threads() {
    let Some(bucket) = bucket("multipart-move") else {
        return;
    };
    let blobs = super::blobs(&bucket.options);
    let chunks = [
        pattern(PART, 10),
        pattern(PART + 4096, 11),
        pattern(777, 12),
    ];
    let whole = chunks.concat();
    let digest = sha256(&whole);
    let id = UploadId::random();

    // Node A begins.
    let mut record = on_thread(|| async {
        let upload = blobs.begin(&id).await.expect("begin");
        let hash = HashState::new(Algorithm::Sha256).expect("resumable");
        Record {
            upload: upload.encode(),
            parts: PartRecord::encode_list(&[]),
            hash: hash.encode(),
        }
    });
    // Nodes B and C each take a chunk, resuming from the record and writing it back.
    let put_chunk = |record: Record, number: u32, chunk: &[u8]| {
        on_thread(|| async {
            let upload = S3Upload::decode(&record.upload).expect("upload record");
            let mut parts = PartRecord::decode_list(&record.parts).expect("parts");
            let mut hash = HashState::decode(&record.hash).expect("hash state");
            let part = blobs
                .put_part(&upload, number, Bytes::copy_from_slice(chunk))
                .await
                .expect("UploadPart");
            assert_eq!(part.number, number);
            assert_eq!(part.len, chunk.len() as u64);
            hash.update(chunk);
            parts.push(part);
            Record {
                upload: record.upload,
                parts: PartRecord::encode_list(&parts),
                hash: hash.encode(),
            }
        })
    };
    record = put_chunk(record, 1, &chunks[0]);
    record = put_chunk(record, 2, &chunks[1]);
    // The last chunk is below 5 MiB: it waits in a staging object, which node C reads back
    // at finish and sends as the last part.
    on_thread(|| async {
        blobs
            .put_staging(&id, "tail", Bytes::copy_from_slice(&chunks[2]))
            .await
            .expect("staging tail");
    });
    let size = on_thread(|| async {
        let tail = blobs
            .get_staging(&id, "tail")
            .await
            .expect("GET")
            .expect("tail");
        assert_eq!(tail.as_ref(), chunks[2].as_slice());
        let record = {
            let mut hash = HashState::decode(&record.hash).expect("hash state");
            hash.update(&tail);
            Record {
                hash: hash.encode(),
                ..record
            }
        };
        let upload = S3Upload::decode(&record.upload).expect("upload record");
        let mut parts = PartRecord::decode_list(&record.parts).expect("parts");
        parts.push(blobs.put_part(&upload, 3, tail).await.expect("last part"));
        blobs
            .delete_staging(&id, "tail")
            .await
            .expect("delete tail");
        let hash = HashState::decode(&record.hash).expect("hash state");
        // Node D finishes: the digest verifies from the resumed state.
        blobs
            .complete(&upload, &parts, &hash, &digest)
            .await
            .expect("complete")
    });
    assert_eq!(size, whole.len() as u64);
    super::block_on(async {
        assert_eq!(blobs.exists(&digest).await.expect("HEAD"), Some(size));
        let read = blobs
            .read(&digest, None)
            .await
            .expect("GET")
            .expect("present");
        assert_eq!(read.into_bytes().await.expect("body"), whole);
        // Only the blob is left: the session's objects are gone.
        assert_eq!(
            keys(&bucket.options, "").await,
            [format!("blobs/sha256/{}", digest.hex())]
        );
    });
    assert!(
        blobs.clients_built() >= 5,
        "one client per runtime thread and the checking one"
    );
}

/// A second upload of a blob that exists completes without touching it.
#[test]
fn completing_an_existing_blob_keeps_it() {
    let Some(bucket) = bucket("multipart-existing") else {
        return;
    };
    let blobs = super::blobs(&bucket.options);
    let body = pattern(PART + 10, 20);
    let digest = sha256(&body);
    super::block_on(async {
        for round in 0..2 {
            let id = UploadId::random();
            let upload = blobs.begin(&id).await.expect("begin");
            let part = blobs
                .put_part(&upload, 1, Bytes::from(body.clone()))
                .await
                .expect("part");
            let mut hash = HashState::new(Algorithm::Sha256).expect("resumable");
            hash.update(&body);
            let size = blobs
                .complete(&upload, std::slice::from_ref(&part), &hash, &digest)
                .await;
            assert_eq!(size.expect("complete"), body.len() as u64, "round {round}");
            // Completing again (a node died before recording the completion) is fine.
            blobs
                .complete(&upload, &[part], &hash, &digest)
                .await
                .expect("complete again");
        }
        assert_eq!(
            keys(&bucket.options, "").await,
            [format!("blobs/sha256/{}", digest.hex())]
        );
        let read = blobs
            .read(&digest, None)
            .await
            .expect("GET")
            .expect("present");
        assert_eq!(read.into_bytes().await.expect("body"), body);
    });
}

/// Two writers that both believe they hold a session (one whose node lost its database
/// connection, SHARED.md D4) may send the same part number. The part record names the ETag of
/// the bytes the session's hash covers; completing with it must either fail (AWS: InvalidPart)
/// or assemble exactly those bytes (SeaweedFS keeps each upload of a part and assembles the
/// one whose ETag is listed), never the other writer's bytes under the verified digest.
#[test]
fn a_part_replaced_after_it_was_recorded_never_reaches_the_blob() {
    let Some(bucket) = bucket("multipart-replaced") else {
        return;
    };
    let blobs = super::blobs(&bucket.options);
    let recorded = pattern(PART, 30);
    let stray = pattern(PART, 31);
    let tail = pattern(1000, 32);
    super::block_on(async {
        let id = UploadId::random();
        let upload = blobs.begin(&id).await.expect("begin");
        let first = blobs
            .put_part(&upload, 1, Bytes::from(recorded.clone()))
            .await
            .expect("part 1");
        // The stray writer's part 1 lands after the record was made.
        blobs
            .put_part(&upload, 1, Bytes::from(stray.clone()))
            .await
            .expect("stray part 1");
        let last = blobs
            .put_part(&upload, 2, Bytes::from(tail.clone()))
            .await
            .expect("part 2");
        let mut hash = HashState::new(Algorithm::Sha256).expect("resumable");
        hash.update(&recorded);
        hash.update(&tail);
        let whole = [recorded.clone(), tail.clone()].concat();
        let digest = sha256(&whole);
        match blobs
            .complete(&upload, &[first, last], &hash, &digest)
            .await
        {
            Ok(size) => {
                assert_eq!(size, whole.len() as u64);
                let read = blobs.read(&digest, None).await.expect("GET").expect("blob");
                assert!(
                    read.into_bytes().await.expect("body") == whole,
                    "stray bytes"
                );
            }
            Err(_) => assert!(blobs.exists(&digest).await.expect("HEAD").is_none()),
        }
        blobs.abort(&upload).await.expect("abort");
    });
}

#[test]
fn completion_refuses_what_s3_cannot_complete_and_a_wrong_digest() {
    let Some(bucket) = bucket("multipart-refused") else {
        return;
    };
    let blobs = super::blobs(&bucket.options);
    let small = pattern(1 << 20, 30);
    let large = pattern(PART, 31);
    let whole = [small.as_slice(), large.as_slice()].concat();
    let digest = sha256(&whole);
    super::block_on(async {
        let upload = blobs.begin(&UploadId::random()).await.expect("begin");
        let first = blobs
            .put_part(&upload, 1, Bytes::from(small))
            .await
            .expect("part 1");
        let second = blobs
            .put_part(&upload, 2, Bytes::from(large.clone()))
            .await
            .expect("part 2");
        let mut hash = HashState::new(Algorithm::Sha256).expect("resumable");
        hash.update(&whole);

        // A part below 5 MiB that is not the last: refused before S3 is asked.
        let parts = [first.clone(), second.clone()];
        match blobs.complete(&upload, &parts, &hash, &digest).await {
            Err(StorageError::Corrupt(message)) => {
                assert!(message.contains("part 1 is 1048576 bytes"), "{message}");
                assert!(message.contains("at least 5242880"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // Parts out of order or missing.
        for parts in [vec![second.clone(), first.clone()], vec![second.clone()]] {
            let refused = blobs.assemble(&upload, &parts).await;
            assert!(
                matches!(refused, Err(StorageError::Corrupt(_))),
                "{refused:?}"
            );
        }
        assert_eq!(keys(&bucket.options, "blobs").await, Vec::<String>::new());

        // SeaweedFS refuses such a completion too (EntityTooSmall), asked directly.
        let raw = super::raw_client(&bucket.options);
        let path =
            object_store::path::Path::from(format!("multipart-refused/raw/{}", upload.upload_id()));
        let id = raw.create_multipart(&path).await.expect("create");
        let mut ids = Vec::new();
        for (index, bytes) in [pattern(1 << 20, 32), large.clone()]
            .into_iter()
            .enumerate()
        {
            ids.push(
                raw.put_part(&path, &id, index, bytes.into())
                    .await
                    .expect("part"),
            );
        }
        let direct = raw.complete_multipart(&path, &id, ids).await;
        assert!(
            direct.is_err(),
            "SeaweedFS completed a small middle part: {direct:?}"
        );
        eprintln!(
            "SeaweedFS on a 1 MiB middle part: {}",
            direct.expect_err("refused")
        );
        raw.abort_multipart(&path, &id).await.expect("abort");

        // A single part upload whose hash says another digest: nothing is assembled.
        let upload = blobs.begin(&UploadId::random()).await.expect("begin");
        let part = blobs
            .put_part(&upload, 1, Bytes::from(large.clone()))
            .await
            .expect("part");
        let mut wrong = HashState::new(Algorithm::Sha256).expect("resumable");
        wrong.update(&large[..large.len() - 1]);
        wrong.update(b"?");
        let refused = blobs
            .complete(
                &upload,
                std::slice::from_ref(&part),
                &wrong,
                &sha256(&large),
            )
            .await;
        assert!(
            matches!(refused, Err(StorageError::DigestMismatch { .. })),
            "{refused:?}"
        );
        // A state that hashed a different length than the parts hold.
        let mut short = HashState::new(Algorithm::Sha256).expect("resumable");
        short.update(&large[1..]);
        let refused = blobs
            .complete(
                &upload,
                std::slice::from_ref(&part),
                &short,
                &sha256(&large),
            )
            .await;
        assert!(
            matches!(refused, Err(StorageError::Corrupt(_))),
            "{refused:?}"
        );
        assert_eq!(keys(&bucket.options, "blobs").await, Vec::<String>::new());

        // The blake3 path: assemble, hash the assembled object, install.
        let size = blobs.assemble(&upload, &[part]).await.expect("assemble");
        assert_eq!(
            blobs.exists(&sha256(&large)).await.expect("HEAD"),
            None,
            "not yet a blob"
        );
        let blake3 = blobs
            .digest_assembled(upload.upload_id(), Algorithm::Blake3)
            .await
            .expect("hash the assembled object");
        assert_eq!(
            blake3,
            berth_storage::oci::Digest::of(Algorithm::Blake3, &large)
        );
        blobs
            .install(upload.upload_id(), &blake3, size)
            .await
            .expect("install");
        let read = blobs
            .read(&blake3, Some((0, 9)))
            .await
            .expect("GET")
            .expect("present");
        assert_eq!(read.into_bytes().await.expect("body"), &large[..10]);

        // Corrupt records.
        for bytes in [&b""[..], b"\x01", b"\x01\x00\x02garbage"] {
            assert!(matches!(
                PartRecord::decode_list(bytes),
                Err(StorageError::Corrupt(_))
            ));
            assert!(matches!(
                S3Upload::decode(bytes),
                Err(StorageError::Corrupt(_))
            ));
            assert!(matches!(
                HashState::decode(bytes),
                Err(StorageError::Corrupt(_))
            ));
        }
    });
}

#[test]
fn abort_leaves_nothing_behind() {
    let Some(bucket) = bucket("multipart-abort") else {
        return;
    };
    let blobs = super::blobs(&bucket.options);
    let body = pattern(PART, 40);
    super::block_on(async {
        let id = UploadId::random();
        let upload = blobs.begin(&id).await.expect("begin");
        let part = blobs
            .put_part(&upload, 1, Bytes::from(body.clone()))
            .await
            .expect("part");
        blobs
            .put_staging(&id, "tail", Bytes::from_static(b"tail"))
            .await
            .expect("tail");
        assert_eq!(
            keys(&bucket.options, "").await,
            [format!("uploads/{id}/tail")]
        );
        blobs.abort(&upload).await.expect("abort");
        blobs.abort(&upload).await.expect("abort again is fine");
        assert_eq!(keys(&bucket.options, "").await, Vec::<String>::new());
        assert!(blobs.list_blobs(None, 10).await.expect("LIST").is_empty());
        let mut hash = HashState::new(Algorithm::Sha256).expect("resumable");
        hash.update(&body);
        let refused = blobs
            .complete(&upload, &[part], &hash, &sha256(&body))
            .await;
        assert!(
            refused.is_err(),
            "an aborted upload cannot complete: {refused:?}"
        );
        assert_eq!(keys(&bucket.options, "").await, Vec::<String>::new());
    });
}

/// What SeaweedFS does with a conditional copy onto an existing key (`If-None-Match: *` on
/// CopyObject, which `install` sends, and object_store's multipart-copy mode), pinned so that
/// an upgrade that changes it is noticed.
#[test]
fn seaweedfs_conditional_copy() {
    let Some(bucket) = bucket("multipart-copy-probe") else {
        return;
    };
    use object_store::aws::S3CopyIfNotExists;
    let header = super::raw_client(&bucket.options);
    super::block_on(async {
        let (from, to) = (
            "multipart-copy-probe/from".into(),
            "multipart-copy-probe/to".into(),
        );
        header
            .put(&from, PutPayload::from_static(b"new"))
            .await
            .expect("PUT");
        header
            .put(&to, PutPayload::from_static(b"old"))
            .await
            .expect("PUT");
        let mut results = Vec::new();
        for mode in [
            S3CopyIfNotExists::Header("If-None-Match".into(), "*".into()),
            S3CopyIfNotExists::Multipart,
        ] {
            let client = object_store::aws::AmazonS3Builder::new()
                .with_endpoint(bucket.options.endpoint.clone().expect("endpoint"))
                .with_allow_http(true)
                .with_region(&bucket.options.region)
                .with_access_key_id(bucket.options.access_key.clone().expect("key"))
                .with_secret_access_key(bucket.options.secret_key.clone().expect("secret"))
                .with_bucket_name(&bucket.options.bucket)
                .with_copy_if_not_exists(mode.clone())
                .build()
                .expect("client");
            let copied = client.copy_if_not_exists(&from, &to).await;
            let after = client
                .get(&to)
                .await
                .expect("GET")
                .bytes()
                .await
                .expect("body");
            header
                .put(&to, PutPayload::from_static(b"old"))
                .await
                .expect("PUT");
            eprintln!("SeaweedFS copy_if_not_exists ({mode}): {copied:?}, target now {after:?}");
            results.push((copied.is_ok(), after.to_vec()));
        }
        // Both refuse (412) and leave the existing object as it was.
        assert_eq!(
            results,
            [(false, b"old".to_vec()), (false, b"old".to_vec())]
        );
    });
}
