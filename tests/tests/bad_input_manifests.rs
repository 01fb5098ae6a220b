//! B1 rows M1-M7 (reliability plan): manifest PUT bodies that are too large, unparseable,
//! of a confused shape or media type, or not what their digest says.
//!
//! Each rejection asserts the status, the OCI error code of the body and, through
//! [`assert_no_state_change`], that no manifest, tag or blob appeared, moved or vanished.
//!
//! Decisions these tests pin: a body over 4 MiB is 413 MANIFEST_INVALID (exactly 4 MiB is
//! accepted); an unparseable body or a confused shape is MANIFEST_INVALID; a PUT by digest whose
//! body has another digest is DIGEST_INVALID.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use berth_tests::api::{
    code_of, expect_error, expect_status, get_oci_manifest, header, json_bytes, parts,
    sha512_digest, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
use berth_tests::{assert_no_state_change, sha256_digest, Seeded};
use serde_json::json;

const MANIFEST_MAX: usize = 4 * 1024 * 1024;

/// The seeded manifest padded with an annotation so that it is exactly `size` bytes.
fn manifest_of_size(fx: &Seeded, size: usize) -> Vec<u8> {
    let mut manifest = fx.manifest();
    manifest["annotations"] = json!({"pad": ""});
    let base = json_bytes(&manifest).len();
    manifest["annotations"]["pad"] = json!("x".repeat(size - base));
    let bytes = json_bytes(&manifest);
    assert_eq!(bytes.len(), size);
    bytes
}

// ---- M1-M3: size and syntax -----------------------------------------------------------------

/// Streams up to `cap` bytes of body after `head` from a writer thread; returns the response
/// status line (if any) and how many body bytes were written before the server stopped us.
fn stream_body(addr: &str, head: &str, chunked: bool, cap: usize) -> (Option<String>, usize) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone stream");
    let head = head.to_string();
    let handle = std::thread::spawn(move || {
        let mut written = 0usize;
        if writer.write_all(head.as_bytes()).is_err() {
            return written;
        }
        let block = vec![b' '; 64 * 1024];
        while written < cap {
            let result = if chunked {
                writer
                    .write_all(format!("{:x}\r\n", block.len()).as_bytes())
                    .and_then(|()| writer.write_all(&block))
                    .and_then(|()| writer.write_all(b"\r\n"))
            } else {
                writer.write_all(&block)
            };
            if result.is_err() {
                break;
            }
            written += block.len();
        }
        written
    });
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    drop(stream);
    let written = handle.join().expect("writer thread");
    let text = String::from_utf8_lossy(&response);
    (text.lines().next().map(str::to_string), written)
}

/// Writes `head` + `body` from a thread while reading the response here; returns the response.
fn send_concurrently(addr: &str, head: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone stream");
    let request = [head.as_bytes(), body].concat();
    // A write error only means the server stopped reading: the response says why.
    let handle = std::thread::spawn(move || drop(writer.write_all(&request)));
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    drop(stream);
    handle.join().expect("writer thread");
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn m1_manifest_over_4_mib_is_413() {
    let fx = Seeded::start();
    let body = manifest_of_size(&fx, MANIFEST_MAX + 1);
    let digest = sha256_digest(&body);
    assert_no_state_change(&fx.berth, &fx.known(&[&digest]), || {
        // Written from a thread while the response is read: berth answers from Content-Length
        // and closes without draining, so a client that writes first sees EPIPE, not the 413.
        for reference in ["big", digest.as_str()] {
            let head = format!(
                "PUT /v2/seed/manifests/{reference} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Content-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let text = send_concurrently(&fx.berth.addr, &head, &body);
            assert!(text.starts_with("HTTP/1.1 413"), "{reference}: {text:.300}");
            let response_body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            assert_eq!(
                code_of(response_body.as_bytes()).as_deref(),
                Some("MANIFEST_INVALID"),
                "{reference}"
            );
        }
        let cap = 256 * 1024 * 1024;
        for chunked in [true, false] {
            let length = if chunked {
                "Transfer-Encoding: chunked".to_string()
            } else {
                format!("Content-Length: {}", 1u64 << 30)
            };
            let head = format!(
                "PUT /v2/seed/manifests/big HTTP/1.1\r\nHost: x\r\nContent-Type: {OCI_MANIFEST}\r\n\
                 {length}\r\n\r\n"
            );
            let (status_line, written) = stream_body(&fx.berth.addr, &head, chunked, cap);
            let status_line = status_line.unwrap_or_default();
            assert!(
                status_line.starts_with("HTTP/1.1 413"),
                "streamed ({length}): {status_line}"
            );
            assert!(
                written < cap,
                "server kept reading a 1 GiB manifest ({length})"
            );
        }
    });
}

#[test]
fn m2_manifest_of_exactly_4_mib_is_accepted() {
    let fx = Seeded::start();
    let body = manifest_of_size(&fx, MANIFEST_MAX);
    let digest = sha256_digest(&body);
    let (headers, _) = expect_status(fx.put("seed", "big", OCI_MANIFEST, body.clone()), 201);
    assert_eq!(
        header(&headers, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    let response = get_oci_manifest(&fx.client, format!("{}/v2/seed/manifests/big", fx.url()));
    let (_, got) = expect_status(response, 200);
    assert!(got == body, "4 MiB manifest not returned byte-exact");
}

#[test]
fn m3_unparseable_manifest_is_manifest_invalid() {
    let fx = Seeded::start();
    let valid = fx.image.manifest.clone();
    let mut invalid_utf8 = json_bytes(&{
        let mut m = fx.manifest();
        m["annotations"] = json!({"k": "VALUE"});
        m
    });
    let at = invalid_utf8
        .windows(5)
        .position(|w| w == b"VALUE")
        .expect("marker");
    invalid_utf8[at] = 0xff;
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("not JSON", b"this is not json".to_vec()),
        ("null", b"null".to_vec()),
        ("array", b"[]".to_vec()),
        (
            "array of manifest",
            [b"[".as_slice(), &valid, b"]"].concat(),
        ),
        ("empty object", b"{}".to_vec()),
        ("truncated", valid[..valid.len() / 2].to_vec()),
        ("trailing garbage", [valid.as_slice(), b"}"].concat()),
        ("invalid UTF-8", invalid_utf8),
        ("100000 nested [", vec![b'['; 100_000]),
        ("nested objects", "{\"a\":".repeat(50_000).into_bytes()),
        ("nested inside a manifest", {
            let text = String::from_utf8(valid.clone()).expect("utf8");
            text.replacen(
                '{',
                &format!("{{\"deep\":{}1{},", "[".repeat(20_000), "]".repeat(20_000)),
                1,
            )
            .into_bytes()
        }),
    ];
    assert_no_state_change(&fx.berth, &fx.known(&[]), || {
        for (what, body) in bodies {
            let response = fx.put("seed", "v1", OCI_MANIFEST, body);
            let (status, _, text) = parts(response);
            assert_eq!(status, 400, "{what}: {}", String::from_utf8_lossy(&text));
            assert_eq!(
                code_of(&text).as_deref(),
                Some("MANIFEST_INVALID"),
                "{what}"
            );
        }
    });
    assert_eq!(
        fx.client
            .get(format!("{}/v2/", fx.url()))
            .send()
            .expect("GET")
            .status(),
        200
    );
}

// ---- M4-M7: shape, media type and digest -----------------------------------------------------

#[test]
fn m4_m5_m6_confused_manifest_shapes_are_manifest_invalid() {
    let fx = Seeded::start();
    let mut image_with_manifests = fx.manifest();
    image_with_manifests["manifests"] = json!([fx.descriptor_of_image()]);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [fx.descriptor_of_image()],
    });
    let mut index_with_config = index.clone();
    index_with_config["config"] = fx.manifest()["config"].clone();
    let mut index_with_layers = index.clone();
    index_with_layers["layers"] = fx.manifest()["layers"].clone();
    let mut image_without_media_type = fx.manifest();
    image_without_media_type
        .as_object_mut()
        .expect("object")
        .remove("mediaType");
    let mut image_as_docker = fx.manifest();
    image_as_docker["mediaType"] = json!(DOCKER_MANIFEST);
    let cases = [
        (
            "M4 image manifest with manifests",
            OCI_MANIFEST,
            image_with_manifests,
        ),
        ("M5 index with config", OCI_INDEX, index_with_config),
        ("M5 index with layers", OCI_INDEX, index_with_layers),
        (
            "M6 index body sent as image manifest",
            OCI_MANIFEST,
            index.clone(),
        ),
        ("M6 image body sent as index", OCI_INDEX, fx.manifest()),
        (
            "M6 docker mediaType sent as OCI",
            OCI_MANIFEST,
            image_as_docker,
        ),
        (
            "M6 OCI mediaType sent as docker",
            DOCKER_MANIFEST,
            fx.manifest(),
        ),
        (
            "M6 image without mediaType sent as index",
            OCI_INDEX,
            image_without_media_type,
        ),
    ];
    let digests: Vec<String> = cases
        .iter()
        .map(|(_, _, body)| sha256_digest(&json_bytes(body)))
        .collect();
    let extra: Vec<&str> = digests.iter().map(String::as_str).collect();
    assert_no_state_change(&fx.berth, &fx.known(&extra), || {
        for (what, content_type, body) in &cases {
            for reference in ["v1", "new", &sha256_digest(&json_bytes(body))] {
                let response = fx.put("seed", reference, content_type, json_bytes(body));
                let (status, _, text) = parts(response);
                assert_eq!(
                    status,
                    400,
                    "{what} as {reference}: {}",
                    String::from_utf8_lossy(&text)
                );
                assert_eq!(
                    code_of(&text).as_deref(),
                    Some("MANIFEST_INVALID"),
                    "{what}"
                );
            }
        }
    });
}

#[test]
fn m7_put_by_digest_with_other_content_is_digest_invalid() {
    let fx = Seeded::start();
    let mut other = fx.manifest();
    other["annotations"] = json!({"variant": "other"});
    let other = json_bytes(&other);
    let wrong256 = sha256_digest(&other);
    let wrong512 = sha512_digest(&other);
    let body = fx.image.manifest.clone();
    let right512 = sha512_digest(&body);
    let known = fx.known(&[&wrong256, &wrong512, &right512]);
    assert_no_state_change(&fx.berth, &known, || {
        for digest in [&wrong256, &wrong512] {
            expect_error(
                fx.put("seed", digest, OCI_MANIFEST, body.clone()),
                400,
                "DIGEST_INVALID",
            );
            expect_error(
                fx.put("fresh", digest, OCI_MANIFEST, body.clone()),
                400,
                "DIGEST_INVALID",
            );
        }
    });
    // The URL digest's algorithm is the one used: sha512 of the body is accepted.
    let (headers, _) = expect_status(fx.put("seed", &right512, OCI_MANIFEST, body.clone()), 201);
    assert_eq!(
        header(&headers, "docker-content-digest").as_deref(),
        Some(right512.as_str())
    );
    let response = get_oci_manifest(
        &fx.client,
        format!("{}/v2/seed/manifests/{right512}", fx.url()),
    );
    assert_eq!(expect_status(response, 200).1, body);
}
