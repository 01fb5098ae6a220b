//! B1 rows M1-M16 (reliability plan): bad input on manifest PUT (and the tag/digest reading
//! rules of manifest GET).
//!
//! Each rejection asserts the status, the OCI error code of the body and, through
//! [`assert_no_state_change`], that no manifest, tag or blob appeared, moved or vanished.
//!
//! Decisions these tests pin: an invalid tag in the path is 400 MANIFEST_INVALID (zot; there is
//! no TAG_INVALID code in the spec); a body over 4 MiB is 413 MANIFEST_INVALID; a missing config,
//! layer or index child is 400 MANIFEST_BLOB_UNKNOWN naming the digest; a descriptor with a bad
//! size is MANIFEST_INVALID and one with a bad digest MANIFEST_INVALID or DIGEST_INVALID; Docker
//! schema1 is UNSUPPORTED (400 or 415); more than 46 `?tag=` is 414 and a bad tag among them 400,
//! all-or-nothing.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use berth_tests::{
    assert_no_state_change, http, push_blob, push_image, random_bytes, random_image, sha256_digest,
    Berth, Client, Image,
};
use reqwest::blocking::Response;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

// ---- local helpers (shared shape with the other B1 files) ----------------------------------

/// The `code` of the first OCI error in `body`, if it is an OCI error body.
fn code_of(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["errors"][0]["code"].as_str().map(str::to_string)
}

/// Asserts status and OCI error code; returns the headers and body for further checks.
#[track_caller]
fn expect_error(response: Response, status: u16, code: &str) -> (HeaderMap, Vec<u8>) {
    let (got, headers, body) = parts(response);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(got, status, "status (body: {text})");
    assert_eq!(
        code_of(&body).as_deref(),
        Some(code),
        "OCI error code (body: {text})"
    );
    (headers, body)
}

#[track_caller]
fn expect_status(response: Response, status: u16) -> (HeaderMap, Vec<u8>) {
    let (got, headers, body) = parts(response);
    assert_eq!(
        got,
        status,
        "status (body: {})",
        String::from_utf8_lossy(&body)
    );
    (headers, body)
}

fn parts(response: Response) -> (u16, HeaderMap, Vec<u8>) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().expect("read response body").to_vec();
    (status, headers, body)
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_string())
}

/// Percent-encodes every byte outside RFC 3986 "unreserved".
fn pct(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn sha512_digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)))
}

/// A raw HTTP/1.1 exchange: writes `head` + `body`, then reads until EOF or `timeout`.
/// Returns (status if a response line arrived, whole response text, time until EOF or None).
fn raw_exchange(addr: &str, request: &[u8], timeout: Duration) -> (Option<u16>, String, bool) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(timeout)).expect("set timeout");
    // The server may answer and close before everything is written: not an error here.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let mut buffer = [0u8; 16384];
    let deadline = Instant::now() + timeout;
    let closed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    (status, text, closed)
}

// ---- fixture -------------------------------------------------------------------------------

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MANIFEST_MAX: usize = 4 * 1024 * 1024;

struct Fixture {
    berth: Berth,
    client: Client,
    image: Image,
    /// A blob linked in repo `other` only.
    foreign_blob: Vec<u8>,
}

impl Fixture {
    /// berth with image `seed:v1` and one blob in repo `other`.
    fn new() -> Fixture {
        let berth = Berth::start();
        let client = http();
        let image = random_image(1, 1000);
        push_image(&client, &berth.url, "seed", "v1", &image);
        let foreign_blob = random_bytes(321);
        push_blob(&client, &berth.url, "other", &foreign_blob);
        Fixture {
            berth,
            client,
            image,
            foreign_blob,
        }
    }

    fn url(&self) -> &str {
        &self.berth.url
    }

    fn known(&self, extra: &[&str]) -> Vec<String> {
        let mut known = self.image.blob_digests();
        known.push(self.image.digest.clone());
        known.push(sha256_digest(&self.foreign_blob));
        known.extend(extra.iter().map(|d| d.to_string()));
        known
    }

    /// The seeded image manifest as JSON, to be varied by a test.
    fn manifest(&self) -> Value {
        serde_json::from_slice(&self.image.manifest).expect("image manifest is JSON")
    }

    fn put(&self, repo: &str, reference: &str, content_type: &str, body: Vec<u8>) -> Response {
        self.client
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.url()))
            .header("content-type", content_type)
            .body(body)
            .send()
            .expect("PUT manifest")
    }

    fn descriptor_of_image(&self) -> Value {
        json!({"mediaType": OCI_MANIFEST, "digest": self.image.digest, "size": self.image.manifest.len()})
    }
}

fn bytes_of(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialize")
}

/// The seeded manifest padded with an annotation so that it is exactly `size` bytes.
fn manifest_of_size(fx: &Fixture, size: usize) -> Vec<u8> {
    let mut manifest = fx.manifest();
    manifest["annotations"] = json!({"pad": ""});
    let base = bytes_of(&manifest).len();
    manifest["annotations"]["pad"] = json!("x".repeat(size - base));
    let bytes = bytes_of(&manifest);
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
    let fx = Fixture::new();
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
    let fx = Fixture::new();
    let body = manifest_of_size(&fx, MANIFEST_MAX);
    let digest = sha256_digest(&body);
    let (headers, _) = expect_status(fx.put("seed", "big", OCI_MANIFEST, body.clone()), 201);
    assert_eq!(
        header(&headers, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    let response = fx
        .client
        .get(format!("{}/v2/seed/manifests/big", fx.url()))
        .header("accept", OCI_MANIFEST)
        .send()
        .expect("GET");
    let (_, got) = expect_status(response, 200);
    assert!(got == body, "4 MiB manifest not returned byte-exact");
}

#[test]
fn m3_unparseable_manifest_is_manifest_invalid() {
    let fx = Fixture::new();
    let valid = fx.image.manifest.clone();
    let mut invalid_utf8 = bytes_of(&{
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
    let fx = Fixture::new();
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
        .map(|(_, _, body)| sha256_digest(&bytes_of(body)))
        .collect();
    let extra: Vec<&str> = digests.iter().map(String::as_str).collect();
    assert_no_state_change(&fx.berth, &fx.known(&extra), || {
        for (what, content_type, body) in &cases {
            for reference in ["v1", "new", &sha256_digest(&bytes_of(body))] {
                let response = fx.put("seed", reference, content_type, bytes_of(body));
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
    let fx = Fixture::new();
    let mut other = fx.manifest();
    other["annotations"] = json!({"variant": "other"});
    let other = bytes_of(&other);
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
    let response = fx
        .client
        .get(format!("{}/v2/seed/manifests/{right512}", fx.url()))
        .header("accept", OCI_MANIFEST)
        .send()
        .expect("GET");
    assert_eq!(expect_status(response, 200).1, body);
}

// ---- M8-M11: references ---------------------------------------------------------------------

#[test]
fn m8_missing_blob_is_manifest_blob_unknown_and_moves_no_tag() {
    let fx = Fixture::new();
    let foreign = sha256_digest(&fx.foreign_blob);
    let nowhere_bytes = random_bytes(77);
    let nowhere = sha256_digest(&nowhere_bytes);
    let mut foreign_layer = fx.manifest();
    foreign_layer["layers"][0]["digest"] = json!(foreign);
    foreign_layer["layers"][0]["size"] = json!(fx.foreign_blob.len());
    let mut nowhere_layer = fx.manifest();
    nowhere_layer["layers"][0]["digest"] = json!(nowhere);
    nowhere_layer["layers"][0]["size"] = json!(77);
    let mut nowhere_config = fx.manifest();
    nowhere_config["config"]["digest"] = json!(nowhere);
    nowhere_config["config"]["size"] = json!(77);
    let cases = [
        (foreign_layer, &foreign),
        (nowhere_layer, &nowhere),
        (nowhere_config, &nowhere),
    ];
    let manifest_digests: Vec<String> = cases
        .iter()
        .map(|(m, _)| sha256_digest(&bytes_of(m)))
        .collect();
    let mut extra: Vec<&str> = manifest_digests.iter().map(String::as_str).collect();
    extra.push(&nowhere);
    assert_no_state_change(&fx.berth, &fx.known(&extra), || {
        for (manifest, missing) in &cases {
            for reference in ["v1", "new", &sha256_digest(&bytes_of(manifest))] {
                let response = fx.put("seed", reference, OCI_MANIFEST, bytes_of(manifest));
                let (_, body) = expect_error(response, 400, "MANIFEST_BLOB_UNKNOWN");
                let text = String::from_utf8_lossy(&body);
                assert!(
                    text.contains(missing.as_str()),
                    "detail does not name {missing}: {text}"
                );
            }
        }
    });
}

#[test]
fn m9_subject_pointing_at_a_missing_manifest_is_accepted() {
    let fx = Fixture::new();
    let subject = sha256_digest(b"a manifest that was never pushed");
    let mut referrer = fx.manifest();
    referrer["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": 32});
    referrer["artifactType"] = json!("application/vnd.example.signature");
    let body = bytes_of(&referrer);
    let digest = sha256_digest(&body);
    let (headers, _) = expect_status(fx.put("seed", &digest, OCI_MANIFEST, body), 201);
    assert_eq!(
        header(&headers, "oci-subject").as_deref(),
        Some(subject.as_str())
    );
    let response = fx
        .client
        .get(format!("{}/v2/seed/referrers/{subject}", fx.url()))
        .send();
    let (_, index) = expect_status(response.expect("GET referrers"), 200);
    let index: Value = serde_json::from_slice(&index).expect("referrers index");
    assert_eq!(index["manifests"][0]["digest"], json!(digest), "{index}");
}

#[test]
fn m10_index_with_a_missing_child_is_manifest_blob_unknown() {
    let fx = Fixture::new();
    let missing = sha256_digest(b"child manifest never pushed");
    let foreign_child = random_image(1, 10);
    push_image(&fx.client, fx.url(), "other", "child", &foreign_child);
    let index = |digest: &str, size: usize| {
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            fx.descriptor_of_image(),
            {"mediaType": OCI_MANIFEST, "digest": digest, "size": size},
        ]})
    };
    let cases = [
        (index(&missing, 100), missing.clone()),
        (
            index(&foreign_child.digest, foreign_child.manifest.len()),
            foreign_child.digest.clone(),
        ),
    ];
    let digests: Vec<String> = cases
        .iter()
        .map(|(m, _)| sha256_digest(&bytes_of(m)))
        .collect();
    let mut extra: Vec<&str> = digests.iter().map(String::as_str).collect();
    extra.push(&missing);
    extra.push(&foreign_child.digest);
    assert_no_state_change(&fx.berth, &fx.known(&extra), || {
        for (manifest, child) in &cases {
            let (_, body) = expect_error(
                fx.put("seed", "v1", OCI_INDEX, bytes_of(manifest)),
                400,
                "MANIFEST_BLOB_UNKNOWN",
            );
            let text = String::from_utf8_lossy(&body);
            assert!(
                text.contains(child.as_str()),
                "detail does not name {child}: {text}"
            );
        }
    });
}

#[test]
fn m11_bad_descriptors_are_rejected() {
    let fx = Fixture::new();
    let layer_size = fx.image.layers[0].len();
    let variants: Vec<(&str, Value, &[&str])> = vec![
        ("negative size", json!(-1), &["MANIFEST_INVALID"]),
        ("fractional size", json!(1.5), &["MANIFEST_INVALID"]),
        (
            "string size",
            json!(layer_size.to_string()),
            &["MANIFEST_INVALID"],
        ),
        (
            "size larger than the blob",
            json!(layer_size + 1),
            &["MANIFEST_INVALID"],
        ),
        (
            "size smaller than the blob",
            json!(layer_size - 1),
            &["MANIFEST_INVALID"],
        ),
    ];
    let mut cases: Vec<(String, Value, &[&str])> = Vec::new();
    for (what, size, codes) in variants {
        let mut manifest = fx.manifest();
        manifest["layers"][0]["size"] = size;
        cases.push((what.to_string(), manifest, codes));
    }
    let digest_codes: &[&str] = &["MANIFEST_INVALID", "DIGEST_INVALID"];
    let hex = "a".repeat(64);
    for digest in [
        "sha256:xyz".to_string(),
        format!("sha256:{}", &hex[..63]),
        format!("sha256:{}", hex.to_uppercase()),
        format!("md5:{}", &hex[..32]),
        format!("foo:{hex}"),
        hex.clone(),
    ] {
        let mut manifest = fx.manifest();
        manifest["layers"][0]["digest"] = json!(digest);
        cases.push((format!("layer digest {digest}"), manifest, digest_codes));
        let mut manifest = fx.manifest();
        manifest["config"]["digest"] = json!(digest);
        cases.push((format!("config digest {digest}"), manifest, digest_codes));
    }
    let digests: Vec<String> = cases
        .iter()
        .map(|(_, m, _)| sha256_digest(&bytes_of(m)))
        .collect();
    let extra: Vec<&str> = digests.iter().map(String::as_str).collect();
    assert_no_state_change(&fx.berth, &fx.known(&extra), || {
        for (what, manifest, codes) in &cases {
            let (status, _, body) = parts(fx.put("seed", "v1", OCI_MANIFEST, bytes_of(manifest)));
            let code = code_of(&body);
            assert_eq!(status, 400, "{what}: {}", String::from_utf8_lossy(&body));
            assert!(
                code.as_deref().is_some_and(|c| codes.contains(&c)),
                "{what}: code {code:?}"
            );
        }
    });
}

// ---- M12-M16: versions, extensions, tags ----------------------------------------------------

#[test]
fn m12_schema_version_other_than_2_is_rejected() {
    let fx = Fixture::new();
    let mut cases = Vec::new();
    for version in [json!(1), json!(3), json!("2"), json!(null), json!(2.5)] {
        let mut manifest = fx.manifest();
        manifest["schemaVersion"] = version.clone();
        cases.push((format!("schemaVersion {version}"), manifest));
    }
    let mut missing = fx.manifest();
    missing
        .as_object_mut()
        .expect("object")
        .remove("schemaVersion");
    cases.push(("no schemaVersion".into(), missing));
    let schema1 = json!({
        "schemaVersion": 1, "name": "seed", "tag": "v1", "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256_digest(&fx.image.layers[0])}],
        "history": [{"v1Compatibility": "{}"}],
    });
    let mut extra: Vec<String> = cases
        .iter()
        .map(|(_, m)| sha256_digest(&bytes_of(m)))
        .collect();
    extra.push(sha256_digest(&bytes_of(&schema1)));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    assert_no_state_change(&fx.berth, &fx.known(&extra), || {
        for (what, manifest) in &cases {
            let (status, _, body) = parts(fx.put("seed", "v1", OCI_MANIFEST, bytes_of(manifest)));
            assert_eq!(status, 400, "{what}");
            assert_eq!(
                code_of(&body).as_deref(),
                Some("MANIFEST_INVALID"),
                "{what}"
            );
        }
        for content_type in [
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "application/vnd.docker.distribution.manifest.v1+json",
        ] {
            let (status, _, body) = parts(fx.put("seed", "v1", content_type, bytes_of(&schema1)));
            assert!(
                status == 400 || status == 415,
                "schema1 as {content_type}: {status}"
            );
            assert_eq!(
                code_of(&body).as_deref(),
                Some("UNSUPPORTED"),
                "schema1 {content_type}"
            );
        }
    });
}

#[test]
fn m13_unknown_fields_and_media_types_are_stored_byte_exact() {
    let fx = Fixture::new();
    let config = br#"{"custom": "config of an artifact"}"#.to_vec();
    let config_digest = push_blob(&fx.client, fx.url(), "seed", &config);
    let layer_digest = sha256_digest(&fx.image.layers[0]);
    // Hand-written so field order and spacing are ours: the bytes must come back unchanged.
    let body = format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{OCI_MANIFEST}\",\n  \"x-unknown\": {{\"a\": [1, 2, 3]}},\n  \
         \"config\": {{\"mediaType\": \"application/vnd.example.config.v7+json\", \"digest\": \"{config_digest}\", \
         \"size\": {}, \"x-field\": true}},\n  \"layers\": [{{\"mediaType\": \"application/vnd.example.unknown-layer\", \
         \"digest\": \"{layer_digest}\", \"size\": {}, \"urls\": [], \"x-more\": null}}],\n  \"zzz\": 1\n}}\n",
        config.len(),
        fx.image.layers[0].len()
    )
    .into_bytes();
    let digest = sha256_digest(&body);
    let (headers, _) = expect_status(fx.put("seed", "custom", OCI_MANIFEST, body.clone()), 201);
    assert_eq!(
        header(&headers, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    for reference in ["custom", digest.as_str()] {
        let url = format!("{}/v2/seed/manifests/{reference}", fx.url());
        let response = fx
            .client
            .get(url)
            .header("accept", OCI_MANIFEST)
            .send()
            .expect("GET");
        let (headers, got) = expect_status(response, 200);
        assert!(got == body, "manifest {reference} not byte-exact");
        assert_eq!(
            header(&headers, "content-type").as_deref(),
            Some(OCI_MANIFEST)
        );
        assert_eq!(
            header(&headers, "docker-content-digest").as_deref(),
            Some(digest.as_str())
        );
    }
}

fn invalid_tags() -> Vec<String> {
    vec![
        ".x".into(),
        "-x".into(),
        "x".repeat(129),
        "a%2Fb".into(),
        "tag%0A".into(),
        "tag%20x".into(),
        pct("ﬁ"),
        "%00".into(),
        "a%00b".into(),
        "t%C3%A4g".into(),
        "a+b".into(),
        "%2E%2E".into(),
    ]
}

#[test]
fn m14_invalid_tag_in_the_path_is_manifest_invalid() {
    let fx = Fixture::new();
    let body = fx.image.manifest.clone();
    assert_no_state_change(&fx.berth, &fx.known(&[]), || {
        let mut tags = invalid_tags();
        tags.extend(["".into(), "..".into(), ".".into(), "%2e%2e".into()]);
        // Raw requests: an HTTP client would normalise `..`, `%2E%2E` and `.` away.
        for tag in &tags {
            let request = format!(
                "PUT /v2/seed/manifests/{tag} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Content-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let request = [request.as_bytes(), &body].concat();
            let (status, text, _) = raw_exchange(&fx.berth.addr, &request, Duration::from_secs(20));
            let response_body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            assert_eq!(status, Some(400), "tag {tag:.40}: {response_body}");
            assert_eq!(
                code_of(response_body.as_bytes()).as_deref(),
                Some("MANIFEST_INVALID"),
                "tag {tag:.40}"
            );
        }
        // Neither a tag nor a digest.
        let (status, _, text) = parts(fx.put("seed", "a:b", OCI_MANIFEST, body.clone()));
        assert_eq!(status, 400, "tag a:b");
        let code = code_of(&text);
        assert!(
            matches!(code.as_deref(), Some("MANIFEST_INVALID" | "DIGEST_INVALID")),
            "{code:?}"
        );
        // `a/b` is a different route shape: never a success.
        let status = fx
            .put("seed", "a/b", OCI_MANIFEST, body.clone())
            .status()
            .as_u16();
        assert!(!(200..300).contains(&status), "tag a/b: {status}");
    });
    // The boundary: 128 characters is a valid tag.
    let longest = format!("_{}", "x".repeat(127));
    expect_status(fx.put("seed", &longest, OCI_MANIFEST, body), 201);
}

#[test]
fn m15_tag_query_limits_are_all_or_nothing() {
    let fx = Fixture::new();
    let body = fx.image.manifest.clone();
    let digest = fx.image.digest.clone();
    let query = |tags: &[String]| {
        tags.iter()
            .map(|t| format!("tag={t}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let put = |query: &str| {
        fx.put(
            "seed",
            &format!("{digest}?{query}"),
            OCI_MANIFEST,
            body.clone(),
        )
    };
    let forty_seven: Vec<String> = (0..47).map(|i| format!("t{i}")).collect();
    assert_no_state_change(&fx.berth, &fx.known(&[]), || {
        let response = put(&query(&forty_seven));
        assert_eq!(response.status().as_u16(), 414, "47 tags");
        for bad in invalid_tags() {
            let tags = vec!["ok1".to_string(), bad.clone(), "ok2".to_string()];
            let (status, _, text) = parts(put(&query(&tags)));
            assert_eq!(status, 400, "tag {bad:.40} among valid ones");
            assert_eq!(
                code_of(&text).as_deref(),
                Some("MANIFEST_INVALID"),
                "tag {bad:.40}"
            );
        }
        // A tag query on a PUT by tag is not a way around the tag grammar either.
        let (status, _, _) = parts(fx.put("seed", "v1?tag=.bad", OCI_MANIFEST, body.clone()));
        assert!(
            status == 400 || status == 201,
            "PUT by tag with ?tag=.bad: {status}"
        );
    });
    // 46 is the limit and is accepted, each tag echoed in its own OCI-Tag header.
    let forty_six = &forty_seven[..46];
    let (headers, _) = expect_status(put(&query(forty_six)), 201);
    let mut echoed: Vec<String> = headers
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().expect("ASCII").to_string())
        .collect();
    echoed.sort();
    let mut want = forty_six.to_vec();
    want.sort();
    assert_eq!(echoed, want);
    let tags = fx
        .client
        .get(format!("{}/v2/seed/tags/list", fx.url()))
        .send()
        .expect("GET");
    let tags: Value = serde_json::from_slice(&expect_status(tags, 200).1).expect("JSON");
    assert_eq!(
        tags["tags"].as_array().expect("tags").len(),
        47,
        "46 new tags + v1"
    );
}

#[test]
fn m16_64_hex_reference_without_algorithm_is_a_tag() {
    let fx = Fixture::new();
    let hex_tag = fx
        .image
        .digest
        .strip_prefix("sha256:")
        .expect("sha256")
        .to_string();
    let other_hex = "0".repeat(64);
    assert_no_state_change(&fx.berth, &fx.known(&[]), || {
        for reference in [&hex_tag, &other_hex] {
            let url = format!("{}/v2/seed/manifests/{reference}", fx.url());
            let response = fx
                .client
                .get(url)
                .header("accept", OCI_MANIFEST)
                .send()
                .expect("GET");
            expect_error(response, 404, "MANIFEST_UNKNOWN");
        }
    });
    expect_status(
        fx.put("seed", &hex_tag, OCI_MANIFEST, fx.image.manifest.clone()),
        201,
    );
    let url = format!("{}/v2/seed/manifests/{hex_tag}", fx.url());
    let response = fx
        .client
        .get(&url)
        .header("accept", OCI_MANIFEST)
        .send()
        .expect("GET");
    let (headers, body) = expect_status(response, 200);
    assert_eq!(body, fx.image.manifest);
    assert_eq!(
        header(&headers, "docker-content-digest"),
        Some(fx.image.digest.clone())
    );
    let tags = fx
        .client
        .get(format!("{}/v2/seed/tags/list", fx.url()))
        .send()
        .expect("GET");
    let tags: Value = serde_json::from_slice(&expect_status(tags, 200).1).expect("JSON");
    assert!(
        tags["tags"]
            .as_array()
            .expect("tags")
            .contains(&json!(hex_tag)),
        "{tags}"
    );
    let url = format!("{}/v2/seed/manifests/{other_hex}", fx.url());
    let response = fx
        .client
        .get(url)
        .header("accept", OCI_MANIFEST)
        .send()
        .expect("GET");
    expect_error(response, 404, "MANIFEST_UNKNOWN");
}
