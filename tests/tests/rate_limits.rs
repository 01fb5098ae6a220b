//! zot's `http.ratelimit` on the real binary: requests over the global rate get 429
//! `TOOMANYREQUESTS` with `Retry-After`, and are served again after that wait; a per-method
//! rate limits that method only; the health probes and the metrics path are never limited;
//! a refused push changes nothing.

use std::time::Duration;

use berth_tests::{http, random_image, try_push_manifest, Berth, Client};
use serde_json::{json, Value};

fn get(client: &Client, url: &str, path: &str) -> reqwest::blocking::Response {
    client.get(format!("{url}{path}")).send().expect("GET")
}

/// Sends `count` GETs of `path` back to back; returns the statuses.
fn burst(client: &Client, url: &str, path: &str, count: usize) -> Vec<u16> {
    (0..count)
        .map(|_| get(client, url, path).status().as_u16())
        .collect()
}

#[test]
fn requests_over_the_rate_wait_for_retry_after() {
    let berth = Berth::start_with(json!({
        "http": {"ratelimit": {"rate": 20, "methods": [{"method": "PUT", "rate": 1}]}},
        "extensions": {"metrics": {"enable": true}},
    }));
    let client = http();
    let url = berth.url.as_str();
    // One second's worth at once, then refusals.
    let statuses = burst(&client, url, "/v2/", 40);
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert!((20..=24).contains(&admitted), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let refused = get(&client, url, "/v2/_catalog");
    assert_eq!(refused.status(), 429);
    let retry = berth_tests::api::retry_after(&refused);
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let body: Value = serde_json::from_slice(&refused.bytes().unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS", "{body}");
    // The probes and the metrics path stay open.
    for path in ["/livez", "/readyz", "/metrics"] {
        assert_eq!(get(&client, url, path).status(), 200, "{path}");
    }
    // After the wait it is served again.
    std::thread::sleep(Duration::from_secs(retry));
    assert_eq!(get(&client, url, "/v2/").status(), 200);

    // PUT is limited to one a second: the second manifest PUT at once is refused and
    // stores nothing; GETs meanwhile are not held back by it.
    std::thread::sleep(Duration::from_secs(2));
    let image = random_image(1, 64);
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        let digest = berth_tests::sha256_digest(blob);
        let answer = client
            .post(format!(
                "{url}/v2/limited/app/blobs/uploads/?digest={digest}"
            ))
            .header("content-type", "application/octet-stream")
            .body(blob.clone())
            .send()
            .unwrap();
        assert_eq!(answer.status(), 201, "monolithic POST is not a PUT");
    }
    std::thread::sleep(Duration::from_secs(2));
    try_push_manifest(&client, url, "limited/app", "v1", &image.manifest).expect("first PUT");
    let second = try_push_manifest(&client, url, "limited/app", "v2", &image.manifest);
    assert!(
        matches!(
            second,
            Err(berth_tests::PushError::Status { status: 429, .. })
        ),
        "{second:?}"
    );
    assert_eq!(
        get(&client, url, "/v2/limited/app/manifests/v1").status(),
        200
    );
    let tags: Value = serde_json::from_slice(
        &get(&client, url, "/v2/limited/app/tags/list")
            .bytes()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        tags["tags"],
        json!(["v1"]),
        "the refused PUT stored nothing"
    );
}
