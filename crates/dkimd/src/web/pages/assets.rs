//! The stylesheet, the script, the icon and the page for unknown paths.

use super::*;

/// No icon: an empty answer rather than a redirect to the login page.
pub async fn favicon() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub async fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "no such page or domain")
}

pub async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../../static/style.css"),
    )
        .into_response()
}

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../static/app.js"),
    )
        .into_response()
}
