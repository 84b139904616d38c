//! The fetcher against a real HTTP server on 127.0.0.1.
//!
//! Everything here is local, and local is exactly what the guard refuses by
//! default. Tests that need an *allowed* first hop reach the server through
//! the name `origin.test`, pinned to 127.0.0.1 with
//! [`OriginConfig::pinned_hosts`] (an operator-facing exemption for one
//! name); redirects from there to `127.0.0.1` or `localhost` must still be
//! refused, which shows the guard runs on every hop, for literals and names.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use easel_origin::{OriginConfig, OriginError, OriginFetcher};
use futures_util::stream;

const IMAGE: &[u8] = b"\x89PNG\r\n\x1a\nnot really a png, but bytes all the same";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(Clone)]
struct Origin {
    port: u16,
    /// Requests that reached `/secret`: a refused fetch must leave it at 0.
    secret_hits: Arc<AtomicUsize>,
}

impl Origin {
    async fn start() -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = Origin {
            port: listener.local_addr().unwrap().port(),
            secret_hits: Arc::default(),
        };
        let app = Router::new()
            .route("/image.png", get(image))
            .route("/secret", get(secret))
            .route("/hop/{n}", get(hop))
            .route("/to-literal", get(to_literal))
            .route("/to-localhost", get(to_localhost))
            .route("/status/{code}", get(status))
            .route("/bytes/{n}", get(sized))
            .route("/stream/{n}", get(streamed))
            .route("/endless", get(endless))
            .route("/slow-headers", get(slow_headers))
            .route("/slow-body", get(slow_body))
            .with_state(origin.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        origin
    }

    /// A URL on the loopback literal, refused unless `allow_private`.
    fn literal(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A URL on the pinned name `origin.test`, allowed by [`pinned`].
    fn pinned(&self, path: &str) -> String {
        format!("http://origin.test:{}{path}", self.port)
    }
}

async fn image() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "image/png")], IMAGE)
}

async fn secret(State(origin): State<Origin>) -> &'static [u8] {
    origin.secret_hits.fetch_add(1, Ordering::SeqCst);
    IMAGE
}

async fn hop(Path(n): Path<u32>) -> Response {
    if n == 0 {
        image().await.into_response()
    } else {
        Redirect::temporary(&format!("/hop/{}", n - 1)).into_response()
    }
}

async fn to_literal(State(origin): State<Origin>) -> Redirect {
    Redirect::temporary(&format!("http://127.0.0.1:{}/secret", origin.port))
}

async fn to_localhost(State(origin): State<Origin>) -> Redirect {
    Redirect::temporary(&format!("http://localhost:{}/secret", origin.port))
}

async fn status(Path(code): Path<u16>) -> StatusCode {
    StatusCode::from_u16(code).unwrap()
}

/// `n` bytes with a Content-Length.
async fn sized(Path(n): Path<usize>) -> Vec<u8> {
    vec![7; n]
}

/// `n` bytes in 1 KiB chunks, chunked encoding, no Content-Length.
async fn streamed(Path(n): Path<usize>) -> Body {
    let chunks = (0..n)
        .step_by(1024)
        .map(move |start| Ok::<_, Infallible>(Bytes::from(vec![7; (n - start).min(1024)])));
    Body::from_stream(stream::iter(chunks.collect::<Vec<_>>()))
}

/// A body that never ends: only a limit enforced while streaming stops it.
async fn endless() -> Body {
    Body::from_stream(stream::repeat_with(|| {
        Ok::<_, Infallible>(Bytes::from_static(&[7; 4096]))
    }))
}

async fn slow_headers() -> &'static str {
    tokio::time::sleep(Duration::from_secs(30)).await;
    "too late"
}

/// Headers and a first chunk at once, then nothing for 30 s.
async fn slow_body() -> Body {
    let first = stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"first")) });
    let stall = stream::once(async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, Infallible>(Bytes::from_static(b"late"))
    });
    Body::from_stream(futures_util::StreamExt::chain(first, stall))
}

fn fetcher(config: OriginConfig) -> OriginFetcher {
    OriginFetcher::new(config).unwrap()
}

/// The default guard, with `origin.test` pinned to 127.0.0.1.
fn pinned() -> OriginConfig {
    OriginConfig {
        pinned_hosts: vec![("origin.test".into(), LOCALHOST)],
        ..OriginConfig::default()
    }
}

fn private_allowed() -> OriginConfig {
    OriginConfig {
        allow_private: true,
        ..OriginConfig::default()
    }
}

#[track_caller]
fn assert_forbidden(err: &OriginError, want_addr: IpAddr) {
    match err {
        OriginError::ForbiddenAddress { addr, reason, .. } => {
            assert_eq!(*addr, want_addr);
            assert_eq!(*reason, "loopback");
        }
        other => panic!("expected a forbidden address, got {other:?}"),
    }
    assert!(err.to_string().contains("a loopback address"), "{err}");
    assert_eq!(err.code(), "origin-forbidden-address");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_loopback_literal_is_refused_by_default() {
    let origin = Origin::start().await;
    let err = fetcher(OriginConfig::default())
        .fetch(&origin.literal("/secret"))
        .await
        .unwrap_err();
    assert_forbidden(&err, LOCALHOST);
    assert_eq!(origin.secret_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_by_default() {
    let origin = Origin::start().await;
    let url = format!("http://localhost:{}/secret", origin.port);
    let err = fetcher(OriginConfig::default())
        .fetch(&url)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "origin-forbidden-address", "{err:?}");
    assert!(
        matches!(&err, OriginError::ForbiddenAddress { host, addr, .. }
            if host == "localhost" && addr.is_loopback()),
        "{err:?}"
    );
    // Clients see the reason, never where the name resolved.
    let OriginError::ForbiddenAddress { addr, .. } = &err else {
        unreachable!()
    };
    let message = err.to_string();
    assert_eq!(
        message,
        "origin localhost leads to a loopback address, which is not allowed"
    );
    assert!(!message.contains(&addr.to_string()), "{message}");
    assert_eq!(origin.secret_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn loopback_is_fetched_when_private_addresses_are_allowed() {
    let origin = Origin::start().await;
    let fetched = fetcher(private_allowed())
        .fetch(&origin.literal("/image.png"))
        .await
        .unwrap();
    assert_eq!(fetched.bytes, IMAGE);
    assert_eq!(fetched.content_type.as_deref(), Some("image/png"));
    assert_eq!(fetched.final_url, origin.literal("/image.png"));

    let by_name = format!("http://localhost:{}/image.png", origin.port);
    let fetched = fetcher(private_allowed()).fetch(&by_name).await.unwrap();
    assert_eq!(fetched.bytes, IMAGE);
}

#[tokio::test]
async fn a_pinned_host_is_fetched_with_the_guard_on() {
    let origin = Origin::start().await;
    let fetched = fetcher(pinned())
        .fetch(&origin.pinned("/image.png"))
        .await
        .unwrap();
    assert_eq!(fetched.bytes, IMAGE);
    assert_eq!(fetched.final_url, origin.pinned("/image.png"));
}

#[tokio::test]
async fn a_redirect_from_an_allowed_host_to_a_loopback_literal_is_refused() {
    let origin = Origin::start().await;
    let err = fetcher(pinned())
        .fetch(&origin.pinned("/to-literal"))
        .await
        .unwrap_err();
    assert_forbidden(&err, LOCALHOST);
    assert_eq!(origin.secret_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_redirect_from_an_allowed_host_to_a_loopback_name_is_refused() {
    let origin = Origin::start().await;
    let err = fetcher(pinned())
        .fetch(&origin.pinned("/to-localhost"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "origin-forbidden-address", "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("localhost leads to a loopback address"),
        "{message}"
    );
    assert!(
        !message.contains("127.0.0.1") && !message.contains("::1"),
        "{message}"
    );
    assert_eq!(origin.secret_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn redirects_up_to_the_cap_are_followed_and_one_more_fails() {
    let origin = Origin::start().await;
    let fetcher = fetcher(OriginConfig {
        max_redirects: 3,
        ..private_allowed()
    });

    let fetched = fetcher.fetch(&origin.literal("/hop/3")).await.unwrap();
    assert_eq!(fetched.bytes, IMAGE);
    assert_eq!(fetched.final_url, origin.literal("/hop/0"));

    let err = fetcher.fetch(&origin.literal("/hop/4")).await.unwrap_err();
    assert!(
        matches!(err, OriginError::TooManyRedirects { max: 3 }),
        "{err:?}"
    );
    assert_eq!(err.code(), "origin-too-many-redirects");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn zero_max_redirects_refuses_any_redirect() {
    let origin = Origin::start().await;
    let fetcher = fetcher(OriginConfig {
        max_redirects: 0,
        ..private_allowed()
    });
    assert!(fetcher.fetch(&origin.literal("/hop/0")).await.is_ok());
    let err = fetcher.fetch(&origin.literal("/hop/1")).await.unwrap_err();
    assert_eq!(err.code(), "origin-too-many-redirects");
}

fn limited(max_bytes: u64) -> OriginFetcher {
    fetcher(OriginConfig {
        max_bytes,
        ..private_allowed()
    })
}

#[track_caller]
fn assert_too_large(result: Result<easel_origin::Fetched, OriginError>, max: u64) {
    let err = result.unwrap_err();
    assert!(
        matches!(err, OriginError::TooLarge { max_bytes } if max_bytes == max),
        "{err:?}"
    );
    assert_eq!(err.code(), "origin-too-large");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_body_declared_larger_than_the_limit_is_refused() {
    let origin = Origin::start().await;
    let fetcher = limited(10_000);
    assert_too_large(fetcher.fetch(&origin.literal("/bytes/10001")).await, 10_000);
    let fetched = fetcher
        .fetch(&origin.literal("/bytes/10000"))
        .await
        .unwrap();
    assert_eq!(fetched.bytes.len(), 10_000);
}

#[tokio::test]
async fn a_streamed_body_without_length_is_cut_at_the_limit() {
    let origin = Origin::start().await;
    let fetcher = limited(10_000);
    assert_too_large(
        fetcher.fetch(&origin.literal("/stream/10001")).await,
        10_000,
    );
    let fetched = fetcher
        .fetch(&origin.literal("/stream/10000"))
        .await
        .unwrap();
    assert_eq!(fetched.bytes.len(), 10_000);
}

#[tokio::test]
async fn an_endless_body_stops_at_the_limit_not_at_the_timeout() {
    let origin = Origin::start().await;
    let started = Instant::now();
    assert_too_large(
        limited(1 << 20).fetch(&origin.literal("/endless")).await,
        1 << 20,
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn not_found_is_a_permanent_http_status_error() {
    let origin = Origin::start().await;
    let err = fetcher(private_allowed())
        .fetch(&origin.literal("/status/404"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OriginError::HttpStatus { status: 404 }),
        "{err:?}"
    );
    assert_eq!(err.code(), "origin-http-status");
    assert!(!err.is_transient());
    assert_eq!(err.to_string(), "origin answered HTTP 404");
}

#[tokio::test]
async fn service_unavailable_and_too_many_requests_are_transient() {
    let origin = Origin::start().await;
    let fetcher = fetcher(private_allowed());
    for code in [503, 429] {
        let err = fetcher
            .fetch(&origin.literal(&format!("/status/{code}")))
            .await
            .unwrap_err();
        assert!(
            matches!(err, OriginError::HttpStatus { status } if status == code),
            "{err:?}"
        );
        assert!(err.is_transient(), "{code}");
    }
}

fn quick(total: Duration) -> OriginFetcher {
    fetcher(OriginConfig {
        total_timeout: total,
        ..private_allowed()
    })
}

#[tokio::test]
async fn an_origin_that_never_answers_times_out_within_the_total_timeout() {
    let origin = Origin::start().await;
    let total = Duration::from_millis(500);
    let started = Instant::now();
    let err = quick(total)
        .fetch(&origin.literal("/slow-headers"))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, OriginError::Timeout { .. }), "{err:?}");
    assert_eq!(err.code(), "origin-timeout");
    assert!(err.is_transient());
    assert!(elapsed >= total && elapsed < total * 3, "{elapsed:?}");
}

#[tokio::test]
async fn a_body_that_stalls_times_out_within_the_total_timeout() {
    let origin = Origin::start().await;
    let total = Duration::from_millis(500);
    let started = Instant::now();
    let err = quick(total)
        .fetch(&origin.literal("/slow-body"))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.code(), "origin-timeout", "{err:?}");
    assert!(elapsed >= total && elapsed < total * 3, "{elapsed:?}");
}

#[tokio::test]
async fn a_closed_port_is_unreachable_and_transient() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    let err = fetcher(private_allowed())
        .fetch(&format!("http://{addr}/image.png"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "origin-unreachable", "{err:?}");
    assert!(err.is_transient());
    let message = err.to_string();
    assert!(
        message.starts_with("origin could not be reached: "),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");
}

#[tokio::test]
async fn invalid_urls_are_refused_before_any_request() {
    let fetcher = fetcher(private_allowed());
    for url in [
        "not a url",
        "/relative/path.png",
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "https://user:secret@example.com/a.png",
    ] {
        let err = fetcher.fetch(url).await.unwrap_err();
        assert_eq!(err.code(), "origin-invalid-url", "{url}: {err:?}");
        assert!(!err.is_transient());
    }
}

#[tokio::test]
async fn the_user_agent_names_easel() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/ua",
        get(|headers: axum::http::HeaderMap| async move {
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let fetched = fetcher(private_allowed())
        .fetch(&format!("http://{addr}/ua"))
        .await
        .unwrap();
    assert_eq!(
        fetched.bytes,
        format!("easel/{}", env!("CARGO_PKG_VERSION")).as_bytes()
    );
}
