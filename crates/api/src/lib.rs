//! Easel's HTTP API: upload an image, read it back, fetch any style.
//!
//! [`router`] builds the axum app over an [`AppState`]; [`Application`]
//! binds it to an address (port 0 in tests) and serves it. The API renders
//! nothing itself: it checks an upload's header against the limits, stores
//! the original, commits the image row and its job, and leaves the pixels
//! to the worker.

mod access;
pub mod auth;
pub mod batches;
mod console;
mod error;
mod fields;
mod files;
pub mod iiif;
mod iiif_auth;
mod images;
mod linger;
mod links;
mod list;
pub mod openapi;
mod ops;
mod podcast;
mod schema;
pub mod serve_cache;
mod upload;
mod view;
mod warm;
mod write;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use easel_catalog::Catalog;
use easel_render::Settings;
use easel_storage::BlobStore;
use tokio::sync::Notify;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

pub use console::content_security_policy;
pub use error::{ApiError, PROBLEM_JSON};
pub use ops::metrics_handle;
pub use write::valid_id;

/// Knobs of the HTTP layer. Upload limits come from [`Settings::limits`], so
/// the API and the engine can never disagree about them.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Prefix for links in bodies and `Location` (e.g. `https://img.example`);
    /// empty takes the scheme and host from each request.
    pub public_url: String,
    /// How long caches may keep a stable alias (`/styles/itunes`,
    /// `/styles/feed.jpg`) before they revalidate it: its bytes change
    /// when the image is re-rendered.
    pub alias_max_age: Duration,
    /// How long replaced files keep serving, and when unreferenced ones go.
    pub retention: easel_catalog::Retention,
    /// How long `?wait=true` waits for the render before answering 202.
    pub wait_timeout: Duration,
    /// How often a `?wait=true` reads its image again when no commit of
    /// this process woke it: the only way it sees a render committed by
    /// another process.
    pub wait_poll: Duration,
    /// The largest `page[size]` of a list.
    pub max_page_size: u64,
    /// IIIF Image API limits and on-demand render bounds.
    pub iiif: iiif::IiifConfig,
    /// At most this much of a body refused before it was read (no key, a
    /// missing scope, over the byte limit) is read and thrown away, so that
    /// the client still reads the answer ([`linger`](crate::linger)).
    pub linger_max_bytes: u64,
    /// ... and for at most this long.
    pub linger_timeout: Duration,
    /// The process's render memory budget, shared with its workers: an
    /// upload whose render could never fit it is refused (422
    /// `too-much-memory`), and each IIIF render reserves its share.
    pub render_memory: easel_budget::MemoryBudget,
    /// The style files and URL lookups this process keeps ([`serve_cache`]).
    pub serve_cache: serve_cache::ServeCache,
    /// Log one INFO line per request (off by default: metrics count them).
    pub log_requests: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            public_url: String::new(),
            alias_max_age: DEFAULT_ALIAS_MAX_AGE,
            retention: easel_catalog::Retention::default(),
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            wait_poll: DEFAULT_WAIT_POLL,
            max_page_size: DEFAULT_MAX_PAGE_SIZE,
            iiif: iiif::IiifConfig::default(),
            linger_max_bytes: DEFAULT_LINGER_MAX_BYTES,
            linger_timeout: DEFAULT_LINGER_TIMEOUT,
            render_memory: easel_budget::MemoryBudget::default(),
            serve_cache: serve_cache::ServeCache::default(),
            log_requests: false,
        }
    }
}

/// What every handler shares; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub catalog: Arc<dyn Catalog>,
    pub store: BlobStore,
    pub settings: Arc<Settings>,
    pub config: Arc<ApiConfig>,
    /// Poked after each upload so an embedded worker starts at once.
    pub wake: Arc<Notify>,
}

/// The default `alias_max_age`: five minutes.
pub const DEFAULT_ALIAS_MAX_AGE: Duration = Duration::from_secs(300);

impl AppState {
    /// An absolute URL of `path` (see [`links`]).
    pub(crate) fn link(&self, path: &str) -> String {
        let base = links::current_base()
            .unwrap_or_else(|| self.config.public_url.trim_end_matches('/').to_string());
        format!("{base}{path}")
    }
}

/// The default [`ApiConfig::wait_timeout`].
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The default [`ApiConfig::wait_poll`], for a process whose renders are
/// all done elsewhere.
pub const DEFAULT_WAIT_POLL: Duration = Duration::from_millis(50);

/// [`ApiConfig::wait_poll`] beside embedded worker loops, whose commits wake
/// every wait at once: polling each waiting upload 20 times a second cost
/// the uploads' own CPU and catalogue round trips.
pub const EMBEDDED_WAIT_POLL: Duration = Duration::from_secs(1);

/// The default [`ApiConfig::max_page_size`].
pub const DEFAULT_MAX_PAGE_SIZE: u64 = 100;

/// The default [`ApiConfig::linger_timeout`].
pub const DEFAULT_LINGER_TIMEOUT: Duration = Duration::from_secs(30);

/// The default [`ApiConfig::linger_max_bytes`]: 128 MiB, twice the default
/// upload limit, so a client that sends somewhat more than the limit still
/// reads its 413.
pub const DEFAULT_LINGER_MAX_BYTES: u64 = 128 * 1024 * 1024;

/// Room for multipart boundaries and the small text fields beside the file.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

pub fn router(state: AppState) -> Router {
    // Install the recorder before the first request, or counters recorded
    // before the first scrape would go nowhere.
    metrics_handle();
    let body_limit = state
        .settings
        .limits
        .max_bytes
        .saturating_add(MULTIPART_OVERHEAD);
    let body_limit = usize::try_from(body_limit).unwrap_or(usize::MAX);
    let app = Router::new()
        .route(
            "/v1/images",
            get(list::list)
                .post(upload::upload)
                .layer(DefaultBodyLimit::max(body_limit)),
        )
        .route(
            "/v1/images/{id}",
            get(images::show)
                .patch(write::patch)
                .put(write::put)
                .delete(write::delete)
                .layer(DefaultBodyLimit::max(body_limit)),
        )
        .route("/v1/images/{id}/restore", post(write::restore))
        .route("/v1/images/{id}/render", post(write::render))
        .route("/v1/images/{id}/assets", get(images::assets))
        .route("/v1/rerender", post(batches::start))
        .route("/v1/batches/{id}", get(batches::show))
        .route("/v1/key", get(auth::show_key))
        .route("/v1/images/{id}/styles/{style}", get(images::style))
        .route(
            "/v1/images/{id}/styles/{style}/{file}",
            get(images::style_version),
        )
        .route("/v1/images/{id}/podcast", get(podcast::podcast))
        .merge(iiif::routes_with(state.config.iiif.clone()))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(openapi::routes())
        .merge(console::routes())
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            linger::Limits::of(&state),
            linger::linger,
        ))
        .layer(middleware::from_fn(iiif::cors))
        .layer(middleware::from_fn_with_state(
            std::sync::Arc::<str>::from(state.config.public_url.as_str()),
            links::absolute_links,
        ))
        .layer(middleware::from_fn_with_state(
            state.config.serve_cache.clone(),
            invalidate_on_write,
        ))
        .layer(middleware::from_fn(record_request));
    // A line per request costs more than serving a cached thumbnail.
    let app = if state.config.log_requests {
        app.layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
    } else {
        app
    };
    app.with_state(state)
}

/// A request that may change what a file URL resolves to drops the cached
/// lookups before it runs (nothing read before it is kept, see
/// [`serve_cache::ServeCache::resolve`]) and again once it is done (nothing
/// read while it ran is kept either).
async fn invalidate_on_write(
    axum::extract::State(cache): axum::extract::State<serve_cache::ServeCache>,
    request: Request,
    next: Next,
) -> Response {
    use axum::http::Method;
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if writes {
        cache.invalidate();
    }
    let response = next.run(request).await;
    if writes {
        cache.invalidate();
    }
    response
}

/// Request counts and latencies by route template (never by raw path, which
/// would give one series per image).
async fn record_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(request.method());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("easel_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("easel_http_request_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A method as a metrics label without an allocation per request (and
/// without a series per made-up method).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The API bound to a socket, ready to serve.
pub struct Application {
    listener: tokio::net::TcpListener,
    front: warm::WarmFront,
}

impl Application {
    /// Binds `addr` (`127.0.0.1:0` picks a free port).
    pub async fn bind(addr: SocketAddr, state: AppState) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        // With request logs on, every request goes through the router's
        // trace layer.
        let warm = (!state.config.log_requests).then(|| state.config.serve_cache.clone());
        Ok(Application {
            listener,
            front: warm::WarmFront::new(warm, router(state)),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(
            self.listener,
            axum::ServiceExt::<Request>::into_make_service(self.front),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}
