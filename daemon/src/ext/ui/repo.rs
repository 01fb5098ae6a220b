//! A repository's page (summary, tags, star and bookmark), its toggles and deleting a tag.
//!
//! Rules: a toggle is userprefs' (ext/userprefs: the same checks and codes); deleting a tag
//! is the API's `DELETE /v2/<repo>/manifests/<tag>` (the same handler), offered and allowed
//! only when access control grants delete on the repository; both are POSTs checked by
//! pages::checked_form. After a change the browser is sent back to the page (303).
use askama::Template;
use berth_storage::oci::RepoName;
use berth_storage::search::Pref;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::data;
use super::pages::{checked_form, Chrome, Page};
use super::view::{self, ImageRow, When};
use crate::api::body::{Body, RequestBody};
use crate::config::Action;

#[derive(Template)]
#[template(path = "repo.html")]
struct RepoPage {
    chrome: Chrome,
    name: String,
    href: String,
    description: String,
    vendor: String,
    licenses: String,
    stars: u64,
    downloads: u64,
    updated: When,
    size: String,
    platforms: Vec<String>,
    starred: bool,
    bookmarked: bool,
    can_toggle: bool,
    tags: Vec<ImageRow>,
}

pub async fn page(page: &Page<'_>, name: &str) -> Response<Body> {
    let answer: data::Repo = match page.ask(data::repo_document(), json!({"repo": name})).await {
        Ok(answer) => answer,
        Err(failure) => return page.failed(failure),
    };
    let info = answer.expanded_repo_info;
    let Some(summary) = info.summary.filter(|summary| !summary.name.is_empty()) else {
        return page.error(
            StatusCode::NOT_FOUND,
            &format!("There is no repository {name} you may read."),
        );
    };
    let mut tags: Vec<ImageRow> = info
        .images
        .iter()
        .map(|image| ImageRow::of(image, name, page.now))
        .collect();
    tags.sort_by(|a, b| b.pushed.iso.cmp(&a.pushed.iso).then(a.tag.cmp(&b.tag)));
    let newest = summary.newest_image.as_ref();
    let text = |value: Option<&String>| value.cloned().unwrap_or_default();
    page.render(&RepoPage {
        chrome: page.chrome("explore"),
        href: view::repo_href(name),
        name: summary.name.clone(),
        description: text(newest.and_then(|image| image.description.as_ref())),
        vendor: summary
            .vendors
            .iter()
            .flatten()
            .filter(|vendor| !vendor.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        licenses: text(newest.and_then(|image| image.licenses.as_ref())),
        stars: summary.star_count.unwrap_or(0),
        downloads: summary.download_count.unwrap_or(0),
        updated: When::of(summary.last_updated.as_deref(), page.now),
        size: view::size(summary.size.as_deref()),
        platforms: view::platform_labels(&summary.platforms),
        starred: summary.is_starred.unwrap_or(false),
        bookmarked: summary.is_bookmarked.unwrap_or(false),
        can_toggle: page.visitor.user.is_some(),
        tags,
    })
}

/// Star or bookmark (userprefs' toggle), then back to the repository.
pub async fn toggle(
    page: &Page<'_>,
    req: Request<RequestBody>,
    name: &str,
    pref: Pref,
) -> Response<Body> {
    if let Err(refused) = checked_form(page, req).await {
        return refused;
    }
    let action = match pref {
        Pref::Star => "toggleStar",
        Pref::Bookmark => "toggleBookmark",
    };
    let query = vec![
        ("action".to_owned(), action.to_owned()),
        ("repo".to_owned(), name.to_owned()),
    ];
    let (user, permits) = page.viewer();
    let can_read = |repo: &str| permits(Action::Read, repo);
    match crate::ext::userprefs::toggle(&page.ctx.engine, user.as_deref(), can_read, &query).await {
        Ok(()) => super::redirect(&view::repo_href(name), None),
        Err(crate::ext::userprefs::Refused::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
            page.error(
                status,
                "This repository cannot be starred or bookmarked by you.",
            )
        }
        Err(crate::ext::userprefs::Refused::Storage(error)) => {
            tracing::error!(component = "ui", %error, "a toggle failed");
            page.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The change could not be saved.",
            )
        }
    }
}

#[derive(Template)]
#[template(path = "confirm_delete.html")]
struct ConfirmDelete {
    chrome: Chrome,
    repo: String,
    tag: String,
    digest: String,
    action: String,
    back: String,
}

/// Whether the visitor may delete in `name` (what the API would ask of access control).
pub fn may_delete(page: &Page<'_>, name: &str) -> bool {
    let (_, permits) = page.viewer();
    permits(Action::Delete, name)
}

/// The question before a tag is deleted.
pub async fn confirm_delete(page: &Page<'_>, name: &str, tag: &str) -> Response<Body> {
    if !may_delete(page, name) {
        return page.error(
            StatusCode::FORBIDDEN,
            "You may not delete tags of this repository.",
        );
    }
    let digest = match tag_digest(page, name, tag).await {
        Ok(Some(digest)) => digest,
        Ok(None) => return page.error(StatusCode::NOT_FOUND, "There is no such tag."),
        Err(error) => {
            tracing::error!(component = "ui", %error, "reading a tag failed");
            return page.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The tag could not be read.",
            );
        }
    };
    let back = view::tag_href(name, tag);
    page.render(&ConfirmDelete {
        chrome: page.chrome("explore"),
        repo: name.to_owned(),
        tag: tag.to_owned(),
        digest,
        action: format!("{back}/delete"),
        back,
    })
}

/// The digest `tag` names in `name`, if both exist.
async fn tag_digest(
    page: &Page<'_>,
    name: &str,
    tag: &str,
) -> Result<Option<String>, berth_storage::StorageError> {
    let (Ok(repo), Ok(parsed)) = (name.parse::<RepoName>(), tag.parse()) else {
        return Ok(None);
    };
    let found = page.ctx.engine.get_manifest(&repo, &parsed).await?;
    Ok(found.map(|manifest| manifest.digest.to_string()))
}

/// Deletes the tag (the API's handler), then back to the repository.
pub async fn delete_tag(
    page: &Page<'_>,
    req: Request<RequestBody>,
    name: &str,
    tag: &str,
) -> Response<Body> {
    if let Err(refused) = checked_form(page, req).await {
        return refused;
    }
    if !may_delete(page, name) {
        return page.error(
            StatusCode::FORBIDDEN,
            "You may not delete tags of this repository.",
        );
    }
    let Ok(repo) = name.parse::<RepoName>() else {
        return page.error(StatusCode::NOT_FOUND, "There is no such repository.");
    };
    match crate::api::manifests::delete(page.ctx, &repo, tag).await {
        Ok(_) => {
            tracing::info!(component = "ui", user = page.visitor.user.as_deref().unwrap_or(""), repo = %repo, tag, "tag deleted from the UI");
            super::redirect(&view::repo_href(name), None)
        }
        Err(error) => {
            let status = error.status();
            page.error(status, &format!("The tag was not deleted: {error}"))
        }
    }
}
