//! The browser harness (tests/src/browser.rs, tests/browser/harness.py) against tiny static
//! pages on 127.0.0.1: a clean page is ok with nothing reported; a page with a `console.error`
//! and an inline script under `Content-Security-Policy: default-src 'none'; script-src 'self'`
//! reports exactly that console error and that one violation (as the DOM event and as
//! Chromium's console message); failed checks do not stop a scenario; an exception is a
//! failure with a screenshot; expected refusals can be allowed; phone and dark mode are what
//! they claim; and a hung scenario is killed together with its browser.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_tests::browser::{
    require_browser, try_run_script, try_run_script_within, BrowserRun, Page, StaticSite,
};
use serde_json::json;

const CSP: &str = "default-src 'none'; script-src 'self'";

fn site() -> StaticSite {
    let meta = r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#;
    StaticSite::start(vec![
        (
            "/clean.html",
            Page::html(format!(
                "<!doctype html><html><head>{meta}<title>clean</title></head>\
                 <body><h1>clean</h1><script src=\"/clean.js\"></script></body></html>"
            ))
            .header("Content-Security-Policy", CSP),
        ),
        (
            "/clean.js",
            Page::new("text/javascript", "document.body.dataset.ran = 'yes';"),
        ),
        (
            "/dirty.html",
            Page::html(
                "<!doctype html><html><head><title>dirty</title></head><body><h1>dirty</h1>\
                 <script src=\"/dirty.js\"></script>\
                 <script>document.title = 'inline script ran';</script></body></html>",
            )
            .header("Content-Security-Policy", CSP),
        ),
        (
            "/dirty.js",
            Page::new(
                "text/javascript",
                "console.error('berth-selftest: deliberate console error');",
            ),
        ),
        ("/forbidden.html", forbidden()),
        ("/forbidden-again.html", forbidden()),
        // Chromium asks every origin for one; a 404 would be a console error.
        (
            "/favicon.ico",
            Page {
                status: 204,
                headers: Vec::new(),
                body: Vec::new(),
            },
        ),
    ])
}

fn forbidden() -> Page {
    Page {
        status: 403,
        ..Page::html("<!doctype html><title>forbidden</title><p>no")
    }
}

#[track_caller]
fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 100,
        "{} is not a PNG",
        path.display()
    );
}

fn visit(site: &StaticSite, paths: &[&str]) -> BrowserRun {
    try_run_script(
        "harness_selftest:visit",
        &site.url,
        &json!({ "paths": paths }),
    )
}

#[test]
fn a_clean_page_is_ok_and_reports_nothing() {
    if !require_browser() {
        return;
    }
    let site = site();
    let run = visit(&site, &["/clean.html"]);
    assert!(run.ok, "{}", run.report());
    assert_eq!(run.failures, Vec::<String>::new());
    assert_eq!(run.console_errors, Vec::<String>::new());
    assert_eq!(run.csp_violations, Vec::<String>::new());
    assert_eq!(run.data, json!({"titles": {"/clean.html": "clean"}}));
    assert_eq!(run.screenshots.len(), 1, "{:?}", run.screenshots);
    assert!(run.screenshots[0].starts_with(&run.screenshot_dir));
    assert!(
        run.screenshot_dir
            .components()
            .any(|c| c.as_os_str() == "ui-screenshots"),
        "{}",
        run.screenshot_dir.display()
    );
    assert_png(&run.screenshots[0]);
}

#[test]
fn a_console_error_and_a_csp_violation_are_reported_exactly() {
    if !require_browser() {
        return;
    }
    let site = site();
    let run = visit(&site, &["/dirty.html"]);
    assert!(!run.ok, "{}", run.report());
    assert_eq!(run.failures, Vec::<String>::new(), "{}", run.report());
    // The blocked inline script did not run; dirty.js (allowed by script-src 'self') did.
    assert_eq!(run.data, json!({"titles": {"/dirty.html": "dirty"}}));
    assert_eq!(run.console_errors.len(), 1, "{}", run.report());
    let error = &run.console_errors[0];
    assert!(
        error.starts_with("console error: berth-selftest: deliberate console error (")
            && error.contains("/dirty.js:"),
        "{error}"
    );
    let (events, console): (Vec<&String>, Vec<&String>) = run
        .csp_violations
        .iter()
        .partition(|v| v.starts_with("event: "));
    assert_eq!(events.len(), 1, "{}", run.report());
    assert!(
        events[0].starts_with("event: script-src-elem blocked inline at ")
            && events[0].contains("/dirty.html"),
        "{}",
        events[0]
    );
    // Chromium's console message for the same inline script.
    assert_eq!(console.len(), 1, "{}", run.report());
    assert!(
        console[0].contains("inline script")
            && console[0].contains("Content Security Policy directive")
            && console[0].contains("/dirty.html"),
        "{}",
        console[0]
    );
    // Both pages in one run: still exactly these, nothing from the clean one.
    let both = visit(&site, &["/clean.html", "/dirty.html"]);
    assert_eq!(both.console_errors, run.console_errors);
    assert_eq!(both.csp_violations.len(), 2, "{}", both.report());
    assert_eq!(both.screenshots.len(), 2);
}

#[test]
fn failed_checks_do_not_stop_the_scenario_and_an_exception_is_a_failure() {
    if !require_browser() {
        return;
    }
    let site = site();
    let run = try_run_script("harness_selftest:checks", &site.url, &json!({}));
    assert!(!run.ok);
    assert_eq!(
        run.failures,
        [
            "first deliberate failure",
            "second deliberate failure: expected 3, got 2"
        ]
    );
    assert_eq!(run.data, json!({"reached_end": true}));
    assert!(run.console_errors.is_empty() && run.csp_violations.is_empty());

    let run = try_run_script("harness_selftest:raises", &site.url, &json!({}));
    assert!(!run.ok);
    assert_eq!(run.failures.len(), 1, "{}", run.report());
    assert!(
        run.failures[0].starts_with("scenario raised:")
            && run.failures[0].contains("RuntimeError: deliberate exception"),
        "{}",
        run.failures[0]
    );
    assert_eq!(run.data, json!(null));
    assert_eq!(
        run.screenshots.len(),
        1,
        "the open page: {:?}",
        run.screenshots
    );
    assert_png(&run.screenshots[0]);
}

#[test]
fn an_allowed_console_error_is_set_aside_and_only_where_allowed() {
    if !require_browser() {
        return;
    }
    let site = site();
    let run = try_run_script("harness_selftest:allowed", &site.url, &json!({}));
    assert_eq!(run.allowed_console.len(), 2, "{}", run.report());
    assert!(
        run.allowed_console[0].contains("status of 403")
            && run.allowed_console[0].contains("/forbidden.html"),
        "{:?}",
        run.allowed_console
    );
    assert!(
        run.allowed_console[1].contains("/forbidden.html?whole-life"),
        "{:?}",
        run.allowed_console
    );
    assert_eq!(run.console_errors.len(), 1, "{}", run.report());
    assert!(
        run.console_errors[0].contains("/forbidden-again.html"),
        "{}",
        run.report()
    );
    assert!(!run.ok);
}

#[test]
fn phone_width_and_dark_mode_are_what_they_claim() {
    if !require_browser() {
        return;
    }
    let site = site();
    let run = try_run_script("harness_selftest:viewports", &site.url, &json!({}));
    assert!(run.ok, "{}", run.report());
    assert_eq!(
        run.data,
        json!({
            "desktop-light": {"width": 1280, "height": 800, "dark": false, "touch": false},
            "phone-dark": {"width": 390, "height": 844, "dark": true, "touch": true},
        })
    );
    assert_eq!(run.screenshots.len(), 2);
    for shot in &run.screenshots {
        assert_png(shot);
    }
}

#[test]
fn a_hung_scenario_is_killed_with_its_browser() {
    if !require_browser() {
        return;
    }
    let site = site();
    let started = Instant::now();
    let panic = std::panic::catch_unwind(AssertUnwindSafe(|| {
        try_run_script_within(
            "harness_selftest:hang",
            &site.url,
            &json!({}),
            Duration::from_secs(15),
        )
    }))
    .expect_err("a hung scenario must not return");
    assert!(started.elapsed() < Duration::from_secs(40));
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| format!("{panic:?}"));
    assert!(message.contains("killed after 15s"), "{message}");
    let processes: Vec<(u32, &str)> = message
        .lines()
        .find_map(|line| line.strip_prefix("DESCENDANTS: "))
        .unwrap_or_else(|| panic!("no DESCENDANTS line:\n{message}"))
        .split_whitespace()
        .map(|process| {
            let (pid, command) = process.split_once('/').expect("pid/command");
            (pid.parse().expect("a pid"), command)
        })
        .collect();
    assert!(
        processes
            .iter()
            .any(|(_, command)| command.starts_with("chrom")),
        "Chromium is among them: {processes:?}"
    );
    let pids: Vec<u32> = processes.iter().map(|(pid, _)| *pid).collect();
    // Chromium notices its driver's pipe closing; give it a moment to exit.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|pid| running(*pid)).collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running after the kill: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True when `pid` exists and is not a zombie (a reparented child no one reaped yet).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}
