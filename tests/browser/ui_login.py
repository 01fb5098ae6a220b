"""Scenario (b): logging in with a wrong password, then the right one, then out; `next`, the
session cookie, an old cookie after logout, and the operator page for admins only.

args: {"user": "alice", "admin": "root"}
"""

from ui_common import (
    PASSWORD,
    REFUSAL_CONSOLE,
    check_nav,
    check_security_headers,
    goto,
    login,
    logout,
    path_of,
)


def wrong_then_right_password_then_logout(h):
    user, admin = h.args["user"], h.args["admin"]
    context = h.new_context()
    page = h.new_page(context=context)

    goto(h, page, "/home")
    check_nav(h, page)
    with page.expect_navigation():
        page.locator('a[href^="/login"]').first.click()
    h.check(path_of(page.url).startswith("/login"), f"the login link went to {page.url}")
    form = page.locator("form#login")
    if h.check(form.count() == 1, "/login: no form#login"):
        h.check_equal((form.get_attribute("method") or "get").lower(), "post", "form#login method")
        h.check_equal(path_of(form.evaluate("f => f.action")).split("?")[0], "/login", "form#login action")
        for name in ("username", "password"):
            h.check(form.locator(f'input[name="{name}"]').count() == 1, f"form#login has no {name} input")
        h.check_equal(form.locator('input[name="password"]').get_attribute("type"), "password", "password input type")
    h.shot(page, "login")

    # A wrong password: an alert, still anonymous, still on /login (a 401/403 answer is fine).
    with h.allowing(REFUSAL_CONSOLE, page):
        response = login(h, page, user, password="not-" + PASSWORD, expect_success=False)
    if response is not None:
        check_security_headers(h, response, "failed login")
        h.check(response.status in (200, 400, 401, 403), f"failed login answered {response.status}")
    alert = page.locator("[role=alert]")
    h.check(alert.count() >= 1 and alert.first.is_visible(), "failed login shows no visible [role=alert]")
    h.check(alert.count() == 0 or alert.first.inner_text().strip() != "", "the [role=alert] is empty")
    h.check(path_of(page.url).startswith("/login"), f"failed login went to {page.url}")
    check_nav(h, page)
    h.shot(page, "login-failed")

    # The right one: /home, the user named, logout offered, no operator link.
    login(h, page, user)
    h.check_equal(path_of(page.url), "/home", "after login")
    check_nav(h, page, user)
    cookies = session_cookies(context, h)
    h.check(cookies, "no cookie set by login")
    for cookie in cookies:
        h.check(cookie["httpOnly"], f"cookie {cookie['name']} is not HttpOnly")
        h.check(cookie["sameSite"] in ("Lax", "Strict"), f"cookie {cookie['name']} SameSite={cookie['sameSite']}")
    h.shot(page, "home-logged-in")
    goto(h, page, "/operator", status=403, what="/operator as a non-admin")
    check_nav(h, page, user)
    h.shot(page, "operator-refused")

    # Logout: anonymous again, and the old cookie no longer logs anyone in.
    logout(h, page)
    check_nav(h, page)
    h.shot(page, "logged-out")
    replay = h.new_context()
    replay.add_cookies(cookies)
    replayed = h.new_page(context=replay)
    goto(h, replayed, "/home")
    check_nav(h, replayed)
    replay.close()

    # `next` brings the user back to where they were going; only to this registry.
    login(h, page, user, next_path="/explore")
    h.check_equal(path_of(page.url).split("?")[0], "/explore", "login with next=/explore lands on")
    logout(h, page)
    for evil in ("http://evil.example/", "//evil.example/", "/\\evil.example/"):
        with h.allowing(r".", page):
            try:
                login(h, page, user, next_path=evil, expect_success=False)
            except Exception as error:  # the browser tried to leave (this machine resolves no names)
                h.fail(f"login with next={evil!r} went off the registry: {error}")
        h.check(page.url.startswith(h.base_url + "/"), f"login with next={evil!r} left for {page.url}")
        if page.url.startswith(h.base_url + "/") and page.locator("form#logout").count():
            logout(h, page)
        else:
            page.context.clear_cookies()

    # An admin sees the operator link and page.
    admin_page = h.new_page()
    login(h, admin_page, admin)
    check_nav(h, admin_page, admin, admin=True)
    with admin_page.expect_navigation():
        admin_page.locator('a[href="/operator"]').first.click()
    h.check_equal(path_of(admin_page.url), "/operator", "the operator link went to")
    goto(h, admin_page, "/operator")
    check_nav(h, admin_page, admin, admin=True)
    h.shot(admin_page, "operator")


def session_cookies(context, h):
    host = h.base_url.split("//", 1)[1].split(":")[0]
    return [c for c in context.cookies() if c["domain"].lstrip(".") == host]
