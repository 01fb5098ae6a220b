//! B1 rows N1-N7 (reliability plan): repository names, listing parameters and oversized
//! request heads.
//!
//! Requests whose path an HTTP client would normalise (`..`, `.`, `//`) go over a raw
//! `TcpStream`. Decisions these tests pin: an invalid name is 400 NAME_INVALID on every route
//! (never 2xx, never a 404 from a router mismatch); names are at most 255 characters; `n`
//! negative or not a number is 400 PAGINATION_NUMBER_INVALID, `n` above 1000 is clamped to
//! 1000 with a `Link` header when more remain; a request line or header block over the limits
//! is 414/431 (or the connection is closed) before routing, and the server keeps serving.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use berth_tests::api::{
    absolute, code_of, expect_error_in, expect_status, get_oci_manifest, header, parts, raw_body,
    raw_exchange, OCI_MANIFEST,
};
use berth_tests::{
    assert_no_state_change, http, push_blob, push_image, random_image, sha256_digest, Berth,
    Client, Image,
};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

struct Fixture {
    berth: Berth,
    client: Client,
    image: Image,
}

impl Fixture {
    fn new() -> Fixture {
        let berth = Berth::start();
        let client = http();
        let image = random_image(1, 500);
        push_image(&client, &berth.url, "seed", "v1", &image);
        Fixture {
            berth,
            client,
            image,
        }
    }

    fn known(&self) -> Vec<String> {
        let mut known = self.image.blob_digests();
        known.push(self.image.digest.clone());
        known
    }

    fn raw(&self, request: &[u8]) -> (Option<u16>, String) {
        let (status, text, _) = raw_exchange(&self.berth.addr, request, WAIT);
        (status, text)
    }

    /// Every route of `name` answers 400 NAME_INVALID (HEAD: 400 without body).
    fn assert_name_invalid(&self, name: &str) {
        let digest = sha256_digest(&self.image.config);
        let manifest = &self.image.manifest;
        let config = &self.image.config;
        let close = "Host: x\r\nConnection: close";
        let requests: Vec<(String, Vec<u8>)> = vec![
            (format!("GET /v2/{name}/tags/list HTTP/1.1\r\n{close}\r\n\r\n"), vec![]),
            (format!("GET /v2/{name}/manifests/v1 HTTP/1.1\r\n{close}\r\n\r\n"), vec![]),
            (format!("HEAD /v2/{name}/manifests/v1 HTTP/1.1\r\n{close}\r\n\r\n"), vec![]),
            (
                format!(
                    "PUT /v2/{name}/manifests/v1 HTTP/1.1\r\n{close}\r\nContent-Type: {OCI_MANIFEST}\r\n\
                     Content-Length: {}\r\n\r\n",
                    manifest.len()
                ),
                manifest.clone(),
            ),
            (format!("DELETE /v2/{name}/manifests/v1 HTTP/1.1\r\n{close}\r\n\r\n"), vec![]),
            (format!("GET /v2/{name}/blobs/{digest} HTTP/1.1\r\n{close}\r\n\r\n"), vec![]),
            (format!("DELETE /v2/{name}/blobs/{digest} HTTP/1.1\r\n{close}\r\n\r\n"), vec![]),
            (format!("POST /v2/{name}/blobs/uploads/ HTTP/1.1\r\n{close}\r\nContent-Length: 0\r\n\r\n"), vec![]),
            (
                format!(
                    "POST /v2/{name}/blobs/uploads/?digest={digest} HTTP/1.1\r\n{close}\r\n\
                     Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                    config.len()
                ),
                config.clone(),
            ),
            (format!("GET /v2/{name}/referrers/{digest} HTTP/1.1\r\n{close}\r\n\r\n"), vec![]),
        ];
        for (head, body) in requests {
            let line = head.lines().next().expect("request line").to_string();
            let (status, text) = self.raw(&[head.as_bytes(), &body].concat());
            assert_eq!(status, Some(400), "{line:.120}: {text:.300}");
            if !line.starts_with("HEAD") {
                let code = code_of(raw_body(&text).as_bytes());
                assert_eq!(code.as_deref(), Some("NAME_INVALID"), "{line:.120}");
            }
        }
    }

    /// Nothing but the harness's own files sits next to the data directory.
    fn assert_nothing_outside_data_dir(&self) {
        let root = self.berth.data_dir.parent().expect("data dir has a parent");
        for entry in std::fs::read_dir(root).expect("read tmp dir") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            assert!(
                ["data", "config.json", "berth.log", "berth.stderr"].contains(&name.as_str()),
                "unexpected {name} next to the data dir"
            );
        }
    }
}

#[test]
fn n1_path_tricks_in_names_are_name_invalid() {
    let fx = Fixture::new();
    let names = [
        "../etc",
        "a/../b",
        "a/./b",
        "..",
        ".",
        "%2e%2e/x",
        "%2E%2E",
        "a/%2e%2e/b",
        "a%2Fb",
        "a%2fb",
        "a//b",
        "/a",
        "a/",
        "/seed",
        "seed/",
        "seed/..",
        "./seed",
        "seed%2F..%2F..",
    ];
    assert_no_state_change(&fx.berth, &fx.known(), || {
        for name in names {
            fx.assert_name_invalid(name);
        }
    });
    fx.assert_nothing_outside_data_dir();
}

#[test]
fn n2_names_outside_the_grammar_are_name_invalid() {
    let fx = Fixture::new();
    let names = [
        "A/B",
        "Seed",
        "a..b",
        "a___b",
        "a.-b",
        "a-.b",
        "a_-b",
        "-a",
        "_a",
        ".a",
        "a-",
        "a_",
        "a.",
        "%C3%BCber",
        "caf%C3%A9",
        "a%00b",
        "%00",
        "a%20b",
        "a%09b",
        "a+b",
        "a:b",
        "a%3Ab",
        "a@b",
        "a%0Ab",
        "seed%5Cx",
    ];
    assert_no_state_change(&fx.berth, &fx.known(), || {
        for name in names {
            fx.assert_name_invalid(name);
        }
    });
    fx.assert_nothing_outside_data_dir();
}

fn catalog(client: &Client, url: &str, query: &str) -> (u16, HeaderMap, Value) {
    let response = client
        .get(format!("{url}/v2/_catalog{query}"))
        .send()
        .expect("GET catalog");
    let (status, headers, body) = parts(response);
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

fn string_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn n3_name_length_boundary_is_255() {
    let fx = Fixture::new();
    let image = random_image(1, 10);
    let flat_255 = "a".repeat(255);
    let slashed_255 = format!("{}b", "a/".repeat(127));
    assert_eq!(slashed_255.len(), 255);
    let component_255 = format!("x/{}", "c".repeat(253));
    for name in [&flat_255, &slashed_255, &component_255] {
        push_image(&fx.client, &fx.berth.url, name, "v1", &image);
        let url = format!("{}/v2/{name}/tags/list", fx.berth.url);
        let (_, body) = expect_status(fx.client.get(url).send().expect("GET tags"), 200);
        let body: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["name"], json!(name));
    }
    let (status, _, listed) = catalog(&fx.client, &fx.berth.url, "");
    assert_eq!(status, 200);
    let listed = string_list(&listed["repositories"]);
    for name in [&flat_255, &slashed_255, &component_255] {
        assert!(
            listed.contains(name),
            "catalog lacks the {}-char name",
            name.len()
        );
    }
    let mut known = fx.known();
    known.extend(image.blob_digests());
    known.push(image.digest.clone());
    assert_no_state_change(&fx.berth, &known, || {
        for name in [
            "a".repeat(256),
            "a".repeat(300),
            format!("{}bc", "a/".repeat(127)),
            format!("x/{}", "c".repeat(254)),
            "a/".repeat(1000) + "a",
        ] {
            fx.assert_name_invalid(&name);
        }
    });
}

#[test]
fn n4_unusual_but_valid_names_are_accepted() {
    let fx = Fixture::new();
    let names = [
        "a__b",
        "a.b",
        "a-----b",
        "a/b/c/d/e/f/g",
        "0",
        "9/8",
        "a0.b1_c2__d3-e4",
        "x.y.z/w_v/u-t",
        "seed/v2/manifests",
        "seed/catalog-x",
    ];
    let mut images = Vec::new();
    for name in names {
        let image = random_image(1, 10);
        push_image(&fx.client, &fx.berth.url, name, "latest", &image);
        images.push(image);
    }
    let (_, _, listed) = catalog(&fx.client, &fx.berth.url, "");
    let listed = string_list(&listed["repositories"]);
    for (name, image) in names.iter().zip(&images) {
        assert!(
            listed.iter().any(|n| n == name),
            "catalog lacks {name}: {listed:?}"
        );
        let url = format!("{}/v2/{name}/manifests/latest", fx.berth.url);
        let response = get_oci_manifest(&fx.client, url);
        let (_, body) = expect_status(response, 200);
        assert_eq!(body, image.manifest, "manifest of {name}");
    }
}

#[test]
fn n5_names_shaped_like_internal_paths_stay_independent() {
    let fx = Fixture::new();
    let names = [
        "foo",
        "foo/blobs",
        "foo/blobs/sha256",
        "foo/index.json",
        "foo/manifests",
        "foo/blobs/uploads",
        "foo/tags/list",
        "foo/uploads",
        "foo/referrers",
        "foo/oci-layout",
        "blobs",
        "uploads",
    ];
    let images: Vec<Image> = names.iter().map(|_| random_image(1, 50)).collect();
    for (name, image) in names.iter().zip(&images) {
        push_image(&fx.client, &fx.berth.url, name, "latest", image);
    }
    // An upload session in each: its URL shape must route to its own repository.
    for name in names {
        let response = fx
            .client
            .post(format!("{}/v2/{name}/blobs/uploads/", fx.berth.url))
            .send();
        let (headers, _) = expect_status(response.expect("POST"), 202);
        let location = header(&headers, "location").expect("Location");
        let location = absolute(&fx.berth.url, &location);
        let data = format!("session blob of {name}").into_bytes();
        let digest = sha256_digest(&data);
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = fx
            .client
            .put(format!("{location}{separator}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(data)
            .send()
            .expect("PUT");
        expect_status(put, 201);
        for other in names {
            let status = fx
                .client
                .head(format!("{}/v2/{other}/blobs/{digest}", fx.berth.url))
                .send()
                .expect("HEAD")
                .status()
                .as_u16();
            assert_eq!(
                status,
                if other == name { 200 } else { 404 },
                "{name}'s blob seen from {other}"
            );
        }
    }
    for (name, image) in names.iter().zip(&images) {
        let url = format!("{}/v2/{name}/manifests/latest", fx.berth.url);
        let response = get_oci_manifest(&fx.client, url);
        let (headers, body) = expect_status(response, 200);
        assert_eq!(body, image.manifest, "{name}:latest");
        assert_eq!(
            header(&headers, "docker-content-digest"),
            Some(image.digest.clone())
        );
        let url = format!("{}/v2/{name}/tags/list", fx.berth.url);
        let (_, tags) = expect_status(fx.client.get(url).send().expect("GET"), 200);
        let tags: Value = serde_json::from_slice(&tags).expect("JSON");
        assert_eq!(tags, json!({"name": name, "tags": ["latest"]}));
        for (other, other_image) in names.iter().zip(&images) {
            if other == name {
                continue;
            }
            for digest in other_image.blob_digests() {
                let url = format!("{}/v2/{name}/blobs/{digest}", fx.berth.url);
                let status = fx.client.head(url).send().expect("HEAD").status().as_u16();
                assert_eq!(status, 404, "{other}'s blob visible in {name}");
            }
            let url = format!(
                "{}/v2/{name}/manifests/{}",
                fx.berth.url, other_image.digest
            );
            let response = fx
                .client
                .head(url)
                .header("accept", OCI_MANIFEST)
                .send()
                .expect("HEAD");
            assert_eq!(
                response.status().as_u16(),
                404,
                "{other}'s manifest visible in {name}"
            );
        }
    }
    let (_, _, listed) = catalog(&fx.client, &fx.berth.url, "");
    let listed = string_list(&listed["repositories"]);
    for name in names {
        assert!(listed.iter().any(|n| n == name), "catalog lacks {name}");
    }
}

#[test]
fn n6_bad_pagination_numbers_are_rejected_or_clamped() {
    let fx = Fixture::new();
    let long_last = "z".repeat(10_000);
    assert_no_state_change(&fx.berth, &fx.known(), || {
        for path in ["/v2/_catalog", "/v2/seed/tags/list"] {
            for n in [
                "-1", "abc", "1e9", "1.5", "0x10", "-0x1", "%20", "1%2C2", "9abc",
            ] {
                let url = format!("{}{path}?n={n}", fx.berth.url);
                expect_error_in(
                    &format!("{path}?n={n}"),
                    fx.client.get(url).send().expect("GET"),
                    400,
                    "PAGINATION_NUMBER_INVALID",
                );
            }
            for n in [
                "999999999999",
                "18446744073709551616",
                "99999999999999999999999999",
            ] {
                let url = format!("{}{path}?n={n}", fx.berth.url);
                let (status, _, body) = parts(fx.client.get(url).send().expect("GET"));
                let code = code_of(&body);
                let clamped = status == 200;
                let rejected =
                    status == 400 && code.as_deref() == Some("PAGINATION_NUMBER_INVALID");
                assert!(clamped || rejected, "{path}?n={n}: {status} {code:?}");
                if n == "999999999999" {
                    assert!(
                        clamped,
                        "{path}?n={n} is a number above the max: clamp, not {status}"
                    );
                }
            }
            let url = format!("{}{path}?last={long_last}", fx.berth.url);
            let (status, _, body) = parts(fx.client.get(url).send().expect("GET"));
            assert!(
                status == 200 || (400..500).contains(&status) && code_of(&body).is_some(),
                "{path}?last=<10 kB>: {status}"
            );
        }
    });
    let (status, headers, listed) =
        catalog(&fx.client, &fx.berth.url, &format!("?last={long_last}"));
    assert_eq!((status, listed), (200, json!({"repositories": []})));
    assert!(header(&headers, "link").is_none());
}

/// Follows `Link: <...>; rel="next"` and returns the target path+query.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = header(headers, "link")?;
    let start = link.find('<')? + 1;
    let end = link.find('>')?;
    assert!(
        link.contains("rel=\"next\""),
        "Link without rel=next: {link}"
    );
    let target = &link[start..end];
    // Relative (berth, zot) or absolute (Distribution): keep the path and query.
    let target = target.split_once("://").map_or(target, |(_, rest)| {
        rest.find('/').map_or("/", |i| &rest[i..])
    });
    Some(target.to_string())
}

#[test]
fn n6_n_above_the_max_is_clamped_to_1000_with_a_link() {
    let fx = Fixture::new();
    let digest = fx.image.digest.clone();
    let mut tags: Vec<String> = (0..1012).map(|i| format!("t{i:04}")).collect();
    for chunk in tags.chunks(46) {
        let query = chunk
            .iter()
            .map(|t| format!("tag={t}"))
            .collect::<Vec<_>>()
            .join("&");
        let response = fx
            .client
            .put(format!(
                "{}/v2/seed/manifests/{digest}?{query}",
                fx.berth.url
            ))
            .header("content-type", OCI_MANIFEST)
            .body(fx.image.manifest.clone())
            .send()
            .expect("PUT");
        expect_status(response, 201);
    }
    tags.push("v1".into());
    tags.sort();
    let url = format!("{}/v2/seed/tags/list?n=5000", fx.berth.url);
    let (headers, body) = expect_status(fx.client.get(url).send().expect("GET"), 200);
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    let first = string_list(&body["tags"]);
    assert_eq!(first, tags[..1000], "first page clamped to 1000, sorted");
    let next = next_link(&headers).expect("Link when more tags remain");
    let (headers, body) = expect_status(
        fx.client
            .get(format!("{}{next}", fx.berth.url))
            .send()
            .expect("GET"),
        200,
    );
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(string_list(&body["tags"]), tags[1000..], "second page");
    assert!(next_link(&headers).is_none(), "no Link on the last page");
}

#[test]
fn n6_catalog_n_above_the_max_is_clamped_to_1000_with_a_link() {
    let berth = Berth::start_with(json!({"storage": {"commit": false}}));
    let client = http();
    let mut names: Vec<String> = (0..1003).map(|i| format!("r{i:04}")).collect();
    for name in &names {
        push_blob(&client, &berth.url, name, name.as_bytes());
    }
    names.sort();
    let (status, headers, body) = catalog(&client, &berth.url, "?n=999999999999");
    assert_eq!(status, 200);
    assert_eq!(string_list(&body["repositories"]), names[..1000]);
    let next = next_link(&headers).expect("Link when more repositories remain");
    let response = client
        .get(format!("{}{next}", berth.url))
        .send()
        .expect("GET");
    let (headers, body) = expect_status(response, 200);
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(string_list(&body["repositories"]), names[1000..]);
    assert!(next_link(&headers).is_none());
}

/// Sends `request`, expects a 414/431 (or 400 from the HTTP layer without routing) or a
/// closed connection, then checks the server still answers `GET /v2/` on a new connection.
fn assert_head_rejected(fx: &Fixture, what: &str, request: &[u8], allowed: &[u16]) {
    let started = Instant::now();
    let (status, text, closed) = raw_exchange(&fx.berth.addr, request, WAIT);
    match status {
        Some(status) => assert!(
            allowed.contains(&status),
            "{what}: {status} {:.300}",
            raw_body(&text)
        ),
        None => assert!(
            closed,
            "{what}: no answer and not closed after {:?}",
            started.elapsed()
        ),
    }
    let response = fx
        .client
        .get(format!("{}/v2/", fx.berth.url))
        .send()
        .expect("GET /v2/");
    assert_eq!(
        response.status().as_u16(),
        200,
        "server stopped serving after {what}"
    );
}

#[test]
fn n7_oversized_request_heads_are_rejected_before_routing() {
    let fx = Fixture::new();
    assert_no_state_change(&fx.berth, &fx.known(), || {
        let long_path = format!("/v2/seed/manifests/{}", "a".repeat(64 * 1024));
        let request = format!("GET {long_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_head_rejected(&fx, "64 kB request line", request.as_bytes(), &[414, 431]);
        let long_name = format!("/v2/{}/tags/list", "a/".repeat(32 * 1024));
        let request = format!("GET {long_name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_head_rejected(&fx, "64 kB name", request.as_bytes(), &[414, 431]);
        let many: String = (0..10_000).map(|i| format!("X-H{i}: v\r\n")).collect();
        let request = format!("GET /v2/ HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
        assert_head_rejected(&fx, "10 000 headers", request.as_bytes(), &[431]);
        let big = "v".repeat(1024 * 1024);
        let request =
            format!("GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
        assert_head_rejected(&fx, "1 MB header value", request.as_bytes(), &[431]);
        let request = format!(
            "PUT /v2/seed/manifests/v1 HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\
             Content-Type: {OCI_MANIFEST}\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        assert_head_rejected(&fx, "1 MB header on a PUT", request.as_bytes(), &[431]);
    });
    let mut stream = TcpStream::connect(&fx.berth.addr).expect("connect");
    stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    assert!(text.starts_with("HTTP/1.1 200"), "{text:.200}");
}
