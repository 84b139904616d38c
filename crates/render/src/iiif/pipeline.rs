//! Rendering a plan: the pixels of the oriented original the plan names,
//! encoded.

use super::{IiifFormat, IiifPlan, Quality, Rotation};
use crate::colour;
use crate::decode;
use crate::encode;
use crate::format;
use crate::geometry::{Area, Crop};
use crate::pixels::{Bitmap, Channels};
use crate::region::{self, RegionRequest, Verify};
use crate::resize;
use crate::{RenderError, Settings};

/// An encoded IIIF response.
#[derive(Debug, Clone)]
pub struct IiifImage {
    pub bytes: Vec<u8>,
    pub mimetype: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Renders a plan from the original's bytes: decode the region (a JPEG
/// only there, scaled down by up to 8 in the DCT when the size is smaller),
/// orient, convert to sRGB, flatten alpha, resize (Lanczos3), apply the quality,
/// mirror and rotate, encode. The plan must come from
/// [`IiifRequest::resolve`] against this original's oriented size.
pub fn render_iiif(
    original: &[u8],
    plan: &IiifPlan,
    settings: &Settings,
) -> Result<IiifImage, RenderError> {
    crate::guard::guarded(original, || render_iiif_unguarded(original, plan, settings))
}

fn render_iiif_unguarded(
    original: &[u8],
    plan: &IiifPlan,
    settings: &Settings,
) -> Result<IiifImage, RenderError> {
    settings.validate()?;
    let resized = region_pixels(original, plan, settings)?;
    let toned = apply_quality(resized, plan.quality);
    let turned = mirror_and_rotate(toned, plan.mirror, plan.rotation);
    let bytes = encode(&turned, plan.format, settings.jpeg_quality)?;
    Ok(IiifImage {
        bytes,
        mimetype: plan.format.mimetype(),
        width: turned.width,
        height: turned.height,
    })
}

/// The plan's region in sRGB, alpha flattened, at the plan's size.
fn region_pixels(
    original: &[u8],
    plan: &IiifPlan,
    settings: &Settings,
) -> Result<Bitmap, RenderError> {
    let probe = format::probe(original, &settings.limits)?;
    let orientation = decode::read_orientation(original, probe.format);
    let (width, height) = orientation.oriented_size(probe.width, probe.height);
    plan.region.check_inside(width, height)?;

    // Only the region, and at the smallest DCT scale that still has the
    // pixels the size asks for; the original was checked whole when it
    // rendered, so damage below the region is not looked for.
    let request = RegionRequest {
        region: plan.region,
        margin: 0,
        shrink_to: Some((plan.width, plan.height)),
        verify: Verify::Region,
    };
    let decoded = region::decode_region(original, &probe, orientation, &request)?;
    let mut warnings = decoded.warnings;
    let mut oriented = decoded.bitmap;
    let area = decoded.area;
    let mut covering = area.covering();
    covering.width = covering.width.min(oriented.width - covering.x);
    covering.height = covering.height.min(oriented.height - covering.y);
    if let Some(profile) = decoded
        .icc
        .as_deref()
        .and_then(|icc| colour::conversion_source(icc, &mut warnings))
    {
        colour::convert_rect_to_srgb(&mut oriented, &covering, &profile, &mut warnings);
    }
    let rgb = oriented.crop_to_rgb(&covering, settings.background.0);
    drop(oriented);
    let within = Area {
        x: area.x - covering.x as f64,
        y: area.y - covering.y as f64,
        ..area
    };
    resize::area(rgb, &within, plan.width, plan.height)
}

/// Rec. 709 luma of an sRGB pixel, in 8-bit fixed point (weights sum to 256).
fn luma(px: &[u8]) -> u8 {
    ((54 * px[0] as u32 + 183 * px[1] as u32 + 19 * px[2] as u32 + 128) >> 8) as u8
}

fn apply_quality(rgb: Bitmap, quality: Quality) -> Bitmap {
    let threshold = match quality {
        Quality::Default | Quality::Color => return rgb,
        Quality::Gray => None,
        Quality::Bitonal => Some(128u8),
    };
    let data = rgb
        .data
        .chunks_exact(3)
        .map(|px| {
            let y = luma(px);
            match threshold {
                None => y,
                Some(t) if y >= t => 255,
                Some(_) => 0,
            }
        })
        .collect();
    Bitmap::new(rgb.width, rgb.height, Channels::Gray, data)
}

/// Mirrors (left-right) first, then rotates clockwise, as the API orders them.
fn mirror_and_rotate(source: Bitmap, mirror: bool, rotation: Rotation) -> Bitmap {
    if !mirror && rotation == Rotation::R0 {
        return source;
    }
    let (w, h, n) = (
        source.width as usize,
        source.height as usize,
        source.channels.count(),
    );
    let (ow, oh) = if rotation.swaps_sides() {
        (h, w)
    } else {
        (w, h)
    };
    let mut out = vec![0u8; source.data.len()];
    for oy in 0..oh {
        for ox in 0..ow {
            // Where this output pixel sits in the mirrored image...
            let (mx, my) = match rotation {
                Rotation::R0 => (ox, oy),
                Rotation::R90 => (oy, h - 1 - ox),
                Rotation::R180 => (w - 1 - ox, h - 1 - oy),
                Rotation::R270 => (w - 1 - oy, ox),
            };
            // ...and in the source.
            let sx = if mirror { w - 1 - mx } else { mx };
            let s = (my * w + sx) * n;
            let d = (oy * ow + ox) * n;
            out[d..d + n].copy_from_slice(&source.data[s..s + n]);
        }
    }
    Bitmap::new(ow as u32, oh as u32, source.channels, out)
}

/// Encodes with the engine's encoders: libjpeg-turbo (4:2:0, or one
/// component for gray) at the settings' quality, PNG, lossless WebP.
fn encode(pixels: &Bitmap, format: IiifFormat, jpeg_quality: u8) -> Result<Vec<u8>, RenderError> {
    let style = format!("iiif.{format}");
    match format {
        IiifFormat::Jpg => {
            let whole = Crop {
                x: 0,
                y: 0,
                width: pixels.width,
                height: pixels.height,
            };
            encode::jpeg(pixels, &whole, jpeg_quality, None, &style)
        }
        IiifFormat::Png => encode::png(pixels, None, &style),
        IiifFormat::Webp => encode::webp_lossless(pixels, &style),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iiif::{IiifError, IiifLimits, IiifRequest};

    fn fixture(relative: &str) -> Vec<u8> {
        let path = format!("{}/../../fixtures/{relative}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
    }

    /// The region as every IIIF render made it before region decoding:
    /// the whole original decoded at full scale, oriented, cropped, then
    /// resized by Lanczos3.
    fn whole_decode_pixels(original: &[u8], plan: &IiifPlan) -> Bitmap {
        let settings = Settings::default();
        let probe = format::probe(original, &settings.limits).unwrap();
        let orientation = decode::read_orientation(original, probe.format);
        let decoded = decode::decode(original, &probe).unwrap();
        let mut warnings = Vec::new();
        let mut oriented = decoded.bitmap.oriented(orientation);
        if let Some(profile) = decoded
            .icc
            .as_deref()
            .and_then(|icc| colour::conversion_source(icc, &mut warnings))
        {
            colour::convert_rect_to_srgb(&mut oriented, &plan.region, &profile, &mut warnings);
        }
        let cropped = oriented.crop_to_rgb(&plan.region, settings.background.0);
        let whole = Area::from(&Crop::new(0, 0, cropped.width, cropped.height).unwrap());
        resize::area(cropped, &whole, plan.width, plan.height).unwrap()
    }

    /// Per channel: the mean and the largest absolute difference.
    fn differences(a: &Bitmap, b: &Bitmap) -> [(f64, u8); 3] {
        assert_eq!((a.width, a.height), (b.width, b.height));
        let mut sum = [0u64; 3];
        let mut max = [0u8; 3];
        for (pa, pb) in a.data.chunks_exact(3).zip(b.data.chunks_exact(3)) {
            for c in 0..3 {
                let d = pa[c].abs_diff(pb[c]);
                sum[c] += d as u64;
                max[c] = max[c].max(d);
            }
        }
        let n = (a.width * a.height) as f64;
        [0, 1, 2].map(|c| (sum[c] as f64 / n, max[c]))
    }

    /// What a viewer asks of an image: full-resolution 512 px tiles
    /// (inside, on the right and bottom edges, in the corner) and
    /// zoomed-out regions (2x to 8x and more, whole-image thumbnails).
    fn viewer_requests(width: u32, height: u32) -> Vec<String> {
        let (right, bottom) = ((width - 1) / 512 * 512, (height - 1) / 512 * 512);
        let tiles = [
            (0, 0, 512),
            (512, 512, 512),
            (right, 0, 512),
            (0, bottom, 512),
            (right, bottom, 512),
            (1024, 0, 1024),
            (0, 1024, 1024),
            (0, 0, 2048),
            (2048, 0, 2048),
            (0, 0, 4096),
        ];
        let mut requests: Vec<String> = tiles
            .into_iter()
            .filter(|&(x, y, _)| x < width && y < height)
            .map(|(x, y, side)| {
                let (w, h) = (side.min(width - x), side.min(height - y));
                let scaled = |v: u32| (v * 512).div_ceil(side);
                format!("{x},{y},{w},{h}/{},{}/0/default.jpg", scaled(w), scaled(h))
            })
            .collect();
        requests.extend([
            "full/!1000,1000/0/default.jpg".into(),
            "full/256,/0/default.jpg".into(),
            "pct:10,10,50,50/300,/0/default.jpg".into(),
            "square/100,100/0/default.jpg".into(),
        ]);
        requests
    }

    /// The plan, unless the request asks a small image to grow.
    fn plan_for(path: &str, width: u32, height: u32) -> Option<IiifPlan> {
        let parts: Vec<&str> = path.split('/').collect();
        let request = IiifRequest::parse(parts[0], parts[1], parts[2], parts[3])
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        match request.resolve(width, height, &IiifLimits::default()) {
            Err(IiifError::UpscaleWithoutCaret { .. }) => None,
            plan => Some(plan.unwrap_or_else(|e| panic!("{path}: {e}"))),
        }
    }

    #[test]
    fn region_decoded_iiif_pixels_match_a_whole_decode_within_a_small_tolerance() {
        let settings = Settings::default();
        let mut originals = vec!["photo/olympus_e-p3_4032x3024.jpg".to_string()];
        for exif in 1..=8 {
            originals.push(format!("orientation/Landscape_{exif}.jpg"));
            originals.push(format!("orientation/Portrait_{exif}.jpg"));
        }
        originals.push("jpeg/icc_profile_big_progressive.jpg".into());
        originals.push("jpeg/cmyk_pil_sample.jpg".into());
        for name in originals {
            let original = fixture(&name);
            let facts = crate::inspect(&original, &settings).unwrap();
            for path in viewer_requests(facts.width, facts.height) {
                let Some(plan) = plan_for(&path, facts.width, facts.height) else {
                    continue;
                };
                let got = region_pixels(&original, &plan, &settings).unwrap();
                let want = whole_decode_pixels(&original, &plan);
                let diff = differences(&got, &want);
                let full_scale =
                    (plan.width, plan.height) == (plan.region.width, plan.region.height);
                eprintln!("{name} {path}: {diff:?}");
                for (channel, (mean, max)) in diff.into_iter().enumerate() {
                    let what =
                        format!("{name} {path} channel {channel}: mean {mean:.3}, max {max}");
                    if full_scale {
                        assert_eq!(max, 0, "{what}: a full-scale tile must be exact");
                    }
                    assert!(mean <= 1.0, "{what}");
                    assert!(max <= 24, "{what}");
                }
            }
        }
    }
}
