//! On-demand sync from an upstream that needs Basic credentials: a second berth serving with
//! htpasswd. berth A (open) pulls through from berth B with the login of A's
//! `credentialsFile` (zot's format) and serves the image byte-exact; with a wrong password the
//! pull through A is a plain miss (404) and nothing is stored in A.

use std::path::Path;
use std::process::Command;

use berth_tests::api::{code_of, get_json, parts};
use berth_tests::{
    authed, fetch_manifest, http, random_image, require_tool, run_ok, wait_for, write_oci_layout,
    Berth, HTPASSWD_SECRET,
};
use serde_json::json;

/// berth B: htpasswd with alice (password [`HTPASSWD_SECRET`]).
fn upstream(dir: &Path) -> Berth {
    let htpasswd = dir.join("htpasswd");
    let hash = bcrypt::hash(HTPASSWD_SECRET, 4).expect("bcrypt");
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).expect("write htpasswd");
    Berth::start_with(json!({"http": {"auth": {"htpasswd": {"path": htpasswd}}}}))
}

/// berth A: open, on-demand sync from `upstream` with `password` for alice.
fn mirror(dir: &Path, upstream: &Berth, password: &str) -> Berth {
    let credentials = dir.join(format!("credentials-{}.json", password.len()));
    let logins = json!({ upstream.addr.clone(): {"username": "alice", "password": password} });
    std::fs::write(&credentials, logins.to_string()).expect("write credentials");
    Berth::start_with(json!({"extensions": {"sync": {
        "credentialsFile": credentials,
        "registries": [{"urls": [upstream.url], "onDemand": true, "tlsVerify": false}],
    }}}))
}

fn blob_in_oci_dir(dir: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256");
    std::fs::read(dir.join("blobs/sha256").join(hex)).expect("blob in OCI layout")
}

#[test]
fn a_mirror_pulls_through_an_authenticated_berth() {
    if !require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = upstream(dir.path());
    let image = random_image(2, 200_000);
    let layout = dir.path().join("layout");
    write_oci_layout(&layout, "1.0", &image);
    run_ok(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
            .args(["--dest-creds", &format!("alice:{HTPASSWD_SECRET}")])
            .arg(format!("oci:{}:1.0", layout.display()))
            .arg(format!("docker://{}/library/app:1.0", upstream.addr)),
    );
    let mirror = mirror(dir.path(), &upstream, HTPASSWD_SECRET);
    let out = dir.path().join("out");
    run_ok(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
            .arg(format!("docker://{}/library/app:1.0", mirror.addr))
            .arg(format!("oci:{}:1.0", out.display())),
    );
    for (digest, bytes) in image
        .blob_digests()
        .iter()
        .zip(std::iter::once(&image.config).chain(&image.layers))
    {
        assert_eq!(&blob_in_oci_dir(&out, digest), bytes, "blob {digest}");
    }
    assert_eq!(blob_in_oci_dir(&out, &image.digest), image.manifest);
    // A holds it now, and the upstream saw alice, never an anonymous pull that worked.
    let (status, _, body) = fetch_manifest(&http(), &mirror.url, "library/app", "1.0");
    assert_eq!((status, body), (200, image.manifest.clone()));
    assert!(
        !upstream.log().contains("login failed"),
        "{}",
        upstream.log()
    );
}

#[test]
fn a_wrong_upstream_password_is_a_miss_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = upstream(dir.path());
    let image = random_image(1, 5000);
    berth_tests::push_image(
        &authed("alice"),
        &upstream.url,
        "library/app",
        "1.0",
        &image,
    );
    let mirror = mirror(dir.path(), &upstream, "not the password");
    let client = http();
    for reference in ["1.0", image.digest.as_str()] {
        let response = client
            .get(format!(
                "{}/v2/library/app/manifests/{reference}",
                mirror.url
            ))
            .header("accept", berth_tests::MANIFEST_ACCEPT)
            .send()
            .expect("GET");
        // The repository is unknown to A too, so berth says NAME_UNKNOWN (zot says
        // MANIFEST_UNKNOWN); both are the spec's 404 for a miss.
        let (status, _, body) = parts(response);
        assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
        let code = code_of(&body);
        assert!(
            matches!(code.as_deref(), Some("NAME_UNKNOWN" | "MANIFEST_UNKNOWN")),
            "{code:?}"
        );
    }
    // B refused alice's wrong password, and A stored nothing.
    wait_for(
        "the upstream's failed login",
        || upstream.log(),
        |log| log.contains("login failed") && log.contains("alice"),
    );
    let (_, catalog) = get_json(&client, &format!("{}/v2/_catalog", mirror.url));
    assert_eq!(catalog["repositories"], json!([]), "{catalog}");
    let blobs = mirror.data_dir.join("blobs");
    assert_eq!(
        count_files(&blobs),
        0,
        "blob files under {}",
        blobs.display()
    );
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                count_files(&path)
            } else {
                1
            }
        })
        .sum()
}
