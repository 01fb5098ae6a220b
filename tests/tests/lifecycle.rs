//! The daemon's lifecycle as an operator sees it: SIGTERM drains in-flight requests before
//! exit and loses nothing acknowledged, also under load; HTTP/2 over cleartext (h2c) serves
//! the same content; `berth verify` reports every config problem with its key path.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::Duration,
};

use berth_tests::api::{get_base, open_raw_patch, path_of, start_upload};
use berth_tests::{berth_bin, http, push_image, random_bytes, random_image, sha256_digest, Berth};
use sha2::Digest as _;

/// A PATCH that is half sent when SIGTERM arrives still completes (202), the daemon exits 0
/// after it, and the session keeps every byte across the restart.
#[test]
fn sigterm_drains_an_in_flight_upload() {
    let mut berth = Berth::start();
    let client = http();
    let location = path_of(&start_upload(&client, &berth.url, "drain/app")).to_owned();
    let chunk = random_bytes(1 << 20);
    let mut stream = open_raw_patch(&berth.addr, &location, chunk.len());
    stream
        .write_all(&chunk[..chunk.len() / 2])
        .expect("write first half");
    std::thread::sleep(Duration::from_millis(200));

    let stopper = std::thread::spawn(move || {
        berth.stop();
        berth
    });
    std::thread::sleep(Duration::from_millis(300));
    stream
        .write_all(&chunk[chunk.len() / 2..])
        .expect("write second half during drain");
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).expect("read response");
        assert!(n > 0, "connection closed before the response");
        response.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.starts_with("HTTP/1.1 202"),
        "in-flight PATCH got: {text}"
    );
    drop(stream);
    let mut berth = stopper.join().expect("stop thread");

    berth.restart();
    let status = client
        .get(format!("{}{location}", berth.url))
        .send()
        .expect("GET status");
    assert_eq!(status.status(), 204);
    assert_eq!(
        status.headers()["range"],
        format!("0-{}", chunk.len() - 1).as_str()
    );
    let digest = sha256_digest(&chunk);
    let finished = client
        .put(format!("{}{location}?digest={digest}", berth.url))
        .send()
        .expect("PUT finish");
    assert_eq!(finished.status(), 201, "finishing the recovered session");
}

fn curl_h2(url: &str, out: &std::path::Path) -> String {
    let output = Command::new("curl")
        .args(["--http2-prior-knowledge", "-sS", "-o"])
        .arg(out)
        .args(["-w", "%{http_version} %{http_code}", "-H"])
        .arg(format!("Accept: {}", berth_tests::MANIFEST_ACCEPT))
        .arg(url)
        .output()
        .expect("run curl");
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// h2c with prior knowledge (what gRPC-style and some CI clients use) returns the same bytes
/// as HTTP/1.1.
#[test]
fn h2c_serves_manifests_and_blobs() {
    if !berth_tests::require_tool("curl") {
        return;
    }
    let berth = Berth::start();
    let client = http();
    let image = random_image(1, 300_000);
    push_image(&client, &berth.url, "h2/app", "v1", &image);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("body");

    let result = curl_h2(&format!("{}/v2/h2/app/manifests/v1", berth.url), &out);
    assert_eq!(result, "2 200");
    assert_eq!(std::fs::read(&out).expect("manifest body"), image.manifest);

    let layer_digest = sha256_digest(&image.layers[0]);
    let result = curl_h2(
        &format!("{}/v2/h2/app/blobs/{layer_digest}", berth.url),
        &out,
    );
    assert_eq!(result, "2 200");
    let body = std::fs::read(&out).expect("blob body");
    assert_eq!(
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&body))),
        layer_digest
    );
}

/// `berth verify` lists every problem with its key path and exits 2; a good config exits 0.
#[test]
fn verify_reports_all_errors_with_key_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"distSpecVersion":"1.1.1","storage":{"rootDirectory":""},
            "http":{"address":"127.0.0.1","port":"not-a-port"}}"#,
    )
    .expect("write config");
    let output = Command::new(berth_bin())
        .arg("verify")
        .arg(&bad)
        .output()
        .expect("run verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("http.port"), "{text}");
    assert!(text.contains("storage.rootDirectory"), "{text}");

    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"distSpecVersion":"1.1.1","storage":{"rootDirectory":"/tmp/x"},
            "http":{"address":"127.0.0.1","port":"5000"}}"#,
    )
    .expect("write config");
    let output = Command::new(berth_bin())
        .arg("verify")
        .arg(&good)
        .output()
        .expect("run verify");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A keep-alive connection survives an idle gap longer than the head timeout (up to
/// `idleTimeout`, as zot), is closed after `idleTimeout`, and a request head that trickles in
/// for longer than `readHeaderTimeout` is cut off (slowloris).
#[test]
fn keep_alive_idles_up_to_idle_timeout_and_slow_heads_are_cut() {
    let berth = Berth::start_with(serde_json::json!({
        "http": { "readHeaderTimeout": "1s", "idleTimeout": "4s" }
    }));
    let mut stream = TcpStream::connect(&berth.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(get_base(&mut stream).as_deref(), Some("HTTP/1.1 200 OK"));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        get_base(&mut stream).as_deref(),
        Some("HTTP/1.1 200 OK"),
        "an idle gap longer than readHeaderTimeout but shorter than idleTimeout"
    );
    std::thread::sleep(Duration::from_millis(5500));
    assert_eq!(
        get_base(&mut stream),
        None,
        "idle past idleTimeout must be closed"
    );

    let mut slow = TcpStream::connect(&berth.addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    slow.write_all(b"GET /v2/ HTTP/1.1\r\n")
        .expect("first bytes of a head");
    std::thread::sleep(Duration::from_millis(2500));
    let _ = slow.write_all(b"Host: x\r\n\r\n");
    let mut buf = [0u8; 256];
    let answered =
        matches!(slow.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200"));
    assert!(
        !answered,
        "a head that took longer than readHeaderTimeout was served"
    );
}

/// Reliability plan F15: SIGTERM under load. Eight clients push blobs without pause; at
/// SIGTERM `/readyz` turns 503 first, berth drains and exits 0, and after a restart every
/// blob that was acknowledged (201) is there with its size, and fsck is clean.
#[test]
fn sigterm_under_load_loses_nothing_acknowledged() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let mut berth = Berth::start_with(serde_json::json!({"http": {"shutdownDelay": "1s"}}));
    let url = berth.url.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let pushers: Vec<_> = (0..8)
        .map(|client_index| {
            let (url, stop, acknowledged) = (url.clone(), stop.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                let client = http();
                let repo = format!("load/client{client_index}");
                while !stop.load(Ordering::Relaxed) {
                    let blob = random_bytes(64 * 1024);
                    // A push cut by the shutdown fails; only a 201 is a promise.
                    if let Ok(digest) =
                        berth_tests::try_push_blob(&client, &url, &repo, &blob, false)
                    {
                        let entry = (repo.clone(), digest, blob.len());
                        acknowledged
                            .lock()
                            .expect("no panics while held")
                            .push(entry);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    berth.signal(libc::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ready = http().get(format!("{url}/readyz")).send();
        if ready.is_ok_and(|response| response.status() == 503) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never turned 503"
        );
    }
    // A second SIGTERM ends the delay: stop accepting and drain now, under load; `stop`
    // asserts exit status 0.
    berth.stop();
    stop.store(true, Ordering::Relaxed);
    for pusher in pushers {
        pusher.join().expect("pusher thread");
    }
    let acknowledged = acknowledged.lock().expect("threads are done").clone();
    assert!(
        acknowledged.len() >= 8,
        "too little load: {} pushes",
        acknowledged.len()
    );

    berth.restart();
    let client = http();
    for (repo, digest, size) in &acknowledged {
        let head = client
            .head(format!("{}/v2/{repo}/blobs/{digest}", berth.url))
            .send()
            .expect("HEAD blob");
        assert_eq!(
            head.status(),
            200,
            "acknowledged {digest} in {repo} is gone"
        );
        let length = head.headers()["content-length"].to_str().expect("ascii");
        assert_eq!(length, size.to_string(), "{digest} in {repo}");
    }
    let (clean, report) = berth.fsck();
    assert!(clean, "fsck after SIGTERM under load: {report}");
}
