//! Real-browser tests: a scenario of a Python playwright script in tests/browser/, run in
//! Debian's headless Chromium against a base URL ([`run_script`]), and a tiny static web server
//! for pages berth does not serve ([`StaticSite`]).
//!
//! The protocol is drawn in tests/browser/harness.py: one JSON spec on the harness's stdin, one
//! JSON outcome as the last line of its stdout ([`BrowserRun`]). A run is not ok when a check
//! failed, the scenario raised, or any console error, page error or Content-Security-Policy
//! violation was seen; [`run_script`] then panics with all of it and the script's stderr.
//!
//! Rules: Chromium is `/usr/bin/chromium` (apt), playwright the PyPI package; a missing one
//! skips unless `BERTH_REQUIRE_TOOLS=1` ([`require_browser`]). A run is killed, its whole
//! process group, after [`SCRIPT_TIMEOUT`], so CI never hangs on a browser. Screenshots go to
//! `<target>/tmp/ui-screenshots/<test>/<scenario>/` (or under `$BERTH_SCREENSHOT_DIR`), emptied
//! when the scenario starts and kept after it.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Debian's Chromium, the only browser the scenarios run in.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The longest a scenario may run, browser start included, before it is killed.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the output readers may take to finish once the harness is gone.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of one scenario run (see tests/browser/harness.py).
#[derive(Debug)]
pub struct BrowserRun {
    pub ok: bool,
    /// Failed checks, and the traceback when the scenario raised.
    pub failures: Vec<String>,
    /// Console errors and uncaught page errors that were not allowed.
    pub console_errors: Vec<String>,
    /// `event: ...` from the `securitypolicyviolation` DOM event, `console ...` from
    /// Chromium's console messages naming "Content Security Policy".
    pub csp_violations: Vec<String>,
    /// Console errors the scenario expected (`h.allowing`).
    pub allowed_console: Vec<String>,
    pub screenshots: Vec<PathBuf>,
    pub screenshot_dir: PathBuf,
    /// What the scenario returned.
    pub data: Value,
    pub stderr: String,
}

impl BrowserRun {
    /// Everything a failed run has to say, for a panic message.
    pub fn report(&self) -> String {
        let list = |items: &[String]| {
            if items.is_empty() {
                "  (none)\n".to_string()
            } else {
                items.iter().map(|item| format!("  - {item}\n")).collect()
            }
        };
        format!(
            "failures:\n{}console errors:\n{}CSP violations:\n{}screenshots: {}\n\
             --- script stderr ---\n{}",
            list(&self.failures),
            list(&self.console_errors),
            list(&self.csp_violations),
            self.screenshot_dir.display(),
            self.stderr
        )
    }
}

/// True when Chromium and playwright are both installed. When either is missing, panics if
/// `BERTH_REQUIRE_TOOLS=1` (CI), else prints SKIPPED and returns false: a test does
/// `if !require_browser() { return; }` before anything else.
pub fn require_browser() -> bool {
    static MISSING: OnceLock<Vec<&'static str>> = OnceLock::new();
    let missing = MISSING.get_or_init(|| {
        let mut missing = Vec::new();
        if !is_executable(Path::new(CHROMIUM)) {
            missing.push("chromium (apt package `chromium`, as /usr/bin/chromium)");
        }
        let playwright = Command::new("python3")
            .args(["-c", "import playwright.sync_api"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !playwright.is_ok_and(|status| status.success()) {
            missing.push("playwright (PyPI package `playwright` for python3)");
        }
        missing
    });
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join(", ");
    if std::env::var("BERTH_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("browser tests need {missing} (BERTH_REQUIRE_TOOLS=1)");
    }
    eprintln!("SKIPPED: {missing} missing (set BERTH_REQUIRE_TOOLS=1 to fail instead)");
    false
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// tests/browser/, where the harness and the scenario scripts live.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Runs `scenario` (`"file:function"`: the function of tests/browser/file.py) against
/// `base_url` with `args`; panics with the failures, console errors, CSP violations and the
/// script's stderr unless the run is ok. Call [`require_browser`] first.
#[track_caller]
pub fn run_script(scenario: &str, base_url: &str, args: &Value) -> BrowserRun {
    let run = try_run_script(scenario, base_url, args);
    assert!(
        run.ok,
        "browser scenario {scenario} against {base_url} failed\n{}",
        run.report()
    );
    run
}

/// Like [`run_script`] but returns the outcome whatever it is. Still panics when the harness
/// itself broke: no outcome line, or killed after [`SCRIPT_TIMEOUT`].
pub fn try_run_script(scenario: &str, base_url: &str, args: &Value) -> BrowserRun {
    try_run_script_within(scenario, base_url, args, SCRIPT_TIMEOUT)
}

/// [`try_run_script`] killed after `timeout` instead of [`SCRIPT_TIMEOUT`] (the harness's
/// self-test of the kill).
pub fn try_run_script_within(
    scenario: &str,
    base_url: &str,
    args: &Value,
    timeout: Duration,
) -> BrowserRun {
    assert!(
        require_browser(),
        "call require_browser() first: it skips the test when the browser is missing"
    );
    let (file, function) = scenario
        .split_once(':')
        .unwrap_or_else(|| panic!("scenario {scenario:?} is not `file:function`"));
    let script = scripts_dir().join(format!("{file}.py"));
    assert!(script.is_file(), "no script {}", script.display());
    let screenshot_dir = screenshot_dir(file, function);
    eprintln!(
        "browser scenario {scenario}: screenshots in {}",
        screenshot_dir.display()
    );
    let spec = json!({
        "script": script,
        "function": function,
        "base_url": base_url,
        "args": args,
        "screenshot_dir": screenshot_dir,
    });
    let (stdout, stderr) = run_harness(&spec, scenario, timeout);
    let Some(outcome) = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
    else {
        panic!(
            "browser scenario {scenario} printed no outcome\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    };
    let strings = |key: &str| -> Vec<String> {
        outcome[key]
            .as_array()
            .unwrap_or_else(|| panic!("outcome without `{key}`: {outcome}"))
            .iter()
            .map(|item| {
                item.as_str()
                    .map_or_else(|| item.to_string(), str::to_owned)
            })
            .collect()
    };
    BrowserRun {
        ok: outcome["ok"].as_bool() == Some(true),
        failures: strings("failures"),
        console_errors: strings("console_errors"),
        csp_violations: strings("csp_violations"),
        allowed_console: strings("allowed_console"),
        screenshots: strings("screenshots")
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        screenshot_dir,
        data: outcome["data"].clone(),
        stderr,
    }
}

/// Runs the harness with `spec` on stdin; returns (stdout, stderr). Kills its process group
/// (python, playwright's driver; Chromium dies with the driver's pipe) after `timeout`.
fn run_harness(spec: &Value, scenario: &str, timeout: Duration) -> (String, String) {
    let mut child = Command::new("python3")
        .arg(scripts_dir().join("harness.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start python3 for the browser harness: {e}"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(&serde_json::to_vec(spec).expect("spec serializes"))
        .expect("write the spec to the harness");
    drop(stdin);
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait on the harness") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let group = -libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
            // SAFETY: kill(2) of the process group led by our child, which is not reaped yet,
            // so its id cannot have been reused.
            unsafe { libc::kill(group, libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.recv_timeout(DRAIN_TIMEOUT).unwrap_or_default();
    let stderr = stderr.recv_timeout(DRAIN_TIMEOUT).unwrap_or_default();
    match status {
        None => panic!(
            "browser scenario {scenario} killed after {timeout:?}\nstdout:\n{stdout}\n\
             stderr:\n{stderr}"
        ),
        Some(status) if !status.success() => panic!(
            "browser harness for {scenario} exited with {status}\nstdout:\n{stdout}\n\
             stderr:\n{stderr}"
        ),
        Some(_) => (stdout, stderr),
    }
}

/// Reads `pipe` to its end on a thread; the text arrives on the returned channel.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = sender.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    receiver
}

/// `<root>/<test>/<file>-<function>[-<n>]`: the test is the running thread's name (libtest
/// names it after the test), `n` counts repeated runs of one scenario in one test. `root` is
/// `$BERTH_SCREENSHOT_DIR`, else `<target>/tmp/ui-screenshots` (cargo's
/// `CARGO_TARGET_TMPDIR`, found from the test executable in `<target>/<profile>/deps/`).
fn screenshot_dir(file: &str, function: &str) -> PathBuf {
    static RUNS: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);
    let root = std::env::var_os("BERTH_SCREENSHOT_DIR").map_or_else(
        || {
            let exe = std::env::current_exe().expect("current_exe is readable");
            exe.ancestors()
                .nth(3)
                .expect("test executable lives in <target>/<profile>/deps")
                .join("tmp")
                .join("ui-screenshots")
        },
        PathBuf::from,
    );
    let thread = std::thread::current();
    let test: String = thread
        .name()
        .unwrap_or("main")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let base = format!("{test}/{file}-{function}");
    let n = {
        let mut runs = RUNS.lock().expect("screenshot run counter");
        let count = runs
            .get_or_insert_with(HashMap::new)
            .entry(base.clone())
            .or_insert(0);
        *count += 1;
        *count
    };
    let dir = if n == 1 {
        root.join(base)
    } else {
        root.join(format!("{base}-{n}"))
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("create screenshot dir {}: {e}", dir.display()));
    dir
}

/// One response of a [`StaticSite`].
#[derive(Clone, Debug)]
pub struct Page {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Page {
    /// 200 with `Content-Type: content_type`.
    pub fn new(content_type: &str, body: impl Into<Vec<u8>>) -> Page {
        Page {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// 200 `text/html; charset=utf-8`.
    pub fn html(body: impl Into<Vec<u8>>) -> Page {
        Page::new("text/html; charset=utf-8", body)
    }

    pub fn header(mut self, name: &str, value: &str) -> Page {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1, port 0, serving fixed pages by path (the query string
/// is ignored; an unknown path is a 404). Each connection is answered on its own thread and
/// closed after one response. Stopped and joined on drop.
pub struct StaticSite {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

/// The longest request head a [`StaticSite`] reads.
const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;

impl StaticSite {
    pub fn start(pages: Vec<(&str, Page)>) -> StaticSite {
        let pages: Arc<HashMap<String, Page>> = Arc::new(
            pages
                .into_iter()
                .map(|(path, page)| (path.to_string(), page))
                .collect(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let acceptor = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let pages = Arc::clone(&pages);
                        std::thread::spawn(move || serve(stream, &pages));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("static site accept: {e}"),
                }
            }
        });
        StaticSite {
            url: format!("http://127.0.0.1:{port}"),
            port,
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for StaticSite {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Answers one request on `stream` (browsers also open sockets they never use: those time
/// out quietly).
fn serve(mut stream: TcpStream, pages: &HashMap<String, Page>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
        if head.len() > MAX_REQUEST_HEAD_BYTES {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or(target);
    let not_found = Page {
        status: 404,
        headers: vec![("Content-Type".into(), "text/plain".into())],
        body: b"not found".to_vec(),
    };
    let page = pages.get(path).unwrap_or(&not_found);
    let reason = match page.status {
        200 => "OK",
        204 => "No Content",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Status",
    };
    let mut response = format!("HTTP/1.1 {} {reason}\r\n", page.status);
    for (name, value) in &page.headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        page.body.len()
    ));
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.write_all(&page.body);
    let _ = stream.flush();
}
