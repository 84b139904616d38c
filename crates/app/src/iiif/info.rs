//! The `info.json` document (Image API 3.0 §5): what the service says of
//! an image and of itself. The engine plans and renders; describing the
//! service is the application's.

use serde::Serialize;

use easel_render::iiif::{IiifLimits, Size, SizeKind};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_json_describes_the_service() {
        let limits = IiifLimits::default();
        let sizes = sizes_for(1000, 1000, &[100, 400, 640, 888, 1400], &limits);
        let info = info_json("http://h/iiif/3/abc", 1000, 1000, sizes, &limits);
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["@context"], "http://iiif.io/api/image/3/context.json");
        assert_eq!(json["id"], "http://h/iiif/3/abc");
        assert_eq!(json["type"], "ImageService3");
        assert_eq!(json["protocol"], "http://iiif.io/api/image");
        assert_eq!(json["profile"], "level2");
        assert_eq!(
            (json["width"].as_u64(), json["height"].as_u64()),
            (Some(1000), Some(1000))
        );
        assert_eq!(json["maxWidth"], limits.max_width);
        assert_eq!(json["maxHeight"], limits.max_height);
        assert_eq!(json["maxArea"], limits.max_area);
        // 1400 would upscale a 1000x1000 image, so it is not offered.
        let sizes: Vec<(u64, u64)> = json["sizes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["width"].as_u64().unwrap(), s["height"].as_u64().unwrap()))
            .collect();
        assert_eq!(sizes, [(100, 100), (400, 400), (640, 640), (888, 888)]);
        assert_eq!(json["tiles"][0]["width"], 512);
        assert_eq!(json["tiles"][0]["scaleFactors"], serde_json::json!([1, 2]));
        assert_eq!(json["extraFormats"], serde_json::json!(["webp"]));
        assert_eq!(
            json["extraQualities"],
            serde_json::json!(["color", "gray", "bitonal"])
        );
        let features = json["extraFeatures"].as_array().unwrap();
        for feature in [
            "canonicalLinkHeader",
            "mirroring",
            "profileLinkHeader",
            "sizeUpscaling",
        ] {
            assert!(features.contains(&feature.into()), "{feature} advertised");
        }
        // Non-square images get the full image fitted into each box.
        let sizes = sizes_for(2000, 1000, &[100, 400], &limits);
        assert_eq!(
            sizes
                .iter()
                .map(|s| (s.width, s.height))
                .collect::<Vec<_>>(),
            [(100, 50), (400, 200)]
        );
    }
}
