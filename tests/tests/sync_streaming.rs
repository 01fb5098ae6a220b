//! On-demand blob downloads as their clients see them, against CNCF Distribution behind
//! [`FaultyUpstream`] holding half of a blob's body back (`Fault::HoldBody`), so a download is
//! caught half-way. What a user relies on: a client that asks while a blob is coming streams
//! it from the download in progress (it is not kept waiting for the end, and upstream gets one
//! request); a client that goes away does not cancel the download, which still lands in the
//! store; a daemon killed mid-download restarts clean and fetches the blob again whole.

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use berth_tests::faulty::{wait_until, Fault, FaultyUpstream};
use berth_tests::{
    fetch_blob, fetch_manifest, http, push_image, random_image, sha256_digest, Berth, Distribution,
};
use serde_json::json;

const LAYER_BYTES: usize = 8 << 20;
/// Read by each client before upstream's second half is let go: more than one read of
/// berth's and less than the half upstream sent.
const EARLY_BYTES: usize = 1 << 20;

/// A mirror whose upstream (Distribution behind the proxy) holds back the second half of the
/// one layer of image `<repo>:v1`; the manifest is already pulled through.
struct Held {
    _upstream: Distribution,
    proxy: FaultyUpstream,
    berth: Berth,
    /// The layer's digest and its blob path.
    layer: String,
    path: String,
}

impl Held {
    fn start(repo: &str) -> Held {
        let upstream = Distribution::start();
        let client = http();
        let image = random_image(1, LAYER_BYTES);
        push_image(&client, &upstream.url, repo, "v1", &image);
        let proxy = FaultyUpstream::start(&upstream.url);
        let berth = proxy.mirror(json!({}));
        let (status, _, _) = fetch_manifest(&client, &berth.url, repo, "v1");
        assert_eq!(status, 200);
        let layer = sha256_digest(&image.layers[0]);
        let path = format!("/v2/{repo}/blobs/{layer}");
        proxy.set(&path, Fault::HoldBody);
        Held {
            _upstream: upstream,
            proxy,
            berth,
            layer,
            path,
        }
    }
}

/// The blob of `held` is stored: served byte-exact from the store with still `upstream_gets`
/// upstream requests in all; then the daemon stops and fsck is clean.
fn assert_stored(held: Held, repo: &str, upstream_gets: usize) {
    let Held {
        _upstream,
        proxy,
        mut berth,
        layer,
        path,
    } = held;
    let (status, body) = fetch_blob(&http(), &berth.url, repo, &layer);
    assert_eq!((status, sha256_digest(&body)), (200, layer.clone()));
    assert_eq!(proxy.count("GET", &path), upstream_gets, "{}", proxy.log());
    berth.stop();
    let (clean, report) = berth.fsck();
    assert!(clean, "{report}");
}

/// A blob GET on its own thread: it reads `EARLY_BYTES`, says so on `early`, then reads the
/// rest and returns the whole body (or why it failed).
fn start_pull(
    url: String,
    path: String,
    early: mpsc::Sender<()>,
) -> std::thread::JoinHandle<Result<Vec<u8>, String>> {
    std::thread::spawn(move || {
        let mut response = http()
            .get(format!("{url}{path}"))
            .send()
            .map_err(|error| format!("send: {error}"))?;
        if response.status() != 200 {
            return Err(format!("status {}", response.status()));
        }
        let mut body = vec![0u8; EARLY_BYTES];
        response
            .read_exact(&mut body)
            .map_err(|error| format!("first bytes: {error}"))?;
        let _ = early.send(());
        response
            .read_to_end(&mut body)
            .map_err(|error| format!("rest: {error}"))?;
        Ok(body)
    })
}

#[test]
fn later_clients_stream_from_the_download_in_progress() {
    let held = Held::start("library/big");
    // While upstream holds the second half back, three clients one after the other each get
    // their first megabyte: none waits for the download to end.
    let mut pulls = Vec::new();
    for client_number in 1..=3 {
        let (early, got_early) = mpsc::channel();
        pulls.push(start_pull(held.berth.url.clone(), held.path.clone(), early));
        got_early
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!("client {client_number} got no byte while the download was under way")
            });
    }
    assert_eq!(
        held.proxy.count("GET", &held.path),
        1,
        "{}",
        held.proxy.log()
    );
    held.proxy.release();
    for (number, pull) in pulls.into_iter().enumerate() {
        let body = pull
            .join()
            .expect("pull thread")
            .unwrap_or_else(|error| panic!("client {}: {error}", number + 1));
        assert_eq!(
            sha256_digest(&body),
            held.layer,
            "client {} byte-exact",
            number + 1
        );
    }
    assert_stored(held, "library/big", 1);
}

#[test]
fn a_client_that_leaves_does_not_cancel_the_download() {
    let held = Held::start("library/left");
    let url = format!("{}{}", held.berth.url, held.path);
    // The only client reads a little, then hangs up.
    let mut response = http().get(&url).send().expect("GET blob");
    let mut first = vec![0u8; EARLY_BYTES];
    response.read_exact(&mut first).expect("first bytes");
    drop(response);
    held.proxy.release();
    // The download goes on without it and is committed: a HEAD (which waits for a download
    // in progress) finds the blob, and no second upstream request was needed.
    wait_until(
        "the blob to be stored",
        Duration::from_secs(30),
        || matches!(http().head(&url).send(), Ok(head) if head.status() == 200),
    );
    assert_stored(held, "library/left", 1);
}

#[test]
fn a_daemon_killed_mid_download_restarts_clean_and_fetches_again() {
    let mut held = Held::start("library/killed");
    let (early, got_early) = mpsc::channel();
    let pull = start_pull(held.berth.url.clone(), held.path.clone(), early);
    got_early
        .recv_timeout(Duration::from_secs(30))
        .expect("first bytes while the download is under way");

    held.berth.kill();
    assert!(
        pull.join().expect("pull thread").is_err(),
        "the client of a killed daemon must not get a complete body"
    );
    let (clean, report) = held.berth.fsck();
    assert!(clean, "{report}");
    let uploads = held.berth.data_dir.join("uploads");
    held.berth.restart();
    // The half-written staged file is gone after the restart.
    let staged: Vec<_> = std::fs::read_dir(&uploads)
        .expect("uploads dir")
        .map(|entry| entry.expect("dir entry").file_name())
        .collect();
    assert!(staged.is_empty(), "staged files left behind: {staged:?}");
    held.proxy.set(&held.path, Fault::None);
    assert_stored(held, "library/killed", 2);
}
