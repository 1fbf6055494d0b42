//! The web console at `/`: one page of HTML, CSS and plain JavaScript (no
//! framework, nothing fetched from elsewhere, no build step), built into
//! the binary with `include_str!`. It reads and writes only through
//! `/api/` (docs/http.md); the page sets every client value as text, never
//! as markup, and its content security policy allows only its own script
//! and style.

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// The policy every console answer carries: its own script, style and API only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the page.
pub(super) async fn page() -> Response {
    file("text/html; charset=utf-8", PAGE)
}

/// `GET /console/{asset}`: its script and its style sheet.
pub(super) async fn asset(asset: Result<Path<String>, PathRejection>) -> Response {
    match asset.as_ref().map(|Path(name)| name.as_str()) {
        Ok("console.js") => file("text/javascript; charset=utf-8", SCRIPT),
        Ok("console.css") => file("text/css; charset=utf-8", STYLE),
        _ => (
            StatusCode::NOT_FOUND,
            "no such console file: /console/console.js and /console/console.css\n",
        )
            .into_response(),
    }
}
