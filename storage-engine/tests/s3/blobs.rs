//! Whole blobs: put, exists, (ranged) read, delete, listing, presigned GETs, bad input, and
//! reads with a volume server down.
use std::time::Duration;

use berth_storage::{S3Blobs, S3Options, StorageError};
use bytes::Bytes;
use object_store::{ObjectStoreExt as _, PutPayload};

use super::{bucket, exclusive_bucket, keys, pattern, raw_client, raw_keys, sha256};

#[test]
fn put_exists_read_ranged_read_delete() {
    let Some(bucket) = bucket("/zot-basic/") else {
        return;
    };
    let blobs = super::blobs(&bucket.options);
    let body = pattern(300_000, 1);
    let digest = sha256(&body);
    super::block_on(async {
        assert_eq!(blobs.exists(&digest).await.expect("HEAD"), None);
        assert!(blobs.read(&digest, None).await.expect("GET").is_none());

        let created = blobs.put_once(&digest, Bytes::from(body.clone())).await;
        assert!(created.expect("PUT"), "the first put creates the blob");
        assert_eq!(blobs.exists(&digest).await.expect("HEAD"), Some(300_000));
        // The root directory prefixes every key; slashes around it are ignored.
        assert_eq!(
            raw_keys(&bucket.options, "zot-basic").await,
            [format!("zot-basic/blobs/sha256/{}", digest.hex())]
        );

        let read = blobs
            .read(&digest, None)
            .await
            .expect("GET")
            .expect("present");
        assert_eq!(
            (read.size(), read.start(), read.remaining()),
            (300_000, 0, 300_000)
        );
        assert_eq!(read.into_bytes().await.expect("body"), body);

        let read = blobs
            .read(&digest, Some((1000, 1999)))
            .await
            .expect("ranged GET")
            .expect("present");
        assert_eq!(
            (read.size(), read.start(), read.remaining()),
            (300_000, 1000, 1000)
        );
        assert_eq!(read.into_bytes().await.expect("body"), &body[1000..2000]);
        let last = blobs
            .read(&digest, Some((299_999, 299_999)))
            .await
            .expect("ranged GET")
            .expect("present");
        assert_eq!(last.into_bytes().await.expect("body"), &body[299_999..]);
        // As a stream, for a response body.
        let read = blobs
            .read(&digest, Some((10, 100_009)))
            .await
            .expect("GET")
            .expect("present");
        let mut streamed = Vec::new();
        let mut stream = std::pin::pin!(read.into_stream());
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            streamed.extend_from_slice(&chunk.expect("chunk"));
        }
        assert_eq!(streamed, &body[10..100_010]);

        blobs.delete(&digest).await.expect("DELETE");
        assert_eq!(blobs.exists(&digest).await.expect("HEAD"), None);
        assert!(blobs
            .read(&digest, Some((0, 9)))
            .await
            .expect("GET")
            .is_none());
        blobs
            .delete(&digest)
            .await
            .expect("DELETE of an absent blob is fine");
        assert_eq!(keys(&bucket.options, "").await, Vec::<String>::new());
    });
}

#[test]
fn put_once_twice_is_a_no_op_and_never_replaces() {
    let Some(bucket) = bucket("blobs-put-once") else {
        return;
    };
    let blobs = super::blobs(&bucket.options);
    let body = pattern(5000, 2);
    let digest = sha256(&body);
    super::block_on(async {
        assert!(blobs
            .put_once(&digest, Bytes::from(body.clone()))
            .await
            .expect("PUT"));
        assert!(!blobs
            .put_once(&digest, Bytes::from(body.clone()))
            .await
            .expect("PUT again"));
        let read = blobs
            .read(&digest, None)
            .await
            .expect("GET")
            .expect("present");
        assert_eq!(read.into_bytes().await.expect("body"), body);

        // Bytes that do not hash to the digest are refused before anything is sent.
        let other = pattern(10, 3);
        let other_digest = sha256(&other);
        let refused = blobs
            .put_once(&other_digest, Bytes::from(body.clone()))
            .await;
        assert!(
            matches!(&refused, Err(StorageError::DigestMismatch { expected, .. }) if *expected == other_digest),
            "{refused:?}"
        );
        assert_eq!(blobs.exists(&other_digest).await.expect("HEAD"), None);

        // Whatever sits under a digest is never overwritten (If-None-Match: *): planted
        // bytes stay as they are. (Only a damaged bucket holds such an object.)
        let planted = blobs_key(&bucket.options, &other_digest);
        raw_client(&bucket.options)
            .put(&planted, PutPayload::from_static(b"planted"))
            .await
            .expect("plant");
        assert!(!blobs
            .put_once(&other_digest, Bytes::from(other))
            .await
            .expect("PUT"));
        let read = blobs
            .read(&other_digest, None)
            .await
            .expect("GET")
            .expect("present");
        assert_eq!(read.into_bytes().await.expect("body"), b"planted");
    });
}

fn blobs_key(options: &S3Options, digest: &berth_storage::oci::Digest) -> object_store::path::Path {
    let root = options.root_directory.trim_matches('/');
    let key = format!("blobs/{}/{}", digest.algorithm(), digest.hex());
    object_store::path::Path::from(if root.is_empty() {
        key
    } else {
        format!("{root}/{key}")
    })
}

#[test]
fn listing_pages_through_every_blob_in_key_order() {
    let Some(bucket) = bucket("blobs-list") else {
        return;
    };
    let blobs = super::blobs(&bucket.options);
    super::block_on(async {
        let mut expected = Vec::new();
        for seed in 0..5u64 {
            let body = pattern(100 + seed as usize, seed);
            let digest = sha256(&body);
            blobs
                .put_once(&digest, Bytes::from(body))
                .await
                .expect("PUT");
            expected.push((format!("sha256/{}", digest.hex()), Some(digest), 100 + seed));
        }
        // A key that names no digest (a damaged bucket): listed, for fsck to report.
        raw_client(&bucket.options)
            .put(
                &"blobs-list/blobs/sha256/not-a-digest".into(),
                PutPayload::from_static(b"x"),
            )
            .await
            .expect("plant");
        expected.push(("sha256/not-a-digest".into(), None, 1));
        // Objects outside blobs/ are not listed.
        blobs
            .put_staging(
                &"0123456789abcdef0123456789abcdef".parse().expect("id"),
                "tail",
                Bytes::from_static(b"t"),
            )
            .await
            .expect("staging");
        expected.sort_by(|a, b| a.0.cmp(&b.0));

        let mut listed = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = blobs.list_blobs(after.as_deref(), 2).await.expect("LIST");
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            after = Some(last.name.clone());
            listed.extend(
                page.into_iter()
                    .map(|blob| (blob.name, blob.digest, blob.size)),
            );
        }
        assert_eq!(listed, expected);
    });
}

#[test]
fn presigned_get_serves_the_blob() {
    let Some(bucket) = bucket("blobs-presign") else {
        return;
    };
    let blobs = super::blobs(&bucket.options);
    let body = pattern(70_000, 4);
    let digest = sha256(&body);
    let url = super::block_on(async {
        blobs
            .put_once(&digest, Bytes::from(body.clone()))
            .await
            .expect("PUT");
        assert!(blobs.presign_get(&digest, Duration::ZERO).await.is_err());
        assert!(blobs
            .presign_get(&digest, Duration::from_secs(8 * 24 * 3600))
            .await
            .is_err());
        blobs
            .presign_get(&digest, Duration::from_secs(300))
            .await
            .expect("presign")
    });
    assert!(
        url.query()
            .is_some_and(|query| query.contains("X-Amz-Signature=")),
        "{url}"
    );
    let response = berth_tests::http()
        .get(url.clone())
        .send()
        .expect("presigned GET");
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().expect("body").as_ref(), body.as_slice());
    // Unsigned, the same URL is refused: the signature is what grants access.
    let mut unsigned = url;
    unsigned.set_query(None);
    assert_eq!(
        berth_tests::http()
            .get(unsigned)
            .send()
            .expect("GET")
            .status(),
        403
    );
}

#[test]
fn bad_input_is_refused_clearly() {
    let Some(bucket) = bucket("blobs-bad-input") else {
        return;
    };
    let invalid_input = |result: Result<S3Blobs, StorageError>| match result {
        Err(StorageError::Io(error)) => assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput),
        other => panic!("{other:?}"),
    };
    let mut secure_http = bucket.options.clone();
    secure_http.secure = true;
    invalid_input(S3Blobs::new(secure_http));
    let mut half_credentials = bucket.options.clone();
    half_credentials.secret_key = None;
    invalid_input(S3Blobs::new(half_credentials));
    let mut bad_root = bucket.options.clone();
    bad_root.root_directory = "a//b".into();
    invalid_input(S3Blobs::new(bad_root));
    let mut no_scheme = bucket.options.clone();
    no_scheme.endpoint = no_scheme
        .endpoint
        .map(|e| e.trim_start_matches("http://").to_owned());
    let blobs = S3Blobs::new(no_scheme).expect("host:port takes its scheme from `secure`");

    // The secret never shows in Debug output.
    let debug = format!("{:?}", bucket.options);
    assert!(
        !debug.contains(berth_tests::seaweedfs::SECRET_KEY),
        "{debug}"
    );
    assert!(debug.contains("<redacted>"), "{debug}");
    assert!(!format!("{blobs:?}").contains(berth_tests::seaweedfs::SECRET_KEY));

    let id: berth_storage::oci::UploadId = "00000000000000000000000000000001".parse().expect("id");
    super::block_on(async {
        let missing = sha256(b"never stored");
        assert_eq!(blobs.exists(&missing).await.expect("HEAD"), None);
        assert!(blobs.read(&missing, None).await.expect("GET").is_none());
        assert!(
            blobs.read(&missing, Some((5, 4))).await.is_err(),
            "inverted range"
        );
        assert!(blobs.get_staging(&id, "tail").await.expect("GET").is_none());
        blobs
            .delete_staging(&id, "tail")
            .await
            .expect("absent staging is fine");
        for name in ["", "multipart", "../x", "Tail", &"a".repeat(65)] {
            assert!(
                blobs.put_staging(&id, name, Bytes::new()).await.is_err(),
                "{name:?}"
            );
        }
        let too_large = Bytes::from(vec![0u8; 10 * 1024 * 1024 + 1]);
        assert!(matches!(
            blobs.put_staging(&id, "tail", too_large).await,
            Err(StorageError::TooLarge)
        ));
        // A wrong secret: the server refuses, and it is an I/O error naming the operation.
        let mut wrong = bucket.options.clone();
        wrong.secret_key = Some("not-the-secret".into());
        let refused = S3Blobs::new(wrong).expect("options").exists(&missing).await;
        match refused {
            Err(StorageError::Io(error)) => {
                assert!(error.to_string().contains("S3 HEAD"), "{error}")
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn reads_survive_a_killed_volume_server() {
    let Some(exclusive) = exclusive_bucket("blobs-volume-down") else {
        return;
    };
    let blobs = super::blobs(&exclusive.options);
    let small = pattern(200_000, 5);
    let large = pattern(12 << 20, 6);
    let (small_digest, large_digest) = (sha256(&small), sha256(&large));
    super::block_on(async {
        blobs
            .put_once(&small_digest, Bytes::from(small.clone()))
            .await
            .expect("PUT");
        blobs
            .put_once(&large_digest, Bytes::from(large.clone()))
            .await
            .expect("PUT");
    });
    let key = format!("blobs-volume-down/blobs/sha256/{}", large_digest.hex());
    let holders =
        exclusive.with_cluster(|cluster| cluster.volume_servers_holding(super::BUCKET, &key));
    assert!(
        holders.len() >= 2,
        "replication 001 keeps two copies: {holders:?}"
    );
    exclusive.with_cluster(|cluster| cluster.kill_volume_server(holders[0]));
    // New runtimes, so no connection from before the kill is reused.
    let read_all = |digest| {
        let blobs = blobs.clone();
        super::block_on(async move {
            blobs
                .read(&digest, None)
                .await
                .expect("GET")
                .expect("present")
                .into_bytes()
                .await
                .expect("body")
        })
    };
    assert_eq!(read_all(large_digest.clone()), large);
    assert_eq!(read_all(small_digest.clone()), small);
    let ranged = super::block_on(async {
        blobs
            .read(&large_digest, Some((5 << 20, (6 << 20) - 1)))
            .await
            .expect("GET")
            .expect("present")
            .into_bytes()
            .await
            .expect("body")
    });
    assert_eq!(ranged, &large[5 << 20..6 << 20]);
    exclusive.with_cluster(|cluster| cluster.restart_volume_server(holders[0]));
    assert_eq!(read_all(large_digest), large);
}
