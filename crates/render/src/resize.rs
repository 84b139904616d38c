//! Resizes with fast_image_resize (SIMD convolution): the square styles
//! and IIIF's regions, with one filter.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::geometry::{Area, Crop};
use crate::pixels::{Bitmap, Channels};
use crate::RenderError;

/// Lanczos3: the sharpest of the common windowed-sinc filters with little
/// ringing at 3 lobes; what libvips' thumbnail and Pillow's LANCZOS use, so
/// our files compare like for like.
const FILTER: FilterType = FilterType::Lanczos3;

/// How many pixels past its crop box a resize from `from` to `to` pixels
/// reads: Lanczos3's three lobes, widened by the shrink factor, plus one
/// for rounding. fast_image_resize reads them wherever the source has them.
pub(crate) fn reach(from: u32, to: u32) -> u32 {
    let shrink = (from as f64 / to.max(1) as f64).max(1.0);
    (3.0 * shrink).ceil() as u32 + 1
}

/// Resizes the RGB pixels under `rect` to `side`x`side`.
pub(crate) fn square(source: &Bitmap, rect: &Crop, side: u32) -> Result<Bitmap, RenderError> {
    convolve(source, Some(&Area::from(rect)), side, side)
}

/// Resizes `area` of the RGB `source` (all of it, or a fractional part
/// after a scaled decode) to `width`x`height`: IIIF's regions. The whole
/// bitmap at its own size is returned as it is.
pub(crate) fn area(
    source: Bitmap,
    area: &Area,
    width: u32,
    height: u32,
) -> Result<Bitmap, RenderError> {
    let whole = Area {
        x: 0.0,
        y: 0.0,
        width: source.width as f64,
        height: source.height as f64,
    };
    if *area != whole {
        return convolve(&source, Some(area), width, height);
    }
    if (source.width, source.height) == (width, height) {
        return Ok(source);
    }
    convolve(&source, None, width, height)
}

fn convolve(
    source: &Bitmap,
    crop: Option<&Area>,
    width: u32,
    height: u32,
) -> Result<Bitmap, RenderError> {
    debug_assert_eq!(source.channels, Channels::Rgb);
    let fail = |e: &dyn std::fmt::Display| RenderError::Resize(e.to_string());
    let src = ImageRef::new(source.width, source.height, &source.data, PixelType::U8x3)
        .map_err(|e| fail(&e))?;
    let mut dst = Image::new(width, height, PixelType::U8x3);
    let mut options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FILTER));
    if let Some(a) = crop {
        options = options.crop(a.x, a.y, a.width, a.height);
    }
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| fail(&e))?;
    Ok(Bitmap::new(width, height, Channels::Rgb, dst.into_vec()))
}
