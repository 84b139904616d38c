//! Absolute links: every URL the API hands out (bodies, `Location`) starts
//! with `--public-url`, else with the scheme and `Host` the request came
//! with, so a feed generator can paste it as it is.
//!
//! The base is request data that every view needs, several calls deep:
//! [`absolute_links`] works it out once per request and scopes it to the
//! request's task, where [`crate::AppState::link`] reads it. Outside a
//! request (a unit test of a view) links stay root-relative.

use axum::extract::Request;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;

tokio::task_local! {
    static BASE: String;
}

/// `https://host` from the configured public URL, else from the request's
/// `Host` (and `X-Forwarded-Proto`). A Host with characters no host name
/// has is ignored.
pub(crate) fn service_base(public_url: &str, headers: &HeaderMap) -> String {
    let configured = public_url.trim_end_matches('/');
    if !configured.is_empty() {
        return configured.to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// The base of this request's links, when inside one.
pub(crate) fn current_base() -> Option<String> {
    BASE.try_with(Clone::clone).ok()
}

/// Middleware: runs the request with its links' base in scope.
pub(crate) async fn absolute_links(
    axum::extract::State(public_url): axum::extract::State<std::sync::Arc<str>>,
    request: Request,
    next: Next,
) -> Response {
    let base = service_base(&public_url, request.headers());
    BASE.scope(base, next.run(request)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_url_wins_over_the_host_which_is_checked() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "img.example:8080".parse().unwrap());
        assert_eq!(service_base("", &headers), "http://img.example:8080");
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(service_base("", &headers), "https://img.example:8080");
        assert_eq!(
            service_base("https://cdn.example/", &headers),
            "https://cdn.example"
        );
        headers.insert(header::HOST, "evil\"host".parse().unwrap());
        assert_eq!(service_base("", &headers), "https://localhost");
    }
}
