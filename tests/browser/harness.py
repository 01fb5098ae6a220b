"""Runs one scenario of a playwright script in Debian's headless Chromium; prints its outcome.

Protocol (tests/src/browser.rs is the other side): stdin holds one JSON object

    {"script": "/abs/path/tests/browser/ui_x.py", "function": "scenario_name",
     "base_url": "http://127.0.0.1:PORT", "args": {...}, "screenshot_dir": "/abs/dir"}

and the last line of stdout is one JSON object

    {"ok": bool, "failures": [str], "console_errors": [str], "csp_violations": [str],
     "allowed_console": [str], "screenshots": [path], "data": any}

The scenario is `function(h)` of `script`, `h` a `Harness`: it opens pages with `h.new_page`,
records failed expectations with `h.check(cond, message)` (which never stops the scenario),
saves full-page PNGs with `h.shot(page, name)`, and returns what the Rust side should see as
`data` (anything JSON). Everything it prints goes to stderr.

`ok` is false when any check failed, the scenario raised, a console error or page error was
seen (unless its text matched a pattern the scenario allowed with `h.allowing`), or any
Content-Security-Policy violation was reported: by the `securitypolicyviolation` DOM event
(listened for by an init script in every page, reported through a binding) or by a console
message naming "Content Security Policy". Such console messages are CSP violations only, not
console errors too.

Chromium is Debian's /usr/bin/chromium, never a playwright download; the flags keep it off the
network (the machine has none but package registries) and out of a sandbox it cannot create as
root in a container. Every action waits at most ACTION_TIMEOUT_MS; the Rust side kills the
whole run after its own deadline.
"""

import contextlib
import importlib.util
import json
import os
import re
import sys
import traceback

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ACTION_TIMEOUT_MS = 10_000
NAVIGATION_TIMEOUT_MS = 15_000
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

CSP_BINDING = "__berthCspViolation"
# Runs before any script of every document (CDP's addScriptToEvaluateOnNewDocument is not
# subject to the page's CSP), so even a violation by the first inline script is heard.
CSP_LISTENER = """
document.addEventListener('securitypolicyviolation', (e) => {
  window.%s(JSON.stringify({
    directive: e.effectiveDirective || e.violatedDirective,
    blocked: e.blockedURI,
    source: e.sourceFile,
    line: e.lineNumber,
    sample: e.sample,
    document: e.documentURI,
  }));
}, true);
""" % CSP_BINDING


class Harness:
    """What a scenario sees: its arguments, pages, checks, screenshots."""

    def __init__(self, spec, browser):
        self.base_url = spec["base_url"].rstrip("/")
        self.args = spec.get("args") or {}
        self.screenshot_dir = spec["screenshot_dir"]
        self.browser = browser
        self.failures = []
        self.console_errors = []
        self.csp_violations = []
        self.allowed_console = []
        self.screenshots = []
        self._allowed = []
        self._contexts = []
        self._shot_names = set()

    # -- pages ---------------------------------------------------------------------------

    def url(self, path=""):
        """`base_url` + `path` (which starts with `/`)."""
        return self.base_url + path

    def new_context(self, phone=False, color_scheme="light", storage_state=None):
        """A fresh browser context (its own cookies): desktop 1280x800 or, with `phone`, a
        390x844 touch screen that honours `<meta name=viewport>`; `color_scheme` "light" or
        "dark"; `storage_state` a playwright storage-state file or dict (cookies)."""
        options = {
            "viewport": PHONE if phone else DESKTOP,
            "color_scheme": color_scheme,
            "device_scale_factor": 1,
            "locale": "en-US",
            "timezone_id": "UTC",
        }
        if phone:
            options.update(is_mobile=True, has_touch=True)
        if storage_state is not None:
            options["storage_state"] = storage_state
        context = self.browser.new_context(**options)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        context.expose_binding(CSP_BINDING, lambda _source, report: self._csp_event(report))
        context.add_init_script(CSP_LISTENER)
        context.on("page", self._watch)
        self._contexts.append(context)
        return context

    def new_page(self, phone=False, color_scheme="light", storage_state=None, context=None):
        """A page in `context`, or in a new context (see `new_context`)."""
        if context is None:
            context = self.new_context(phone, color_scheme, storage_state)
        page = context.new_page()
        self._watch(page)
        return page

    def _watch(self, page):
        if getattr(page, "_berth_watched", False):
            return
        page._berth_watched = True
        page.on("console", lambda message: self._console(message, page))
        page.on("pageerror", lambda error: self._error(f"page error: {error}", page))

    def _console(self, message, page):
        text = message.text
        location = message.location or {}
        where = f" ({location.get('url', '?')}:{location.get('lineNumber', '?')})"
        if "Content Security Policy" in text:
            self.csp_violations.append(f"console ({message.type}): {text}{where}")
        elif message.type == "error":
            self._error(f"console error: {text}{where}", page)

    def _error(self, text, page):
        allowed = self._allowed + getattr(page, "_berth_allowed", [])
        if any(re.search(pattern, text) for pattern in allowed):
            self.allowed_console.append(text)
        else:
            self.console_errors.append(text)

    def _csp_event(self, report):
        r = json.loads(report)
        self.csp_violations.append(
            f"event: {r.get('directive')} blocked {r.get('blocked') or '?'} "
            f"at {r.get('source') or r.get('document')}:{r.get('line')}"
            + (f" sample {r['sample']!r}" if r.get("sample") else "")
        )

    def allow_on(self, page, pattern):
        """For the whole life of `page`, console errors matching `pattern` are expected (a
        page opened only to be refused: its messages may come after any block ends)."""
        page._berth_allowed = getattr(page, "_berth_allowed", []) + [pattern]

    @contextlib.contextmanager
    def allowing(self, pattern, page=None):
        """Within the block, console errors matching the regex `pattern` are expected (e.g.
        Chromium's "Failed to load resource: ... status of 403" for a refusal page): they go
        to `allowed_console` instead of failing the run. With `page`, events still in flight
        are let in before the pattern is dropped."""
        self._allowed.append(pattern)
        try:
            yield
        finally:
            if page is not None and not page.is_closed():
                page.wait_for_load_state("load")
                page.wait_for_timeout(100)
            self._allowed.remove(pattern)

    # -- expectations --------------------------------------------------------------------

    def check(self, condition, message):
        """Records `message` as a failure when `condition` is false; never raises. Returns
        `condition` as a bool, so a scenario can skip what depends on it."""
        if not condition:
            self.failures.append(str(message))
            print(f"CHECK FAILED: {message}", file=sys.stderr)
        return bool(condition)

    def fail(self, message):
        self.check(False, message)

    def check_equal(self, actual, expected, what):
        return self.check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")

    def shot(self, page, name):
        """A full-page PNG of `page` as `<screenshot_dir>/<name>.png` (a repeated name gets a
        number); returns its path."""
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "page"
        unique, n = base, 2
        while unique in self._shot_names:
            unique, n = f"{base}-{n}", n + 1
        self._shot_names.add(unique)
        path = os.path.join(self.screenshot_dir, unique + ".png")
        # Chromium sometimes answers "Unable to capture screenshot" on a loaded machine (the
        # compositor missed its frame); the picture is for people, so try again before
        # letting it fail the scenario.
        for attempt in range(3):
            try:
                page.screenshot(path=path, full_page=True)
                break
            except Exception as error:  # playwright's Error, not importable here without it
                if "Unable to capture screenshot" not in str(error) or attempt == 2:
                    raise
                page.wait_for_timeout(250)
        self.screenshots.append(path)
        return path

    # -- ending --------------------------------------------------------------------------

    def _shoot_open_pages(self, prefix):
        for context in self._contexts:
            for page in context.pages:
                try:
                    self.shot(page, prefix)
                except Exception as error:  # the page may be what broke
                    print(f"no screenshot of {page.url}: {error}", file=sys.stderr)

    def close(self):
        for context in self._contexts:
            try:
                context.close()
            except Exception as error:
                print(f"closing a context: {error}", file=sys.stderr)


def scenario_traceback(error):
    """The traceback down to the scenario's own frames: playwright's internals say nothing."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if f"{os.sep}playwright{os.sep}" not in frame.filename
    ]
    return "".join(traceback.format_list(frames) + traceback.format_exception_only(type(error), error))


def load_function(script, function):
    directory = os.path.dirname(os.path.abspath(script))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = os.path.splitext(os.path.basename(script))[0]
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return getattr(module, function)


def main():
    spec = json.load(sys.stdin)
    # The protocol owns stdout: the scenario's prints (and playwright's) go to stderr.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    os.makedirs(spec["screenshot_dir"], exist_ok=True)

    from playwright.sync_api import sync_playwright

    data = None
    failures = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        h = Harness(spec, browser)
        try:
            scenario = load_function(spec["script"], spec["function"])
            data = scenario(h)
        except Exception as error:
            failures.append("scenario raised:\n" + scenario_traceback(error))
            print(failures[-1], file=sys.stderr)
            h._shoot_open_pages("at-exception")
        h.close()
        browser.close()
    failures = h.failures + failures
    outcome = {
        "ok": not (failures or h.console_errors or h.csp_violations),
        "failures": failures,
        "console_errors": h.console_errors,
        "csp_violations": h.csp_violations,
        "allowed_console": h.allowed_console,
        "screenshots": h.screenshots,
        "data": data,
    }
    protocol.write(json.dumps(outcome) + "\n")
    protocol.flush()


if __name__ == "__main__":
    main()
