//! Login backoff on the real binary (berth's, beyond zot's `failDelay`): after repeated wrong
//! passwords for one account from one address, further attempts from there get 429 with
//! `Retry-After` (even with the right password, which is then not checked), for a doubling
//! time; the real user from another address logs in meanwhile; the refusals are logged and
//! counted in the metrics.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use berth_tests::api::retry_after;
use berth_tests::{Berth, Client};
use serde_json::{json, Value};

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn client_from(address: IpAddr) -> Client {
    reqwest::blocking::Client::builder()
        .local_address(address)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn login(client: &Client, url: &str, password: &str) -> reqwest::blocking::Response {
    client
        .get(format!("{url}/v2/"))
        .basic_auth("alice", Some(password))
        .send()
        .expect("GET /v2/")
}

#[test]
fn repeated_failures_from_one_address_are_refused_for_a_growing_delay() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("right", 4).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let berth = Berth::start_with(json!({
        "http": {"auth": {"htpasswd": {"path": htpasswd}}},
        "extensions": {"metrics": {}},
    }));
    let url = berth.url.as_str();
    let attacker = client_from(ATTACKER);
    let home = client_from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    for attempt in 1..=6 {
        assert_eq!(
            login(&attacker, url, "wrong").status(),
            401,
            "attempt {attempt}"
        );
    }
    let refused = login(&attacker, url, "wrong");
    assert_eq!(refused.status(), 429);
    assert_eq!(retry_after(&refused), 1);
    let body: Value = serde_json::from_slice(&refused.bytes().unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS", "{body}");
    // Not even the right password gets through from there while the block lasts...
    assert_eq!(login(&attacker, url, "right").status(), 429);
    // ...but the real user from another address logs in.
    assert_eq!(login(&home, url, "right").status(), 200);

    // After the wait one more wrong password is checked, and the next block is twice as long.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(login(&attacker, url, "wrong").status(), 401);
    let refused = login(&attacker, url, "wrong");
    assert_eq!(refused.status(), 429);
    assert_eq!(retry_after(&refused), 2);

    let metrics = home
        .get(format!("{url}/metrics"))
        .basic_auth("alice", Some("right"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("berth_auth_failed_logins_total"), 7.0);
    assert_eq!(value("berth_auth_throttled_logins_total"), 3.0);
    assert!(
        berth
            .log()
            .contains("login refused: too many failed attempts"),
        "the refusal is logged"
    );
}
