//! An 8-bit interleaved bitmap and the whole-pixel operations on it.

use crate::geometry::{Crop, Orientation};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channels {
    /// Luma alone: what IIIF's `gray` and `bitonal` qualities encode; no
    /// decoder produces it.
    Gray = 1,
    Rgb = 3,
    Rgba = 4,
}

impl Channels {
    pub fn count(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bitmap {
    pub width: u32,
    pub height: u32,
    pub channels: Channels,
    pub data: Vec<u8>,
}

impl Bitmap {
    pub fn new(width: u32, height: u32, channels: Channels, data: Vec<u8>) -> Self {
        debug_assert_eq!(
            data.len(),
            width as usize * height as usize * channels.count()
        );
        Bitmap {
            width,
            height,
            channels,
            data,
        }
    }

    pub fn stride(&self) -> usize {
        self.width as usize * self.channels.count()
    }

    /// Applies an EXIF orientation, returning the image as a person sees it.
    pub fn oriented(self, orientation: Orientation) -> Bitmap {
        if orientation == Orientation::Normal {
            return self;
        }
        let (w, h) = (self.width as usize, self.height as usize);
        let (ow, oh) = orientation.oriented_size(self.width, self.height);
        let n = self.channels.count();
        let mut out = vec![0u8; self.data.len()];
        // Walk each output row as a straight line through the source: the
        // start pixel and a constant step, so the inner loop is two adds.
        let index = |(x, y): (usize, usize)| (y * w + x) as isize * n as isize;
        for (oy, row) in out.chunks_exact_mut(ow as usize * n).enumerate() {
            let start = index(orientation.source_of(0, oy, w, h));
            let step = if ow > 1 {
                index(orientation.source_of(1, oy, w, h)) - start
            } else {
                0
            };
            let mut src = start;
            for px in row.chunks_exact_mut(n) {
                let s = src as usize;
                px.copy_from_slice(&self.data[s..s + n]);
                src += step;
            }
        }
        Bitmap::new(ow, oh, self.channels, out)
    }

    /// A copy of a rectangle as a tight RGB bitmap, compositing alpha onto
    /// `background` on the way.
    pub fn crop_to_rgb(&self, crop: &Crop, background: [u8; 3]) -> Bitmap {
        let n = self.channels.count();
        let mut out = Vec::with_capacity(crop.width as usize * crop.height as usize * 3);
        for y in crop.y..crop.y + crop.height {
            let start = y as usize * self.stride() + crop.x as usize * n;
            let row = &self.data[start..start + crop.width as usize * n];
            match self.channels {
                Channels::Rgb => out.extend_from_slice(row),
                Channels::Gray => {
                    for &y in row {
                        out.extend_from_slice(&[y, y, y]);
                    }
                }
                Channels::Rgba => {
                    for px in row.chunks_exact(4) {
                        out.extend_from_slice(&over(px, background));
                    }
                }
            }
        }
        Bitmap::new(crop.width, crop.height, Channels::Rgb, out)
    }

    /// The whole bitmap as tight RGB, compositing alpha onto `background`
    /// like [`Bitmap::crop_to_rgb`], but in its own buffer: a 100 MP RGBA
    /// bitmap needs no second 300 MB one beside it. The buffer keeps its
    /// capacity (the allocator would copy it to shrink it).
    pub fn into_rgb(self, background: [u8; 3]) -> Bitmap {
        let Bitmap {
            width,
            height,
            channels,
            mut data,
        } = self;
        match channels {
            Channels::Rgb => return Bitmap::new(width, height, channels, data),
            Channels::Gray => {
                let gray = Bitmap::new(width, height, channels, data);
                let whole = Crop {
                    x: 0,
                    y: 0,
                    width,
                    height,
                };
                return gray.crop_to_rgb(&whole, background);
            }
            Channels::Rgba => {}
        }
        let pixels = width as usize * height as usize;
        // Pixel i moves from 4i to 3i: never over a pixel not yet read.
        for i in 0..pixels {
            let px = [
                data[4 * i],
                data[4 * i + 1],
                data[4 * i + 2],
                data[4 * i + 3],
            ];
            data[3 * i..3 * i + 3].copy_from_slice(&over(&px, background));
        }
        data.truncate(pixels * 3);
        Bitmap::new(width, height, Channels::Rgb, data)
    }
}

/// An RGBA pixel composited onto an opaque background: the rounded integer
/// "over", exact at alpha 0 and 255.
fn over(px: &[u8], background: [u8; 3]) -> [u8; 3] {
    let alpha = px[3] as u32;
    let mut out = [0u8; 3];
    for ((o, c), bg) in out.iter_mut().zip(&px[..3]).zip(background) {
        *o = ((*c as u32 * alpha + bg as u32 * (255 - alpha) + 127) / 255) as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3x2 image whose pixel at (x, y) is [x, y, 7].
    fn numbered() -> Bitmap {
        let mut data = Vec::new();
        for y in 0..2u8 {
            for x in 0..3u8 {
                data.extend_from_slice(&[x, y, 7]);
            }
        }
        Bitmap::new(3, 2, Channels::Rgb, data)
    }

    fn at(b: &Bitmap, x: usize, y: usize) -> [u8; 2] {
        let i = (y * b.width as usize + x) * 3;
        [b.data[i], b.data[i + 1]]
    }

    #[test]
    fn every_orientation_moves_the_corners_where_exif_says() {
        // Oriented top-left corner for each EXIF value, in source coordinates
        // (the source is 3 wide, 2 high).
        let cases = [
            (1, (3, 2), [0, 0], [2, 1]),
            (2, (3, 2), [2, 0], [0, 1]),
            (3, (3, 2), [2, 1], [0, 0]),
            (4, (3, 2), [0, 1], [2, 0]),
            (5, (2, 3), [0, 0], [2, 1]),
            (6, (2, 3), [0, 1], [2, 0]),
            (7, (2, 3), [2, 1], [0, 0]),
            (8, (2, 3), [2, 0], [0, 1]),
        ];
        for (exif, size, top_left, bottom_right) in cases {
            let out = numbered().oriented(Orientation::from_exif(exif));
            assert_eq!((out.width, out.height), size, "orientation {exif}");
            assert_eq!(at(&out, 0, 0), top_left, "orientation {exif} top-left");
            let (w, h) = (out.width as usize, out.height as usize);
            assert_eq!(
                at(&out, w - 1, h - 1),
                bottom_right,
                "orientation {exif} bottom-right"
            );
        }
    }

    #[test]
    fn flattening_blends_alpha_onto_the_background() {
        let data = vec![
            255, 0, 0, 255, 255, 0, 0, 0, 255, 0, 0, 128, 10, 20, 30, 255,
        ];
        let b = Bitmap::new(2, 2, Channels::Rgba, data);
        let rgb = b.crop_to_rgb(&Crop::new(0, 0, 2, 2).unwrap(), [0, 0, 255]);
        assert_eq!(&rgb.data[0..3], &[255, 0, 0], "opaque stays");
        assert_eq!(
            &rgb.data[3..6],
            &[0, 0, 255],
            "transparent becomes background"
        );
        assert_eq!(&rgb.data[6..9], &[128, 0, 127], "half blends");
        assert_eq!(&rgb.data[9..12], &[10, 20, 30]);
    }

    #[test]
    fn flattening_in_place_gives_the_pixels_a_copy_gives() {
        let data: Vec<u8> = (0..5 * 3 * 4).map(|i| (i * 37 % 256) as u8).collect();
        let b = Bitmap::new(5, 3, Channels::Rgba, data);
        let whole = Crop::new(0, 0, 5, 3).unwrap();
        let copied = b.crop_to_rgb(&whole, [9, 200, 77]);
        let in_place = b.into_rgb([9, 200, 77]);
        assert_eq!(in_place, copied);
    }

    #[test]
    fn cropping_copies_the_right_rectangle() {
        let c = numbered().crop_to_rgb(&Crop::new(1, 1, 2, 1).unwrap(), [0; 3]);
        assert_eq!((c.width, c.height), (2, 1));
        assert_eq!(c.data, vec![1, 1, 7, 2, 1, 7]);
    }
}
