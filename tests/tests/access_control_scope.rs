//! `http.accessControl` on the real binary, what it scopes besides repository actions: the
//! filtered catalog, metrics access, upload sessions that belong to their user across a
//! restart, access control without htpasswd, and configs with CEL conditions refused by
//! `berth verify` and `berth serve`. (access_control.rs: the policies.)

use std::path::Path;
use std::process::Command;

use berth_tests::access::*;
use berth_tests::api::{expect_status, parts, patch_chunk, path_of, start_upload, upload_state};
use berth_tests::{
    assert_no_state_change, authed, fetch_blob, fetch_manifest, http, push_image, random_bytes,
    random_image, run_ok, sha256_digest, Berth, Client, HTPASSWD_SECRET,
};
use serde_json::{json, Value};

fn catalog_of(client: &Client, url: &str, query: &str) -> (Vec<String>, Option<String>) {
    let response = client
        .get(format!("{url}/v2/_catalog{query}"))
        .send()
        .expect("GET catalog");
    let (status, headers, body) = parts(response);
    assert_eq!(status, 200);
    let value: Value = serde_json::from_slice(&body).expect("catalog JSON");
    let repos = value["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .map(|name| name.as_str().expect("name").to_owned())
        .collect();
    let link = headers
        .get("link")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (repos, link)
}

#[test]
fn the_catalog_lists_only_readable_repositories() {
    let berth = start(
        json!({"repositories": {
            "**": {"policies": [{"users": ["alice"], "actions": ALL}]},
            "pub/**": {"policies": [{"users": ["alice"], "actions": ALL}], "anonymousPolicy": ["read"], "defaultPolicy": ["read"]},
            "team/**": {"policies": [{"users": ["alice", "bob"], "actions": ALL}]},
        }}),
        json!({}),
    );
    let alice = authed("alice");
    let blob = random_bytes(100);
    for repo in ["a/hidden", "pub/one", "pub/two", "team/x", "z/hidden"] {
        berth_tests::push_blob(&alice, &berth.url, repo, &blob);
    }
    let names = |list: &[&str]| list.iter().map(|name| name.to_string()).collect::<Vec<_>>();
    assert_eq!(
        catalog_of(&alice, &berth.url, "").0,
        names(&["a/hidden", "pub/one", "pub/two", "team/x", "z/hidden"])
    );
    assert_eq!(
        catalog_of(&authed("bob"), &berth.url, "").0,
        names(&["pub/one", "pub/two", "team/x"])
    );
    assert_eq!(
        catalog_of(&http(), &berth.url, "").0,
        names(&["pub/one", "pub/two"])
    );
    // Pages skip what the caller may not read and stay full.
    let (page, link) = catalog_of(&authed("carol"), &berth.url, "?n=1");
    assert_eq!(page, names(&["pub/one"]));
    let link = link.expect("a next page");
    assert!(link.contains("last=pub%2Fone"), "{link}");
    let (page, link) = catalog_of(&authed("carol"), &berth.url, "?n=1&last=pub%2Fone");
    assert_eq!(page, names(&["pub/two"]));
    let (page, _) = catalog_of(&authed("carol"), &berth.url, "?n=1&last=pub%2Ftwo");
    assert!(page.is_empty(), "{page:?} after {link:?}");
}

fn scrape(client: &Client, url: &str) -> u16 {
    client
        .get(format!("{url}/metrics"))
        .send()
        .expect("GET metrics")
        .status()
        .as_u16()
}

#[test]
fn metrics_access_follows_the_metrics_entry() {
    let everything = json!({"**": {"policies": [{"users": ["alice"], "actions": ALL}]}});
    // No `metrics` entry: any authenticated user.
    let berth = start(json!({"repositories": everything}), json!({}));
    assert_eq!(scrape(&authed("bob"), &berth.url), 200);
    assert_challenged(get(&http(), format!("{}/metrics", berth.url)));
    drop(berth);
    // Listed users only.
    let berth = start(
        json!({"repositories": everything, "metrics": {"users": ["prometheus"]}}),
        json!({}),
    );
    assert_eq!(scrape(&authed("prometheus"), &berth.url), 200);
    assert_eq!(scrape(&authed("alice"), &berth.url), 403);
    assert_eq!(scrape(&http(), &berth.url), 401);
    drop(berth);
    // anonymousPolicy read: anyone.
    let berth = start(
        json!({"repositories": everything, "metrics": {"users": [], "anonymousPolicy": ["read"]}}),
        json!({}),
    );
    assert_eq!(scrape(&http(), &berth.url), 200);
    // The health probes stay open whatever the policies.
    for probe in ["/livez", "/readyz", "/startupz"] {
        let status = http()
            .get(format!("{}{probe}", berth.url))
            .send()
            .expect("probe")
            .status();
        assert_eq!(status.as_u16(), 200, "{probe}");
    }
}

#[test]
fn an_upload_session_stays_its_owners_across_a_restart() {
    let all = json!({"**": {"policies": [{"users": ["alice", "bob"], "actions": ALL}]}});
    let mut berth = start(json!({"repositories": all}), json!({}));
    let (alice, bob) = (authed("alice"), authed("bob"));
    let data = random_bytes(20);
    let location = start_upload(&alice, &berth.url, "lib/app");
    expect_status(patch_chunk(&alice, &location, 0, &data[..10]), 202);
    let path = path_of(&location).to_owned();
    berth.restart();
    // The restarted daemon listens on a new port.
    let location = format!("{}{path}", berth.url);
    assert_eq!(
        outcome(get(&bob, &location)),
        (404, Some("BLOB_UPLOAD_UNKNOWN".into()))
    );
    assert_eq!(
        outcome(patch_chunk(&bob, &location, 10, &data[10..])),
        (404, Some("BLOB_UPLOAD_UNKNOWN".into()))
    );
    assert_eq!(upload_state(&alice, &location), (204, Some("0-9".into())));
    expect_status(patch_chunk(&alice, &location, 10, &data[10..]), 202);
    let digest = sha256_digest(&data);
    let finish = format!("{location}?digest={digest}");
    expect_status(alice.put(finish).send().expect("PUT"), 201);
    assert_eq!(
        fetch_blob(&bob, &berth.url, "lib/app", &digest),
        (200, data)
    );
}

#[test]
fn without_htpasswd_only_anonymous_policies_grant() {
    let berth = Berth::start_with(json!({"http": {"accessControl": {"repositories": {
        "**": {"anonymousPolicy": ["read"], "defaultPolicy": ALL},
        "open/**": {"anonymousPolicy": ALL},
    }}}}));
    let anonymous = http();
    let image = random_image(1, 300);
    push_image(&anonymous, &berth.url, "open/app", "v1", &image);
    assert_eq!(get(&anonymous, format!("{}/v2/", berth.url)).status(), 200);
    assert_no_state_change(&berth, &known(&[&image]), || {
        // Credentials change nothing: there is no htpasswd to check them against.
        for client in [&anonymous, &authed("alice")] {
            assert_denied(post_upload(client, &berth.url, "lib/app"));
            let (status, _, _) = fetch_manifest(client, &berth.url, "lib/app", "v1");
            assert_eq!(status, 404, "lib is readable, the manifest unknown");
        }
    });
}

/// Writes a config whose `accessControl` has a CEL condition; returns its path.
fn config_with_conditions(dir: &Path) -> std::path::PathBuf {
    let htpasswd = dir.join("htpasswd");
    let hash = bcrypt::hash(HTPASSWD_SECRET, 4).expect("bcrypt");
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).expect("write");
    let config = dir.join("config.json");
    let access = json!({"repositories": {"**": {"policies": [{
        "users": ["alice"],
        "actions": ALL,
        "conditions": [{"expression": "req.client.ip == '10.0.0.1'", "message": "office only"}],
    }]}}});
    std::fs::write(
        &config,
        json!({
            "storage": {"rootDirectory": dir.join("data")},
            "http": {
                "address": "127.0.0.1",
                "port": "0",
                "auth": {"htpasswd": {"path": htpasswd}},
                "accessControl": access,
            },
        })
        .to_string(),
    )
    .expect("write config");
    config
}

#[test]
fn a_config_with_conditions_is_refused_by_verify_and_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with_conditions(dir.path());
    let key = "http.accessControl.repositories[\"**\"].policies[0].conditions";
    let stderr = berth_tests::verify_refused(&config);
    assert!(stderr.contains(key), "{stderr}");
    assert!(
        stderr.contains("CEL conditions are not implemented"),
        "{stderr}"
    );
    let (status, _stdout, stderr) = berth_tests::serve_refused(&config, "CEL conditions");
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(key), "{stderr}");
    // The same config without the condition serves.
    let text = std::fs::read_to_string(&config).expect("read");
    let mut value: Value = serde_json::from_str(&text).expect("json");
    value["http"]["accessControl"]["repositories"]["**"]["policies"][0]
        .as_object_mut()
        .expect("policy")
        .remove("conditions");
    std::fs::write(&config, value.to_string()).expect("write");
    run_ok(
        Command::new(berth_tests::berth_bin())
            .arg("verify")
            .arg(&config),
    );
}
