"""Scenario (d): deleting a tag is offered only to a user who may delete, goes through a
confirm page, and removes the tag (the Rust side then asks GraphQL and the tag list).

args: {"repo": "scratch/app", "keep": "keep", "delete": "gone",
       "deleter": "alice", "reader": "bob"}
"""

from ui_common import (
    check_post_form,
    delete_path,
    goto,
    image_path,
    logged_in_page,
    path_of,
    submit,
    tag_path,
)


def delete_offered_only_with_permission(h):
    repo, keep, gone = h.args["repo"], h.args["keep"], h.args["delete"]

    # A reader: the tags, no delete forms, and no working confirm page.
    reader = logged_in_page(h, h.args["reader"])
    goto(h, reader, image_path(repo))
    h.check_equal(sorted(tags_shown(reader)), sorted([keep, gone]), f"{repo} tags for the reader")
    h.check_equal(reader.locator("form.delete-tag").count(), 0, f"{repo}: form.delete-tag for a reader")
    h.shot(reader, "image-reader")
    goto(h, reader, delete_path(repo, gone), status=(403, 404), what="delete page as a reader")
    h.check_equal(reader.locator("form#confirm-delete").count(), 0, "form#confirm-delete for a reader")
    h.shot(reader, "delete-refused")

    # A deleter: one delete form per row, then the confirm page, then the tag is gone.
    deleter = logged_in_page(h, h.args["deleter"])
    goto(h, deleter, image_path(repo))
    rows = deleter.locator("table#tags tbody tr[data-tag]")
    h.check_equal(deleter.locator("table#tags tbody tr[data-tag] form.delete-tag").count(), rows.count(), f"{repo}: delete forms per tag row")
    h.shot(deleter, "image-deleter")
    row = deleter.locator(f'table#tags tbody tr[data-tag="{gone}"]')
    if not h.check(row.count() == 1, f"{repo}: no row for {gone}"):
        return
    with deleter.expect_navigation():
        submit_within(row, "form.delete-tag")
    h.check_equal(path_of(deleter.url).split("?")[0], delete_path(repo, gone), "the delete button went to")
    # Nothing is deleted before the confirmation.
    still = logged_in_page(h, h.args["reader"])
    goto(h, still, image_path(repo))
    h.check(gone in tags_shown(still), f"{gone} gone before the confirmation")
    still.context.close()

    check_post_form(h, deleter, "form#confirm-delete", None, "the delete page")
    h.check(tag_path(repo, gone) in deleter.content() or gone in deleter.locator("body").inner_text(), "the delete page does not name the tag")
    h.shot(deleter, "delete-confirm")
    with deleter.expect_navigation():
        submit(deleter, "form#confirm-delete")
    goto(h, deleter, image_path(repo))
    h.check_equal(tags_shown(deleter), [keep], f"{repo} tags after the delete")
    h.shot(deleter, "image-after-delete")
    goto(h, deleter, tag_path(repo, gone), status=404, what="the deleted tag's page")


def tags_shown(page):
    return page.locator("table#tags tbody tr[data-tag]").evaluate_all("rows => rows.map(r => r.dataset.tag)")


def submit_within(scope, form_selector):
    button = scope.locator(f'{form_selector} button:not([type="button"]), {form_selector} input[type="submit"]')
    button.first.click()
