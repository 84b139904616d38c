//! What a render costs in memory, from the header alone.
//!
//! The pixel limit bounds width x height, but not bytes: a 100 MP RGBA
//! file at 16 bits per sample decodes to 800 MB. [`decode_cost`] reads the
//! format, size, channels (alpha included), bit depth and orientation
//! without decoding, and [`DecodeCost::peak_bytes`] adds up what the render
//! holds at its fullest stage, so a caller can refuse an image that can
//! never fit its memory budget, and make renders that do fit wait for
//! their share instead of running all at once.

use serde::Serialize;

use crate::decode::read_orientation;
use crate::format::{probe, Format};
use crate::png16::PngHeader;
use crate::{Limits, Orientation, RenderError};

/// Allowance for what does not grow with the original: the squares (the
/// largest, 3000x3000 RGB, is 27 MB), encoder buffers of the smaller
/// styles, colour transforms, the rayon workers' stacks.
const FIXED_BYTES: u64 = 64 << 20;

/// The memory a render of one original needs, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DecodeCost {
    pub format: Format,
    /// Stored size, as the decoder sees it.
    pub width: u32,
    pub height: u32,
    /// Bytes per pixel of what the decoder produces, alpha and 16-bit
    /// samples included (an RGBA PNG at 16 bits: 8; a CMYK JPEG: 4).
    pub bytes_per_pixel: u32,
    /// Whether the pixels keep an alpha channel once at 8 bits.
    pub alpha: bool,
    /// Whether the decoder converts to 8 bits row by row, never holding
    /// its own output whole (non-interlaced 16-bit PNGs).
    pub streamed: bool,
    /// Whether the EXIF orientation makes the oriented copy.
    pub reoriented: bool,
}

impl DecodeCost {
    fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Bytes of the decoder's output: width x height x bytes per pixel.
    pub fn decoded_bytes(&self) -> u64 {
        self.pixels() * u64::from(self.bytes_per_pixel)
    }

    /// The most the render holds at once (every style, or an IIIF region of
    /// it), an upper bound: the largest of its stages, plus
    /// [`FIXED_BYTES`]. With `P` pixels and `E` = 3 or 4 bytes per pixel
    /// at 8 bits:
    /// - decode: the decoder's output and its 8-bit copy (`E` alone when
    ///   streamed or already 8-bit RGB/RGBA);
    /// - orient: the bitmap and its oriented copy (`2E`);
    /// - strip: the bitmap and a re-encoded `stripped-original` when the
    ///   orientation must be baked in (`2E`);
    /// - crop: the bitmap and the flattened RGB crop (`E + 3P`);
    /// - encode: the RGB crop and `regular`'s encoder buffer (`3P + 1.5P`).
    pub fn peak_bytes(&self) -> u64 {
        let p = self.pixels();
        let eight = p * if self.alpha { 4 } else { 3 };
        let decode = if self.streamed || self.decoded_bytes() == eight {
            eight
        } else {
            self.decoded_bytes() + eight
        };
        let orient = if self.reoriented { 2 * eight } else { eight };
        let crop = eight + 3 * p;
        let encode = 3 * p + p * 3 / 2;
        decode.max(orient).max(crop).max(encode) + FIXED_BYTES
    }

    /// Refuses a render that needs more than a whole `budget` of bytes.
    pub fn check(&self, budget: u64) -> Result<u64, RenderError> {
        let needed = self.peak_bytes();
        if needed > budget {
            return Err(RenderError::TooMuchMemory {
                width: self.width,
                height: self.height,
                bytes_per_pixel: self.bytes_per_pixel,
                needed,
                budget,
            });
        }
        Ok(needed)
    }
}

/// Reads an original's header (format, size, channels, bit depth, EXIF
/// orientation) and says what rendering it costs; the byte and pixel
/// limits are checked first, as [`probe`] does.
pub fn decode_cost(original: &[u8], limits: &Limits) -> Result<DecodeCost, RenderError> {
    crate::guard::guarded(original, || {
        let probed = probe(original, limits)?;
        let reoriented = read_orientation(original, probed.format) != Orientation::Normal;
        let stored = u32::from(probed.channels.max(1))
            * u32::from(probed.bits_per_sample.max(8)).div_ceil(8);
        let (bytes_per_pixel, alpha, streamed) = match probed.format {
            // Decoded to RGB; CMYK and YCCK to four bytes first, then to RGB.
            Format::Jpeg => (if probed.channels == 4 { 4 } else { 3 }, false, false),
            Format::Png => {
                let header = PngHeader::parse(original)
                    .ok_or_else(|| RenderError::corrupt("PNG", "no IHDR chunk"))?;
                (header.bytes_per_pixel(), header.alpha, header.streams())
            }
            // libtiff's strips or tiles go straight into the 8-bit bitmap;
            // four samples may be CMYK, counted as if they were RGBA.
            Format::Tiff => (stored, matches!(probed.channels, 2 | 4..), true),
            Format::Webp | Format::Gif => (stored, matches!(probed.channels, 2 | 4), false),
        };
        Ok(DecodeCost {
            format: probed.format,
            width: probed.width,
            height: probed.height,
            bytes_per_pixel,
            alpha,
            streamed,
            reoriented,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn cost(width: u32, height: u32, bytes_per_pixel: u32, alpha: bool) -> DecodeCost {
        DecodeCost {
            format: Format::Png,
            width,
            height,
            bytes_per_pixel,
            alpha,
            streamed: false,
            reoriented: false,
        }
    }

    #[test]
    fn sixteen_bits_and_alpha_count_and_streaming_saves_the_wide_copy() {
        // 100 MP RGBA at 16 bits: 800 MB decoded, plus its 400 MB 8-bit copy.
        let wide = cost(10_000, 10_000, 8, true);
        assert_eq!(wide.decoded_bytes(), 800_000_000);
        assert_eq!(wide.peak_bytes(), 1_200_000_000 + 64 * MB);
        // Streamed, only the 8-bit RGBA bitmap and then its RGB crop.
        let streamed = DecodeCost {
            streamed: true,
            ..wide
        };
        assert_eq!(streamed.peak_bytes(), 700_000_000 + 64 * MB);
        // The same picture at 8 bits without alpha: the crop stage leads.
        assert_eq!(
            cost(10_000, 10_000, 3, false).peak_bytes(),
            600_000_000 + 64 * MB
        );
    }

    #[test]
    fn a_render_over_the_whole_budget_is_refused_with_its_numbers() {
        let wide = cost(10_000, 10_000, 8, true);
        let err = wide.check(1 << 30).unwrap_err();
        assert_eq!(err.code(), "too-much-memory");
        let text = err.to_string();
        assert!(
            text.contains("10000x10000") && text.contains("1209 MiB"),
            "{text}"
        );
        assert_eq!(wide.check(2 << 30).unwrap(), wide.peak_bytes());
    }

    #[test]
    fn the_header_gives_channels_depth_and_orientation() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
        let read = |name: &str| std::fs::read(fixtures.join(name)).unwrap();
        let limits = Limits::default();
        let cmyk = decode_cost(&read("jpeg/cmyk_pil_sample.jpg"), &limits).unwrap();
        assert_eq!((cmyk.bytes_per_pixel, cmyk.alpha), (4, false));
        let rotated = decode_cost(&read("jpeg/hopper_orientation_6.jpg"), &limits).unwrap();
        assert_eq!((rotated.bytes_per_pixel, rotated.reoriented), (3, true));
        let wide = decode_cost(&read("png/rgba16_10000x10000.png"), &limits).unwrap();
        assert_eq!(
            (wide.width, wide.bytes_per_pixel, wide.alpha, wide.streamed),
            (10_000, 8, true, true)
        );
        assert!(matches!(
            decode_cost(b"not an image", &limits),
            Err(RenderError::UnsupportedFormat(_))
        ));
    }
}
