//! Resizes with fast_image_resize (SIMD convolution): the square styles
//! and IIIF's regions, with one filter.

use fast_image_resize::images::{Image, ImageRef};
pub(crate) use fast_image_resize::Resizer;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions};
use rayon::prelude::*;

use crate::geometry::{Area, Crop};
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
    square_with(&mut Resizer::new(), source, rect, side)
}

/// [`square`] with a resizer whose buffers (the two-pass intermediate)
/// the caller reuses from one square to the next, as the cascade does.
pub(crate) fn square_with(
    resizer: &mut Resizer,
    source: &Bitmap,
    rect: &Crop,
    side: u32,
) -> Result<Bitmap, RenderError> {
    convolve(resizer, source, Some(&Area::from(rect)), side, side)
}

/// Crops of more pixels than this make their largest square in their own
/// buffer in strips ([`square_in_place`]); smaller ones in two whole
/// passes ([`square_in_crop`]). The strips keep a 6000 px crop's render
/// 54 MB smaller at its peak, which keeps the worker under its memory
/// target, but they cost time: a resizer per strip and band, and every
/// strip and band copied back. Under this size the one intermediate is at
/// most ~50 MB, which a render's memory estimate already covers.
pub(crate) const IN_PLACE_ABOVE: u64 = 4096 * 4096;

/// Whether the largest square of `rect` is made in strips.
pub(crate) fn in_place_for(rect: &Crop) -> bool {
    u64::from(rect.width) * u64::from(rect.height) > IN_PLACE_ABOVE
}

/// [`square`] for the last use of `source`, as fast_image_resize's own
/// two passes but with the square written over the crop: the vertical
/// pass into an intermediate of the columns the horizontal pass reads (see
/// [`square_in_place`] for why each pass alone gives the same bytes), then
/// the horizontal pass from it into the front of `source`'s buffer, which
/// nothing reads any more. No output buffer to allocate (and for the
/// kernel to zero), and nothing copied back.
pub(crate) fn square_in_crop(
    mut source: Bitmap,
    rect: &Crop,
    side: u32,
) -> Result<Bitmap, RenderError> {
    if !shrinks_rgb(&source, rect, side) {
        return square(&source, rect, side);
    }
    let fail = |e: &dyn std::fmt::Display| RenderError::Resize(e.to_string());
    let margin = reach(rect.width, side);
    let left = rect.x.saturating_sub(margin);
    let columns = (rect.x + rect.width + margin).min(source.width) - left;
    let mut resizer = Resizer::new();

    let mut between = Image::new(columns, side, PixelType::U8x3);
    let src = ImageRef::new(source.width, source.height, &source.data, PixelType::U8x3)
        .map_err(|e| fail(&e))?;
    resizer
        .resize(
            &src,
            &mut between,
            &cropped(left, rect.y, columns, rect.height),
        )
        .map_err(|e| fail(&e))?;

    let len = side as usize * side as usize * 3;
    let mut dst = Image::from_slice_u8(side, side, &mut source.data[..len], PixelType::U8x3)
        .map_err(|e| fail(&e))?;
    resizer
        .resize(
            &between,
            &mut dst,
            &cropped(rect.x - left, 0, rect.width, side),
        )
        .map_err(|e| fail(&e))?;
    drop(between);
    let mut data = source.data;
    data.truncate(len);
    Ok(Bitmap::new(side, side, Channels::Rgb, data))
}

/// Whether `side` shrinks `rect` both ways in an RGB bitmap: only such a
/// resize has an intermediate to do without, and only an RGB bitmap's rows
/// are the layout the square-in-the-crop paths write.
fn shrinks_rgb(source: &Bitmap, rect: &Crop, side: u32) -> bool {
    side < rect.width && side < rect.height && source.channels == Channels::Rgb
}

/// The convolution of every resize here, cropped to a rectangle of whole
/// pixels.
fn cropped(x: u32, y: u32, w: u32, h: u32) -> ResizeOptions {
    ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FILTER))
        .crop(f64::from(x), f64::from(y), f64::from(w), f64::from(h))
}

/// Columns per vertical-pass strip, and rows per horizontal-pass band, in
/// [`square_in_place`]: each is written to a scratch of its own first
/// (1024 x 3000 x 3 bytes, 9.2 MB at most, one per thread). Narrower
/// strips read each source row from a page of its own and made the
/// vertical pass slower than the two-pass resize; at 1024 it is faster.
const STRIP: u32 = 1024;

/// [`square`] for the last use of `source`: the same bytes, made in
/// `source`'s own buffer instead of beside it in a new intermediate (half
/// the crop for a 2:1 shrink, 54 MB for a 6000 px square) and a new output.
///
/// fast_image_resize makes a shrink in two passes, vertical then
/// horizontal, through an intermediate as wide as the columns the
/// horizontal pass reads and as tall as the output. Each pass on its own
/// gives the same bytes as inside the two-pass resize: the coefficients
/// depend only on the source's size, the crop and the output's size, and
/// every column of a vertical pass (every row of a horizontal one) is
/// computed on its own. So:
/// 1. the vertical pass runs in strips of columns, each overwriting the
///    top `side` rows of its own columns (no other strip reads them);
/// 2. the horizontal pass runs in bands of those rows, each band's output
///    written to the front of the buffer, over rows already read (an
///    output row is no longer than a source row).
///
/// The square keeps the crop's allocation (its length cut to the square's)
/// until it is dropped. Both passes share their strips and bands out over
/// the current rayon pool.
pub(crate) fn square_in_place(
    source: Bitmap,
    rect: &Crop,
    side: u32,
) -> Result<Bitmap, RenderError> {
    in_place(source, rect, side, STRIP)
}

/// [`square_in_place`] in strips and bands of `strip` columns and rows.
fn in_place(mut source: Bitmap, rect: &Crop, side: u32, strip: u32) -> Result<Bitmap, RenderError> {
    if !shrinks_rgb(&source, rect, side) {
        return square(&source, rect, side);
    }
    let fail = |e: &dyn std::fmt::Display| RenderError::Resize(e.to_string());
    let (width, height) = (source.width, source.height);
    let stride = source.stride();
    let threads = rayon::current_num_threads().max(1);
    // Runs one pass on a part of `pixels` (`rows` rows of `stride` bytes)
    // into `scratch`, as an image `out.0` x `out.1`.
    let pass = |pixels: &[u8], rows: u32, out: (u32, u32), crop, scratch: &mut Vec<u8>| {
        let src = ImageRef::new(width, rows, pixels, PixelType::U8x3).map_err(|e| fail(&e))?;
        scratch.resize(out.0 as usize * out.1 as usize * 3, 0);
        let mut dst =
            Image::from_slice_u8(out.0, out.1, scratch, PixelType::U8x3).map_err(|e| fail(&e))?;
        Resizer::new()
            .resize(&src, &mut dst, &crop)
            .map_err(|e| fail(&e))
    };
    // One per thread, reused by every strip and band.
    let mut scratch: Vec<Vec<u8>> = vec![Vec::new(); threads];
    let parts = |first: u32, end: u32| -> Vec<(u32, u32)> {
        (first..end)
            .step_by(strip as usize)
            .map(|at| (at, strip.min(end - at)))
            .collect()
    };

    // 1. Every column the horizontal pass reads (see `reach`), down to `side` rows.
    let margin = reach(rect.width, side);
    let columns = parts(
        rect.x.saturating_sub(margin),
        (rect.x + rect.width + margin).min(width),
    );
    for batch in columns.chunks(threads) {
        let data = &source.data;
        batch
            .par_iter()
            .zip(scratch.par_iter_mut())
            .try_for_each(|(&(x, w), out)| {
                let crop = cropped(x, rect.y, w, rect.height);
                pass(data, height, (w, side), crop, out)
            })?;
        for (&(x, w), output) in batch.iter().zip(&scratch) {
            let (at, row_bytes) = (x as usize * 3, w as usize * 3);
            for (y, row) in output.chunks_exact(row_bytes).enumerate() {
                let start = y * stride + at;
                source.data[start..start + row_bytes].copy_from_slice(row);
            }
        }
    }

    // 2. Those rows across, to the front of the buffer.
    let out_row = side as usize * 3;
    for batch in parts(0, side).chunks(threads) {
        let top = &source.data[..side as usize * stride];
        batch
            .par_iter()
            .zip(scratch.par_iter_mut())
            .try_for_each(|(&(y, h), out)| {
                pass(top, side, (side, h), cropped(rect.x, y, rect.width, h), out)
            })?;
        for (&(y, h), output) in batch.iter().zip(&scratch) {
            let output = &output[..h as usize * out_row];
            let start = y as usize * out_row;
            source.data[start..start + output.len()].copy_from_slice(output);
        }
    }
    let mut data = source.data;
    data.truncate(side as usize * out_row);
    Ok(Bitmap::new(side, side, Channels::Rgb, data))
}

/// Resizes `area` of the RGB `source` (all of it, or a fractional part
/// after a scaled decode) to `width`x`height`: IIIF's regions. The whole
/// bitmap at its own size is returned as it is.
pub(crate) fn area(
    source: Bitmap,
    area: &Area,
    width: u32,
    height: u32,
) -> Result<Bitmap, RenderError> {
    let whole = Area {
        x: 0.0,
        y: 0.0,
        width: source.width as f64,
        height: source.height as f64,
    };
    if *area != whole {
        return convolve(&mut Resizer::new(), &source, Some(area), width, height);
    }
    if (source.width, source.height) == (width, height) {
        return Ok(source);
    }
    convolve(&mut Resizer::new(), &source, None, width, height)
}

fn convolve(
    resizer: &mut Resizer,
    source: &Bitmap,
    crop: Option<&Area>,
    width: u32,
    height: u32,
) -> Result<Bitmap, RenderError> {
    debug_assert_eq!(source.channels, Channels::Rgb);
    let fail = |e: &dyn std::fmt::Display| RenderError::Resize(e.to_string());
    let src = ImageRef::new(source.width, source.height, &source.data, PixelType::U8x3)
        .map_err(|e| fail(&e))?;
    let mut dst = Image::new(width, height, PixelType::U8x3);
    let mut options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FILTER));
    if let Some(a) = crop {
        options = options.crop(a.x, a.y, a.width, a.height);
    }
    resizer
        .resize(&src, &mut dst, &options)
        .map_err(|e| fail(&e))?;
    Ok(Bitmap::new(width, height, Channels::Rgb, dst.into_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Noise over a gradient with hard edges, so rounding and clamping
    /// both show if a pass differs.
    fn noisy(width: u32, height: u32, seed: u32) -> Bitmap {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        let mut data = Vec::with_capacity(width as usize * height as usize * 3);
        for y in 0..height {
            for x in 0..width {
                for c in 0..3 {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    let edge = if (x / 7 + y / 5 + c) % 3 == 0 { 255 } else { 0 };
                    let base = (x * 255 / width.max(1) + y * 3) % 256;
                    data.push(((base + edge + (state >> 26)) / 2) as u8);
                }
            }
        }
        Bitmap::new(width, height, Channels::Rgb, data)
    }

    /// (bitmap width, height, crop, side) for the byte-identity tests:
    /// whole squares, crops with room around them and at the edges, odd
    /// sizes, widths that are not a multiple of a strip, shrinks by 2, by a
    /// fraction and by a lot.
    type Square = (u32, u32, (u32, u32, u32, u32), u32);
    const SQUARES: [Square; 6] = [
        (600, 600, (0, 0, 600, 600), 300),
        (601, 599, (0, 0, 599, 599), 400),
        (900, 700, (150, 20, 640, 640), 333),
        (1100, 520, (3, 7, 510, 510), 100),
        (530, 800, (0, 131, 530, 530), 529),
        (777, 777, (11, 0, 766, 766), 17),
    ];

    #[test]
    fn the_in_place_square_is_byte_identical_to_the_two_pass_resize() {
        // The real strips, and narrow ones so that every case has several.
        for (threads, strip) in [(1, STRIP), (1, 64), (3, 100), (2, 7)] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for (i, &(width, height, (x, y, w, h), side)) in SQUARES.iter().enumerate() {
                let source = noisy(width, height, i as u32 + 1);
                let rect = Crop::new(x, y, w, h).unwrap();
                let two_pass = square(&source, &rect, side).unwrap();
                let in_place = pool
                    .install(|| in_place(source, &rect, side, strip))
                    .unwrap();
                assert_eq!((in_place.width, in_place.height), (side, side));
                assert!(
                    in_place.data == two_pass.data,
                    "case {i} on {threads} threads in strips of {strip}: the pixels differ"
                );
            }
        }
    }

    #[test]
    fn the_square_made_in_the_crops_buffer_is_byte_identical_to_the_two_pass_resize() {
        // The shared geometries, then the photo's (3069 px wide: its crop's
        // columns from the iMCU boundary) and squares not smaller than
        // the crop, which fall back to the plain resize.
        let extra = [
            (3069, 3024, (21, 0, 3024, 3024), 3000),
            (300, 200, (50, 0, 200, 200), 200),
            (300, 200, (50, 0, 200, 200), 250),
        ];
        for (i, &(width, height, (x, y, w, h), side)) in SQUARES.iter().chain(&extra).enumerate() {
            let source = noisy(width, height, i as u32 + 1);
            let rect = Crop::new(x, y, w, h).unwrap();
            let two_pass = square(&source, &rect, side).unwrap();
            let in_crop = square_in_crop(source, &rect, side).unwrap();
            assert_eq!((in_crop.width, in_crop.height), (side, side));
            assert!(in_crop.data == two_pass.data, "case {i}: the pixels differ");
        }
    }

    #[test]
    fn a_reused_resizer_makes_the_cascade_a_fresh_one_makes() {
        let crop = noisy(1500, 1400, 5);
        let mut resizer = Resizer::new();
        let mut larger: Option<Bitmap> = None;
        for side in [1400, 888, 640, 400, 100] {
            let (source, rect) = match &larger {
                Some(b) => (b, Crop::new(0, 0, b.width, b.height).unwrap()),
                None => (&crop, Crop::new(50, 0, 1400, 1400).unwrap()),
            };
            let reused = square_with(&mut resizer, source, &rect, side).unwrap();
            assert!(reused == square(source, &rect, side).unwrap(), "{side} px");
            larger = Some(reused);
        }
    }

    #[test]
    fn an_in_place_square_that_is_no_shrink_both_ways_resizes_as_before() {
        let source = noisy(300, 200, 9);
        let rect = Crop::new(50, 0, 200, 200).unwrap();
        for side in [200, 250] {
            let expected = square(&source, &rect, side).unwrap();
            assert_eq!(
                square_in_place(source.clone(), &rect, side).unwrap(),
                expected
            );
        }
    }
}
