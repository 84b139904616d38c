//! Planning: a parsed request tied to an image's size and the server's
//! limits, giving the rectangle, the size and the steps [`super::render_iiif`]
//! takes.

use serde::Serialize;

use super::request::{
    IiifError, IiifFormat, IiifRequest, Quality, Region, Rotation, Size, SizeKind,
};
use crate::geometry::Crop;

/// The server's size limits, advertised in `info.json` and enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IiifLimits {
    pub max_width: u32,
    pub max_height: u32,
    /// Largest width x height of a response.
    pub max_area: u64,
}

impl Default for IiifLimits {
    fn default() -> Self {
        IiifLimits {
            max_width: 4000,
            max_height: 4000,
            // 16 MP: a 4000x4000 render, about 48 MB of RGB while it is made.
            max_area: 16_000_000,
        }
    }
}

impl IiifLimits {
    fn allows(&self, width: u64, height: u64) -> bool {
        width <= self.max_width as u64
            && height <= self.max_height as u64
            && width.saturating_mul(height) <= self.max_area
    }

    fn beyond(&self, width: u64, height: u64) -> IiifError {
        IiifError::BeyondLimits {
            width,
            height,
            max_width: self.max_width,
            max_height: self.max_height,
            max_area: self.max_area,
        }
    }

    /// The largest size with the aspect ratio of `width`x`height` inside the
    /// limits; `upscale` lets it exceed `width`x`height`.
    fn largest(&self, width: u32, height: u32, upscale: bool) -> (u64, u64) {
        let (w, h) = (width as f64, height as f64);
        let mut scale = (self.max_width as f64 / w)
            .min(self.max_height as f64 / h)
            .min((self.max_area as f64 / (w * h)).sqrt());
        if !upscale {
            scale = scale.min(1.0);
        }
        if scale == 1.0 {
            return (width as u64, height as u64);
        }
        let mut ow = ((w * scale).floor() as u64).min(self.max_width as u64);
        let mut oh = ((h * scale).floor() as u64).min(self.max_height as u64);
        // Float error can leave the product a pixel over the area.
        while ow.saturating_mul(oh) > self.max_area && ow > 1 && oh > 1 {
            if ow >= oh {
                ow -= 1;
            } else {
                oh -= 1;
            }
        }
        (ow.max(1), oh.max(1))
    }
}

/// A request resolved against an image: everything [`render_iiif`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IiifPlan {
    /// The region, in oriented pixels, already clipped to the image.
    pub region: Crop,
    /// The region's size after scaling, before rotation.
    pub width: u32,
    pub height: u32,
    pub mirror: bool,
    pub rotation: Rotation,
    pub quality: Quality,
    pub format: IiifFormat,
}

impl IiifRequest {
    /// Ties the request to an image of `width`x`height` oriented pixels.
    pub fn resolve(
        &self,
        width: u32,
        height: u32,
        limits: &IiifLimits,
    ) -> Result<IiifPlan, IiifError> {
        let region = resolve_region(&self.region, width, height)?;
        let (w, h) = resolve_size(&self.size, region.width, region.height, limits)?;
        Ok(IiifPlan {
            region,
            width: w,
            height: h,
            mirror: self.mirror,
            rotation: self.rotation,
            quality: self.quality,
            format: self.format,
        })
    }
}

impl IiifPlan {
    /// The size of the returned image, after rotation.
    pub fn output_size(&self) -> (u32, u32) {
        if self.rotation.swaps_sides() {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }

    /// The canonical form of the request (3.0 §4.8) for an image of
    /// `image_width`x`image_height`, for the `Link: rel="canonical"` header:
    /// `full` or `x,y,w,h`; `w,h`, or `^w,h` when that is larger than the
    /// region (a `w,h` larger than its region is a 400); the rotation; the
    /// quality as asked (only `default` is written `default`); the format.
    pub fn canonical(&self, image_width: u32, image_height: u32) -> String {
        self.path(image_width, image_height, self.quality)
    }

    /// [`IiifPlan::canonical`] with `color` written `default`, which gives
    /// the same pixels: two requests with the same normalised form give the
    /// same bytes, so it is the cache identity (with the image's hash and
    /// the settings).
    pub fn normalised(&self, image_width: u32, image_height: u32) -> String {
        self.path(image_width, image_height, self.quality.normalised())
    }

    fn path(&self, image_width: u32, image_height: u32, quality: Quality) -> String {
        let r = &self.region;
        let region = if (r.x, r.y, r.width, r.height) == (0, 0, image_width, image_height) {
            "full".to_string()
        } else {
            format!("{},{},{},{}", r.x, r.y, r.width, r.height)
        };
        let upscaled = self.width > r.width || self.height > r.height;
        format!(
            "{region}/{}{},{}/{}{}/{}.{}",
            if upscaled { "^" } else { "" },
            self.width,
            self.height,
            if self.mirror { "!" } else { "" },
            self.rotation.degrees(),
            quality.as_str(),
            self.format.extension()
        )
    }

    /// The side of the square style this plan reproduces, if any: the
    /// centred square of the whole image (the default crop), scaled to a
    /// square, unrotated, in colour, as JPEG. The caller still checks the
    /// image has no custom crop and that such a style was rendered.
    pub fn square_style_side(&self, image_width: u32, image_height: u32) -> Option<u32> {
        let square = Crop::centred_square(image_width, image_height);
        let plain = !self.mirror
            && self.rotation == Rotation::R0
            && self.quality.normalised() == Quality::Default
            && self.format == IiifFormat::Jpg;
        (plain && self.region == square && self.width == self.height).then_some(self.width)
    }
}

impl Size {
    /// The output size this parameter gives a `width`x`height` region
    /// under `limits` (what `info.json`'s `sizes` are made with).
    pub fn resolve(
        &self,
        width: u32,
        height: u32,
        limits: &IiifLimits,
    ) -> Result<(u32, u32), IiifError> {
        resolve_size(self, width, height, limits)
    }
}

/// The region in pixels, clipped to the image. A region that starts outside
/// the image, or has no area, is a 400.
fn resolve_region(region: &Region, width: u32, height: u32) -> Result<Crop, IiifError> {
    let (x, y, w, h) = match *region {
        Region::Full => (0, 0, width as u64, height as u64),
        Region::Square => {
            let c = Crop::centred_square(width, height);
            (c.x as u64, c.y as u64, c.width as u64, c.height as u64)
        }
        Region::Pixels {
            x,
            y,
            width: w,
            height: h,
        } => (x as u64, y as u64, w as u64, h as u64),
        Region::Percent {
            x,
            y,
            width: pw,
            height: ph,
        } => {
            let (x0, x1) = percent_span(x, pw, width);
            let (y0, y1) = percent_span(y, ph, height);
            (x0, y0, x1 - x0, y1 - y0)
        }
    };
    if w == 0 || h == 0 {
        return Err(IiifError::EmptyRegion {
            region: format!("{x},{y},{w},{h}"),
        });
    }
    if x >= width as u64 || y >= height as u64 {
        return Err(IiifError::RegionOutsideImage {
            x,
            y,
            width,
            height,
        });
    }
    let w = w.min(width as u64 - x) as u32;
    let h = h.min(height as u64 - y) as u32;
    Ok(Crop {
        x: x as u32,
        y: y as u32,
        width: w,
        height: h,
    })
}

/// The pixel span `[start, end)` of a percentage region along a side of
/// `side` pixels. The start rounds down and the end up, so every pixel the
/// region touches is in it and a region of any non-zero percentage keeps at
/// least one pixel: rounding both ends to nearest turned `pct:99.99,0,1,1`
/// of a 1000-pixel image into a region starting at 1000, outside the image,
/// and made `pct:0,0,0.04,0.04` empty. A zero percentage stays empty (400).
fn percent_span(start: f64, length: f64, side: u32) -> (u64, u64) {
    // Decimal percentages are not exact in binary: 60% of 400 can come out
    // as 240.00000000000003, which must not round up to 241.
    const SLACK: f64 = 1e-9;
    let at = |pct: f64| (pct * side as f64 / 100.0).min(1e12);
    let first = (at(start) + SLACK).floor() as u64;
    if length == 0.0 {
        return (first, first);
    }
    let end = ((at(start + length) - SLACK).ceil() as u64).max(first + 1);
    (first, end)
}

fn resolve_size(
    size: &Size,
    rw: u32,
    rh: u32,
    limits: &IiifLimits,
) -> Result<(u32, u32), IiifError> {
    let (rw64, rh64) = (rw as u64, rh as u64);
    let ratio = |num: u64, a: u64, b: u64| -> u64 {
        // round(num * a / b) in integers.
        ((num as u128 * a as u128 * 2 + b as u128) / (b as u128 * 2)).min(u64::MAX as u128) as u64
    };
    let (mut w, mut h) = match size.kind {
        SizeKind::Max => limits.largest(rw, rh, size.upscale),
        SizeKind::Width(w) => (w as u64, ratio(w as u64, rh64, rw64)),
        SizeKind::Height(h) => (ratio(h as u64, rw64, rh64), h as u64),
        SizeKind::Percent(pct) => {
            if pct > 100.0 && !size.upscale {
                let scaled = |side: f64| (side * pct / 100.0).round().min(1e12) as u64;
                return Err(IiifError::UpscaleWithoutCaret {
                    width: scaled(rw as f64),
                    height: scaled(rh as f64),
                    region_width: rw,
                    region_height: rh,
                });
            }
            let scaled = |side: u32| (side as f64 * pct / 100.0).round().min(1e12) as u64;
            (scaled(rw), scaled(rh))
        }
        SizeKind::Exact(w, h) => (w as u64, h as u64),
        SizeKind::Fit(bw, bh) => {
            // Limited by width when bw/rw <= bh/rh.
            if bw as u64 * rh64 <= bh as u64 * rw64 {
                (bw as u64, ratio(bw as u64, rh64, rw64))
            } else {
                (ratio(bh as u64, rw64, rh64), bh as u64)
            }
        }
    };
    if w == 0 || h == 0 {
        return Err(IiifError::ZeroSize {
            width: w,
            height: h,
        });
    }
    // Without ^ the result may not be larger than the region in either
    // direction (3.0 §4.2), `!w,h` included: the validator asks `!2000,3000`
    // of a 1000x1000 image to fail.
    if !size.upscale && (w > rw64 || h > rh64) {
        return Err(IiifError::UpscaleWithoutCaret {
            width: w,
            height: h,
            region_width: rw,
            region_height: rh,
        });
    }
    if !limits.allows(w, h) {
        // `!w,h` asks for the largest size that fits, and the limits are
        // part of what it must fit in (3.0 §4.2); every other form names
        // its size, and a size over the limits is the client's error.
        if !matches!(size.kind, SizeKind::Fit(..)) {
            return Err(limits.beyond(w, h));
        }
        // Same aspect ratio and a smaller scale than the box gave, so the
        // result also fits the box (and the region, without `^`).
        (w, h) = limits.largest(rw, rh, true);
    }
    Ok((w as u32, h as u32))
}
