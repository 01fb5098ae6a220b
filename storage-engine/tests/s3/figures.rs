//! Measured figures of the blob layer on SeaweedFS on loopback (printed, never asserted):
//! `cargo test -p berth-storage --test s3 -- --ignored --nocapture figures`.
use std::time::Instant;

use berth_storage::oci::{Algorithm, UploadId};
use berth_storage::HashState;
use bytes::Bytes;

use super::{bucket, pattern, sha256};

const MIB: usize = 1 << 20;

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn figures() {
    let Some(bucket) = bucket("figures") else {
        return;
    };
    let blobs = super::blobs(&bucket.options);
    super::block_on(async {
        // 64 MiB in 8 MiB parts: parts, then completion (assemble + copy into blobs/).
        let body = pattern(64 * MIB, 1);
        let digest = sha256(&body);
        let started = Instant::now();
        let upload = blobs.begin(&UploadId::random()).await.expect("begin");
        let mut parts = Vec::new();
        let mut hash = HashState::new(Algorithm::Sha256).expect("resumable");
        for (index, chunk) in body.chunks(8 * MIB).enumerate() {
            hash.update(chunk);
            let number = u32::try_from(index + 1).expect("few parts");
            parts.push(
                blobs
                    .put_part(&upload, number, Bytes::copy_from_slice(chunk))
                    .await
                    .expect("part"),
            );
        }
        let parts_time = started.elapsed();
        let assembled = Instant::now();
        let size = blobs.assemble(&upload, &parts).await.expect("assemble");
        let assemble_time = assembled.elapsed();
        let installed = Instant::now();
        blobs
            .install(upload.upload_id(), &digest, size)
            .await
            .expect("install");
        let install_time = installed.elapsed();
        eprintln!(
            "64 MiB in 8 MiB parts: parts {parts_time:?}, complete {assemble_time:?}, \
             copy into blobs/ {install_time:?}, total {:?}",
            started.elapsed()
        );
        let started = Instant::now();
        let read = blobs
            .read(&digest, None)
            .await
            .expect("GET")
            .expect("present");
        let len = read.into_bytes().await.expect("body").len();
        eprintln!("64 MiB GET: {:?} ({len} bytes)", started.elapsed());
        let started = Instant::now();
        let one = Bytes::from(body.clone());
        blobs.put_once(&digest, one).await.expect("PUT");
        eprintln!(
            "64 MiB put_once of an existing blob (hash + refused PUT): {:?}",
            started.elapsed()
        );

        // Small objects, one after another on one connection.
        const COUNT: usize = 300;
        let small: Vec<Vec<u8>> = (0..COUNT).map(|i| pattern(4096, 1000 + i as u64)).collect();
        let digests: Vec<_> = small.iter().map(|body| sha256(body)).collect();
        let started = Instant::now();
        for (body, digest) in small.iter().zip(&digests) {
            blobs
                .put_once(digest, Bytes::from(body.clone()))
                .await
                .expect("PUT");
        }
        let put_time = started.elapsed();
        let started = Instant::now();
        for digest in &digests {
            let read = blobs
                .read(digest, None)
                .await
                .expect("GET")
                .expect("present");
            read.into_bytes().await.expect("body");
        }
        let get_time = started.elapsed();
        let started = Instant::now();
        for digest in &digests {
            blobs.exists(digest).await.expect("HEAD");
        }
        let head_time = started.elapsed();
        let rate = |time: std::time::Duration| COUNT as f64 / time.as_secs_f64();
        eprintln!(
            "{COUNT} x 4 KiB, sequential: PUT {:.0}/s, GET {:.0}/s, HEAD {:.0}/s",
            rate(put_time),
            rate(get_time),
            rate(head_time)
        );
    });
}
