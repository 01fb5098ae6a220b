"""Scenario (k): a logged-in user creates an API key on /apikeys, reads it once from the
copy-once display, uses it as the Basic password of a registry request, sees it listed
(without the key), revokes it with the page's button, and the request then fails.

args: {"user": "alice"}
"""

import base64
import urllib.error
import urllib.request

from ui_common import check_post_form, goto, logged_in_page, path_of, submit


def status_with_key(h, user, key):
    token = base64.b64encode(f"{user}:{key}".encode()).decode()
    request = urllib.request.Request(h.url("/v2/_catalog"), headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def create_use_list_and_revoke(h):
    user = h.args["user"]
    page = logged_in_page(h, user)
    link = page.locator("a#apikeys-link")
    if not h.check(link.count() == 1, "no API keys link in the header"):
        return
    with page.expect_navigation():
        link.click()
    h.check_equal(path_of(page.url), "/apikeys", "the API keys link went to")
    check_post_form(h, page, "form#create-key", "/apikeys/create", "/apikeys")
    h.check(page.locator("#new-key").count() == 0, "a key shown before any was created")
    h.shot(page, "apikeys-empty")

    page.locator("form#create-key input[name=label]").fill("browser key")
    with page.expect_navigation() as navigation:
        submit(page, "form#create-key")
    h.check_equal(navigation.value.status, 201, "the create answer's status")
    shown = page.locator("#new-key code#api-key")
    if not h.check(shown.count() == 1, "no copy-once display"):
        return
    key = shown.inner_text().strip()
    h.check(key.startswith("zak_") and len(key) == 36, f"the key shown is {key!r}")
    h.check("will not be shown again" in page.locator("#new-key").inner_text(), "no once-only note")
    copy = page.locator("#new-key button.copy")
    h.check(copy.count() == 1 and copy.first.is_visible(), "no visible copy button")
    rows = page.locator("table#key-list tbody tr[data-uuid]")
    h.check_equal(rows.count(), 1, "keys listed after the create")
    h.check("browser key" in rows.first.inner_text(), "the label is not listed")
    h.shot(page, "apikeys-created")

    h.check_equal(status_with_key(h, user, key), 200, "a request with the key")
    # Reloaded: listed, never shown again.
    goto(h, page, "/apikeys")
    h.check(page.locator("#new-key").count() == 0, "the key is shown again on reload")
    h.check(key not in page.content(), "the key is in the page after reload")
    h.check_equal(page.locator("table#key-list tbody tr[data-uuid]").count(), 1, "keys listed on reload")
    check_post_form(h, page, "form.revoke", "/apikeys/revoke", "the key row")
    h.shot(page, "apikeys-listed")

    with page.expect_navigation():
        submit(page, "table#key-list form.revoke")
    h.check_equal(path_of(page.url), "/apikeys", "after revoking")
    h.check_equal(page.locator("table#key-list tbody tr[data-uuid]").count(), 0, "keys listed after the revoke")
    h.shot(page, "apikeys-revoked")
    h.check_equal(status_with_key(h, user, key), 401, "a request with the revoked key")
