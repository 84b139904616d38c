//! Warm file URLs answered ahead of the router.
//!
//! A cached thumbnail costs little more than its way through axum's routing
//! and the middleware stack. So the service in front of the router answers
//! a plain anonymous `GET` of a style file URL (no query, no body, no
//! `Range`, no `Authorization`) from [`ServeCache::warm`] when it holds
//! that URL's answer: the headers the route itself sent last time, and the
//! bytes the file cache holds under that ETag. Anything else, and every
//! miss, goes to the router, whose answer may be kept for the next time.
//! An answer lives only as long as the lookup it came from, so the rules of
//! [`crate::serve_cache`] (this node's writes at once, others' within the
//! lookup lifetime) hold for it as well. The request metrics count it as
//! the route would.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use tower::Service;

use crate::files::none_match;
use crate::serve_cache::{ServeCache, WarmFile};

/// The router, behind the warm answers.
#[derive(Clone)]
pub(crate) struct WarmFront {
    /// None: every request goes to the router.
    cache: Option<ServeCache>,
    router: Router,
}

impl WarmFront {
    pub(crate) fn new(cache: Option<ServeCache>, router: Router) -> Self {
        WarmFront { cache, router }
    }
}

const ALIAS_ROUTE: &str = "/v1/images/{id}/styles/{style}";
const VERSION_ROUTE: &str = "/v1/images/{id}/styles/{style}/{file}";
const FORWARDED_PROTO: &str = "x-forwarded-proto";

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl Service<Request> for WarmFront {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Answer {
        let Some(route) = self.eligible(&request) else {
            return Box::pin(self.router.call(request));
        };
        let Some(cache) = self.cache.clone() else {
            return Box::pin(self.router.call(request));
        };
        let started = Instant::now();
        if let Some(response) = answer(&cache, &request) {
            RouteMetrics::of(route).record(response.status(), started);
            return Box::pin(std::future::ready(Ok(response)));
        }
        let path: Box<str> = request.uri().path().into();
        let host = request.headers().get(header::HOST).cloned();
        let forwarded_proto = request.headers().get(FORWARDED_PROTO).cloned();
        let answer = self.router.call(request);
        Box::pin(async move {
            let (answer, lookup) = ServeCache::noting_lookup(answer).await;
            let Ok(mut response) = answer;
            if let (Some(file), Some(lookup)) =
                (response.extensions_mut().remove::<WarmFile>(), lookup)
            {
                cache.keep_warm(
                    &path,
                    lookup,
                    file,
                    host,
                    forwarded_proto,
                    response.status(),
                    response.headers().clone(),
                );
            }
            Ok(response)
        })
    }
}

impl WarmFront {
    /// The route of a request a warm answer may stand for.
    fn eligible(&self, request: &Request) -> Option<&'static str> {
        if request.method() != Method::GET
            || request.uri().query().is_some()
            || !self.cache.as_ref().is_some_and(ServeCache::keeps_warm)
        {
            return None;
        }
        let headers = request.headers();
        let has_body = headers.contains_key(header::TRANSFER_ENCODING)
            || headers
                .get(header::CONTENT_LENGTH)
                .is_some_and(|length| length != "0");
        if has_body
            || headers.contains_key(header::AUTHORIZATION)
            || headers.contains_key(header::RANGE)
            || headers.contains_key(header::IF_RANGE)
        {
            return None;
        }
        route_of(request.uri().path())
    }
}

/// The warm answer to `request`, if there is one.
fn answer(cache: &ServeCache, request: &Request) -> Option<Response> {
    let (warm, bytes) = cache.warm(request.uri().path())?;
    let headers = request.headers();
    if headers.get(header::HOST) != warm.host.as_ref()
        || headers.get(FORWARDED_PROTO) != warm.forwarded_proto.as_ref()
    {
        return None;
    }
    let not_modified = none_match(headers, &warm.sha256);
    let (status, headers, body) = if not_modified {
        (
            StatusCode::NOT_MODIFIED,
            warm.not_modified.clone(),
            Body::empty(),
        )
    } else {
        (StatusCode::OK, warm.ok.clone(), Body::from(bytes))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Some(response)
}

/// `/v1/images/{id}/styles/{style}` or `.../{style}/{file}`: the route
/// template, as the request metrics label it.
fn route_of(path: &str) -> Option<&'static str> {
    let mut segments = path.strip_prefix("/v1/images/")?.split('/');
    let (id, styles, style) = (segments.next()?, segments.next()?, segments.next()?);
    if id.is_empty() || styles != "styles" || style.is_empty() {
        return None;
    }
    match (segments.next(), segments.next()) {
        (None, _) => Some(ALIAS_ROUTE),
        (Some(file), None) if !file.is_empty() => Some(VERSION_ROUTE),
        _ => None,
    }
}

/// The series `record_request` would add to, registered once.
struct RouteMetrics {
    /// `easel_serve_cache_total{cache="answer",result="hit"}`.
    warm: metrics::Counter,
    ok: metrics::Counter,
    not_modified: metrics::Counter,
    seconds: metrics::Histogram,
}

impl RouteMetrics {
    fn of(route: &'static str) -> &'static RouteMetrics {
        static ALIAS: OnceLock<RouteMetrics> = OnceLock::new();
        static VERSION: OnceLock<RouteMetrics> = OnceLock::new();
        let cell = if route == ALIAS_ROUTE {
            &ALIAS
        } else {
            &VERSION
        };
        cell.get_or_init(|| RouteMetrics {
            warm: metrics::counter!("easel_serve_cache_total", "cache" => "answer", "result" => "hit"),
            ok: metrics::counter!("easel_http_requests_total", "method" => "GET", "route" => route, "status" => "200"),
            not_modified: metrics::counter!("easel_http_requests_total", "method" => "GET", "route" => route, "status" => "304"),
            seconds: metrics::histogram!("easel_http_request_seconds", "method" => "GET", "route" => route),
        })
    }

    fn record(&self, status: StatusCode, started: Instant) {
        self.warm.increment(1);
        if status == StatusCode::NOT_MODIFIED {
            self.not_modified.increment(1);
        } else {
            self.ok.increment(1);
        }
        self.seconds.record(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_style_file_urls_have_a_warm_route() {
        assert_eq!(route_of("/v1/images/abc/styles/thumb"), Some(ALIAS_ROUTE));
        assert_eq!(
            route_of("/v1/images/abc/styles/thumb/0123456789abcdef.jpg"),
            Some(VERSION_ROUTE)
        );
        for other in [
            "/v1/images/abc",
            "/v1/images/abc/styles",
            "/v1/images/abc/styles/",
            "/v1/images//styles/thumb",
            "/v1/images/abc/assets/thumb",
            "/v1/images/abc/styles/thumb/",
            "/v1/images/abc/styles/thumb/x/y",
            "/iiif/3/abc/full/max/0/default.jpg",
        ] {
            assert_eq!(route_of(other), None, "{other}");
        }
    }
}
