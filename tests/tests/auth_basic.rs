//! htpasswd Basic authentication (`http.auth.htpasswd`) on the real binary: anonymous requests
//! get 401 with the Basic challenge of `http.realm` and change nothing, the health probes stay
//! open, a wrong password waits `failDelay`, skopeo and podman work with credentials, a user
//! removed from the file loses access, and a non-bcrypt line stops `verify` and `serve`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::api::{code_of, parts};
use berth_tests::containers::{Containers, Store};
use berth_tests::{
    authed, fetch_blob, fetch_manifest, http, push_blob, push_image, random_image, require_tool,
    run_cmd, run_ok, sha256_digest, wait_for, write_oci_layout, Berth, Client, HTPASSWD_SECRET,
};
use serde_json::{json, Value};

const REALM: &str = "berth test realm";

/// `user:bcrypt` lines (cost 4: the tests log in often).
fn htpasswd_text(users: &[(&str, &str)]) -> String {
    users
        .iter()
        .map(|(user, password)| format!("{user}:{}\n", bcrypt::hash(password, 4).expect("bcrypt")))
        .collect()
}

/// Writes the file through a rename, as `htpasswd` and editors do.
fn write_htpasswd(path: &Path, users: &[(&str, &str)]) {
    let staging = path.with_extension("new");
    std::fs::write(&staging, htpasswd_text(users)).expect("write htpasswd");
    std::fs::rename(&staging, path).expect("rename htpasswd");
}

/// berth with htpasswd users (their file in `dir`), `http.realm` = [`REALM`], metrics on, and
/// `patch` merged into the `http.auth` section.
fn start(dir: &Path, users: &[(&str, &str)], auth_patch: Value) -> (Berth, PathBuf) {
    let htpasswd = dir.join("htpasswd");
    write_htpasswd(&htpasswd, users);
    let mut auth = json!({"htpasswd": {"path": htpasswd}});
    berth_tests::merge_patch(&mut auth, &auth_patch);
    let berth = Berth::start_with(json!({
        "http": {"realm": REALM, "auth": auth},
        "log": {"format": "json", "audit": dir.join("audit.log")},
        "extensions": {"metrics": {}},
    }));
    (berth, htpasswd)
}

/// Asserts a 401 with the challenge and (unless HEAD) the OCI `UNAUTHORIZED` body.
#[track_caller]
fn assert_unauthorized(response: reqwest::blocking::Response, head: bool) {
    let (status, headers, body) = parts(response);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 401, "{text}");
    assert_eq!(
        headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some(format!("Basic realm=\"{REALM}\"").as_str())
    );
    if head {
        assert!(body.is_empty(), "HEAD has no body: {text}");
    } else {
        assert_eq!(code_of(&body).as_deref(), Some("UNAUTHORIZED"), "{text}");
        let json: Value = serde_json::from_slice(&body).expect("json body");
        assert_eq!(json["errors"][0]["message"], "authentication required");
    }
}

fn catalog(client: &Client, url: &str) -> Value {
    let response = client
        .get(format!("{url}/v2/_catalog"))
        .send()
        .expect("GET catalog");
    let (status, _, body) = parts(response);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice::<Value>(&body).expect("json")["repositories"].clone()
}

#[test]
fn anonymous_requests_are_challenged_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (berth, _) = start(dir.path(), &[("alice", HTPASSWD_SECRET)], json!({}));
    let alice = authed("alice");
    let image = random_image(1, 2000);
    push_image(&alice, &berth.url, "seed", "v1", &image);
    let layer = sha256_digest(&image.layers[0]);
    let url = &berth.url;
    let anonymous = http();
    let requests = [
        anonymous.get(format!("{url}/v2/")),
        anonymous.get(format!("{url}/v2/_catalog")),
        anonymous.get(format!("{url}/v2/seed/tags/list")),
        anonymous.get(format!("{url}/v2/seed/manifests/v1")),
        anonymous.get(format!("{url}/v2/seed/blobs/{layer}")),
        anonymous.get(format!("{url}/v2/seed/referrers/{}", image.digest)),
        anonymous.post(format!("{url}/v2/new/blobs/uploads/")),
        anonymous
            .post(format!(
                "{url}/v2/new/blobs/uploads/?digest={}",
                sha256_digest(b"abc")
            ))
            .body("abc"),
        anonymous
            .put(format!("{url}/v2/new/manifests/v1"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(image.manifest.clone()),
        anonymous.delete(format!("{url}/v2/seed/manifests/{}", image.digest)),
        anonymous.get(format!("{url}/v2/_oci/ext/discover")),
        anonymous.get(format!("{url}/metrics")),
        // Wrong schemes and malformed credentials are no better than none.
        anonymous
            .get(format!("{url}/v2/"))
            .header("authorization", "Bearer abc"),
        anonymous
            .get(format!("{url}/v2/"))
            .header("authorization", "Basic !!!"),
        anonymous
            .get(format!("{url}/v2/"))
            .basic_auth("alice", Some("not the password")),
        anonymous
            .get(format!("{url}/v2/"))
            .basic_auth("mallory", Some(HTPASSWD_SECRET)),
    ];
    for request in requests {
        assert_unauthorized(request.send().expect("request"), false);
    }
    for path in ["/v2/seed/manifests/v1", &format!("/v2/seed/blobs/{layer}")] {
        let response = anonymous.head(format!("{url}{path}")).send().expect("HEAD");
        assert_unauthorized(response, true);
    }
    // Nothing changed: no new repository, the image is still there, no stray blob.
    assert_eq!(catalog(&alice, url), json!(["seed"]));
    let (status, _, body) = fetch_manifest(&alice, url, "seed", "v1");
    assert_eq!((status, body), (200, image.manifest.clone()));
    let (status, _) = fetch_blob(&alice, url, "new", &sha256_digest(b"abc"));
    assert_eq!(status, 404);
    // The probes stay open; with credentials everything answers.
    for probe in ["/livez", "/readyz", "/startupz"] {
        let response = anonymous
            .get(format!("{url}{probe}"))
            .send()
            .expect("probe");
        assert_eq!(response.status().as_u16(), 200, "{probe}");
    }
    for path in ["/v2/", "/metrics", "/v2/seed/tags/list"] {
        let response = alice.get(format!("{url}{path}")).send().expect("GET");
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
    let (status, blob) = fetch_blob(&alice, url, "seed", &layer);
    assert_eq!((status, blob), (200, image.layers[0].clone()));
    push_blob(&alice, url, "new", b"abc");
    // A failed login is logged with the user and the remote address, never the secret.
    let log = wait_for(
        "the failed logins",
        || berth.log(),
        |log| log.contains("login failed") && log.contains("mallory"),
    );
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("login failed")).collect();
    assert!(failed.iter().any(|l| l.contains("alice")), "{log}");
    assert!(failed.iter().all(|l| l.contains("127.0.0.1")), "{log}");
    for secret in [
        "not the password",
        HTPASSWD_SECRET,
        "YWxpY2U6bm90IHRoZSBwYXNzd29yZA==",
    ] {
        assert!(!log.contains(secret), "the log shows {secret:?}:\n{log}");
    }
}

#[test]
fn a_wrong_password_waits_fail_delay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (berth, _) = start(
        dir.path(),
        &[("alice", HTPASSWD_SECRET)],
        json!({"failDelay": 1}),
    );
    let client = http();
    for (user, password) in [("alice", "wrong"), ("nobody", "wrong")] {
        let started = Instant::now();
        let response = client
            .get(format!("{}/v2/_catalog", berth.url))
            .basic_auth(user, Some(password))
            .send()
            .expect("GET");
        let elapsed = started.elapsed();
        assert_unauthorized(response, false);
        assert!(elapsed >= Duration::from_secs(1), "{user}: {elapsed:?}");
    }
    let response = authed("alice")
        .get(format!("{}/v2/_catalog", berth.url))
        .send()
        .expect("GET");
    assert_eq!(response.status().as_u16(), 200);
}

#[test]
fn skopeo_copies_in_and_out_with_credentials() {
    if !require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (berth, _) = start(dir.path(), &[("alice", "s3cr3t pass")], json!({}));
    let image = random_image(2, 100_000);
    let layout = dir.path().join("layout");
    write_oci_layout(&layout, "v1", &image);
    let remote = format!("docker://{}/team/app:v1", berth.addr);
    let skopeo = || {
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy"]);
        cmd
    };
    let (ok, _, stderr) = run_cmd(
        skopeo()
            .arg("--dest-tls-verify=false")
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(&remote),
    );
    assert!(!ok, "a push without credentials fails");
    assert!(
        stderr.contains("401") || stderr.to_lowercase().contains("unauthorized"),
        "{stderr}"
    );
    run_ok(
        skopeo()
            .args([
                "--dest-tls-verify=false",
                "--dest-creds",
                "alice:s3cr3t pass",
            ])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(&remote),
    );
    let out = dir.path().join("out");
    run_ok(
        skopeo()
            .args(["--src-tls-verify=false", "--src-creds", "alice:s3cr3t pass"])
            .arg(&remote)
            .arg(format!("oci:{}:v1", out.display())),
    );
    for (digest, bytes) in image
        .blob_digests()
        .iter()
        .zip(std::iter::once(&image.config).chain(&image.layers))
    {
        let hex = digest.strip_prefix("sha256:").expect("sha256");
        let pulled = std::fs::read(out.join("blobs/sha256").join(hex)).expect("pulled blob");
        assert_eq!(&pulled, bytes, "{digest}");
    }
    let manifest = std::fs::read(
        out.join("blobs/sha256")
            .join(image.digest.strip_prefix("sha256:").expect("sha256")),
    )
    .expect("pulled manifest");
    assert_eq!(manifest, image.manifest);
    // The audit log names who pushed; a refused anonymous attempt has no subject.
    let anonymous = http()
        .post(format!("{}/v2/team/app/blobs/uploads/", berth.url))
        .send()
        .expect("anonymous POST");
    assert_eq!(anonymous.status(), 401);
    // A request's audit line is written once its response is sent: wait for the last one.
    let audit = wait_for(
        "the anonymous POST's audit line",
        || std::fs::read_to_string(dir.path().join("audit.log")).unwrap_or_default(),
        |text| text.contains("\"status\":401"),
    );
    let lines: Vec<Value> = audit
        .lines()
        .map(|line| serde_json::from_str(line).expect("audit line is JSON"))
        .collect();
    let field = |line: &Value, name: &str| {
        line.get(name)
            .or_else(|| line["fields"].get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let manifest_put = |subject: &str, status: u64| {
        lines.iter().any(|line| {
            field(line, "action") == "PUT"
                && field(line, "object") == "/v2/team/app/manifests/v1"
                && field(line, "subject") == subject
                && (line.get("status").or_else(|| line["fields"].get("status")))
                    .and_then(Value::as_u64)
                    == Some(status)
        })
    };
    assert!(manifest_put("alice", 201), "{audit}");
    let anonymous_post = lines.iter().filter(|line| {
        field(line, "subject").is_empty()
            && field(line, "action") == "POST"
            && (line.get("status").or_else(|| line["fields"].get("status"))).and_then(Value::as_u64)
                == Some(401)
    });
    assert_eq!(anonymous_post.count(), 1, "{audit}");
}

#[test]
fn podman_logs_in_pushes_and_pulls() {
    if !require_tool("podman") || !require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (berth, _) = start(dir.path(), &[("alice", HTPASSWD_SECRET)], json!({}));
    let containers = Containers::new(&berth.addr);
    let podman = |store: Store| containers.cmd("podman", store);
    let image = random_image(1, 20_000);
    let local = containers.stage_image(&image);
    let remote = format!("{}/team/podman:v1", berth.addr);
    let (ok, _, stderr) = run_cmd(podman(Store::Build).args(["push", &local, &remote]));
    assert!(!ok, "a push before login fails: {stderr}");
    let (ok, _, stderr) =
        run_cmd(podman(Store::Build).args(["login", "-u", "alice", "-p", "wrong", &berth.addr]));
    assert!(!ok, "login with a wrong password fails: {stderr}");
    run_ok(podman(Store::Build).args(["login", "-u", "alice", "-p", HTPASSWD_SECRET, &berth.addr]));
    let digest_file = containers.dir().join("pushed.digest");
    run_ok(
        podman(Store::Build)
            .args(["push", "--digestfile"])
            .arg(&digest_file)
            .args([&local, &remote]),
    );
    let pushed = std::fs::read_to_string(&digest_file).expect("digest file");
    let (status, served, _) = fetch_manifest(&authed("alice"), &berth.url, "team/podman", "v1");
    assert_eq!((status, served.as_deref()), (200, Some(pushed.trim())));
    run_ok(podman(Store::Pull).args(["pull", "-q", &remote]));
    let pulled =
        run_ok(podman(Store::Pull).args(["image", "inspect", "--format", "{{.Digest}}", &remote]));
    assert_eq!(pulled.trim(), pushed.trim());
    run_ok(podman(Store::Build).args(["logout", &berth.addr]));
    run_ok(podman(Store::Pull).args(["rmi", &remote]));
    let (ok, _, stderr) = run_cmd(podman(Store::Pull).args(["pull", "-q", &remote]));
    assert!(!ok, "a pull after logout fails: {stderr}");
}

#[test]
fn a_user_removed_from_the_file_loses_access() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (berth, htpasswd) = start(
        dir.path(),
        &[("alice", HTPASSWD_SECRET), ("bob", "bobs password")],
        json!({}),
    );
    let client = http();
    let status_of = |user: &str, password: &str| {
        client
            .get(format!("{}/v2/", berth.url))
            .basic_auth(user, Some(password))
            .send()
            .expect("GET")
            .status()
            .as_u16()
    };
    assert_eq!(status_of("bob", "bobs password"), 200);
    assert_eq!(status_of("alice", HTPASSWD_SECRET), 200);
    write_htpasswd(&htpasswd, &[("alice", HTPASSWD_SECRET), ("carol", "new")]);
    wait_for(
        "bob refused after the reload",
        || status_of("bob", "bobs password").to_string(),
        |status| status == "401",
    );
    assert_eq!(status_of("alice", HTPASSWD_SECRET), 200);
    assert_eq!(status_of("carol", "new"), 200);
    // A password change takes effect the same way.
    write_htpasswd(&htpasswd, &[("alice", "changed")]);
    wait_for(
        "alice's new password",
        || status_of("alice", "changed").to_string(),
        |status| status == "200",
    );
    assert_eq!(status_of("alice", HTPASSWD_SECRET), 401);
    assert_eq!(status_of("carol", "new"), 401);
    assert!(
        berth.log().contains("htpasswd file changed"),
        "{}",
        berth.log()
    );
}

#[test]
fn a_non_bcrypt_line_stops_verify_and_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let htpasswd = dir.path().join("htpasswd");
    let mut text = htpasswd_text(&[("alice", "x")]);
    text.push_str("bob:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n");
    std::fs::write(&htpasswd, text).expect("write");
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({
            "storage": {"rootDirectory": dir.path().join("data")},
            "http": {"address": "127.0.0.1", "port": "0", "auth": {"htpasswd": {"path": htpasswd}}},
        })
        .to_string(),
    )
    .expect("write config");
    let expected = format!("{} line 2", htpasswd.display());
    let stderr = berth_tests::verify_refused(&config);
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("http.auth.htpasswd.path"), "{stderr}");
    assert!(!stderr.contains("HqJZimcKQFAMYayBlzkrA"), "{stderr}");
    // serve refuses before it listens.
    let (status, stdout, stderr) = berth_tests::serve_refused(&config, "an invalid htpasswd file");
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stdout.contains("listening"), "{stderr}");
    // A missing file is refused the same way.
    std::fs::remove_file(&htpasswd).expect("remove");
    let stderr = berth_tests::verify_refused(&config);
    assert!(stderr.contains(&htpasswd.display().to_string()), "{stderr}");
}
