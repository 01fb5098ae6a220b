//! API keys (`http.auth.apikey`, zot's `/zot/auth/apikey`) on the real binary: zot's shapes,
//! a key as the Basic password of curl-style requests, podman and skopeo, its owner only,
//! revocation and expiry at the next request, scopes, a key that cannot manage keys, bad
//! bodies that change nothing, durability across a restart and a SIGKILL, access control
//! applied to the key's user, and no key in the log.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_tests::api::parts;
use berth_tests::containers::{Containers, Store};
use berth_tests::{
    fetch_manifest, http, push_image, random_image, require_tool, run_cmd, run_ok, Berth, Client,
};
use serde_json::{json, Value};

const ALICE: (&str, &str) = ("alice", "alice password");
const BOB: (&str, &str) = ("bob", "bob password");
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// berth with htpasswd users alice and bob, API keys as `apikey` says, `patch` merged in.
fn start(dir: &Path, apikey: bool, patch: Value) -> Berth {
    let htpasswd = dir.join("htpasswd");
    let text: String = [ALICE, BOB]
        .iter()
        .map(|(user, password)| format!("{user}:{}\n", bcrypt::hash(password, 4).expect("bcrypt")))
        .collect();
    std::fs::write(&htpasswd, text).expect("write htpasswd");
    let mut config = json!({"http": {"auth": {"htpasswd": {"path": htpasswd}, "apikey": apikey}}});
    berth_tests::merge_patch(&mut config, &patch);
    Berth::start_with(config)
}

/// A client that sends `user:password` (a key or a password) as Basic credentials.
fn basic_client(user: &str, password: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "authorization",
        berth_tests::basic(user, password)
            .parse()
            .expect("header value"),
    );
    Client::builder()
        .default_headers(headers)
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

fn keys_url(berth: &Berth) -> String {
    format!("{}/zot/auth/apikey", berth.url)
}

/// POST /zot/auth/apikey as `user:password` with `body`: status and JSON (or text).
fn post_key(berth: &Berth, user: &str, password: &str, body: &str) -> (u16, Value) {
    let response = basic_client(user, password)
        .post(keys_url(berth))
        .header("content-type", "application/json")
        .header("user-agent", "api-keys-test/1")
        .body(body.to_owned())
        .send()
        .expect("POST apikey");
    let (status, _, body) = parts(response);
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, value)
}

/// Creates a key of alice-like `user` with `body`; panics unless 201.
fn create(berth: &Berth, (user, password): (&str, &str), body: Value) -> (String, Value) {
    let (status, created) = post_key(berth, user, password, &body.to_string());
    assert_eq!(status, 201, "{created}");
    let key = created["apiKey"].as_str().expect("apiKey").to_owned();
    (key, created)
}

fn list(berth: &Berth, (user, password): (&str, &str)) -> Vec<Value> {
    let response = basic_client(user, password)
        .get(keys_url(berth))
        .send()
        .expect("GET apikey");
    let (status, _, body) = parts(response);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let value: Value = serde_json::from_slice(&body).expect("json");
    value["apiKeys"].as_array().expect("apiKeys").clone()
}

fn revoke(berth: &Berth, user: &str, password: &str, query: &str) -> u16 {
    basic_client(user, password)
        .delete(format!("{}{query}", keys_url(berth)))
        .send()
        .expect("DELETE apikey")
        .status()
        .as_u16()
}

fn status_of(berth: &Berth, user: &str, password: &str, path: &str) -> u16 {
    basic_client(user, password)
        .get(format!("{}{path}", berth.url))
        .send()
        .expect("GET")
        .status()
        .as_u16()
}

fn is_rfc3339(text: &str) -> bool {
    text.len() >= 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T'
}

#[test]
fn a_key_is_created_used_listed_and_revoked_as_zot_shapes_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let berth = start(dir.path(), true, json!({}));
    let (key, created) = create(&berth, ALICE, json!({"label": "ci"}));
    // zot's shape: every field, times RFC 3339, Go's zero time for no expiry / never used.
    let mut fields: Vec<&str> = created
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "apiKey",
            "createdAt",
            "creatorUa",
            "expirationDate",
            "generatedBy",
            "isExpired",
            "label",
            "lastUsed",
            "scopes",
            "uuid"
        ]
    );
    let hex = key.strip_prefix("zak_").expect("zak_ prefix");
    assert!(
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{key}"
    );
    assert!(
        is_rfc3339(created["createdAt"].as_str().expect("createdAt")),
        "{created}"
    );
    assert_eq!(created["expirationDate"], GO_ZERO_TIME);
    assert_eq!(created["lastUsed"], GO_ZERO_TIME);
    assert_eq!(created["isExpired"], false);
    assert_eq!(created["generatedBy"], "manual");
    assert_eq!(created["creatorUa"], "api-keys-test/1");
    assert_eq!(created["label"], "ci");
    assert_eq!(created["scopes"], Value::Null);
    let uuid = created["uuid"].as_str().expect("uuid").to_owned();

    // The key is alice's password: push and pull with it; not bob's.
    let with_key = basic_client("alice", &key);
    let image = random_image(1, 4000);
    push_image(&with_key, &berth.url, "team/app", "v1", &image);
    let (status, served, _) = fetch_manifest(&with_key, &berth.url, "team/app", "v1");
    assert_eq!((status, served), (200, Some(image.digest.clone())));
    assert_eq!(
        status_of(&berth, "bob", &key, "/v2/"),
        401,
        "another user's key"
    );
    assert_eq!(status_of(&berth, "alice", &format!("{key}0"), "/v2/"), 401);

    // A key cannot manage keys.
    assert_eq!(post_key(&berth, "alice", &key, "{}").0, 403);
    assert_eq!(
        basic_client("alice", &key)
            .get(keys_url(&berth))
            .send()
            .expect("GET")
            .status(),
        403
    );
    assert_eq!(revoke(&berth, "alice", &key, &format!("?id={uuid}")), 403);

    // Bad bodies change nothing.
    let oversize = format!("{{\"label\":\"{}\"}}", "x".repeat(9000));
    assert_eq!(post_key(&berth, ALICE.0, ALICE.1, &oversize).0, 413);
    assert_eq!(post_key(&berth, ALICE.0, ALICE.1, "{not json").0, 400);
    let past = json!({"expirationDate": "2020-01-01T00:00:00Z"}).to_string();
    assert_eq!(post_key(&berth, ALICE.0, ALICE.1, &past).0, 400);
    let bad_date = json!({"expirationDate": "next week"}).to_string();
    assert_eq!(post_key(&berth, ALICE.0, ALICE.1, &bad_date).0, 400);
    let long_label = json!({"label": "y".repeat(257)}).to_string();
    assert_eq!(post_key(&berth, ALICE.0, ALICE.1, &long_label).0, 400);

    // Listed without the secret, last use recorded (off the request path: wait for it).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let listed = list(&berth, ALICE);
        if listed.len() == 1 && listed[0]["lastUsed"] != GO_ZERO_TIME {
            break listed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "lastUsed never set: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(listed[0]["uuid"], uuid.as_str());
    assert!(listed[0].get("apiKey").is_none(), "{listed:?}");
    assert!(is_rfc3339(
        listed[0]["lastUsed"].as_str().expect("lastUsed")
    ));
    assert!(list(&berth, BOB).is_empty(), "bob sees only his keys");

    // Bob cannot revoke it (404) and it still works.
    assert_eq!(revoke(&berth, BOB.0, BOB.1, &format!("?id={uuid}")), 404);
    assert_eq!(status_of(&berth, "alice", &key, "/v2/"), 200);
    assert_eq!(revoke(&berth, ALICE.0, ALICE.1, ""), 400, "no id");
    assert_eq!(
        revoke(&berth, ALICE.0, ALICE.1, &format!("?id={uuid}&id={uuid}")),
        400,
        "two ids"
    );
    assert_eq!(status_of(&berth, "alice", &key, "/v2/"), 200);
    // Revoked: the very next request fails.
    assert_eq!(
        revoke(&berth, ALICE.0, ALICE.1, &format!("?id={uuid}")),
        200
    );
    assert_eq!(status_of(&berth, "alice", &key, "/v2/"), 401);
    assert_eq!(
        status_of(&berth, "alice", &key, "/v2/team/app/manifests/v1"),
        401
    );
    assert_eq!(
        revoke(&berth, ALICE.0, ALICE.1, &format!("?id={uuid}")),
        404
    );
    assert!(list(&berth, ALICE).is_empty());

    // Anonymous: the challenge.
    let anonymous = http().get(keys_url(&berth)).send().expect("GET");
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));

    let log = berth.log();
    assert!(
        log.contains("API key created") && log.contains(&uuid),
        "{log}"
    );
    assert!(log.contains("API key revoked"));
    assert!(
        !log.contains(&key) && !log.contains(hex),
        "the key is never logged"
    );
    let (clean, report) = berth.fsck();
    assert!(clean, "{report}");
}

#[test]
fn an_expired_key_fails_and_is_listed_as_expired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let berth = start(dir.path(), true, json!({}));
    let expiry =
        run_ok(Command::new("date").args(["-u", "-d", "+3 seconds", "+%Y-%m-%dT%H:%M:%SZ"]));
    let expiry = expiry.trim();
    let (key, created) = create(
        &berth,
        ALICE,
        json!({"label": "short", "expirationDate": expiry}),
    );
    assert_ne!(created["expirationDate"], GO_ZERO_TIME);
    assert_eq!(created["isExpired"], false);
    assert_eq!(status_of(&berth, "alice", &key, "/v2/"), 200);
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(status_of(&berth, "alice", &key, "/v2/"), 401);
    let listed = list(&berth, ALICE);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["isExpired"], true);
}

#[test]
fn scopes_and_access_control_confine_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    // bob may only read; alice may do everything.
    let berth = start(
        dir.path(),
        true,
        json!({"http": {"accessControl": {"repositories": {"**": {
            "policies": [
                {"users": ["alice"], "actions": ["read", "create", "update", "delete"]},
                {"users": ["bob"], "actions": ["read"]}
            ]
        }}}}}),
    );
    let (scoped, created) = create(&berth, ALICE, json!({"scopes": ["team/**"]}));
    assert_eq!(created["scopes"], json!(["team/**"]));
    let with_key = basic_client("alice", &scoped);
    let image = random_image(1, 3000);
    push_image(&with_key, &berth.url, "team/x", "v1", &image);
    let alice = basic_client(ALICE.0, ALICE.1);
    push_image(&alice, &berth.url, "other/x", "v1", &image);
    assert_eq!(
        status_of(&berth, "alice", &scoped, "/v2/other/x/manifests/v1"),
        403
    );
    let upload = with_key
        .post(format!("{}/v2/other/y/blobs/uploads/", berth.url))
        .send()
        .expect("POST upload");
    assert_eq!(upload.status(), 403);
    let body: Value = serde_json::from_str(&upload.text().expect("body")).expect("json");
    assert_eq!(body["errors"][0]["code"], "DENIED");
    assert_eq!(
        status_of(&berth, "alice", &scoped, "/v2/team/x/manifests/v1"),
        200
    );
    // A mount from a repository outside the scopes is a fresh upload (202), never a link, even
    // though alice herself may read the source; from inside them it links (201).
    let layer = berth_tests::sha256_digest(&image.layers[0]);
    let outside = with_key
        .post(format!(
            "{}/v2/team/y/blobs/uploads/?mount={layer}&from=other/x",
            berth.url
        ))
        .send()
        .expect("mount from outside the scopes");
    assert_eq!(outside.status(), 202);
    assert_eq!(
        status_of(
            &berth,
            "alice",
            &scoped,
            &format!("/v2/team/y/blobs/{layer}")
        ),
        404,
        "nothing was linked"
    );
    let inside = with_key
        .post(format!(
            "{}/v2/team/z/blobs/uploads/?mount={layer}&from=team/x",
            berth.url
        ))
        .send()
        .expect("mount from inside the scopes");
    assert_eq!(inside.status(), 201);
    let catalog: Value = serde_json::from_str(
        &with_key
            .get(format!("{}/v2/_catalog", berth.url))
            .send()
            .expect("catalog")
            .text()
            .expect("body"),
    )
    .expect("json");
    // team/z got the mounted blob; team/y only an upload session (nothing linked).
    assert_eq!(catalog["repositories"], json!(["team/x", "team/z"]));
    // Not about one repository: closed to a scoped key.
    assert_eq!(
        status_of(&berth, "alice", &scoped, "/v2/_zot/ext/search"),
        403
    );
    // accessControl applies to the key's user: bob's key reads, never writes.
    let (bobs, _) = create(&berth, BOB, json!({}));
    let bob_key = basic_client("bob", &bobs);
    assert_eq!(
        status_of(&berth, "bob", &bobs, "/v2/other/x/manifests/v1"),
        200
    );
    let refused = bob_key
        .post(format!("{}/v2/bobs/blobs/uploads/", berth.url))
        .send()
        .expect("POST upload");
    assert_eq!(refused.status(), 403);
}

#[test]
fn apikey_off_answers_404_and_a_zak_password_is_only_a_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let berth = start(dir.path(), false, json!({}));
    let (status, _) = post_key(&berth, ALICE.0, ALICE.1, "{}");
    assert_eq!(status, 404);
    let listed = basic_client(ALICE.0, ALICE.1)
        .get(keys_url(&berth))
        .send()
        .expect("GET");
    assert_eq!(listed.status(), 404);
    let fake = format!("zak_{}", "0".repeat(32));
    assert_eq!(status_of(&berth, "alice", &fake, "/v2/"), 401);
}

#[test]
fn acknowledged_creation_and_revocation_survive_a_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut berth = start(dir.path(), true, json!({}));
    let (key, created) = create(&berth, ALICE, json!({"label": "durable"}));
    let (other, _) = create(&berth, ALICE, json!({"label": "kept"}));
    berth.kill();
    berth.restart();
    assert_eq!(status_of(&berth, "alice", &key, "/v2/"), 200);
    let uuid = created["uuid"].as_str().expect("uuid");
    assert_eq!(
        revoke(&berth, ALICE.0, ALICE.1, &format!("?id={uuid}")),
        200
    );
    berth.kill();
    berth.restart();
    assert_eq!(status_of(&berth, "alice", &key, "/v2/"), 401);
    assert_eq!(status_of(&berth, "alice", &other, "/v2/"), 200);
    let listed = list(&berth, ALICE);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["label"], "kept");
    berth.stop();
    let (clean, report) = berth.fsck();
    assert!(clean, "{report}");
}

#[test]
fn podman_and_skopeo_log_in_with_a_key() {
    if !require_tool("podman") || !require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let berth = start(dir.path(), true, json!({}));
    let (key, _) = create(&berth, ALICE, json!({"label": "clients"}));
    let containers = Containers::new(&berth.addr);
    let podman = |store: Store| containers.cmd("podman", store);
    let image = random_image(1, 20_000);
    let local = containers.stage_image(&image);
    let remote = format!("{}/team/podman:v1", berth.addr);
    run_ok(podman(Store::Build).args(["login", "-u", "alice", "-p", &key, &berth.addr]));
    run_ok(podman(Store::Build).args(["push", &local, &remote]));
    run_ok(podman(Store::Pull).args(["pull", "-q", &remote]));
    // skopeo with the key as --creds, both ways.
    let skopeo_remote = format!("docker://{}/team/skopeo:v1", berth.addr);
    let creds = format!("alice:{key}");
    run_ok(
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &creds,
            ])
            .arg(format!(
                "oci:{}:v1",
                containers.dir().join("layout").display()
            ))
            .arg(&skopeo_remote),
    );
    let out = dir.path().join("out");
    run_ok(
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--src-tls-verify=false",
                "--src-creds",
                &creds,
            ])
            .arg(&skopeo_remote)
            .arg(format!("oci:{}:v1", out.display())),
    );
    let wrong = format!("bob:{key}");
    let (ok, _, _) = run_cmd(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--creds", &wrong])
            .arg(&skopeo_remote),
    );
    assert!(!ok, "the key is alice's only");
    assert!(!berth.log().contains(&key), "the key is never logged");
}

#[test]
fn the_session_cookie_manages_keys_with_the_csrf_header_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let berth = start(
        dir.path(),
        true,
        json!({"extensions": {"ui": {"enable": true}, "search": {"enable": true}}}),
    );
    let browser = http();
    let login = browser
        .post(format!("{}/login", berth.url))
        .header("origin", &berth.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "username={}&password=alice%20password&next=%2Fhome",
            ALICE.0
        ))
        .send()
        .expect("login");
    assert_eq!(login.status(), 303);
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .expect("session cookie")
        .to_owned();
    let page = browser
        .get(format!("{}/apikeys", berth.url))
        .header("cookie", &cookie)
        .send()
        .expect("GET /apikeys")
        .text()
        .expect("page");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf in the page")
        .to_owned();
    let post = |headers: &[(&str, &str)]| {
        let mut request = browser
            .post(keys_url(&berth))
            .header("cookie", &cookie)
            .body("{\"label\":\"cookie\"}");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().expect("POST").status().as_u16()
    };
    assert_eq!(post(&[]), 403, "no CSRF token");
    assert_eq!(
        post(&[("x-csrf-token", "0".repeat(64).as_str())]),
        403,
        "a wrong token"
    );
    assert_eq!(
        post(&[("x-csrf-token", &csrf), ("origin", "http://evil.example")]),
        403,
        "another origin"
    );
    assert!(list(&berth, ALICE).is_empty(), "refusals stored nothing");
    assert_eq!(
        post(&[("x-csrf-token", &csrf), ("origin", &berth.url)]),
        201
    );
    let listed = browser
        .get(keys_url(&berth))
        .header("cookie", &cookie)
        .send()
        .expect("GET");
    assert_eq!(listed.status(), 200);
    let listed: Value = serde_json::from_str(&listed.text().expect("body")).expect("json");
    assert_eq!(listed["apiKeys"][0]["label"], "cookie");
}
