//! Small helpers for talking to the distribution API directly: splitting and asserting on
//! responses (status, OCI error code, headers), building upload and manifest requests, and raw
//! HTTP/1.1 exchanges over a `TcpStream` for requests an HTTP client would refuse or normalise.
//!
//! Rules: every assertion is `#[track_caller]` and puts the response body in its message, so a
//! failing test names its own line and shows what the server said; nothing here retries, follows
//! redirects or hides a status.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// `Content-Type` of blob upload bodies.
pub const OCTET: &str = "application/octet-stream";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The `code` of the first OCI error in `body`, if it is an OCI error body.
pub fn code_of(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value["errors"][0]["code"].as_str().map(str::to_string)
}

/// (status, headers, whole body) of `response`.
pub fn parts(response: Response) -> (u16, HeaderMap, Vec<u8>) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().expect("read response body").to_vec();
    (status, headers, body)
}

/// The value of header `name`, which must be ASCII when present.
pub fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_string())
}

/// Asserts the status; returns the headers and body for further checks.
#[track_caller]
pub fn expect_status(response: Response, status: u16) -> (HeaderMap, Vec<u8>) {
    let (got, headers, body) = parts(response);
    assert_eq!(
        got,
        status,
        "status (body: {})",
        String::from_utf8_lossy(&body)
    );
    (headers, body)
}

/// Asserts status and OCI error code; returns the headers and body for further checks.
#[track_caller]
pub fn expect_error(response: Response, status: u16, code: &str) -> (HeaderMap, Vec<u8>) {
    let (got, headers, body) = parts(response);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(got, status, "status (body: {text})");
    assert_eq!(
        code_of(&body).as_deref(),
        Some(code),
        "OCI error code (body: {text})"
    );
    (headers, body)
}

/// Like [`expect_error`], naming `what` (the case under test) in every message.
#[track_caller]
pub fn expect_error_in(
    what: &str,
    response: Response,
    status: u16,
    code: &str,
) -> (HeaderMap, Vec<u8>) {
    let (got, headers, body) = parts(response);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(got, status, "{what}: status (body: {text})");
    assert_eq!(
        code_of(&body).as_deref(),
        Some(code),
        "{what}: OCI error code (body: {text})"
    );
    (headers, body)
}

/// Every value of header `name`, in the order received.
pub fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ASCII header").to_string())
        .collect()
}

/// `location` made absolute against `url` (berth answers relative, Distribution absolute).
pub fn absolute(url: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{url}{location}")
    }
}

/// The `Location` of a response, made absolute against `url`.
#[track_caller]
pub fn location(url: &str, headers: &HeaderMap) -> String {
    absolute(
        url,
        &header(headers, "location").expect("response has a Location"),
    )
}

/// `location` with `query` appended after `?` or `&`.
pub fn with_query(location: &str, query: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}{query}")
}

/// The request path and query of an absolute URL.
pub fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// Percent-encodes every byte outside RFC 3986 "unreserved".
pub fn pct(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `sha512:<hex>` of `data`.
pub fn sha512_digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)))
}

/// `value` serialized as JSON bytes.
pub fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialize")
}

/// GET `url`; asserts 200 and a JSON body.
#[track_caller]
pub fn get_json(client: &Client, url: &str) -> (HeaderMap, Value) {
    let (headers, body) = expect_status(client.get(url).send().expect("GET"), 200);
    (headers, serde_json::from_slice(&body).expect("JSON body"))
}

/// POST a session; asserts 202 and returns the absolute upload URL.
#[track_caller]
/// GET `url` with `Accept:` the OCI image manifest type (what the bad-input tests read back).
pub fn get_oci_manifest(client: &Client, url: impl reqwest::IntoUrl) -> Response {
    client
        .get(url)
        .header("accept", OCI_MANIFEST)
        .send()
        .expect("GET manifest")
}

pub fn start_upload(client: &Client, url: &str, repo: &str) -> String {
    let response = client
        .post(format!("{url}/v2/{repo}/blobs/uploads/"))
        .send()
        .expect("POST");
    let (headers, _) = expect_status(response, 202);
    absolute(
        url,
        &header(&headers, "location").expect("202 upload has Location"),
    )
}

/// Connects to `addr` and sends the head of a PATCH of `length` bytes (offset 0) to the upload
/// at `location` (a path), leaving the body to the caller: for bodies sent slowly, across a
/// signal or a timeout. The stream's read timeout is 30 s.
pub fn open_raw_patch(addr: &str, location: &str, length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {length}\r\nContent-Range: 0-{}\r\n\r\n",
        length - 1
    );
    stream.write_all(head.as_bytes()).expect("write head");
    stream
}

/// GET on an upload URL: (status, `Range`).
pub fn upload_state(client: &Client, location: &str) -> (u16, Option<String>) {
    let response = client.get(location).send().expect("GET upload");
    let (status, headers, _) = parts(response);
    (status, header(&headers, "range"))
}

/// POST `body` as `application/octet-stream` to `url` (a single-POST upload).
pub fn post_octets(client: &Client, url: String, body: Vec<u8>) -> Response {
    client
        .post(url)
        .header("content-type", OCTET)
        .body(body)
        .send()
        .expect("POST")
}

/// PUT `body` as `application/octet-stream` to `url` (the final PUT of an upload).
pub fn put_octets(client: &Client, url: String, body: Vec<u8>) -> Response {
    client
        .put(url)
        .header("content-type", OCTET)
        .body(body)
        .send()
        .expect("PUT")
}

/// PATCH `data` as the chunk starting at `start` (with its `Content-Range`).
pub fn patch_chunk(client: &Client, location: &str, start: usize, data: &[u8]) -> Response {
    client
        .patch(location)
        .header("content-type", OCTET)
        .header(
            "content-range",
            format!("{start}-{}", start + data.len() - 1),
        )
        .body(data.to_vec())
        .send()
        .expect("PATCH")
}

/// PUT a manifest; returns the response, whatever it is.
pub fn send_manifest(
    client: &Client,
    url: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: Vec<u8>,
) -> Response {
    client
        .put(format!("{url}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body)
        .send()
        .expect("PUT manifest")
}

/// PUT a manifest; asserts 201 and returns the headers.
#[track_caller]
pub fn put_manifest(
    client: &Client,
    url: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> HeaderMap {
    let response = send_manifest(client, url, repo, reference, media_type, body.to_vec());
    expect_status(response, 201).0
}

/// A raw HTTP/1.1 exchange: writes `request`, then reads until EOF or `timeout`.
/// Returns (status if a response line arrived, whole response text, whether the server closed).
pub fn raw_exchange(addr: &str, request: &[u8], timeout: Duration) -> (Option<u16>, String, bool) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(timeout)).expect("set timeout");
    // The server may answer and close before everything is written: not an error here.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let mut buffer = [0u8; 16384];
    let deadline = Instant::now() + timeout;
    let closed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    (status, text, closed)
}

/// The body of a raw response (after the head).
pub fn raw_body(text: &str) -> &str {
    text.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// Sends one `GET /v2/` on `stream` and returns the status line, or `None` when the server has
/// closed the connection.
pub fn get_base(stream: &mut TcpStream) -> Option<String> {
    if stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return None;
    }
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&response);
        // `/v2/` answers `{}`: the head plus a two-byte body.
        if let Some(end) = text.find("\r\n\r\n") {
            if response.len() >= end + 4 + 2 {
                return Some(text.lines().next().unwrap_or("").to_owned());
            }
        }
    }
}

/// The `Retry-After` of a 429 answer, in whole seconds (panics when absent or not a number).
#[track_caller]
pub fn retry_after(response: &reqwest::blocking::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .expect("ASCII Retry-After")
        .parse()
        .expect("Retry-After in whole seconds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_of_and_with_query() {
        assert_eq!(path_of("http://127.0.0.1:5000/v2/a?b=c"), "/v2/a?b=c");
        assert_eq!(path_of("http://127.0.0.1:5000"), "/");
        assert_eq!(with_query("/u", "digest=x"), "/u?digest=x");
        assert_eq!(with_query("/u?s=1", "digest=x"), "/u?s=1&digest=x");
        assert_eq!(pct("a:b/ﬁ"), "a%3Ab%2F%EF%AC%81");
        assert_eq!(raw_body("HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody"), "body");
    }
}
