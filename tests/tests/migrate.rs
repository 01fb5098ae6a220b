//! `berth migrate SRC_CONFIG DST_CONFIG` on the real binary (issue 20): a single node's store
//! (files + RocksDB) filled by real clients moves into blobs in S3 (a SeaweedFS cluster) and
//! the index in PostgreSQL, and berth started on the destination serves the same images
//! (digests equal, skopeo copies out byte-identical), untagged manifests, an index and its
//! children, a referrer, a blob without a manifest, a star and an API key. A migration killed
//! with SIGKILL mid-way finishes on a rerun, which reports what it skipped. Refusals (a
//! missing or invalid destination config, the source as destination) exit 2 and write
//! nothing.
//!
//! Without `weed`, PostgreSQL or skopeo the S3 tests print SKIPPED, unless
//! `BERTH_REQUIRE_TOOLS=1`.
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_tests::postgres::{postgres_available, Postgres};
use berth_tests::seaweedfs::{seaweedfs_available, ACCESS_KEY, REGION, SECRET_KEY};
use berth_tests::seaweedfs_shared::{self, BUCKET};
use berth_tests::{basic, berth_bin, fetch_blob, fetch_manifest, push_blob, push_image};
use berth_tests::{random_bytes, random_image, require_tool, run_ok, sha256_digest};
use berth_tests::{write_oci_layout, Berth, Client, Image};
use serde_json::{json, Value};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const PASSWORD: &str = "secret";

fn available() -> bool {
    let require = std::env::var("BERTH_REQUIRE_TOOLS").as_deref() == Ok("1");
    for (name, found) in [
        ("SeaweedFS (weed)", seaweedfs_available()),
        ("PostgreSQL", postgres_available()),
    ] {
        if !found {
            assert!(!require, "{name} is required (BERTH_REQUIRE_TOOLS=1)");
            eprintln!("SKIPPED: {name} is not installed");
            return false;
        }
    }
    require_tool("skopeo")
}

fn skopeo() -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy");
    cmd
}

/// `berth migrate SRC DST`: (exit code, stdout, stderr).
fn migrate(src: &Path, dst: &Path) -> (Option<i32>, String, String) {
    let output = Command::new(berth_bin())
        .args(["migrate".as_ref(), src.as_os_str(), dst.as_os_str()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run berth migrate");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The config section of a store in the shared bucket under `root` with its index in
/// `postgres`.
fn shared_storage(endpoint: &str, root: &str, postgres: &Postgres) -> Value {
    json!({
        "storageDriver": {
            "name": "s3", "region": REGION, "bucket": BUCKET, "regionendpoint": endpoint,
            "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY, "rootdirectory": root,
        },
        "index": {"postgres": {"url": postgres.url()}},
    })
}

/// Writes a destination config (its own rootDirectory under `dir`) merged with `patch`.
fn write_config(dir: &Path, name: &str, patch: &Value) -> PathBuf {
    let mut config = json!({
        "distSpecVersion": "1.1.1",
        "storage": {"rootDirectory": dir.join(format!("{name}-data"))},
        "http": {"address": "127.0.0.1", "port": "0"},
    });
    berth_tests::merge_patch(&mut config, patch);
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("json")).expect("write");
    path
}

fn alice() -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = basic("alice", PASSWORD).parse().expect("header value");
    headers.insert("authorization", value);
    client_with(headers)
}

fn client_with(headers: reqwest::header::HeaderMap) -> Client {
    Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("client")
}

fn put_manifest(client: &Client, url: &str, repo: &str, reference: &str, kind: &str, body: &[u8]) {
    let response = client
        .put(format!("{url}/v2/{repo}/manifests/{reference}"))
        .header("content-type", kind)
        .body(body.to_vec())
        .send()
        .expect("PUT manifest");
    assert_eq!(response.status().as_u16(), 201, "PUT {repo}:{reference}");
}

/// What the source holds and the destination must serve alike.
struct Fixture {
    image: Image,
    /// (repository, tag) -> manifest digest, read back from the source.
    tags: Vec<(String, String, String)>,
    untagged: Image,
    index: Vec<u8>,
    referrer: Vec<u8>,
    loose_blob: Vec<u8>,
    api_key: String,
}

/// Fills a running single-node berth through its API and skopeo.
fn fill(berth: &Berth, work: &Path) -> Fixture {
    let client = alice();
    let url = &berth.url;
    // skopeo: an OCI layout in as app/one:v1, then copied registry to registry as :latest.
    let image = random_image(2, 96 << 10);
    let layout = work.join("in");
    write_oci_layout(&layout, "v1", &image);
    let creds = format!("alice:{PASSWORD}");
    run_ok(
        skopeo()
            .args(["copy", "--dest-tls-verify=false", "--dest-creds", &creds])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{}/app/one:v1", berth.addr)),
    );
    run_ok(
        skopeo()
            .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
            .args([
                "--src-creds",
                &creds,
                "--dest-creds",
                &creds,
                &format!("docker://{}/app/one:v1", berth.addr),
                &format!("docker://{}/app/one:latest", berth.addr),
            ]),
    );
    // An untagged image, by digest only.
    let untagged = random_image(1, 4096);
    push_image(&client, url, "app/one", "tmp", &untagged);
    let deleted = client
        .delete(format!("{url}/v2/app/one/manifests/tmp"))
        .send()
        .expect("DELETE tag");
    assert_eq!(deleted.status().as_u16(), 202, "untag");
    // A multi-arch index of two images, tagged.
    let (amd, arm) = (random_image(1, 2048), random_image(1, 2048));
    push_image(&client, url, "app/multi", "amd64", &amd);
    push_image(&client, url, "app/multi", "arm64", &arm);
    let platform = |image: &Image, arch: &str| {
        json!({"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.manifest.len(),
               "platform": {"os": "linux", "architecture": arch}})
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [platform(&amd, "amd64"), platform(&arm, "arm64")],
    }))
    .expect("json");
    put_manifest(&client, url, "app/multi", "v1", OCI_INDEX, &index);
    // A referrer (an SBOM-like artifact) of app/one:v1, untagged.
    let sbom = b"{\"sbom\": true}".to_vec();
    push_blob(&client, url, "app/one", &sbom);
    let empty = b"{}".to_vec();
    push_blob(&client, url, "app/one", &empty);
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": sha256_digest(&empty), "size": empty.len()},
        "layers": [{"mediaType": "application/json", "digest": sha256_digest(&sbom),
                    "size": sbom.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image.digest,
                    "size": image.manifest.len()},
    }))
    .expect("json");
    let referrer_digest = sha256_digest(&referrer);
    put_manifest(
        &client,
        url,
        "app/one",
        &referrer_digest,
        OCI_MANIFEST,
        &referrer,
    );
    // A blob pushed without any manifest.
    let loose_blob = random_bytes(3000);
    push_blob(&client, url, "app/loose", &loose_blob);
    // alice stars app/one and makes an API key.
    let starred = client
        .put(format!(
            "{url}/v2/_zot/ext/userprefs?action=toggleStar&repo=app/one"
        ))
        .send()
        .expect("star");
    assert_eq!(starred.status().as_u16(), 200, "star");
    let created = client
        .post(format!("{url}/zot/auth/apikey"))
        .body(json!({"label": "ci"}).to_string())
        .send()
        .expect("POST apikey");
    assert_eq!(created.status().as_u16(), 201, "API key");
    let created: Value = serde_json::from_slice(&created.bytes().expect("body")).expect("json");
    let api_key = created["apiKey"].as_str().expect("apiKey").to_owned();
    let mut tags = Vec::new();
    for (repo, tag) in [
        ("app/one", "v1"),
        ("app/one", "latest"),
        ("app/multi", "v1"),
        ("app/multi", "amd64"),
        ("app/multi", "arm64"),
    ] {
        let (status, digest, _) = fetch_manifest(&client, url, repo, tag);
        assert_eq!(status, 200, "{repo}:{tag}");
        tags.push((repo.into(), tag.into(), digest.expect("digest header")));
    }
    Fixture {
        image,
        tags,
        untagged,
        index,
        referrer,
        loose_blob,
        api_key,
    }
}

/// The summary's `what N copied, ... M skipped` numbers, e.g. `count(out, "bytes")`.
fn count(output: &str, what: &str) -> (u64, u64) {
    let summary = output
        .lines()
        .find(|line| line.starts_with("migrated "))
        .unwrap_or_else(|| panic!("no summary in:\n{output}"));
    let part = summary
        .split([';', ':'])
        .find_map(|part| part.trim().strip_prefix(&format!("{what} ")))
        .unwrap_or_else(|| panic!("no {what} in {summary}"));
    let number = |word: &str| -> u64 {
        let words: Vec<&str> = part.split([' ', ',']).filter(|w| !w.is_empty()).collect();
        let at = words.iter().position(|w| *w == word).expect(word);
        words[at - 1].parse().expect("a number")
    };
    (number("copied"), number("skipped"))
}

#[test]
fn a_single_node_moves_to_s3_and_postgres_intact() {
    if !available() {
        return;
    }
    let cluster = seaweedfs_shared::shared().expect("SeaweedFS is available");
    let postgres = Postgres::start();
    let work = tempfile::tempdir().expect("tempdir");
    let htpasswd = work.path().join("htpasswd");
    let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).expect("write htpasswd");
    let common = json!({
        "http": {"auth": {"htpasswd": {"path": htpasswd}, "apikey": true}},
        "extensions": {"search": {"enable": true}},
    });
    let mut src = Berth::start_with(common.clone());
    let fixture = fill(&src, work.path());
    src.stop();

    let mut patch = common.clone();
    berth_tests::merge_patch(
        &mut patch,
        &json!({"storage": shared_storage(&cluster.endpoint, "migrate-full", &postgres)}),
    );
    let dst_config = write_config(work.path(), "dst", &patch);
    let started = std::time::Instant::now();
    let (code, out, err) = migrate(&src.config_path, &dst_config);
    eprintln!("migrate took {:?}", started.elapsed());
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("verified: every tag"), "{out}");
    assert_eq!(count(&out, "manifests").1, 0, "{out}");
    assert!(count(&out, "bytes").0 > 2 * (96 << 10), "{out}");
    assert!(out.contains("user preferences 1 copied"), "{out}");
    assert!(out.contains("API keys 1 copied"), "{out}");
    for repo in ["app/one", "app/multi", "app/loose"] {
        assert!(out.contains(&format!("ok {repo}:")), "{repo}: {out}");
    }

    // berth on the destination: the same digests, byte for byte.
    let mut dst = Berth::start_with(patch.clone());
    let client = alice();
    let url = &dst.url;
    for (repo, tag, digest) in &fixture.tags {
        let (status, found, _) = fetch_manifest(&client, url, repo, tag);
        assert_eq!(
            (status, found.as_ref()),
            (200, Some(digest)),
            "{repo}:{tag}"
        );
    }
    let by_digest = |repo: &str, body: &[u8]| {
        let (status, _, found) = fetch_manifest(&client, url, repo, &sha256_digest(body));
        assert_eq!((status, found.as_slice()), (200, body), "{repo}@digest");
    };
    by_digest("app/one", &fixture.untagged.manifest);
    by_digest("app/multi", &fixture.index);
    by_digest("app/one", &fixture.referrer);
    let referrers = client
        .get(format!(
            "{url}/v2/app/one/referrers/{}",
            fixture.image.digest
        ))
        .send()
        .expect("referrers")
        .bytes()
        .expect("body");
    let referrers: Value = serde_json::from_slice(&referrers).expect("json");
    assert_eq!(
        referrers["manifests"][0]["digest"],
        json!(sha256_digest(&fixture.referrer)),
        "{referrers}"
    );
    let loose = sha256_digest(&fixture.loose_blob);
    assert_eq!(
        fetch_blob(&client, url, "app/loose", &loose),
        (200, fixture.loose_blob.clone())
    );
    let out_dir = work.path().join("out");
    run_ok(
        skopeo()
            .args(["copy", "--src-tls-verify=false", "--src-creds"])
            .arg(format!("alice:{PASSWORD}"))
            .arg(format!("docker://{}/app/one:v1", dst.addr))
            .arg(format!("oci:{}:v1", out_dir.display())),
    );
    for blob in std::iter::once(&fixture.image.config).chain(&fixture.image.layers) {
        let hex = &sha256_digest(blob)["sha256:".len()..];
        let copied = std::fs::read(out_dir.join("blobs/sha256").join(hex)).expect("blob");
        assert_eq!(&copied, blob, "blob {hex} differs");
    }
    let (status, starred) =
        berth_tests::search::gql_get(&client, url, "{StarredRepos{Results{Name StarCount}}}");
    assert_eq!(status, 200, "{starred}");
    assert!(starred.to_string().contains("app/one"), "{starred}");
    let with_key = client_with({
        let mut headers = reqwest::header::HeaderMap::new();
        let value = basic("alice", &fixture.api_key).parse().expect("header");
        headers.insert("authorization", value);
        headers
    });
    let (status, _, _) = fetch_manifest(&with_key, url, "app/one", "v1");
    assert_eq!(status, 200, "the API key works on the destination");
    dst.stop();

    // Again: nothing left to copy, everything checked.
    let (code, out, err) = migrate(&src.config_path, &dst_config);
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(count(&out, "manifests").0, 0, "{out}");
    assert_eq!(count(&out, "bytes").0, 0, "{out}");
    assert!(
        out.contains("user preferences 0 copied, 1 skipped"),
        "{out}"
    );
    let fsck = Command::new(berth_bin())
        .arg("fsck")
        .arg(&dst_config)
        .output()
        .expect("fsck");
    let text = String::from_utf8_lossy(&fsck.stdout);
    assert_eq!(fsck.status.code(), Some(0), "{text}");
    drop(cluster);
}

#[test]
fn a_killed_migration_resumes_and_finishes() {
    if !available() {
        return;
    }
    let cluster = seaweedfs_shared::shared().expect("SeaweedFS is available");
    let postgres = Postgres::start();
    let work = tempfile::tempdir().expect("tempdir");
    let mut src = Berth::start();
    let client = berth_tests::http();
    // 30 repositories of 10 small layers each: a few hundred blobs.
    const REPOS: usize = 30;
    let mut digests = Vec::new();
    for n in 0..REPOS {
        let image = random_image(10, 1024);
        push_image(&client, &src.url, &format!("many/r{n:02}"), "v1", &image);
        digests.push(image.digest);
    }
    src.stop();
    let patch = json!({"storage": shared_storage(&cluster.endpoint, "migrate-resume", &postgres)});
    let dst_config = write_config(work.path(), "dst", &patch);

    // Killed once three repositories are done (the fourth is under way).
    let mut child = Command::new(berth_bin())
        .arg("migrate")
        .arg(&src.config_path)
        .arg(&dst_config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn berth migrate");
    let stdout = child.stdout.take().expect("piped");
    let mut done = 0;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if line.starts_with("ok ") {
            done += 1;
        }
        if done == 3 {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert_eq!(done, 3, "the first run ended early: {status}");
    assert!(!status.success(), "killed before finishing");

    let (code, out, err) = migrate(&src.config_path, &dst_config);
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let (copied, skipped) = count(&out, "blobs");
    assert!(skipped >= 3 * 11, "{out}");
    assert!(copied > 0, "{out}");
    let (manifests_copied, manifests_skipped) = count(&out, "manifests");
    assert_eq!(manifests_copied + manifests_skipped, REPOS as u64, "{out}");
    assert!(manifests_skipped >= 3, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("ok ")).count(), REPOS);

    let dst = Berth::start_with(patch);
    for (n, digest) in digests.iter().enumerate() {
        let (status, found, _) = fetch_manifest(&client, &dst.url, &format!("many/r{n:02}"), "v1");
        assert_eq!(
            (status, found.as_ref()),
            (200, Some(digest)),
            "many/r{n:02}"
        );
    }
    drop(dst);
    drop(cluster);
}

/// Every file under `dir` with its size and modification time.
fn tree(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("read_dir") {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("metadata");
            match meta.is_dir() {
                true => stack.push(entry.path()),
                false => found.push((entry.path(), meta.len(), meta.modified().expect("mtime"))),
            }
        }
    }
    found.sort();
    found
}

#[test]
fn refusals_exit_2_and_write_nothing() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut src = Berth::start();
    push_image(
        &berth_tests::http(),
        &src.url,
        "app",
        "v1",
        &random_image(1, 1000),
    );
    src.stop();
    let before = tree(&src.data_dir);

    let missing = work.path().join("missing.json");
    let (code, _, err) = migrate(&src.config_path, &missing);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("missing.json"), "{err}");

    let invalid = write_config(work.path(), "invalid", &json!({"storage": {"bogus": 1}}));
    let (code, _, err) = migrate(&src.config_path, &invalid);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("storage.bogus"), "{err}");
    assert!(
        !work.path().join("invalid-data").exists(),
        "wrote the destination"
    );

    let (code, _, err) = migrate(&src.config_path, &src.config_path);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("refusing"), "{err}");
    // The same directory spelled another way, and a directory inside it.
    let spelled = src.data_dir.join("../data/.");
    for (name, root) in [("same", spelled), ("inside", src.data_dir.join("nested"))] {
        let other = write_config(
            work.path(),
            name,
            &json!({"storage": {"rootDirectory": root}}),
        );
        let (code, _, err) = migrate(&src.config_path, &other);
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(err.contains("rootDirectory"), "{name}: {err}");
    }
    assert!(
        !src.data_dir.join("nested").exists(),
        "wrote the destination"
    );
    assert_eq!(tree(&src.data_dir), before, "the source changed");
}
