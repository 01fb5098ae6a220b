//! berth's request logs as an operator reads them: one JSON access line per request carrying
//! its request id (the client's when it is a short token, else berth's, always echoed in
//! `X-Request-Id`) and the bytes it moved; the audit log with one line per mutating request,
//! kept out of the main log; and credentials never written to either.
//!
//! Logs are written by a background thread, so every assertion polls the files with a bounded
//! wait ([`wait_for`]) instead of reading them once.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use berth_tests::{
    fetch_blob, fetch_manifest, http, push_image, random_bytes, random_image, sha256_digest,
    try_push_blob, wait_for, Berth, Client,
};
use reqwest::blocking::Response;
use serde_json::{json, Value};

/// Every non-empty line of `text` as JSON (panics on a line that is not).
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

fn access_lines(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|line| line["target"] == "berth::access")
        .collect()
}

fn read_file(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The response's `X-Request-Id`.
fn request_id(response: &Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .expect("every response carries X-Request-Id")
        .to_str()
        .expect("ascii request id")
        .to_owned()
}

/// GET `url` with an optional client `X-Request-Id`; returns (status, echoed id).
fn get_with_id(client: &Client, url: &str, id: Option<&str>) -> (u16, String) {
    let mut request = client.get(url);
    if let Some(id) = id {
        request = request.header("x-request-id", id);
    }
    let response = request.send().expect("GET");
    let id = request_id(&response);
    let status = response.status().as_u16();
    response.bytes().expect("body");
    (status, id)
}

/// A berth-made id: a short token of letters, digits and dashes.
fn assert_generated(id: &str, instead_of: &str) {
    assert_ne!(id, instead_of, "an invalid client id was kept");
    assert!(
        !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        "generated id {id:?}"
    );
}

/// With `log.format: json`, every line parses; each request has exactly one access line with
/// its id (the response's `X-Request-Id`), method, path, status, byte counts, duration and
/// client; a client id is kept when valid and replaced when not.
#[test]
fn json_access_lines_carry_the_request_id_and_byte_counts() {
    let berth = Berth::start_with(json!({"log": {"format": "json", "level": "info"}}));
    let client = http();
    let url = &berth.url;
    let base = format!("{url}/v2/");
    // (request id, method, path, status)
    let mut sent: Vec<(String, &str, String, u16)> = Vec::new();

    let (status, first) = get_with_id(&client, &base, None);
    sent.push((first.clone(), "GET", "/v2/".into(), status));
    let (status, second) = get_with_id(&client, &base, None);
    sent.push((second.clone(), "GET", "/v2/".into(), status));
    assert_ne!(first, second, "two requests share an id");

    let blob = random_bytes(300_000);
    let digest = sha256_digest(&blob);
    let started = client
        .post(format!("{url}/v2/logs/json/blobs/uploads/"))
        .send()
        .expect("POST upload");
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    sent.push((
        request_id(&started),
        "POST",
        "/v2/logs/json/blobs/uploads/".into(),
        202,
    ));
    let put = client
        .put(format!("{url}{location}?digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(blob.clone())
        .send()
        .expect("PUT blob");
    assert_eq!(put.status(), 201);
    let put_id = request_id(&put);
    sent.push((put_id.clone(), "PUT", location.clone(), 201));
    let blob_path = format!("/v2/logs/json/blobs/{digest}");
    let got = client
        .get(format!("{url}{blob_path}"))
        .send()
        .expect("GET blob");
    assert_eq!(got.status(), 200);
    let get_id = request_id(&got);
    assert_eq!(got.bytes().expect("blob").len(), blob.len());
    sent.push((get_id.clone(), "GET", blob_path, 200));

    let (status, kept) = get_with_id(&client, &base, Some("abc-123"));
    assert_eq!(kept, "abc-123", "a valid client id is echoed");
    sent.push((kept, "GET", "/v2/".into(), status));
    let (status, spaced) = get_with_id(&client, &base, Some("a b"));
    assert_generated(&spaced, "a b");
    sent.push((spaced, "GET", "/v2/".into(), status));
    let long = "x".repeat(100);
    let (status, replaced) = get_with_id(&client, &base, Some(&long));
    assert_generated(&replaced, &long);
    sent.push((replaced, "GET", "/v2/".into(), status));
    let missing = "/v2/logs/json/manifests/missing";
    let (status, refused) = get_with_id(&client, &format!("{url}{missing}"), None);
    assert_eq!(status, 404);
    sent.push((refused, "GET", missing.into(), 404));

    let ids: HashSet<&str> = sent.iter().map(|(id, ..)| id.as_str()).collect();
    assert_eq!(
        ids.len(),
        sent.len(),
        "request ids are not unique: {sent:?}"
    );

    let log_path = berth.tmp_dir().join("berth.log");
    wait_for(
        "one access line per request",
        || read_file(&log_path),
        |log| log.matches("\"berth::access\"").count() >= sent.len(),
    );
    // Give a duplicate line the chance to show up before counting exactly.
    std::thread::sleep(Duration::from_millis(300));
    let log = read_file(&log_path);
    let lines = json_lines(&log);
    let access = access_lines(&lines);
    assert_eq!(access.len(), sent.len(), "access lines:\n{log}");
    for (id, method, path, status) in &sent {
        let mine: Vec<_> = access
            .iter()
            .filter(|line| line["span"]["request_id"] == id.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "access lines for {id}:\n{log}");
        let fields = &mine[0]["fields"];
        assert_eq!(fields["method"], *method, "{fields}");
        assert_eq!(fields["path"], path.as_str(), "{fields}");
        assert_eq!(fields["status"], *status, "{fields}");
        for number in ["received_bytes", "sent_bytes", "duration_ms"] {
            assert!(fields[number].is_number(), "{number} in {fields}");
        }
        let client = fields["client"].as_str().expect("client is a string");
        assert!(client.starts_with("127.0.0.1:"), "{fields}");
    }
    let line_of = |id: &str| {
        access
            .iter()
            .find(|line| line["span"]["request_id"] == id)
            .map(|line| line["fields"].clone())
            .expect("access line")
    };
    assert_eq!(line_of(&put_id)["received_bytes"], blob.len(), "blob PUT");
    assert_eq!(line_of(&get_id)["sent_bytes"], blob.len(), "blob GET");
    assert_eq!(line_of(&get_id)["received_bytes"], 0, "blob GET");
}

/// `log.audit` gets one JSON line per mutating request (refused ones included, with their
/// status), none for reads, and the main log gets none of them.
#[test]
fn audit_log_has_one_line_per_mutating_request_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_path = dir.path().join("audit.log");
    let berth = Berth::start_with(json!({
        "log": {"format": "json", "audit": audit_path},
    }));
    let client = http();
    let url = &berth.url;
    let image = random_image(1, 2000);
    push_image(&client, url, "audit/app", "v1", &image);
    try_push_blob(&client, url, "audit/app", &random_bytes(5000), true).expect("chunked push");
    let (status, ..) = fetch_manifest(&client, url, "audit/app", "v1");
    assert_eq!(status, 200);
    let (status, _) = fetch_blob(&client, url, "audit/app", &sha256_digest(&image.layers[0]));
    assert_eq!(status, 200);
    let head = client
        .head(format!("{url}/v2/audit/app/manifests/v1"))
        .send()
        .expect("HEAD");
    assert_eq!(head.status(), 200);
    let invalid = client
        .put(format!("{url}/v2/audit/app/manifests/broken"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(r#"{"not":"a manifest"}"#)
        .send()
        .expect("PUT invalid manifest");
    let invalid_status = invalid.status().as_u16();
    assert!((400..500).contains(&invalid_status), "{invalid_status}");
    let invalid_id = request_id(&invalid);
    let unknown = sha256_digest(b"never pushed");
    let delete = client
        .delete(format!("{url}/v2/audit/app/manifests/{unknown}"))
        .send()
        .expect("DELETE");
    let delete_status = delete.status().as_u16();
    assert!((400..500).contains(&delete_status), "{delete_status}");

    // POST+PUT per blob (2), the manifest, POST+2 PATCH+PUT, the invalid PUT, the DELETE.
    let mut expected = BTreeMap::new();
    for (key, count) in [
        (("POST", 202), 3),
        (("PUT", 201), 4),
        (("PATCH", 202), 2),
        (("PUT", invalid_status), 1),
        (("DELETE", delete_status), 1),
    ] {
        *expected.entry(key).or_insert(0) += count;
    }
    let mutating: usize = expected.values().sum();
    let requests = mutating + 3; // the manifest GET, the blob GET, the HEAD
    let log_path = berth.tmp_dir().join("berth.log");
    wait_for(
        "the audit lines",
        || read_file(&audit_path),
        |text| json_lines(text).len() >= mutating,
    );
    wait_for(
        "the access lines",
        || read_file(&log_path),
        |log| log.matches("\"berth::access\"").count() >= requests,
    );
    // Give an extra line the chance to show up before counting exactly.
    std::thread::sleep(Duration::from_millis(300));
    let audit = read_file(&audit_path);
    let log = read_file(&log_path);

    let audit_lines = json_lines(&audit);
    let main_lines = json_lines(&log);
    let access = access_lines(&main_lines);
    assert_eq!(access.len(), requests, "access lines:\n{log}");
    let mut seen = BTreeMap::new();
    for line in &audit_lines {
        assert_eq!(line["target"], "berth::audit", "{line}");
        let fields = &line["fields"];
        let id = fields["request_id"].as_str().expect("request_id");
        let action = fields["action"].as_str().expect("action");
        let status = fields["status"].as_u64().expect("status") as u16;
        let object = fields["object"].as_str().expect("object");
        assert!(object.starts_with("/v2/audit/app/"), "{line}");
        let client = fields["client"].as_str().expect("client");
        assert!(client.starts_with("127.0.0.1:"), "{line}");
        // The same request in the access log.
        let request = access
            .iter()
            .find(|access| access["span"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no access line for audited {id}:\n{log}"));
        assert_eq!(request["fields"]["method"], action, "{line}");
        assert_eq!(request["fields"]["path"], object, "{line}");
        assert_eq!(request["fields"]["status"], status, "{line}");
        *seen.entry((action, status)).or_insert(0) += 1;
    }
    assert_eq!(seen, expected, "audit lines:\n{audit}");
    let refused: Vec<_> = audit_lines
        .iter()
        .filter(|line| line["fields"]["request_id"] == invalid_id.as_str())
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "the refused PUT is audited once:\n{audit}"
    );
    assert_eq!(
        refused[0]["fields"]["object"],
        "/v2/audit/app/manifests/broken"
    );
    assert!(
        main_lines
            .iter()
            .all(|line| line["target"] != "berth::audit" && line["fields"]["message"] != "audit"),
        "audit lines in the main log:\n{log}"
    );
}

const BASIC: &str = "Basic c2VjcmV0LXBhc3N3b3Jk";
const BEARER: &str = "Bearer top-secret-token-123";
const SECRETS: [&str; 3] = [
    "c2VjcmV0LXBhc3N3b3Jk",
    "secret-password",
    "top-secret-token-123",
];

/// Credentials in `Authorization` (Basic and Bearer, on reads, writes and refused requests)
/// never reach the main log at debug level nor the audit log.
#[test]
fn credentials_never_reach_the_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_path = dir.path().join("audit.log");
    let berth = Berth::start_with(json!({"log": {"level": "debug", "audit": audit_path}}));
    let client = http();
    let url = &berth.url;
    let send = |request: reqwest::blocking::RequestBuilder, expected: u16| {
        let response = request.send().expect("request");
        assert_eq!(response.status(), expected, "{}", response.url());
        response
    };
    for auth in [BASIC, BEARER] {
        send(
            client
                .get(format!("{url}/v2/"))
                .header("authorization", auth),
            200,
        );
        send(
            client
                .get(format!("{url}/v2/secret/app/manifests/missing"))
                .header("authorization", auth),
            404,
        );
        send(
            client
                .put(format!("{url}/v2/secret/app/manifests/bad"))
                .header("authorization", auth)
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .body("{}"),
            400,
        );
        let blob = random_bytes(1000);
        let digest = sha256_digest(&blob);
        let started = send(
            client
                .post(format!("{url}/v2/secret/app/blobs/uploads/"))
                .header("authorization", auth),
            202,
        );
        let location = started.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_owned();
        send(
            client
                .put(format!("{url}{location}?digest={digest}"))
                .header("authorization", auth)
                .header("content-type", "application/octet-stream")
                .body(blob),
            201,
        );
        send(
            client
                .get(format!("{url}/v2/secret/app/blobs/{digest}"))
                .header("authorization", auth),
            200,
        );
    }
    let log = wait_for(
        "the access lines",
        || berth.log(),
        |log| log.matches("berth::access").count() >= 12,
    );
    let audit = wait_for(
        "the audit lines",
        || read_file(&audit_path),
        |text| json_lines(text).len() >= 6,
    );
    assert!(
        log.contains("request refused"),
        "the main log is not at debug level:\n{log}"
    );
    for secret in SECRETS {
        assert!(!log.contains(secret), "{secret} in the main log:\n{log}");
        assert!(
            !audit.contains(secret),
            "{secret} in the audit log:\n{audit}"
        );
    }
}
