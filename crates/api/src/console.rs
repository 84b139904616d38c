//! The Easel Console: a web page at `/console/` to upload, crop, check and
//! fix artwork, and the small home page at `/` that links to it.
//!
//! The page is plain ES modules and CSS in `crates/api/console/` (no JS
//! build step), compiled into the binary, so it works offline on the
//! embedded defaults. It talks to the API with the key a person types in,
//! like any other client. Every file is revalidated with its sha256 as
//! ETag (a new release changes them at once; an unchanged file is a 304),
//! and a Content-Security-Policy keeps the page from loading or sending
//! anything to another origin.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::{ApiError, AppState};

#[derive(rust_embed::Embed)]
#[folder = "console/"]
struct Files;

/// Revalidate every time: module imports carry no hash in their names, so
/// a cached module must never outlive a release.
const NO_CACHE: &str = "no-cache";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(index))
        .route("/console/{*path}", get(file))
}

async fn index(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    serve(&state, &headers, "index.html")
}

async fn file(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&state, &headers, &path)
}

fn serve(state: &AppState, headers: &HeaderMap, path: &str) -> Result<Response, ApiError> {
    let Some(file) = Files::get(path) else {
        return Err(ApiError::RouteNotFound(format!("/console/{path}")));
    };
    let sha256 = hex::encode(file.metadata.sha256_hash());
    let etag = format!("\"{sha256}\"");
    let fresh = crate::files::none_match(headers, &sha256);
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = Body::from(file.data.into_owned()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        );
        response
    };
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    protect(state, out);
    Ok(response)
}

/// By extension: browsers refuse a module served under another type
/// (`nosniff` is set), so an unknown extension is opaque bytes.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Security headers of every console response.
fn protect(state: &AppState, headers: &mut HeaderMap) {
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(&state.config.public_url)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// Only this server: scripts and styles from its own files (no inline
/// code, no `eval`), images from it or from `blob:` (files the page fetched
/// with the key, so private buckets show too), requests to it alone. The
/// one other origin allowed is `--public-url`'s, when it names one: the
/// API's links point there, and it is this same service behind a proxy.
pub fn content_security_policy(public_url: &str) -> String {
    let public = url::Url::parse(public_url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .map(|u| u.origin().ascii_serialization())
        .filter(|origin| origin != "null")
        .map(|origin| format!(" {origin}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; \
         img-src 'self' blob:{public}; connect-src 'self'{public}; \
         manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

const HOME: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Easel</title>
<link rel="icon" href="/console/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/console/style.css">
</head>
<body class="home">
<main class="home-card">
<h1><img src="/console/favicon.svg" alt="" width="32" height="32"> Easel</h1>
<p>Media asset service for artwork: upload a cover once, every style rendered and served fast.</p>
<ul class="home-links">
<li><a class="button primary" href="/console/">Open the Easel Console</a> upload, crop, check and fix artwork</li>
<li><a href="/docs/">API documentation</a> (Swagger UI) and the <a href="/openapi.json">OpenAPI document</a></li>
<li><a href="/healthz">/healthz</a>, <a href="/readyz">/readyz</a>, <a href="/metrics">/metrics</a></li>
</ul>
</main>
</body>
</html>
"#;

/// `GET /`: a page for people who open the server's address in a browser.
async fn home(State(state): State<AppState>) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], HOME).into_response();
    protect(&state, response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_console_file_has_a_real_content_type() {
        let mut names: Vec<String> = Files::iter().map(|n| n.into_owned()).collect();
        names.sort();
        assert!(names.iter().any(|n| n == "index.html"), "{names:?}");
        assert!(names.iter().any(|n| n == "app.js"), "{names:?}");
        for name in names {
            assert_ne!(
                content_type(&name),
                "application/octet-stream",
                "{name} would reach the browser as opaque bytes"
            );
        }
    }

    /// No CDN, no web font, no analytics: every URL in the page's files is
    /// relative (XML namespaces name, they fetch nothing).
    #[test]
    fn no_console_file_names_another_origin() {
        for name in Files::iter() {
            let file = Files::get(&name).unwrap();
            let text = String::from_utf8_lossy(&file.data);
            for (at, _) in text.match_indices("//") {
                let before = &text[..at];
                if !(before.ends_with("http:") || before.ends_with("https:")) {
                    continue;
                }
                let url: String = text[at..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && !"'\"`)".contains(*c))
                    .collect();
                assert!(
                    url.starts_with("//www.w3.org/"),
                    "{name} names another origin: {url}"
                );
            }
        }
    }

    #[test]
    fn the_policy_allows_only_this_server_and_its_public_url() {
        let own = content_security_policy("");
        assert!(own.contains("default-src 'none'"), "{own}");
        assert!(own.contains("script-src 'self';"), "{own}");
        assert!(own.contains("connect-src 'self';"), "{own}");
        assert!(own.contains("img-src 'self' blob:;"), "{own}");
        assert!(!own.contains("unsafe"), "{own}");
        assert!(!own.contains('*'), "{own}");

        let proxied = content_security_policy("https://img.example.com/easel");
        assert!(
            proxied.contains("connect-src 'self' https://img.example.com;"),
            "{proxied}"
        );
        assert!(
            proxied.contains("img-src 'self' blob: https://img.example.com;"),
            "{proxied}"
        );
        assert_eq!(content_security_policy("not a url"), own);
    }
}
