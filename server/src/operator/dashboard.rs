//! The web dashboard: one page and its script, built into the binary and served by the admin
//! endpoint at `/`. The page asks for the admin token and then uses the same JSON API as the
//! operator commands, so it can do nothing the token could not.
//!
//! Vietnamese by default, with an English toggle; plain HTML, CSS and JavaScript with no
//! external files, so it works on a district office PC with no internet.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const PAGE: &str = include_str!("../../assets/dashboard.html");
const SCRIPT: &str = include_str!("../../assets/dashboard.js");

/// `/` and `/dashboard.js`, without a token (they hold no data).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/dashboard.js", get(script))
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
}
