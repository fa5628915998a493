//! The network explorer: a single-page web app served by every node at `/`.
//!
//! ```text
//!   browser ── GET /                    index.html (this module, embedded)
//!           ── GET /explorer/app.js     the app (vanilla ES module, embedded)
//!           ── GET /explorer/style.css
//!           ── GET /v1/...              the node's JSON API (read only)
//!           ── GET /v1/events           live blocks and ledger events (SSE)
//! ```
//!
//! The assets are plain HTML, CSS and JavaScript compiled into the binary with
//! `include_str!`: nothing to build or install. Pages are hash-routed (`#/jobs/3`), and
//! every figure links to the JSON route it was read from. Responses carry a strict
//! Content-Security-Policy: scripts, styles and connections only from the node itself,
//! no inline script or style.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// The policy every explorer response carries: same-origin scripts, styles, fetches and
/// event streams only; images from the node or `data:` (the empty favicon).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// The explorer's routes: `/` (and `/explorer/`) for the page, `/explorer/app.js` and
/// `/explorer/style.css` for its assets. Merged into the API router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let index = || async { asset("text/html; charset=utf-8", INDEX_HTML) };
    Router::new()
        .route("/", get(index))
        .route("/explorer", get(index))
        .route("/explorer/", get(index))
        .route(
            "/explorer/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/explorer/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}
