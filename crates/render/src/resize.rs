//! Square resizes with fast_image_resize (SIMD convolution).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::geometry::Crop;
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
    debug_assert_eq!(source.channels, Channels::Rgb);
    let fail = |e: &dyn std::fmt::Display| RenderError::Resize(e.to_string());
    let src = ImageRef::new(source.width, source.height, &source.data, PixelType::U8x3)
        .map_err(|e| fail(&e))?;
    let mut dst = Image::new(side, side, PixelType::U8x3);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FILTER))
        .crop(
            rect.x as f64,
            rect.y as f64,
            rect.width as f64,
            rect.height as f64,
        );
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| fail(&e))?;
    Ok(Bitmap::new(side, side, Channels::Rgb, dst.into_vec()))
}
