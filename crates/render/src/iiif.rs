//! IIIF Image API 3.0: parse a request, resolve it against an image, render it.
//!
//! The IIIF image is the *oriented original* (what `stripped-original`
//! shows), never the crop: every coordinate here is in oriented pixels.
//!
//! Three steps, each pure:
//! 1. [`IiifRequest::parse`] turns the four path segments
//!    (`{region}/{size}/{rotation}/{quality}.{format}`) into types, or a
//!    syntax error (400) or an unsupported feature (501);
//! 2. [`IiifRequest::resolve`] ties the request to an image size and the
//!    server's [`IiifLimits`], giving an [`IiifPlan`]: the crop rectangle,
//!    the scaled size, mirroring, rotation, quality and format (400 when the
//!    region misses the image, a size is zero, upscales without `^`, or
//!    names a size over the limits; `max` and `!w,h` shrink to fit them);
//! 3. [`render_iiif`] decodes the original once and produces the bytes.
//!
//! [`info_json`] builds the `info.json` document.

use std::fmt;
use std::io::Cursor;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::ImageEncoder;
use serde::Serialize;

use crate::colour;
use crate::decode;
use crate::format;
use crate::geometry::Crop;
use crate::pixels::Channels;
use crate::{RenderError, Settings};

/// The JSON-LD context of the Image API 3.0.
pub const IIIF_CONTEXT: &str = "http://iiif.io/api/image/3/context.json";
/// The `protocol` value of every IIIF Image API service.
pub const IIIF_PROTOCOL: &str = "http://iiif.io/api/image";
/// The content type of `info.json`.
pub const IIIF_INFO_CONTENT_TYPE: &str =
    "application/ld+json;profile=\"http://iiif.io/api/image/3/context.json\"";

/// Longest piece of user text an error message repeats.
const ECHO_LIMIT: usize = 40;

/// Why a IIIF request cannot be served. [`IiifError::status`] is the HTTP
/// status the Image API 3.0 asks for; [`IiifError::code`] a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IiifError {
    #[error("invalid region {0:?}: expected full, square, x,y,w,h or pct:x,y,w,h")]
    InvalidRegion(String),
    #[error("invalid size {0:?}: expected max, w,, ,h, pct:n, w,h or !w,h, optionally after ^")]
    InvalidSize(String),
    #[error("invalid rotation {0:?}: expected a number from 0 to 360, optionally after !")]
    InvalidRotation(String),
    #[error("invalid quality {0:?}: expected default, color, gray or bitonal")]
    InvalidQuality(String),
    #[error("invalid format {0:?}: expected jpg, png or webp")]
    InvalidFormat(String),
    /// A rotation the API allows but this server does not implement.
    #[error("rotation by {0} degrees is not supported: only multiples of 90")]
    UnsupportedRotation(String),
    /// A format the API names but this server does not produce.
    #[error("format {0} is not supported: use jpg, png or webp")]
    UnsupportedFormat(&'static str),
    #[error("the region {region} is zero-sized")]
    EmptyRegion { region: String },
    #[error("the region starts at ({x},{y}), outside the {width}x{height} image")]
    RegionOutsideImage {
        x: u64,
        y: u64,
        width: u32,
        height: u32,
    },
    #[error("the requested size is zero ({width}x{height})")]
    ZeroSize { width: u64, height: u64 },
    #[error("the requested size {width}x{height} is larger than the {region_width}x{region_height} region; prefix the size with ^ to upscale")]
    UpscaleWithoutCaret {
        width: u64,
        height: u64,
        region_width: u32,
        region_height: u32,
    },
    #[error("the requested size {width}x{height} is over the server's limits (maxWidth {max_width}, maxHeight {max_height}, maxArea {max_area})")]
    BeyondLimits {
        width: u64,
        height: u64,
        max_width: u32,
        max_height: u32,
        max_area: u64,
    },
}

impl IiifError {
    /// 501 for features the server does not implement, 400 for the rest.
    pub fn status(&self) -> u16 {
        match self {
            IiifError::UnsupportedRotation(_) | IiifError::UnsupportedFormat(_) => 501,
            _ => 400,
        }
    }

    /// A stable code for problem+json bodies.
    pub fn code(&self) -> &'static str {
        match self {
            IiifError::InvalidRegion(_) => "iiif-invalid-region",
            IiifError::InvalidSize(_) => "iiif-invalid-size",
            IiifError::InvalidRotation(_) => "iiif-invalid-rotation",
            IiifError::InvalidQuality(_) => "iiif-invalid-quality",
            IiifError::InvalidFormat(_) => "iiif-invalid-format",
            IiifError::UnsupportedRotation(_) => "iiif-unsupported-rotation",
            IiifError::UnsupportedFormat(_) => "iiif-unsupported-format",
            IiifError::EmptyRegion { .. } => "iiif-empty-region",
            IiifError::RegionOutsideImage { .. } => "iiif-region-outside-image",
            IiifError::ZeroSize { .. } => "iiif-zero-size",
            IiifError::UpscaleWithoutCaret { .. } => "iiif-upscale-without-caret",
            IiifError::BeyondLimits { .. } => "iiif-beyond-limits",
        }
    }
}

/// User text repeated in a message, cut short so an error cannot echo a
/// megabyte back.
fn echo(s: &str) -> String {
    if s.chars().count() <= ECHO_LIMIT {
        s.to_string()
    } else {
        let mut cut: String = s.chars().take(ECHO_LIMIT).collect();
        cut.push('…');
        cut
    }
}

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

/// The region parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Region {
    Full,
    /// The centred square of side min(width, height).
    Square,
    Pixels {
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    },
    Percent {
        x: f64,
        y: f64,
        width: f64,
        height: f64,
    },
}

/// The size parameter; `upscale` is the `^` prefix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size {
    pub upscale: bool,
    pub kind: SizeKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SizeKind {
    /// `max`.
    Max,
    /// `w,`.
    Width(u32),
    /// `,h`.
    Height(u32),
    /// `pct:n`.
    Percent(f64),
    /// `w,h`: exactly, distorting if need be.
    Exact(u32, u32),
    /// `!w,h`: the largest size that fits, keeping the aspect ratio.
    Fit(u32, u32),
}

/// Clockwise rotation, in the multiples of 90 this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rotation {
    R0,
    R90,
    R180,
    R270,
}

impl Rotation {
    pub fn degrees(self) -> u32 {
        match self {
            Rotation::R0 => 0,
            Rotation::R90 => 90,
            Rotation::R180 => 180,
            Rotation::R270 => 270,
        }
    }

    /// Whether the output's width and height trade places.
    pub fn swaps_sides(self) -> bool {
        matches!(self, Rotation::R90 | Rotation::R270)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    Default,
    Color,
    Gray,
    Bitonal,
}

impl Quality {
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Default => "default",
            Quality::Color => "color",
            Quality::Gray => "gray",
            Quality::Bitonal => "bitonal",
        }
    }

    /// `default` is `color` here: the two give the same pixels.
    fn normalised(self) -> Quality {
        match self {
            Quality::Color => Quality::Default,
            q => q,
        }
    }
}

/// The output formats this server produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IiifFormat {
    Jpg,
    Png,
    /// Lossless WebP (the `image` crate's encoder).
    Webp,
}

impl IiifFormat {
    pub fn extension(self) -> &'static str {
        match self {
            IiifFormat::Jpg => "jpg",
            IiifFormat::Png => "png",
            IiifFormat::Webp => "webp",
        }
    }

    pub fn mimetype(self) -> &'static str {
        match self {
            IiifFormat::Jpg => "image/jpeg",
            IiifFormat::Png => "image/png",
            IiifFormat::Webp => "image/webp",
        }
    }
}

/// A parsed `{region}/{size}/{rotation}/{quality}.{format}`, not yet tied to
/// an image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IiifRequest {
    pub region: Region,
    pub size: Size,
    pub mirror: bool,
    pub rotation: Rotation,
    pub quality: Quality,
    pub format: IiifFormat,
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
    /// Parses the four path segments after the identifier. The last one is
    /// `{quality}.{format}`.
    pub fn parse(
        region: &str,
        size: &str,
        rotation: &str,
        quality_format: &str,
    ) -> Result<Self, IiifError> {
        let region = parse_region(region)?;
        let size = parse_size(size)?;
        let (mirror, rotation) = parse_rotation(rotation)?;
        let (quality, format) = match quality_format.rsplit_once('.') {
            Some((q, f)) => (parse_quality(q)?, parse_format(f)?),
            None => return Err(IiifError::InvalidFormat(echo(quality_format))),
        };
        Ok(IiifRequest {
            region,
            size,
            mirror,
            rotation,
            quality,
            format,
        })
    }

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

fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A non-negative decimal: digits with at most one point (`10`, `10.5`,
/// `.5`), no sign or exponent.
fn parse_decimal(s: &str) -> Option<f64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0 || !digits(int) || !digits(frac) || s.len() > 32 {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn four<T>(s: &str, parse: impl Fn(&str) -> Option<T>) -> Option<[T; 4]> {
    let mut parts = s.split(',');
    let mut next = || parts.next().and_then(&parse);
    let out = [next()?, next()?, next()?, next()?];
    parts.next().is_none().then_some(out)
}

fn parse_region(s: &str) -> Result<Region, IiifError> {
    let invalid = || IiifError::InvalidRegion(echo(s));
    match s {
        "full" => return Ok(Region::Full),
        "square" => return Ok(Region::Square),
        _ => {}
    }
    if let Some(pct) = s.strip_prefix("pct:") {
        let [x, y, width, height] = four(pct, parse_decimal).ok_or_else(invalid)?;
        return Ok(Region::Percent {
            x,
            y,
            width,
            height,
        });
    }
    let [x, y, width, height] = four(s, parse_u32).ok_or_else(invalid)?;
    Ok(Region::Pixels {
        x,
        y,
        width,
        height,
    })
}

fn parse_size(s: &str) -> Result<Size, IiifError> {
    let invalid = || IiifError::InvalidSize(echo(s));
    let (upscale, rest) = match s.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let kind = if rest == "max" {
        SizeKind::Max
    } else if let Some(pct) = rest.strip_prefix("pct:") {
        SizeKind::Percent(parse_decimal(pct).ok_or_else(invalid)?)
    } else if let Some(fit) = rest.strip_prefix('!') {
        let (w, h) = fit.split_once(',').ok_or_else(invalid)?;
        SizeKind::Fit(
            parse_u32(w).ok_or_else(invalid)?,
            parse_u32(h).ok_or_else(invalid)?,
        )
    } else {
        match rest.split_once(',').ok_or_else(invalid)? {
            (w, "") => SizeKind::Width(parse_u32(w).ok_or_else(invalid)?),
            ("", h) => SizeKind::Height(parse_u32(h).ok_or_else(invalid)?),
            (w, h) => SizeKind::Exact(
                parse_u32(w).ok_or_else(invalid)?,
                parse_u32(h).ok_or_else(invalid)?,
            ),
        }
    };
    Ok(Size { upscale, kind })
}

fn parse_rotation(s: &str) -> Result<(bool, Rotation), IiifError> {
    let (mirror, number) = match s.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let degrees = parse_decimal(number)
        .filter(|d| *d <= 360.0)
        .ok_or_else(|| IiifError::InvalidRotation(echo(s)))?;
    let rotation = match degrees {
        0.0 | 360.0 => Rotation::R0,
        90.0 => Rotation::R90,
        180.0 => Rotation::R180,
        270.0 => Rotation::R270,
        _ => return Err(IiifError::UnsupportedRotation(echo(number))),
    };
    Ok((mirror, rotation))
}

fn parse_quality(s: &str) -> Result<Quality, IiifError> {
    Ok(match s {
        "default" => Quality::Default,
        "color" => Quality::Color,
        "gray" => Quality::Gray,
        "bitonal" => Quality::Bitonal,
        _ => return Err(IiifError::InvalidQuality(echo(s))),
    })
}

fn parse_format(s: &str) -> Result<IiifFormat, IiifError> {
    Ok(match s {
        "jpg" => IiifFormat::Jpg,
        "png" => IiifFormat::Png,
        "webp" => IiifFormat::Webp,
        // Formats the API names that this server does not produce: 501.
        "tif" => return Err(IiifError::UnsupportedFormat("tif")),
        "gif" => return Err(IiifError::UnsupportedFormat("gif")),
        "jp2" => return Err(IiifError::UnsupportedFormat("jp2")),
        "pdf" => return Err(IiifError::UnsupportedFormat("pdf")),
        _ => return Err(IiifError::InvalidFormat(echo(s))),
    })
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

/// One `sizes` entry of `info.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IiifSize {
    pub width: u32,
    pub height: u32,
}

/// One `tiles` entry of `info.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IiifTiles {
    pub width: u32,
    pub scale_factors: Vec<u32>,
}

/// The `info.json` document (Image API 3.0 §5).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    #[serde(rename = "@context")]
    pub context: &'static str,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub protocol: &'static str,
    pub profile: &'static str,
    pub width: u32,
    pub height: u32,
    pub max_width: u32,
    pub max_height: u32,
    pub max_area: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sizes: Vec<IiifSize>,
    pub tiles: Vec<IiifTiles>,
    pub extra_formats: Vec<&'static str>,
    pub extra_qualities: Vec<&'static str>,
    pub extra_features: Vec<&'static str>,
}

/// Tile side advertised in `info.json`.
pub const TILE_SIZE: u32 = 512;

/// The full image scaled to fit each `side`x`side` box (the rendered square
/// styles' sides), smallest first, without upscaling and without duplicates.
/// For a square image these are exactly the square styles.
pub fn sizes_for(width: u32, height: u32, sides: &[u32], limits: &IiifLimits) -> Vec<IiifSize> {
    let mut sizes: Vec<IiifSize> = sides
        .iter()
        .filter_map(|&side| {
            let fit = Size {
                upscale: false,
                kind: SizeKind::Fit(side, side),
            };
            resolve_size(&fit, width, height, limits).ok()
        })
        .map(|(width, height)| IiifSize { width, height })
        .collect();
    sizes.sort_by_key(|s| (s.width, s.height));
    sizes.dedup();
    sizes
}

/// `info.json` for the image at `id_url` (the request URL without
/// `/info.json`), `width`x`height` oriented pixels.
pub fn info_json(
    id_url: &str,
    width: u32,
    height: u32,
    sizes: Vec<IiifSize>,
    limits: &IiifLimits,
) -> ImageInfo {
    // Enough halvings for the smallest level to fit in one tile.
    let mut scale_factors = vec![1];
    let mut factor = 1u32;
    while width.max(height).div_ceil(factor) > TILE_SIZE && factor < 1 << 12 {
        factor *= 2;
        scale_factors.push(factor);
    }
    ImageInfo {
        context: IIIF_CONTEXT,
        id: id_url.to_string(),
        kind: "ImageService3",
        protocol: IIIF_PROTOCOL,
        profile: "level2",
        width,
        height,
        max_width: limits.max_width,
        max_height: limits.max_height,
        max_area: limits.max_area,
        sizes,
        tiles: vec![IiifTiles {
            width: TILE_SIZE,
            scale_factors,
        }],
        extra_formats: vec!["webp"],
        extra_qualities: vec!["color", "gray", "bitonal"],
        extra_features: vec![
            "canonicalLinkHeader",
            "mirroring",
            "profileLinkHeader",
            "sizeUpscaling",
        ],
    }
}

/// An encoded IIIF response.
#[derive(Debug, Clone)]
pub struct IiifImage {
    pub bytes: Vec<u8>,
    pub mimetype: &'static str,
    pub width: u32,
    pub height: u32,
}

impl fmt::Display for IiifFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// A tight 8-bit buffer of 1 (gray) or 3 (RGB) channels.
struct Pixels {
    width: u32,
    height: u32,
    channels: usize,
    data: Vec<u8>,
}

/// Renders a plan from the original's bytes: decode once, orient, crop,
/// convert to sRGB, flatten alpha, resize (Lanczos3), apply the quality,
/// mirror and rotate, encode. The plan must come from
/// [`IiifRequest::resolve`] against this original's oriented size.
pub fn render_iiif(
    original: &[u8],
    plan: &IiifPlan,
    settings: &Settings,
) -> Result<IiifImage, RenderError> {
    crate::guard::guarded(original, || render_iiif_unguarded(original, plan, settings))
}

fn render_iiif_unguarded(
    original: &[u8],
    plan: &IiifPlan,
    settings: &Settings,
) -> Result<IiifImage, RenderError> {
    settings.validate()?;
    let probe = format::probe(original, &settings.limits)?;
    let orientation = decode::read_orientation(original, probe.format);
    let (width, height) = orientation.oriented_size(probe.width, probe.height);
    plan.region.check_inside(width, height)?;

    let decoded = decode::decode(original, &probe)?;
    let mut warnings = decoded.warnings;
    let mut oriented = decoded.bitmap.oriented(orientation);
    if let Some(profile) = decoded
        .icc
        .as_deref()
        .and_then(|icc| colour::conversion_source(icc, &mut warnings))
    {
        colour::convert_rect_to_srgb(&mut oriented, &plan.region, &profile, &mut warnings);
    }
    let cropped = oriented.crop_to_rgb(&plan.region, settings.background.0);
    drop(oriented);
    debug_assert_eq!(cropped.channels, Channels::Rgb);
    let rgb = Pixels {
        width: cropped.width,
        height: cropped.height,
        channels: 3,
        data: cropped.data,
    };
    let resized = resize(rgb, plan.width, plan.height)?;
    let toned = apply_quality(resized, plan.quality);
    let turned = mirror_and_rotate(toned, plan.mirror, plan.rotation);
    let bytes = encode(&turned, plan.format, settings.jpeg_quality)?;
    Ok(IiifImage {
        bytes,
        mimetype: plan.format.mimetype(),
        width: turned.width,
        height: turned.height,
    })
}

fn resize(source: Pixels, width: u32, height: u32) -> Result<Pixels, RenderError> {
    if (source.width, source.height) == (width, height) {
        return Ok(source);
    }
    let fail = |e: &dyn fmt::Display| RenderError::Resize(e.to_string());
    let src = ImageRef::new(source.width, source.height, &source.data, PixelType::U8x3)
        .map_err(|e| fail(&e))?;
    let mut dst = Image::new(width, height, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| fail(&e))?;
    Ok(Pixels {
        width,
        height,
        channels: 3,
        data: dst.into_vec(),
    })
}

/// Rec. 709 luma of an sRGB pixel, in 8-bit fixed point (weights sum to 256).
fn luma(px: &[u8]) -> u8 {
    ((54 * px[0] as u32 + 183 * px[1] as u32 + 19 * px[2] as u32 + 128) >> 8) as u8
}

fn apply_quality(rgb: Pixels, quality: Quality) -> Pixels {
    let threshold = match quality {
        Quality::Default | Quality::Color => return rgb,
        Quality::Gray => None,
        Quality::Bitonal => Some(128u8),
    };
    let data = rgb
        .data
        .chunks_exact(3)
        .map(|px| {
            let y = luma(px);
            match threshold {
                None => y,
                Some(t) if y >= t => 255,
                Some(_) => 0,
            }
        })
        .collect();
    Pixels {
        width: rgb.width,
        height: rgb.height,
        channels: 1,
        data,
    }
}

/// Mirrors (left-right) first, then rotates clockwise, as the API orders them.
fn mirror_and_rotate(source: Pixels, mirror: bool, rotation: Rotation) -> Pixels {
    if !mirror && rotation == Rotation::R0 {
        return source;
    }
    let (w, h, n) = (
        source.width as usize,
        source.height as usize,
        source.channels,
    );
    let (ow, oh) = if rotation.swaps_sides() {
        (h, w)
    } else {
        (w, h)
    };
    let mut out = vec![0u8; source.data.len()];
    for oy in 0..oh {
        for ox in 0..ow {
            // Where this output pixel sits in the mirrored image...
            let (mx, my) = match rotation {
                Rotation::R0 => (ox, oy),
                Rotation::R90 => (oy, h - 1 - ox),
                Rotation::R180 => (w - 1 - ox, h - 1 - oy),
                Rotation::R270 => (w - 1 - oy, ox),
            };
            // ...and in the source.
            let sx = if mirror { w - 1 - mx } else { mx };
            let s = (my * w + sx) * n;
            let d = (oy * ow + ox) * n;
            out[d..d + n].copy_from_slice(&source.data[s..s + n]);
        }
    }
    Pixels {
        width: ow as u32,
        height: oh as u32,
        channels: n,
        data: out,
    }
}

fn encode(pixels: &Pixels, format: IiifFormat, jpeg_quality: u8) -> Result<Vec<u8>, RenderError> {
    let fail = |e: &dyn fmt::Display| RenderError::Encode {
        style: format!("iiif.{format}"),
        reason: e.to_string(),
    };
    let gray = pixels.channels == 1;
    match format {
        IiifFormat::Jpg => {
            let (pixel_format, subsamp) = if gray {
                (turbojpeg::PixelFormat::GRAY, turbojpeg::Subsamp::Gray)
            } else {
                (turbojpeg::PixelFormat::RGB, turbojpeg::Subsamp::Sub2x2)
            };
            let image = turbojpeg::Image {
                pixels: pixels.data.as_slice(),
                width: pixels.width as usize,
                pitch: pixels.width as usize * pixels.channels,
                height: pixels.height as usize,
                format: pixel_format,
            };
            let mut compressor = turbojpeg::Compressor::new().map_err(|e| fail(&e))?;
            compressor
                .set_quality(jpeg_quality as i32)
                .map_err(|e| fail(&e))?;
            compressor.set_subsamp(subsamp).map_err(|e| fail(&e))?;
            compressor.compress_to_vec(image).map_err(|e| fail(&e))
        }
        IiifFormat::Png | IiifFormat::Webp => {
            let colour = if gray {
                image::ExtendedColorType::L8
            } else {
                image::ExtendedColorType::Rgb8
            };
            let mut out = Vec::new();
            let written =
                if format == IiifFormat::Png {
                    image::codecs::png::PngEncoder::new(Cursor::new(&mut out)).write_image(
                        &pixels.data,
                        pixels.width,
                        pixels.height,
                        colour,
                    )
                } else {
                    image::codecs::webp::WebPEncoder::new_lossless(Cursor::new(&mut out))
                        .write_image(&pixels.data, pixels.width, pixels.height, colour)
                };
            written.map_err(|e| fail(&e))?;
            Ok(out)
        }
    }
}
