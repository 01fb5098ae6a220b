//! Happy paths of the OCI distribution API that the conformance suite exercises and that the
//! B1 rejection files do not: ranges, chunked and streamed uploads, upload status and cancel,
//! mounts, pagination, sha512 and empty blobs, manifest negotiation and HEAD headers, and
//! deletes.
//!
//! Each check is a plain function over a registry URL. The `#[test]`s run them against berth;
//! the `#[ignore]`d `distribution_agrees_on_spec_paths` runs the checks whose behaviour the spec
//! fixes against CNCF Distribution, so the expectations here are those of a real registry.
//! (Distribution 2.8 predates tags-on-PUT, subjects, referrers, discovery, delete by tag and
//! referenced-blob protection: those run against berth only, in `api_berth_decisions.rs`.)

use berth_tests::api::{
    expect_error, expect_status, get_json, header, location, parts, put_manifest, sha512_digest,
    start_upload, with_query, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
use berth_tests::{
    http, push_blob, push_image, random_bytes, random_image, require_tool, sha256_digest, Berth,
    Client, Distribution,
};
use serde_json::{json, Value};

// ---- checks whose behaviour the spec fixes (also run against Distribution) -------------------

fn check_base(client: &Client, url: &str) {
    let (headers, _) = expect_status(client.get(format!("{url}/v2/")).send().expect("GET"), 200);
    assert_eq!(
        header(&headers, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
}

fn check_blob_ranges(client: &Client, url: &str) {
    let data = random_bytes(1000);
    let digest = push_blob(client, url, "conf/ranges", &data);
    let blob = format!("{url}/v2/conf/ranges/blobs/{digest}");
    let (headers, body) = expect_status(client.head(&blob).send().expect("HEAD"), 200);
    assert!(body.is_empty());
    assert_eq!(header(&headers, "content-length").as_deref(), Some("1000"));
    assert_eq!(
        header(&headers, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    let (_, body) = expect_status(client.get(&blob).send().expect("GET"), 200);
    assert!(body == data);
    for (range, start, end) in [
        ("bytes=10-19", 10, 19),
        ("bytes=0-0", 0, 0),
        ("bytes=990-", 990, 999),
        ("bytes=-5", 995, 999),
        ("bytes=995-5000", 995, 999),
    ] {
        let response = client
            .get(&blob)
            .header("range", range)
            .send()
            .expect("GET range");
        let (headers, body) = expect_status(response, 206);
        assert_eq!(
            header(&headers, "content-range"),
            Some(format!("bytes {start}-{end}/1000")),
            "{range}"
        );
        assert_eq!(
            header(&headers, "content-length"),
            Some((end - start + 1).to_string()),
            "{range}"
        );
        assert!(body == data[start..=end], "{range}: wrong bytes");
    }
    for range in ["bytes=1000-1001", "bytes=5000-"] {
        let response = client
            .get(&blob)
            .header("range", range)
            .send()
            .expect("GET range");
        // Only status and headers: Distribution's 416 body is shorter than its Content-Length.
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        assert_eq!(status, 416, "{range}");
        assert_eq!(
            header(&headers, "content-range").as_deref(),
            Some("bytes */1000"),
            "{range}"
        );
    }
}

fn check_chunked_upload(client: &Client, url: &str) {
    let data = random_bytes(350);
    let digest = sha256_digest(&data);
    let response = client
        .post(format!("{url}/v2/conf/chunked/blobs/uploads/"))
        .send()
        .expect("POST");
    let (headers, _) = expect_status(response, 202);
    assert_eq!(header(&headers, "range").as_deref(), Some("0-0"));
    let mut session = location(url, &headers);
    for start in [0, 100, 200] {
        let response = client
            .patch(&session)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{}", start + 99))
            .header("content-length", "100")
            .body(data[start..start + 100].to_vec())
            .send()
            .expect("PATCH");
        let (headers, _) = expect_status(response, 202);
        assert_eq!(header(&headers, "range"), Some(format!("0-{}", start + 99)));
        session = location(url, &headers);
    }
    let response = client
        .put(with_query(&session, &format!("digest={digest}")))
        .header("content-type", "application/octet-stream")
        .header("content-range", "300-349")
        .body(data[300..].to_vec())
        .send()
        .expect("PUT");
    let (headers, _) = expect_status(response, 201);
    assert_eq!(
        header(&headers, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    let blob = location(url, &headers);
    assert!(
        blob.ends_with(&format!("/v2/conf/chunked/blobs/{digest}")),
        "{blob}"
    );
    let (_, body) = expect_status(client.get(&blob).send().expect("GET"), 200);
    assert!(body == data);
}

fn check_streamed_upload(client: &Client, url: &str) {
    let data = random_bytes(5000);
    let digest = sha256_digest(&data);
    let mut session = start_upload(client, url, "conf/streamed");
    for (from, to) in [(0, 3000), (3000, 5000)] {
        let response = client
            .patch(&session)
            .header("content-type", "application/octet-stream")
            .body(data[from..to].to_vec())
            .send()
            .expect("PATCH");
        let (headers, _) = expect_status(response, 202);
        assert_eq!(header(&headers, "range"), Some(format!("0-{}", to - 1)));
        session = location(url, &headers);
    }
    let response = client
        .put(with_query(&session, &format!("digest={digest}")))
        .send()
        .expect("PUT");
    expect_status(response, 201);
    let (_, body) = expect_status(
        client
            .get(format!("{url}/v2/conf/streamed/blobs/{digest}"))
            .send()
            .expect("GET"),
        200,
    );
    assert!(body == data);
}

fn check_upload_status_and_cancel(client: &Client, url: &str) {
    let session = start_upload(client, url, "conf/status");
    let (headers, _) = expect_status(client.get(&session).send().expect("GET"), 204);
    assert_eq!(header(&headers, "range").as_deref(), Some("0-0"));
    let response = client
        .patch(&session)
        .body(random_bytes(123))
        .send()
        .expect("PATCH");
    let session = location(url, &expect_status(response, 202).0);
    let (headers, _) = expect_status(client.get(&session).send().expect("GET"), 204);
    assert_eq!(header(&headers, "range").as_deref(), Some("0-122"));
    assert!(
        header(&headers, "location").is_some(),
        "upload status has a Location"
    );
    expect_status(client.delete(&session).send().expect("DELETE"), 204);
    expect_error(
        client.get(&session).send().expect("GET"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    expect_error(
        client.delete(&session).send().expect("DELETE"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
}

fn check_mount_from(client: &Client, url: &str) {
    let data = random_bytes(200);
    let digest = push_blob(client, url, "conf/mount-a", &data);
    let response = client
        .post(format!(
            "{url}/v2/conf/mount-b/blobs/uploads/?mount={digest}&from=conf/mount-a"
        ))
        .send()
        .expect("POST mount");
    let (headers, _) = expect_status(response, 201);
    assert!(location(url, &headers).ends_with(&format!("/v2/conf/mount-b/blobs/{digest}")));
    assert_eq!(
        header(&headers, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    let (_, body) = expect_status(
        client
            .get(format!("{url}/v2/conf/mount-b/blobs/{digest}"))
            .send()
            .expect("GET"),
        200,
    );
    assert!(body == data);
}

/// Distribution 2.8 stores sha512 uploads under their sha256 (its Location names the sha256
/// digest), so this runs against berth only (conformance `OCI_DATA_SHA512`).
fn check_sha512_blob(client: &Client, url: &str) {
    let data = random_bytes(777);
    let digest = sha512_digest(&data);
    // POST then PUT: single-POST uploads are optional in the spec (Distribution answers 202).
    let session = start_upload(client, url, "conf/digests");
    let response = client
        .put(with_query(&session, &format!("digest={digest}")))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .expect("PUT");
    let (headers, _) = expect_status(response, 201);
    let blob_location = location(url, &headers);
    assert!(
        blob_location.ends_with(&format!("/v2/conf/digests/blobs/{digest}")),
        "{blob_location}"
    );
    let blob = format!("{url}/v2/conf/digests/blobs/{digest}");
    let (headers, _) = expect_status(client.head(&blob).send().expect("HEAD"), 200);
    assert_eq!(
        header(&headers, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(
        expect_status(client.get(&blob).send().expect("GET"), 200).1,
        data
    );
}

fn check_empty_blob(client: &Client, url: &str) {
    let empty = sha256_digest(b"");
    let session = start_upload(client, url, "conf/empty");
    let response = client
        .put(with_query(&session, &format!("digest={empty}")))
        .body(Vec::new())
        .send();
    expect_status(response.expect("PUT"), 201);
    let (headers, body) = expect_status(
        client
            .get(format!("{url}/v2/conf/empty/blobs/{empty}"))
            .send()
            .expect("GET"),
        200,
    );
    assert!(body.is_empty());
    assert_eq!(header(&headers, "content-length").as_deref(), Some("0"));
}

fn check_manifest_get_and_head(client: &Client, url: &str) {
    let image = random_image(2, 100);
    push_image(client, url, "conf/manifests", "oci", &image);
    // A Docker schema 2 manifest over the same blobs.
    let mut docker: Value = serde_json::from_slice(&image.manifest).expect("JSON");
    docker["mediaType"] = json!(DOCKER_MANIFEST);
    docker["config"]["mediaType"] = json!("application/vnd.docker.container.image.v1+json");
    for layer in docker["layers"].as_array_mut().expect("layers") {
        layer["mediaType"] = json!("application/vnd.docker.image.rootfs.diff.tar");
    }
    let docker = serde_json::to_vec(&docker).expect("serialize");
    put_manifest(
        client,
        url,
        "conf/manifests",
        "docker",
        DOCKER_MANIFEST,
        &docker,
    );
    let index = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ]}),
    )
    .expect("serialize");
    put_manifest(client, url, "conf/manifests", "index", OCI_INDEX, &index);
    for (tag, media_type, body) in [
        ("oci", OCI_MANIFEST, &image.manifest),
        ("docker", DOCKER_MANIFEST, &docker),
        ("index", OCI_INDEX, &index),
    ] {
        let digest = sha256_digest(body);
        for reference in [tag, digest.as_str()] {
            let manifest_url = format!("{url}/v2/conf/manifests/manifests/{reference}");
            let accept = format!("{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}");
            for method in ["GET", "HEAD"] {
                let request = if method == "GET" {
                    client.get(&manifest_url)
                } else {
                    client.head(&manifest_url)
                };
                let (headers, got) =
                    expect_status(request.header("accept", &accept).send().expect("send"), 200);
                assert_eq!(
                    header(&headers, "content-type").as_deref(),
                    Some(media_type),
                    "{method} {reference}"
                );
                assert_eq!(
                    header(&headers, "docker-content-digest"),
                    Some(digest.clone()),
                    "{method} {reference}"
                );
                assert_eq!(
                    header(&headers, "content-length"),
                    Some(body.len().to_string()),
                    "{method} {reference}"
                );
                if method == "GET" {
                    assert!(&got == body, "GET {reference}: not byte-exact");
                } else {
                    assert!(got.is_empty(), "HEAD {reference} has a body");
                }
            }
            // Asking for exactly the stored type works too.
            let response = client
                .get(&manifest_url)
                .header("accept", media_type)
                .send()
                .expect("GET");
            assert_eq!(
                header(&expect_status(response, 200).0, "content-type").as_deref(),
                Some(media_type)
            );
        }
    }
    let unknown = format!("{url}/v2/conf/manifests/manifests/nosuchtag");
    expect_error(
        client
            .get(&unknown)
            .header("accept", OCI_MANIFEST)
            .send()
            .expect("GET"),
        404,
        "MANIFEST_UNKNOWN",
    );
}

/// Pages through `path` (`tags/list` or `_catalog`) with `n`, following `Link`, and returns the
/// pages. Asserts each page is at most `n` and a Link is present on all but the last.
fn paginate(client: &Client, url: &str, path: &str, key: &str, n: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next = Some(format!("{path}?n={n}"));
    while let Some(target) = next.take() {
        let (headers, body) = get_json(client, &format!("{url}{target}"));
        let page: Vec<String> = body[key]
            .as_array()
            .expect("list")
            .iter()
            .map(|v| v.as_str().expect("str").to_string())
            .collect();
        assert!(page.len() <= n, "page larger than n={n}: {page:?}");
        if let Some(link) = header(&headers, "link") {
            assert!(link.contains("rel=\"next\""), "{link}");
            let start = link.find('<').expect("<") + 1;
            let end = link.find('>').expect(">");
            let target = &link[start..end];
            let target = target.strip_prefix(url).unwrap_or(target);
            assert!(target.starts_with(path), "Link target {target}");
            next = Some(target.to_string());
        }
        pages.push(page);
        assert!(pages.len() < 100, "pagination does not end");
    }
    pages
}

/// Distribution 2.8 neither sorts nor paginates tags (both came in 3.0), so this runs against
/// berth only; the spec requires lexical order and `n`/`last`.
fn check_tags_pagination(client: &Client, url: &str) {
    let image = random_image(1, 10);
    let mut tags = vec!["e", "a", "c", "b", "d", "A1", "z9"];
    for tag in &tags {
        push_image(client, url, "conf/tags", tag, &image);
    }
    tags.sort();
    let tags: Vec<String> = tags.into_iter().map(str::to_string).collect();
    let (_, all) = get_json(client, &format!("{url}/v2/conf/tags/tags/list"));
    assert_eq!(all, json!({"name": "conf/tags", "tags": tags}));
    let (headers, first) = get_json(client, &format!("{url}/v2/conf/tags/tags/list?n=2"));
    assert_eq!(first["tags"], json!(tags[..2]));
    let link = header(&headers, "link").expect("Link on a partial page");
    assert!(
        link.contains("/v2/conf/tags/tags/list?")
            && link.contains("n=2")
            && link.contains(&format!("last={}", tags[1])),
        "{link}"
    );
    let pages = paginate(client, url, "/v2/conf/tags/tags/list", "tags", 2);
    assert_eq!(pages.concat(), tags);
    let (_, after) = get_json(client, &format!("{url}/v2/conf/tags/tags/list?last=b&n=3"));
    assert_eq!(after["tags"], json!(["c", "d", "e"]));
    let (_, after) = get_json(client, &format!("{url}/v2/conf/tags/tags/list?last=b"));
    assert_eq!(after["tags"], json!(["c", "d", "e", "z9"]));
}

fn check_catalog_pagination(client: &Client, url: &str) {
    for name in ["conf/cat-a", "conf/cat-b", "conf/cat-c"] {
        push_blob(client, url, name, name.as_bytes());
    }
    let (_, all) = get_json(client, &format!("{url}/v2/_catalog"));
    let all: Vec<String> = all["repositories"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_str().expect("str").to_string())
        .collect();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "catalog is sorted");
    for name in ["conf/cat-a", "conf/cat-b", "conf/cat-c"] {
        assert!(all.iter().any(|n| n == name), "catalog lacks {name}");
    }
    let pages = paginate(client, url, "/v2/_catalog", "repositories", 2);
    assert!(pages.len() >= 2);
    assert_eq!(pages.concat(), all);
    let (_, after) = get_json(client, &format!("{url}/v2/_catalog?last=conf/cat-a&n=2"));
    assert_eq!(
        after["repositories"],
        json!(all[all.iter().position(|n| n == "conf/cat-a").expect("listed") + 1..][..2])
    );
}

fn check_delete_manifest_by_digest(client: &Client, url: &str) {
    let image = random_image(1, 10);
    push_image(client, url, "conf/delete", "one", &image);
    let manifest = format!("{url}/v2/conf/delete/manifests/{}", image.digest);
    expect_status(client.delete(&manifest).send().expect("DELETE"), 202);
    expect_error(
        client
            .get(&manifest)
            .header("accept", OCI_MANIFEST)
            .send()
            .expect("GET"),
        404,
        "MANIFEST_UNKNOWN",
    );
    let tag = format!("{url}/v2/conf/delete/manifests/one");
    expect_error(
        client
            .get(&tag)
            .header("accept", OCI_MANIFEST)
            .send()
            .expect("GET"),
        404,
        "MANIFEST_UNKNOWN",
    );
    let (status, _, _) = parts(client.delete(&manifest).send().expect("DELETE"));
    assert_eq!(status, 404, "second DELETE");
}

fn check_delete_blob(client: &Client, url: &str) {
    let data = random_bytes(99);
    let digest = push_blob(client, url, "conf/delete-blob", &data);
    let blob = format!("{url}/v2/conf/delete-blob/blobs/{digest}");
    expect_status(client.delete(&blob).send().expect("DELETE"), 202);
    assert_eq!(
        client.head(&blob).send().expect("HEAD").status().as_u16(),
        404
    );
    expect_error(client.get(&blob).send().expect("GET"), 404, "BLOB_UNKNOWN");
    expect_error(
        client.delete(&blob).send().expect("DELETE"),
        404,
        "BLOB_UNKNOWN",
    );
}

/// One check: a name and a function over (client, registry URL).
type Check = (&'static str, fn(&Client, &str));

/// The checks Distribution must pass as well.
const SPEC_CHECKS: &[Check] = &[
    ("base", check_base),
    ("blob ranges", check_blob_ranges),
    ("chunked upload", check_chunked_upload),
    ("streamed upload", check_streamed_upload),
    ("upload status and cancel", check_upload_status_and_cancel),
    ("mount from", check_mount_from),
    ("empty blob", check_empty_blob),
    ("manifest GET and HEAD", check_manifest_get_and_head),
    ("catalog pagination", check_catalog_pagination),
    ("delete manifest by digest", check_delete_manifest_by_digest),
    ("delete blob", check_delete_blob),
];

#[test]
fn spec_paths_on_berth() {
    let berth = Berth::start();
    let client = http();
    for (name, check) in SPEC_CHECKS {
        eprintln!("check: {name}");
        check(&client, &berth.url);
    }
}

#[test]
#[ignore = "validates these expectations against CNCF Distribution (docker-registry); run with --ignored"]
fn distribution_agrees_on_spec_paths() {
    if !require_tool("docker-registry") {
        return;
    }
    let distribution = Distribution::start();
    let client = http();
    for (name, check) in SPEC_CHECKS {
        eprintln!("check: {name}");
        check(&client, &distribution.url);
    }
}

// ---- checks Distribution 2.8 fails (it neither sorts tags nor keeps sha512 digests) ----------

#[test]
fn tags_list_is_lexical_and_paginated() {
    let berth = Berth::start();
    check_tags_pagination(&http(), &berth.url);
}

#[test]
fn sha512_blob_upload() {
    let berth = Berth::start();
    check_sha512_blob(&http(), &berth.url);
}
