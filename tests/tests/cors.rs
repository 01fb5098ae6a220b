//! `http.allowOrigin` (CORS) on the real binary: a listed origin reads answers with
//! credentials (its origin echoed, `Vary: Origin`), a preflight from it is answered before
//! authentication, an unlisted origin gets no CORS header, and `*` admits every origin
//! without credentials; without the key berth sends no CORS header.

use berth_tests::{http, Berth, Client};
use serde_json::json;

const UI: &str = "https://ui.example";

fn get(client: &Client, url: &str, origin: &str) -> reqwest::blocking::Response {
    client
        .get(format!("{url}/v2/"))
        .header("origin", origin)
        .send()
        .expect("GET /v2/")
}

fn header(response: &reqwest::blocking::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

#[test]
fn listed_origins_read_with_credentials_and_others_get_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap()),
    )
    .unwrap();
    let berth = Berth::start_with(json!({"http": {
        "allowOrigin": format!("{UI}, http://localhost:3000"),
        "auth": {"htpasswd": {"path": htpasswd}},
    }}));
    let client = http();
    let url = berth.url.as_str();
    // A listed origin, even on a 401 (the browser must be able to read the challenge).
    let answer = get(&client, url, UI);
    assert_eq!(answer.status(), 401);
    assert_eq!(
        header(&answer, "access-control-allow-origin").as_deref(),
        Some(UI)
    );
    assert_eq!(
        header(&answer, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(header(&answer, "vary").as_deref(), Some("Origin"));
    assert!(header(&answer, "access-control-expose-headers")
        .is_some_and(|exposed| exposed.contains("Docker-Content-Digest")));
    // A preflight is answered before authentication.
    let preflight = client
        .request(
            reqwest::Method::OPTIONS,
            format!("{url}/v2/app/manifests/v1"),
        )
        .header("origin", UI)
        .header("access-control-request-method", "PUT")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert!(header(&preflight, "access-control-allow-methods").is_some_and(|m| m.contains("PUT")));
    assert_eq!(
        header(&preflight, "access-control-allow-headers").as_deref(),
        Some("authorization, content-type")
    );
    // An unlisted origin: no CORS header, and its preflight is not answered as one.
    let answer = get(&client, url, "https://evil.example");
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
    let preflight = client
        .request(reqwest::Method::OPTIONS, format!("{url}/v2/"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .unwrap();
    assert_ne!(preflight.status(), 204);
    assert_eq!(header(&preflight, "access-control-allow-origin"), None);
}

#[test]
fn the_wildcard_never_allows_credentials_and_no_key_sends_nothing() {
    let berth = Berth::start_with(json!({"http": {"allowOrigin": "*"}}));
    let answer = get(&http(), &berth.url, "https://anywhere.example");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        header(&answer, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(header(&answer, "access-control-allow-credentials"), None);

    let plain = Berth::start();
    let answer = get(&http(), &plain.url, UI);
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
}
