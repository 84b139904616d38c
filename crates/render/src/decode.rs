//! Decoding to 8-bit RGB or RGBA, once, with the colour profile and the
//! EXIF orientation the pixels came with.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder};

use crate::format::{Format, Probe};
use crate::geometry::Orientation;
use crate::pixels::{Bitmap, Channels};
use crate::region::JpegWindow;
use crate::RenderError;

/// Pixels as stored (not yet oriented), in the colour space of `icc`
/// (sRGB when `icc` is `None`).
pub(crate) struct Decoded {
    pub bitmap: Bitmap,
    pub icc: Option<Vec<u8>>,
    /// Whether the file carried a profile, including a CMYK one that was
    /// used up converting to sRGB at decode time.
    pub had_icc_profile: bool,
    /// Notes for the caller about what was tolerated (e.g. a broken ICC profile).
    pub warnings: Vec<String>,
}

pub(crate) fn decode(bytes: &[u8], probe: &Probe) -> Result<Decoded, RenderError> {
    let mut warnings = Vec::new();
    let (bitmap, icc, had_icc_profile) = match probe.format {
        Format::Jpeg => decode_jpeg(bytes, None, &mut warnings)?,
        Format::Tiff => {
            let tiff = crate::tiff::decode(bytes)?;
            warnings.extend(tiff.warnings);
            (tiff.bitmap, tiff.icc, tiff.had_icc_profile)
        }
        // Row by row to 8 bits: never the whole 16-bit image at once.
        Format::Png if crate::png16::streams(bytes) => {
            let (bitmap, icc) = crate::png16::decode(bytes, probe)?;
            let had_icc_profile = icc.is_some();
            (bitmap, icc, had_icc_profile)
        }
        _ => {
            let (bitmap, icc) = decode_with_image(bytes, probe)?;
            let had_icc_profile = icc.is_some();
            (bitmap, icc, had_icc_profile)
        }
    };
    if bitmap.width != probe.width || bitmap.height != probe.height {
        return Err(RenderError::corrupt(
            probe.format.name(),
            format!(
                "the header says {}x{} but the decoder produced {}x{}",
                probe.width, probe.height, bitmap.width, bitmap.height
            ),
        ));
    }
    Ok(Decoded {
        bitmap,
        icc,
        had_icc_profile,
        warnings,
    })
}

/// Orientation from EXIF (JPEG APP1, WebP `EXIF`, PNG `eXIf`) or from the
/// TIFF Orientation tag. A missing or unreadable block means "as stored",
/// like browsers do.
pub(crate) fn read_orientation(bytes: &[u8], format: Format) -> Orientation {
    let exif = match format {
        Format::Gif => return Orientation::Normal,
        Format::Tiff => return Orientation::from_exif(u32::from(crate::tiff::orientation(bytes))),
        Format::Jpeg => exif::Reader::new().read_from_container(&mut Cursor::new(bytes)),
        // Pillow, ImageMagick and exiftool write these chunks with JPEG's
        // "Exif\0\0" prefix, which kamadak-exif's container reader does
        // not expect: read the chunk ourselves and drop the prefix.
        Format::Webp | Format::Png => match crate::strip::exif_chunk(bytes, format) {
            Some(chunk) => {
                let tiff = chunk.strip_prefix(b"Exif\0\0").unwrap_or(&chunk).to_vec();
                exif::Reader::new().read_raw(tiff)
            }
            None => return Orientation::Normal,
        },
    };
    let Ok(exif) = exif else {
        return Orientation::Normal;
    };
    exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .and_then(|field| field.value.get_uint(0))
        .map(Orientation::from_exif)
        .unwrap_or_default()
}

/// Decodes a window of a JPEG (see [`JpegWindow`]) with the same tolerance
/// of header damage as a whole decode.
pub(crate) fn decode_jpeg_window(
    bytes: &[u8],
    window: &JpegWindow,
) -> Result<Decoded, RenderError> {
    let mut warnings = Vec::new();
    let (bitmap, icc, had_icc_profile) = decode_jpeg(bytes, Some(window), &mut warnings)?;
    Ok(Decoded {
        bitmap,
        icc,
        had_icc_profile,
        warnings,
    })
}

fn decode_jpeg(
    bytes: &[u8],
    window: Option<&JpegWindow>,
    warnings: &mut Vec<String>,
) -> Result<(Bitmap, Option<Vec<u8>>, bool), RenderError> {
    let corrupt = |e: String| RenderError::corrupt("JPEG", e);
    let header = jpeg_header(bytes)?;
    let (width, height) = match window {
        Some(w) => (w.width as usize, w.height as usize),
        None => (header.width, header.height),
    };
    let is_cmyk = matches!(
        header.colorspace,
        turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
    );
    let format = if is_cmyk {
        turbojpeg::PixelFormat::CMYK
    } else {
        turbojpeg::PixelFormat::RGB
    };
    let pitch = width * format.size();
    // A window is decoded into uninitialised memory (see
    // `decompress_window`); the turbojpeg crate's whole decode takes a slice.
    let mut pixels = match window {
        Some(_) => Vec::new(),
        None => vec![0u8; pitch * height],
    };
    let mut decompress = |jpeg: &[u8]| match window {
        None => turbojpeg::Decompressor::new()
            .and_then(|mut d| {
                d.decompress(
                    jpeg,
                    turbojpeg::Image {
                        pixels: pixels.as_mut_slice(),
                        width,
                        pitch,
                        height,
                        format,
                    },
                )
            })
            .map_err(|e| e.to_string()),
        Some(window) => crate::region::decompress_window(jpeg, window, format, &mut pixels),
    };
    // libjpeg-turbo reports warnings as errors, and keeps only the first.
    // Junk between header segments and a malformed ICC segment warn before
    // a single pixel is read, and would hide any later warning about the
    // pixels; so for those we decode again from a copy without the junk
    // and without ICC segments, where any warning left is about the pixels.
    let colour = match decompress(bytes) {
        Ok(()) => crate::strip::jpeg_colour_info(bytes),
        Err(e) if is_header_warning(&e) => {
            let (Some(clean), Some(pixels_only)) = (
                crate::strip::jpeg_without_header_junk(bytes, false),
                crate::strip::jpeg_without_header_junk(bytes, true),
            ) else {
                return Err(corrupt(e));
            };
            decompress(&pixels_only).map_err(corrupt)?;
            warnings.push(format!(
                "tolerated a damaged JPEG header, the pixels are complete ({})",
                e.trim_start_matches("TurboJPEG error: ")
            ));
            crate::strip::jpeg_colour_info(&clean)
        }
        Err(e) => return Err(corrupt(e)),
    };
    let had_icc_profile = colour.icc.is_some();
    let (w, h) = (width as u32, height as u32);
    if is_cmyk {
        // The CMYK profile is used up here: the pixels leave as sRGB.
        let rgb =
            crate::colour::cmyk_to_srgb(&pixels, colour.icc.as_deref(), colour.adobe, warnings);
        return Ok((Bitmap::new(w, h, Channels::Rgb, rgb), None, had_icc_profile));
    }
    Ok((
        Bitmap::new(w, h, Channels::Rgb, pixels),
        colour.icc,
        had_icc_profile,
    ))
}

/// The JPEG's header as libjpeg-turbo reads it, tolerating the same header
/// problems as decoding (see [`is_header_warning`]).
pub(crate) fn jpeg_header(bytes: &[u8]) -> Result<turbojpeg::DecompressHeader, RenderError> {
    let corrupt = |e: turbojpeg::Error| RenderError::corrupt("JPEG", e);
    match turbojpeg::read_header(bytes) {
        Err(e) if is_header_warning(&e.to_string()) => {
            let clean =
                crate::strip::jpeg_without_header_junk(bytes, true).ok_or_else(|| corrupt(e))?;
            turbojpeg::read_header(&clean).map_err(corrupt)
        }
        result => result.map_err(corrupt),
    }
}

/// libjpeg warnings that concern the header, not the pixels: bytes that
/// are not part of any segment, and an ICC segment out of order or badly
/// numbered. Every other warning (premature end, corrupt or missing data,
/// bad Huffman or arithmetic codes, an impossible progression) means
/// pixels are missing or wrong, and the file is refused.
fn is_header_warning(message: &str) -> bool {
    message.contains("extraneous bytes before marker")
        || message.contains("bad ICC marker")
        || message.contains("unknown JFIF revision")
}

fn decode_with_image(
    bytes: &[u8],
    probe: &Probe,
) -> Result<(Bitmap, Option<Vec<u8>>), RenderError> {
    let name = probe.format.name();
    let corrupt = |e: image::ImageError| RenderError::corrupt(name, e);
    let mut reader =
        image::ImageReader::with_format(Cursor::new(bytes), probe.format.image_format());
    // Belt and braces behind `probe`: the decoder refuses to allocate more
    // than the probed size needs even if a later frame claims otherwise.
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(probe.width);
    limits.max_image_height = Some(probe.height);
    limits.max_alloc = Some(probe.width as u64 * probe.height as u64 * 16 + (1 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let icc = decoder.icc_profile().unwrap_or(None);
    let image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    let (width, height) = (image.width(), image.height());
    let bitmap = if image.color().has_alpha() {
        Bitmap::new(width, height, Channels::Rgba, image.into_rgba8().into_raw())
    } else {
        Bitmap::new(width, height, Channels::Rgb, image.into_rgb8().into_raw())
    };
    Ok((bitmap, icc))
}
