"""Scenario (c): a star and a bookmark persist across a reload, and (`after_restart`, run by
the Rust side once berth has restarted on the same data) across a restart.

args: {"user": "alice", "repo": "a/x", "state_path": "/tmp/.../state.json"}
"""

import re

from ui_common import (
    check_nav,
    check_post_form,
    goto,
    image_path,
    login,
    repo_names,
    result_names,
    text_of,
)


def star_and_bookmark(h):
    user, repo = h.args["user"], h.args["repo"]
    context = h.new_context()
    page = h.new_page(context=context)
    login(h, page, user)
    goto(h, page, image_path(repo))
    check_nav(h, page, user)
    forms = page.locator("form.toggle")
    h.check(forms.count() >= 1, f"{repo}: no form.toggle")
    for index in range(forms.count()):
        check_post_form(h, page, f"form.toggle >> nth={index}", None, f"{repo} form.toggle #{index}")
    check_toggles(h, page, repo, starred=False, bookmarked=False, stars=0)
    h.shot(page, "image-before")

    toggle(h, page, "star", True)
    check_toggles(h, page, repo, starred=True, bookmarked=False, stars=1)
    toggle(h, page, "bookmark", True)
    check_toggles(h, page, repo, starred=True, bookmarked=True, stars=1)
    h.shot(page, "image-starred-bookmarked")

    page.reload()
    check_toggles(h, page, repo, starred=True, bookmarked=True, stars=1, when="after a reload")
    check_home_lists(h, page, repo)
    h.shot(page, "home-starred-bookmarked")
    for flag in ("starred", "bookmarked"):
        goto(h, page, f"/explore?search=&{flag}=on&sort=name")
        h.check_equal(result_names(page), [repo], f"/explore {flag}=on")
    context.storage_state(path=h.args["state_path"])


def after_restart(h):
    """With the cookies saved before the restart: still logged in (sessions survive) or,
    if not, after logging in again, the star and bookmark are there; then both are toggled off."""
    user, repo = h.args["user"], h.args["repo"]
    page = h.new_page(storage_state=h.args["state_path"])
    goto(h, page, "/home")
    session_survived = page.locator("#user").count() == 1
    if not session_survived:
        check_nav(h, page)
        login(h, page, user)
    check_home_lists(h, page, repo)
    goto(h, page, image_path(repo))
    check_toggles(h, page, repo, starred=True, bookmarked=True, stars=1, when="after a restart")
    h.shot(page, "image-after-restart")
    toggle(h, page, "star", False)
    toggle(h, page, "bookmark", False)
    page.reload()
    check_toggles(h, page, repo, starred=False, bookmarked=False, stars=0, when="toggled off")
    return {"session_survived": session_survived}


def toggle(h, page, which, pressed):
    """Clicks `button#<which>` and waits for it to show `aria-pressed=<pressed>` (after the
    form's POST and redirect, or a script's update)."""
    page.locator(f"button#{which}").click()
    want = "true" if pressed else "false"
    try:
        page.wait_for_selector(f'button#{which}[aria-pressed="{want}"]', state="attached")
    except Exception:
        h.fail(f"button#{which} never showed aria-pressed={want} after a click")


def check_toggles(h, page, repo, starred, bookmarked, stars, when="now"):
    where = f"{repo} {when}"
    for which, pressed in (("star", starred), ("bookmark", bookmarked)):
        button = page.locator(f"button#{which}")
        if h.check(button.count() == 1, f"{where}: no button#{which}"):
            h.check_equal(button.get_attribute("aria-pressed"), "true" if pressed else "false", f"{where}: button#{which} aria-pressed")
    count = re.search(r"\d+", text_of(page, "#star-count"))
    h.check_equal(int(count.group()) if count else None, stars, f"{where}: #star-count")


def check_home_lists(h, page, repo):
    goto(h, page, "/home")
    for section in ("#starred", "#bookmarked"):
        h.check(repo in repo_names(page, section), f"/home {section} lacks {repo}: {repo_names(page, section)}")
