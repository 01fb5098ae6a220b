//! The userprefs extension: `PUT /v2/_zot/ext/userprefs?action=toggleStar|toggleBookmark&repo=R`,
//! each user's stars and bookmarks, kept by the engine (search/prefs.rs) and read back
//! through search (`StarredRepos`, `BookmarkedRepos`, `IsStarred`, `IsBookmarked`,
//! `StarCount`). zot enables it with search and its UI; berth with search (the UI's toggles call
//! [`toggle`] in process whenever the UI is on).
//!
//! Status codes (zot's): 400 for a missing or unknown `action` or a missing `repo`; 403 for
//! an anonymous caller or a repository the caller may not read; 404 for a repository that
//! does not exist (zot checks this for stars only; berth for bookmarks too: a bookmark of
//! nothing helps nobody); 200 with an empty body when toggled. A refusal stores nothing.
use berth_storage::oci::RepoName;
use berth_storage::search::Pref;
use berth_storage::{Engine, StorageError};

/// The route, as zot's.
pub const PATH: &str = "/v2/_zot/ext/userprefs";

/// Why a toggle was refused (its status code), or the engine's failure.
#[derive(Debug)]
pub enum Refused {
    Status(u16),
    Storage(StorageError),
}

/// Toggles what `query` asks for `user`; `can_read` answers for the named repository.
pub async fn toggle(
    engine: &Engine,
    user: Option<&str>,
    can_read: impl Fn(&str) -> bool,
    query: &[(String, String)],
) -> Result<(), Refused> {
    let get = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let pref = match get("action") {
        Some("toggleStar") => Pref::Star,
        Some("toggleBookmark") => Pref::Bookmark,
        _ => return Err(Refused::Status(400)),
    };
    let repo = get("repo").ok_or(Refused::Status(400))?;
    let Some(user) = user else {
        return Err(Refused::Status(403));
    };
    let Ok(name) = repo.parse::<RepoName>() else {
        return Err(Refused::Status(404));
    };
    if !can_read(name.as_str()) {
        return Err(Refused::Status(403));
    }
    if !engine.repo_exists(&name).await.map_err(Refused::Storage)? {
        return Err(Refused::Status(404));
    }
    engine
        .toggle_pref(user, &name, pref)
        .await
        .map_err(Refused::Storage)?;
    Ok(())
}

/// The userprefs extension in the list (present while search is enabled).
pub struct UserprefsExt {
    pub enabled: bool,
}

const ROUTES: &[crate::ext::Route] = &[crate::ext::Route {
    path: PATH,
    methods: &[hyper::Method::PUT, hyper::Method::OPTIONS],
    need: crate::ext::Need::Nothing,
}];

impl crate::ext::Extension for UserprefsExt {
    fn name(&self) -> &'static str {
        "userprefs"
    }

    fn routes(&self) -> &[crate::ext::Route] {
        ROUTES
    }

    fn handle<'a>(
        &'a self,
        req: hyper::Request<crate::api::body::RequestBody>,
        ctx: &'a crate::api::Ctx,
        user: Option<&'a str>,
    ) -> crate::ext::Reply<'a> {
        Box::pin(async move {
            if !self.enabled {
                return Err(crate::api::error::ApiError::NotFound);
            }
            if req.method() == hyper::Method::OPTIONS {
                return Ok(crate::ext::preflight("PUT,OPTIONS"));
            }
            let query: Vec<(String, String)> =
                form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
                    .into_owned()
                    .collect();
            let permits = crate::ext::search::permits(ctx, user);
            let can_read = |repo: &str| permits(crate::config::Action::Read, repo);
            let status = match toggle(&ctx.engine, user, can_read, &query).await {
                Ok(()) => hyper::StatusCode::OK,
                Err(Refused::Status(code)) => {
                    hyper::StatusCode::from_u16(code).expect("userprefs codes are valid")
                }
                Err(Refused::Storage(error)) => return Err(error.into()),
            };
            Ok(hyper::Response::builder()
                .status(status)
                .header(hyper::header::CONTENT_LENGTH, 0)
                .body(crate::api::body::empty())
                .expect("static headers are valid"))
        })
    }

    fn discover(&self, _ctx: &crate::api::Ctx) -> Vec<crate::ext::Listed> {
        match self.enabled {
            true => vec![crate::ext::Listed {
                entry: crate::ext::Entry::Zot,
                endpoint: PATH,
                offers: "userprefs",
            }],
            false => Vec::new(),
        }
    }
}
