//! Reading images back: the resource, its assets, and its style files.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use easel_catalog::{Image, ImageStatus, MediaAsset};
use easel_render::feed::FEED_STYLES;
use easel_render::{Crop, Style};

use crate::access::{
    check_visible, decide, visible_image, visible_image_with_settings, Access, Trashed, Wanted,
};
use crate::auth::{scope, Caller, RequireScope};
use crate::files::{self, Caching, StoredFile};
use crate::serve_cache::{Resolved, Target};
use crate::view::{self, asset_view, etag_header, image_view, AssetList};
use crate::{ApiError, AppState};

/// The alias of the feed file.
const FEED: &str = easel_app::FEED_ALIAS;

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
                (crate::schema::Binary = "image/jpeg"),
                (crate::schema::Binary = "image/png"),
                (crate::schema::Binary = "image/webp"),
                (crate::schema::Binary = "image/gif"),
                (crate::schema::Binary = "image/tiff"),
            )),
        (status = 206, description = "Part of the original (a `Range` request)", headers(("Content-Range" = String, description = "`bytes start-end/size`")),
            content(
                (crate::schema::Binary = "image/jpeg"),
                (crate::schema::Binary = "image/png"),
                (crate::schema::Binary = "image/webp"),
                (crate::schema::Binary = "image/gif"),
                (crate::schema::Binary = "image/tiff"),
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
    method: Method,
    Path(id): Path<String>,
    key: RequireScope<scope::Read>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let image = visible_image(&state, Some(&*key), &id, Trashed::Hidden).await?;
    if wants_octet_stream(&headers) {
        // PUT can replace the original under this URL: revalidate.
        let caching = Caching::Revalidate(state.config.alias_max_age);
        return serve_original(&state, &method, &headers, &image, None, caching).await;
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
    key: RequireScope<scope::Read>,
) -> Result<Json<AssetList>, ApiError> {
    visible_image(&state, Some(&*key), &id, Trashed::Hidden).await?;
    let assets = state.catalog.assets(&id).await?;
    Ok(Json(AssetList {
        data: assets.into_iter().map(|a| asset_view(&state, a)).collect(),
    }))
}

/// The OpenAPI description of a file endpoint (an alias or a version):
/// the same answers, with the path, operation, parameters, caching and
/// reasons for a 404 they differ by. Wraps the handler.
macro_rules! file_endpoint {
    (
        path = $path:literal,
        operation_id = $operation:literal,
        summary = $summary:literal,
        params($($params:tt)*),
        cache_control = $cache:literal,
        not_found = $not_found:literal,
        $handler:item
    ) => {
        #[utoipa::path(
            get,
            path = $path,
            tag = "styles",
            operation_id = $operation,
            summary = $summary,
            security((), ("bearer" = [])),
            params($($params)*),
            responses(
                (status = 200, description = "The file (also answered to `HEAD`, with its `Content-Length`)", headers(
                        ("ETag" = String, description = "The file's sha256"),
                        ("Cache-Control" = String, description = $cache),
                        ("Accept-Ranges" = String, description = "`bytes`"),
                    ),
                    content(
                        (crate::schema::Binary = "image/jpeg"),
                        (crate::schema::Binary = "image/png"),
                        (crate::schema::Binary = "image/webp"),
                        (crate::schema::Binary = "image/gif"),
                        (crate::schema::Binary = "image/tiff"),
                    )),
                (status = 206, description = "Part of the file (a `Range` request)", headers(("Content-Range" = String, description = "`bytes start-end/size`")),
                    content(
                        (crate::schema::Binary = "image/jpeg"),
                        (crate::schema::Binary = "image/png"),
                        (crate::schema::Binary = "image/webp"),
                        (crate::schema::Binary = "image/gif"),
                        (crate::schema::Binary = "image/tiff"),
                    )),
                (status = 304, description = "Unchanged (`If-None-Match`)"),
                (status = 401, description = "An unknown key, or no key for the original of an image in a public bucket", body = crate::error::Problem, content_type = "application/problem+json"),
                (status = 403, description = "The key lacks image:read, which this file needs", body = crate::error::Problem, content_type = "application/problem+json"),
                (status = 404, description = $not_found, body = crate::error::Problem, content_type = "application/problem+json",
                    headers(("Retry-After" = u32, description = "Seconds, while the image is still rendering"))),
                (status = 416, description = "The range is outside the file", body = crate::error::Problem, content_type = "application/problem+json"),
                crate::error::Unavailable,
            ),
        )]
        $handler
    };
}

file_endpoint! {
    path = "/v1/images/{id}/styles/{style}",
    operation_id = "getImageStyle",
    summary = "A style's current file (stable alias)",
    params(
        ("id" = String, Path, description = "The image's id"),
        ("style" = String, Path, description = "A style name: `original`, `stripped-original`, `regular`, `thumb`, \
            `square-400`, `square-640`, `square-888`, `itunes`, `square-3000`, or `feed` (the feed file: \
            `square-3000` when it fits the feed byte budget, else `itunes`); optionally with the file's \
            extension (`itunes.jpg`, `feed.jpg`), which must match its type",
            example = "itunes.jpg"),
    ),
    cache_control = "`public, max-age=<alias max age>`: never `immutable`, a re-render changes the bytes; `private` and `Vary: Authorization` when a key was needed",
    not_found = "No such image or style (a private bucket answers so to callers without its key), a style that does not apply to this image, one not rendered yet, or an extension that is not the file's",
/// A stable alias: the current file of a style (or the feed file), with an
/// ETag and a short freshness. Public unless the bucket says otherwise; the
/// original always needs `image:read`.
pub async fn style(
    State(state): State<AppState>,
    method: Method,
    Path((id, segment)): Path<(String, String)>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (wanted, extension) = parse_alias(&segment)?;
    let caching = Caching::Revalidate(state.config.alias_max_age);
    if wanted == Alias::Style(Style::Original) {
        let (image, settings) = visible_image_with_settings(&state, caller.key(), &id).await?;
        decide(&image, &settings, caller.key(), Wanted::Original).check(&id)?;
        // Stored before the upload was acknowledged: readable while rendering.
        return serve_original(&state, &method, &headers, &image, extension, caching).await;
    }
    let name = match wanted {
        Alias::Feed => FEED,
        Alias::Style(style) => style.as_str(),
    };
    let resolved = state
        .config
        .serve_cache
        .resolve(&id, Target::Alias(name.to_string()), || async {
            let (image, settings) = visible_image_with_settings(&state, None, &id).await?;
            let asset = match wanted {
                Alias::Feed => feed_asset(&state, &image).await?,
                Alias::Style(style) => state.catalog.asset(&id, style.as_str()).await?,
            };
            Ok(Resolved {
                image,
                settings,
                asset,
            })
        })
        .await?;
    let (image, settings) = (&resolved.image, &resolved.settings);
    check_visible(image, caller.key(), Trashed::Hidden)?;
    let Some(asset) = &resolved.asset else {
        // Say why a file is missing only to those who may see the image.
        decide(image, settings, caller.key(), Wanted::Everything).check(&id)?;
        let style = match wanted {
            Alias::Feed => Style::Itunes,
            Alias::Style(style) => style,
        };
        return Err(missing_style(image, style));
    };
    let edge = asset.width.max(asset.height);
    let public = decide(image, settings, caller.key(), Wanted::Pixels(edge)).check(&id)?;
    if let Some(extension) = extension {
        check_extension(&asset.style, &asset.mimetype, extension)?;
    }
    let location = state.link(&view::version_path(
        &id,
        &asset.style,
        &asset.sha256,
        &asset.mimetype,
    ));
    serve_asset(
        &state,
        &method,
        &headers,
        asset,
        public,
        caching,
        Some(location),
    )
    .await
}
}

file_endpoint! {
    path = "/v1/images/{id}/styles/{style}/{file}",
    operation_id = "getImageStyleVersion",
    summary = "A style's file by version (immutable: what a feed carries)",
    params(
        ("id" = String, Path, description = "The image's id"),
        ("style" = String, Path, description = "A style name (not `feed`: the feed file's own style)", example = "itunes"),
        ("file" = String, Path, description = "The start of the file's sha256 (16 to 64 lower-case hex digits) and its extension, as the asset's `url` gives it",
            example = "3a7bd3e2360a3d29.jpg"),
    ),
    cache_control = "`public, max-age=31536000, immutable`; `private` and `Vary: Authorization` when a key was needed",
    not_found = "No such image or style (a private bucket answers so to callers without its key), or no file of that version: never minted, or replaced longer ago than the grace period (`version-not-found`)",
/// A versioned file: the bytes it was minted for, forever (`immutable`),
/// while it is the style's current file and, once replaced, for the grace
/// period.
pub async fn style_version(
    State(state): State<AppState>,
    method: Method,
    Path((id, style, file)): Path<(String, String, String)>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let style: Style = style
        .parse()
        .map_err(|_| ApiError::UnknownStyle(style.clone()))?;
    let parsed = parse_version(&file);
    let resolved = match parsed {
        Some((prefix, _)) if style != Style::Original => {
            let target = Target::Version {
                style: style.as_str().to_string(),
                prefix: prefix.to_string(),
            };
            state
                .config
                .serve_cache
                .resolve(&id, target, || async {
                    let (image, settings) = visible_image_with_settings(&state, None, &id).await?;
                    let asset = find_version(&state, &id, style, prefix).await?;
                    Ok(Resolved {
                        image,
                        settings,
                        asset,
                    })
                })
                .await?
        }
        _ => {
            let (image, settings) = visible_image_with_settings(&state, None, &id).await?;
            Arc::new(Resolved {
                image,
                settings,
                asset: None,
            })
        }
    };
    let (image, settings) = (&resolved.image, &resolved.settings);
    check_visible(image, caller.key(), Trashed::Hidden)?;
    // In a bucket that is not fully public, a stranger learns no more from
    // a wrong version than from a wrong id.
    let hide = decide(image, settings, caller.key(), Wanted::Everything) == Access::Hidden;
    let gone = || {
        if hide {
            ApiError::ImageNotFound(id.clone())
        } else {
            ApiError::VersionNotFound {
                style: style.to_string(),
                current: state.link(&format!("{}/styles/{style}", view::image_path(&id))),
            }
        }
    };
    let (prefix, extension) = parsed.ok_or_else(gone)?;
    let original_version;
    let found = if style == Style::Original {
        decide(image, settings, caller.key(), Wanted::Original).check(&id)?;
        original_version = find_version(&state, &id, style, prefix).await?;
        original_version.as_ref()
    } else {
        resolved.asset.as_ref()
    };
    let found = match found {
        Some(found) => found,
        // Before its first render, the original is the image's own.
        None if style == Style::Original => match image.original() {
            Some(original) if original.sha256.starts_with(prefix) => {
                check_extension("original", original.mimetype, extension).map_err(|_| gone())?;
                return serve_original(&state, &method, &headers, image, None, Caching::Immutable)
                    .await;
            }
            _ => return Err(gone()),
        },
        None => return Err(gone()),
    };
    check_extension(&found.style, &found.mimetype, extension).map_err(|_| gone())?;
    let edge = found.width.max(found.height);
    let public = decide(image, settings, caller.key(), Wanted::Pixels(edge)).check(&id)?;
    serve_asset(
        &state,
        &method,
        &headers,
        found,
        public,
        Caching::Immutable,
        None,
    )
    .await
}
}

/// What a stable alias names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alias {
    Style(Style),
    /// The feed file the last render chose.
    Feed,
}

/// `itunes`, `itunes.jpg`, `feed`, `feed.jpg`: the alias, and the
/// extension when one was given.
fn parse_alias(segment: &str) -> Result<(Alias, Option<&str>), ApiError> {
    let parse = |name: &str| {
        if name == FEED {
            Some(Alias::Feed)
        } else {
            name.parse::<Style>().ok().map(Alias::Style)
        }
    };
    if let Some(alias) = parse(segment) {
        return Ok((alias, None));
    }
    match segment.rsplit_once('.') {
        Some((name, extension)) if !extension.is_empty() => match parse(name) {
            Some(alias) => Ok((alias, Some(extension))),
            None => Err(ApiError::UnknownStyle(segment.to_string())),
        },
        _ => Err(ApiError::UnknownStyle(segment.to_string())),
    }
}

/// `3a7bd3e2360a3d29.jpg`: the sha256 prefix (16 to 64 lower-case hex
/// digits) and the extension.
fn parse_version(file: &str) -> Option<(&str, &str)> {
    let (prefix, extension) = file.split_once('.')?;
    let hex = prefix
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ((16..=64).contains(&prefix.len()) && hex && !extension.is_empty())
        .then_some((prefix, extension))
}

fn check_extension(style: &str, mimetype: &str, extension: &str) -> Result<(), ApiError> {
    let canonical = view::extension_of(mimetype);
    let also = match canonical {
        "jpg" => "jpeg",
        "tif" => "tiff",
        other => other,
    };
    if extension == canonical || extension == also {
        Ok(())
    } else {
        Err(ApiError::WrongExtension {
            style: style.to_string(),
            mimetype: mimetype.to_string(),
            extension: canonical,
        })
    }
}

/// The file of `style` whose sha256 starts with `prefix`: the current one,
/// else one replaced less than the grace period ago.
async fn find_version(
    state: &AppState,
    id: &str,
    style: Style,
    prefix: &str,
) -> Result<Option<MediaAsset>, ApiError> {
    let current = state.catalog.asset(id, style.as_str()).await?;
    Ok(match current.filter(|a| a.sha256.starts_with(prefix)) {
        Some(asset) => Some(asset),
        None => state
            .catalog
            .retained_file(id, style.as_str(), prefix, easel_catalog::now_ms())
            .await?
            .map(retained_as_asset),
    })
}

/// The feed file the last render chose; for images rendered before that
/// was recorded, `square-3000` if it exists, else `itunes`.
pub(crate) async fn feed_asset(
    state: &AppState,
    image: &Image,
) -> Result<Option<MediaAsset>, ApiError> {
    if let Some(style) = &image.feed_style {
        if let Some(asset) = state.catalog.asset(&image.id, style).await? {
            return Ok(Some(asset));
        }
    }
    for candidate in FEED_STYLES {
        if let Some(asset) = state.catalog.asset(&image.id, candidate.as_str()).await? {
            return Ok(Some(asset));
        }
    }
    Ok(None)
}

fn retained_as_asset(file: easel_catalog::RetainedFile) -> MediaAsset {
    MediaAsset {
        id: 0,
        image_id: file.image_id,
        style: file.style,
        storage_key: file.storage_key,
        size: file.size,
        mimetype: file.mimetype,
        width: file.width,
        height: file.height,
        sha256: file.sha256,
        upscaled: false,
        settings_fingerprint: String::new(),
        quality: None,
        created_at: chrono::DateTime::from_timestamp_millis(file.superseded_at).unwrap_or_default(),
    }
}

/// Why a style has no file, in words a client can act on.
pub(crate) fn missing_style(image: &Image, style: Style) -> ApiError {
    match image.status() {
        ImageStatus::Ingesting => ApiError::StyleNotReady(style.to_string()),
        ImageStatus::Error => ApiError::ImageFailed {
            reason: image
                .error
                .clone()
                .unwrap_or_else(|| "unknown reason".into()),
        },
        ImageStatus::Finished => {
            let crop = image.crop().unwrap_or_else(|| {
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
    method: &Method,
    headers: &HeaderMap,
    asset: &MediaAsset,
    public: bool,
    caching: Caching,
    content_location: Option<String>,
) -> Result<Response, ApiError> {
    files::serve(
        state,
        method,
        headers,
        StoredFile {
            key: &asset.storage_key,
            sha256: &asset.sha256,
            mimetype: &asset.mimetype,
            size: u64::try_from(asset.size).unwrap_or(0),
            public,
            caching,
            content_location,
        },
    )
    .await
}

/// The original's bytes; `extension`, when the URL had one, must match.
async fn serve_original(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    image: &Image,
    extension: Option<&str>,
    caching: Caching,
) -> Result<Response, ApiError> {
    let Some(original) = image.original() else {
        return Err(ApiError::StyleNotReady("original".into()));
    };
    if let Some(extension) = extension {
        check_extension("original", original.mimetype, extension)?;
    }
    files::serve(
        state,
        method,
        headers,
        StoredFile {
            key: original.key,
            sha256: original.sha256,
            mimetype: original.mimetype,
            size: u64::try_from(original.size).unwrap_or(0),
            // The original always needs a read key.
            public: false,
            caching,
            content_location: None,
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
