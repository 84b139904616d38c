//! The request grammar: `{region}/{size}/{rotation}/{quality}.{format}`
//! parsed into types, or refused with an [`IiifError`].

use std::fmt;

/// Longest piece of user text an error message repeats.
const ECHO_LIMIT: usize = 40;

/// Why a IIIF request cannot be served: [`IiifError::kind`] says how the
/// Image API 3.0 classes it, [`IiifError::code`] is a stable code.
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

/// How a IIIF request was refused, in the Image API's terms; the API maps
/// each kind to its status, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IiifErrorKind {
    /// Malformed, or naming pixels the image or the server's limits do not
    /// have (the API's 400).
    Invalid,
    /// A feature the API defines that this server does not implement (the
    /// API's 501).
    Unsupported,
}

impl IiifError {
    pub fn kind(&self) -> IiifErrorKind {
        match self {
            IiifError::UnsupportedRotation(_) | IiifError::UnsupportedFormat(_) => {
                IiifErrorKind::Unsupported
            }
            _ => IiifErrorKind::Invalid,
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
    pub(super) fn normalised(self) -> Quality {
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

impl fmt::Display for IiifFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}
