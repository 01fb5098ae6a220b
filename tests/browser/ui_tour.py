"""Scenarios (g) and (h): every page, as anonymous, a user and an admin, on a desktop and a
phone (390x844), light and dark: the security headers of every response (documents in full;
stylesheets, scripts, fonts and images nosniff and CORP), the header nav, no sideways scroll
on the phone, keyboard use on the desktop in the light scheme (the first Tab reaches a visible
"Skip to content" link, Enter on it moves on to the page's content, focus is outlined), and a
screenshot of each. Console errors and CSP violations anywhere fail the
run (the harness); refusal pages (403, 404) are visited too and must be as clean.

args: {"visits": [{"user": null | "alice", "admin": false,
                   "pages": [path], "refused": [[path, [status]]]}]}
"""

from ui_common import (
    check_nav,
    check_no_horizontal_scroll,
    check_recorded_responses,
    goto,
    login,
    record_responses,
    slug,
)

LOOKS = [(False, "light"), (True, "dark"), (False, "dark"), (True, "light")]


def every_page(h):
    for visit in h.args["visits"]:
        user, admin = visit["user"], visit.get("admin", False)
        who = user or "anonymous"
        for phone, scheme in LOOKS:
            look = f"{'phone' if phone else 'desktop'}-{scheme}"
            page = h.new_page(phone=phone, color_scheme=scheme)
            responses = record_responses(h, page)
            if user:
                login(h, page, user)
            visits = [(path, 200) for path in visit["pages"]]
            visits += [(path, tuple(statuses)) for path, statuses in visit.get("refused", [])]
            for path, status in visits:
                what = f"{path} as {who} ({look})"
                goto(h, page, path, status=status, what=what)
                check_nav(h, page, user, admin=admin)
                if phone:
                    check_no_horizontal_scroll(h, page, what)
                elif scheme == "light":
                    check_keyboard(h, page, what)
                h.shot(page, f"{who}-{look}-{slug(path)}")
            check_recorded_responses(h, responses, f"{who} ({look})")
            page.context.close()


FOCUSED = """() => {
  const element = document.activeElement;
  const main = document.getElementById('main');
  const box = element.getBoundingClientRect();
  return {
    cls: element.className, href: element.getAttribute('href'),
    visible: box.width > 0 && box.left >= 0 && box.top >= 0,
    outline: getComputedStyle(element).outlineStyle,
    after_main: !!main && (main.contains(element)
      || !!(main.compareDocumentPosition(element) & Node.DOCUMENT_POSITION_FOLLOWING)),
  };
}"""


def check_keyboard(h, page, what):
    if page.evaluate("() => document.activeElement !== document.body"):
        # A page that focuses its form (the login page) starts there, not at the skip link.
        after = page.evaluate(FOCUSED)
        h.check(after["after_main"], f"{what}: the page focused {after}, outside its content")
        return
    page.keyboard.press("Tab")
    skip = page.evaluate(FOCUSED)
    h.check(skip["cls"] == "skip" and skip["href"] == "#main", f"{what}: the first Tab reached {skip}, not the skip link")
    h.check(skip["visible"], f"{what}: the focused skip link is off screen: {skip}")
    h.check(skip["outline"] not in ("none", ""), f"{what}: the focused skip link has no outline: {skip}")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    after = page.evaluate(FOCUSED)
    h.check(after["after_main"], f"{what}: Tab after the skip link went to {after}, not into the content")
    h.check(after["outline"] not in ("none", ""), f"{what}: keyboard focus is not outlined: {after}")
