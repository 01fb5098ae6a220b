//! The pages every visitor has: home, explore, login and logout, and the error page; the
//! per-request [`Page`] they are drawn for.
use askama::Template;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use time::OffsetDateTime;

use super::data::{self, Failure};
use super::session::{self, Visitor};
use super::view::{ImageRow, RepoCard};
use super::UiExt;
use crate::api::body::{Body, RequestBody};
use crate::api::Ctx;
use crate::ext::search::Permits;

/// Repositories per list on the home page.
const HOME_LIST: i64 = 8;
/// Results per explore page.
pub const EXPLORE_PAGE: u64 = 20;
/// Filters the explore page offers (zui's).
const OPERATING_SYSTEMS: &[&str] = &["linux", "windows", "darwin", "freebsd"];
const ARCHITECTURES: &[&str] = &[
    "amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64",
];
/// The explore page's orders: its URL value, GraphQL's, and how it reads.
const SORTS: &[(&str, &str, &str)] = &[
    ("relevance", "RELEVANCE", "Relevance"),
    ("updated", "UPDATE_TIME", "Recently updated"),
    ("name", "ALPHABETIC_ASC", "Name"),
    ("downloads", "DOWNLOADS", "Downloads"),
    ("stars", "STARS", "Stars"),
];

/// One request to draw a page for.
pub struct Page<'a> {
    pub ui: &'a UiExt,
    pub ctx: &'a Ctx,
    pub visitor: Visitor,
    /// The request's path and query, to come back to after login.
    pub here: String,
    /// The query's pairs, decoded.
    pub query: Vec<(String, String)>,
    /// The `Host` the browser used (the pull commands name it).
    pub host: String,
    pub now: OffsetDateTime,
    pub peer: Option<std::net::SocketAddr>,
}

/// What the layout shows around every page.
pub struct Chrome {
    pub version: &'static str,
    pub user: Option<String>,
    pub csrf: String,
    pub admin: bool,
    pub login: bool,
    /// The API keys page is offered (`http.auth.apikey`, logged in).
    pub apikeys: bool,
    pub section: &'static str,
    pub here: String,
}

impl<'a> Page<'a> {
    pub fn new(
        ui: &'a UiExt,
        ctx: &'a Ctx,
        req: &Request<RequestBody>,
        visitor: Visitor,
    ) -> Page<'a> {
        let uri = req.uri();
        Page {
            ui,
            ctx,
            visitor,
            here: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
            query: form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
            host: req
                .headers()
                .get(hyper::header::HOST)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("localhost")
                .to_owned(),
            now: OffsetDateTime::now_utc(),
            peer: req
                .extensions()
                .get::<crate::api::Peer>()
                .and_then(|peer| peer.0),
        }
    }

    pub fn chrome(&self, section: &'static str) -> Chrome {
        Chrome {
            version: env!("CARGO_PKG_VERSION"),
            user: self.visitor.user.clone(),
            csrf: self.visitor.csrf.clone().unwrap_or_default(),
            admin: self.visitor.admin,
            login: self.visitor.login,
            apikeys: self.ui.apikeys && self.visitor.user.is_some(),
            section,
            here: self.here.clone(),
        }
    }

    /// The visitor as search sees them.
    pub fn viewer(&self) -> (Option<String>, Permits) {
        let user = self.visitor.user.clone();
        let permits = crate::ext::search::permits(self.ctx, user.as_deref());
        (user, permits)
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    fn params<'p>(&'p self, key: &'p str) -> impl Iterator<Item = &'p str> + 'p {
        self.query
            .iter()
            .filter(move |(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// Asks search, as the visitor.
    pub async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        document: String,
        variables: serde_json::Value,
    ) -> Result<T, Failure> {
        data::ask(
            &self.ui.search,
            &self.ui.engine,
            self.viewer(),
            document,
            variables,
        )
        .await
    }

    /// Renders `template` as a 200 page (a 500 page if it cannot be rendered).
    pub fn render(&self, template: &impl Template) -> Response<Body> {
        self.render_status(StatusCode::OK, template)
    }

    pub fn render_status(&self, status: StatusCode, template: &impl Template) -> Response<Body> {
        match template.render() {
            Ok(body) => super::html(status, body),
            Err(error) => {
                tracing::error!(component = "ui", %error, "a page failed to render");
                super::html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<!doctype html><title>Error</title><p>This page failed to render.</p>".into(),
                )
            }
        }
    }

    /// The error page.
    pub fn error(&self, status: StatusCode, message: &str) -> Response<Body> {
        let title = status.canonical_reason().unwrap_or("Error").to_owned();
        let page = ErrorPage {
            chrome: self.chrome(""),
            title,
            message: message.to_owned(),
        };
        self.render_status(status, &page)
    }

    /// The page for a failed search: what it said, or a 500.
    pub fn failed(&self, failure: Failure) -> Response<Body> {
        match failure {
            Failure::Refused(messages) => self.error(
                StatusCode::NOT_FOUND,
                &format!("Not found: {}", messages.join("; ")),
            ),
            Failure::Internal => self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on the registry; the log says what.",
            ),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    title: String,
    message: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    chrome: Chrome,
    total: u64,
    recent: Vec<RepoCard>,
    popular: Vec<RepoCard>,
    starred: Option<Vec<RepoCard>>,
    bookmarked: Option<Vec<RepoCard>>,
}

pub async fn home(page: &Page<'_>) -> Response<Body> {
    let logged_in = page.visitor.user.is_some();
    let answer: data::Home = match page
        .ask(data::home_document(logged_in), json!({"limit": HOME_LIST}))
        .await
    {
        Ok(answer) => answer,
        Err(failure) => return page.failed(failure),
    };
    let cards = |repos: &data::Repos| RepoCard::all(&repos.results, page.now);
    page.render(&Home {
        chrome: page.chrome("home"),
        total: answer.recent.page.total_count,
        recent: cards(&answer.recent),
        popular: cards(&answer.popular),
        starred: answer.starred.as_ref().map(cards),
        bookmarked: answer.bookmarked.as_ref().map(cards),
    })
}

/// A checkbox or option of the explore form.
struct Choice {
    value: &'static str,
    label: &'static str,
    on: bool,
}

#[derive(Template)]
#[template(path = "explore.html")]
struct Explore {
    chrome: Chrome,
    query: String,
    os_choices: Vec<Choice>,
    arch_choices: Vec<Choice>,
    signed: bool,
    starred: bool,
    bookmarked: bool,
    logged_in: bool,
    sort_choices: Vec<Choice>,
    /// Filters and a sort other than relevance in force.
    active: usize,
    total: u64,
    first: u64,
    cards: Vec<RepoCard>,
    images: Vec<ImageRow>,
    page: u64,
    pages: u64,
    prev_href: Option<String>,
    next_href: Option<String>,
}

pub async fn explore(page: &Page<'_>) -> Response<Body> {
    let query = page.param("search").unwrap_or_default().trim().to_owned();
    let chosen = |key: &str, values: &[&'static str]| -> Vec<Choice> {
        values
            .iter()
            .map(|value| Choice {
                value,
                label: value,
                on: page.params(key).any(|sent| sent == *value),
            })
            .collect()
    };
    let os_choices = chosen("os", OPERATING_SYSTEMS);
    let arch_choices = chosen("arch", ARCHITECTURES);
    let flag = |key: &str| page.param(key).is_some_and(|value| value == "on");
    let logged_in = page.visitor.user.is_some();
    let (signed, starred, bookmarked) = (
        flag("signed"),
        flag("starred") && logged_in,
        flag("bookmarked") && logged_in,
    );
    let sort = page.param("sort").unwrap_or("relevance");
    let (sort, graphql_sort) = SORTS
        .iter()
        .find(|(value, _, _)| *value == sort)
        .map_or(("relevance", "RELEVANCE"), |(value, graphql, _)| {
            (*value, *graphql)
        });
    let number = page
        .param("page")
        .and_then(|text| text.parse::<u64>().ok())
        .filter(|number| *number >= 1)
        .unwrap_or(1)
        .min(1_000_000);
    let picked = |choices: &[Choice]| -> Vec<&str> {
        choices.iter().filter(|c| c.on).map(|c| c.value).collect()
    };
    let mut filter = serde_json::Map::new();
    if !picked(&os_choices).is_empty() {
        filter.insert("Os".into(), json!(picked(&os_choices)));
    }
    if !picked(&arch_choices).is_empty() {
        filter.insert("Arch".into(), json!(picked(&arch_choices)));
    }
    for (on, key) in [
        (signed, "HasToBeSigned"),
        (starred, "IsStarred"),
        (bookmarked, "IsBookmarked"),
    ] {
        if on {
            filter.insert(key.into(), json!(true));
        }
    }
    let variables = json!({
        "query": query,
        "filter": filter,
        "limit": EXPLORE_PAGE,
        "offset": (number - 1) * EXPLORE_PAGE,
        "sort": graphql_sort,
    });
    let answer: data::Explore = match page.ask(data::explore_document(), variables).await {
        Ok(answer) => answer,
        Err(failure) => return page.failed(failure),
    };
    let result = answer.global_search;
    let total = result.page.total_count;
    let pages = total.div_ceil(EXPLORE_PAGE).max(1);
    let href_for = |number: u64| {
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &page.query {
            if key != "page" {
                pairs.append_pair(key, value);
            }
        }
        pairs.append_pair("page", &number.to_string());
        format!("/explore?{}", pairs.finish())
    };
    let sort_choices = SORTS
        .iter()
        .map(|(value, _, label)| Choice {
            value,
            label,
            on: *value == sort,
        })
        .collect();
    let active = os_choices.iter().filter(|c| c.on).count()
        + arch_choices.iter().filter(|c| c.on).count()
        + [signed, starred, bookmarked, sort != "relevance"]
            .into_iter()
            .filter(|on| *on)
            .count();
    page.render(&Explore {
        active,
        chrome: page.chrome("explore"),
        query,
        os_choices,
        arch_choices,
        signed,
        starred,
        bookmarked,
        logged_in,
        sort_choices,
        total,
        first: (number - 1) * EXPLORE_PAGE + 1,
        cards: RepoCard::all(&result.repos, page.now),
        images: result
            .images
            .iter()
            .map(|image| ImageRow::of(image, "", page.now))
            .collect(),
        page: number,
        pages,
        prev_href: (number > 1).then(|| href_for(number - 1)),
        next_href: (number < pages).then(|| href_for(number + 1)),
    })
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    chrome: Chrome,
    next: String,
    error: Option<String>,
    username: String,
    htpasswd: bool,
    /// `(key, button label)` of each single sign-on provider.
    providers: Vec<(String, String)>,
}

/// The login page (GET) and the login (POST): the methods come from mgmt's document, as
/// zui draws its login page from `/v2/_zot/ext/mgmt`.
pub async fn login(page: &Page<'_>, req: Request<RequestBody>) -> Response<Body> {
    // zui's reading of mgmt: `htpasswd` (htpasswd or LDAP) draws the form, each
    // `openid.providers` entry a button.
    let auth = &page.ui.mgmt["http"]["auth"];
    let htpasswd = auth.get("htpasswd").is_some();
    let providers: Vec<(String, String)> = auth["openid"]["providers"]
        .as_object()
        .map(|providers| {
            providers
                .iter()
                .map(|(key, entry)| {
                    let name = entry["name"].as_str().unwrap_or(key);
                    (key.clone(), name.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    let form = |status: StatusCode, next: &str, username: &str, error: Option<&str>| {
        page.render_status(
            status,
            &Login {
                chrome: page.chrome("login"),
                next: session::local_target(Some(next)).to_owned(),
                error: error.map(str::to_owned),
                username: username.to_owned(),
                htpasswd,
                providers: providers.clone(),
            },
        )
    };
    if req.method() != hyper::Method::POST {
        let next = page.param("next").unwrap_or("/home");
        return form(StatusCode::OK, next, "", None);
    }
    if !session::same_origin(req.headers()) {
        return page.error(
            StatusCode::FORBIDDEN,
            "This form must be sent from this site.",
        );
    }
    let fields = match read_form(page.ctx, req).await {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let field = |key: &str| {
        fields
            .iter()
            .find(|(name, _)| name == key)
            .map_or("", |(_, value)| value.as_str())
    };
    let next = session::local_target(Some(field("next"))).to_owned();
    let Some(auth) = &page.ctx.auth else {
        return super::redirect(&next, None);
    };
    let user = field("username").to_owned();
    let password = field("password").as_bytes().to_vec();
    match auth.verify(user.clone(), password, page.peer).await {
        Ok(user) => match page
            .ctx
            .engine
            .create_session(&user, session::SESSION_LIFETIME)
            .await
        {
            Ok((token, _)) => {
                tracing::info!(component = "ui", user = %user, "logged in to the UI");
                super::redirect(
                    &next,
                    Some(session::set_cookie(&token, page.ui.secure_session)),
                )
            }
            Err(error) => {
                tracing::error!(component = "ui", %error, "creating a session failed");
                page.error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The login could not be saved.",
                )
            }
        },
        Err(crate::auth::htpasswd::Refusal::Throttled(wait)) => form(
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            &user,
            Some(&format!(
                "Too many failed logins. Try again in {} seconds.",
                wait.as_secs().max(1)
            )),
        ),
        Err(_) => {
            if !auth.fail_delay().is_zero() {
                tokio::time::sleep(auth.fail_delay()).await;
            }
            // 200 with the alert: the form is shown again (a browser logs a 4xx page as an
            // error, and nothing else reads this answer).
            form(
                StatusCode::OK,
                &next,
                &user,
                Some("Wrong user name or password."),
            )
        }
    }
}

/// Ends the session (a POST with its CSRF token) and goes to the login page.
pub async fn logout(page: &Page<'_>, req: Request<RequestBody>) -> Response<Body> {
    // Without a session there is nothing to end; a browser's SameSite=Strict cookie is not
    // sent with another site's POST, so that POST lands here: it must not clear the cookie.
    if page.visitor.token.is_none() {
        if !session::same_origin(req.headers()) {
            return page.error(
                StatusCode::FORBIDDEN,
                "This request did not come from this site's own page; nothing was changed.",
            );
        }
        return super::redirect("/login", Some(session::clear_cookie()));
    }
    if let Err(response) = checked_form(page, req).await {
        return response;
    }
    if let Some(token) = &page.visitor.token {
        if let Err(error) = page.ctx.engine.end_session(token).await {
            tracing::error!(component = "ui", %error, "ending a session failed");
            return page.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The logout could not be saved.",
            );
        }
        let user = page.visitor.user.as_deref().unwrap_or("");
        tracing::info!(component = "ui", user, "logged out of the UI");
        crate::auth::audit("logout", "ui", user, page.peer);
    }
    super::redirect("/login", Some(session::clear_cookie()))
}

/// A POST's form fields (at most [`session::MAX_FORM_BYTES`]).
pub async fn read_form(
    ctx: &Ctx,
    req: Request<RequestBody>,
) -> Result<Vec<(String, String)>, Response<Body>> {
    let mut body = req.into_body();
    let read = crate::api::body::read_limited(&mut body, session::MAX_FORM_BYTES, ctx.body_idle)
        .await
        .map_err(|_| super::text(StatusCode::BAD_REQUEST, "the form could not be read"))?;
    match read {
        Ok(bytes) => Ok(form_urlencoded::parse(&bytes).into_owned().collect()),
        Err(_) => {
            crate::api::body::drain(&mut body, ctx.body_idle).await;
            Err(super::text(StatusCode::PAYLOAD_TOO_LARGE, "form too large"))
        }
    }
}

/// A state-changing POST of a logged-in visitor: from this origin, with the session's CSRF
/// token. Returns the form's fields, or the refusal (403, nothing changed).
pub async fn checked_form(
    page: &Page<'_>,
    req: Request<RequestBody>,
) -> Result<Vec<(String, String)>, Response<Body>> {
    let refused = |why: &str| {
        tracing::info!(
            component = "ui",
            user = page.visitor.user.as_deref().unwrap_or(""),
            why,
            "UI request refused"
        );
        page.error(
            StatusCode::FORBIDDEN,
            "This request did not come from this site's own page; nothing was changed.",
        )
    };
    if !session::same_origin(req.headers()) {
        return Err(refused("another origin"));
    }
    let fields = read_form(page.ctx, req).await?;
    let sent = fields
        .iter()
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.as_str());
    if !page.visitor.csrf_matches(sent) {
        return Err(refused("no valid CSRF token"));
    }
    Ok(fields)
}
