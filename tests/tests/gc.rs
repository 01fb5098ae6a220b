//! GC against the real daemon, as the GC contract (issue 5) promises it to a user: upload
//! sessions idle for longer than `storage.gcDelay` go with their staged bytes; a deleted
//! image's blobs are reclaimed from disk while layers other images share stay; an overwritten
//! tag's old image goes after the retention delay; an index keeps its untagged children;
//! referrers follow `deleteReferrers`; a blob pushed for a manifest not yet PUT survives the
//! push grace; an empty repository leaves the catalog; `berth gc` runs one pass offline; and
//! deletions are counted in zot's GC metrics (the log lines are checked in gc_retention.rs).
//!
//! Every wait polls with a deadline ([`eventually`]); "it survives" is asserted only after GC
//! passes have run past the delay ([`await_passes`]). Blob files are looked up by digest under
//! `data_dir/blobs`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::api::{
    expect_status, get_json, json_bytes, location, patch_chunk, put_manifest, start_upload,
    upload_state, OCI_INDEX, OCI_MANIFEST,
};
use berth_tests::gc::{await_passes, deleted, eventually, head, on_disk, stop_and_fsck, tags};
use berth_tests::{
    berth_bin, fetch_blob, fetch_manifest, gzip_stored, http, merge_patch, push_blob, push_image,
    random_bytes, random_image, scrape_metrics, sha256_digest, tar_layer, try_push_manifest, Berth,
    Client, Image,
};
use serde_json::{json, Value};

/// berth with GC every second, a 2 s delay and metrics on, plus `patch`.
fn gc_berth(patch: Value) -> Berth {
    let mut config = json!({
        "storage": {"gcDelay": "2s", "gcInterval": "1s"},
        "extensions": {"metrics": {}},
    });
    merge_patch(&mut config, &patch);
    Berth::start_with(config)
}

fn head_blob(client: &Client, berth: &Berth, repo: &str, digest: &str) -> u16 {
    head(client, format!("{}/v2/{repo}/blobs/{digest}", berth.url))
}

/// HEAD (not GET: a GET counts as a pull) of a manifest.
fn head_manifest(client: &Client, berth: &Berth, repo: &str, reference: &str) -> u16 {
    head(
        client,
        format!("{}/v2/{repo}/manifests/{reference}", berth.url),
    )
}

/// True once `digest` is neither served in `repo` nor stored on disk.
fn reclaimed(client: &Client, berth: &Berth, repo: &str, digest: &str) -> bool {
    head_blob(client, berth, repo, digest) == 404 && !on_disk(berth, digest)
}

fn delete_manifest(client: &Client, berth: &Berth, repo: &str, digest: &str) {
    let url = format!("{}/v2/{repo}/manifests/{digest}", berth.url);
    expect_status(client.delete(url).send().expect("DELETE"), 202);
}

/// Asserts `repo:reference` serves `image` byte-exact, with every blob digest-correct and its
/// file on disk.
#[track_caller]
fn assert_pulls(client: &Client, berth: &Berth, repo: &str, reference: &str, image: &Image) {
    let (status, digest, body) = fetch_manifest(client, &berth.url, repo, reference);
    assert_eq!(status, 200, "{repo}:{reference}");
    assert_eq!(digest.as_deref(), Some(image.digest.as_str()));
    assert_eq!(body, image.manifest);
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        let digest = sha256_digest(blob);
        let (status, bytes) = fetch_blob(client, &berth.url, repo, &digest);
        assert_eq!(status, 200, "blob {digest} of {repo}:{reference}");
        assert_eq!(sha256_digest(&bytes), digest);
        assert!(on_disk(berth, &digest), "blob {digest} has no file");
    }
}

fn catalog(client: &Client, berth: &Berth) -> Vec<String> {
    let (_, body) = get_json(client, &format!("{}/v2/_catalog", berth.url));
    serde_json::from_value(body["repositories"].clone()).expect("repositories")
}

/// A gzip tar layer blob with its diff_id.
struct Layer {
    blob: Vec<u8>,
    diff_id: String,
}

fn layer() -> Layer {
    let tar = tar_layer("f.bin", &random_bytes(300));
    Layer {
        diff_id: sha256_digest(&tar),
        blob: gzip_stored(&tar),
    }
}

/// An OCI image made of `layers` (which other images may share).
fn image_of(layers: &[&Layer]) -> Image {
    let config = json_bytes(&json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()},
    }));
    let manifest = json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256_digest(&config), "size": config.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": sha256_digest(&l.blob), "size": l.blob.len(),
        })).collect::<Vec<_>>(),
    }));
    Image {
        digest: sha256_digest(&manifest),
        config,
        layers: layers.iter().map(|l| l.blob.clone()).collect(),
        manifest,
    }
}

/// An artifact (empty config, one random blob) whose subject is `subject`, pushed by digest as
/// oras does. Returns (manifest digest, its blob's digest).
fn push_referrer(client: &Client, berth: &Berth, repo: &str, subject: &Image) -> (String, String) {
    let empty = push_blob(client, &berth.url, repo, b"{}");
    let blob = push_blob(client, &berth.url, repo, &random_bytes(64));
    let manifest = json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": blob, "size": 64}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.digest, "size": subject.manifest.len()},
    }));
    let digest = sha256_digest(&manifest);
    put_manifest(client, &berth.url, repo, &digest, OCI_MANIFEST, &manifest);
    (digest, blob)
}

#[test]
fn idle_upload_sessions_are_collected_and_active_ones_survive() {
    let berth = Berth::start_with(json!({
        "storage": {"gcDelay": "2s", "gcInterval": "1s"},
        "extensions": {"metrics": {}},
    }));
    let client = http();
    let idle = start_upload(&client, &berth.url, "gc/idle");
    let mut active = start_upload(&client, &berth.url, "gc/active");
    let staged = || {
        std::fs::read_dir(berth.data_dir.join("uploads"))
            .expect("uploads")
            .count()
    };
    assert_eq!(staged(), 2);
    let mut offset = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    // Feed the active session a chunk every 300 ms until the idle one is gone.
    loop {
        let chunk = random_bytes(1000);
        let patched = patch_chunk(&client, &active, offset, &chunk);
        assert_eq!(
            patched.status().as_u16(),
            202,
            "the active session must survive"
        );
        active = location(&berth.url, patched.headers());
        offset += chunk.len();
        if upload_state(&client, &idle).0 == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle session was never collected"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        staged(),
        1,
        "the idle session's bytes are gone, the active one's kept"
    );
    let expected_range = format!("0-{}", offset - 1);
    assert_eq!(upload_state(&client, &active), (204, Some(expected_range)));
    let metrics = scrape_metrics(&client, &berth.url);
    assert_eq!(
        metrics.value("zot_gc_deleted_total", &[("type", "upload")]),
        Some(1.0)
    );
    assert!(
        metrics
            .value("zot_gc_runs_total", &[("error", "false")])
            .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(
        metrics.value("zot_gc_runs_total", &[("error", "true")]),
        Some(0.0)
    );
}

#[test]
fn gc_off_keeps_idle_sessions() {
    let berth = Berth::start_with(json!({
        "storage": {"gc": false, "gcDelay": "0s", "gcInterval": "1s"},
    }));
    let client = http();
    let idle = start_upload(&client, &berth.url, "gc/off");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(upload_state(&client, &idle).0, 204);
}

/// r1 holds A and B (sharing a layer), r2 holds C (sharing another layer with A). Deleting A
/// frees A's own config and layer on disk; r1 stops serving the layer only A used there; the
/// shared layers stay and B and C still pull.
#[test]
fn deleted_image_blobs_are_reclaimed_and_shared_layers_kept() {
    let mut berth = gc_berth(json!({}));
    let client = http();
    let (ab, ac, only_a, only_b, only_c) = (layer(), layer(), layer(), layer(), layer());
    let a = image_of(&[&only_a, &ab, &ac]);
    let b = image_of(&[&only_b, &ab]);
    let c = image_of(&[&only_c, &ac]);
    push_image(&client, &berth.url, "r1", "a", &a);
    push_image(&client, &berth.url, "r1", "b", &b);
    push_image(&client, &berth.url, "r2", "c", &c);
    delete_manifest(&client, &berth, "r1", &a.digest);
    let a_only = [sha256_digest(&a.config), sha256_digest(&only_a.blob)];
    let (ab, ac) = (sha256_digest(&ab.blob), sha256_digest(&ac.blob));
    eventually("A's own blobs reclaimed", || {
        a_only.iter().all(|d| reclaimed(&client, &berth, "r1", d))
    });
    eventually("r1's link to the layer only A used there removed", || {
        head_blob(&client, &berth, "r1", &ac) == 404
    });
    assert!(on_disk(&berth, &ac), "the layer r2 still uses was deleted");
    assert_eq!(head_blob(&client, &berth, "r2", &ac), 200);
    assert!(on_disk(&berth, &ab));
    assert_eq!(head_blob(&client, &berth, "r1", &ab), 200);
    assert_pulls(&client, &berth, "r1", "b", &b);
    assert_pulls(&client, &berth, "r2", "c", &c);
    assert_eq!(head_manifest(&client, &berth, "r1", &a.digest), 404);
    assert_eq!(tags(&client, &berth, "r1"), ["b"]);
    eventually("blob deletions counted", || {
        deleted(&client, &berth, "blob") == 2.0
    });
    // Links: A's config, A's own layer, the layer r2 shares; A itself went by API.
    assert_eq!(deleted(&client, &berth, "link"), 3.0);
    assert_eq!(deleted(&client, &berth, "manifest"), 0.0);
    stop_and_fsck(&mut berth);
}

/// X tagged t, then Y tagged t: X is untagged and collected after the delay; Y is intact.
#[test]
fn overwritten_tag_image_is_collected() {
    let mut berth = gc_berth(json!({}));
    let client = http();
    let (x, y) = (random_image(1, 300), random_image(1, 300));
    push_image(&client, &berth.url, "ow/app", "t", &x);
    push_image(&client, &berth.url, "ow/app", "t", &y);
    eventually("X and its blobs collected", || {
        head_manifest(&client, &berth, "ow/app", &x.digest) == 404
            && x.blob_digests()
                .iter()
                .all(|d| reclaimed(&client, &berth, "ow/app", d))
    });
    let (status, _, _) = fetch_manifest(&client, &berth.url, "ow/app", &x.digest);
    assert_eq!(status, 404);
    assert_pulls(&client, &berth, "ow/app", "t", &y);
    assert_pulls(&client, &berth, "ow/app", &y.digest, &y);
    assert_eq!(tags(&client, &berth, "ow/app"), ["t"]);
    stop_and_fsck(&mut berth);
}

/// `retention.delay` 1h with gcDelay 2s: the overwritten image and its blobs survive passes
/// that do collect an unreferenced blob.
#[test]
fn retention_delay_keeps_an_overwritten_image() {
    let mut berth = gc_berth(json!({"storage": {"retention": {"delay": "1h"}}}));
    let client = http();
    let (x, y) = (random_image(1, 300), random_image(1, 300));
    push_image(&client, &berth.url, "ow/app", "t", &x);
    push_image(&client, &berth.url, "ow/app", "t", &y);
    let stray = push_blob(&client, &berth.url, "ow/app", &random_bytes(500));
    eventually("the unreferenced blob collected", || {
        reclaimed(&client, &berth, "ow/app", &stray)
    });
    await_passes(&client, &berth, 2);
    assert_eq!(head_manifest(&client, &berth, "ow/app", &x.digest), 200);
    assert_pulls(&client, &berth, "ow/app", &x.digest, &x);
    assert_pulls(&client, &berth, "ow/app", "t", &y);
    stop_and_fsck(&mut berth);
}

/// An index's children are untagged but kept; once the index is deleted they go with their blobs.
#[test]
fn index_children_are_kept_until_the_index_goes() {
    let mut berth = gc_berth(json!({}));
    let client = http();
    let children = [random_image(1, 200), random_image(1, 200)];
    for child in &children {
        push_image(&client, &berth.url, "idx/app", &child.digest, child);
    }
    let index = json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().zip(["amd64", "arm64"]).map(|(c, arch)| json!({
            "mediaType": OCI_MANIFEST, "digest": c.digest, "size": c.manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        })).collect::<Vec<_>>(),
    }));
    let index_digest = sha256_digest(&index);
    put_manifest(&client, &berth.url, "idx/app", "multi", OCI_INDEX, &index);
    let other = random_image(1, 200);
    push_image(&client, &berth.url, "idx/app", "other", &other);
    std::thread::sleep(Duration::from_millis(2500));
    await_passes(&client, &berth, 2);
    for child in &children {
        assert_pulls(&client, &berth, "idx/app", &child.digest, child);
    }
    delete_manifest(&client, &berth, "idx/app", &index_digest);
    eventually("the children and their blobs collected", || {
        children.iter().all(|child| {
            head_manifest(&client, &berth, "idx/app", &child.digest) == 404
                && child
                    .blob_digests()
                    .iter()
                    .all(|d| reclaimed(&client, &berth, "idx/app", d))
        })
    });
    assert_pulls(&client, &berth, "idx/app", "other", &other);
    assert_eq!(tags(&client, &berth, "idx/app"), ["other"]);
    stop_and_fsck(&mut berth);
}

/// In both repositories image S (tagged) has referrer R, untagged image U has referrer RU, and
/// S is deleted. keep/refs (no policy) keeps R; drop/refs (`deleteReferrers: true`) collects R
/// and its blob. U and RU stay everywhere.
#[test]
fn referrers_follow_delete_referrers_and_keep_their_subjects() {
    let mut berth = gc_berth(json!({"storage": {"retention": {"policies": [
        {"repositories": ["drop/**"], "deleteReferrers": true},
    ]}}}));
    let client = http();
    let mut cases = Vec::new();
    for repo in ["keep/refs", "drop/refs"] {
        let (s, u) = (random_image(1, 200), random_image(1, 200));
        push_image(&client, &berth.url, repo, "s", &s);
        let r = push_referrer(&client, &berth, repo, &s);
        push_image(&client, &berth.url, repo, &u.digest, &u);
        let ru = push_referrer(&client, &berth, repo, &u);
        delete_manifest(&client, &berth, repo, &s.digest);
        cases.push((repo, s, r, u, ru));
    }
    eventually(
        "drop/refs's orphaned referrer and its blob collected",
        || {
            let (repo, _, (r, r_blob), _, _) = &cases[1];
            head_manifest(&client, &berth, repo, r) == 404
                && reclaimed(&client, &berth, repo, r_blob)
        },
    );
    eventually("S's blobs collected", || {
        cases.iter().all(|(repo, s, ..)| {
            s.blob_digests()
                .iter()
                .all(|d| reclaimed(&client, &berth, repo, d))
        })
    });
    await_passes(&client, &berth, 1);
    let (repo, _, (r, r_blob), _, _) = &cases[0];
    assert_eq!(
        head_manifest(&client, &berth, repo, r),
        200,
        "default keeps referrers"
    );
    assert_eq!(head_blob(&client, &berth, repo, r_blob), 200);
    for (repo, _, _, u, (ru, ru_blob)) in &cases {
        assert_pulls(&client, &berth, repo, &u.digest, u);
        assert_eq!(head_manifest(&client, &berth, repo, ru), 200, "{repo}: RU");
        assert_eq!(head_blob(&client, &berth, repo, ru_blob), 200);
    }
    stop_and_fsck(&mut berth);
}

/// gcDelay 4s: blobs that got 201 survive passes until their manifest arrives 2.5 s later;
/// a blob never referenced is unlinked and its file removed, but not before gcDelay.
#[test]
fn push_grace_protects_blobs_until_the_manifest_arrives() {
    let mut berth = gc_berth(json!({"storage": {"gcDelay": "4s"}}));
    let client = http();
    let image = random_image(1, 300);
    push_blob(&client, &berth.url, "grace/app", &image.config);
    push_blob(&client, &berth.url, "grace/app", &image.layers[0]);
    let started = Instant::now();
    let stray = push_blob(&client, &berth.url, "grace/app", &random_bytes(500));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(head_blob(&client, &berth, "grace/app", &stray), 200);
    try_push_manifest(&client, &berth.url, "grace/app", "v1", &image.manifest)
        .unwrap_or_else(|e| panic!("manifest PUT inside the push grace: {e}"));
    eventually("the unreferenced blob collected", || {
        reclaimed(&client, &berth, "grace/app", &stray)
    });
    assert!(
        started.elapsed() >= Duration::from_millis(3990),
        "unlinked before gcDelay"
    );
    assert_pulls(&client, &berth, "grace/app", "v1", &image);
    stop_and_fsck(&mut berth);
}

/// A repository whose only image is deleted leaves the catalog; its blobs leave the disk.
#[test]
fn empty_repository_leaves_the_catalog() {
    let mut berth = gc_berth(json!({}));
    let client = http();
    let (gone, stay) = (random_image(1, 200), random_image(1, 200));
    push_image(&client, &berth.url, "gone/app", "v1", &gone);
    push_image(&client, &berth.url, "stay/app", "v1", &stay);
    assert_eq!(catalog(&client, &berth), ["gone/app", "stay/app"]);
    delete_manifest(&client, &berth, "gone/app", &gone.digest);
    eventually("gone/app leaves the catalog", || {
        catalog(&client, &berth) == ["stay/app"]
    });
    assert!(gone.blob_digests().iter().all(|d| !on_disk(&berth, d)));
    assert_pulls(&client, &berth, "stay/app", "v1", &stay);
    assert!(deleted(&client, &berth, "repository") >= 1.0);
    stop_and_fsck(&mut berth);
}

/// Runs `berth gc CONFIG [--dry-run]`: (exit code, stdout, stderr).
fn berth_gc(berth: &Berth, dry_run: bool) -> (Option<i32>, String, String) {
    let mut command = Command::new(berth_bin());
    command.arg("gc").arg(&berth.config_path);
    if dry_run {
        command.arg("--dry-run");
    }
    let output = command.stdin(Stdio::null()).output().expect("run berth gc");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

/// The table rows (whitespace-split, sorted) and the last line of `berth gc` output.
fn gc_table(stdout: &str) -> (Vec<Vec<String>>, String) {
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("KIND"))
        .expect("a KIND header");
    for column in ["REPOSITORY", "WHAT", "REASON", "BYTES"] {
        assert!(lines[header].contains(column), "header: {}", lines[header]);
    }
    let (last, rows) = lines[header + 1..].split_last().expect("a summary line");
    let mut rows: Vec<Vec<String>> = rows
        .iter()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    rows.sort();
    (rows, (*last).to_owned())
}

/// `berth gc` on a stopped berth: refused while it runs (exit 2, nothing changed); --dry-run
/// lists every deletion and changes nothing; the real run does exactly what the dry run
/// said, frees the files, and leaves a store that fscks clean and still serves the live images.
#[test]
fn gc_command_dry_run_then_real_run_on_a_stopped_berth() {
    // The daemon's own first pass is an hour away: the garbage waits for `berth gc`.
    let mut berth = gc_berth(json!({"storage": {"gcDelay": "1s", "gcInterval": "1h"}}));
    let client = http();
    let (keep, old, x, y) = (
        random_image(1, 300),
        random_image(1, 300),
        random_image(1, 300),
        random_image(1, 300),
    );
    push_image(&client, &berth.url, "cli/a", "keep", &keep);
    push_image(&client, &berth.url, "cli/a", "old", &old);
    delete_manifest(&client, &berth, "cli/a", &old.digest);
    push_image(&client, &berth.url, "cli/a", "t", &x);
    push_image(&client, &berth.url, "cli/a", "t", &y);
    let stray_bytes = random_bytes(500);
    let stray = push_blob(&client, &berth.url, "cli/b", &stray_bytes);
    let garbage: Vec<(&str, String, usize)> = [&old, &x]
        .iter()
        .flat_map(|image| std::iter::once(&image.config).chain(&image.layers))
        .map(|blob| ("cli/a", sha256_digest(blob), blob.len()))
        .chain(std::iter::once(("cli/b", stray.clone(), stray_bytes.len())))
        .collect();

    let (code, stdout, stderr) = berth_gc(&berth, false);
    assert_eq!(
        code,
        Some(2),
        "berth gc with berth running\n{stdout}{stderr}"
    );
    let message = format!("{stdout}{stderr}").to_lowercase();
    assert!(
        message.contains("running") || message.contains("stop"),
        "{message}"
    );
    assert!(garbage.iter().all(|(_, d, _)| on_disk(&berth, d)));
    berth.stop();
    std::thread::sleep(Duration::from_millis(1500));

    let (code, stdout, stderr) = berth_gc(&berth, true);
    assert_eq!(code, Some(0), "berth gc --dry-run\n{stdout}{stderr}");
    let (dry_rows, dry_summary) = gc_table(&stdout);
    assert!(
        garbage.iter().all(|(_, d, _)| on_disk(&berth, d)),
        "--dry-run deleted files"
    );
    let bytes: usize = garbage.iter().map(|(_, _, len)| len).sum();
    let counts = format!(
        "0 tags, 1 manifests, 5 links, 5 blobs ({bytes} bytes), 0 orphan files, 1 repositories, 0 uploads"
    );
    assert_eq!(
        dry_summary,
        format!("gc: would delete {counts}"),
        "\n{stdout}"
    );
    assert_eq!(dry_rows.len(), 12, "one row per deletion:\n{stdout}");
    let has = |kind: &str, repo: &str, what: &str| {
        dry_rows
            .iter()
            .any(|r| r[0] == kind && r[1] == repo && (what.is_empty() || r[2] == what))
    };
    for (repo, digest, len) in &garbage {
        assert!(
            has("link", repo, digest),
            "no link row for {repo} {digest}:\n{stdout}"
        );
        let blob_row = dry_rows.iter().find(|r| r[0] == "blob" && r[2] == *digest);
        let blob_row = blob_row.unwrap_or_else(|| panic!("no blob row for {digest}:\n{stdout}"));
        assert_eq!(
            (blob_row[1].as_str(), blob_row.last()),
            ("-", Some(&len.to_string()))
        );
    }
    assert!(has("manifest", "cli/a", &x.digest), "{stdout}");
    assert!(has("repository", "cli/b", ""), "{stdout}");

    let (code, stdout, stderr) = berth_gc(&berth, false);
    assert_eq!(code, Some(0), "berth gc\n{stdout}{stderr}");
    let (rows, summary) = gc_table(&stdout);
    assert_eq!(summary, format!("gc: deleted {counts}"), "\n{stdout}");
    assert_eq!(rows, dry_rows, "the real run did what the dry run said");
    assert!(
        garbage.iter().all(|(_, d, _)| !on_disk(&berth, d)),
        "files left behind"
    );
    let (clean, report) = berth.fsck();
    assert!(clean, "fsck after berth gc:\n{report}");

    berth.restart();
    assert_pulls(&client, &berth, "cli/a", "keep", &keep);
    assert_pulls(&client, &berth, "cli/a", "t", &y);
    for image in [&old, &x] {
        assert_eq!(head_manifest(&client, &berth, "cli/a", &image.digest), 404);
    }
    assert_eq!(catalog(&client, &berth), ["cli/a"]);
    assert_eq!(tags(&client, &berth, "cli/a"), ["keep", "t"]);
    berth.stop();
}
