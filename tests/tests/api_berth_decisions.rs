//! Happy paths where berth decides what the spec leaves open, and the dist-spec 1.1 features
//! CNCF Distribution 2.8 lacks: mounts without `from`, tags on digest PUTs (`OCI-Tag`), subjects
//! and referrers, discovery, delete by tag with referenced-blob protection, and manifest GET
//! content negotiation. These run against berth only; `api_conformance.rs` holds the checks a
//! real registry agrees on.

use std::time::Duration;

use berth_tests::api::{
    expect_error, expect_status, get_json, header, header_values, json_bytes, location,
    put_manifest, raw_body, raw_exchange, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
use berth_tests::{
    assert_no_state_change, http, push_blob, push_image, random_bytes, random_image, sha256_digest,
    Berth, Client, Image,
};
use serde_json::{json, Value};

/// A manifest referring to `subject` (an artifact: empty config, one blob), pushed by digest.
fn push_referrer(
    client: &Client,
    url: &str,
    repo: &str,
    subject: &Image,
    artifact_type: &str,
) -> (String, usize) {
    let empty = push_blob(client, url, repo, b"{}");
    let blob = random_bytes(64);
    let blob_digest = push_blob(client, url, repo, &blob);
    let manifest = json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": blob_digest, "size": 64}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.digest, "size": subject.manifest.len()},
        "annotations": {"org.example.kind": artifact_type},
    }));
    let digest = sha256_digest(&manifest);
    let headers = put_manifest(client, url, repo, &digest, OCI_MANIFEST, &manifest);
    assert_eq!(
        header(&headers, "oci-subject").as_deref(),
        Some(subject.digest.as_str())
    );
    (digest, manifest.len())
}

#[test]
fn mount_without_from_is_202_unless_already_linked() {
    let berth = Berth::start();
    let client = http();
    let url = &berth.url;
    let digest = push_blob(&client, url, "conf/mount-a", &random_bytes(50));
    let response = client
        .post(format!(
            "{url}/v2/conf/mount-c/blobs/uploads/?mount={digest}"
        ))
        .send()
        .expect("POST");
    let (headers, _) = expect_status(response, 202);
    let session = location(url, &headers);
    assert!(
        session.contains("/v2/conf/mount-c/blobs/uploads/"),
        "{session}"
    );
    assert_eq!(
        client
            .head(format!("{url}/v2/conf/mount-c/blobs/{digest}"))
            .send()
            .expect("HEAD")
            .status()
            .as_u16(),
        404
    );
    // Already linked in the target: 201 even without `from`.
    let response = client
        .post(format!(
            "{url}/v2/conf/mount-a/blobs/uploads/?mount={digest}"
        ))
        .send()
        .expect("POST");
    let (headers, _) = expect_status(response, 201);
    assert!(location(url, &headers).ends_with(&format!("/v2/conf/mount-a/blobs/{digest}")));
}

#[test]
fn manifest_put_by_digest_with_tags_echoes_oci_tag() {
    let berth = Berth::start();
    let client = http();
    let url = &berth.url;
    let image = random_image(1, 10);
    push_image(&client, url, "conf/ocitag", "first", &image);
    let headers = put_manifest(
        &client,
        url,
        "conf/ocitag",
        &format!("{}?tag=a&tag=b", image.digest),
        OCI_MANIFEST,
        &image.manifest,
    );
    let mut echoed: Vec<String> = header_values(&headers, "oci-tag");
    echoed.sort();
    assert_eq!(echoed, ["a", "b"]);
    assert_eq!(
        header(&headers, "docker-content-digest"),
        Some(image.digest.clone())
    );
    assert!(
        location(url, &headers).ends_with(&format!("/v2/conf/ocitag/manifests/{}", image.digest))
    );
    for tag in ["a", "b", "first"] {
        let response = client
            .get(format!("{url}/v2/conf/ocitag/manifests/{tag}"))
            .header("accept", OCI_MANIFEST)
            .send()
            .expect("GET");
        assert_eq!(
            header(&expect_status(response, 200).0, "docker-content-digest"),
            Some(image.digest.clone())
        );
    }
    let (_, tags) = get_json(&client, &format!("{url}/v2/conf/ocitag/tags/list"));
    assert_eq!(tags["tags"], json!(["a", "b", "first"]));
}

#[test]
fn subject_and_referrers_with_and_without_filter() {
    let berth = Berth::start();
    let client = http();
    let url = &berth.url;
    let base = random_image(1, 10);
    push_image(&client, url, "conf/refs", "base", &base);
    let referrers = format!("{url}/v2/conf/refs/referrers/{}", base.digest);
    let (headers, empty) = get_json(&client, &referrers);
    assert_eq!(header(&headers, "content-type").as_deref(), Some(OCI_INDEX));
    assert_eq!(empty["manifests"], json!([]));
    assert_eq!(empty["schemaVersion"], json!(2));
    let (sig, sig_size) = push_referrer(
        &client,
        url,
        "conf/refs",
        &base,
        "application/vnd.example.sig",
    );
    let (sbom, sbom_size) = push_referrer(
        &client,
        url,
        "conf/refs",
        &base,
        "application/vnd.example.sbom",
    );
    let (headers, index) = get_json(&client, &referrers);
    assert_eq!(header(&headers, "content-type").as_deref(), Some(OCI_INDEX));
    assert!(header(&headers, "oci-filters-applied").is_none());
    assert_eq!(index["mediaType"], json!(OCI_INDEX));
    let mut found: Vec<Value> = index["manifests"].as_array().expect("manifests").clone();
    found.sort_by_key(|d| d["digest"].as_str().expect("digest").to_string());
    let mut want = vec![
        json!({"mediaType": OCI_MANIFEST, "digest": sig, "size": sig_size, "artifactType": "application/vnd.example.sig",
               "annotations": {"org.example.kind": "application/vnd.example.sig"}}),
        json!({"mediaType": OCI_MANIFEST, "digest": sbom, "size": sbom_size, "artifactType": "application/vnd.example.sbom",
               "annotations": {"org.example.kind": "application/vnd.example.sbom"}}),
    ];
    want.sort_by_key(|d| d["digest"].as_str().expect("digest").to_string());
    assert_eq!(found, want);
    let (headers, filtered) = get_json(
        &client,
        &format!("{referrers}?artifactType=application/vnd.example.sbom"),
    );
    assert_eq!(
        header(&headers, "oci-filters-applied").as_deref(),
        Some("artifactType")
    );
    assert_eq!(
        filtered["manifests"].as_array().expect("manifests").len(),
        1
    );
    assert_eq!(filtered["manifests"][0]["digest"], json!(sbom));
    let (_, none) = get_json(
        &client,
        &format!("{referrers}?artifactType=application/vnd.example.none"),
    );
    assert_eq!(none["manifests"], json!([]));
    // Unknown subject: an empty index, not an error.
    let (_, unknown) = get_json(
        &client,
        &format!("{url}/v2/conf/refs/referrers/{}", sha256_digest(b"nothing")),
    );
    assert_eq!(unknown["manifests"], json!([]));
    // Deleting a referrer removes it from the list.
    expect_status(
        client
            .delete(format!("{url}/v2/conf/refs/manifests/{sig}"))
            .send()
            .expect("DELETE"),
        202,
    );
    let (_, index) = get_json(&client, &referrers);
    assert_eq!(index["manifests"].as_array().expect("manifests").len(), 1);
}

#[test]
fn discover_lists_no_extensions_as_an_empty_list() {
    let berth = Berth::start();
    let (headers, body) = get_json(&http(), &format!("{}/v2/_oci/ext/discover", berth.url));
    assert!(header(&headers, "content-type").is_some_and(|t| t.starts_with("application/json")));
    assert_eq!(body, json!({"extensions": []}));
}

#[test]
fn delete_by_tag_keeps_the_manifest_and_referenced_blobs_are_denied() {
    let berth = Berth::start();
    let client = http();
    let url = &berth.url;
    let image = random_image(1, 10);
    push_image(&client, url, "conf/delete", "one", &image);
    put_manifest(
        &client,
        url,
        "conf/delete",
        "two",
        OCI_MANIFEST,
        &image.manifest,
    );
    expect_status(
        client
            .delete(format!("{url}/v2/conf/delete/manifests/one"))
            .send()
            .expect("DELETE"),
        202,
    );
    let get = |reference: &str| {
        client
            .get(format!("{url}/v2/conf/delete/manifests/{reference}"))
            .header("accept", OCI_MANIFEST)
            .send()
            .expect("GET")
    };
    expect_error(get("one"), 404, "MANIFEST_UNKNOWN");
    expect_status(get("two"), 200);
    expect_status(get(&image.digest), 200);
    let (_, tags) = get_json(&client, &format!("{url}/v2/conf/delete/tags/list"));
    assert_eq!(tags["tags"], json!(["two"]));
    // A blob the manifest references cannot be deleted.
    for digest in image.blob_digests() {
        let blob = format!("{url}/v2/conf/delete/blobs/{digest}");
        expect_error(client.delete(&blob).send().expect("DELETE"), 405, "DENIED");
        expect_status(client.head(&blob).send().expect("HEAD"), 200);
    }
    // Deleting by digest takes the remaining tag with it; then the blobs are free.
    expect_status(
        client
            .delete(format!("{url}/v2/conf/delete/manifests/{}", image.digest))
            .send()
            .expect("DELETE"),
        202,
    );
    expect_error(get("two"), 404, "MANIFEST_UNKNOWN");
    expect_error(get(&image.digest), 404, "MANIFEST_UNKNOWN");
    for digest in image.blob_digests() {
        expect_status(
            client
                .delete(format!("{url}/v2/conf/delete/blobs/{digest}"))
                .send()
                .expect("DELETE"),
            202,
        );
    }
    let (clean, report) = berth.fsck();
    assert!(clean, "fsck after deletes:\n{report}");
}

/// A manifest GET whose `Accept` admits none of the stored type is 404 MANIFEST_UNKNOWN (as from
/// Distribution), never a document the client cannot read; no `Accept`, a wildcard, or a list
/// naming the stored type gets the stored bytes.
#[test]
fn manifest_get_honours_accept() {
    let berth = Berth::start();
    let client = http();
    let url = &berth.url;
    let image = random_image(1, 100);
    push_image(&client, url, "conf/accept", "v1", &image);
    let mut known = image.blob_digests();
    known.push(image.digest.clone());
    for reference in ["v1", image.digest.as_str()] {
        let manifest_url = format!("{url}/v2/conf/accept/manifests/{reference}");
        assert_no_state_change(&berth, &known, || {
            let response = client
                .get(&manifest_url)
                .header("accept", DOCKER_MANIFEST)
                .send()
                .expect("GET");
            expect_error(response, 404, "MANIFEST_UNKNOWN");
        });
        for accept in [
            "*/*".to_string(),
            format!("{DOCKER_MANIFEST}, {OCI_MANIFEST}"),
            format!("{DOCKER_MANIFEST};q=1.0, {OCI_INDEX}, {OCI_MANIFEST};q=0.5"),
        ] {
            let response = client
                .get(&manifest_url)
                .header("accept", &accept)
                .send()
                .expect("GET");
            let (headers, body) = expect_status(response, 200);
            assert!(
                body == image.manifest,
                "Accept {accept}: not the stored bytes"
            );
            assert_eq!(
                header(&headers, "content-type").as_deref(),
                Some(OCI_MANIFEST),
                "Accept {accept}"
            );
        }
        // Without any Accept header: reqwest adds `Accept: */*`, so this one goes raw.
        let path = manifest_url.strip_prefix(url.as_str()).expect("under url");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, text, _) =
            raw_exchange(&berth.addr, request.as_bytes(), Duration::from_secs(20));
        assert_eq!(status, Some(200), "no Accept: {text:.300}");
        assert!(
            raw_body(&text).as_bytes() == image.manifest.as_slice(),
            "no Accept: not the stored bytes: {text:.300}"
        );
    }
}
