"""The image and tag pages against what the Rust side pushed: tag rows and digests, the
platforms of an index with their layers, history lines, referrers, signatures, the images an
image is built on and used by, and the pull commands (naming the host the browser used, each
copied to the clipboard by its button).

args: {"user": "alice", "host": "127.0.0.1:PORT", "other_base_url": "http://localhost:PORT",
       "tags": {"repo": R, "digests": {tag: digest}},
       "index": {"repo": R, "tag": T, "layers": {"linux/amd64": N, ...}},
       "history": {"repo": R, "tag": T, "layers": N, "lines": [created_by]},
       "signed": {"repo": R, "tag": T, "tool": "cosign"},
       "referrer": {"repo": R, "tag": T, "artifact_type": A, "digest": D},
       "built_on": {"repo": R, "tag": T, "images": [[repo, tag]]},
       "used_by": {"repo": R, "tag": T, "images": [[repo, tag]]},
       "pull": {"repo": R, "tag": T}, "public_tag": [repo, tag]}
Returns {"pull_commands": [text]} for the Rust side to run.
"""

from ui_common import goto, image_path, login, parse_image_href, tag_path, text_of

PLATFORM_SEPARATOR = "/"
CLIENTS = ("docker", "podman", "skopeo", "oras", "crane")


def image_and_tag_pages(h):
    context = h.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=h.base_url)
    page = h.new_page(context=context)
    login(h, page, h.args["user"])

    tags = h.args["tags"]
    goto(h, page, image_path(tags["repo"]))
    h.check_equal(text_of(page, "h1"), tags["repo"], "image page h1")
    h.check(page.locator("#summary dt").count() >= 1 and page.locator("#summary dd").count() >= 1, "#summary has no dt/dd")
    rows = page.locator("table#tags tbody tr[data-tag][data-digest]").evaluate_all(
        "rows => Object.fromEntries(rows.map(r => [r.dataset.tag, r.dataset.digest]))"
    )
    h.check_equal(rows, tags["digests"], f"{tags['repo']} tag rows")
    h.shot(page, "image")

    index = h.args["index"]
    goto(h, page, tag_path(index["repo"], index["tag"]))
    sections = page.locator("section.platform[data-platform]")
    shown = {}
    for i in range(sections.count()):
        section = sections.nth(i)
        platform = section.get_attribute("data-platform")
        # A variant may follow os/arch (linux/arm64/v8): the contract names os/arch.
        key = PLATFORM_SEPARATOR.join(platform.split(PLATFORM_SEPARATOR)[:2])
        shown[key] = section.locator("table.layers tbody tr").count()
    h.check_equal(shown, index["layers"], f"{index['repo']}:{index['tag']} platforms and their layer rows")
    h.shot(page, "tag-index")

    history = h.args["history"]
    goto(h, page, tag_path(history["repo"], history["tag"]))
    table = page.locator("section.platform table.layers").first
    if h.check(page.locator("section.platform table.layers").count() >= 1, "history tag page: no table.layers"):
        count = table.locator("tbody tr").count()
        h.check(history["layers"] <= count <= history["layers"] + len(history["lines"]), f"history tag page: {count} layer rows for {history['layers']} layers")
        text = table.inner_text()
        for line in history["lines"]:
            h.check(line in text, f"history line {line!r} not in the layers table")
    h.shot(page, "tag-history")

    signed = h.args["signed"]
    goto(h, page, tag_path(signed["repo"], signed["tag"]))
    h.check(signed["tool"] in text_of(page, "#signatures").lower(), f"#signatures does not name {signed['tool']}: {text_of(page, '#signatures')!r}")
    referrer = h.args["referrer"]
    if (referrer["repo"], referrer["tag"]) != (signed["repo"], signed["tag"]):
        goto(h, page, tag_path(referrer["repo"], referrer["tag"]))
    text = text_of(page, "#referrers")
    h.check(referrer["artifact_type"] in text, f"#referrers does not show {referrer['artifact_type']}: {text!r}")
    h.shot(page, "tag-signed")

    for key in ("built_on", "used_by"):
        relation = h.args[key]
        selector = "#" + key.replace("_", "-") + " a"
        goto(h, page, tag_path(relation["repo"], relation["tag"]))
        linked = [parse_image_href(href or "") for href in page.locator(selector).evaluate_all("links => links.map(a => a.getAttribute('href'))")]
        for repo, tag in relation["images"]:
            h.check((repo, tag) in linked or (repo, None) in linked, f"{selector} of {relation['repo']}:{relation['tag']} lacks {repo}:{tag}: {linked}")
        h.shot(page, "tag-" + key)

    pull = h.args["pull"]
    commands = check_pull_commands(h, page, pull, h.args["host"])
    # The host is the one the browser used, not one the daemon guessed.
    # (Anonymous there: the session cookie is the other host's. So a public image.)
    other = h.new_page()
    other_base = h.args["other_base_url"]
    public_repo, public_tag = h.args["public_tag"]
    response = other.goto(other_base + tag_path(public_repo, public_tag))
    h.check(response is not None and response.status == 200, f"{other_base}: {tag_path(public_repo, public_tag)} answered {response and response.status}")
    other_host = other_base.split("//", 1)[1]
    for command in other.locator("code.pull-command").all_inner_texts():
        h.check(other_host in command, f"from {other_base}: {command!r} does not name {other_host}")
    h.shot(other, "tag-pull-other-host")
    return {"pull_commands": commands}


def check_pull_commands(h, page, pull, host):
    goto(h, page, tag_path(pull["repo"], pull["tag"]))
    commands = [c.strip() for c in page.locator("code.pull-command").all_inner_texts()]
    for client in CLIENTS:
        h.check(any(c.split()[0:1] == [client] for c in commands), f"no pull command starting with {client}: {commands}")
    for command in commands:
        h.check(host in command and pull["repo"] in command, f"{command!r} names not {host} and {pull['repo']}")
    codes = page.locator("code.pull-command")
    for i in range(codes.count()):
        # Its button: the nearest button.copy around it (a sibling, or in its parent's parent).
        button = codes.nth(i).locator("xpath=ancestor::*[.//button[contains(concat(' ', normalize-space(@class), ' '), ' copy ')]][1]").locator("button.copy")
        if not h.check(button.count() >= 1, f"no button.copy next to {commands[i]!r}"):
            continue
        button.first.click()
        copied = page.evaluate("() => navigator.clipboard.readText()")
        h.check_equal(copied.strip(), commands[i], f"copy button of pull command #{i}")
    h.shot(page, "tag-pull")
    return commands
