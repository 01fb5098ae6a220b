"""Scenario (e): while the user is logged in, a page of another site (cross_site_post.html,
served by the Rust side on another port) auto-posts berth's own star, bookmark and logout
forms without the user's CSRF token: with none, an empty one, and another user's. Every one
must change nothing; from 127.0.0.1 itself (same site, other origin: the session cookie is
sent whatever its SameSite) each must be refused with a 4xx. Then the same forms, submitted
by the user on berth's page, do work (so the refusals were not of a wrong URL).

args: {"user": "alice", "other": "bob", "repo": "a/x",
       "attacker_origins": ["http://127.0.0.1:PORT", "http://localhost:PORT"]}
"""

import json
from urllib.parse import quote

from ui_common import REFUSAL_CONSOLE, goto, image_path, logged_in_page, logout, text_of

# The fields of the form around `button` except the token, and the button's own name=value
# (a click sends it; it may say which toggle this is).
FORM_FIELDS = """button => {
  const form = button.closest('form');
  const fields = {};
  for (const element of form.elements) {
    if (!element.name || element.name === 'csrf') continue;
    if (element.tagName === 'BUTTON' || element.type === 'submit') continue;
    if ((element.type === 'checkbox' || element.type === 'radio') && !element.checked) continue;
    fields[element.name] = element.value;
  }
  if (button.name) fields[button.name] = button.value;
  return {action: form.action, fields};
}"""


def cross_site_posts_refused(h):
    user, repo = h.args["user"], h.args["repo"]
    victim = logged_in_page(h, user)
    goto(h, victim, image_path(repo))
    targets = {}
    for name, button in (
        ("star", "button#star"),
        ("bookmark", "button#bookmark"),
        ("logout", "form#logout button, form#logout input[type=submit]"),
    ):
        locator = victim.locator(button)
        if h.check(locator.count() >= 1, f"{repo}: no {button}"):
            targets[name] = locator.first.evaluate(FORM_FIELDS)
    before = state(victim)
    h.check_equal(before, {"star": "false", "bookmark": "false", "count": "0", "user": user}, "before the attacks")

    thief = logged_in_page(h, h.args["other"])
    goto(h, thief, image_path(repo))
    other_token = thief.locator('form.toggle input[name="csrf"]').first.get_attribute("value")
    thief.context.close()

    attempts = []
    for origin in h.args["attacker_origins"]:
        same_site = origin.startswith("http://127.0.0.1:")
        for name, target in targets.items():
            for token_name, token in (("no token", None), ("an empty token", ""), ("another user's token", other_token)):
                fields = dict(target["fields"])
                if token is not None:
                    fields["csrf"] = token
                what = f"{name} POSTed from {origin} with {token_name}"
                status = attack(h, victim, origin, target["action"], fields)
                attempts.append({"what": what, "status": status})
                if same_site:
                    h.check(status is not None and 400 <= status < 500, f"{what}: answered {status}, not refused")
                goto(h, victim, image_path(repo))
                h.check_equal(state(victim), before, f"after {what}")
    h.shot(victim, "after-attacks")

    # The control: the user's own clicks do toggle and log out.
    victim.locator("button#star").click()
    victim.wait_for_selector('button#star[aria-pressed="true"]', state="attached")
    victim.locator("button#star").click()
    victim.wait_for_selector('button#star[aria-pressed="false"]', state="attached")
    logout(h, victim)
    return {"attempts": attempts}


def attack(h, victim, origin, action, fields):
    """Opens the other site's page in the victim's context (its cookies); returns the status
    of the POST it sends to berth."""
    page = victim.context.new_page()
    h.allow_on(page, REFUSAL_CONSOLE)
    url = f"{origin}/cross_site_post.html?action={quote(action, safe='')}&fields={quote(json.dumps(fields), safe='')}"
    status = None
    try:
        with page.expect_response(lambda r: r.request.method == "POST" and r.url.startswith(h.base_url)) as posted:
            page.goto(url)
        status = posted.value.status
        page.wait_for_load_state("load")
    except Exception as error:
        h.fail(f"the POST from {origin} to {action} never answered: {error}")
    page.close()
    return status


def state(page):
    star, bookmark = page.locator("button#star"), page.locator("button#bookmark")
    return {
        "star": star.first.get_attribute("aria-pressed") if star.count() else None,
        "bookmark": bookmark.first.get_attribute("aria-pressed") if bookmark.count() else None,
        "count": "".join(c for c in text_of(page, "#star-count") if c.isdigit()),
        "user": text_of(page, "#user"),
    }
