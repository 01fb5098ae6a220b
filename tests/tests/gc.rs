//! GC against the real daemon, as far as berth's GC goes so far: an upload session idle for
//! longer than `storage.gcDelay` is deleted with its staged bytes by a pass every
//! `gcInterval`, a session that keeps receiving bytes survives, and the passes show in zot's
//! GC metrics.

use std::time::{Duration, Instant};

use berth_tests::api::{location, patch_chunk, start_upload, upload_state};
use berth_tests::{http, random_bytes, scrape_metrics, Berth};
use serde_json::json;

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
