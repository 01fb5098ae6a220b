"""Scenario (a): an anonymous visitor where only `public/**` is readable without logging in.

args: {"public": [repo], "private": [repo], "public_tag": [repo, tag],
       "private_tag": [repo, tag]}
"""

from ui_common import (
    check_nav,
    check_security_headers,
    data_total,
    goto,
    image_path,
    path_of,
    repo_names,
    result_names,
    submit,
    tag_path,
)


def anonymous_sees_only_public(h):
    public, private = set(h.args["public"]), h.args["private"]
    page = h.new_page()

    # / redirects to /home.
    response = page.goto(h.url("/"))
    h.check_equal(path_of(page.url), "/home", "GET / lands on")
    h.check(response is not None and response.request.redirected_from is not None, "GET / was not redirected")
    check_security_headers(h, response, "/home")
    check_nav(h, page)
    for section in ("#recent", "#popular"):
        names = repo_names(page, section)
        h.check(set(names) <= public, f"/home {section} shows {names}, anonymous reads only {sorted(public)}")
    h.check(repo_names(page, "#recent"), "/home #recent is empty")
    for section in ("#starred", "#bookmarked"):
        h.check(page.locator(section).count() == 0, f"/home shows {section} to anonymous")
    h.shot(page, "home")

    # The search form of /home asks /explore; a private name finds nothing.
    form = page.locator("form#search")
    if h.check(form.count() == 1, "/home: no form#search"):
        h.check_equal((form.get_attribute("method") or "get").lower(), "get", "form#search method")
        h.check_equal(path_of(form.evaluate("f => f.action")), "/explore", "form#search action")
        page.locator('form#search input[name="search"]').fill(private[0])
        with page.expect_navigation():
            submit(page, "form#search")
        h.check(path_of(page.url).startswith("/explore?"), f"search went to {page.url}")
        h.check_equal(result_names(page), [], f"explore for private {private[0]}")
        h.check_equal(data_total(page), 0, f"#total for private {private[0]}")
        h.shot(page, "explore-private-name")

    # Explore lists exactly the public repositories and counts only them.
    goto(h, page, "/explore?search=&sort=name")
    names = result_names(page)
    h.check_equal(sorted(names), sorted(public), "/explore results for anonymous")
    h.check_equal(data_total(page), len(public), "/explore #total for anonymous")
    check_nav(h, page)
    h.shot(page, "explore")

    # A public image: its page, without stars, bookmarks or deletes.
    repo, tag = h.args["public_tag"]
    goto(h, page, image_path(repo))
    h.check_equal(page.locator("h1").first.inner_text().strip(), repo, f"{image_path(repo)} h1")
    h.check(page.locator("#summary").evaluate("e => e.tagName") == "DL", "#summary is not a dl")
    h.check(page.locator("table#tags tbody tr[data-tag][data-digest]").count() >= 1, f"{repo}: no tag rows")
    for selector in ("form.toggle", "button#star", "button#bookmark", "form.delete-tag"):
        h.check(page.locator(selector).count() == 0, f"{repo}: {selector} shown to anonymous")
    check_nav(h, page)
    h.shot(page, "image-public")
    goto(h, page, tag_path(repo, tag))
    h.check(page.locator("section.platform[data-platform]").count() >= 1, f"{repo}:{tag}: no section.platform")
    h.check(page.locator("code.pull-command").count() >= 1, f"{repo}:{tag}: no pull commands")
    h.shot(page, "tag-public")

    # A private image and tag: refused, and nothing of them shown.
    private_repo, private_tag = h.args["private_tag"]
    for path in (image_path(private_repo), tag_path(private_repo, private_tag)):
        goto(h, page, path, status=(403, 404))
        h.check(page.locator("table#tags tbody tr, section.platform, code.pull-command").count() == 0, f"{path}: shows content to anonymous")
        check_nav(h, page)
        h.shot(page, "refused-" + path.split("/")[2])

    # The operator page is for admins: a refusal, or the login page.
    response = goto(h, page, "/operator", status=(200, 401, 403))
    if response is not None and response.status == 200:
        h.check(path_of(page.url).startswith("/login"), f"/operator served to anonymous at {page.url}")
    h.shot(page, "operator-refused")
