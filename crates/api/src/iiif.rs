//! IIIF Image API 3.0 over HTTP, level 2.
//!
//! - `GET /iiif/3/{id}` answers 303 to its `info.json`;
//! - `GET /iiif/3/{id}/info.json` describes the image;
//! - `GET /iiif/3/{id}/{region}/{size}/{rotation}/{quality}.{format}`
//!   returns pixels.
//!
//! The IIIF image is the oriented original (what `stripped-original` shows),
//! never the crop. A request is parsed and resolved by the engine
//! ([`easel_render::iiif`]); one that is exactly a stored square style is
//! served from its file, any other is rendered on a blocking thread, at most
//! [`IiifConfig::max_concurrent_renders`] at a time, and kept by
//! [`easel_app::iiif::cache`] in the object store under a key made of hashes
//! only; the least recently used go once they take more than
//! [`IiifConfig::cache_budget_bytes`]. `info.json` is
//! [`easel_app::iiif::info`]'s; a refused request is an [`ApiError::Iiif`].
//! Every response under `/iiif/3`, errors and preflights included, carries
//! `Access-Control-Allow-Origin: *` ([`cors`]).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use easel_app::iiif::cache::{CacheEntry, RenderCache};
use easel_app::iiif::info::{info_json, sizes_for, IiifSize, IIIF_INFO_CONTENT_TYPE};
use easel_catalog::{BucketSettings, Image, ImageStatus};
use easel_render::iiif::{render_iiif, IiifLimits, IiifPlan, IiifRequest};
use easel_render::Style;
use tokio::sync::Semaphore;
use tower::{Layer, ServiceExt};
use tower_http::cors::{Any, CorsLayer};

use crate::access::{decide, edge_at_scale, visible_image_with_settings, Access, Wanted};
use crate::auth::Caller;
use crate::files::none_match;
use crate::{ApiError, AppState};

/// The profile every IIIF response links to.
const LEVEL2_PROFILE: &str = "http://iiif.io/api/image/3/level2.json";
/// What a caller who may have only the listed sizes is told.
const LEVEL0_PROFILE: &str = "http://iiif.io/api/image/3/level0.json";
/// Rendered files are named by what made them, so they never go stale; the
/// same URL can change only when an image is replaced, hence a day, not a year.
const IMAGE_CACHE_CONTROL: &str = "public, max-age=86400";
const INFO_CACHE_CONTROL: &str = "public, max-age=300";
/// The same for a bucket that is not public: what a key unlocked must not
/// be kept by a shared cache and handed to the next client without one.
const PRIVATE_IMAGE_CACHE_CONTROL: &str = "private, max-age=86400";
const PRIVATE_INFO_CACHE_CONTROL: &str = "private, max-age=300";

/// Knobs of the IIIF endpoints.
#[derive(Debug, Clone)]
pub struct IiifConfig {
    /// maxWidth, maxHeight and maxArea: advertised in `info.json` and enforced.
    pub limits: IiifLimits,
    /// Renders running at once; each holds a decoded original in memory.
    pub max_concurrent_renders: usize,
    /// How long a request waits for a render slot before a 503.
    pub render_wait: Duration,
    /// Bytes the render cache may take in the object store; past it, the
    /// least recently used renders are deleted. 0 turns the cache off.
    pub cache_budget_bytes: u64,
    /// How often a cache hit records that it used its entry, per entry and
    /// process: eviction needs a rough order, not a database write per hit.
    pub cache_touch_interval: Duration,
}

/// The default `cache_budget_bytes`: 1 GiB.
pub const DEFAULT_CACHE_BUDGET_BYTES: u64 = 1024 * 1024 * 1024;

impl Default for IiifConfig {
    fn default() -> Self {
        IiifConfig {
            limits: IiifLimits::default(),
            max_concurrent_renders: 2,
            render_wait: Duration::from_secs(30),
            cache_budget_bytes: DEFAULT_CACHE_BUDGET_BYTES,
            cache_touch_interval: Duration::from_secs(60),
        }
    }
}

/// Shared by the IIIF handlers.
#[derive(Debug)]
pub(crate) struct Iiif {
    config: IiifConfig,
    /// Owned permits: a render whose client went away keeps its slot until
    /// the blocking thread is done, not until the request future is dropped.
    renders: Arc<Semaphore>,
    cache: RenderCache,
}

/// The IIIF routes with the default [`IiifConfig`].
pub fn routes() -> Router<AppState> {
    routes_with(IiifConfig::default())
}

pub fn routes_with(config: IiifConfig) -> Router<AppState> {
    let iiif = Arc::new(Iiif {
        renders: Arc::new(Semaphore::new(config.max_concurrent_renders.max(1))),
        cache: RenderCache::new(config.cache_budget_bytes, config.cache_touch_interval),
        config,
    });
    Router::new()
        .route("/iiif/3/{id}", get(redirect))
        .route("/iiif/3/{id}/info.json", get(info))
        .route("/iiif/3/{id}/probe", get(crate::iiif_auth::probe))
        .route(crate::iiif_auth::TOKEN_PATH, get(crate::iiif_auth::token))
        .route(
            "/iiif/3/{id}/{region}/{size}/{rotation}/{quality_format}",
            get(image),
        )
        .layer(Extension(iiif))
}

/// CORS for IIIF (Image API 3.0 §7.1): any origin may read, and a viewer
/// that sends a key for a private bucket gets its preflight answered.
static IIIF_CORS: LazyLock<CorsLayer> = LazyLock::new(|| {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION])
        .expose_headers([header::LINK, header::ETAG])
        // The answer is the same for every origin: nothing to vary on.
        .vary(Vec::new())
});

/// Middleware for the whole app that applies [`IIIF_CORS`] under
/// `/iiif/3`. It sits outside the router so that what the IIIF routes do
/// not answer themselves gets it too: unmatched paths (404), other methods
/// (405) and preflights.
pub(crate) async fn cors(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path != "/iiif/3" && !path.starts_with("/iiif/3/") {
        return next.run(request).await;
    }
    match IIIF_CORS.layer(next).oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// A live image and who asks: deleted images and other buckets' are 404
/// for IIIF too. What the caller may see of it is [`decide`]d per request,
/// on the size returned.
pub(crate) struct Found {
    pub image: Image,
    pub settings: BucketSettings,
    pub caller: Caller,
}

impl Found {
    pub fn decide(&self, wanted: Wanted) -> Access {
        decide(&self.image, &self.settings, self.caller.key(), wanted)
    }

    /// The largest view of the whole image a caller without a key may
    /// have, as `(width, height)`: `None` when everything is public or
    /// nothing is.
    pub fn public_size(&self, width: u32, height: u32) -> Option<(u32, u32)> {
        let max = u64::try_from(self.image.public_limit(self.settings.public_max_side)?).ok()?;
        let longest = u64::from(width.max(height));
        if max == 0 {
            return None;
        }
        if max >= longest {
            return Some((width, height));
        }
        // Rounded down, so that `w,` asks no more than `max` on either side.
        let fit = |side: u32| {
            u32::try_from(u64::from(side) * max / longest)
                .unwrap_or(0)
                .max(1)
        };
        Some((fit(width), fit(height)))
    }

    /// 404 to a caller who may see nothing of the image (as for a missing
    /// id), 403 to a key of the bucket without the scope or a role.
    fn check_any(&self, id: &str) -> Result<(), ApiError> {
        if self.decide(Wanted::Everything).allowed() {
            return Ok(());
        }
        self.decide(Wanted::Pixels(1)).check(id).map(|_| ())
    }
}

pub(crate) async fn find_image(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<Found, ApiError> {
    let caller = Caller::from_headers(state, headers).await?;
    let (image, settings) = visible_image_with_settings(state, caller.key(), id).await?;
    let found = Found {
        image,
        settings,
        caller,
    };
    found.check_any(id)?;
    Ok(found)
}

/// What IIIF needs of an image: its original and the original's facts.
struct Source {
    found: Found,
    width: u32,
    height: u32,
    sha256: String,
    original_key: String,
}

/// A live image with its original stored, or 404: deleted images are gone
/// for IIIF too, and one whose origin URL is not fetched yet has no pixels.
async fn find_source(state: &AppState, headers: &HeaderMap, id: &str) -> Result<Source, ApiError> {
    let found = find_image(state, headers, id).await?;
    let image = &found.image;
    let side = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0);
    match (
        side(image.width),
        side(image.height),
        image.sha256.clone(),
        image.original_key.clone(),
    ) {
        (Some(width), Some(height), Some(sha256), Some(original_key)) => Ok(Source {
            found,
            width,
            height,
            sha256,
            original_key,
        }),
        _ => Err(ApiError::StyleNotReady("the original".into())),
    }
}

pub(crate) fn service_base(state: &AppState, headers: &HeaderMap) -> String {
    crate::links::service_base(&state.config.public_url, headers)
}

/// A path segment with everything but unreserved characters percent-encoded.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn id_url(state: &AppState, headers: &HeaderMap, id: &str) -> String {
    format!(
        "{}/iiif/3/{}",
        service_base(state, headers),
        encode_segment(id)
    )
}

/// The image's base URI: redirects to its `info.json`.
#[utoipa::path(
    get,
    path = "/iiif/3/{id}",
    tag = "iiif",
    operation_id = "iiifBase",
    params(("id" = String, Path, description = "The image's id")),
    responses(
        (status = 303, description = "See the image's `info.json`",
            headers(("Location" = String, description = "The `info.json` URL"), ("Access-Control-Allow-Origin" = String, description = "`*`"))),
        (status = 404, description = "No such image, or its original is not fetched yet", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds, while the original is being fetched"))),
        (status = 503, description = "A backend is unavailable, or every render slot is busy; retry", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds"))),
    ),
)]
pub(crate) async fn redirect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    find_source(&state, &headers, &id).await?;
    let location = format!("{}/info.json", id_url(&state, &headers, &id));
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// JSON-LD only when asked for (Image API 3.0 §5.1), plain JSON otherwise.
fn wants_json_ld(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/ld+json"))
}

/// The image information document (Image API 3.0 §5).
#[utoipa::path(
    get,
    path = "/iiif/3/{id}/info.json",
    tag = "iiif",
    operation_id = "iiifInfo",
    params(
        ("id" = String, Path, description = "The image's id"),
        ("Accept" = Option<String>, Header, description = "`application/ld+json` for the JSON-LD media type"),
    ),
    responses(
        (status = 200, description = "The image information", headers(
                ("Link" = String, description = "The level 2 profile"),
                ("Access-Control-Allow-Origin" = String, description = "`*`"),
            ),
            content(
                (Object = "application/json"),
                (Object = "application/ld+json"),
            )),
        (status = 404, description = "No such image, or its original is not fetched yet", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds, while the original is being fetched"))),
        (status = 503, description = "A backend is unavailable, or every render slot is busy; retry", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds"))),
    ),
)]
pub(crate) async fn info(
    State(state): State<AppState>,
    Extension(iiif): Extension<Arc<Iiif>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Source {
        found,
        width,
        height,
        ..
    } = find_source(&state, &headers, &id).await?;
    let limits = &iiif.config.limits;
    // The square styles' sides: for a square, uncropped image these sizes
    // are the stored files themselves.
    let sides: Vec<u32> = Style::RENDERED
        .iter()
        .filter_map(|s| s.square_side())
        .collect();
    let everything = found.decide(Wanted::Everything);
    // Not fully open: what the document lists depends on the key.
    let restricted = found
        .image
        .public_limit(found.settings.public_max_side)
        .is_some();
    let private = restricted;
    let id_url = id_url(&state, &headers, &id);
    let sizes = sizes_for(width, height, &sides, limits);
    let mut body = if everything.allowed() {
        serde_json::to_value(info_json(&id_url, width, height, sizes, limits))
    } else {
        // Only what this caller may have: the sizes within the limit and
        // the largest public view, no tiles (the full-resolution ones are
        // not public), and limits that say so. A viewer shows that.
        let (public_width, public_height) = found.public_size(width, height).unwrap_or((0, 0));
        let mut sizes: Vec<IiifSize> = sizes
            .into_iter()
            .filter(|s| s.width <= public_width && s.height <= public_height)
            .collect();
        if public_width > 0 && !sizes.iter().any(|s| s.width == public_width) {
            sizes.push(IiifSize {
                width: public_width,
                height: public_height,
            });
        }
        let public = IiifLimits {
            max_width: public_width.min(limits.max_width),
            max_height: public_height.min(limits.max_height),
            max_area: (u64::from(public_width) * u64::from(public_height)).min(limits.max_area),
        };
        let mut info = info_json(&id_url, width, height, sizes, &public);
        // To this caller the service is level 0: the listed sizes only.
        // Viewers then show the largest of them instead of asking for
        // full-resolution tiles they would be refused.
        info.profile = "level0";
        serde_json::to_value(info)
    }
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !everything.allowed() {
        if let Some(info) = body.as_object_mut() {
            info.remove("tiles");
        }
    }
    if restricted {
        crate::iiif_auth::declare_services(&mut body, &id_url, &service_base(&state, &headers));
    }
    let profile = if body["profile"] == "level0" {
        LEVEL0_PROFILE
    } else {
        LEVEL2_PROFILE
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    let content_type = if wants_json_ld(&headers) {
        IIIF_INFO_CONTENT_TYPE
    } else {
        "application/json"
    };
    let (cache_control, vary) = if private {
        (PRIVATE_INFO_CACHE_CONTROL, "Accept, Authorization")
    } else {
        (INFO_CACHE_CONTROL, "Accept")
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, cache_control)
        .header(header::VARY, vary)
        .header(header::LINK, format!("<{profile}>;rel=\"profile\""))
        .body(Body::from(bytes))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

struct Served {
    bytes: Bytes,
    mimetype: &'static str,
    etag: String,
}

/// An image answer: 304 when the ETag matches, else the bytes, or the
/// part a `Range` asks for (206). A `HEAD` gets the same headers, with the
/// `Content-Length` a `GET` would have; the router drops the body.
fn image_response(
    served: Served,
    canonical: &str,
    headers: &HeaderMap,
    private: bool,
) -> Result<Response, ApiError> {
    let links = format!("<{canonical}>;rel=\"canonical\",<{LEVEL2_PROFILE}>;rel=\"profile\"");
    let mut builder = Response::builder()
        .header(header::ETAG, format!("\"{}\"", served.etag))
        .header(header::LINK, links)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    builder = if private {
        builder
            .header(header::CACHE_CONTROL, PRIVATE_IMAGE_CACHE_CONTROL)
            .header(header::VARY, "Authorization")
    } else {
        builder.header(header::CACHE_CONTROL, IMAGE_CACHE_CONTROL)
    };
    if none_match(headers, &served.etag) {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(|e| ApiError::Internal(e.to_string()));
    }
    let size = served.bytes.len() as u64;
    let range_allowed = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| crate::files::etag_matches(v, &served.etag));
    let range = match headers.get(header::RANGE).filter(|_| range_allowed) {
        Some(value) => crate::files::parse_range(value, size)?,
        None => None,
    };
    let builder = builder.header(header::CONTENT_TYPE, served.mimetype);
    let response = match range {
        Some((start, end)) => builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"))
            .header(header::CONTENT_LENGTH, end + 1 - start)
            .body(Body::from(
                served.bytes.slice(start as usize..end as usize + 1),
            )),
        None => builder
            .header(header::CONTENT_LENGTH, size)
            .body(Body::from(served.bytes)),
    };
    response.map_err(|e| ApiError::Internal(e.to_string()))
}

/// Pixels: `{region}/{size}/{rotation}/{quality}.{format}` of the oriented
/// original (Image API 3.0 §4).
#[utoipa::path(
    get,
    path = "/iiif/3/{id}/{region}/{size}/{rotation}/{quality_format}",
    tag = "iiif",
    operation_id = "iiifImage",
    params(
        ("id" = String, Path, description = "The image's id"),
        ("region" = String, Path, description = "`full`, `square`, `x,y,w,h` or `pct:x,y,w,h`", example = "full"),
        ("size" = String, Path, description = "`max`, `^max`, `w,`, `,h`, `pct:n`, `w,h`, `!w,h` (with `^` to allow upscaling)", example = "max"),
        ("rotation" = String, Path, description = "`0`, `90`, `180` or `270`, `!` first to mirror", example = "0"),
        ("quality_format" = String, Path, description = "`{quality}.{format}`: quality `default`, `color`, `gray` or `bitonal`; format `jpg`, `png` or `webp`", example = "default.jpg"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag of a copy the client has"),
    ),
    responses(
        (status = 200, description = "The image", headers(
                ("ETag" = String, description = "Names the rendered file"),
                ("Link" = String, description = "The canonical URL and the level 2 profile"),
                ("Access-Control-Allow-Origin" = String, description = "`*`"),
            ),
            content(
                (crate::schema::Binary = "image/jpeg"),
                (crate::schema::Binary = "image/png"),
                (crate::schema::Binary = "image/webp"),
            )),
        (status = 304, description = "Unchanged (`If-None-Match`)"),
        (status = 400, description = "A malformed region, size, rotation, quality or format, or a request beyond the limits", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "An unknown key, or, without a key, a size above the image's `max_unauthorised` (info.json lists the public sizes; the probe service says more)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "A key of the bucket without image:read or a role of the image, for a size above its `max_unauthorised`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image, or its original is not fetched yet", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds, while the original is being fetched"))),
        (status = 422, description = "The original cannot be rendered", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 501, description = "A rotation or format this server does not support", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable, or every render slot is busy; retry", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds"))),
    ),
)]
pub(crate) async fn image(
    State(state): State<AppState>,
    Extension(iiif): Extension<Arc<Iiif>>,
    Path((id, region, size, rotation, quality_format)): Path<(
        String,
        String,
        String,
        String,
        String,
    )>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let source = find_source(&state, &headers, &id).await?;
    let request = IiifRequest::parse(&region, &size, &rotation, &quality_format)?;
    let (width, height) = (source.width, source.height);
    let plan = request.resolve(width, height, &iiif.config.limits)?;
    let canonical = format!(
        "{}/{}",
        id_url(&state, &headers, &id),
        plan.canonical(width, height)
    );
    let edge = edge_at_scale(
        (width, height),
        (plan.region.width, plan.region.height),
        (plan.width, plan.height),
    );
    let private = match source.found.decide(Wanted::Pixels(edge)) {
        // Some of the image is public here, so its existence is no secret:
        // say a key is needed, as the probe does.
        Access::Hidden => {
            return Err(ApiError::Unauthenticated(
                "this size needs an API key: send Authorization: Bearer <key> \
                 (info.json lists the public sizes)",
            ))
        }
        access => !access.check(&id)?,
    };

    if let Some(served) = stored_style(&state, &source, &plan).await? {
        metrics::counter!("easel_iiif_images_total", "source" => "style").increment(1);
        return image_response(served, &canonical, &headers, private);
    }

    let entry = CacheEntry::of(
        &state.settings.fingerprint(),
        &source.sha256,
        &plan,
        width,
        height,
    );
    let etag = entry.etag.clone();
    let mimetype = plan.format.mimetype();
    if none_match(&headers, &etag) {
        let served = Served {
            bytes: Bytes::new(),
            mimetype,
            etag,
        };
        return image_response(served, &canonical, &headers, private);
    }
    if let Some(bytes) = iiif
        .cache
        .get(&*state.catalog, &state.store, &entry, &source.sha256)
        .await
    {
        metrics::counter!("easel_iiif_images_total", "source" => "cache").increment(1);
        let served = Served {
            bytes,
            mimetype,
            etag,
        };
        return image_response(served, &canonical, &headers, private);
    }

    let permit = tokio::time::timeout(
        iiif.config.render_wait,
        iiif.renders.clone().acquire_owned(),
    )
    .await
    .map_err(|_| ApiError::Unavailable("every IIIF render slot is busy".into()))?
    .map_err(|e| ApiError::Internal(format!("render semaphore: {e}")))?;
    // Someone may have rendered it while this request queued.
    if let Some(bytes) = iiif
        .cache
        .get(&*state.catalog, &state.store, &entry, &source.sha256)
        .await
    {
        drop(permit);
        metrics::counter!("easel_iiif_images_total", "source" => "cache").increment(1);
        let served = Served {
            bytes,
            mimetype,
            etag,
        };
        return image_response(served, &canonical, &headers, private);
    }
    let original = state
        .store
        .get(&source.original_key)
        .await
        .map_err(ApiError::from)?;
    // Its share of the process's render memory, which the workers draw
    // from too: a render that never fits is refused, others wait for room.
    let budget = &state.config.render_memory;
    let needed = easel_render::decode_cost(&original, &state.settings.limits)
        .and_then(|cost| cost.check(budget.total_bytes()))
        .map_err(ApiError::Render)?;
    let memory = tokio::time::timeout(iiif.config.render_wait, budget.reserve(needed))
        .await
        .map_err(|_| ApiError::Unavailable("no render memory came free".into()))?
        .map_err(|e| ApiError::Internal(format!("render memory: {e}")))?;
    let settings = state.settings.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        // Held by the thread, not the request: if the client goes away the
        // render still runs to the end, and still counts against the limit.
        let (_permit, _memory) = (permit, memory);
        render_iiif(&original, &plan, &settings)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("IIIF render crashed: {e}")))?
    .map_err(ApiError::Render)?;
    metrics::counter!("easel_iiif_images_total", "source" => "render").increment(1);

    let bytes = Bytes::from(rendered.bytes);
    iiif.cache
        .put(
            &*state.catalog,
            &state.store,
            &entry,
            &source.sha256,
            bytes.clone(),
        )
        .await;
    let served = Served {
        bytes,
        mimetype: rendered.mimetype,
        etag,
    };
    image_response(served, &canonical, &headers, private)
}

/// Deletes the cached renders of the original with `sha256` when no image
/// has it any more (see [`easel_app::iiif::cache::forget_renders_of`]).
pub(crate) async fn forget_renders_of(state: &AppState, sha256: &str) {
    easel_app::iiif::cache::forget_renders_of(&*state.catalog, &state.store, sha256).await;
}

/// The stored square style this request is, when the image has no custom
/// crop (square styles are cut from the crop) and the style was rendered
/// with the current settings from the current original and crop.
async fn stored_style(
    state: &AppState,
    source: &Source,
    plan: &IiifPlan,
) -> Result<Option<Served>, ApiError> {
    let image = &source.found.image;
    // While a new original or crop renders, or after that failed, the rows
    // still name the files of the previous one.
    if image.crop().is_some() || image.status() != ImageStatus::Finished {
        return Ok(None);
    }
    let Some(side) = plan.square_style_side(source.width, source.height) else {
        return Ok(None);
    };
    let Some(style) = Style::RENDERED
        .into_iter()
        .find(|s| s.square_side() == Some(side))
    else {
        return Ok(None);
    };
    let Some(asset) = state.catalog.asset(&image.id, style.as_str()).await? else {
        return Ok(None);
    };
    if asset.settings_fingerprint != state.settings.fingerprint() || asset.mimetype != "image/jpeg"
    {
        return Ok(None);
    }
    let bytes = state.store.get(&asset.storage_key).await?;
    Ok(Some(Served {
        bytes,
        mimetype: "image/jpeg",
        etag: asset.sha256,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_percent_encoded_in_urls() {
        assert_eq!(
            encode_segment("67352ccc-d1b0-11e1-89ae-279075081939"),
            "67352ccc-d1b0-11e1-89ae-279075081939"
        );
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
