//! The web console: one page, its core script and a script per page (send, week, library with
//! its recorder and text-to-speech panel, inbox, reports, speaking live with its capture
//! worklet; the microphone shared), built into the binary and served by the admin endpoint at
//! `/`. The page signs a person in and then uses the same JSON API as the operator commands, so
//! it can do nothing the person's role could not.
//!
//! Vietnamese by default, with an English toggle; plain HTML, CSS and JavaScript with no
//! external files, so it works on a district office PC with no internet.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const PAGE: &str = include_str!("../../assets/dashboard.html");
const SCRIPT: &str = include_str!("../../assets/dashboard.js");

/// The page scripts, each one concern of the console.
const PAGE_SCRIPTS: [(&str, &str); 10] = [
    ("send.js", include_str!("../../assets/console/send.js")),
    ("week.js", include_str!("../../assets/console/week.js")),
    (
        "library.js",
        include_str!("../../assets/console/library.js"),
    ),
    (
        "microphone.js",
        include_str!("../../assets/console/microphone.js"),
    ),
    ("record.js", include_str!("../../assets/console/record.js")),
    ("tts.js", include_str!("../../assets/console/tts.js")),
    ("inbox.js", include_str!("../../assets/console/inbox.js")),
    (
        "reports.js",
        include_str!("../../assets/console/reports.js"),
    ),
    ("live.js", include_str!("../../assets/console/live.js")),
    (
        "live-worklet.js",
        include_str!("../../assets/console/live-worklet.js"),
    ),
];

/// `/` and `/dashboard.js`, without a token (they hold no data).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/dashboard.js", get(script))
        .route("/console/{file}", get(page_script))
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

async fn script() -> Response {
    javascript(SCRIPT)
}

async fn page_script(Path(file): Path<String>) -> Response {
    match PAGE_SCRIPTS.iter().find(|(name, _)| *name == file) {
        Some((_, text)) => javascript(text),
        None => (StatusCode::NOT_FOUND, "no such script").into_response(),
    }
}

fn javascript(text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response()
}
