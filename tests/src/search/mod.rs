//! Helpers of the search-extension tests (tests/tests/search_*.rs): the GraphQL transports the
//! way zot's own clients send them ([`gql_get`] as zui, [`gql_get_form`] as zli, [`gql_post`]),
//! images with real configs and annotations ([`ImageBuilder`], in images.rs), indexes,
//! referrers and signatures, and [`seed_catalog`] (catalog.rs): the registry most search tests
//! query.
//!
//! Rules: every request goes to the real binary over plain HTTP; a helper that expects success
//! asserts the status and the absence of `errors` and shows the whole response otherwise.

mod catalog;
mod images;

pub use catalog::{seed_catalog, Catalog, CATALOG_REPOS_BY_TIME, CATALOG_TAGS};
pub use images::{
    artifact, build_index, image_size, push_cosign_signature, push_index, push_notation_signature,
    push_referrer, ImageBuilder, Layer, EMPTY_CONFIG, NOTATION_SIGNATURE,
};

use serde_json::{json, Value};

use crate::Client;

/// zot's search route.
pub const SEARCH: &str = "/v2/_zot/ext/search";

/// The config patch that turns search (and with it userprefs and mgmt) on.
pub fn search_config() -> Value {
    json!({"extensions": {"search": {"enable": true}}})
}

/// The document as zui puts it in a URL: `{ } : , [ ] ( )` raw, only what a browser must
/// escape (space, `"`, `#`, `<`, `>`, `'`, controls, non-ASCII) plus `%`, `&`, `+` encoded.
pub fn zui_encode(document: &str) -> String {
    document
        .bytes()
        .map(|b| match b {
            b' ' | b'"' | b'#' | b'%' | b'&' | b'+' | b'<' | b'>' | b'\'' => format!("%{b:02X}"),
            b if !(0x20..0x7f).contains(&b) => format!("%{b:02X}"),
            b => (b as char).to_string(),
        })
        .collect()
}

/// `application/x-www-form-urlencoded` as Go's `url.Values.Encode` writes it (zli).
pub fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn answer(response: reqwest::blocking::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.bytes().expect("read search response");
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, value)
}

/// GET `?query=` with the document unencoded the way zui sends it. Panics if the HTTP client
/// would re-encode the URL (then the test would not be testing zui's form).
pub fn gql_get(client: &Client, url: &str, query: &str) -> (u16, Value) {
    let full = format!("{url}{SEARCH}?query={}", zui_encode(query));
    let parsed = reqwest::Url::parse(&full).expect("search URL parses");
    assert_eq!(parsed.as_str(), full, "the URL must go out byte for byte");
    answer(client.get(parsed).send().expect("GET search"))
}

/// GET the way zli sends it: the document form-encoded in `?query=` (spaces as `+`),
/// `Content-Type: application/json`, and `body` (zli repeats the document there) as the body.
pub fn gql_get_form(client: &Client, url: &str, query: &str, body: &str) -> (u16, Value) {
    let full = format!("{url}{SEARCH}?query={}", form_encode(query));
    answer(
        client
            .get(full)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .expect("GET search (zli)"),
    )
}

/// POST `{"query", "variables"?, "operationName"?}` as `application/json`.
pub fn gql_post(
    client: &Client,
    url: &str,
    query: &str,
    variables: Option<Value>,
    operation_name: Option<&str>,
) -> (u16, Value) {
    let mut body = json!({ "query": query });
    if let Some(variables) = variables {
        body["variables"] = variables;
    }
    if let Some(name) = operation_name {
        body["operationName"] = json!(name);
    }
    answer(
        client
            .post(format!("{url}{SEARCH}"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).expect("serialize"))
            .send()
            .expect("POST search"),
    )
}

/// Runs `query` by zui-style GET; asserts 200 without `errors` and returns `data`.
#[track_caller]
pub fn gql(client: &Client, url: &str, query: &str) -> Value {
    let (status, body) = gql_get(client, url, query);
    assert_eq!(status, 200, "query {query}\nanswer {body}");
    assert!(body.get("errors").is_none(), "query {query}\nanswer {body}");
    body["data"].clone()
}

/// Runs `query` by zui-style GET; asserts a resolver error (200, `data: null`, the error's
/// `path` names the root `field`) and returns its message.
#[track_caller]
pub fn gql_error(client: &Client, url: &str, query: &str, field: &str) -> String {
    let (status, body) = gql_get(client, url, query);
    assert_eq!(status, 200, "query {query}\nanswer {body}");
    assert_eq!(body["data"], Value::Null, "query {query}\nanswer {body}");
    assert_eq!(
        body["errors"][0]["path"],
        json!([field]),
        "query {query}\nanswer {body}"
    );
    body["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error without a message: {body}"))
        .to_string()
}

/// `RepoName:Tag` of every entry of a result list.
pub fn refs(results: &Value) -> Vec<String> {
    results
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {results}"))
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["RepoName"].as_str().unwrap_or("?"),
                r["Tag"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// The string `key` of every entry of a result list.
pub fn strings(results: &Value, key: &str) -> Vec<String> {
    results
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {results}"))
        .iter()
        .map(|r| r[key].as_str().unwrap_or("<null>").to_string())
        .collect()
}

/// Seconds since the epoch of an RFC 3339 time (`Z` or an offset, optional fraction).
pub fn unix_of(time: &str) -> i64 {
    let bad = || panic!("not an RFC 3339 time: {time:?}");
    let num = |range: std::ops::Range<usize>| -> i64 {
        time.get(range)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(bad)
    };
    if time.len() < 20 || &time[4..5] != "-" || &time[10..11] != "T" {
        bad();
    }
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let (hh, mm, ss) = (num(11..13), num(14..16), num(17..19));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut rest = &time[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" => 0,
        _ if rest.len() == 6 => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let hours: i64 = rest[1..3].parse().unwrap_or_else(|_| bad());
            let minutes: i64 = rest[4..6].parse().unwrap_or_else(|_| bad());
            sign * (hours * 3600 + minutes * 60)
        }
        _ => bad(),
    };
    days * 86_400 + hh * 3600 + mm * 60 + ss - offset
}

/// Seconds since the epoch, now.
pub fn now_unix() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(now.as_secs()).expect("fits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_and_times() {
        assert_eq!(
            zui_encode("{ImageList(repo: \"a/b\"){Page{TotalCount}}}"),
            "{ImageList(repo:%20%22a/b%22){Page{TotalCount}}}"
        );
        assert_eq!(form_encode("{a b}\n"), "%7Ba+b%7D%0A");
        assert_eq!(unix_of("1970-01-01T00:00:00Z"), 0);
        assert_eq!(unix_of("2024-04-01T10:00:00Z"), 1_711_965_600);
        assert_eq!(unix_of("2024-04-01T12:00:00.5+02:00"), 1_711_965_600);
    }
}
