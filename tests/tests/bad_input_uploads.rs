//! B1 rows R6-R13 and R18 (reliability plan): bad input on upload sessions: chunk lengths and
//! ranges, session ids, and bodies that never arrive or arrive in part.
//!
//! Each rejection asserts the status, the OCI error code of the body `{"errors":[{"code":..}]}`
//! and, through [`assert_no_state_change`], that the registry is exactly as before.
//!
//! Decisions these tests pin (see the brief in /work/plan): an unknown, foreign, finished or
//! cancelled upload id is 404 BLOB_UPLOAD_UNKNOWN; a chunk that does not continue the session is
//! 416 BLOB_UPLOAD_INVALID with `Range` and `Location`; a Content-Range whose length disagrees
//! with the body is 400; a body that stalls or is cut short commits nothing and the session
//! resumes. R10 (a principal that does not own the session) is `#[ignore]`d until `http.auth`
//! exists.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use berth_tests::api::{
    absolute, code_of, expect_error, expect_status, header, parts, patch_chunk, path_of,
    put_octets, raw_exchange, start_upload, upload_state, with_query, OCTET,
};
use berth_tests::{assert_no_state_change, authed, random_bytes, sha256_digest, Client, Seeded};
use serde_json::json;

// ---- R6-R8: lengths and ranges of upload chunks ---------------------------------------------

#[test]
fn r6_length_mismatch_is_400_and_offset_unchanged() {
    let fx = Seeded::start();
    let data = random_bytes(40);
    let location = fx.session_with("seed", &data[..10]);
    let known = fx.known(&[&sha256_digest(&data)]);
    let full_digest = sha256_digest(&data);
    assert_no_state_change(&fx.berth, &known, || {
        for (range, body) in [("10-30", &data[10..20]), ("10-14", &data[10..20])] {
            let response = fx
                .client
                .patch(&location)
                .header("content-type", OCTET)
                .header("content-range", range)
                .body(body.to_vec())
                .send()
                .expect("PATCH");
            let (status, _, text) = parts(response);
            assert_eq!(
                status,
                400,
                "PATCH Content-Range {range} with {} bytes",
                body.len()
            );
            let code = code_of(&text);
            assert!(
                matches!(
                    code.as_deref(),
                    Some("SIZE_INVALID" | "BLOB_UPLOAD_INVALID")
                ),
                "code {code:?} for Content-Range {range}"
            );
            assert_eq!(
                upload_state(&fx.client, &location),
                (204, Some("0-9".into()))
            );
        }
        let put = fx
            .client
            .put(with_query(&location, &format!("digest={full_digest}")))
            .header("content-type", OCTET)
            .header("content-range", "10-49")
            .body(data[10..20].to_vec())
            .send()
            .expect("PUT");
        let (status, _, text) = parts(put);
        assert_eq!(status, 400, "PUT with Content-Range 10-49 and 10 bytes");
        let code = code_of(&text);
        assert!(
            matches!(
                code.as_deref(),
                Some("SIZE_INVALID" | "BLOB_UPLOAD_INVALID")
            ),
            "{code:?}"
        );
    });
    assert_eq!(fx.head_blob("seed", &full_digest), 404);
}

#[test]
fn r7_out_of_order_chunk_is_416_with_range_and_location() {
    let fx = Seeded::start();
    let data = random_bytes(30);
    let location = fx.session_with("seed", &data[..10]);
    let fresh = start_upload(&fx.client, fx.url(), "seed");
    let known = fx.known(&[&sha256_digest(&data), &sha256_digest(&data[..10])]);
    assert_no_state_change(&fx.berth, &known, || {
        let cases: [(&str, &String, usize, &[u8], &str); 5] = [
            ("gap", &location, 20, &data[20..30], "0-9"),
            ("overlap", &location, 5, &data[5..15], "0-9"),
            ("repeat", &location, 0, &data[..10], "0-9"),
            ("ahead by one", &location, 11, &data[11..20], "0-9"),
            ("first chunk not at 0", &fresh, 5, &data[5..10], "0-0"),
        ];
        for (what, session, start, chunk, range) in cases {
            let response = patch_chunk(&fx.client, session, start, chunk);
            let (headers, _) = expect_error(response, 416, "BLOB_UPLOAD_INVALID");
            assert_eq!(
                header(&headers, "range").as_deref(),
                Some(range),
                "{what}: Range"
            );
            let reported =
                header(&headers, "location").unwrap_or_else(|| panic!("{what}: no Location"));
            assert_eq!(
                path_of(&absolute(fx.url(), &reported)).split('?').next(),
                path_of(session).split('?').next(),
                "{what}: Location names the session"
            );
            assert_eq!(
                upload_state(&fx.client, session),
                (204, Some(range.into())),
                "{what}"
            );
        }
    });
    // The session still continues where it was.
    expect_status(patch_chunk(&fx.client, &location, 10, &data[10..]), 202);
    let digest = sha256_digest(&data);
    let put = fx
        .client
        .put(with_query(&location, &format!("digest={digest}")));
    expect_status(put.send().expect("PUT"), 201);
}

#[test]
fn r8_content_range_syntax_abuse_is_rejected() {
    let fx = Seeded::start();
    let data = random_bytes(20);
    let location = fx.session_with("seed", &data[..10]);
    let long = format!("10-{}", "9".repeat(4096));
    let known = fx.known(&[&sha256_digest(&data)]);
    assert_no_state_change(&fx.berth, &known, || {
        for range in [
            "20-10",
            "-5",
            "10-",
            "a-b",
            "10-18446744073709551616",
            "18446744073709551615-18446744073709551615",
            "10-14,15-19",
            "bytes=10-19",
            long.as_str(),
        ] {
            let response = fx
                .client
                .patch(&location)
                .header("content-type", OCTET)
                .header("content-range", range)
                .body(data[10..].to_vec())
                .send()
                .expect("PATCH");
            let (status, _, body) = parts(response);
            assert!(
                status == 400 || status == 416,
                "Content-Range {range:.40}: status {status}"
            );
            assert_eq!(
                code_of(&body).as_deref(),
                Some("BLOB_UPLOAD_INVALID"),
                "{range:.40}"
            );
            assert_eq!(
                upload_state(&fx.client, &location),
                (204, Some("0-9".into()))
            );
        }
    });
}

// ---- R9-R11: session ids ---------------------------------------------------------------------

/// GET, PATCH, PUT and DELETE on `session` (absolute URL) all answer 404 BLOB_UPLOAD_UNKNOWN
/// (or, when `name_unknown_ok`, NAME_UNKNOWN: the repository itself does not exist).
fn assert_session_unknown(client: &Client, session: &str, name_unknown_ok: bool) {
    let digest = sha256_digest(b"0123456789");
    let requests = [
        ("GET", client.get(session)),
        (
            "PATCH",
            client
                .patch(session)
                .header("content-range", "0-9")
                .body(&b"0123456789"[..]),
        ),
        (
            "PUT",
            client
                .put(with_query(session, &format!("digest={digest}")))
                .body(&b"0123456789"[..]),
        ),
        ("DELETE", client.delete(session)),
    ];
    for (method, request) in requests {
        let (status, _, body) = parts(request.send().expect("send"));
        let code = code_of(&body);
        assert_eq!(status, 404, "{method} {session}: {code:?}");
        let ok = code.as_deref() == Some("BLOB_UPLOAD_UNKNOWN")
            || (name_unknown_ok && code.as_deref() == Some("NAME_UNKNOWN"));
        assert!(ok, "{method} {session}: code {code:?}");
    }
}

#[test]
fn r9_session_of_repo_a_is_unknown_under_repo_b() {
    let fx = Seeded::start();
    let data = random_bytes(20);
    let location = fx.session_with("seed", &data[..10]);
    let known = fx.known(&[&sha256_digest(&data), &sha256_digest(b"0123456789")]);
    assert_no_state_change(&fx.berth, &known, || {
        for (repo, name_unknown_ok) in [("other", false), ("seed/sub", true), ("nothere", true)] {
            let foreign = location.replacen(
                "/v2/seed/blobs/uploads/",
                &format!("/v2/{repo}/blobs/uploads/"),
                1,
            );
            assert_ne!(foreign, location);
            assert_session_unknown(&fx.client, &foreign, name_unknown_ok);
        }
    });
    assert_eq!(
        upload_state(&fx.client, &location),
        (204, Some("0-9".into()))
    );
    expect_status(patch_chunk(&fx.client, &location, 10, &data[10..]), 202);
    let put = fx.client.put(with_query(
        &location,
        &format!("digest={}", sha256_digest(&data)),
    ));
    expect_status(put.send().expect("PUT"), 201);
}

#[test]
fn r10_session_of_another_principal_is_unknown() {
    let all = json!(["read", "create", "update", "delete"]);
    let fx = Seeded::with_auth(json!({"**": {
        "policies": [{"users": ["alice", "bob"], "actions": all}],
        "anonymousPolicy": ["read"],
    }}));
    let alice = authed("alice");
    let bob = authed("bob");
    let data = random_bytes(20);
    let location = start_upload(&alice, fx.url(), "seed");
    expect_status(patch_chunk(&alice, &location, 0, &data[..10]), 202);
    let known = fx.known(&[&sha256_digest(&data), &sha256_digest(b"0123456789")]);
    assert_no_state_change(&fx.berth, &known, || {
        assert_session_unknown(&bob, &location, false);
        // Anonymous may read here: its status request is an unknown session too (its writes
        // are refused before the session is looked at).
        let (status, _, body) = parts(fx.client.get(&location).send().expect("GET"));
        assert_eq!(
            (status, code_of(&body).as_deref()),
            (404, Some("BLOB_UPLOAD_UNKNOWN"))
        );
    });
    assert_eq!(upload_state(&alice, &location), (204, Some("0-9".into())));
}

#[test]
fn r11_malformed_session_ids_are_upload_unknown() {
    let fx = Seeded::start();
    let known = fx.known(&[&sha256_digest(b"0123456789")]);
    let ids = [
        "..".to_string(),
        ".".into(),
        "%2e%2e".into(),
        "%2E%2E%2F%2E%2E%2Fetc".into(),
        "a%2Fb".into(),
        "x".repeat(1000),
        "not-a-uuid".into(),
        "3f2b1c9e-8d7a-4b6c-9e5f-0a1b2c3d4e5f".into(),
        "3F2B1C9E8D7A4B6C9E5F0A1B2C3D4E5F".into(),
        "00000000000000000000000000000000".into(),
        "%00".into(),
    ];
    let digest = sha256_digest(b"0123456789");
    assert_no_state_change(&fx.berth, &known, || {
        for id in &ids {
            let path = format!("/v2/seed/blobs/uploads/{id}");
            let requests = [
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                format!(
                    "PATCH {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {OCTET}\r\n\
                     Content-Range: 0-9\r\nContent-Length: 10\r\n\r\n0123456789"
                ),
                format!(
                    "PUT {path}?digest={digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                     Content-Length: 10\r\n\r\n0123456789"
                ),
                format!("DELETE {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            ];
            for request in requests {
                let (status, text, _) =
                    raw_exchange(&fx.berth.addr, request.as_bytes(), Duration::from_secs(20));
                let method = request.split(' ').next().expect("method");
                assert_eq!(
                    status,
                    Some(404),
                    "{method} session id {id:.40}: {text:.300}"
                );
                let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                assert_eq!(
                    code_of(body.as_bytes()).as_deref(),
                    Some("BLOB_UPLOAD_UNKNOWN"),
                    "{method} {id:.40}"
                );
            }
        }
    });
    // The literal `a/b` is another route shape: never 2xx, nothing changed.
    assert_no_state_change(&fx.berth, &known, || {
        let request =
            "GET /v2/seed/blobs/uploads/a/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let (status, _, _) =
            raw_exchange(&fx.berth.addr, request.as_bytes(), Duration::from_secs(20));
        assert_eq!(status, Some(404), "session id a/b");
    });
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

// ---- R12-R13: bodies that never arrive, or arrive in part -----------------------------------

/// Bytes the files under `dir` occupy: the larger of length and allocated blocks, so both a
/// `set_len` and an `fallocate` from a client-supplied length would show.
fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.expect("dir entry"))
        .map(|e| {
            let meta = e.metadata().expect("stat");
            if meta.is_dir() {
                disk_usage(&e.path())
            } else {
                meta.len().max(meta.blocks() * 512)
            }
        })
        .sum()
}

#[test]
fn r12_huge_content_length_without_body_is_closed_by_body_idle_timeout() {
    let fx = Seeded::with(json!({"http": {"bodyIdleTimeout": "2s"}}));
    let pid = fx.berth.pid().expect("berth runs");
    let location = start_upload(&fx.client, fx.url(), "seed");
    let digest = sha256_digest(b"never sent");
    let known = fx.known(&[&digest]);
    let disk_before = disk_usage(&fx.berth.data_dir);
    let rss_before = rss_kib(pid);
    let targets = [
        ("PATCH", path_of(&location).to_string()),
        (
            "PUT",
            path_of(&with_query(&location, &format!("digest={digest}"))).to_string(),
        ),
        ("POST", format!("/v2/seed/blobs/uploads/?digest={digest}")),
        ("PUT", "/v2/seed/manifests/huge".to_string()),
    ];
    assert_no_state_change(&fx.berth, &known, || {
        for (method, target) in &targets {
            let request = format!(
                "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Type: {OCTET}\r\n\
                 Content-Length: 1000000000000\r\n\r\n"
            );
            let started = Instant::now();
            let (status, text, closed) =
                raw_exchange(&fx.berth.addr, request.as_bytes(), Duration::from_secs(30));
            assert!(
                closed,
                "{method} {target}: connection still open {:?} after the request head",
                started.elapsed()
            );
            assert!(
                status.is_none_or(|s| !(200..300).contains(&s)),
                "{method} {target}: {text:.300}"
            );
        }
    });
    let disk_after = disk_usage(&fx.berth.data_dir);
    assert!(
        disk_after <= disk_before + 4 * 1024 * 1024,
        "data dir grew from {disk_before} to {disk_after} bytes"
    );
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert_eq!(
        upload_state(&fx.client, &location),
        (204, Some("0-0".into()))
    );
    assert_eq!(
        fx.client
            .get(format!("{}/v2/", fx.url()))
            .send()
            .expect("GET /v2/")
            .status(),
        200
    );
}

/// Sends `head` then `sent` bytes of a body whose declared length is larger, half-closes, and
/// waits for the server to finish with the connection.
fn send_truncated(addr: &str, head: &str, sent: &[u8]) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(sent).expect("write partial body");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut sink = Vec::new();
    // Either a 4xx response or a plain close; both end in EOF (or a reset).
    let _ = stream.read_to_end(&mut sink);
    let text = String::from_utf8_lossy(&sink);
    assert!(
        !text.starts_with("HTTP/1.1 2"),
        "truncated body answered with success: {text:.300}"
    );
}

/// Offset of an upload session, polling while the server may still hold it.
fn settled_offset(client: &Client, location: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, range) = upload_state(client, location);
        if status == 204 {
            let range = range.expect("204 upload status carries Range");
            let end: u64 = range
                .strip_prefix("0-")
                .and_then(|e| e.parse().ok())
                .expect("0-N");
            return if end == 0 { 0 } else { end + 1 };
        }
        assert!(
            Instant::now() < deadline,
            "upload status still {status} after a truncated PATCH"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn r13_truncated_body_commits_nothing_and_the_upload_resumes() {
    let fx = Seeded::start();
    let data = random_bytes(300_000);
    let digest = sha256_digest(&data);
    let location = start_upload(&fx.client, fx.url(), "seed");
    let known = fx.known(&[&digest]);
    assert_no_state_change(&fx.berth, &known, || {
        let head = format!(
            "PATCH {} HTTP/1.1\r\nHost: x\r\nContent-Type: {OCTET}\r\nContent-Length: {}\r\n\r\n",
            path_of(&location),
            data.len()
        );
        send_truncated(&fx.berth.addr, &head, &data[..150_000]);
        let head = format!(
            "POST /v2/seed/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n\
             Content-Type: {OCTET}\r\nContent-Length: {}\r\n\r\n",
            data.len()
        );
        send_truncated(&fx.berth.addr, &head, &data[..150_000]);
    });
    assert_eq!(fx.head_blob("seed", &digest), 404);
    let offset = settled_offset(&fx.client, &location);
    assert!(offset <= 150_000, "offset {offset} beyond what was sent");
    let rest = usize::try_from(offset).expect("fits");
    expect_status(patch_chunk(&fx.client, &location, rest, &data[rest..]), 202);
    let put = fx
        .client
        .put(with_query(&location, &format!("digest={digest}")));
    expect_status(put.send().expect("PUT"), 201);
    let url = format!("{}/v2/seed/blobs/{digest}", fx.url());
    let (_, body) = expect_status(fx.client.get(url).send().expect("GET"), 200);
    assert!(body == data, "resumed blob differs from the data");
    let (clean, report) = fx.berth.fsck();
    assert!(clean, "fsck after a truncated upload:\n{report}");
}

// ---- R18: sessions that ended ---------------------------------------------------------------

#[test]
fn r18_finished_or_cancelled_session_is_unknown() {
    let fx = Seeded::start();
    let data = random_bytes(10);
    let digest = sha256_digest(&data);
    let finished = start_upload(&fx.client, fx.url(), "seed");
    let put = put_octets(
        &fx.client,
        with_query(&finished, &format!("digest={digest}")),
        data.clone(),
    );
    expect_status(put, 201);
    let cancelled = fx.session_with("other", b"0123456789");
    expect_status(fx.client.delete(&cancelled).send().expect("DELETE"), 204);
    let known = fx.known(&[&digest, &sha256_digest(b"0123456789")]);
    assert_no_state_change(&fx.berth, &known, || {
        assert_session_unknown(&fx.client, &finished, false);
        assert_session_unknown(&fx.client, &cancelled, false);
    });
}
