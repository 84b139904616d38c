//! Format sniffing from magic bytes, and header probes that never decode.

use std::io::Cursor;

use image::ImageDecoder;
use serde::{Deserialize, Serialize};

use crate::{Limits, RenderError};

/// The formats Easel reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Gif,
    Tiff,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Jpeg,
        Format::Png,
        Format::Webp,
        Format::Gif,
        Format::Tiff,
    ];

    /// Identifies the format from the first bytes; the name and the declared
    /// content type of an upload are never trusted.
    pub fn sniff(bytes: &[u8]) -> Result<Format, RenderError> {
        if bytes.is_empty() {
            return Err(RenderError::Empty);
        }
        let format = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Format::Jpeg
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Format::Png
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Format::Gif
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Format::Webp
        } else if bytes.starts_with(b"II*\0")
            || bytes.starts_with(b"MM\0*")
            // BigTIFF: 64-bit offsets, the same tags.
            || bytes.starts_with(b"II+\0")
            || bytes.starts_with(b"MM\0+")
        {
            Format::Tiff
        } else {
            return Err(RenderError::UnsupportedFormat(describe_unknown(bytes)));
        };
        Ok(format)
    }

    pub fn mimetype(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Gif => "image/gif",
            Format::Tiff => "image/tiff",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Gif => "gif",
            Format::Tiff => "tiff",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::Webp => "WebP",
            Format::Gif => "GIF",
            Format::Tiff => "TIFF",
        }
    }

    pub(crate) fn image_format(self) -> image::ImageFormat {
        match self {
            Format::Jpeg => image::ImageFormat::Jpeg,
            Format::Png => image::ImageFormat::Png,
            Format::Webp => image::ImageFormat::WebP,
            Format::Gif => image::ImageFormat::Gif,
            Format::Tiff => image::ImageFormat::Tiff,
        }
    }
}

/// A hint for the error message: users mostly send these by mistake.
fn describe_unknown(bytes: &[u8]) -> Option<String> {
    let hint = if bytes.starts_with(b"%PDF") {
        "looks like a PDF"
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        "looks like HEIC/AVIF or MP4, which are not supported"
    } else if bytes.starts_with(b"<svg") || bytes.starts_with(b"<?xml") {
        "looks like SVG/XML"
    } else if bytes.starts_with(b"BM") {
        "looks like BMP"
    } else if std::str::from_utf8(&bytes[..bytes.len().min(512)]).is_ok() {
        "looks like text"
    } else {
        return None;
    };
    Some(hint.to_string())
}

/// What the header says, read without decoding pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub format: Format,
    /// Stored (not oriented) size.
    pub width: u32,
    pub height: u32,
    /// Bits of one stored sample (8 for JPEG; 1 to 64 for TIFF).
    pub bits_per_sample: u8,
    /// Stored samples per pixel, alpha and extra channels included
    /// (3 for YCbCr JPEG, 4 for CMYK, 1 for palette images).
    pub channels: u8,
}

/// Sniffs the format and reads the stored size, then applies the limits,
/// so a bomb is refused before a pixel buffer is allocated. A file that
/// uses a feature we do not decode (say, a TIFF in CIELab) is refused here
/// too, by name.
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<Probe, RenderError> {
    crate::guard::guarded(bytes, || probe_unguarded(bytes, limits))
}

fn probe_unguarded(bytes: &[u8], limits: &Limits) -> Result<Probe, RenderError> {
    if bytes.len() as u64 > limits.max_bytes {
        return Err(RenderError::TooManyBytes {
            bytes: bytes.len() as u64,
            limit: limits.max_bytes,
        });
    }
    let format = Format::sniff(bytes)?;
    let (width, height, bits_per_sample, channels) = match format {
        Format::Jpeg => {
            let header = crate::decode::jpeg_header(bytes)?;
            let channels = match header.colorspace {
                turbojpeg::Colorspace::Gray => 1,
                turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK => 4,
                _ => 3,
            };
            (
                u32::try_from(header.width).unwrap_or(u32::MAX),
                u32::try_from(header.height).unwrap_or(u32::MAX),
                8,
                channels,
            )
        }
        Format::Tiff => {
            let header = crate::tiff::read_header(bytes)?;
            (
                header.width,
                header.height,
                u8::try_from(header.bits_per_sample).unwrap_or(u8::MAX),
                u8::try_from(header.samples_per_pixel).unwrap_or(u8::MAX),
            )
        }
        _ => {
            let decoder =
                image::ImageReader::with_format(Cursor::new(bytes), format.image_format())
                    .into_decoder()
                    .map_err(|e| RenderError::corrupt(format.name(), e))?;
            let (width, height) = decoder.dimensions();
            let colour = decoder.original_color_type();
            let channels = colour.channel_count();
            let bits = colour.bits_per_pixel() / u16::from(channels.max(1));
            (
                width,
                height,
                u8::try_from(bits).unwrap_or(u8::MAX),
                channels,
            )
        }
    };
    if width == 0 || height == 0 {
        return Err(RenderError::ZeroDimension { width, height });
    }
    let pixels = width as u64 * height as u64;
    if pixels > limits.max_pixels {
        return Err(RenderError::TooManyPixels {
            width,
            height,
            pixels,
            limit: limits.max_pixels,
        });
    }
    Ok(Probe {
        format,
        width,
        height,
        bits_per_sample,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide_the_format() {
        assert_eq!(
            Format::sniff(b"\xFF\xD8\xFF\xE0rest").unwrap(),
            Format::Jpeg
        );
        assert_eq!(
            Format::sniff(b"\x89PNG\r\n\x1a\nrest").unwrap(),
            Format::Png
        );
        assert_eq!(Format::sniff(b"GIF89a....").unwrap(), Format::Gif);
        assert_eq!(
            Format::sniff(b"RIFF\0\0\0\0WEBPVP8 ").unwrap(),
            Format::Webp
        );
        assert_eq!(Format::sniff(b"II*\0\x08\0\0\0").unwrap(), Format::Tiff);
        assert_eq!(Format::sniff(b"MM\0*\0\0\0\x08").unwrap(), Format::Tiff);
        assert_eq!(
            Format::sniff(b"II+\0\x08\0\0\0\x10\0\0\0").unwrap(),
            Format::Tiff
        );
    }

    #[test]
    fn text_pdf_and_empty_files_are_refused_with_a_hint() {
        assert_eq!(Format::sniff(b"").unwrap_err().code(), "empty-file");
        let text = Format::sniff(b"hello, I am a cover").unwrap_err();
        assert_eq!(text.code(), "unsupported-format");
        assert!(text.to_string().contains("text"), "{text}");
        assert!(Format::sniff(b"%PDF-1.7")
            .unwrap_err()
            .to_string()
            .contains("PDF"));
        assert!(Format::sniff(b"RIFF\0\0\0\0WAVEfmt ").is_err());
    }

    #[test]
    fn the_byte_limit_is_checked_before_anything_else() {
        let limits = Limits {
            max_bytes: 4,
            max_pixels: 10,
        };
        let err = probe(b"not an image at all", &limits).unwrap_err();
        assert_eq!(err.code(), "too-many-bytes");
    }
}
