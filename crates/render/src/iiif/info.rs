//! The `info.json` document (Image API 3.0 §5).

use serde::Serialize;

use super::{IiifLimits, Size, SizeKind};

/// The JSON-LD context of the Image API 3.0.
pub const IIIF_CONTEXT: &str = "http://iiif.io/api/image/3/context.json";
/// The `protocol` value of every IIIF Image API service.
pub const IIIF_PROTOCOL: &str = "http://iiif.io/api/image";
/// The content type of `info.json`.
pub const IIIF_INFO_CONTENT_TYPE: &str =
    "application/ld+json;profile=\"http://iiif.io/api/image/3/context.json\"";

/// One `sizes` entry of `info.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IiifSize {
    pub width: u32,
    pub height: u32,
}

/// One `tiles` entry of `info.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IiifTiles {
    pub width: u32,
    pub scale_factors: Vec<u32>,
}

/// The `info.json` document (Image API 3.0 §5).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    #[serde(rename = "@context")]
    pub context: &'static str,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub protocol: &'static str,
    pub profile: &'static str,
    pub width: u32,
    pub height: u32,
    pub max_width: u32,
    pub max_height: u32,
    pub max_area: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sizes: Vec<IiifSize>,
    pub tiles: Vec<IiifTiles>,
    pub extra_formats: Vec<&'static str>,
    pub extra_qualities: Vec<&'static str>,
    pub extra_features: Vec<&'static str>,
}

/// Tile side advertised in `info.json`.
pub const TILE_SIZE: u32 = 512;

/// The full image scaled to fit each `side`x`side` box (the rendered square
/// styles' sides), smallest first, without upscaling and without duplicates.
/// For a square image these are exactly the square styles.
pub fn sizes_for(width: u32, height: u32, sides: &[u32], limits: &IiifLimits) -> Vec<IiifSize> {
    let mut sizes: Vec<IiifSize> = sides
        .iter()
        .filter_map(|&side| {
            let fit = Size {
                upscale: false,
                kind: SizeKind::Fit(side, side),
            };
            fit.resolve(width, height, limits).ok()
        })
        .map(|(width, height)| IiifSize { width, height })
        .collect();
    sizes.sort_by_key(|s| (s.width, s.height));
    sizes.dedup();
    sizes
}

/// `info.json` for the image at `id_url` (the request URL without
/// `/info.json`), `width`x`height` oriented pixels.
pub fn info_json(
    id_url: &str,
    width: u32,
    height: u32,
    sizes: Vec<IiifSize>,
    limits: &IiifLimits,
) -> ImageInfo {
    // Enough halvings for the smallest level to fit in one tile.
    let mut scale_factors = vec![1];
    let mut factor = 1u32;
    while width.max(height).div_ceil(factor) > TILE_SIZE && factor < 1 << 12 {
        factor *= 2;
        scale_factors.push(factor);
    }
    ImageInfo {
        context: IIIF_CONTEXT,
        id: id_url.to_string(),
        kind: "ImageService3",
        protocol: IIIF_PROTOCOL,
        profile: "level2",
        width,
        height,
        max_width: limits.max_width,
        max_height: limits.max_height,
        max_area: limits.max_area,
        sizes,
        tiles: vec![IiifTiles {
            width: TILE_SIZE,
            scale_factors,
        }],
        extra_formats: vec!["webp"],
        extra_qualities: vec!["color", "gray", "bitonal"],
        extra_features: vec![
            "canonicalLinkHeader",
            "mirroring",
            "profileLinkHeader",
            "sizeUpscaling",
        ],
    }
}
