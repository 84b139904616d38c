//! Encoders: libjpeg-turbo for JPEG, the `image` crate for PNG.

use std::ffi::c_int;

use image::ImageEncoder;
use img_parts::{Bytes, ImageICC};

use crate::geometry::Crop;
use crate::pixels::{Bitmap, Channels};
use crate::turbo::Handle;
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
        let bands = || {
            (0..rect.height)
                .step_by((SAMPLE_BAND * SAMPLE_EVERY) as usize)
                .map(|start| start..(start + SAMPLE_BAND).min(rect.height))
        };
        let rows: u32 = bands().map(|band| band.len() as u32).sum();
        // Sized up front: grown from empty, a 3000 px square's sample was
        // copied again at every doubling, into fresh pages each time.
        let mut data = Vec::with_capacity(rows as usize * row_bytes);
        for y in bands().flatten() {
            let at = (rect.y + y) as usize * stride + rect.x as usize * 3;
            data.extend_from_slice(&bitmap.data[at..at + row_bytes]);
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
    let pixels = &bitmap.data[offset..];
    let rows = (rect.height as usize).saturating_sub(1) * stride;
    let width = rect.width as usize * format.size();
    if rect.width == 0 || rect.height == 0 || pixels.len() < rows + width {
        return Err(fail(&"the rectangle is outside the bitmap"));
    }
    let encoded = Compressor::new()
        .and_then(|c| {
            c.set(turbojpeg_sys::TJPARAM_TJPARAM_QUALITY, c_int::from(quality))?;
            c.set(turbojpeg_sys::TJPARAM_TJPARAM_SUBSAMP, subsamp as c_int)?;
            c.set(
                turbojpeg_sys::TJPARAM_TJPARAM_OPTIMIZE,
                c_int::from(optimize),
            )?;
            c.compress(pixels, rect.width, stride, rect.height, format, subsamp)
        })
        .map_err(|e| fail(&e))?;
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

/// A TurboJPEG compressor that writes into a `Vec` sized for the worst
/// case up front (`tj3JPEGBufSize`), destroyed on drop.
///
/// The `turbojpeg` crate's `compress_to_vec` lets TurboJPEG grow its own
/// buffer from 4 KB, doubling and copying (glibc's `malloc`, so each new
/// buffer is fresh pages), then copies the result into a new `Vec`: a
/// 1.6 MB `regular` was written about three times over, all into pages the
/// kernel had to zero first. Here the encoder writes once, into the `Vec`
/// the file keeps. Only the pages written are ever touched: the rest of
/// the capacity costs address space, not memory.
struct Compressor(Handle);

impl Compressor {
    fn new() -> Result<Self, String> {
        Handle::compressor().map(Compressor)
    }

    fn set(&self, param: turbojpeg_sys::TJPARAM, value: c_int) -> Result<(), String> {
        // SAFETY: a plain value on a live handle.
        self.0
            .check(unsafe { turbojpeg_sys::tj3Set(self.0 .0, param as c_int, value) })
    }

    /// Compresses `height` rows of `width` pixels, `pitch` bytes apart
    /// (the caller checked that `pixels` holds them).
    fn compress(
        &self,
        pixels: &[u8],
        width: u32,
        pitch: usize,
        height: u32,
        format: turbojpeg::PixelFormat,
        subsamp: turbojpeg::Subsamp,
    ) -> Result<Vec<u8>, String> {
        let too_large = || "TurboJPEG error: the image is too large".to_string();
        let (w, h) = (
            c_int::try_from(width).map_err(|_| too_large())?,
            c_int::try_from(height).map_err(|_| too_large())?,
        );
        let pitch = c_int::try_from(pitch).map_err(|_| too_large())?;
        // SAFETY: plain values; 0 means TurboJPEG refused them.
        let bound = unsafe { turbojpeg_sys::tj3JPEGBufSize(w, h, subsamp as c_int) };
        if bound == 0 {
            return Err(self.0.error());
        }
        let mut out: Vec<u8> = Vec::with_capacity(bound as usize);
        let mut buffer = out.as_mut_ptr();
        let mut size = bound;
        // The buffer is TurboJPEG's to fill, never to reallocate or free.
        self.set(turbojpeg_sys::TJPARAM_TJPARAM_NOREALLOC, 1)?;
        // SAFETY: `pixels` holds `h` rows of `pitch` bytes (the last one
        // `w` pixels long); `buffer` is `size` writable bytes, the most a
        // JPEG of this size can take, and stays where it is (NOREALLOC).
        self.0.check(unsafe {
            turbojpeg_sys::tj3Compress8(
                self.0 .0,
                pixels.as_ptr(),
                w,
                pitch,
                h,
                format as c_int,
                &mut buffer,
                &mut size,
            )
        })?;
        if buffer != out.as_mut_ptr() || size > bound {
            return Err("TurboJPEG error: the output left its buffer".into());
        }
        // SAFETY: TurboJPEG wrote `size` bytes from the start of the buffer.
        unsafe { out.set_len(size as usize) };
        out.shrink_to_fit();
        Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Noise over a gradient, so every block codes differently.
    fn noisy(width: u32, height: u32, channels: Channels) -> Bitmap {
        let n = channels.count() as u32;
        let mut state = 0x9E37_79B9_u32;
        let data = (0..width * height * n)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                ((i / n % width + i / n / width) as u8 / 2).wrapping_add((state >> 27) as u8)
            })
            .collect();
        Bitmap::new(width, height, channels, data)
    }

    /// What `jpeg_with` wrote before it had its own compressor: the
    /// `turbojpeg` crate's, growing its own buffer.
    fn through_the_crate(bitmap: &Bitmap, rect: &Crop, quality: u8, optimize: bool) -> Vec<u8> {
        let (format, subsamp) = match bitmap.channels {
            Channels::Gray => (turbojpeg::PixelFormat::GRAY, turbojpeg::Subsamp::Gray),
            _ => (turbojpeg::PixelFormat::RGB, turbojpeg::Subsamp::Sub2x2),
        };
        let stride = bitmap.stride();
        let offset = rect.y as usize * stride + rect.x as usize * bitmap.channels.count();
        let mut compressor = turbojpeg::Compressor::new().unwrap();
        compressor.set_quality(quality as i32).unwrap();
        compressor.set_subsamp(subsamp).unwrap();
        compressor.set_optimize(optimize).unwrap();
        compressor
            .compress_to_vec(turbojpeg::Image {
                pixels: &bitmap.data[offset..],
                width: rect.width as usize,
                pitch: stride,
                height: rect.height as usize,
                format,
            })
            .unwrap()
    }

    #[test]
    fn the_preallocated_encoder_writes_the_bytes_the_crate_wrote() {
        // Whole bitmaps and rectangles inside them (pitch wider than the
        // rows), odd sizes, one pixel, gray, plain and optimised tables.
        let cases = [
            (
                noisy(640, 480, Channels::Rgb),
                Crop::new(0, 0, 640, 480).unwrap(),
            ),
            (
                noisy(641, 479, Channels::Rgb),
                Crop::new(17, 3, 601, 470).unwrap(),
            ),
            (noisy(1, 1, Channels::Rgb), Crop::new(0, 0, 1, 1).unwrap()),
            (
                noisy(333, 250, Channels::Gray),
                Crop::new(5, 9, 300, 211).unwrap(),
            ),
        ];
        for (i, (bitmap, rect)) in cases.iter().enumerate() {
            for quality in [1, 70, 88, 100] {
                for optimize in [false, true] {
                    let ours = jpeg_with(bitmap, rect, quality, optimize, None, "test").unwrap();
                    let theirs = through_the_crate(bitmap, rect, quality, optimize);
                    assert!(
                        ours == theirs,
                        "case {i} at quality {quality}, optimised {optimize}: the bytes differ"
                    );
                }
            }
        }
    }

    #[test]
    fn a_rectangle_outside_the_bitmap_is_an_error_not_a_read_past_it() {
        let bitmap = noisy(64, 64, Channels::Rgb);
        let rect = Crop {
            x: 10,
            y: 10,
            width: 60,
            height: 60,
        };
        let result = jpeg_with(&bitmap, &rect, 88, false, None, "t");
        assert!(
            matches!(result, Err(RenderError::Encode { .. })),
            "{result:?}"
        );
    }
}
