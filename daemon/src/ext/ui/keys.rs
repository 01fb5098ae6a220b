//! The API keys page (`/apikeys`, with `http.auth.apikey`): a logged-in user's keys, a form
//! to create one and a revoke button per key. Plain HTML forms POST to UI routes
//! (`/apikeys/create`, `/apikeys/revoke`) that are checked like every UI change (same origin,
//! the session's CSRF token; session.rs) and call ext/apikeys.rs's [`create`] and [`revoke`],
//! the functions behind zot's JSON endpoints.
//!
//! A new key is shown once, on the page that answers its creation (with a copy button and a
//! note that it will not be shown again); the list never shows a key.
use askama::Template;
use hyper::{Request, Response, StatusCode};
use time::{Date, OffsetDateTime, Time};

use super::pages::{checked_form, Chrome, Page};
use super::view::When;
use crate::api::body::{Body, RequestBody};
use crate::ext::apikeys::{self, create, revoke};

/// One key as the page lists it.
struct Row {
    uuid: String,
    label: String,
    scopes: String,
    created: When,
    expires: String,
    last_used: When,
    expired: bool,
}

#[derive(Template)]
#[template(path = "apikeys.html")]
struct KeysPage {
    chrome: Chrome,
    keys: Vec<Row>,
    /// The key just created, shown this once.
    created: Option<String>,
    created_label: String,
    error: Option<String>,
    label: String,
    scopes: String,
    expires: String,
}

/// The page for a logged-in user; others go to login.
pub async fn page(page: &Page<'_>) -> Response<Body> {
    draw(page, StatusCode::OK, None, None, Default::default()).await
}

/// What the create form held, drawn again after an error.
#[derive(Default)]
struct Form {
    label: String,
    scopes: String,
    expires: String,
}

async fn draw(
    page: &Page<'_>,
    status: StatusCode,
    created: Option<(String, String)>,
    error: Option<String>,
    form: Form,
) -> Response<Body> {
    let Some(user) = page.visitor.user.as_deref() else {
        return super::redirect("/login?next=%2Fapikeys", None);
    };
    let keys = match apikeys::list(page.ctx, user).await {
        Ok(keys) => keys,
        Err(error) => {
            tracing::error!(component = "ui", %error, "listing API keys failed");
            return page.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The API keys could not be read.",
            );
        }
    };
    let now_ms = u64::try_from(page.now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let rows = keys
        .into_iter()
        .map(|listed| Row {
            expired: listed.key.expired(now_ms),
            uuid: listed.key.uuid,
            label: listed.key.label,
            scopes: listed.key.scopes.join(", "),
            created: When::at_unix_ms(Some(listed.key.created_ms), page.now),
            expires: listed
                .key
                .expires_ms
                .map_or_else(|| "never".to_owned(), |ms| apikeys::go_time(Some(ms))),
            last_used: When::at_unix_ms(listed.last_used_ms, page.now),
        })
        .collect();
    let (created, created_label) = created.unzip();
    page.render_status(
        status,
        &KeysPage {
            chrome: page.chrome("apikeys"),
            keys: rows,
            created,
            created_label: created_label.unwrap_or_default(),
            error,
            label: form.label,
            scopes: form.scopes,
            expires: form.expires,
        },
    )
}

/// The create form: label, scopes (comma or space separated), optional expiry date (the key
/// works through that day, UTC).
pub async fn create_key(page: &Page<'_>, req: Request<RequestBody>) -> Response<Body> {
    let user_agent = req
        .headers()
        .get(hyper::header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let fields = match checked_form(page, req).await {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let Some(user) = page.visitor.user.clone() else {
        return super::redirect("/login?next=%2Fapikeys", None);
    };
    let field = |key: &str| {
        fields
            .iter()
            .find(|(name, _)| name == key)
            .map_or("", |(_, value)| value.as_str())
            .trim()
            .to_owned()
    };
    let form = Form {
        label: field("label"),
        scopes: field("scopes"),
        expires: field("expires"),
    };
    let scopes: Vec<String> = form
        .scopes
        .split([',', ' ', '\n', '\r', '\t'])
        .filter(|scope| !scope.is_empty())
        .map(str::to_owned)
        .collect();
    let checked = end_of_day(&form.expires).and_then(|expires| {
        apikeys::check_request(form.label.clone(), scopes, expires).map_err(|error| match error {
            crate::api::error::ApiError::InvalidArgument(why) => why,
            other => other.to_string(),
        })
    });
    let request = match checked {
        Ok(request) => request,
        Err(why) => return draw(page, StatusCode::BAD_REQUEST, None, Some(why), form).await,
    };
    let label = request.label.clone();
    match create(page.ctx, &user, request, user_agent).await {
        Ok((key, _)) => {
            draw(
                page,
                StatusCode::CREATED,
                Some((key, label)),
                None,
                Form::default(),
            )
            .await
        }
        Err(error) => {
            tracing::error!(component = "ui", %error, "creating an API key failed");
            page.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The API key could not be created.",
            )
        }
    }
}

/// `YYYY-MM-DD` (a date input's value): the first instant after that day, UTC; empty: none.
fn end_of_day(text: &str) -> Result<Option<OffsetDateTime>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let not_a_date = || format!("{text:?} is not a date");
    let parts: Vec<&str> = text.split('-').collect();
    let [year, month, day] = parts[..] else {
        return Err(not_a_date());
    };
    let (Ok(year), Ok(month), Ok(day)) = (year.parse(), month.parse::<u8>(), day.parse()) else {
        return Err(not_a_date());
    };
    let month = time::Month::try_from(month).map_err(|_| not_a_date())?;
    let date = Date::from_calendar_date(year, month, day).map_err(|_| not_a_date())?;
    let next = date
        .next_day()
        .ok_or_else(|| format!("{text:?} is too far ahead"))?;
    Ok(Some(next.with_time(Time::MIDNIGHT).assume_utc()))
}

/// The revoke button of one key; back to the list.
pub async fn revoke_key(page: &Page<'_>, req: Request<RequestBody>) -> Response<Body> {
    let fields = match checked_form(page, req).await {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let Some(user) = page.visitor.user.clone() else {
        return super::redirect("/login?next=%2Fapikeys", None);
    };
    let uuid = fields
        .iter()
        .find(|(name, _)| name == "uuid")
        .map_or("", |(_, value)| value.as_str());
    match revoke(page.ctx, &user, uuid).await {
        Ok(true) => super::redirect("/apikeys", None),
        Ok(false) => page.error(StatusCode::NOT_FOUND, "You have no such API key."),
        Err(error) => {
            tracing::error!(component = "ui", %error, "revoking an API key failed");
            page.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The API key could not be revoked.",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_date_lasts_through_its_day() {
        assert_eq!(end_of_day(""), Ok(None));
        let end = end_of_day("2030-02-28").expect("date").expect("some");
        assert_eq!(end.unix_timestamp(), 1_898_553_600);
        assert!(end_of_day("tomorrow").is_err());
        assert!(end_of_day("2030-02-30").is_err());
    }
}
