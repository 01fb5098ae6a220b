//! LDAP logins (`http.auth.ldap`) against a real OpenLDAP server (Debian's slapd, started by
//! the test on loopback; tests/src/ldap.rs has the directory): podman and skopeo log in with
//! directory passwords, the directory's groups drive `accessControl`, names with filter
//! metacharacters cannot widen the search, StartTLS and LDAPS verify the directory's
//! certificate, and a directory that is down fails logins (401, logged) without stopping the
//! registry or htpasswd users.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::containers::{Containers, Store};
use berth_tests::ldap::{slapd_available, Slapd, SlapdTls, ADMIN_DN, ADMIN_PASSWORD};
use berth_tests::{
    random_image, run_ok, try_push_manifest, wait_for, write_oci_layout, Berth, Client, Image,
};
use serde_json::{json, Value};

fn client(user: &str, password: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "authorization",
        berth_tests::basic(user, password).parse().expect("header"),
    );
    Client::builder()
        .default_headers(headers)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// `GET /v2/` as `user`: the status.
fn login(berth: &Berth, user: &str, password: &str) -> u16 {
    client(user, password)
        .get(format!("{}/v2/", berth.url))
        .send()
        .expect("GET /v2/")
        .status()
        .as_u16()
}

/// Pushes `image` to `repo:v1` as `user`: the manifest PUT's status.
fn push(berth: &Berth, user: &str, password: &str, repo: &str, image: &Image) -> u16 {
    let client = client(user, password);
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        let digest = berth_tests::sha256_digest(blob);
        let answer = client
            .post(format!(
                "{}/v2/{repo}/blobs/uploads/?digest={digest}",
                berth.url
            ))
            .header("content-type", "application/octet-stream")
            .body(blob.clone())
            .send()
            .expect("upload");
        if answer.status() != 201 {
            return answer.status().as_u16();
        }
    }
    match try_push_manifest(&client, &berth.url, repo, "v1", &image.manifest) {
        Ok(_) => 201,
        Err(berth_tests::PushError::Status { status, .. }) => status,
        Err(error) => panic!("push manifest: {error}"),
    }
}

fn ldap_section(slapd: &Slapd, extra: Value) -> Value {
    let mut section = json!({
        "address": "127.0.0.1",
        "port": slapd.port,
        "insecure": true,
        "baseDN": "ou=people,dc=example,dc=org",
        "userAttribute": "uid",
        "userGroupAttribute": "memberOf",
        "bindDN": ADMIN_DN,
        "bindPassword": ADMIN_PASSWORD,
    });
    berth_tests::merge_patch(&mut section, &extra);
    section
}

fn access() -> Value {
    json!({
        "repositories": {
            "devs/**": {"policies": [{"groups": ["devs"], "actions": ["read", "create"]}]},
            "ops/**": {"policies": [{
                "groups": ["cn=ops,ou=groups,dc=example,dc=org"], "actions": ["read", "create"],
            }]},
            "**": {"defaultPolicy": ["read"]},
        },
    })
}

#[test]
fn directory_logins_and_groups_drive_access_for_real_clients() {
    if !slapd_available() || !berth_tests::require_tool("skopeo") {
        return;
    }
    let slapd = Slapd::start(None);
    let logs = tempfile::tempdir().unwrap();
    let audit_path = logs.path().join("audit.log");
    let berth = Berth::start_with(json!({
        "http": {
            "auth": {"ldap": ldap_section(&slapd, json!({}))},
            "accessControl": access(),
        },
        "log": {"format": "json", "audit": audit_path},
    }));
    assert_eq!(login(&berth, "alice", "alice-pw"), 200);
    let image = random_image(1, 512);
    // Groups by their short name (devs) and by their DN (ops).
    assert_eq!(push(&berth, "alice", "alice-pw", "devs/app", &image), 201);
    assert_eq!(push(&berth, "alice", "alice-pw", "ops/app", &image), 403);
    assert_eq!(push(&berth, "bob", "bob-pw", "ops/app", &image), 201);
    assert_eq!(push(&berth, "bob", "bob-pw", "devs/other", &image), 403);
    // carol sits one level deeper: not found without subtreeSearch.
    assert_eq!(login(&berth, "carol", "carol-pw"), 401);

    // Wrong password, unknown user, empty password (an anonymous bind would succeed).
    for (user, password) in [("alice", "wrong"), ("mallory", "alice-pw"), ("alice", "")] {
        assert_eq!(login(&berth, user, password), 401, "{user:?}/{password:?}");
    }
    // Names with filter metacharacters match themselves only: none reaches alice's entry.
    for user in [
        "*",
        "al*",
        "alice)(uid=*",
        "*)(|(uid=*",
        "alice\\",
        "alice\0",
        "(uid=alice)",
    ] {
        assert_eq!(login(&berth, user, "alice-pw"), 401, "{user:?}");
    }
    assert_eq!(
        login(&berth, "star*", "star-pw"),
        200,
        "a name with * is that user"
    );
    assert_eq!(login(&berth, "star*", "alice-pw"), 401);

    // skopeo pushes with directory credentials; podman logs in and pulls (devs/** is the
    // devs group's alone: bob may not even read it).
    let layout = tempfile::tempdir().unwrap();
    let second = random_image(2, 1024);
    write_oci_layout(layout.path(), "v2", &second);
    run_ok(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
            .args(["--dest-creds", "alice:alice-pw"])
            .arg(format!("oci:{}:v2", layout.path().display()))
            .arg(format!("docker://{}/devs/app:v2", berth.addr)),
    );
    let containers = Containers::new(&berth.addr);
    run_ok(containers.cmd("podman", Store::Pull).args([
        "login",
        "--username",
        "alice",
        "--password",
        "alice-pw",
        &berth.addr,
    ]));
    run_ok(
        containers
            .cmd("podman", Store::Pull)
            .args(["pull", "--quiet"])
            .arg(format!("{}/devs/app:v2", berth.addr)),
    );
    let denied = client("bob", "bob-pw")
        .get(format!("{}/v2/devs/app/tags/list", berth.url))
        .send()
        .unwrap();
    assert_eq!(denied.status(), 403);
    // Audit lines are written by the logging thread: wait for the last login's.
    let audit = wait_for(
        "the audit line of the last login",
        || std::fs::read_to_string(&audit_path).unwrap_or_default(),
        |text| text.matches("\"event\":\"login\"").count() >= 2 && text.contains("mallory"),
    );
    // Read after the wait, so the check covers as much of the (buffered) log as possible.
    let log = berth.log();
    for secret in ["alice-pw", "bob-pw", ADMIN_PASSWORD] {
        assert!(!log.contains(secret), "{secret} reached the log");
        assert!(!audit.contains(secret), "{secret} reached the audit log");
    }
    // The audit log has every checked login and every failed attempt, with the method.
    let events: Vec<Value> = audit
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| line.get("fields").cloned().unwrap_or(line))
        .filter(|fields| fields.get("event").is_some())
        .collect();
    let has = |event: &str, method: &str, subject: &str| {
        events.iter().any(|fields| {
            fields["event"] == event && fields["method"] == method && fields["subject"] == subject
        })
    };
    assert!(has("login", "ldap", "alice"), "{audit}");
    assert!(has("login", "ldap", "bob"), "{audit}");
    assert!(has("login_failed", "basic", "mallory"), "{audit}");
    assert!(has("login_failed", "basic", "*"), "{audit}");
}

fn pki(dir: &Path) {
    run_ok(
        Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tls/certs.py"))
            .arg(dir),
    );
}

#[test]
fn start_tls_and_ldaps_verify_the_directory() {
    if !slapd_available() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    pki(certs.path());
    let file = |name: &str| certs.path().join(name);
    let slapd = Slapd::start(Some(SlapdTls {
        cert: &file("server.crt"),
        key: &file("server.key"),
        ca: &file("ca.crt"),
    }));
    let start_tls = json!({"insecure": false, "startTLS": true, "cacert": file("ca.crt"),
        "subtreeSearch": true});
    let ldaps = json!({"insecure": false, "port": slapd.ldaps_port, "cacert": file("ca.crt")});
    let other_ca = json!({"insecure": false, "port": slapd.ldaps_port,
        "cacert": file("other-ca.crt")});
    for (name, extra, alice) in [
        ("StartTLS", start_tls, 200),
        ("LDAPS", ldaps, 200),
        ("LDAPS with another CA", other_ca, 401),
    ] {
        let berth = Berth::start_with(json!({"http": {
            "auth": {"ldap": ldap_section(&slapd, extra)},
        }}));
        assert_eq!(login(&berth, "alice", "alice-pw"), alice, "{name}");
        if alice == 200 {
            assert_eq!(login(&berth, "alice", "wrong"), 401, "{name}");
        } else {
            // The daemon's log goes through a background writer: the line may follow the 401.
            wait_for(
                &format!("{name}: the log line of the refused directory"),
                || berth.log(),
                |log| log.contains("LDAP directory unavailable"),
            );
        }
        if name == "StartTLS" {
            assert_eq!(
                login(&berth, "carol", "carol-pw"),
                200,
                "subtreeSearch finds carol"
            );
        }
    }
}

#[test]
fn a_directory_that_is_down_fails_logins_but_nothing_else() {
    if !slapd_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("dave-pw", 4).unwrap();
    std::fs::write(&htpasswd, format!("dave:{hash}\n")).unwrap();
    let mut slapd = Slapd::start(None);
    let berth = Berth::start_with(json!({"http": {"auth": {
        "ldap": ldap_section(&slapd, json!({})),
        "htpasswd": {"path": htpasswd},
    }}}));
    // LDAP first, then the file (zot's order).
    assert_eq!(login(&berth, "alice", "alice-pw"), 200);
    assert_eq!(login(&berth, "dave", "dave-pw"), 200);

    slapd.stop();
    let started = Instant::now();
    assert_eq!(login(&berth, "bob", "bob-pw"), 401, "the directory is down");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a down directory answers within its timeout"
    );
    wait_for(
        "the log line of the directory outage",
        || berth.log(),
        |log| log.contains("LDAP directory unavailable"),
    );
    assert_eq!(
        login(&berth, "dave", "dave-pw"),
        200,
        "htpasswd users go on"
    );
    let live = berth_tests::http()
        .get(format!("{}/livez", berth.url))
        .send()
        .unwrap();
    assert_eq!(live.status(), 200);
    // A directory outage is nobody's wrong password: no backoff for bob afterwards.
    for _ in 0..6 {
        assert_eq!(login(&berth, "bob", "bob-pw"), 401);
    }
    slapd.restart();
    assert_eq!(
        login(&berth, "bob", "bob-pw"),
        200,
        "back with the directory"
    );
}

#[test]
fn directory_groups_outlive_a_restart_for_api_keys() {
    if !slapd_available() {
        return;
    }
    let mut slapd = Slapd::start(None);
    let mut berth = Berth::start_with(json!({"http": {
        "auth": {"ldap": ldap_section(&slapd, json!({})), "apikey": true},
        "accessControl": access(),
    }}));
    // alice logs in with her directory password and makes a key for CI.
    let created = client("alice", "alice-pw")
        .post(format!("{}/zot/auth/apikey", berth.url))
        .body(r#"{"label": "ci"}"#)
        .send()
        .expect("create a key");
    assert_eq!(created.status(), 201);
    let created: Value = serde_json::from_slice(&created.bytes().unwrap()).unwrap();
    let key = created["apiKey"].as_str().expect("apiKey").to_owned();

    // After a restart, with the directory down, the key still carries her groups: they were
    // kept in the index at her last login.
    berth.restart();
    slapd.stop();
    let image = random_image(1, 256);
    assert_eq!(push(&berth, "alice", &key, "devs/ci", &image), 201);
    assert_eq!(push(&berth, "alice", &key, "ops/ci", &image), 403);
    let (clean, report) = berth.fsck();
    assert!(clean, "{report}");
}
