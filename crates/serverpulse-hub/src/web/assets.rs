//! The dashboard's static files, embedded in the binary by `build.rs` (our own CSS and
//! JavaScript, htmx and uPlot from npm). Their URLs carry the build's asset version, so
//! browsers may keep them for good and still never run a stale copy.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Changes whenever any embedded file changes.
pub const VERSION: &str = env!("ASSET_VERSION");

macro_rules! embedded {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $name))
    };
}

/// (name, content type, bytes)
const FILES: [(&str, &str, &[u8]); 5] = [
    ("app.css", "text/css; charset=utf-8", embedded!("app.css")),
    ("app.js", "text/javascript; charset=utf-8", embedded!("app.js")),
    ("htmx.min.js", "text/javascript; charset=utf-8", embedded!("htmx.min.js")),
    ("uPlot.iife.min.js", "text/javascript; charset=utf-8", embedded!("uPlot.iife.min.js")),
    ("uPlot.min.css", "text/css; charset=utf-8", embedded!("uPlot.min.css")),
];

/// `GET /assets/{version}/{name}`. A request for another version gets today's file but
/// may not be cached, so a page from before an upgrade still works.
pub async fn serve(Path((version, name)): Path<(String, String)>) -> Response {
    let Some((_, content_type, bytes)) = FILES.iter().find(|(file, _, _)| *file == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let cache = if version == VERSION { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut response = (*bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}
