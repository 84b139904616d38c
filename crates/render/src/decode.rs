//! Decoding to 8-bit RGB or RGBA, once, with the colour profile and the
//! EXIF orientation the pixels came with.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder};

use crate::format::{Format, Probe};
use crate::geometry::Orientation;
use crate::pixels::{Bitmap, Channels};
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
        Format::Jpeg => decode_jpeg(bytes, probe, &mut warnings)?,
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

/// Orientation from EXIF, for every container kamadak-exif reads. A missing
/// or unreadable EXIF block means "as stored", like browsers do.
pub(crate) fn read_orientation(bytes: &[u8], format: Format) -> Orientation {
    if format == Format::Gif {
        return Orientation::Normal;
    }
    let Ok(exif) = exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) else {
        return Orientation::Normal;
    };
    exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .and_then(|field| field.value.get_uint(0))
        .map(Orientation::from_exif)
        .unwrap_or_default()
}

fn decode_jpeg(
    bytes: &[u8],
    probe: &Probe,
    warnings: &mut Vec<String>,
) -> Result<(Bitmap, Option<Vec<u8>>, bool), RenderError> {
    let corrupt = |e: turbojpeg::Error| RenderError::corrupt("JPEG", e);
    let mut decompressor = turbojpeg::Decompressor::new().map_err(corrupt)?;
    let header = decompressor.read_header(bytes).map_err(corrupt)?;
    let colour = crate::strip::jpeg_colour_info(bytes);
    let had_icc_profile = colour.icc.is_some();
    let (width, height) = (header.width, header.height);
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
    let mut pixels = vec![0u8; pitch * height];
    decompressor
        .decompress(
            bytes,
            turbojpeg::Image {
                pixels: pixels.as_mut_slice(),
                width,
                pitch,
                height,
                format,
            },
        )
        .map_err(corrupt)?;
    let (w, h) = (probe.width, probe.height);
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
