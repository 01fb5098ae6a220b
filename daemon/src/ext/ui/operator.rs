//! The operator page (admins only): the registry's own health.
use hyper::{Response, StatusCode};

use super::pages::Page;
use crate::api::body::Body;

pub fn page(page: &Page<'_>) -> Response<Body> {
    if !page.visitor.admin {
        return page.error(
            StatusCode::FORBIDDEN,
            "The operator page is for administrators.",
        );
    }
    page.error(StatusCode::NOT_IMPLEMENTED, "not yet")
}
