//! 16-bit PNGs, decoded row by row straight to 8 bits per sample.
//!
//! The `image` crate decodes a 16-bit PNG whole, at 16 bits, before it can
//! be converted: a 10000x10000 RGBA file held 800 MB and then 400 MB more
//! for its 8-bit copy. Here each row is converted as it is inflated, so the
//! 8-bit bitmap is all there is. The conversion is the `image` crate's own
//! (`round(v * 255 / 65535)`), so the pixels, and the rendered files, are
//! the same bytes as before. Interlaced files, whose rows come in passes,
//! still take the `image` path (and [`crate::decode_cost`] says so).

use std::io::Cursor;

use crate::format::Probe;
use crate::pixels::{Bitmap, Channels};
use crate::RenderError;

/// What the IHDR chunk (always first) and the chunks before the image data
/// say about the pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PngHeader {
    pub bit_depth: u8,
    /// Samples per pixel as decoded: palette and `tRNS` expanded, as the
    /// decoders expand them.
    pub channels: u8,
    pub alpha: bool,
    pub interlaced: bool,
}

impl PngHeader {
    /// `None` when the bytes do not start with a well-formed IHDR (the
    /// probe has refused those already).
    pub fn parse(bytes: &[u8]) -> Option<PngHeader> {
        let ihdr = bytes.get(8..33)?;
        if &ihdr[4..8] != b"IHDR" {
            return None;
        }
        let (bit_depth, colour, interlace) = (ihdr[16], ihdr[17], ihdr[20]);
        let transparency = has_trns(bytes);
        let (channels, alpha) = match colour {
            0 => (1 + u8::from(transparency), transparency),
            2 => (3 + u8::from(transparency), transparency),
            3 => (3 + u8::from(transparency), transparency),
            4 => (2, true),
            6 => (4, true),
            _ => return None,
        };
        Some(PngHeader {
            // Palettes and low depths are expanded to 8 bits.
            bit_depth: bit_depth.max(8),
            channels,
            alpha,
            interlaced: interlace != 0,
        })
    }

    /// Decoded bytes per pixel before any conversion to 8 bits.
    pub fn bytes_per_pixel(&self) -> u32 {
        u32::from(self.channels) * u32::from(self.bit_depth / 8)
    }

    /// Whether [`decode`] streams this file.
    pub fn streams(&self) -> bool {
        self.bit_depth == 16 && !self.interlaced
    }
}

/// Whether a `tRNS` chunk comes before the image data.
fn has_trns(bytes: &[u8]) -> bool {
    let mut at = 8;
    while let Some(header) = bytes.get(at..at + 8) {
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        match &header[4..8] {
            b"tRNS" => return true,
            b"IDAT" | b"IEND" => return false,
            _ => at = at.saturating_add(12).saturating_add(length),
        }
    }
    false
}

/// Whether `bytes` is a PNG that [`decode`] takes.
pub(crate) fn streams(bytes: &[u8]) -> bool {
    PngHeader::parse(bytes).is_some_and(|h| h.streams())
}

/// Decodes a non-interlaced 16-bit PNG to an 8-bit RGB or RGBA bitmap (gray
/// spread to RGB, as the `image` crate converts it), with its ICC profile.
pub(crate) fn decode(
    bytes: &[u8],
    probe: &Probe,
) -> Result<(Bitmap, Option<Vec<u8>>), RenderError> {
    let corrupt = |e: &dyn std::fmt::Display| RenderError::corrupt("PNG", e);
    let (width, height) = (probe.width as usize, probe.height as usize);
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits {
            // Its own buffers are a few rows; this only caps metadata.
            bytes: 64 << 20,
        },
    );
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| corrupt(&e))?;
    let icc = reader.info().icc_profile.as_ref().map(|p| p.to_vec());
    let (colour, depth) = reader.output_color_type();
    let (samples, channels) = match colour {
        png::ColorType::Grayscale => (1, Channels::Rgb),
        png::ColorType::GrayscaleAlpha => (2, Channels::Rgba),
        png::ColorType::Rgb => (3, Channels::Rgb),
        png::ColorType::Rgba => (4, Channels::Rgba),
        png::ColorType::Indexed => return Err(corrupt(&"a 16-bit palette")),
    };
    if depth != png::BitDepth::Sixteen || reader.info().interlaced {
        return Err(corrupt(&"not a non-interlaced 16-bit PNG"));
    }
    let out = channels.count();
    let mut data = Vec::with_capacity(width * height * out);
    let mut rows = 0;
    while let Some(row) = reader.next_row().map_err(|e| corrupt(&e))? {
        let row = row.data();
        if row.len() != width * samples * 2 || rows == height {
            return Err(corrupt(&"a row of the wrong length"));
        }
        for pixel in row.chunks_exact(samples * 2) {
            let sample =
                |i: usize| eight_bits(u16::from_be_bytes([pixel[2 * i], pixel[2 * i + 1]]));
            match samples {
                1 | 2 => data.extend_from_slice(&[sample(0); 3]),
                _ => data.extend_from_slice(&[sample(0), sample(1), sample(2)]),
            }
            if out == 4 {
                data.push(sample(samples - 1));
            }
        }
        rows += 1;
    }
    if rows != height {
        return Err(corrupt(&format!("{rows} of {height} rows")));
    }
    Ok((Bitmap::new(probe.width, probe.height, channels, data), icc))
}

/// The `image` crate's 16-to-8-bit conversion: `round(v * 255 / 65535)`.
fn eight_bits(v: u16) -> u8 {
    ((u32::from(v) + 128) / 257) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::probe;
    use crate::Limits;

    /// A small 16-bit PNG of `colour` with every sample value a step apart.
    fn png16(colour: png::ColorType, trns: bool) -> Vec<u8> {
        let (w, h) = (37u32, 23u32);
        let samples = match colour {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            _ => 4,
        };
        let mut raw = Vec::new();
        for i in 0..(w * h * samples) {
            raw.extend_from_slice(&((i * 977 + i * i * 31) as u16).to_be_bytes());
        }
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, w, h);
            encoder.set_color(colour);
            encoder.set_depth(png::BitDepth::Sixteen);
            if trns {
                encoder.set_trns(
                    vec![0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc][..samples as usize * 2].to_vec(),
                );
            }
            let mut writer = encoder.write_header().unwrap();
            writer.write_image_data(&raw).unwrap();
        }
        out
    }

    #[test]
    fn sixteen_bit_pngs_stream_to_the_same_pixels_as_the_image_crate() {
        use png::ColorType::*;
        for (colour, trns) in [
            (Grayscale, false),
            (Grayscale, true),
            (GrayscaleAlpha, false),
            (Rgb, false),
            (Rgb, true),
            (Rgba, false),
        ] {
            let bytes = png16(colour, trns);
            assert!(streams(&bytes), "{colour:?}");
            let probed = probe(&bytes, &Limits::default()).unwrap();
            let (bitmap, _) = decode(&bytes, &probed).unwrap();
            let reference = image::load_from_memory(&bytes).unwrap();
            let expected = if reference.color().has_alpha() {
                reference.into_rgba8().into_raw()
            } else {
                reference.into_rgb8().into_raw()
            };
            assert_eq!(bitmap.data, expected, "{colour:?} tRNS {trns}");
            assert_eq!(
                bitmap.channels.count(),
                if colour == GrayscaleAlpha || colour == Rgba || trns {
                    4
                } else {
                    3
                },
                "{colour:?}"
            );
        }
    }

    #[test]
    fn a_truncated_sixteen_bit_png_is_corrupt_not_a_panic() {
        let bytes = png16(png::ColorType::Rgba, false);
        let probed = probe(&bytes, &Limits::default()).unwrap();
        for cut in [60, bytes.len() / 2, bytes.len() - 13] {
            let err = decode(&bytes[..cut], &probed).unwrap_err();
            assert_eq!(err.code(), "corrupt-image", "cut at {cut}");
        }
    }

    #[test]
    fn the_header_says_depth_channels_alpha_and_interlacing() {
        let rgba = PngHeader::parse(&png16(png::ColorType::Rgba, false)).unwrap();
        assert_eq!(
            (rgba.bytes_per_pixel(), rgba.alpha, rgba.streams()),
            (8, true, true)
        );
        let grey = PngHeader::parse(&png16(png::ColorType::Grayscale, true)).unwrap();
        assert_eq!((grey.channels, grey.alpha), (2, true));
        assert!(PngHeader::parse(b"\x89PNG\r\n\x1a\nnot a header at all").is_none());
    }
}
