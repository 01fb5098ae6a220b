//! [`FaultyUpstream`]: a small HTTP/1.1 reverse proxy on 127.0.0.1 in front of a real
//! registry (a [`crate::Distribution`]) that misbehaves on demand, for the tests of sync
//! against a failing upstream. It counts every request it receives per (method, path), so a
//! test can assert how many requests reached "upstream", faulted ones included.
//!
//! Rules: one request per connection (every answer carries `Connection: close`); requests are
//! parsed by hand (request line, headers, a `Content-Length` body; anything else is a 501);
//! a fault applies to every request whose path contains its pattern, the most recently set
//! matching pattern winning; counted faults (`Status`, `Status429`) pass requests through once
//! used up. Upstream is reached with reqwest's blocking client, redirects not followed. Drop
//! stops the listener and closes every connection, stalled ones included.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// `times` for a fault that never wears off.
pub const ALWAYS: usize = usize::MAX;
/// Largest request head accepted.
const MAX_HEAD: usize = 64 << 10;
/// How often idle loops look at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// What the proxy does with a request whose path matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Pass through (setting it removes the pattern).
    None,
    /// Answer `status` (an OCI error body) to the next `times` requests, then pass through.
    Status { status: u16, times: usize },
    /// Answer 429 with `Retry-After: retry_after_secs` to the next `times` requests.
    Status429 { retry_after_secs: u64, times: usize },
    /// Read the request and never answer (the connection stays open until Drop).
    Stall,
    /// Pass through, but flip one byte in the middle of a non-empty 2xx body (same length).
    CorruptBody,
    /// Pass through with the full `Content-Length`, send half the body, then close.
    TruncateBody,
    /// Pass through, but send only half the body until [`FaultyUpstream::release`] is called
    /// (or the proxy stops), then the rest.
    HoldBody,
}

#[derive(Default)]
struct State {
    /// (path pattern, fault), oldest first.
    faults: Mutex<Vec<(String, Fault)>>,
    /// (method, path with query) of every request received, in order.
    seen: Mutex<Vec<(String, String)>>,
    /// Held bodies may go on.
    released: AtomicBool,
}

impl State {
    /// The fault for `path`, using up one of a counted fault's times.
    fn take(&self, path: &str) -> Fault {
        let mut faults = self.faults.lock().expect("fault table lock");
        let Some((_, fault)) = faults
            .iter_mut()
            .rev()
            .find(|(pattern, _)| path.contains(pattern.as_str()))
        else {
            return Fault::None;
        };
        match fault {
            Fault::Status { times, .. } | Fault::Status429 { times, .. } => {
                if *times == 0 {
                    return Fault::None;
                }
                if *times != ALWAYS {
                    *times -= 1;
                }
            }
            _ => {}
        }
        fault.clone()
    }
}

pub struct FaultyUpstream {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl FaultyUpstream {
    /// Listens on 127.0.0.1:0 and forwards to `upstream_url` (`http://host:port`).
    pub fn start(upstream_url: &str) -> FaultyUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr").to_string();
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("reqwest client builds");
        let upstream = upstream_url.trim_end_matches('/').to_owned();
        let acceptor = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut connections = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
                            let (client, upstream) = (client.clone(), upstream.clone());
                            connections.push(std::thread::spawn(move || {
                                serve(stream, &state, &stop, &client, &upstream);
                            }));
                        }
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(POLL);
                        }
                        Err(error) => panic!("faulty upstream accept: {error}"),
                    }
                    connections.retain(|handle| !handle.is_finished());
                }
                for connection in connections {
                    let _ = connection.join();
                }
            })
        };
        FaultyUpstream {
            url: format!("http://{addr}"),
            addr,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Applies `fault` to every request whose path contains `path_substring` ("" matches
    /// all), replacing what that pattern had; `Fault::None` removes the pattern.
    pub fn set(&self, path_substring: &str, fault: Fault) {
        let mut faults = self.state.faults.lock().expect("fault table lock");
        faults.retain(|(pattern, _)| pattern != path_substring);
        if fault != Fault::None {
            faults.push((path_substring.to_owned(), fault));
        }
    }

    /// Lets every body held by [`Fault::HoldBody`] (now or later) go on.
    pub fn release(&self) {
        self.state.released.store(true, Ordering::SeqCst);
    }

    /// berth as an on-demand mirror of this proxy, with `patch` merged into the registry
    /// entry of `extensions.sync`.
    pub fn mirror(&self, patch: serde_json::Value) -> crate::Berth {
        let mut registry =
            serde_json::json!({"urls": [self.url], "onDemand": true, "tlsVerify": false});
        crate::merge_patch(&mut registry, &patch);
        crate::Berth::start_with(
            serde_json::json!({"extensions": {"sync": {"registries": [registry]}}}),
        )
    }

    /// Requests received with `method` whose path contains `path_substring`.
    pub fn count(&self, method: &str, path_substring: &str) -> usize {
        self.state
            .seen
            .lock()
            .expect("request log lock")
            .iter()
            .filter(|(m, path)| m == method && path.contains(path_substring))
            .count()
    }

    /// Every request received so far, as `METHOD path` lines (for failure messages).
    pub fn log(&self) -> String {
        let seen = self.state.seen.lock().expect("request log lock");
        seen.iter()
            .map(|(method, path)| format!("{method} {path}\n"))
            .collect()
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        if std::thread::panicking() {
            eprintln!("--- faulty upstream requests ---\n{}", self.log());
        }
    }
}

/// One connection: one request, answered (or not) according to the faults.
fn serve(
    mut stream: TcpStream,
    state: &State,
    stop: &AtomicBool,
    client: &reqwest::blocking::Client,
    upstream: &str,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(POLL));
    let Some(request) = read_request(&mut stream, stop) else {
        return;
    };
    state
        .seen
        .lock()
        .expect("request log lock")
        .push((request.method.clone(), request.path.clone()));
    let fault = state.take(&request.path);
    let result = match fault {
        Fault::Stall => {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(POLL);
            }
            Ok(())
        }
        Fault::Status { status, .. } => answer_error(&mut stream, status, &[]),
        Fault::Status429 {
            retry_after_secs, ..
        } => answer_error(
            &mut stream,
            429,
            &[("Retry-After", retry_after_secs.to_string())],
        ),
        fault => forward(&mut stream, &request, &fault, client, upstream, &|| {
            while !state.released.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(POLL);
            }
        }),
    };
    // The peer may have gone away first: nothing to do about it.
    let _ = result;
    let _ = stream.shutdown(Shutdown::Both);
}

/// Reads a request head and its `Content-Length` body; `None` when the peer closes first, the
/// head is malformed (answered 400/501) or the proxy stops.
fn read_request(stream: &mut TcpStream, stop: &AtomicBool) -> Option<Request> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > MAX_HEAD {
            let _ = answer_error(stream, 431, &[]);
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(error) if is_timeout(&error) => {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(path), Some(_version)) = (parts.next(), parts.next(), parts.next())
    else {
        let _ = answer_error(stream, 400, &[]);
        return None;
    };
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            let _ = answer_error(stream, 400, &[]);
            return None;
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    if value("transfer-encoding").is_some() {
        let _ = answer_error(stream, 501, &[]);
        return None;
    }
    let length: usize = match value("content-length").map(|v| v.parse()) {
        None => 0,
        Some(Ok(length)) => length,
        Some(Err(_)) => {
            let _ = answer_error(stream, 400, &[]);
            return None;
        }
    };
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(error) if is_timeout(&error) => {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    body.truncate(length);
    Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        headers,
        body,
    })
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("Unknown")
}

/// A fault's answer: `status` with a small OCI error body and the extra `headers`.
fn answer_error(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
) -> std::io::Result<()> {
    let body =
        format!(r#"{{"errors":[{{"code":"UNAVAILABLE","message":"injected fault: {status}"}}]}}"#);
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// Hop-by-hop headers and the ones the proxy sets itself.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "host" | "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "upgrade"
    )
}

/// Sends `request` upstream and passes the answer on, with `fault` applied to its body.
fn forward(
    stream: &mut TcpStream,
    request: &Request,
    fault: &Fault,
    client: &reqwest::blocking::Client,
    upstream: &str,
    hold: &dyn Fn(),
) -> std::io::Result<()> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    let mut outgoing = client.request(method, format!("{upstream}{}", request.path));
    for (name, value) in &request.headers {
        if !hop_by_hop(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    if !request.body.is_empty() {
        outgoing = outgoing.body(request.body.clone());
    }
    let response = match outgoing.send() {
        Ok(response) => response,
        Err(_) => return answer_error(stream, 502, &[]),
    };
    let status = response.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        reason(status.as_u16())
    );
    let mut announced = None;
    for (name, value) in response.headers() {
        let Ok(value) = value.to_str() else { continue };
        if name.as_str() == "content-length" {
            announced = Some(value.to_owned());
        }
        if !hop_by_hop(name.as_str()) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let mut body = match response.bytes() {
        Ok(body) => body.to_vec(),
        Err(_) => return answer_error(stream, 502, &[]),
    };
    // A HEAD answer announces the length of the body it does not send.
    let length = match (request.method.as_str(), announced) {
        ("HEAD", Some(announced)) => announced,
        _ => body.len().to_string(),
    };
    head.push_str(&format!(
        "Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ));
    let mut send = body.len();
    if status.is_success() && !body.is_empty() {
        match fault {
            Fault::CorruptBody => {
                let middle = body.len() / 2;
                body[middle] ^= 0xff;
            }
            Fault::TruncateBody => send = body.len() / 2,
            _ => {}
        }
    }
    stream.write_all(head.as_bytes())?;
    if *fault == Fault::HoldBody && status.is_success() {
        let half = send / 2;
        stream.write_all(&body[..half])?;
        stream.flush()?;
        hold();
        stream.write_all(&body[half..send])?;
        return stream.flush();
    }
    stream.write_all(&body[..send])?;
    stream.flush()
}

/// GET a blob, reading the whole body: Ok((status, body)), or Err when the request or the
/// body failed (connection aborted, body shorter than its Content-Length).
pub fn try_fetch_blob(
    client: &crate::Client,
    url: &str,
    repo: &str,
    digest: &str,
    range: Option<&str>,
) -> Result<(u16, Vec<u8>), String> {
    let mut request = client.get(format!("{url}/v2/{repo}/blobs/{digest}"));
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().map_err(|error| format!("send: {error:?}"))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .map_err(|error| format!("body after {status}: {error:?}"))?;
    Ok((status, body.to_vec()))
}

/// Polls `done` every 50 ms for up to `limit`; panics naming `what` when it never holds.
#[track_caller]
pub fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited {limit:?} for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
