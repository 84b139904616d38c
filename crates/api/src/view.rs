//! The JSON shapes the API returns (and documents in its OpenAPI schema).

use axum::http::HeaderValue;
use chrono::{DateTime, Utc};
use easel_catalog::{Image, MediaAsset};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// A crop in oriented pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CropView {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl From<easel_render::Crop> for CropView {
    fn from(c: easel_render::Crop) -> Self {
        CropView {
            x: c.x,
            y: c.y,
            width: c.width,
            height: c.height,
        }
    }
}

/// Whether the feed file, as it is served, passes what directories ask:
/// publicly readable, a square of 1400 to 3000 px, JPEG or PNG, RGB
/// without alpha, not enlarged, within the feed byte budget.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedReadyView {
    pub ok: bool,
    /// Why a directory would reject it.
    pub reasons: Vec<String>,
    /// Accepted, but worth knowing (e.g. the quality was lowered to fit
    /// the budget, or square-3000 did not fit so the feed file is itunes).
    pub warnings: Vec<String>,
}

/// An image: its metadata, status and links to its files.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageView {
    pub id: String,
    pub bucket: String,
    pub name: Option<String>,
    pub facet: Option<String>,
    pub crop: Option<CropView>,
    /// Oriented width; null until an origin is fetched.
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// Bytes of the original.
    pub size: Option<i64>,
    pub mimetype: Option<String>,
    pub sha256: Option<String>,
    pub origin: Option<String>,
    /// `ingesting`, `finished` or `error`.
    pub status: &'static str,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub tags: Vec<String>,
    pub string1: Option<String>,
    pub string2: Option<String>,
    pub string3: Option<String>,
    pub number1: Option<f64>,
    pub number2: Option<f64>,
    pub number3: Option<f64>,
    pub feed_ready: FeedReadyView,
    /// The image's own limit: the longest edge a caller without a key may
    /// see (-1 open, 0 nothing); null follows the bucket's setting.
    pub max_unauthorised: Option<i64>,
    /// Role URIs: a key holding one sees the image above the limit.
    pub roles: Vec<String>,
    /// The id of the batch whose job rendered the files now served; null
    /// after an upload, edit or other render.
    pub batch: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub links: ImageLinks,
    /// Present on a single image, and in lists with `include=assets`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assets: Option<Vec<AssetView>>,
}

/// Absolute URLs (from `--public-url`, else the request's host).
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageLinks {
    #[serde(rename = "self")]
    pub this: String,
    pub assets: String,
    pub original: String,
    /// The feed file's stable alias (`.../styles/feed.jpg`): always the
    /// current feed file, revalidated by caches.
    pub feed: String,
    /// The feed file's versioned URL, immutable: what a feed should carry.
    /// Present once rendered, with the assets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed_file: Option<String>,
    /// The `<itunes:image>` and `<podcast:image>` tags for a feed.
    pub podcast: String,
    pub iiif: String,
}

/// One stored file of an image.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssetView {
    pub style: String,
    /// The file's versioned URL: ends in its extension, and its bytes never
    /// change (cached a year, `immutable`). Kept for the grace period after
    /// a re-render replaces the file.
    pub url: String,
    /// The style's stable alias, with the extension: always the current
    /// file of the style (short freshness, ETag).
    pub alias: String,
    pub size: i64,
    pub mimetype: String,
    pub width: i64,
    pub height: i64,
    pub sha256: String,
    /// True when a square style had to be enlarged from a smaller crop.
    pub upscaled: bool,
    pub settings_fingerprint: String,
    /// The JPEG quality it was encoded at (the feed byte budget may have
    /// lowered it); null for the original and files not re-encoded.
    pub quality: Option<i64>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetList {
    pub data: Vec<AssetView>,
}

pub fn image_path(id: &str) -> String {
    format!("/v1/images/{id}")
}

/// The resource's ETag (without quotes): its row version.
pub fn etag_value(version: i64) -> String {
    format!("v{version}")
}

pub fn etag_header(image: &Image) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", etag_value(image.version)))
        .unwrap_or_else(|_| HeaderValue::from_static("\"v0\""))
}

/// The extension a URL of a file of this type ends in.
pub fn extension_of(mimetype: &str) -> &'static str {
    match mimetype {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "image/tiff" => "tif",
        _ => "bin",
    }
}

/// Hex digits of the sha256 in a versioned URL: 64 bits, so two versions
/// of one image's style never share them.
pub const VERSION_DIGITS: usize = 16;

/// `/v1/images/{id}/styles/{style}/{sha256 prefix}.{ext}`.
pub fn version_path(image_id: &str, style: &str, sha256: &str, mimetype: &str) -> String {
    let version = sha256.get(..VERSION_DIGITS).unwrap_or(sha256);
    format!(
        "{}/styles/{style}/{version}.{}",
        image_path(image_id),
        extension_of(mimetype)
    )
}

pub fn asset_view(state: &AppState, asset: MediaAsset) -> AssetView {
    AssetView {
        url: state.link(&version_path(
            &asset.image_id,
            &asset.style,
            &asset.sha256,
            &asset.mimetype,
        )),
        alias: state.link(&format!(
            "{}/styles/{}.{}",
            image_path(&asset.image_id),
            asset.style,
            extension_of(&asset.mimetype)
        )),
        quality: asset.quality,
        style: asset.style,
        size: asset.size,
        mimetype: asset.mimetype,
        width: asset.width,
        height: asset.height,
        sha256: asset.sha256,
        upscaled: asset.upscaled,
        settings_fingerprint: asset.settings_fingerprint,
        created_at: asset.created_at,
    }
}

pub fn image_view(state: &AppState, image: Image, assets: Option<Vec<MediaAsset>>) -> ImageView {
    let path = image_path(&image.id);
    let crop = image.crop().map(CropView::from);
    let readiness = image.feed_readiness();
    let feed_file = assets.as_ref().and_then(|list| {
        // Images rendered before the feed file was recorded: the old rule.
        let feed = match image.feed_style.as_deref() {
            Some(style) => list.iter().find(|a| a.style == style),
            None => easel_render::feed::FEED_STYLES
                .iter()
                .find_map(|style| list.iter().find(|a| a.style == style.as_str())),
        }?;
        Some(state.link(&version_path(
            &image.id,
            &feed.style,
            &feed.sha256,
            &feed.mimetype,
        )))
    });
    ImageView {
        status: image.status().as_str(),
        tags: image.tags(),
        roles: image.roles(),
        feed_ready: FeedReadyView {
            ok: readiness.ok,
            reasons: readiness.reasons,
            warnings: readiness.warnings,
        },
        links: ImageLinks {
            this: state.link(&path),
            assets: state.link(&format!("{path}/assets")),
            original: state.link(&format!("{path}/styles/original")),
            feed: state.link(&format!("{path}/styles/feed.jpg")),
            feed_file,
            podcast: state.link(&format!("{path}/podcast")),
            iiif: state.link(&format!("/iiif/3/{}/info.json", image.id)),
        },
        assets: assets.map(|list| list.into_iter().map(|a| asset_view(state, a)).collect()),
        id: image.id,
        bucket: image.bucket,
        name: image.name,
        facet: image.facet,
        crop,
        width: image.width,
        height: image.height,
        size: image.size,
        mimetype: image.mimetype,
        sha256: image.sha256,
        origin: image.origin_url,
        error: image.error,
        error_code: image.error_code,
        string1: image.string1,
        string2: image.string2,
        string3: image.string3,
        number1: image.number1,
        number2: image.number2,
        number3: image.number3,
        max_unauthorised: image.max_unauthorised,
        batch: image.batch_id,
        created_at: image.created_at,
        updated_at: image.updated_at,
        finished_at: image.finished_at,
        deleted_at: image.deleted_at,
    }
}
