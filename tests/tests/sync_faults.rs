//! On-demand sync against a misbehaving upstream: CNCF Distribution behind
//! [`FaultyUpstream`], a proxy that corrupts, truncates, stalls or refuses on demand and counts
//! what reaches it. What a user relies on: a blob that does not verify is never handed over
//! complete and never stored; 5xx and 429 are retried within `maxRetries` (429 after its
//! `Retry-After`); a stalled upstream fails only the requests that wait on it, in about the
//! response-header timeout, while everything else is served; an upstream that is down leaves
//! the stored content served, tags included, without waiting on upstream.

use std::time::{Duration, Instant};

use berth_tests::api::{code_of, expect_error};
use berth_tests::faulty::{try_fetch_blob, wait_until, Fault, FaultyUpstream, ALWAYS};
use berth_tests::{
    fetch_blob, fetch_manifest, http, push_image, random_image, sha256_digest, Distribution,
    MANIFEST_ACCEPT,
};
use serde_json::json;

fn manifest_path(repo: &str, reference: &str) -> String {
    format!("/v2/{repo}/manifests/{reference}")
}

fn blob_path(repo: &str, digest: &str) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

/// The pull failed the way a client can see: a transport error or a 5xx, never a success.
#[track_caller]
fn assert_failed(what: &str, outcome: &Result<(u16, Vec<u8>), String>) {
    eprintln!(
        "OUTCOME {what}: {:?}",
        outcome.as_ref().map(|(s, b)| (s, b.len()))
    );
    if let Ok((status, body)) = outcome {
        assert!(
            *status >= 500,
            "{what}: the client got {status} with a complete {}-byte body",
            body.len()
        );
    }
}

/// A blob whose upstream body is bad (`fault`): every streamed GET, HEAD and Range GET fails
/// for the client and goes upstream again (nothing was stored); once upstream is healthy the
/// blob is fetched once, served byte-exact, and fsck is clean.
fn a_bad_blob_body_is_never_stored(fault: Fault) {
    let upstream = Distribution::start();
    let client = http();
    let image = random_image(1, 2 << 20);
    push_image(&client, &upstream.url, "library/bad", "v1", &image);
    let proxy = FaultyUpstream::start(&upstream.url);
    let mut berth = proxy.mirror(json!({}));
    let (status, _, _) = fetch_manifest(&client, &berth.url, "library/bad", "v1");
    assert_eq!(status, 200);
    let layer = sha256_digest(&image.layers[0]);
    let path = blob_path("library/bad", &layer);
    proxy.set(&path, fault.clone());
    let mut upstream_gets = 0;
    // Streamed to the client while stored: the client must not get the whole blob.
    for attempt in 1..=2 {
        let outcome = try_fetch_blob(&client, &berth.url, "library/bad", &layer, None);
        assert_failed(&format!("{fault:?}, GET #{attempt}"), &outcome);
        upstream_gets += 1;
        assert_eq!(
            proxy.count("GET", &path),
            upstream_gets,
            "each GET goes upstream again: nothing was stored"
        );
    }
    // Downloaded first, then served (HEAD, Range): a 5xx, so that the client retries.
    let head = client
        .head(format!("{}{path}", berth.url))
        .send()
        .expect("HEAD blob");
    assert!(
        head.status().is_server_error(),
        "{fault:?}: HEAD answered {}",
        head.status()
    );
    let ranged = try_fetch_blob(
        &client,
        &berth.url,
        "library/bad",
        &layer,
        Some("bytes=0-99"),
    );
    assert_failed(&format!("{fault:?}, Range GET"), &ranged);
    upstream_gets += 2;
    assert_eq!(proxy.count("GET", &path), upstream_gets, "{}", proxy.log());
    // Upstream is healthy again: one more fetch, then the store serves it.
    proxy.set(&path, Fault::None);
    for _ in 0..2 {
        let (status, body) = fetch_blob(&client, &berth.url, "library/bad", &layer);
        assert_eq!(status, 200);
        assert_eq!(
            sha256_digest(&body),
            layer,
            "byte-exact once upstream is good"
        );
    }
    assert_eq!(proxy.count("GET", &path), upstream_gets + 1);
    berth.stop();
    let (clean, report) = berth.fsck();
    assert!(clean, "{report}");
}

#[test]
fn a_corrupted_blob_fails_the_client_and_is_never_stored() {
    a_bad_blob_body_is_never_stored(Fault::CorruptBody);
}

#[test]
fn a_truncated_blob_fails_the_client_and_is_never_stored() {
    a_bad_blob_body_is_never_stored(Fault::TruncateBody);
}

#[test]
fn upstream_5xx_are_retried_up_to_max_retries() {
    let upstream = Distribution::start();
    let client = http();
    let flaky = random_image(1, 100_000);
    let down = random_image(1, 1000);
    push_image(&client, &upstream.url, "library/flaky", "v1", &flaky);
    push_image(&client, &upstream.url, "library/down", "v1", &down);
    let proxy = FaultyUpstream::start(&upstream.url);
    let berth = proxy.mirror(json!({"maxRetries": 3, "retryDelay": "100ms"}));

    // Two 500s, then the manifest: the client sees only the success.
    let path = manifest_path("library/flaky", "v1");
    proxy.set(
        &path,
        Fault::Status {
            status: 500,
            times: 2,
        },
    );
    let (status, _, body) = fetch_manifest(&client, &berth.url, "library/flaky", "v1");
    assert_eq!((status, body), (200, flaky.manifest.clone()));
    assert_eq!(proxy.count("GET", &path), 3, "{}", proxy.log());

    // The same for a blob (503 twice), streamed to the client after the retries.
    let layer = sha256_digest(&flaky.layers[0]);
    let path = blob_path("library/flaky", &layer);
    proxy.set(
        &path,
        Fault::Status {
            status: 503,
            times: 2,
        },
    );
    let (status, body) = fetch_blob(&client, &berth.url, "library/flaky", &layer);
    assert_eq!(status, 200);
    assert_eq!(sha256_digest(&body), layer);
    assert_eq!(proxy.count("GET", &path), 3, "{}", proxy.log());

    // More failures than retries: one try plus maxRetries, then a miss.
    let path = manifest_path("library/down", "v1");
    proxy.set(
        &path,
        Fault::Status {
            status: 500,
            times: 5,
        },
    );
    let response = client
        .get(format!("{}{path}", berth.url))
        .header("accept", MANIFEST_ACCEPT)
        .send()
        .expect("GET manifest");
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(proxy.count("GET", &path), 4, "{}", proxy.log());
    // A failed sync is not remembered as a miss: the next pull asks again (one more 500,
    // then the manifest).
    let (status, _, body) = fetch_manifest(&client, &berth.url, "library/down", "v1");
    assert_eq!((status, body), (200, down.manifest.clone()));
    assert_eq!(proxy.count("GET", &path), 6, "{}", proxy.log());
}

#[test]
fn a_429_is_retried_after_its_retry_after() {
    let upstream = Distribution::start();
    let client = http();
    let image = random_image(1, 1000);
    push_image(&client, &upstream.url, "library/busy", "v1", &image);
    let proxy = FaultyUpstream::start(&upstream.url);
    // retryDelay alone would retry after 100 ms: waiting 1 s is Retry-After's doing.
    let berth =
        proxy.mirror(json!({"maxRetries": 2, "retryDelay": "100ms", "maxRetryDelay": "5s"}));
    let path = manifest_path("library/busy", "v1");
    proxy.set(
        &path,
        Fault::Status429 {
            retry_after_secs: 1,
            times: 1,
        },
    );
    let started = Instant::now();
    let (status, _, body) = fetch_manifest(&client, &berth.url, "library/busy", "v1");
    let elapsed = started.elapsed();
    assert_eq!((status, body), (200, image.manifest.clone()));
    assert_eq!(proxy.count("GET", &path), 2, "{}", proxy.log());
    assert!(
        elapsed >= Duration::from_millis(950),
        "retried after {elapsed:?}, before Retry-After's 1 s"
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
fn a_stalled_upstream_fails_only_what_waits_on_it() {
    let upstream = Distribution::start();
    let client = http();
    let (stuck_v1, stuck_v2) = (random_image(1, 1000), random_image(1, 1000));
    let (fine, other) = (random_image(1, 100_000), random_image(2, 100_000));
    push_image(&client, &upstream.url, "library/stuck", "v1", &stuck_v1);
    push_image(&client, &upstream.url, "library/stuck", "v2", &stuck_v2);
    push_image(&client, &upstream.url, "library/fine", "v1", &fine);
    push_image(&client, &upstream.url, "library/other", "v1", &other);
    let proxy = FaultyUpstream::start(&upstream.url);
    let berth = proxy.mirror(json!({}));
    for repo in ["library/stuck", "library/fine"] {
        let (status, _, _) = fetch_manifest(&client, &berth.url, repo, "v1");
        assert_eq!(status, 200, "{repo}:v1 before the stall");
    }
    // A manifest and a blob of a stored manifest stall upstream (headers never come).
    let stalled_manifest = manifest_path("library/stuck", "v2");
    let fine_layer = sha256_digest(&fine.layers[0]);
    let stalled_blob = blob_path("library/fine", &fine_layer);
    proxy.set(&stalled_manifest, Fault::Stall);
    proxy.set(&stalled_blob, Fault::Stall);
    let url = berth.url.clone();
    let manifest_pull = std::thread::spawn(move || {
        let started = Instant::now();
        let response = http()
            .get(format!("{url}/v2/library/stuck/manifests/v2"))
            .header("accept", MANIFEST_ACCEPT)
            .send()
            .expect("GET manifest");
        let status = response.status().as_u16();
        let body = response.bytes().expect("manifest body").to_vec();
        (status, body, started.elapsed())
    });
    let (url, digest) = (berth.url.clone(), fine_layer.clone());
    let blob_pull = std::thread::spawn(move || {
        let started = Instant::now();
        let outcome = try_fetch_blob(&http(), &url, "library/fine", &digest, None);
        (outcome, started.elapsed())
    });
    wait_until(
        "both stalled requests to reach upstream",
        Duration::from_secs(10),
        || proxy.count("GET", &stalled_manifest) == 1 && proxy.count("GET", &stalled_blob) == 1,
    );

    // Meanwhile berth serves everything else: stored content, and cold content upstream has.
    let started = Instant::now();
    let (status, _, body) = fetch_manifest(&client, &berth.url, "library/stuck", "v1");
    assert_eq!((status, body), (200, stuck_v1.manifest.clone()));
    let config = sha256_digest(&fine.config);
    let (status, body) = fetch_blob(&client, &berth.url, "library/fine", &config);
    assert_eq!((status, body), (200, fine.config.clone()));
    let (status, _, body) = fetch_manifest(&client, &berth.url, "library/other", "v1");
    assert_eq!((status, body), (200, other.manifest.clone()));
    for digest in other.blob_digests() {
        let (status, body) = fetch_blob(&client, &berth.url, "library/other", &digest);
        assert_eq!(status, 200);
        assert_eq!(sha256_digest(&body), digest);
    }
    let others = started.elapsed();
    assert!(
        others < Duration::from_secs(10),
        "other pulls took {others:?} during the stall"
    );
    assert!(
        !manifest_pull.is_finished() && !blob_pull.is_finished(),
        "the stalled pulls are still waiting"
    );

    // The stalled requests fail after about the 30 s response-header timeout: the manifest
    // as a miss (as zot), the blob as a 5xx or an aborted connection.
    let (status, body, elapsed) = manifest_pull.join().expect("manifest puller");
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert_eq!(code_of(&body).as_deref(), Some("MANIFEST_UNKNOWN"));
    assert!(
        (Duration::from_secs(25)..Duration::from_secs(45)).contains(&elapsed),
        "stalled manifest answered after {elapsed:?}"
    );
    let (outcome, elapsed) = blob_pull.join().expect("blob puller");
    assert_failed("stalled blob", &outcome);
    assert!(
        (Duration::from_secs(25)..Duration::from_secs(45)).contains(&elapsed),
        "stalled blob answered after {elapsed:?}"
    );

    // Upstream answers again: both come through.
    proxy.set(&stalled_manifest, Fault::None);
    proxy.set(&stalled_blob, Fault::None);
    let (status, _, body) = fetch_manifest(&client, &berth.url, "library/stuck", "v2");
    assert_eq!((status, body), (200, stuck_v2.manifest.clone()));
    let (status, body) = fetch_blob(&client, &berth.url, "library/fine", &fine_layer);
    assert_eq!(status, 200);
    assert_eq!(sha256_digest(&body), fine_layer);
}

#[test]
fn a_down_upstream_leaves_cached_content_served() {
    let upstream = Distribution::start();
    let client = http();
    let image = random_image(2, 100_000);
    push_image(&client, &upstream.url, "library/cached", "v1", &image);
    let proxy = FaultyUpstream::start(&upstream.url);
    let mut berth = proxy.mirror(json!({"manifestCheckInterval": "1s"}));
    let (status, _, _) = fetch_manifest(&client, &berth.url, "library/cached", "v1");
    assert_eq!(status, 200);
    let blobs = image.blob_digests();
    // All but the last layer are stored before upstream goes down.
    let (stored, never_fetched) = blobs.split_at(blobs.len() - 1);
    for digest in stored {
        let (status, _) = fetch_blob(&client, &berth.url, "library/cached", digest);
        assert_eq!(status, 200);
    }

    proxy.set(
        "",
        Fault::Status {
            status: 503,
            times: ALWAYS,
        },
    );
    std::thread::sleep(Duration::from_millis(1200));
    let tag_path = manifest_path("library/cached", "v1");
    let checks_before = proxy.count("HEAD", &tag_path) + proxy.count("GET", &tag_path);
    // The tag is past its check interval: served from the store, rechecked in the background.
    let (status, digest, body) = fetch_manifest(&client, &berth.url, "library/cached", "v1");
    assert_eq!((status, body), (200, image.manifest.clone()));
    assert_eq!(digest.as_deref(), Some(image.digest.as_str()));
    wait_until(
        "the background revalidation",
        Duration::from_secs(10),
        || proxy.count("HEAD", &tag_path) + proxy.count("GET", &tag_path) > checks_before,
    );
    // The failed revalidation changed nothing.
    let (status, _, body) = fetch_manifest(&client, &berth.url, "library/cached", "v1");
    assert_eq!((status, body), (200, image.manifest.clone()));
    let (status, _, body) = fetch_manifest(&client, &berth.url, "library/cached", &image.digest);
    assert_eq!((status, body), (200, image.manifest.clone()));
    for digest in stored {
        let (status, body) = fetch_blob(&client, &berth.url, "library/cached", digest);
        assert_eq!(status, 200);
        assert_eq!(&sha256_digest(&body), digest);
        assert_eq!(proxy.count("GET", &blob_path("library/cached", digest)), 1);
    }
    // What was never fetched cannot be served: a 5xx for the blob a stored manifest names
    // (the client retries), a miss for an unknown tag.
    let outcome = try_fetch_blob(
        &client,
        &berth.url,
        "library/cached",
        &never_fetched[0],
        None,
    );
    assert_failed("blob never fetched, upstream down", &outcome);
    let missing = client
        .get(format!(
            "{}{}",
            berth.url,
            manifest_path("library/cached", "v2")
        ))
        .header("accept", MANIFEST_ACCEPT)
        .send()
        .expect("GET manifest");
    expect_error(missing, 404, "MANIFEST_UNKNOWN");

    // An upstream that hangs instead: a tag pull still does not wait on it.
    proxy.set("", Fault::Stall);
    std::thread::sleep(Duration::from_millis(1200));
    let started = Instant::now();
    let (status, _, body) = fetch_manifest(&client, &berth.url, "library/cached", "v1");
    assert_eq!((status, body), (200, image.manifest.clone()));
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "a cached tag took {elapsed:?} with upstream hanging"
    );
    drop(proxy);
    berth.stop();
    let (clean, report) = berth.fsck();
    assert!(clean, "{report}");
}

/// Upstream slots (`reqConcurrent`, default 3) are shared by every on-demand fetch: requests
/// stalled on one repository must not keep the others' cold pulls waiting for the 30 s
/// response-header timeout.
#[test]
fn stalled_requests_do_not_starve_other_repositories() {
    let upstream = Distribution::start();
    let client = http();
    let other = random_image(1, 1000);
    push_image(&client, &upstream.url, "library/other", "v1", &other);
    let proxy = FaultyUpstream::start(&upstream.url);
    let berth = proxy.mirror(json!({}));
    proxy.set("/v2/library/stuck", Fault::Stall);
    // As many stalled manifests as the default reqConcurrent: three clients asking for
    // three images that upstream hangs on.
    let stalled: Vec<_> = (0..3)
        .map(|i| {
            let url = berth.url.clone();
            std::thread::spawn(move || {
                fetch_manifest(&http(), &url, &format!("library/stuck{i}"), "v1").0
            })
        })
        .collect();
    wait_until(
        "three stalled requests upstream",
        Duration::from_secs(10),
        || proxy.count("GET", "/v2/library/stuck") == 3,
    );
    let started = Instant::now();
    let (status, _, body) = fetch_manifest(&client, &berth.url, "library/other", "v1");
    let elapsed = started.elapsed();
    assert_eq!((status, body), (200, other.manifest.clone()));
    for pull in stalled {
        assert_eq!(pull.join().expect("stalled puller"), 404);
    }
    assert!(
        elapsed < Duration::from_secs(10),
        "a cold pull of another repository waited {elapsed:?} behind stalled upstream requests"
    );
}

/// The proxy itself does what the tests above rely on (no test passes on a proxy that
/// forgot to misbehave).
#[test]
fn the_faulty_upstream_misbehaves_as_told() {
    let upstream = Distribution::start();
    let client = http();
    let image = random_image(1, 100_000);
    push_image(&client, &upstream.url, "library/p", "v1", &image);
    let proxy = FaultyUpstream::start(&upstream.url);
    let layer = sha256_digest(&image.layers[0]);
    let path = blob_path("library/p", &layer);
    let get = || try_fetch_blob(&client, &proxy.url, "library/p", &layer, None);
    let (status, body) = get().expect("clean pass-through");
    assert_eq!((status, sha256_digest(&body)), (200, layer.clone()));
    proxy.set(&path, Fault::CorruptBody);
    let (status, body) = get().expect("a corrupted body is complete");
    assert_eq!((status, body.len()), (200, image.layers[0].len()));
    assert_ne!(sha256_digest(&body), layer);
    proxy.set(&path, Fault::TruncateBody);
    assert!(get().is_err(), "a truncated body fails to read");
    let fault = Fault::Status429 {
        retry_after_secs: 7,
        times: 1,
    };
    proxy.set(&path, fault);
    let response = client
        .get(format!("{}{path}", proxy.url))
        .send()
        .expect("GET");
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(get().expect("429 used up").0, 200);
    let response = client
        .head(format!("{}{path}", proxy.url))
        .send()
        .expect("HEAD");
    assert_eq!(
        response.headers()["content-length"],
        &image.layers[0].len().to_string()
    );
    assert_eq!(proxy.count("GET", &path), 5);
    assert_eq!(proxy.count("HEAD", &path), 1);
}

/// `syncTimeout` bounds an on-demand manifest fetch: a stalled upstream costs the client that
/// long, not the 30 s header timeout, and the miss is the ordinary 404.
#[test]
fn sync_timeout_bounds_a_stalled_manifest_fetch() {
    let upstream = Distribution::start();
    let proxy = FaultyUpstream::start(&upstream.url);
    let berth = proxy.mirror(json!({"syncTimeout": "2s"}));
    proxy.set(&manifest_path("library/slow", "v1"), Fault::Stall);
    let client = http();
    let started = Instant::now();
    let response = client
        .get(format!("{}/v2/library/slow/manifests/v1", berth.url))
        .send()
        .expect("GET");
    let waited = started.elapsed();
    assert_eq!(response.status().as_u16(), 404);
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
}
