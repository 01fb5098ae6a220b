"""Scenario (sso): single sign-on through a real OpenID provider (tests/oidc/provider.mjs, on
`localhost`: another site than berth on 127.0.0.1). From berth's /login the "Log in with
NAME" button goes to the provider; a wrong password is refused there, the right one and the
consent page lead back through berth's callback to /home, logged in as the provider's user;
a group-gated repository is shown or refused by the provider's groups; an API key is made on
/apikeys; the UI's logout ends the session.

args: {"provider": "oidc", "provider_name": "Test IdP", "issuer": "http://localhost:PORT",
       "login": "alice", "password": "alice-pw", "user": "alice@example.org",
       "repo": "team/app", "may_read": true, "api_key": true}

Returns {"callback_url": the first URL of berth's callback the browser was sent to (code and
state in its query), "callbacks": all of them, "api_key": the key made (or null)}.

The provider's pages (tests/oidc/provider.mjs): `form#idp-login` (inputs `login`,
`password`, a `[role=alert]` after a wrong password), `form#idp-consent` with `#idp-scopes`.
`idp_pages` is the harness's self-test of them, with a stand-in client instead of berth.
"""

from urllib.parse import parse_qs, urlsplit

from ui_apikeys import status_with_key
from ui_common import (
    REFUSAL_CONSOLE,
    check_nav,
    goto,
    image_path,
    logout,
    path_of,
    submit,
)

# Login, consent and the way back cross three sites' worth of redirects.
FLOW_TIMEOUT_MS = 20_000


def log_in_at_the_idp(h, page, issuer, login, password, wrong_password=True):
    """On the provider's login page: a wrong password first (when asked: refused with an
    alert), then `password`, then consent. Returns once the consent is submitted; the caller
    waits for where the redirects land."""
    h.check(page.url.startswith(issuer + "/"), f"not at the provider ({issuer}) but at {page.url}")
    form = page.locator("form#idp-login")
    if not h.check(form.count() == 1, f"no form#idp-login at {page.url}"):
        return
    h.shot(page, "idp-login")
    if wrong_password:
        form.locator('input[name="login"]').fill(login)
        form.locator('input[name="password"]').fill("not-" + password)
        with h.allowing(REFUSAL_CONSOLE, page):
            with page.expect_navigation() as navigation:
                submit(page, "form#idp-login")
        h.check_equal(navigation.value.status, 401, "the provider's answer to a wrong password")
        alert = page.locator("[role=alert]")
        h.check(alert.count() == 1 and alert.first.is_visible(), "no visible [role=alert] after a wrong password")
        h.shot(page, "idp-wrong-password")
    form = page.locator("form#idp-login")
    form.locator('input[name="login"]').fill(login)
    form.locator('input[name="password"]').fill(password)
    with page.expect_navigation():
        submit(page, "form#idp-login")
    consent = page.locator("form#idp-consent")
    if not h.check(consent.count() == 1, f"no form#idp-consent after logging in at {page.url}"):
        return
    scopes = page.locator("#idp-scopes li").all_inner_texts()
    h.check("openid" in scopes, f"the consent page lists {scopes}")
    h.shot(page, "idp-consent")
    submit(page, "form#idp-consent")


def record_requests(h, page, prefix):
    """The URLs of every request `page` makes under `prefix` (redirect hops included), in
    order, as a list filled while it runs."""
    seen = []
    page.on("request", lambda request: seen.append(request.url) if request.url.startswith(prefix) else None)
    return seen


def sso_login(h):
    a = h.args
    provider, issuer, user = a["provider"], a["issuer"], a["user"]
    context = h.new_context()
    page = h.new_page(context=context)
    callbacks = record_requests(h, page, h.url("/zot/auth/callback/"))

    goto(h, page, "/login")
    check_nav(h, page)
    button = page.locator(f'a.button[href^="/zot/auth/login?provider={provider}"]')
    if not h.check(button.count() == 1, f"/login has no a.button to /zot/auth/login?provider={provider}"):
        h.shot(page, "login")
        return None
    h.check_equal(button.inner_text().strip(), f"Log in with {a['provider_name']}", "the provider's button")
    h.shot(page, "login")
    button.click()
    page.wait_for_url(lambda url: url.startswith(issuer + "/"), timeout=FLOW_TIMEOUT_MS)

    log_in_at_the_idp(h, page, issuer, a["login"], a["password"])
    try:
        page.wait_for_url(lambda url: url.startswith(h.url("/home")), timeout=FLOW_TIMEOUT_MS)
    except Exception as error:  # playwright's TimeoutError: say where it stopped instead
        alert = page.locator("[role=alert]")
        said = alert.first.inner_text() if alert.count() else page.content()[:500]
        h.fail(f"the login did not reach /home but {page.url}: {said} ({error.__class__.__name__})")
        h.shot(page, "callback")
        return {"callback_url": callbacks[0] if callbacks else None, "callbacks": callbacks, "api_key": None}
    page.wait_for_load_state("load")
    h.check(callbacks, "the browser never went to berth's callback")
    for url in callbacks:
        query = parse_qs(urlsplit(url).query)
        h.check(path_of(url).startswith(f"/zot/auth/callback/{provider}?"), f"callback URL {url}")
        h.check("code" in query and "state" in query, f"callback without code and state: {url}")
    check_nav(h, page, user)
    h.shot(page, "home")

    host = urlsplit(h.base_url).hostname
    cookies = {c["name"]: c for c in context.cookies() if c["domain"].lstrip(".") == host}
    session = cookies.get("session")
    if h.check(session is not None, f"no session cookie, only {sorted(cookies)}"):
        h.check(session["httpOnly"], "the session cookie is not HttpOnly")
        h.check_equal(session["sameSite"], "Strict", "the session cookie's SameSite")
        h.check_equal(session["path"], "/", "the session cookie's Path")
    h.check("berth_oidc" not in cookies, "the login state cookie outlived the callback")

    repo = a["repo"]
    if a["may_read"]:
        goto(h, page, image_path(repo))
        h.check_equal(page.locator("h1").first.inner_text().strip(), repo, f"{image_path(repo)} h1")
    else:
        goto(h, page, image_path(repo), status=(403, 404))
        h.check(page.locator("table#tags tbody tr").count() == 0, f"{repo}: tags shown to {user}")
    check_nav(h, page, user)
    h.shot(page, "repository" if a["may_read"] else "repository-refused")

    key = None
    if a.get("api_key"):
        goto(h, page, "/apikeys")
        page.locator("form#create-key input[name=label]").fill("sso key")
        with page.expect_navigation() as navigation:
            submit(page, "form#create-key")
        h.check_equal(navigation.value.status, 201, "the create answer's status")
        shown = page.locator("#new-key code#api-key")
        if h.check(shown.count() == 1, "no copy-once display of the new key"):
            key = shown.inner_text().strip()
            h.check(key.startswith("zak_"), f"the key shown is {key!r}")
            h.check_equal(status_with_key(h, user, key), 200, f"a request as {user} with the key")
        h.shot(page, "apikey-created")

    logout(h, page)
    check_nav(h, page)
    h.shot(page, "logged-out")
    return {"callback_url": callbacks[0] if callbacks else None, "callbacks": callbacks, "api_key": key}


def idp_pages(h):
    """The harness's self-test of the provider's pages, with a stand-in client at `base_url`
    instead of berth: from `args.authorize_url` through login (a wrong password first) and
    consent to the client's `args.redirect_uri`. Returns {"callback_url"}."""
    a = h.args
    page = h.new_page()
    page.goto(a["authorize_url"])
    log_in_at_the_idp(h, page, a["issuer"], a["login"], a["password"])
    page.wait_for_url(lambda url: url.startswith(a["redirect_uri"]), timeout=FLOW_TIMEOUT_MS)
    page.wait_for_load_state("load")
    h.shot(page, "back-at-the-client")
    return {"callback_url": page.url}
