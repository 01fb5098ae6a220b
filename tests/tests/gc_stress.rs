//! GC under stress and crashes (reliability plan L3, L4, F5): online GC racing pushes,
//! manifest deletes and blob-link deletes must never cost a manifest a blob it was promised,
//! and a SIGKILL at any moment of a pass must leave a store that fsck finds clean and that
//! the next passes finish collecting.
//!
//! F5 (SIGKILL during GC) is in gc_crash.rs; the helpers are the harness's `gc` module.
//!
//! Rules: a blob's 201 is a promise for `gcDelay` (the push grace); a manifest PUT answered
//! within that grace may fail with MANIFEST_BLOB_UNKNOWN only when a concurrent client really
//! deleted that blob's link, and the test proves which case it was rather than tolerating
//! both. Every status the spec does not allow is a violation and fails the test with the
//! request named. Bounded for a 2-core CI runner with a debug build: L3 ~60 s, F5 ~10 s,
//! the mount/re-upload grace check ~6 s, L4 ~2 s; the harness runs them in parallel.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use berth_tests::{
    fetch_manifest, http, random_bytes, sha256_digest, tar_layer, try_push_blob, Berth, Image,
};
use rand::Rng as _;
use serde_json::json;

use berth_tests::gc::*;

const L3_CLIENTS: usize = 8;
const L3_CYCLES: usize = 70;
const L3_POOL: usize = 16;
/// `storage.gcDelay` of the L3 daemon.
const L3_GRACE: Duration = Duration::from_secs(3);

#[derive(Default)]
struct L3 {
    url: String,
    pool: Vec<Vec<u8>>,
    /// Per (repo, pool digest): shared-blob DELETEs (started, finished), so a partner's
    /// DELETE can be told apart from a link GC took inside the grace.
    deletes: Mutex<HashMap<(String, String), (u64, u64)>>,
    violations: Mutex<Vec<String>>,
    /// Outcome counters, printed at the end.
    counts: Mutex<BTreeMap<&'static str, usize>>,
}

impl L3 {
    fn violation(&self, what: String) {
        self.violations.lock().expect("violations lock").push(what);
    }

    fn count(&self, what: &'static str) {
        let mut counts = self.counts.lock().expect("counts lock");
        *counts.entry(what).or_default() += 1;
    }

    fn marks(&self, repo: &str, digest: &str) -> (u64, u64) {
        let deletes = self.deletes.lock().expect("deletes lock");
        let key = (repo.to_string(), digest.to_string());
        deletes.get(&key).copied().unwrap_or_default()
    }

    fn mark(&self, repo: &str, digest: &str, finished: bool) {
        let mut deletes = self.deletes.lock().expect("deletes lock");
        let entry = deletes.entry((repo.to_string(), digest.to_string()));
        let (started, done) = entry.or_default();
        *if finished { done } else { started } += 1;
    }
}

/// One L3 client's manifests: (tag, image) still live, and the images it deleted.
struct L3Client {
    repo: String,
    live: Vec<(String, Image)>,
    deleted: Vec<Image>,
}

fn l3_client(state: &L3, id: usize) -> L3Client {
    let client = http();
    let mut rng = rand::rng();
    let url = state.url.as_str();
    let repo = format!("l3/repo{}", id / 2);
    let (mut live, mut deleted, mut pushed_pool) = (Vec::new(), Vec::new(), Vec::new());
    for cycle in 0..L3_CYCLES {
        let pick = rng.random_range(0..L3_POOL);
        let shared = sha256_digest(&state.pool[pick]);
        let unique = tar_layer("unique.bin", &random_bytes(rng.random_range(512..8192)));
        let image = build_image(vec![unique, state.pool[pick].clone()]);
        let tag = format!("c{id}-{cycle}");
        let before = state.marks(&repo, &shared);
        let started = Instant::now();
        // The shared layer is uploaded every cycle: after any DELETE of its link (ours or the
        // partner's) it is re-uploaded before this manifest uses it.
        if let Err(error) = upload_blobs(&client, url, &repo, &image) {
            state.violation(format!("{repo}:{tag} blob upload: {error}"));
            continue;
        }
        pushed_pool.push(pick);
        thread::sleep(Duration::from_millis(rng.random_range(0..1500)));
        let put = put_manifest(&client, url, &repo, &tag, &image);
        let elapsed = started.elapsed();
        state.count(if elapsed < L3_GRACE {
            "put in grace"
        } else {
            "put after grace"
        });
        if put.status == 201 {
            live.push((tag.clone(), image));
        } else if put.is(400, "MANIFEST_BLOB_UNKNOWN") {
            let after = state.marks(&repo, &shared);
            let partner = put.digest.as_deref() == Some(shared.as_str())
                && (before.0 != before.1 || after.0 != before.0);
            if elapsed >= L3_GRACE {
                state.count("MANIFEST_BLOB_UNKNOWN after grace");
            } else if partner {
                state.count("MANIFEST_BLOB_UNKNOWN after partner's blob DELETE");
            } else {
                state.violation(format!(
                    "{repo}:{tag}: MANIFEST_BLOB_UNKNOWN {:?} {elapsed:?} after its first \
                     blob upload started (grace {L3_GRACE:?}), no DELETE of it: {}",
                    put.digest, put.body
                ));
            }
        } else {
            state.violation(format!("PUT {repo}:{tag}: {} {}", put.status, put.body));
        }

        if cycle % 3 == 2 && !live.is_empty() {
            let (tag, image) = live.swap_remove(rng.random_range(0..live.len()));
            let manifest_url = format!("{url}/v2/{repo}/manifests/{}", image.digest);
            let gone = delete(&client, manifest_url);
            if gone.status == 202 {
                deleted.push(image);
            } else {
                state.violation(format!(
                    "DELETE {repo}:{tag}: {} {}",
                    gone.status, gone.body
                ));
                live.push((tag, image));
            }
        }
        if rng.random_bool(0.15) {
            let pick = pushed_pool[rng.random_range(0..pushed_pool.len())];
            let digest = sha256_digest(&state.pool[pick]);
            state.mark(&repo, &digest, false);
            let gone = delete(&client, format!("{url}/v2/{repo}/blobs/{digest}"));
            state.mark(&repo, &digest, true);
            match (gone.status, gone.code.as_deref()) {
                (202, _) => state.count("blob DELETE 202"),
                (405, Some("DENIED")) => state.count("blob DELETE 405 DENIED (referenced)"),
                (404, Some("BLOB_UNKNOWN")) => state.count("blob DELETE 404 BLOB_UNKNOWN"),
                _ => state.violation(format!("DELETE {digest} in {repo}: {}", gone.body)),
            }
        }
    }
    L3Client {
        repo,
        live,
        deleted,
    }
}

/// L3: eight clients in four repositories push (blobs, a pause shorter than the grace, the
/// manifest), delete their own manifests and sometimes a shared blob's link, with GC every
/// second. No manifest PUT answered inside the grace loses a blob to GC; afterwards every
/// live manifest pulls digest-correct, fsck is clean, and after a restart GC removes the
/// deleted manifests' blobs from disk while keeping every live one's.
#[test]
fn l3_push_delete_gc_race_keeps_the_push_grace() {
    let wall = Instant::now();
    let mut berth = Berth::start_with(json!({"storage": {"gcInterval": "1s", "gcDelay": "3s"}}));
    let state = L3 {
        url: berth.url.clone(),
        pool: (0..L3_POOL)
            .map(|i| tar_layer(&format!("pool{i}.bin"), &random_bytes(4096)))
            .collect(),
        ..L3::default()
    };
    let clients: Vec<L3Client> = thread::scope(|s| {
        let state = &state;
        let handles: Vec<_> = (0..L3_CLIENTS)
            .map(|id| s.spawn(move || l3_client(state, id)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    let violations = state.violations.lock().expect("lock").clone();
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    let counts = state.counts.lock().expect("lock").clone();
    let live_count: usize = clients.iter().map(|c| c.live.len()).sum();
    let deleted_count: usize = clients.iter().map(|c| c.deleted.len()).sum();
    eprintln!(
        "L3: {live_count} live, {deleted_count} deleted manifests; {counts:?}; load took {:?}",
        wall.elapsed()
    );
    let in_grace = counts.get("put in grace").copied().unwrap_or(0);
    let late = counts.get("put after grace").copied().unwrap_or(0);
    assert!(
        in_grace >= late,
        "too few PUTs inside the grace for the test to mean anything: {in_grace} vs {late}"
    );
    let client = http();
    for c in &clients {
        for (tag, image) in &c.live {
            assert_pulls(&client, &berth.url, &c.repo, tag, image);
        }
        for image in &c.deleted {
            assert_deleted(&client, &berth.url, &c.repo, &image.digest);
        }
    }
    berth.stop();
    assert_fsck_clean(&berth, "after the L3 load");

    // Every deleted manifest's garbage is older than the grace now: a few passes after the
    // restart (the first is full) take its config and unique layer off the disk.
    berth.restart();
    let live = blob_hexes(clients.iter().flat_map(|c| &c.live).map(|(_, image)| image));
    let garbage: Vec<String> = clients
        .iter()
        .flat_map(|c| &c.deleted)
        .flat_map(|image| [&image.config, &image.layers[0]])
        .map(|blob| hex_of(&sha256_digest(blob)))
        .collect();
    await_gc(&berth, &live, |files| {
        let left = garbage.iter().filter(|h| files.contains(h)).count();
        (left > 0).then(|| format!("{left} blobs of deleted manifests still on disk"))
    });
    assert_fsck_clean(&berth, "after GC collected the deleted manifests");
    eprintln!("L3 wall time {:?}", wall.elapsed());
}

// ---------------------------------------------------------------------------------------
// L4: blob DELETE racing the PUT of a manifest that references it.

const L4_THREADS: usize = 4;
const L4_ROUNDS: usize = 50;

#[derive(Default)]
struct L4Outcome {
    stored: Vec<(String, String, Image)>,
    put_won: usize,
    delete_won: usize,
    violations: Vec<String>,
}

fn l4_rounds(url: &str, thread_id: usize) -> L4Outcome {
    let client = http();
    let mut rng = rand::rng();
    let repo = format!("l4/t{thread_id}");
    let mut out = L4Outcome::default();
    for round in 0..L4_ROUNDS {
        let image = build_image(vec![tar_layer("l.bin", &random_bytes(2048))]);
        upload_blobs(&client, url, &repo, &image).unwrap_or_else(|e| panic!("upload: {e}"));
        let layer = sha256_digest(&image.layers[0]);
        let blob_url = format!("{url}/v2/{repo}/blobs/{layer}");
        let tag = format!("r{round}");
        // Either side gets a random head start of up to 15 ms, so both orders happen.
        let head_start = Duration::from_micros(rng.random_range(0..15_000));
        let delete_first = rng.random_bool(0.5);
        let (put, del) = thread::scope(|s| {
            let deleter = s.spawn(|| {
                if !delete_first {
                    thread::sleep(head_start);
                }
                delete(&client, blob_url.clone())
            });
            if delete_first {
                thread::sleep(head_start);
            }
            let put = put_manifest(&client, url, &repo, &tag, &image);
            (put, deleter.join().expect("deleter thread"))
        });
        let head = reply(client.head(&blob_url).send()).status;
        let stored = fetch_manifest(&client, url, &repo, &tag).0;
        if put.status == 201 && del.is(405, "DENIED") && head == 200 && stored == 200 {
            out.put_won += 1;
            out.stored.push((repo.clone(), tag, image));
        } else if put.is(400, "MANIFEST_BLOB_UNKNOWN")
            && put.digest.as_deref() == Some(layer.as_str())
            && del.status == 202
            && head == 404
            && stored == 404
        {
            out.delete_won += 1;
        } else {
            out.violations.push(format!(
                "{repo}:{tag}: PUT {} {}, DELETE {} {}; then HEAD blob {head}, GET manifest \
                 {stored}",
                put.status, put.body, del.status, del.body
            ));
        }
    }
    out
}

/// L4: 200 rounds over four threads, each uploading a layer and config and then racing a
/// DELETE of the layer against the PUT of the manifest referencing it. Exactly one side wins
/// each round (201 + 405 DENIED, or 202 + 400 MANIFEST_BLOB_UNKNOWN naming the layer), never
/// a stored manifest whose blob is unlinked; fsck is clean and every stored image pulls.
#[test]
fn l4_blob_delete_racing_manifest_put_never_dangles() {
    let wall = Instant::now();
    let berth = Berth::start_with(json!({"storage": {"gcInterval": "1s", "gcDelay": "10s"}}));
    let url = berth.url.as_str();
    let outcomes: Vec<L4Outcome> = thread::scope(|s| {
        let handles: Vec<_> = (0..L4_THREADS)
            .map(|t| s.spawn(move || l4_rounds(url, t)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("round thread"))
            .collect()
    });
    let violations: Vec<String> = outcomes.iter().flat_map(|o| o.violations.clone()).collect();
    let put_won: usize = outcomes.iter().map(|o| o.put_won).sum();
    let delete_won: usize = outcomes.iter().map(|o| o.delete_won).sum();
    eprintln!("L4: PUT won {put_won}, DELETE won {delete_won}");
    let bad = violations.join("\n");
    assert!(bad.is_empty(), "{} bad rounds:\n{bad}", violations.len());
    assert!(
        put_won > 0 && delete_won > 0,
        "the race never went both ways (PUT won {put_won}, DELETE won {delete_won})"
    );
    assert_fsck_clean(&berth, "after the L4 rounds");
    let client = http();
    for (repo, tag, image) in outcomes.iter().flat_map(|o| &o.stored) {
        assert_pulls(&client, url, repo, tag, image);
    }
    eprintln!("L4 wall time {:?}", wall.elapsed());
}

// ---------------------------------------------------------------------------------------
// F5: SIGKILL during GC.
/// The push grace holds for every 201, also a mount (`POST ?mount=&from=`) into a repository
/// that already links the blob and a re-upload of a linked blob: both restart the grace, so
/// after their old links became unreferenced (quay#6318's case) the GC pass that takes the old
/// image's blobs leaves them.
#[test]
fn l3_mount_and_reupload_of_an_old_link_restart_the_grace() {
    let berth = Berth::start_with(json!({"storage": {"gcInterval": "1s", "gcDelay": "3s"}}));
    let (client, url, repo) = (http(), berth.url.as_str(), "grace/app");
    let old = build_image(vec![
        tar_layer("mounted.bin", &random_bytes(4096)),
        tar_layer("reuploaded.bin", &random_bytes(4096)),
    ]);
    upload_blobs(&client, url, "grace/src", &old).expect("upload to the source repo");
    upload_blobs(&client, url, repo, &old).expect("upload");
    assert_eq!(put_manifest(&client, url, repo, "old", &old).status, 201);
    thread::sleep(L3_GRACE + Duration::from_secs(1));

    let (mounted, reuploaded) = (&old.layers[0], &old.layers[1]);
    let mount = format!(
        "{url}/v2/{repo}/blobs/uploads/?mount={}&from=grace/src",
        sha256_digest(mounted)
    );
    let acknowledged = Instant::now();
    let answer = reply(client.post(mount).send());
    assert_eq!(answer.status, 201, "mount: {}", answer.body);
    try_push_blob(&client, url, repo, reuploaded, false).expect("re-upload");
    let fresh = tar_layer("fresh.bin", &random_bytes(1024));
    let new = build_image(vec![mounted.clone(), reuploaded.clone(), fresh]);
    for blob in [&new.config, &new.layers[2]] {
        try_push_blob(&client, url, repo, blob, false).expect("new blob");
    }
    let gone = delete(&client, format!("{url}/v2/{repo}/manifests/{}", old.digest));
    assert_eq!(gone.status, 202, "{}", gone.body);
    // Wait for the pass after the DELETE: it unlinks the old config, unreferenced and linked
    // more than gcDelay ago. Then the two blobs' fate is decided, well inside their grace.
    let old_config = format!("{url}/v2/{repo}/blobs/{}", sha256_digest(&old.config));
    while reply(client.head(&old_config).send()).status != 404 {
        let waited = acknowledged.elapsed();
        assert!(
            waited < Duration::from_millis(2500),
            "no GC pass in {waited:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    // Each blob on its own (a PUT names only the first missing one), then the manifest.
    let lost: Vec<&str> = [(mounted, "mounted"), (reuploaded, "re-uploaded")]
        .into_iter()
        .filter(|(blob, _)| {
            let head = format!("{url}/v2/{repo}/blobs/{}", sha256_digest(blob));
            reply(client.head(head).send()).status != 200
        })
        .map(|(_, what)| what)
        .collect();
    assert!(
        lost.is_empty(),
        "GC unlinked the {lost:?} blob {:?} after its 201",
        acknowledged.elapsed()
    );
    let put = put_manifest(&client, url, repo, "new", &new);
    assert_eq!(
        put.status,
        201,
        "PUT {:?} after the blobs' 201s: {}",
        acknowledged.elapsed(),
        put.body
    );
    assert_pulls(&client, url, repo, "new", &new);
}
