//! GC and crashes (reliability plan F5): a SIGKILL at any moment of a GC pass (marking,
//! between a record's delete and its file's, mid-sweep) leaves a store that fsck finds clean,
//! loses no blob a live image references, and the next passes finish collecting.

use std::thread;
use std::time::{Duration, Instant};

use berth_tests::{http, random_bytes, tar_layer, Berth, Client, Image};
use rand::Rng as _;
use serde_json::json;

use berth_tests::gc::*;

const F5_REPOS: usize = 3;
const F5_PER_REPO: usize = 50;
const F5_KILLS: usize = 5;
const F5_DELETE_PER_KILL: usize = 20;
/// `storage.gcDelay` of the F5 daemon.
const F5_GRACE: Duration = Duration::from_secs(1);

/// Pushes `image` as `repo:tag`. A MANIFEST_BLOB_UNKNOWN after the grace (a slow machine)
/// restarts the push; inside the grace it is a lost blob and fails the test.
fn push_with_grace(client: &Client, url: &str, repo: &str, tag: &str, image: &Image) {
    for _ in 0..10 {
        let started = Instant::now();
        upload_blobs(client, url, repo, image).unwrap_or_else(|e| panic!("upload: {e}"));
        let put = put_manifest(client, url, repo, tag, image);
        if put.status == 201 {
            return;
        }
        assert!(
            put.is(400, "MANIFEST_BLOB_UNKNOWN") && started.elapsed() >= F5_GRACE,
            "PUT {repo}:{tag} {:?} after its first upload: {} {}",
            started.elapsed(),
            put.status,
            put.body
        );
    }
    panic!("{repo}:{tag}: every push took longer than the grace");
}

/// Pushes `F5_PER_REPO` images into `repo`, each with a unique layer and one or two
/// layers of `pool`.
fn f5_push_repo(url: &str, pool: &[Vec<u8>], repo: &str) -> Vec<(String, String, Image)> {
    let client = http();
    let mut rng = rand::rng();
    (0..F5_PER_REPO)
        .map(|n| {
            let unique = random_bytes(rng.random_range(256..3072));
            let first = rng.random_range(0..pool.len());
            let mut layers = vec![tar_layer("unique.bin", &unique), pool[first].clone()];
            if rng.random_bool(0.3) {
                layers.push(pool[(first + 1) % pool.len()].clone());
            }
            let image = build_image(layers);
            let tag = format!("i{n}");
            push_with_grace(&client, url, repo, &tag, &image);
            (repo.to_string(), tag, image)
        })
        .collect()
}

/// F5: 150 images in three repositories sharing layers; then five times: delete 20 of them
/// by digest (GC, every second with a 1 s delay, starts collecting), SIGKILL at a random
/// moment, fsck (clean: orphan files are info) and restart. Finally GC finishes the job: the
/// files under blobs/ are exactly the live images' blobs, every live image pulls
/// digest-correct, every deleted manifest stays deleted, and fsck is clean.
#[test]
fn f5_kill_during_gc_loses_no_referenced_blob() {
    let wall = Instant::now();
    let mut berth = Berth::start_with(json!({"storage": {"gcInterval": "1s", "gcDelay": "1s"}}));
    let pool: Vec<Vec<u8>> = (0..10)
        .map(|i| tar_layer(&format!("pool{i}.bin"), &random_bytes(2048)))
        .collect();
    let url = berth.url.clone();
    let url = url.as_str();
    let mut images: Vec<(String, String, Image)> = thread::scope(|s| {
        let handles: Vec<_> = (0..F5_REPOS)
            .map(|r| {
                let pool = &pool;
                s.spawn(move || f5_push_repo(url, pool, &format!("f5/r{r}")))
            })
            .collect();
        let pushed = handles.into_iter().map(|h| h.join().expect("push thread"));
        pushed.flatten().collect()
    });
    let mut rng = rand::rng();
    for i in (1..images.len()).rev() {
        images.swap(i, rng.random_range(0..=i));
    }
    let live = images.split_off(F5_KILLS * F5_DELETE_PER_KILL);
    let deleted = images;
    eprintln!("F5: pushed and shuffled after {:?}", wall.elapsed());

    let client = http();
    let mut swept_at_kill = Vec::new();
    for (round, batch) in deleted.chunks(F5_DELETE_PER_KILL).enumerate() {
        let before = blob_files(&berth.data_dir).len();
        for (repo, tag, image) in batch {
            let gone = delete(
                &client,
                format!("{}/v2/{repo}/manifests/{}", berth.url, image.digest),
            );
            assert_eq!(gone.status, 202, "DELETE {repo}:{tag}: {}", gone.body);
        }
        if round % 2 == 0 {
            thread::sleep(Duration::from_millis(rng.random_range(0..1500)));
        } else {
            // Odd rounds kill mid-sweep: the moment the first file under blobs/ goes.
            let deadline = Instant::now() + Duration::from_secs(5);
            while blob_files(&berth.data_dir).len() >= before && Instant::now() < deadline {}
        }
        berth.kill();
        swept_at_kill.push(before.saturating_sub(blob_files(&berth.data_dir).len()));
        assert_fsck_clean(&berth, "after a SIGKILL during GC");
        berth.restart();
    }
    eprintln!("F5: blob files removed at each kill: {swept_at_kill:?}");

    // GC finishes: the files under blobs/ become exactly the live images' blobs and stay so
    // for more than one interval. A live blob missing at any point is a lost blob.
    let expected = blob_hexes(live.iter().map(|(_, _, image)| image));
    let exact = |files: &[String]| {
        (files.len() != expected.len()).then(|| {
            let extra: Vec<_> = files.iter().filter(|f| !expected.contains(*f)).collect();
            format!(
                "{} files, {} live blobs; extra: {extra:?}",
                files.len(),
                expected.len()
            )
        })
    };
    await_gc(&berth, &expected, exact);
    thread::sleep(Duration::from_millis(2500));
    let files = blob_files(&berth.data_dir);
    assert_eq!(
        exact(&files),
        None,
        "the blob files changed after GC finished"
    );
    for (repo, tag, image) in &live {
        assert_pulls(&client, &berth.url, repo, tag, image);
    }
    for (repo, _, image) in &deleted {
        assert_deleted(&client, &berth.url, repo, &image.digest);
    }
    berth.stop();
    assert_fsck_clean(&berth, "after GC finished");
    eprintln!(
        "F5: {} live images, {} blobs on disk; wall time {:?}",
        live.len(),
        expected.len(),
        wall.elapsed()
    );
}
