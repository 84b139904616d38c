//! Reading images back: the resource, its assets, and its style files.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use easel_catalog::{Image, ImageStatus, MediaAsset};
use easel_render::{Crop, Style};

use crate::files::{self, StoredFile};
use crate::view::{asset_view, image_view, AssetList};
use crate::{ApiError, AppState};

/// The alias feed generators ask for: the largest square that exists.
const FEED: &str = "feed";
const FEED_STYLES: [Style; 2] = [Style::Square3000, Style::Itunes];

pub(crate) async fn find_image(state: &AppState, id: &str) -> Result<Image, ApiError> {
    match state.catalog.image(id).await? {
        Some(image) if image.deleted_at.is_none() => Ok(image),
        _ => Err(ApiError::ImageNotFound(id.to_string())),
    }
}

/// The resource as JSON, or with `Accept: application/octet-stream` the
/// original's bytes.
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let image = find_image(&state, &id).await?;
    if wants_octet_stream(&headers) {
        return serve_original(&state, &headers, &image).await;
    }
    let assets = state.catalog.assets(&id).await?;
    Ok(Json(image_view(&state, image, assets)).into_response())
}

pub async fn assets(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AssetList>, ApiError> {
    find_image(&state, &id).await?;
    let assets = state.catalog.assets(&id).await?;
    Ok(Json(AssetList {
        data: assets.into_iter().map(|a| asset_view(&state, a)).collect(),
    }))
}

pub async fn style(
    State(state): State<AppState>,
    Path((id, style)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let image = find_image(&state, &id).await?;
    if style == FEED {
        for candidate in FEED_STYLES {
            if let Some(asset) = state.catalog.asset(&id, candidate.as_str()).await? {
                return serve_asset(&state, &headers, &asset).await;
            }
        }
        return Err(missing_style(&image, Style::Itunes));
    }
    let style: Style = style.parse().map_err(|_| ApiError::UnknownStyle(style))?;
    if style == Style::Original {
        // Stored before the upload was acknowledged: readable while rendering.
        return serve_original(&state, &headers, &image).await;
    }
    match state.catalog.asset(&id, style.as_str()).await? {
        Some(asset) => serve_asset(&state, &headers, &asset).await,
        None => Err(missing_style(&image, style)),
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
                    let (w, h) = (dimension(image.width), dimension(image.height));
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
) -> Result<Response, ApiError> {
    files::serve(
        state,
        headers,
        StoredFile {
            key: &asset.storage_key,
            sha256: &asset.sha256,
            mimetype: &asset.mimetype,
            size: u64::try_from(asset.size).unwrap_or(0),
        },
    )
    .await
}

async fn serve_original(
    state: &AppState,
    headers: &HeaderMap,
    image: &Image,
) -> Result<Response, ApiError> {
    files::serve(
        state,
        headers,
        StoredFile {
            key: &image.original_key,
            sha256: &image.sha256,
            mimetype: &image.mimetype,
            size: u64::try_from(image.size).unwrap_or(0),
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
