//! Crash test: several clients push while berth is SIGKILLed at random moments and
//! restarted; afterwards `berth fsck` is clean and every manifest whose PUT was answered 201
//! is served byte-identical by tag, with every blob intact.
//!
//! Rules: a client retries a step only after a transport error (the daemon died under it) and
//! always restarts a blob upload from POST, so a well-behaved registry never answers anything
//! but the expected 202/201. Any other status is a violation and fails the test: after a
//! restart, a 400 MANIFEST_BLOB_UNKNOWN for a blob acknowledged with 201 means a lost write.
//! Bounded: kills happen within the first ~30 s; the whole test stays around a minute.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use berth_tests::{
    fetch_blob, fetch_manifest, http, random_image, try_push_blob, try_push_manifest, Berth,
    PushError,
};
use rand::Rng as _;

const CLIENTS: usize = 4;
/// Give up on a step if the daemon stays unreachable this long (it restarts in well under).
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(40);

struct Acknowledged {
    repo: String,
    tag: String,
    digest: String,
    manifest: Vec<u8>,
    blobs: Vec<String>,
}

#[derive(Default)]
struct Shared {
    url: RwLock<String>,
    stop: AtomicBool,
    acknowledged: Mutex<Vec<Acknowledged>>,
    violations: Mutex<Vec<String>>,
    transport_errors: AtomicUsize,
}

/// Runs `step` against the current URL until it succeeds, retrying transport errors only.
/// `None` if stopped or a violation was recorded.
fn retry<T>(shared: &Shared, mut step: impl FnMut(&str) -> Result<T, PushError>) -> Option<T> {
    let started = Instant::now();
    loop {
        let url = shared.url.read().expect("url lock").clone();
        match step(&url) {
            Ok(value) => return Some(value),
            Err(PushError::Transport(error)) => {
                shared.transport_errors.fetch_add(1, Ordering::Relaxed);
                if shared.stop.load(Ordering::Relaxed) {
                    return None;
                }
                if started.elapsed() > UNREACHABLE_LIMIT {
                    shared
                        .violations
                        .lock()
                        .expect("violations lock")
                        .push(format!("unreachable for {UNREACHABLE_LIMIT:?}: {error}"));
                    return None;
                }
                thread::sleep(Duration::from_millis(20));
            }
            Err(status) => {
                shared
                    .violations
                    .lock()
                    .expect("violations lock")
                    .push(status.to_string());
                return None;
            }
        }
    }
}

fn client_loop(shared: &Shared, id: usize) {
    let client = http();
    let mut rng = rand::rng();
    for n in 0.. {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        // Half the clients share one repository, to race commits on its lock.
        let repo = if id.is_multiple_of(2) {
            "crash/shared".to_string()
        } else {
            format!("crash/c{id}")
        };
        let tag = format!("c{id}-n{n}");
        let image = random_image(rng.random_range(1..=3), rng.random_range(1..=16 * 1024));
        let mut blobs = Vec::new();
        for blob in std::iter::once(&image.config).chain(&image.layers) {
            let chunked = rng.random_bool(0.3);
            let Some(digest) = retry(shared, |url| {
                try_push_blob(&client, url, &repo, blob, chunked)
            }) else {
                return;
            };
            blobs.push(digest);
        }
        if retry(shared, |url| {
            try_push_manifest(&client, url, &repo, &tag, &image.manifest)
        })
        .is_none()
        {
            return;
        }
        shared
            .acknowledged
            .lock()
            .expect("acknowledged lock")
            .push(Acknowledged {
                repo,
                tag,
                digest: image.digest.clone(),
                manifest: image.manifest.clone(),
                blobs,
            });
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let mut berth = Berth::start();
    let shared = Arc::new(Shared::default());
    *shared.url.write().expect("url lock") = berth.url.clone();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || client_loop(&shared, id))
        })
        .collect();

    let mut rng = rand::rng();
    let kills = rng.random_range(3..=5);
    let mut acknowledged_before_kill = Vec::new();
    for _ in 0..kills {
        thread::sleep(Duration::from_millis(rng.random_range(1_000..6_000)));
        acknowledged_before_kill.push(shared.acknowledged.lock().expect("lock").len());
        berth.kill();
        berth.restart();
        *shared.url.write().expect("url lock") = berth.url.clone();
    }
    // Let the clients finish against a live daemon, then stop them.
    thread::sleep(Duration::from_secs(2));
    shared.stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread panicked");
    }

    let violations = shared.violations.lock().expect("lock").clone();
    assert!(
        violations.is_empty(),
        "unexpected responses:\n{}",
        violations.join("\n")
    );
    let acknowledged = shared.acknowledged.lock().expect("lock");
    eprintln!(
        "crash test: {kills} kills, {} acknowledged manifests (before each kill: {:?}), {} \
         transport errors retried",
        acknowledged.len(),
        acknowledged_before_kill,
        shared.transport_errors.load(Ordering::Relaxed),
    );
    assert!(
        acknowledged.len() > kills,
        "too few pushes completed to mean anything"
    );

    // One more crash with no client running: recovery must not depend on traffic.
    berth.kill();
    berth.restart();
    let (clean, report) = berth.fsck();
    assert!(
        clean,
        "berth fsck (daemon running) found problems:\n{report}"
    );

    let client = http();
    for ack in acknowledged.iter() {
        let (status, digest, body) = fetch_manifest(&client, &berth.url, &ack.repo, &ack.tag);
        assert_eq!(status, 200, "acknowledged {}:{} is gone", ack.repo, ack.tag);
        assert_eq!(digest.as_deref(), Some(ack.digest.as_str()));
        assert!(
            body == ack.manifest,
            "{}:{} served different bytes",
            ack.repo,
            ack.tag
        );
        for blob in &ack.blobs {
            let (status, bytes) = fetch_blob(&client, &berth.url, &ack.repo, blob);
            assert_eq!(
                status, 200,
                "blob {blob} of {}:{} is gone",
                ack.repo, ack.tag
            );
            assert_eq!(
                &berth_tests::sha256_digest(&bytes),
                blob,
                "blob {blob} corrupted"
            );
        }
    }

    berth.kill();
    let (clean, report) = berth.fsck();
    assert!(
        clean,
        "berth fsck (daemon stopped) found problems:\n{report}"
    );
}

/// The fsck verdict the crash test relies on has teeth: a damaged blob file is reported.
#[test]
fn fsck_reports_a_damaged_blob() {
    let mut berth = Berth::start();
    let client = http();
    let image = random_image(2, 4096);
    berth_tests::push_image(&client, &berth.url, "fsck/app", "v1", &image);
    berth.stop();
    let (clean, report) = berth.fsck();
    assert!(clean, "fresh registry is not clean:\n{report}");

    let layer_hex = berth_tests::sha256_digest(&image.layers[1]).replace("sha256:", "");
    let mut files = Vec::new();
    let mut stack = vec![berth.data_dir.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read data dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy() == layer_hex)
            {
                files.push(path);
            }
        }
    }
    assert_eq!(
        files.len(),
        1,
        "exactly one stored file for the layer: {files:?}"
    );
    let mut damaged = std::fs::read(&files[0]).expect("read blob file");
    damaged[100] ^= 0xff;
    std::fs::write(&files[0], damaged).expect("write blob file");

    let (clean, report) = berth.fsck();
    assert!(!clean, "fsck missed a corrupted layer:\n{report}");
    assert!(
        report.contains(&layer_hex),
        "fsck report does not name the blob:\n{report}"
    );
}
