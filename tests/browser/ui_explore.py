"""Scenario (f): /explore answers what GraphQL `GlobalSearch` answers for the same arguments
(the Rust side asked it, for the same user, every page at once), page by page through the
`rel=next` and `rel=prev` pagers; and the filter form round-trips through the URL.

args: {"user": "alice",
       "cases": [{"params": {"search": "", "sort": "name", ...}, "names": [repo], "total": N}],
       "round_trip": {"search": "app", "checked": {"os": "linux", ...}, "sort": "name",
                      "names": [repo]}}
A case whose params hold `page` starts there; the page size is the one /explore used for the
first case that had more than one page.
"""

from urllib.parse import parse_qs, urlencode, urlsplit

from ui_common import data_total, goto, login, path_of, result_names

MAX_PAGES = 50


def explore_matches_global_search(h):
    page = h.new_page()
    login(h, page, h.args["user"])
    page_size = None
    for number, case in enumerate(h.args["cases"]):
        params, names, total = case["params"], case["names"], case["total"]
        label = urlencode(params)
        start = int(params.get("page", "1"))
        if start > 1 and page_size is None:
            h.fail(f"{label}: no page size learnt from an earlier case")
            continue
        goto(h, page, "/explore?" + label)
        h.shot(page, f"explore-{number}")
        pages = [result_names(page)]
        h.check_equal(data_total(page), total, f"{label}: #total data-total")
        h.check(start == 1 or page.locator("a[rel=prev]").count() >= 1, f"{label}: page {start} has no rel=prev")
        while page.locator("a[rel=next]").count() and len(pages) < MAX_PAGES:
            if page_size is None:
                page_size = len(pages[0])
            h.check_equal(len(pages[-1]), page_size, f"{label}: results on page {start + len(pages) - 1}")
            with page.expect_navigation():
                page.locator("a[rel=next]").first.click()
            check_params_kept(h, page, params, label)
            h.check_equal(data_total(page), total, f"{label}: #total on page {start + len(pages)}")
            pages.append(result_names(page))
        seen = [name for names_on_page in pages for name in names_on_page]
        skip = (start - 1) * (page_size or 0)
        h.check_equal(seen, names[skip:], f"{label}: results from page {start} on")
        if len(pages) > 1:
            # Back one page by rel=prev: the page before, again.
            with page.expect_navigation():
                page.locator("a[rel=prev]").first.click()
            h.check_equal(result_names(page), pages[-2], f"{label}: rel=prev from the last page")
            check_params_kept(h, page, params, label)
        elif start == 1:
            h.check_equal(page.locator("a[rel=prev]").count(), 0, f"{label}: rel=prev on the only page")


def filters_round_trip(h):
    trip = h.args["round_trip"]
    page = h.new_page()
    login(h, page, h.args["user"])
    goto(h, page, "/explore?" + urlencode({"search": trip["search"], "sort": "relevance"}))
    form = page.locator("form#filters")
    if not h.check(form.count() == 1, "/explore: no form#filters"):
        return
    for name in ("os", "arch", "signed", "starred", "bookmarked"):
        h.check(form.locator(f'input[type="checkbox"][name="{name}"]').count() >= 1, f"form#filters has no {name} checkbox")
    h.check(form.locator('select[name="sort"]').count() == 1, "form#filters has no select[name=sort]")
    for name, value in trip["checked"].items():
        checkbox(form, name, value).check()
    form.locator('select[name="sort"]').select_option(trip["sort"])
    h.shot(page, "filters-set")
    with page.expect_navigation():
        form.locator('button:not([type="button"]), input[type="submit"]').first.click()
    want = dict(trip["checked"], search=trip["search"], sort=trip["sort"])
    check_params_kept(h, page, want, "the filter form's URL")
    check_form_shows(h, page, trip, "after submitting")
    h.check_equal(result_names(page), trip["names"], "results of the round trip")
    page.reload()
    check_form_shows(h, page, trip, "after a reload")
    h.shot(page, "filters-applied")

    # Unchecking everything drops them from the URL again.
    for name, value in trip["checked"].items():
        checkbox(page.locator("form#filters"), name, value).uncheck()
    with page.expect_navigation():
        page.locator('form#filters button:not([type="button"]), form#filters input[type="submit"]').first.click()
    query = parse_qs(urlsplit(page.url).query)
    for name in trip["checked"]:
        h.check(name not in query, f"{name} still in the URL after unchecking: {path_of(page.url)}")


def check_params_kept(h, page, params, label):
    query = parse_qs(urlsplit(page.url).query, keep_blank_values=True)
    for name, value in params.items():
        if name == "page":
            continue
        h.check(value in query.get(name, []), f"{label}: {name}={value!r} not in {path_of(page.url)}")


def check_form_shows(h, page, trip, when):
    for name, value in trip["checked"].items():
        box = checkbox(page.locator("form#filters"), name, value)
        h.check(box.count() == 1 and box.is_checked(), f"{when}: {name}={value} not checked")
    h.check_equal(page.locator('form#filters select[name="sort"]').input_value(), trip["sort"], f"{when}: sort")


def checkbox(form, name, value):
    """The checkbox `name` of `value`; for "on" (a checkbox without a value attribute) the
    one named so."""
    if value == "on":
        return form.locator(f'input[type="checkbox"][name="{name}"]').first
    return form.locator(f'input[type="checkbox"][name="{name}"][value="{value}"]')
