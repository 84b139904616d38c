//! Decoding one region of the oriented image, scaled down in the decoder
//! when the caller shrinks it anyway: only as much of the original as a
//! request needs.
//!
//! For a JPEG, libjpeg-turbo 3 decodes a window of the stored image
//! (`tj3SetCroppingRegion`: only the window's iMCU columns are
//! inverse-transformed, upsampled and colour-converted; rows above it are
//! skipped with only their entropy data read) and scales by k/8 in the
//! inverse DCT (`tj3SetScalingFactor`). The region is asked for in oriented
//! coordinates and mapped back to the stored orientation first; only the
//! window is oriented afterwards. Other formats are decoded whole: their
//! decoders have no region or scale to ask for.
//!
//! A window is a little larger than the region: libjpeg-turbo's smooth
//! chroma upsampling treats a window's edge as the image's edge, so a
//! margin keeps those edge pixels out of the region, and the pixels inside
//! are the ones a whole decode gives.

use std::ffi::c_int;
use std::time::{Duration, Instant};

use crate::decode::{self, Decoded};
use crate::format::{Format, Probe};
use crate::geometry::{Area, Crop, Orientation};
use crate::pixels::Bitmap;
use crate::turbo::Handle;
use crate::RenderError;

/// How much of the file must be read for the decode to succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verify {
    /// Every byte of entropy data is decoded, so damage anywhere in the
    /// file is an error, as with a whole decode (the render of an upload).
    WholeFile,
    /// Decoding stops after the region's rows: damage below it goes
    /// unseen (a IIIF tile of an image that was checked when it rendered).
    Region,
}

/// What to decode: a region of the oriented image and how it will be used.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RegionRequest {
    /// In oriented pixels, inside the image.
    pub region: Crop,
    /// Pixels around the region the caller reads too (a resize kernel
    /// reaches past its crop), decoded wherever the image has them.
    pub margin: u32,
    /// The size the caller resizes the region to, when that is smaller:
    /// the decoder may scale down by k/8 as long as the region keeps at
    /// least this many pixels each way. `None` keeps full resolution.
    pub shrink_to: Option<(u32, u32)>,
    pub verify: Verify,
}

/// Oriented pixels holding a region.
pub(crate) struct RegionPixels {
    /// Oriented, perhaps scaled down; covers the region and perhaps a margin.
    pub bitmap: Bitmap,
    /// Where the region lies in `bitmap`, in its pixels: whole at full
    /// scale, fractional when the decoder scaled down.
    pub area: Area,
    /// The part of the decode spent orienting the pixels.
    pub orient_time: Duration,
    pub icc: Option<Vec<u8>>,
    pub had_icc_profile: bool,
    pub warnings: Vec<String>,
}

/// A window of a stored JPEG at a scale: what libjpeg-turbo is asked to
/// decode. Coordinates are in pixels of the stored image scaled by
/// `eighths`/8; `x` is a multiple of the scaled iMCU width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JpegWindow {
    pub eighths: u32,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// The DCT scales tried, smallest first (in eighths). libjpeg-turbo also
/// offers 3/8, 5/8, 3/4 and 7/8, whose inverse DCTs have no SIMD code.
const SCALES: [u32; 4] = [1, 2, 4, 8];

/// Decodes the pixels `request` needs, oriented.
pub(crate) fn decode_region(
    original: &[u8],
    probe: &Probe,
    orientation: Orientation,
    request: &RegionRequest,
) -> Result<RegionPixels, RenderError> {
    if probe.format == Format::Jpeg {
        if let Some(window) = jpeg_window(original, probe, orientation, request)? {
            let decoded = decode::decode_jpeg_window(original, &window)?;
            return Ok(oriented_window(
                decoded,
                probe,
                orientation,
                request,
                &window,
            ));
        }
    }
    let decoded = decode::decode(original, probe)?;
    let t = Instant::now();
    let bitmap = decoded.bitmap.oriented(orientation);
    Ok(RegionPixels {
        bitmap,
        area: Area::from(&request.region),
        orient_time: t.elapsed(),
        icc: decoded.icc,
        had_icc_profile: decoded.had_icc_profile,
        warnings: decoded.warnings,
    })
}

/// The window to decode, or `None` when the JPEG must be decoded whole
/// (lossless JPEG, whose decoder neither crops nor scales, or a
/// subsampling libjpeg-turbo cannot name).
fn jpeg_window(
    original: &[u8],
    probe: &Probe,
    orientation: Orientation,
    request: &RegionRequest,
) -> Result<Option<JpegWindow>, RenderError> {
    let header = decode::jpeg_header(original)?;
    if header.is_lossless || header.subsamp == turbojpeg::Subsamp::Unknown {
        return Ok(None);
    }
    let (width, height) = (probe.width, probe.height);
    let stored = orientation.stored_area(&Area::from(&request.region), width as f64, height as f64);
    // CMYK becomes RGB through products of inks (and a CMYK profile), so
    // averaging in CMYK, as a scaled inverse DCT does, is not averaging
    // colours: a black and a cyan pixel would make a dark grey.
    let cmyk = matches!(
        header.colorspace,
        turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
    );
    let eighths = match request.shrink_to {
        None => 8,
        Some(_) if cmyk => 8,
        Some((w, h)) => {
            let (w, h) = if orientation.swaps_axes() {
                (h, w)
            } else {
                (w, h)
            };
            // The smallest scale at which the region keeps the pixels asked for.
            SCALES
                .into_iter()
                .find(|k| {
                    stored.width * *k as f64 >= 16.0 * w as f64
                        && stored.height * *k as f64 >= 16.0 * h as f64
                })
                .unwrap_or(8)
        }
    };
    let scaled = |side: u32| scaled_side(side, eighths);
    let (scaled_width, scaled_height) = (scaled(width), scaled(height));
    let (mcu_width, mcu_height) = header.subsamp.mcu_size();
    let (mcu_width, mcu_height) = (scaled(mcu_width as u32), scaled(mcu_height as u32));
    let wanted = stored.scaled(eighths as f64 / 8.0).covering();
    // One scaled iMCU on every side keeps the upsampler's edge out of the
    // region, whatever the subsampling.
    let margin_x = scaled(request.margin) + mcu_width;
    let margin_y = scaled(request.margin) + mcu_height;
    let x = wanted.x.saturating_sub(margin_x) / mcu_width * mcu_width;
    let right = (wanted.x + wanted.width + margin_x).min(scaled_width);
    let y = wanted.y.saturating_sub(margin_y);
    let bottom = match request.verify {
        Verify::WholeFile => scaled_height,
        Verify::Region => (wanted.y + wanted.height + margin_y).min(scaled_height),
    };
    Ok(Some(JpegWindow {
        eighths,
        x,
        y,
        width: right - x,
        height: bottom - y,
    }))
}

/// A side of the image at `eighths`/8, as libjpeg-turbo rounds it (up).
fn scaled_side(side: u32, eighths: u32) -> u32 {
    ((side as u64 * eighths as u64).div_ceil(8)) as u32
}

fn oriented_window(
    decoded: Decoded,
    probe: &Probe,
    orientation: Orientation,
    request: &RegionRequest,
    window: &JpegWindow,
) -> RegionPixels {
    let scale = window.eighths as f64 / 8.0;
    let stored = orientation
        .stored_area(
            &Area::from(&request.region),
            probe.width as f64,
            probe.height as f64,
        )
        .scaled(scale);
    let in_window = Area {
        x: stored.x - window.x as f64,
        y: stored.y - window.y as f64,
        ..stored
    };
    let area = orientation.oriented_area(&in_window, window.width as f64, window.height as f64);
    let t = Instant::now();
    let bitmap = decoded.bitmap.oriented(orientation);
    RegionPixels {
        bitmap,
        area,
        orient_time: t.elapsed(),
        icc: decoded.icc,
        had_icc_profile: decoded.had_icc_profile,
        warnings: decoded.warnings,
    }
}

/// Decodes `window` of `jpeg` into `out`, which it replaces with the
/// window's pixels (tightly packed rows of `format`). Errors carry
/// TurboJPEG's message, warnings included: libjpeg-turbo's warnings mean
/// damaged data, as in a whole decode; `out` is then left empty.
///
/// TurboJPEG writes into `out`'s spare capacity, which is never zeroed
/// first: every byte is written by a decode that succeeds, and zeroing the
/// 12 MP photo's 27 MB crop beforehand cost ~2 ms of a 190 ms render.
pub(crate) fn decompress_window(
    jpeg: &[u8],
    window: &JpegWindow,
    format: turbojpeg::PixelFormat,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let pitch = window.width as usize * format.size();
    let len = pitch * window.height as usize;
    out.clear();
    out.reserve_exact(len);
    let d = Handle::decompressor()?;
    // SAFETY: the pointer and length describe `jpeg`, alive for the call.
    d.check(unsafe {
        turbojpeg_sys::tj3DecompressHeader(d.0, jpeg.as_ptr(), jpeg.len() as turbojpeg_sys::size_t)
    })?;
    // SAFETY (both): plain values on a live handle.
    let (width, height) = unsafe {
        (
            turbojpeg_sys::tj3Get(d.0, turbojpeg_sys::TJPARAM_TJPARAM_JPEGWIDTH as c_int),
            turbojpeg_sys::tj3Get(d.0, turbojpeg_sys::TJPARAM_TJPARAM_JPEGHEIGHT as c_int),
        )
    };
    let (width, height) = (width.max(0) as u32, height.max(0) as u32);
    let eighths = window.eighths.clamp(1, 8);
    let common = gcd(eighths, 8);
    let factor = turbojpeg_sys::tjscalingfactor {
        num: (eighths / common) as c_int,
        denom: (8 / common) as c_int,
    };
    // SAFETY: a plain value on a live handle.
    d.check(unsafe { turbojpeg_sys::tj3SetScalingFactor(d.0, factor) })?;
    let whole = (window.x, window.y, window.width, window.height)
        == (
            0,
            0,
            scaled_side(width, eighths),
            scaled_side(height, eighths),
        );
    if !whole {
        let region = turbojpeg_sys::tjregion {
            x: window.x as c_int,
            y: window.y as c_int,
            w: window.width as c_int,
            h: window.height as c_int,
        };
        // SAFETY: a plain value on a live handle whose header was read;
        // TurboJPEG checks the region against the scaled image.
        d.check(unsafe { turbojpeg_sys::tj3SetCroppingRegion(d.0, region) })?;
    }
    // SAFETY: `out`'s buffer has room for `window.height` rows of `pitch`
    // bytes (reserved above), which is what TurboJPEG writes for this scale
    // and region; it writes through the pointer and reads nothing there.
    d.check(unsafe {
        turbojpeg_sys::tj3Decompress8(
            d.0,
            jpeg.as_ptr(),
            jpeg.len() as turbojpeg_sys::size_t,
            out.as_mut_ptr(),
            pitch as c_int,
            format as c_int,
        )
    })?;
    // SAFETY: the decode succeeded, so TurboJPEG wrote every one of those
    // rows (a warning, such as data ending early, is an error above), and
    // `len` is within the capacity reserved.
    unsafe { out.set_len(len) };
    Ok(())
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::probe;
    use crate::Limits;

    fn olympus() -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/photo/olympus_e-p3_4032x3024.jpg"
        );
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
    }

    /// A patch of a real photo (odd sizes, so no side is a whole number of
    /// iMCUs), encoded with the given subsampling.
    fn photo_jpeg(subsamp: turbojpeg::Subsamp, progressive: bool) -> Vec<u8> {
        let original = olympus();
        let probe = probe(&original, &Limits::default()).unwrap();
        let photo = decode::decode(&original, &probe).unwrap().bitmap;
        let patch = photo.crop_to_rgb(&Crop::new(1203, 905, 613, 389).unwrap(), [0; 3]);
        let mut compressor = turbojpeg::Compressor::new().unwrap();
        compressor.set_quality(90).unwrap();
        compressor.set_subsamp(subsamp).unwrap();
        compressor.set_progressive(progressive).unwrap();
        compressor
            .compress_to_vec(turbojpeg::Image {
                pixels: patch.data.as_slice(),
                width: patch.width as usize,
                pitch: patch.stride(),
                height: patch.height as usize,
                format: turbojpeg::PixelFormat::RGB,
            })
            .unwrap()
    }

    fn whole_decode(jpeg: &[u8], orientation: Orientation, region: &Crop) -> Bitmap {
        let probe = probe(jpeg, &Limits::default()).unwrap();
        let oriented = decode::decode(jpeg, &probe)
            .unwrap()
            .bitmap
            .oriented(orientation);
        oriented.crop_to_rgb(region, [0; 3])
    }

    fn region_decode(
        jpeg: &[u8],
        orientation: Orientation,
        region: &Crop,
        shrink_to: Option<(u32, u32)>,
        verify: Verify,
    ) -> RegionPixels {
        let probe = probe(jpeg, &Limits::default()).unwrap();
        let request = RegionRequest {
            region: *region,
            margin: 0,
            shrink_to,
            verify,
        };
        decode_region(jpeg, &probe, orientation, &request).unwrap()
    }

    /// Regions touching each edge, inside, one pixel wide and the whole
    /// image, in oriented pixels of a `width`x`height` image.
    fn regions(width: u32, height: u32) -> Vec<Crop> {
        vec![
            Crop::new(0, 0, width, height).unwrap(),
            Crop::new(0, 0, 37, 29).unwrap(),
            Crop::new(width - 50, height - 41, 50, 41).unwrap(),
            Crop::new(17, 33, 100, 7).unwrap(),
            Crop::new(16, 16, 32, 32).unwrap(),
            Crop::new(width / 2 - 1, 0, 3, height).unwrap(),
            Crop::new(0, height / 2 + 3, width, 1).unwrap(),
            Crop::new(width / 3, height / 3, 1, 1).unwrap(),
        ]
    }

    #[test]
    fn a_window_has_the_pixels_of_a_whole_decode_for_every_subsampling_and_orientation() {
        use turbojpeg::Subsamp::*;
        for (subsamp, progressive) in [
            (Sub2x2, false),
            (Sub2x2, true),
            (Sub2x1, false),
            (Sub1x2, false),
            (None, false),
            (Sub4x1, false),
            (Gray, false),
        ] {
            let jpeg = photo_jpeg(subsamp, progressive);
            for exif in 1..=8 {
                let orientation = Orientation::from_exif(exif);
                let (w, h) = orientation.oriented_size(613, 389);
                for region in regions(w, h) {
                    let what = format!(
                        "{subsamp:?} progressive {progressive}, orientation {exif}, region {region}"
                    );
                    let got =
                        region_decode(&jpeg, orientation, &region, Option::None, Verify::Region);
                    let area = got.area.covering();
                    assert_eq!(Area::from(&area), got.area, "{what}: a fractional area");
                    assert_eq!(
                        (area.width, area.height),
                        (region.width, region.height),
                        "{what}"
                    );
                    let got = got.bitmap.crop_to_rgb(&area, [0; 3]);
                    let want = whole_decode(&jpeg, orientation, &region);
                    assert!(got == want, "{what}: the pixels differ from a whole decode");
                }
            }
        }
    }
}
