"""What every UI scenario (tests/browser/ui_*.py) checks the same way: the security headers of
a response, the header nav for who is logged in, logging in and out, repository links and the
paths of image and tag pages, and a page that must not scroll sideways.

The DOM contract these helpers read is the one tests/tests/ui_browser.rs describes; when the UI
changes a selector, change it here (or in the one scenario using it)."""

import re
from urllib.parse import quote, unquote, urlsplit

PASSWORD = "secret"
CSP_SELF_DIRECTIVES = ["script-src", "style-src", "font-src", "img-src", "connect-src"]
UNSAFE_SOURCES = {"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "http:", "https:"}
# Chromium's console line for a refusal page (a 403 or 404 document, a 401 login answer).
REFUSAL_CONSOLE = r"Failed to load resource: the server responded with a status of 4\d\d"


# -- paths ----------------------------------------------------------------------------------


def image_path(repo):
    return "/image/" + quote(repo, safe="")


def tag_path(repo, tag):
    return f"{image_path(repo)}/tag/{quote(tag, safe='')}"


def delete_path(repo, tag):
    return tag_path(repo, tag) + "/delete"


def path_of(url):
    """The path (and query) of an absolute URL."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def parse_image_href(href):
    """`/image/<repo>[/tag/<tag>]` (repo and tag percent-encoded) -> (repo, tag or None);
    None when `href` is not such a path."""
    path = urlsplit(href).path
    if not path.startswith("/image/"):
        return None
    parts = path[len("/image/"):].split("/")
    if len(parts) == 1:
        return unquote(parts[0]), None
    if len(parts) == 3 and parts[1] == "tag":
        return unquote(parts[0]), unquote(parts[2])
    return None


def repo_names(page, selector):
    """The repositories the `a.repo-link`s under `selector` link to, in page order. A link
    whose href is not `/image/<percent-encoded repo>` is reported as `<bad href ...>`."""
    names = []
    for href in page.locator(f"{selector} a.repo-link").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    ):
        parsed = parse_image_href(href or "")
        names.append(parsed[0] if parsed and parsed[1] is None else f"<bad href {href!r}>")
    return names


def result_names(page):
    """The repository of each `#results li.result` (its first `a.repo-link`)."""
    hrefs = page.locator("#results li.result").evaluate_all(
        "items => items.map(li => { const a = li.querySelector('a.repo-link');"
        " return a ? a.getAttribute('href') : null; })"
    )
    names = []
    for href in hrefs:
        parsed = parse_image_href(href or "")
        names.append(parsed[0] if parsed and parsed[1] is None else f"<bad href {href!r}>")
    return names


def data_total(page):
    """`#total[data-total]` as an int, or None."""
    if page.locator("#total[data-total]").count() != 1:
        return None
    value = page.locator("#total").get_attribute("data-total")
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# -- headers --------------------------------------------------------------------------------


def parse_csp(value):
    policy = {}
    for directive in (value or "").split(";"):
        words = directive.split()
        if words:
            policy[words[0].lower()] = words[1:]
    return policy


def check_security_headers(h, response, what):
    """The headers every UI response carries (documents: all of them)."""
    if not h.check(response is not None, f"{what}: no response"):
        return
    headers = response.all_headers()
    csp_text = headers.get("content-security-policy")
    if h.check(csp_text, f"{what}: no Content-Security-Policy"):
        csp = parse_csp(csp_text)
        h.check_equal(csp.get("default-src"), ["'none'"], f"{what}: CSP default-src")
        for directive in CSP_SELF_DIRECTIVES:
            h.check("'self'" in csp.get(directive, []), f"{what}: CSP {directive} lacks 'self': {csp_text}")
        for directive, sources in csp.items():
            loose = UNSAFE_SOURCES.intersection(sources)
            h.check(not loose, f"{what}: CSP {directive} allows {sorted(loose)}: {csp_text}")
    h.check_equal((headers.get("x-frame-options") or "").upper(), "DENY", f"{what}: X-Frame-Options")
    check_resource_headers(h, response, what)
    h.check_equal(headers.get("cross-origin-opener-policy"), "same-origin", f"{what}: COOP")
    h.check(
        headers.get("cross-origin-embedder-policy") in ("require-corp", "credentialless"),
        f"{what}: COEP is {headers.get('cross-origin-embedder-policy')!r}",
    )


def check_resource_headers(h, response, what):
    """What every response of the UI carries, stylesheets and scripts too: nosniff and CORP
    (without CORP a COEP document could not load them)."""
    headers = response.all_headers()
    h.check_equal(headers.get("x-content-type-options"), "nosniff", f"{what}: X-Content-Type-Options")
    h.check(
        headers.get("cross-origin-resource-policy") in ("same-origin", "same-site"),
        f"{what}: CORP is {headers.get('cross-origin-resource-policy')!r}",
    )


def record_responses(h, page):
    """Every response `page` receives from the UI's origin, as a list filled while it runs
    (check them with `check_recorded_responses`)."""
    seen = []
    page.on("response", lambda response: seen.append(response) if response.url.startswith(h.base_url) else None)
    return seen


def check_recorded_responses(h, responses, what):
    for response in responses:
        check_resource_headers(h, response, f"{what}: {path_of(response.url)}")


# -- nav, login, logout ---------------------------------------------------------------------


def check_nav(h, page, user=None, admin=False):
    """The header nav for `user` (None: anonymous); `admin` when the user is one."""
    where = f"{path_of(page.url)} as {user or 'anonymous'}"
    h.check(page.locator('nav a[href="/home"]').count() >= 1, f"{where}: no nav a[href=/home]")
    h.check(page.locator('a[href="/explore"]').count() >= 1, f"{where}: no a[href=/explore]")
    operator = page.locator('a[href="/operator"]').count()
    h.check(operator >= 1 if admin else operator == 0, f"{where}: {operator} operator links, admin={admin}")
    login_links = page.locator('a[href^="/login"]').count()
    if user is None:
        h.check(login_links >= 1, f"{where}: no a[href^=/login]")
        h.check(page.locator("#user").count() == 0, f"{where}: #user shown to anonymous")
        h.check(page.locator("form#logout").count() == 0, f"{where}: form#logout shown to anonymous")
        return
    h.check(login_links == 0, f"{where}: a login link while logged in")
    if h.check(page.locator("#user").count() == 1, f"{where}: no #user"):
        h.check_equal(page.locator("#user").inner_text().strip(), user, f"{where}: #user")
    check_post_form(h, page, "form#logout", "/logout", where)


def check_post_form(h, page, selector, action_path, where):
    """`selector` is one POST form to `action_path` carrying a non-empty hidden `csrf`."""
    form = page.locator(selector)
    if not h.check(form.count() >= 1, f"{where}: no {selector}"):
        return
    form = form.first
    h.check_equal((form.get_attribute("method") or "get").lower(), "post", f"{where}: {selector} method")
    if action_path is not None:
        action = form.evaluate("f => f.action")
        h.check_equal(urlsplit(action).path, action_path, f"{where}: {selector} action")
    csrf = form.locator('input[type="hidden"][name="csrf"]')
    h.check(csrf.count() == 1 and (csrf.first.get_attribute("value") or "") != "", f"{where}: {selector} has no hidden csrf value")


def login(h, page, user, password=PASSWORD, next_path=None, expect_success=True):
    """Logs in through `/login` (`?next=` when given); returns the response of the POST's
    final page."""
    target = "/login" + (f"?next={quote(next_path, safe='')}" if next_path is not None else "")
    page.goto(h.url(target))
    page.locator('form#login input[name="username"]').fill(user)
    page.locator('form#login input[name="password"]').fill(password)
    with page.expect_navigation() as navigation:
        submit(page, "form#login")
    response = navigation.value
    if expect_success:
        h.check(page.locator("#user").count() == 1, f"login as {user}: no #user on {page.url}")
    return response


def logout(h, page):
    with page.expect_navigation():
        submit(page, "form#logout")
    h.check(page.locator("#user").count() == 0, f"after logout: #user on {page.url}")


def submit(page, form_selector):
    """Clicks the submit button of the form (a press of Enter when it has none)."""
    button = page.locator(f'{form_selector} button:not([type="button"]), {form_selector} input[type="submit"]')
    if button.count() > 0:
        button.first.click()
    else:
        page.locator(f"{form_selector} input:not([type=hidden])").first.press("Enter")


def logged_in_page(h, user, **options):
    """A page in a fresh context, logged in as `user`, on /home."""
    page = h.new_page(**options)
    login(h, page, user)
    return page


def goto(h, page, path, status=200, what=None):
    """Navigates to `path`, checks the status (an int or a tuple of ints) and the security
    headers; a 4xx status is expected in Chromium's console then. Returns the response."""
    statuses = status if isinstance(status, tuple) else (status,)
    refusal = any(s >= 400 for s in statuses)
    what = what or path
    if refusal:
        with h.allowing(REFUSAL_CONSOLE, page):
            response = page.goto(h.url(path))
    else:
        response = page.goto(h.url(path))
    if h.check(response is not None, f"{what}: no response"):
        h.check(response.status in statuses, f"{what}: status {response.status}, expected {statuses}")
        check_security_headers(h, response, what)
    return response


# -- layout ---------------------------------------------------------------------------------


def check_no_horizontal_scroll(h, page, what):
    """At phone width the layout viewport is the screen's (a `<meta name=viewport>`) and
    nothing is wider than it."""
    sizes = page.evaluate(
        """() => ({
            inner: window.innerWidth,
            client: document.documentElement.clientWidth,
            scroll: Math.max(document.documentElement.scrollWidth, document.body ? document.body.scrollWidth : 0),
            widest: [...document.querySelectorAll('body *')]
                .map(e => [e.getBoundingClientRect().right, e.tagName + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\\s+/).join('.') : '')])
                .filter(([right]) => right > document.documentElement.clientWidth + 1)
                .slice(0, 3),
        })"""
    )
    h.check(sizes["inner"] <= 400, f"{what}: layout viewport {sizes['inner']}px wide at phone width (no meta viewport?)")
    h.check(
        sizes["scroll"] <= sizes["client"],
        f"{what}: scrolls sideways at phone width: {sizes['scroll']}px > {sizes['client']}px; widest {sizes['widest']}",
    )


def text_of(page, selector):
    locator = page.locator(selector)
    return locator.first.inner_text().strip() if locator.count() else ""


def slug(text):
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "root"
