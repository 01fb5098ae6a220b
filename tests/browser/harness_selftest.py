"""Scenarios of tests/tests/ui_browser_harness.rs: they prove the harness sees what it must
(console errors, page errors, CSP violations, failed checks, exceptions) and nothing else, and
that its viewports and color schemes are what they claim."""

import os
import time


def visit(h):
    """Visits every path of `args.paths`, one screenshot each; returns their titles."""
    page = h.new_page()
    titles = {}
    for path in h.args["paths"]:
        response = page.goto(h.url(path))
        h.check(response is not None and response.ok, f"{path}: answered {response and response.status}")
        # Late events (a blocked inline script, a deferred console.error) land before the shot.
        page.wait_for_load_state("load")
        titles[path] = page.title()
        h.shot(page, path.strip("/").replace(".html", "") or "root")
    return {"titles": titles}


def checks(h):
    """Two failed checks and a passed one; the scenario goes on after a failure."""
    h.check(True, "never recorded")
    h.check(False, "first deliberate failure")
    h.check_equal(1 + 1, 3, "second deliberate failure")
    return {"reached_end": True}


def raises(h):
    """Raises with a page open: a failure with the traceback, and a screenshot of the page."""
    page = h.new_page()
    page.goto(h.url("/clean.html"))
    raise RuntimeError("deliberate exception")


def allowed(h):
    """A 403 page inside `allowing` (expected), another outside it (an error), and a page
    allowed it for its whole life (`allow_on`), closed at once."""
    page = h.new_page()
    with h.allowing(r"status of 403", page):
        page.goto(h.url("/forbidden.html"))
    page.goto(h.url("/forbidden-again.html"))
    page.wait_for_timeout(100)
    refused = page.context.new_page()
    h.allow_on(refused, r"status of 403")
    refused.goto(h.url("/forbidden.html?whole-life"))
    refused.close()
    page.wait_for_timeout(100)


def viewports(h):
    """Desktop light and phone dark: what the page measures in each."""
    measured = {}
    for name, phone, scheme in [("desktop-light", False, "light"), ("phone-dark", True, "dark")]:
        page = h.new_page(phone=phone, color_scheme=scheme)
        page.goto(h.url("/clean.html"))
        measured[name] = page.evaluate(
            """() => ({
                width: window.innerWidth,
                height: window.innerHeight,
                dark: window.matchMedia('(prefers-color-scheme: dark)').matches,
                touch: navigator.maxTouchPoints > 0,
            })"""
        )
        h.shot(page, name)
    return measured


def hang(h):
    """Opens a page, names every process under this one (`pid/command`) on stderr, then sleeps past any
    deadline: the Rust side must kill the run and every one of those processes."""
    page = h.new_page()
    page.goto(h.url("/clean.html"))
    print("DESCENDANTS: " + " ".join(f"{pid}/{comm(pid)}" for pid in descendants(os.getpid())), flush=True)
    time.sleep(600)


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip().replace(" ", "_") or "?"
    except OSError:
        return "?"


def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # Field 4 (ppid) follows the parenthesised command, which may hold spaces.
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found
