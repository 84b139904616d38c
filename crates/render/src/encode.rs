//! Encoders: libjpeg-turbo for JPEG, the `image` crate for PNG.

use image::ImageEncoder;
use img_parts::{Bytes, ImageICC};

use crate::geometry::Crop;
use crate::pixels::{Bitmap, Channels};
use crate::RenderError;

/// Encodes the RGB pixels under `rect` as a baseline 4:2:0 JPEG, straight
/// from the bitmap's rows (no copy of the crop).
pub(crate) fn jpeg(
    bitmap: &Bitmap,
    rect: &Crop,
    quality: u8,
    icc: Option<&[u8]>,
    style: &str,
) -> Result<Vec<u8>, RenderError> {
    debug_assert_eq!(bitmap.channels, Channels::Rgb);
    let fail = |e: &dyn std::fmt::Display| RenderError::Encode {
        style: style.to_string(),
        reason: e.to_string(),
    };
    let stride = bitmap.stride();
    let offset = rect.y as usize * stride + rect.x as usize * 3;
    let image = turbojpeg::Image {
        pixels: &bitmap.data[offset..],
        width: rect.width as usize,
        pitch: stride,
        height: rect.height as usize,
        format: turbojpeg::PixelFormat::RGB,
    };
    let mut compressor = turbojpeg::Compressor::new().map_err(|e| fail(&e))?;
    compressor
        .set_quality(quality as i32)
        .map_err(|e| fail(&e))?;
    compressor
        .set_subsamp(turbojpeg::Subsamp::Sub2x2)
        .map_err(|e| fail(&e))?;
    let encoded = compressor.compress_to_vec(image).map_err(|e| fail(&e))?;
    match icc {
        None => Ok(encoded),
        Some(icc) => {
            let mut jpeg =
                img_parts::jpeg::Jpeg::from_bytes(Bytes::from(encoded)).map_err(|e| fail(&e))?;
            jpeg.set_icc_profile(Some(Bytes::copy_from_slice(icc)));
            Ok(jpeg.encoder().bytes().to_vec())
        }
    }
}

/// Encodes a whole bitmap (RGB or RGBA) as PNG, with its ICC profile.
pub(crate) fn png(
    bitmap: &Bitmap,
    icc: Option<&[u8]>,
    style: &str,
) -> Result<Vec<u8>, RenderError> {
    let fail = |e: image::ImageError| RenderError::Encode {
        style: style.to_string(),
        reason: e.to_string(),
    };
    let mut out = Vec::new();
    let mut encoder = image::codecs::png::PngEncoder::new(&mut out);
    if let Some(icc) = icc {
        // An encoder that cannot embed a profile still writes valid pixels.
        let _ = encoder.set_icc_profile(icc.to_vec());
    }
    let colour = match bitmap.channels {
        Channels::Rgb => image::ExtendedColorType::Rgb8,
        Channels::Rgba => image::ExtendedColorType::Rgba8,
    };
    encoder
        .write_image(&bitmap.data, bitmap.width, bitmap.height, colour)
        .map_err(fail)?;
    Ok(out)
}
