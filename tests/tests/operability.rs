//! berth as an operator runs it: the health probes, the SIGTERM drain with
//! `http.shutdownDelay` (`/readyz` turns 503 while everything else keeps serving), and SIGHUP
//! reloads (log level and metrics applied live; an invalid file changes nothing; settings that
//! need a restart are named and not applied). The request logs are in `operability_logs.rs`.
//!
//! Logs are written by a background thread, so every log assertion polls the file with a
//! bounded wait ([`wait_for_log`]) instead of reading it once.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use berth_tests::api::{get_base, open_raw_patch, path_of, start_upload};
use berth_tests::{http, merge_patch, random_bytes, sha256_digest, wait_for, Berth};
use serde_json::{json, Value};

const RELOADED: &str = "SIGHUP: config reloaded";
const INVALID: &str = "SIGHUP: the config is invalid";

/// Waits until the daemon's log satisfies `done`, returning it.
fn wait_for_log(berth: &Berth, what: &str, done: impl Fn(&str) -> bool) -> String {
    wait_for(what, || berth.log(), done)
}

fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|line| line.contains(needle)).collect()
}

/// Status of `method url` on a fresh client (so a fresh connection).
fn status(method: reqwest::Method, url: &str) -> u16 {
    http()
        .request(method, url)
        .send()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .status()
        .as_u16()
}

fn get(url: &str) -> u16 {
    status(reqwest::Method::GET, url)
}

/// Applies `patch` to the daemon's config file (read back from disk, so earlier rewrites stay).
fn rewrite_config(berth: &Berth, patch: &Value) {
    let text = std::fs::read(&berth.config_path).expect("read config");
    let mut config: Value = serde_json::from_slice(&text).expect("config is JSON");
    merge_patch(&mut config, patch);
    std::fs::write(
        &berth.config_path,
        serde_json::to_vec_pretty(&config).expect("config serializes"),
    )
    .expect("write config");
}

/// Sends SIGHUP and waits for the next reload line (`needle` lines counted before the signal),
/// returning that line.
fn sighup(berth: &Berth, needle: &str) -> String {
    let before = lines_with(&berth.log(), needle).len();
    berth.signal(libc::SIGHUP);
    let log = wait_for_log(
        berth,
        &format!("reload line #{} `{needle}`", before + 1),
        |log| lines_with(log, needle).len() > before,
    );
    lines_with(&log, needle)[before].to_owned()
}

/// Every probe answers 200 to GET and HEAD with no credentials; other methods are not probes.
#[test]
fn probes_answer_get_and_head_without_auth() {
    let berth = Berth::start();
    for probe in ["/livez", "/readyz", "/startupz"] {
        let url = format!("{}{probe}", berth.url);
        let response = http().get(&url).send().expect("GET probe");
        assert_eq!(response.status(), 200, "GET {probe}");
        assert_eq!(response.text().expect("probe body"), "ok\n", "GET {probe}");
        let response = http().head(&url).send().expect("HEAD probe");
        assert_eq!(response.status(), 200, "HEAD {probe}");
        assert_eq!(
            response.bytes().expect("HEAD body").len(),
            0,
            "HEAD {probe}"
        );
    }
    assert_eq!(
        status(reqwest::Method::POST, &format!("{}/livez", berth.url)),
        404,
        "POST /livez is not a probe"
    );
    assert_eq!(
        status(reqwest::Method::DELETE, &format!("{}/readyz", berth.url)),
        404,
        "DELETE /readyz is not a probe"
    );
}

/// Reads one HTTP/1.1 response head from `stream` and returns it.
fn read_head(stream: &mut TcpStream) -> String {
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).expect("read response");
        assert!(n > 0, "connection closed before the response");
        response.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&response).into_owned()
}

/// With `shutdownDelay: 3s`, SIGTERM turns `/readyz` to 503 while `/livez` and the API keep
/// answering on new connections; a PATCH streaming across the whole delay still completes,
/// the daemon exits 0 no sooner than the delay, and the bytes are there after a restart.
#[test]
fn sigterm_turns_readyz_503_and_keeps_serving_for_the_shutdown_delay() {
    const DELAY: Duration = Duration::from_secs(3);
    let mut berth = Berth::start_with(json!({"http": {"shutdownDelay": "3s"}}));
    let url = berth.url.clone();
    assert_eq!(get(&format!("{url}/readyz")), 200, "ready before SIGTERM");
    let location = path_of(&start_upload(&http(), &url, "drain/delay")).to_owned();
    let chunk = random_bytes(1 << 20);
    let mut stream = open_raw_patch(&berth.addr, &location, chunk.len());
    let quarter = chunk.len() / 4;
    stream.write_all(&chunk[..quarter]).expect("first quarter");
    std::thread::sleep(Duration::from_millis(200));

    let sigterm = Instant::now();
    let stopper = std::thread::spawn(move || {
        berth.stop();
        (berth, sigterm.elapsed())
    });

    // Within the delay: not ready, but alive and serving new connections.
    let deadline = sigterm + Duration::from_secs(2);
    while get(&format!("{url}/readyz")) != 503 {
        assert!(Instant::now() < deadline, "/readyz never turned 503");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(&format!("{url}/livez")), 200, "/livez during the delay");
    assert_eq!(get(&format!("{url}/v2/")), 200, "GET /v2/ during the delay");
    stream
        .write_all(&chunk[quarter..2 * quarter])
        .expect("second quarter during the delay");
    assert_eq!(
        get(&format!("{url}/readyz")),
        503,
        "/readyz stays 503 during the delay"
    );
    assert!(
        sigterm.elapsed() < DELAY,
        "the checks above must run within the delay (took {:?})",
        sigterm.elapsed()
    );

    // After the delay: the in-flight PATCH still finishes.
    std::thread::sleep((sigterm + DELAY + Duration::from_millis(500)) - Instant::now());
    stream
        .write_all(&chunk[2 * quarter..])
        .expect("rest of the body after the delay");
    let response = read_head(&mut stream);
    assert!(
        response.starts_with("HTTP/1.1 202"),
        "in-flight PATCH got: {response}"
    );
    drop(stream);
    let (mut berth, took) = stopper.join().expect("stop thread");
    assert!(
        took >= DELAY,
        "berth exited {took:?} after SIGTERM, before the {DELAY:?} shutdownDelay"
    );
    let (clean, report) = berth.fsck();
    assert!(clean, "fsck after the drain: {report}");

    berth.restart();
    let client = http();
    let digest = sha256_digest(&chunk);
    let finished = client
        .put(format!("{}{location}?digest={digest}", berth.url))
        .send()
        .expect("PUT finish");
    assert_eq!(finished.status(), 201, "finishing the drained session");
    let blob = client
        .get(format!("{}/v2/drain/delay/blobs/{digest}", berth.url))
        .send()
        .expect("GET blob");
    assert_eq!(blob.status(), 200);
    assert_eq!(blob.bytes().expect("blob body").as_ref(), chunk.as_slice());
    berth.stop();
    let (clean, report) = berth.fsck();
    assert!(clean, "fsck after the restart: {report}");
}

/// SIGHUP applies a new `log.level`: a refused request logs its debug line only after it.
#[test]
fn sighup_applies_the_log_level() {
    let berth = Berth::start_with(json!({
        "log": {"level": "info"},
        "extensions": {"metrics": {"enable": true}},
    }));
    let missing = |repo: &str| format!("{}/v2/{repo}/manifests/latest", berth.url);
    assert_eq!(get(&missing("level/before")), 404);
    let log = wait_for_log(&berth, "the access line of the first 404", |log| {
        log.contains("path=/v2/level/before/manifests/latest")
    });
    assert!(
        lines_with(&log, "request refused").is_empty(),
        "a debug line at level info:\n{log}"
    );

    rewrite_config(&berth, &json!({"log": {"level": "debug"}}));
    let line = sighup(&berth, RELOADED);
    assert!(
        line.contains(r#"applied=["log.level"]"#),
        "log.level not applied: {line}"
    );
    assert!(line.contains("needs_restart=[]"), "{line}");

    assert_eq!(get(&missing("level/after")), 404);
    let log = wait_for_log(&berth, "the debug line of the second 404", |log| {
        !lines_with(log, "request refused").is_empty()
    });
    let refused = lines_with(&log, "request refused");
    assert_eq!(refused.len(), 1, "one refused request since debug:\n{log}");
    assert!(refused[0].contains("DEBUG"), "{}", refused[0]);
}

/// SIGHUP moves the metrics endpoint to its new path, then removes it when disabled.
#[test]
fn sighup_moves_and_disables_the_metrics_endpoint() {
    let berth = Berth::start_with(json!({"extensions": {"metrics": {"enable": true}}}));
    let default_path = format!("{}/metrics", berth.url);
    let internal = format!("{}/internal/metrics", berth.url);
    assert_eq!(get(&default_path), 200);
    assert_eq!(get(&internal), 404);

    rewrite_config(
        &berth,
        &json!({"extensions": {"metrics": {"prometheus": {"path": "/internal/metrics"}}}}),
    );
    let line = sighup(&berth, RELOADED);
    assert!(line.contains(r#"applied=["extensions"]"#), "{line}");
    assert_eq!(get(&default_path), 404, "old path after the move");
    assert_eq!(get(&internal), 200, "new path after the move");

    rewrite_config(
        &berth,
        &json!({"extensions": {"metrics": {"enable": false}}}),
    );
    let line = sighup(&berth, RELOADED);
    assert!(line.contains(r#"applied=["extensions"]"#), "{line}");
    assert_eq!(get(&default_path), 404, "disabled: default path");
    assert_eq!(get(&internal), 404, "disabled: configured path");
    assert_eq!(get(&format!("{}/v2/", berth.url)), 200);
}

/// An invalid config on SIGHUP (a bad value, then broken JSON) is logged and changes nothing:
/// same port, same metrics path; restoring the original file then reloads as "no change".
#[test]
fn sighup_with_an_invalid_config_keeps_the_running_one() {
    let berth = Berth::start_with(json!({
        "extensions": {"metrics": {"prometheus": {"path": "/internal/metrics"}}},
    }));
    let original = std::fs::read(&berth.config_path).expect("read config");
    let serving = |when: &str| {
        assert_eq!(get(&format!("{}/v2/", berth.url)), 200, "{when}: /v2/");
        assert_eq!(
            get(&format!("{}/internal/metrics", berth.url)),
            200,
            "{when}: metrics path"
        );
        assert_eq!(get(&format!("{}/metrics", berth.url)), 404, "{when}");
    };
    serving("before");

    rewrite_config(
        &berth,
        &json!({
            "http": {"port": "not-a-port"},
            "extensions": {"metrics": {"prometheus": {"path": "/metrics"}}},
        }),
    );
    let line = sighup(&berth, INVALID);
    assert!(line.contains("http.port"), "the bad key is named: {line}");
    serving("after a bad value");

    std::fs::write(&berth.config_path, b"{\"storage\": {").expect("write broken JSON");
    sighup(&berth, INVALID);
    serving("after broken JSON");
    assert!(
        lines_with(&berth.log(), RELOADED).is_empty(),
        "an invalid file must not reload:\n{}",
        berth.log()
    );

    std::fs::write(&berth.config_path, &original).expect("restore config");
    let line = sighup(&berth, RELOADED);
    assert!(
        line.contains("applied=[]") && line.contains("needs_restart=[]"),
        "the running config must still be the original one: {line}"
    );
    serving("after restoring");
}

/// Changes that need a restart (`http`, `storage`, the log format) are named in
/// `needs_restart` and not applied: the old idle timeout still closes connections, the log
/// stays text, and berth keeps serving on the same address.
#[test]
fn sighup_names_changes_that_need_a_restart_and_does_not_apply_them() {
    let berth = Berth::start_with(json!({"http": {"idleTimeout": "2s"}}));
    rewrite_config(
        &berth,
        &json!({
            "http": {"idleTimeout": "120s"},
            "storage": {"commit": false},
            "log": {"format": "json"},
        }),
    );
    let line = sighup(&berth, RELOADED);
    assert!(line.contains("applied=[]"), "{line}");
    for key in ["\"storage\"", "\"http\"", "\"log.format/output/audit\""] {
        let named = line
            .split_once("needs_restart=")
            .is_some_and(|(_, list)| list.contains(key));
        assert!(named, "{key} missing from needs_restart: {line}");
    }
    assert!(
        !line.starts_with('{'),
        "the log format changed live: {line}"
    );

    let mut stream = TcpStream::connect(&berth.addr).expect("connect to the same address");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(get_base(&mut stream).as_deref(), Some("HTTP/1.1 200 OK"));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        get_base(&mut stream),
        None,
        "the running idleTimeout (2s) must still close an idle connection"
    );
    let log = wait_for_log(&berth, "the access line of GET /v2/", |log| {
        lines_with(log, "path=/v2/").len() == 1
    });
    assert!(
        log.lines().all(|line| !line.starts_with('{')),
        "JSON lines after a reload that needs a restart:\n{log}"
    );
}

/// A supervisor may signal berth as soon as it has printed where it listens: a SIGHUP then
/// reloads (it must not kill berth) and a SIGTERM drains and exits 0. Each round has a small
/// chance of hitting the window, so the test runs several.
#[test]
fn signals_right_after_the_listening_line_are_handled() {
    for round in 0..30 {
        let mut berth = Berth::start();
        berth.signal(libc::SIGHUP);
        let alive = http().get(format!("{}/livez", berth.url)).send();
        assert!(
            alive.is_ok_and(|response| response.status() == 200),
            "round {round}: berth died of a SIGHUP sent right after it started"
        );
        wait_for_log(&berth, &format!("round {round}: the reload line"), |log| {
            log.contains(RELOADED)
        });
        berth.stop();

        // `stop` sends SIGTERM at once and asserts a clean exit 0.
        Berth::start().stop();
    }
}

/// A second SIGTERM during `http.shutdownDelay` skips the rest of the delay: an operator who
/// insists (or a supervisor escalating) gets a drain now, not after a minute.
#[test]
fn a_second_sigterm_skips_the_shutdown_delay() {
    let mut berth = Berth::start_with(json!({"http": {"shutdownDelay": "120s"}}));
    let readyz = format!("{}/readyz", berth.url);
    berth.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&readyz) != 503 {
        assert!(Instant::now() < deadline, "/readyz never turned 503");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still serving during the delay.
    assert_eq!(get(&format!("{}/v2/", berth.url)), 200);
    // `stop` sends the second SIGTERM and fails unless berth exits 0 within 30 s, far less
    // than the 120 s delay.
    berth.stop();
    wait_for_log(&berth, "the skip line", |log| {
        log.contains("second signal: skipping the shutdown delay")
    });
}
