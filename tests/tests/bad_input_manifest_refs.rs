//! B1 rows M8-M16 (reliability plan): manifest PUTs whose references, versions or tags are
//! bad (and the tag/digest reading rules of manifest GET).
//!
//! Each rejection asserts the status, the OCI error code of the body and, through
//! [`assert_no_state_change`], that no manifest, tag or blob appeared, moved or vanished.
//!
//! Decisions these tests pin: an invalid tag in the path of a PUT is 400 MANIFEST_INVALID (zot;
//! there is no TAG_INVALID code in the spec) and a malformed digest there 400 DIGEST_INVALID or
//! MANIFEST_INVALID; on GET, HEAD and DELETE a reference that is neither a tag nor a digest names
//! nothing, so it is 404 MANIFEST_UNKNOWN, or NAME_UNKNOWN without the repository (Distribution,
//! zot, and the released conformance suite's `.INVALID_MANIFEST_NAME`); a missing config, layer or index child is 400
//! MANIFEST_BLOB_UNKNOWN naming the digest; a descriptor with a bad size is MANIFEST_INVALID and
//! one with a bad digest MANIFEST_INVALID or DIGEST_INVALID; Docker schema1 is UNSUPPORTED (400
//! or 415); more than 46 `?tag=` is 414 and a bad tag among them 400, all-or-nothing.

use std::time::Duration;

use berth_tests::api::{
    code_of, expect_error, expect_error_in, expect_status, get_oci_manifest, header, header_values,
    json_bytes, parts, pct, raw_exchange, OCI_INDEX, OCI_MANIFEST,
};
use berth_tests::{
    assert_no_state_change, push_blob, push_image, random_bytes, random_image, sha256_digest,
    Seeded,
};
use reqwest::blocking::Response;
use serde_json::{json, Value};

// ---- M8-M11: references ---------------------------------------------------------------------

/// Asserts 400 MANIFEST_BLOB_UNKNOWN whose detail names `missing`.
#[track_caller]
fn expect_blob_unknown_naming(response: Response, missing: &str) {
    let (_, body) = expect_error(response, 400, "MANIFEST_BLOB_UNKNOWN");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(missing),
        "detail does not name {missing}: {text}"
    );
}

#[test]
fn m8_missing_blob_is_manifest_blob_unknown_and_moves_no_tag() {
    let fx = Seeded::start();
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
        .map(|(m, _)| sha256_digest(&json_bytes(m)))
        .collect();
    let mut extra: Vec<&str> = manifest_digests.iter().map(String::as_str).collect();
    extra.push(&nowhere);
    assert_no_state_change(&fx.berth, &fx.known(&extra), || {
        for (manifest, missing) in &cases {
            for reference in ["v1", "new", &sha256_digest(&json_bytes(manifest))] {
                let response = fx.put("seed", reference, OCI_MANIFEST, json_bytes(manifest));
                expect_blob_unknown_naming(response, missing);
            }
        }
    });
}

#[test]
fn m9_subject_pointing_at_a_missing_manifest_is_accepted() {
    let fx = Seeded::start();
    let subject = sha256_digest(b"a manifest that was never pushed");
    let mut referrer = fx.manifest();
    referrer["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": 32});
    referrer["artifactType"] = json!("application/vnd.example.signature");
    let body = json_bytes(&referrer);
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
    let fx = Seeded::start();
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
        .map(|(m, _)| sha256_digest(&json_bytes(m)))
        .collect();
    let mut extra: Vec<&str> = digests.iter().map(String::as_str).collect();
    extra.push(&missing);
    extra.push(&foreign_child.digest);
    assert_no_state_change(&fx.berth, &fx.known(&extra), || {
        for (manifest, child) in &cases {
            expect_blob_unknown_naming(
                fx.put("seed", "v1", OCI_INDEX, json_bytes(manifest)),
                child,
            );
        }
    });
}

#[test]
fn m11_bad_descriptors_are_rejected() {
    let fx = Seeded::start();
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
        .map(|(_, m, _)| sha256_digest(&json_bytes(m)))
        .collect();
    let extra: Vec<&str> = digests.iter().map(String::as_str).collect();
    assert_no_state_change(&fx.berth, &fx.known(&extra), || {
        for (what, manifest, codes) in &cases {
            let (status, _, body) = parts(fx.put("seed", "v1", OCI_MANIFEST, json_bytes(manifest)));
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
    let fx = Seeded::start();
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
        .map(|(_, m)| sha256_digest(&json_bytes(m)))
        .collect();
    extra.push(sha256_digest(&json_bytes(&schema1)));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    assert_no_state_change(&fx.berth, &fx.known(&extra), || {
        for (what, manifest) in &cases {
            expect_error_in(
                what,
                fx.put("seed", "v1", OCI_MANIFEST, json_bytes(manifest)),
                400,
                "MANIFEST_INVALID",
            );
        }
        for content_type in [
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "application/vnd.docker.distribution.manifest.v1+json",
        ] {
            let (status, _, body) = parts(fx.put("seed", "v1", content_type, json_bytes(&schema1)));
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
    let fx = Seeded::start();
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
        let response = get_oci_manifest(&fx.client, url);
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
    let fx = Seeded::start();
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

/// References outside both grammars, tag-like and digest-like (a malformed digest, an
/// algorithm berth does not support, a character neither grammar has).
fn invalid_references() -> Vec<String> {
    let mut references = invalid_tags();
    references.extend([
        ".INVALID_MANIFEST_NAME".into(),
        "..".into(),
        "%2e%2e".into(),
        "a:b".into(),
        "sha256:xyz".into(),
        format!("sha256:{}", "a".repeat(63)),
        format!("sha256:{}", "A".repeat(64)),
        format!("md5:{}", "0".repeat(32)),
        format!("sha384:{}", "b".repeat(96)),
        "sha256:".into(),
        "a@b".into(),
    ]);
    references
}

/// (status, body) of a raw request with no body: an HTTP client would normalise `..` away.
fn raw_status(fx: &Seeded, method: &str, path: &str) -> (Option<u16>, String) {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (status, text, _) =
        raw_exchange(&fx.berth.addr, request.as_bytes(), Duration::from_secs(20));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[test]
fn m17_lookup_of_an_invalid_reference_is_not_found() {
    let fx = Seeded::start();
    assert_no_state_change(&fx.berth, &fx.known(&[]), || {
        for reference in invalid_references() {
            for (repo, code) in [("seed", "MANIFEST_UNKNOWN"), ("nowhere", "NAME_UNKNOWN")] {
                let path = format!("/v2/{repo}/manifests/{reference}");
                for method in ["GET", "HEAD", "DELETE"] {
                    let (status, body) = raw_status(&fx, method, &path);
                    assert_eq!(status, Some(404), "{method} {path:.80}: {body}");
                    if method != "HEAD" {
                        assert_eq!(
                            code_of(body.as_bytes()).as_deref(),
                            Some(code),
                            "{method} {path:.80}"
                        );
                    }
                }
            }
        }
        // A PUT asks to create what the grammar forbids: still a bad request (m14 has the tags).
        for reference in [
            "sha256:xyz".to_string(),
            format!("md5:{}", "0".repeat(32)),
            format!("sha256:{}", "a".repeat(63)),
        ] {
            let (status, _, text) =
                parts(fx.put("seed", &reference, OCI_MANIFEST, fx.image.manifest.clone()));
            assert_eq!(status, 400, "PUT {reference}");
            let code = code_of(&text);
            assert!(
                matches!(code.as_deref(), Some("MANIFEST_INVALID" | "DIGEST_INVALID")),
                "PUT {reference}: {code:?}"
            );
        }
    });
    // The stored manifest is still served by its tag and digest.
    for reference in ["v1", fx.image.digest.as_str()] {
        let url = format!("{}/v2/seed/manifests/{reference}", fx.url());
        let (_, body) = expect_status(get_oci_manifest(&fx.client, url), 200);
        assert_eq!(body, fx.image.manifest);
    }
}

#[test]
fn m15_tag_query_limits_are_all_or_nothing() {
    let fx = Seeded::start();
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
            expect_error_in(
                &format!("tag {bad:.40} among valid ones"),
                put(&query(&tags)),
                400,
                "MANIFEST_INVALID",
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
    let mut echoed: Vec<String> = header_values(&headers, "oci-tag");
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
    let fx = Seeded::start();
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
            let response = get_oci_manifest(&fx.client, url);
            expect_error(response, 404, "MANIFEST_UNKNOWN");
        }
    });
    expect_status(
        fx.put("seed", &hex_tag, OCI_MANIFEST, fx.image.manifest.clone()),
        201,
    );
    let url = format!("{}/v2/seed/manifests/{hex_tag}", fx.url());
    let response = get_oci_manifest(&fx.client, &url);
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
    let response = get_oci_manifest(&fx.client, url);
    expect_error(response, 404, "MANIFEST_UNKNOWN");
}
