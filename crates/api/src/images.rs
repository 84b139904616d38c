//! Reading images back: the resource, its assets, and its style files.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use easel_catalog::{Image, ImageStatus, MediaAsset};
use easel_render::{Crop, Style};

use crate::auth::{self, Caller};
use crate::files::{self, StoredFile};
use crate::view::{asset_view, etag_header, image_view, AssetList};
use crate::{ApiError, AppState};

/// The alias feed generators ask for: the largest square that exists.
const FEED: &str = "feed";
const FEED_STYLES: [Style; 2] = [Style::Square3000, Style::Itunes];

/// An image the caller's key may see: missing, trashed and other buckets'
/// images are all the same 404, so ids never leak across buckets.
pub(crate) async fn find_image(
    state: &AppState,
    bucket: &str,
    id: &str,
) -> Result<Image, ApiError> {
    match state.catalog.image(id).await? {
        Some(image) if image.deleted_at.is_none() && image.bucket == bucket => Ok(image),
        _ => Err(ApiError::ImageNotFound(id.to_string())),
    }
}

/// As [`find_image`], trashed images included.
pub(crate) async fn find_any(state: &AppState, bucket: &str, id: &str) -> Result<Image, ApiError> {
    match state.catalog.image(id).await? {
        Some(image) if image.bucket == bucket => Ok(image),
        _ => Err(ApiError::ImageNotFound(id.to_string())),
    }
}

/// The resource as JSON, or with `Accept: application/octet-stream` the
/// original's bytes.
#[utoipa::path(
    get,
    path = "/v1/images/{id}",
    tag = "images",
    operation_id = "showImage",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The image's id"),
        ("Accept" = Option<String>, Header, description = "`application/octet-stream` for the original's bytes instead of JSON"),
    ),
    responses(
        (status = 200, description = "The image (JSON), or its original's bytes", headers(("ETag" = String, description = "The image's version (JSON) or the file's sha256 (bytes)")),
            content(
                (crate::view::ImageView = "application/json"),
                (crate::openapi::Binary = "image/jpeg"),
                (crate::openapi::Binary = "image/png"),
                (crate::openapi::Binary = "image/webp"),
                (crate::openapi::Binary = "image/gif"),
                (crate::openapi::Binary = "image/tiff"),
            )),
        (status = 206, description = "Part of the original (a `Range` request)", headers(("Content-Range" = String, description = "`bytes start-end/size`")),
            content(
                (crate::openapi::Binary = "image/jpeg"),
                (crate::openapi::Binary = "image/png"),
                (crate::openapi::Binary = "image/webp"),
                (crate::openapi::Binary = "image/gif"),
                (crate::openapi::Binary = "image/tiff"),
            )),
        (status = 304, description = "The original is unchanged (`If-None-Match`)"),
        crate::error::Unauthorized,
        crate::error::LacksRead,
        (status = 404, description = "No such image in the key's bucket, or the original is not fetched yet", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds, while the original is being fetched"))),
        (status = 416, description = "The range is outside the file", body = crate::error::Problem, content_type = "application/problem+json"),
        crate::error::Unavailable,
    ),
)]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = Caller::from_headers(&state, &headers).await?;
    let key = caller.require(auth::READ)?;
    let image = find_image(&state, &key.bucket, &id).await?;
    if wants_octet_stream(&headers) {
        return serve_original(&state, &headers, &image).await;
    }
    let assets = state.catalog.assets(&id).await?;
    Ok(resource(&state, StatusCode::OK, image, assets))
}

/// An image as JSON with its ETag.
pub(crate) fn resource(
    state: &AppState,
    status: StatusCode,
    image: Image,
    assets: Vec<MediaAsset>,
) -> Response {
    let etag = etag_header(&image);
    let mut response = (status, Json(image_view(state, image, Some(assets)))).into_response();
    response.headers_mut().insert(header::ETAG, etag);
    response
}

/// The image's stored files (one per rendered style).
#[utoipa::path(
    get,
    path = "/v1/images/{id}/assets",
    tag = "images",
    operation_id = "listImageAssets",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The image's id")),
    responses(
        (status = 200, description = "The image's assets", body = AssetList),
        crate::error::Unauthorized,
        crate::error::LacksRead,
        crate::error::NoSuchImage,
        crate::error::Unavailable,
    ),
)]
pub async fn assets(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<AssetList>, ApiError> {
    let caller = Caller::from_headers(&state, &headers).await?;
    let key = caller.require(auth::READ)?;
    find_image(&state, &key.bucket, &id).await?;
    let assets = state.catalog.assets(&id).await?;
    Ok(Json(AssetList {
        data: assets.into_iter().map(|a| asset_view(&state, a)).collect(),
    }))
}

/// A style file. Public unless the bucket says otherwise; the original
/// always needs `image:read`.
#[utoipa::path(
    get,
    path = "/v1/images/{id}/styles/{style}",
    tag = "styles",
    operation_id = "getImageStyle",
    security((), ("bearer" = [])),
    params(
        ("id" = String, Path, description = "The image's id"),
        ("style" = String, Path, description = "A style name: `original`, `stripped-original`, `regular`, `thumb`, \
            `square-400`, `square-640`, `square-888`, `itunes`, `square-3000`, or `feed` (`square-3000`, else `itunes`)",
            example = "itunes"),
    ),
    responses(
        (status = 200, description = "The file", headers(
                ("ETag" = String, description = "The file's sha256"),
                ("Accept-Ranges" = String, description = "`bytes`"),
            ),
            content(
                (crate::openapi::Binary = "image/jpeg"),
                (crate::openapi::Binary = "image/png"),
                (crate::openapi::Binary = "image/webp"),
                (crate::openapi::Binary = "image/gif"),
                (crate::openapi::Binary = "image/tiff"),
            )),
        (status = 206, description = "Part of the file (a `Range` request)", headers(("Content-Range" = String, description = "`bytes start-end/size`")),
            content(
                (crate::openapi::Binary = "image/jpeg"),
                (crate::openapi::Binary = "image/png"),
                (crate::openapi::Binary = "image/webp"),
                (crate::openapi::Binary = "image/gif"),
                (crate::openapi::Binary = "image/tiff"),
            )),
        (status = 304, description = "Unchanged (`If-None-Match`)"),
        (status = 401, description = "An unknown key, or no key for a private file or the original", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks image:read, which this file needs", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image or style, a style that does not apply to this image, or one not rendered yet", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds, while the image is still rendering"))),
        (status = 416, description = "The range is outside the file", body = crate::error::Problem, content_type = "application/problem+json"),
        crate::error::Unavailable,
    ),
)]
pub async fn style(
    State(state): State<AppState>,
    Path((id, style)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = Caller::from_headers(&state, &headers).await?;
    let image = match state.catalog.image(&id).await? {
        Some(image) if image.deleted_at.is_none() => image,
        _ => return Err(ApiError::ImageNotFound(id)),
    };
    // A key of another bucket sees nothing of this one, public or not.
    if caller.key().is_some_and(|k| k.bucket != image.bucket) {
        return Err(ApiError::ImageNotFound(id));
    }
    let asset = if style == FEED {
        let mut found = None;
        for candidate in FEED_STYLES {
            if let Some(asset) = state.catalog.asset(&id, candidate.as_str()).await? {
                found = Some(asset);
                break;
            }
        }
        found.ok_or_else(|| missing_style(&image, Style::Itunes))
    } else {
        let parsed: Style = style
            .parse()
            .map_err(|_| ApiError::UnknownStyle(style.clone()))?;
        if parsed == Style::Original {
            caller.require(auth::READ)?;
            // Stored before the upload was acknowledged: readable while rendering.
            return serve_original(&state, &headers, &image).await;
        }
        state
            .catalog
            .asset(&id, parsed.as_str())
            .await?
            .ok_or_else(|| missing_style(&image, parsed))
    };
    let settings = state.catalog.bucket_settings(&image.bucket).await?;
    let public = |width: i64, height: i64| match settings.public_max_side {
        None => true,
        Some(max) => width.max(height) <= max,
    };
    match asset {
        Ok(asset) => {
            let public = public(asset.width, asset.height);
            if !public {
                caller.require(auth::READ)?;
            }
            serve_asset(&state, &headers, &asset, public).await
        }
        // Say why a file is missing only to those who may see the image.
        Err(why) => {
            if settings.public_max_side.is_some() {
                caller.require(auth::READ)?;
            }
            Err(why)
        }
    }
}

/// Why a style has no file, in words a client can act on.
fn missing_style(image: &Image, style: Style) -> ApiError {
    match image.status() {
        ImageStatus::Ingesting => ApiError::StyleNotReady(style.to_string()),
        ImageStatus::Error => ApiError::ImageFailed {
            reason: image
                .error
                .clone()
                .unwrap_or_else(|| "unknown reason".into()),
        },
        ImageStatus::Finished => {
            let crop = image
                .crop
                .as_deref()
                .and_then(|c| c.parse::<Crop>().ok())
                .unwrap_or_else(|| {
                    let (w, h) = (
                        dimension(image.width.unwrap_or(0)),
                        dimension(image.height.unwrap_or(0)),
                    );
                    Crop::centred_square(w, h)
                });
            match style.square_side() {
                Some(side) if !style.applies_to_crop(crop.width, crop.height) => ApiError::StyleNotApplicable(format!(
                    "{style} exists only for images whose crop is at least {side}x{side}; this image's crop is {}x{}",
                    crop.width, crop.height
                )),
                _ => ApiError::StyleNotApplicable(format!("{style} was not rendered for this image")),
            }
        }
    }
}

fn dimension(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

async fn serve_asset(
    state: &AppState,
    headers: &HeaderMap,
    asset: &MediaAsset,
    public: bool,
) -> Result<Response, ApiError> {
    files::serve(
        state,
        headers,
        StoredFile {
            key: &asset.storage_key,
            sha256: &asset.sha256,
            mimetype: &asset.mimetype,
            size: u64::try_from(asset.size).unwrap_or(0),
            public,
        },
    )
    .await
}

async fn serve_original(
    state: &AppState,
    headers: &HeaderMap,
    image: &Image,
) -> Result<Response, ApiError> {
    let Some(original) = image.original() else {
        return Err(ApiError::StyleNotReady("original".into()));
    };
    files::serve(
        state,
        headers,
        StoredFile {
            key: original.key,
            sha256: original.sha256,
            mimetype: original.mimetype,
            size: u64::try_from(original.size).unwrap_or(0),
            // The original always needs a read key.
            public: false,
        },
    )
    .await
}

/// True when the client asks for bytes rather than JSON. Only an explicit
/// `application/octet-stream` counts: browsers send `*/*` and get JSON.
fn wants_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|item| item.split(';').next().unwrap_or("").trim())
        .find(|mime| matches!(*mime, "application/octet-stream" | "application/json"))
        == Some("application/octet-stream")
}
