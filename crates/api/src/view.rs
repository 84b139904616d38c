//! The JSON shapes the API returns.

use chrono::{DateTime, Utc};
use easel_catalog::{Image, MediaAsset};
use serde::Serialize;

use crate::AppState;

#[derive(Serialize)]
pub struct CropView {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

#[derive(Serialize)]
pub struct ImageView {
    pub id: String,
    pub bucket: String,
    pub name: Option<String>,
    pub facet: Option<String>,
    pub crop: Option<CropView>,
    pub width: i64,
    pub height: i64,
    pub size: i64,
    pub mimetype: String,
    pub sha256: String,
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
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub links: ImageLinks,
    pub assets: Vec<AssetView>,
}

#[derive(Serialize)]
pub struct ImageLinks {
    #[serde(rename = "self")]
    pub this: String,
    pub assets: String,
    pub original: String,
    pub feed: String,
}

#[derive(Serialize)]
pub struct AssetView {
    pub style: String,
    pub url: String,
    pub size: i64,
    pub mimetype: String,
    pub width: i64,
    pub height: i64,
    pub sha256: String,
    pub upscaled: bool,
    pub settings_fingerprint: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize)]
pub struct AssetList {
    pub data: Vec<AssetView>,
}

pub fn image_path(id: &str) -> String {
    format!("/v1/images/{id}")
}

pub fn asset_view(state: &AppState, asset: MediaAsset) -> AssetView {
    AssetView {
        url: state.link(&format!(
            "{}/styles/{}",
            image_path(&asset.image_id),
            asset.style
        )),
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

pub fn image_view(state: &AppState, image: Image, assets: Vec<MediaAsset>) -> ImageView {
    let path = image_path(&image.id);
    let crop = image
        .crop
        .as_deref()
        .and_then(|c| c.parse::<easel_render::Crop>().ok())
        .map(|c| CropView {
            x: c.x,
            y: c.y,
            width: c.width,
            height: c.height,
        });
    ImageView {
        status: image.status().as_str(),
        tags: image.tags(),
        links: ImageLinks {
            this: state.link(&path),
            assets: state.link(&format!("{path}/assets")),
            original: state.link(&format!("{path}/styles/original")),
            feed: state.link(&format!("{path}/styles/feed")),
        },
        assets: assets.into_iter().map(|a| asset_view(state, a)).collect(),
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
        error: image.error,
        error_code: image.error_code,
        string1: image.string1,
        string2: image.string2,
        string3: image.string3,
        number1: image.number1,
        number2: image.number2,
        number3: image.number3,
        created_at: image.created_at,
        updated_at: image.updated_at,
        finished_at: image.finished_at,
        deleted_at: image.deleted_at,
    }
}
