//! Encoders: libjpeg-turbo for JPEG, the `image` crate for PNG.

use image::ImageEncoder;
use img_parts::{Bytes, ImageICC};

use crate::geometry::Crop;
use crate::pixels::{Bitmap, Channels};
use crate::RenderError;

/// Encodes the RGB pixels under `rect` as a baseline 4:2:0 JPEG (gray
/// pixels as a one-component JPEG), straight
/// from the bitmap's rows (no copy of the crop).
pub(crate) fn jpeg(
    bitmap: &Bitmap,
    rect: &Crop,
    quality: u8,
    icc: Option<&[u8]>,
    style: &str,
) -> Result<Vec<u8>, RenderError> {
    jpeg_with(bitmap, rect, quality, false, icc, style)
}

/// A feed candidate's JPEG and the quality it was encoded at.
pub(crate) struct Fitted {
    pub bytes: Vec<u8>,
    pub quality: u8,
}

/// Encodes a feed candidate (`square-3000`, `itunes`) to fit `budget`
/// bytes (0: no budget) when it reasonably can, paying for the search
/// only when the plain encode is over the budget.
///
/// 1. The plain baseline encode at `quality` (what every other style
///    gets); done if it fits.
/// 2. Can it fit at all? A sample (every eighth band of 16 rows, an eighth
///    of the encode) is encoded at `floor` with optimised tables; if its
///    estimate is clearly over, the plain file is kept: a detailed photo's
///    `square-3000` pays a few milliseconds, not an encode. Lowering the
///    quality would cost quality and still not fit; the feed rule then
///    picks another file.
/// 3. Optimised Huffman tables at `quality`, when the sample says they can
///    make the difference: they take a quarter off flat graphics (a 3000 px
///    cover of flat colour and lettering: 541 KB -> 406 KB at 88) but 1% off
///    photos, for twice the encode time.
/// 4. The highest quality down to `floor` that fits, with optimised tables,
///    each guess interpolated from the sizes seen so far (log size is close
///    to linear in quality), so two or three encodes usually settle it.
///
/// Progressive scans were measured too: 1-4% smaller than optimised
/// tables for 2.5-5x their time, so they do not pay here.
pub(crate) fn jpeg_within(
    bitmap: &Bitmap,
    rect: &Crop,
    quality: u8,
    floor: u8,
    budget: u64,
    style: &str,
) -> Result<Fitted, RenderError> {
    let plain = jpeg_with(bitmap, rect, quality, false, None, style)?;
    let fits = |bytes: &[u8]| budget == 0 || bytes.len() as u64 <= budget;
    if fits(&plain) {
        return Ok(Fitted {
            bytes: plain,
            quality,
        });
    }
    let keep_plain = |plain| {
        Ok(Fitted {
            bytes: plain,
            quality,
        })
    };
    let optimised = |q: u8| jpeg_with(bitmap, rect, q, true, None, style);
    let sample = Sample::of(bitmap, rect);
    // A sample's estimate can be off by a few percent either way: only a
    // clear miss skips the real encode.
    let hopeless = |q: u8| -> Result<bool, RenderError> {
        Ok(sample.estimate(q, style)? > budget.saturating_add(budget / 10))
    };
    // The floor first: a file that cannot fit even there (a detailed
    // photo's square-3000) costs one sample encode and nothing more.
    let floor = floor.min(quality);
    if hopeless(floor)? {
        return keep_plain(plain);
    }
    if !hopeless(quality)? {
        let at_quality = optimised(quality)?;
        if fits(&at_quality) {
            return Ok(Fitted {
                bytes: at_quality,
                quality,
            });
        }
    }
    if floor == quality {
        return keep_plain(plain);
    }
    let at_floor = optimised(floor)?;
    if !fits(&at_floor) {
        return keep_plain(plain);
    }
    // `low` fits, `high` does not.
    let (mut low, mut low_bytes) = (floor, at_floor);
    let (mut high, mut high_len) = (quality, plain.len());
    while high - low > 1 {
        let guess = interpolate(low, low_bytes.len(), high, high_len, budget);
        let bytes = optimised(guess)?;
        if fits(&bytes) {
            (low, low_bytes) = (guess, bytes);
        } else {
            (high, high_len) = (guess, bytes.len());
        }
    }
    Ok(Fitted {
        bytes: low_bytes,
        quality: low,
    })
}

/// Every eighth band of 16 rows (one row of 4:2:0 MCUs) of a region: JPEG
/// codes MCUs almost independently, so an eighth of the rows encodes to
/// about an eighth of the bytes.
struct Sample {
    bitmap: Bitmap,
    /// Full height over sampled height.
    scale: f64,
}

const SAMPLE_BAND: u32 = 16;
const SAMPLE_EVERY: u32 = 8;

impl Sample {
    fn of(bitmap: &Bitmap, rect: &Crop) -> Sample {
        let stride = bitmap.stride();
        let row_bytes = rect.width as usize * 3;
        let mut data = Vec::new();
        let mut rows = 0u32;
        let mut band_start = 0;
        while band_start < rect.height {
            let band_end = (band_start + SAMPLE_BAND).min(rect.height);
            for y in band_start..band_end {
                let at = (rect.y + y) as usize * stride + rect.x as usize * 3;
                data.extend_from_slice(&bitmap.data[at..at + row_bytes]);
            }
            rows += band_end - band_start;
            band_start += SAMPLE_BAND * SAMPLE_EVERY;
        }
        Sample {
            bitmap: Bitmap::new(rect.width, rows, Channels::Rgb, data),
            scale: f64::from(rect.height) / f64::from(rows.max(1)),
        }
    }

    /// The estimated size of the whole region at `quality`, optimised.
    fn estimate(&self, quality: u8, style: &str) -> Result<u64, RenderError> {
        let whole = Crop {
            x: 0,
            y: 0,
            width: self.bitmap.width,
            height: self.bitmap.height,
        };
        let bytes = jpeg_with(&self.bitmap, &whole, quality, true, None, style)?;
        Ok((bytes.len() as f64 * self.scale) as u64)
    }
}

/// The quality strictly between `low` and `high` where the budget should
/// fall, if log size grows linearly with quality between the two.
fn interpolate(low: u8, low_len: usize, high: u8, high_len: usize, budget: u64) -> u8 {
    let (a, b, target) = (
        (low_len.max(1) as f64).ln(),
        (high_len.max(1) as f64).ln(),
        (budget.max(1) as f64).ln(),
    );
    let span = f64::from(high - low);
    let at = if b > a {
        f64::from(low) + span * ((target - a) / (b - a))
    } else {
        f64::from(low) + span / 2.0
    };
    (at.floor() as i64).clamp(i64::from(low) + 1, i64::from(high) - 1) as u8
}

fn jpeg_with(
    bitmap: &Bitmap,
    rect: &Crop,
    quality: u8,
    optimize: bool,
    icc: Option<&[u8]>,
    style: &str,
) -> Result<Vec<u8>, RenderError> {
    debug_assert_ne!(bitmap.channels, Channels::Rgba);
    let fail = |e: &dyn std::fmt::Display| RenderError::Encode {
        style: style.to_string(),
        reason: e.to_string(),
    };
    let (format, subsamp) = match bitmap.channels {
        Channels::Gray => (turbojpeg::PixelFormat::GRAY, turbojpeg::Subsamp::Gray),
        _ => (turbojpeg::PixelFormat::RGB, turbojpeg::Subsamp::Sub2x2),
    };
    let stride = bitmap.stride();
    let offset = rect.y as usize * stride + rect.x as usize * bitmap.channels.count();
    let image = turbojpeg::Image {
        pixels: &bitmap.data[offset..],
        width: rect.width as usize,
        pitch: stride,
        height: rect.height as usize,
        format,
    };
    let mut compressor = turbojpeg::Compressor::new().map_err(|e| fail(&e))?;
    compressor
        .set_quality(quality as i32)
        .map_err(|e| fail(&e))?;
    compressor.set_subsamp(subsamp).map_err(|e| fail(&e))?;
    compressor.set_optimize(optimize).map_err(|e| fail(&e))?;
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
    encoder
        .write_image(
            &bitmap.data,
            bitmap.width,
            bitmap.height,
            colour_type(bitmap.channels),
        )
        .map_err(fail)?;
    Ok(out)
}

/// Encodes a whole bitmap as lossless WebP (the `image` crate's encoder).
pub(crate) fn webp_lossless(bitmap: &Bitmap, style: &str) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .write_image(
            &bitmap.data,
            bitmap.width,
            bitmap.height,
            colour_type(bitmap.channels),
        )
        .map_err(|e| RenderError::Encode {
            style: style.to_string(),
            reason: e.to_string(),
        })?;
    Ok(out)
}

fn colour_type(channels: Channels) -> image::ExtendedColorType {
    match channels {
        Channels::Gray => image::ExtendedColorType::L8,
        Channels::Rgb => image::ExtendedColorType::Rgb8,
        Channels::Rgba => image::ExtendedColorType::Rgba8,
    }
}

/// A stored file's facts, read back from its own header: what a podcast
/// directory would find, not what the engine meant to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FileFacts {
    pub mimetype: &'static str,
    pub width: u32,
    pub height: u32,
    pub colour: ColourModel,
    pub alpha: bool,
    pub progressive: bool,
}

/// How a file stores colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourModel {
    Rgb,
    Gray,
    Cmyk,
    /// Palette or another model directories do not list.
    Other,
}

/// Reads a JPEG's or PNG's header (never its pixels). Other formats are
/// `None`: no feed takes them.
pub fn describe(bytes: &[u8]) -> Option<FileFacts> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let header = turbojpeg::read_header(bytes).ok()?;
        let colour = match header.colorspace {
            turbojpeg::Colorspace::YCbCr | turbojpeg::Colorspace::RGB => ColourModel::Rgb,
            turbojpeg::Colorspace::Gray => ColourModel::Gray,
            turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK => ColourModel::Cmyk,
        };
        return Some(FileFacts {
            mimetype: "image/jpeg",
            width: u32::try_from(header.width).ok()?,
            height: u32::try_from(header.height).ok()?,
            colour,
            alpha: false,
            progressive: header.is_progressive,
        });
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        let decoder = image::codecs::png::PngDecoder::new(std::io::Cursor::new(bytes)).ok()?;
        let (width, height) = image::ImageDecoder::dimensions(&decoder);
        let colour_type = image::ImageDecoder::color_type(&decoder);
        let colour = if colour_type.has_color() {
            ColourModel::Rgb
        } else {
            ColourModel::Gray
        };
        return Some(FileFacts {
            mimetype: "image/png",
            width,
            height,
            colour,
            alpha: colour_type.has_alpha(),
            progressive: false,
        });
    }
    None
}
