//! B1 rows R1-R5 (reliability plan): bad digests on blob uploads.
//!
//! Each rejection asserts the status, the OCI error code of the body `{"errors":[{"code":..}]}`
//! and, through [`assert_no_state_change`], that the registry is exactly as before.
//!
//! Decisions these tests pin (see the brief in /work/plan): a digest that does not match the
//! body, a malformed digest and an unsupported algorithm are all 400 DIGEST_INVALID; sha512 is
//! supported and stored under its own digest; an empty blob is accepted only under the digest
//! of the empty string.

use berth_tests::api::{
    expect_error, expect_error_in, expect_status, header, patch_chunk, pct, post_octets,
    put_octets, sha512_digest, start_upload, with_query,
};
use berth_tests::{assert_no_state_change, random_bytes, sha256_digest, Seeded};

// ---- R1-R5: digests -------------------------------------------------------------------------

#[test]
fn r1_digest_mismatch_is_digest_invalid_and_commits_nothing() {
    let fx = Seeded::start();
    let body = random_bytes(4096);
    let actual = sha256_digest(&body);
    let claimed = sha256_digest(b"something else entirely");
    let known = fx.known(&[&actual, &claimed]);
    for repo in ["seed", "fresh"] {
        assert_no_state_change(&fx.berth, &known, || {
            let monolithic = post_octets(
                &fx.client,
                format!("{}/v2/{repo}/blobs/uploads/?digest={claimed}", fx.url()),
                body.clone(),
            );
            expect_error(monolithic, 400, "DIGEST_INVALID");

            let location = start_upload(&fx.client, fx.url(), repo);
            let put = put_octets(
                &fx.client,
                with_query(&location, &format!("digest={claimed}")),
                body.clone(),
            );
            expect_error(put, 400, "DIGEST_INVALID");

            let location = start_upload(&fx.client, fx.url(), repo);
            expect_status(patch_chunk(&fx.client, &location, 0, &body), 202);
            let put = fx
                .client
                .put(with_query(&location, &format!("digest={claimed}")));
            expect_error(put.send().expect("PUT"), 400, "DIGEST_INVALID");
        });
        for digest in [&actual, &claimed] {
            assert_eq!(
                fx.head_blob(repo, digest),
                404,
                "{digest} in {repo} after mismatch"
            );
        }
    }
}

fn malformed_digests(good_hex: &str) -> Vec<String> {
    let mut upper = good_hex.to_uppercase();
    if upper == good_hex {
        upper = format!("A{}", &good_hex[1..]);
    }
    vec![
        "sha256:xyz".into(),
        format!("sha256:{}", &good_hex[..63]),
        format!("sha256:{good_hex}0"),
        format!("sha256:{upper}"),
        "sha256:".into(),
        ":".into(),
        good_hex.into(),
        format!("SHA256:{good_hex}"),
        format!("sha256:{good_hex}\n"),
        format!("sha256:{good_hex} "),
        format!(" sha256:{good_hex}"),
        "sha256:../../etc/passwd".into(),
        "sha256:%2e%2e%2f%2e%2e%2fetc%2fpasswd".into(),
        format!("sha256:{}\0", &good_hex[..63]),
        format!("sha256:{}", "a".repeat(10_000)),
    ]
}

#[test]
fn r2_malformed_digest_is_digest_invalid() {
    let fx = Seeded::start();
    let body = b"r2 body".to_vec();
    let good = sha256_digest(&body);
    let good_hex = good.strip_prefix("sha256:").expect("sha256").to_string();
    let known = fx.known(&[&good]);
    assert_no_state_change(&fx.berth, &known, || {
        for digest in malformed_digests(&good_hex) {
            let query = format!("digest={}", pct(&digest));
            let shown = digest.escape_debug().to_string();
            let shown = &shown[..shown.len().min(80)];
            let monolithic = post_octets(
                &fx.client,
                format!("{}/v2/seed/blobs/uploads/?{query}", fx.url()),
                body.clone(),
            );
            expect_error_in(
                &format!("monolithic POST digest={shown}"),
                monolithic,
                400,
                "DIGEST_INVALID",
            );

            let location = start_upload(&fx.client, fx.url(), "seed");
            let put = put_octets(&fx.client, with_query(&location, &query), body.clone());
            expect_error_in(
                &format!("final PUT digest={shown}"),
                put,
                400,
                "DIGEST_INVALID",
            );

            let get = fx
                .client
                .get(format!("{}/v2/seed/blobs/{}", fx.url(), pct(&digest)));
            expect_error_in(
                &format!("GET blob {shown}"),
                get.send().expect("GET blob"),
                400,
                "DIGEST_INVALID",
            );
        }
    });
    assert_eq!(fx.head_blob("seed", &good), 404);
}

#[test]
fn r3_unsupported_algorithm_is_digest_invalid() {
    let fx = Seeded::start();
    let body = b"r3 body".to_vec();
    let unsupported = [
        format!("md5:{}", "0".repeat(32)),
        format!("sha1:{}", "a".repeat(40)),
        format!("sha384:{}", "b".repeat(96)),
        format!("foo+bar:{}", "c".repeat(64)),
        format!("sha256+b64u:{}", "d".repeat(43)),
    ];
    let known = fx.known(&[&sha256_digest(&body)]);
    assert_no_state_change(&fx.berth, &known, || {
        for digest in &unsupported {
            let monolithic = post_octets(
                &fx.client,
                format!("{}/v2/seed/blobs/uploads/?digest={}", fx.url(), pct(digest)),
                body.clone(),
            );
            expect_error(monolithic, 400, "DIGEST_INVALID");
            let location = start_upload(&fx.client, fx.url(), "seed");
            let put = put_octets(
                &fx.client,
                with_query(&location, &format!("digest={}", pct(digest))),
                body.clone(),
            );
            expect_error(put, 400, "DIGEST_INVALID");
        }
    });
}

#[test]
fn r4_sha512_upload_is_accepted_and_stored_under_sha512() {
    let fx = Seeded::start();
    let first = random_bytes(3000);
    let digest = sha512_digest(&first);
    let response = post_octets(
        &fx.client,
        format!("{}/v2/seed/blobs/uploads/?digest={digest}", fx.url()),
        first.clone(),
    );
    let (headers, _) = expect_status(response, 201);
    let location = header(&headers, "location").expect("201 Location");
    assert!(
        location.ends_with(&format!("/v2/seed/blobs/{digest}")),
        "Location {location}"
    );

    let second = random_bytes(5000);
    let second_digest = sha512_digest(&second);
    let location = start_upload(&fx.client, fx.url(), "seed");
    expect_status(patch_chunk(&fx.client, &location, 0, &second[..2000]), 202);
    let put = put_octets(
        &fx.client,
        with_query(&location, &format!("digest={second_digest}")),
        second[2000..].to_vec(),
    );
    expect_status(put, 201);

    for (digest, data) in [(&digest, &first), (&second_digest, &second)] {
        let url = format!("{}/v2/seed/blobs/{digest}", fx.url());
        let (headers, _) = expect_status(fx.client.head(&url).send().expect("HEAD"), 200);
        assert_eq!(
            header(&headers, "docker-content-digest").as_deref(),
            Some(digest.as_str())
        );
        assert_eq!(
            header(&headers, "content-length"),
            Some(data.len().to_string())
        );
        let (_, body) = expect_status(fx.client.get(&url).send().expect("GET"), 200);
        assert_eq!(&body, data);
        let hex = digest.strip_prefix("sha512:").expect("sha512");
        let mut files = Vec::new();
        find_files(&fx.berth.data_dir.join("blobs"), hex, &mut files);
        assert!(
            files.iter().any(|p| p.contains("sha512")),
            "blob {digest} not stored under a sha512 path: {files:?}"
        );
    }
    let (clean, report) = fx.berth.fsck();
    assert!(clean, "fsck after sha512 uploads:\n{report}");
}

fn find_files(dir: &std::path::Path, needle: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.map(|e| e.expect("dir entry")) {
        let path = entry.path();
        if path.is_dir() {
            find_files(&path, needle, out);
        } else if path.to_string_lossy().contains(needle) {
            out.push(path.display().to_string());
        }
    }
}

#[test]
fn r5_empty_blob_accepted_only_with_the_empty_digest() {
    let fx = Seeded::start();
    let empty = sha256_digest(b"");
    assert_eq!(
        empty,
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let wrong = sha256_digest(b"x");
    let known = fx.known(&[&empty, &wrong]);
    assert_no_state_change(&fx.berth, &known, || {
        let monolithic = post_octets(
            &fx.client,
            format!("{}/v2/seed/blobs/uploads/?digest={wrong}", fx.url()),
            Vec::new(),
        );
        expect_error(monolithic, 400, "DIGEST_INVALID");
        let location = start_upload(&fx.client, fx.url(), "seed");
        let put = fx
            .client
            .put(with_query(&location, &format!("digest={wrong}")))
            .body(Vec::new())
            .send()
            .expect("PUT");
        expect_error(put, 400, "DIGEST_INVALID");
    });

    let monolithic = post_octets(
        &fx.client,
        format!("{}/v2/seed/blobs/uploads/?digest={empty}", fx.url()),
        Vec::new(),
    );
    expect_status(monolithic, 201);
    let location = start_upload(&fx.client, fx.url(), "other");
    let put = fx
        .client
        .put(with_query(&location, &format!("digest={empty}")))
        .body(Vec::new());
    expect_status(put.send().expect("PUT"), 201);
    for repo in ["seed", "other"] {
        let url = format!("{}/v2/{repo}/blobs/{empty}", fx.url());
        let (headers, body) = expect_status(fx.client.get(url).send().expect("GET"), 200);
        assert!(body.is_empty());
        assert_eq!(header(&headers, "content-length").as_deref(), Some("0"));
    }
}
