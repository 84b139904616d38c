use std::fmt;

use crate::geometry::Edge;

/// Everything that can go wrong while turning an original into styles.
///
/// Every variant is the caller's input or settings, never a bug: the engine
/// returns one of these instead of panicking, and [`RenderError::code`] gives
/// the stable machine-readable code the API and the CLI report.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the file is empty")]
    Empty,
    #[error("not a supported image: expected JPEG, PNG, WebP, GIF or TIFF{}", detail_suffix(.0))]
    UnsupportedFormat(Option<String>),
    /// A format we read, using a feature we do not (the file is not damaged).
    #[error("this {format} file uses {feature}, which Easel does not read")]
    UnsupportedFeature {
        format: &'static str,
        feature: String,
    },
    #[error("the file is {bytes} bytes, over the limit of {limit} bytes")]
    TooManyBytes { bytes: u64, limit: u64 },
    #[error("the image is {width}x{height} = {pixels} pixels, over the limit of {limit} pixels")]
    TooManyPixels {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    #[error(
        "decoding this {width}x{height} image ({bytes_per_pixel} bytes per pixel) needs about \
         {} MiB, more than the whole render memory budget of {} MiB",
        mib(*.needed),
        mib(*.budget)
    )]
    TooMuchMemory {
        width: u32,
        height: u32,
        bytes_per_pixel: u32,
        needed: u64,
        budget: u64,
    },
    #[error("the image has a zero dimension ({width}x{height})")]
    ZeroDimension { width: u32, height: u32 },
    #[error("the {format} file is truncated or corrupt: {reason}")]
    Corrupt {
        format: &'static str,
        reason: String,
    },
    #[error("crop width and height must be greater than zero (got {width}x{height})")]
    EmptyCrop { width: u32, height: u32 },
    #[error("the crop's {edge} edge is at {at}, outside the {limit_name} {limit} of the {image_width}x{image_height} oriented image")]
    CropOutOfBounds {
        edge: Edge,
        at: u64,
        limit_name: &'static str,
        limit: u32,
        image_width: u32,
        image_height: u32,
    },
    #[error("invalid crop {input:?}: {reason}")]
    InvalidCrop { input: String, reason: String },
    #[error("unknown style {0:?}")]
    UnknownStyle(String),
    #[error("invalid settings: {0}")]
    InvalidSettings(String),
    #[error("resizing failed: {0}")]
    Resize(String),
    #[error("encoding {style} failed: {reason}")]
    Encode { style: String, reason: String },
    /// The engine panicked on this input: a bug of ours, caught at the
    /// engine's boundary. The input's sha256 lets us find it again.
    #[error("internal error while rendering the original with sha256 {sha256}: {message}")]
    Internal { sha256: String, message: String },
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

fn detail_suffix(detail: &Option<String>) -> String {
    match detail {
        Some(d) => format!(" ({d})"),
        None => String::new(),
    }
}

/// Coarse classes callers map to HTTP statuses and exit codes in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The bytes are not an image we read (HTTP 415).
    Unsupported,
    /// Over a configured limit (HTTP 413 for bytes, 422 for pixels).
    TooLarge,
    /// The image or the request is malformed (HTTP 422 / 400).
    Invalid,
    /// Our side failed on valid input (HTTP 500).
    Internal,
}

impl RenderError {
    /// A stable code for machines: it never changes once published.
    pub fn code(&self) -> &'static str {
        match self {
            RenderError::Empty => "empty-file",
            RenderError::UnsupportedFormat(_) | RenderError::UnsupportedFeature { .. } => {
                "unsupported-format"
            }
            RenderError::TooManyBytes { .. } => "too-many-bytes",
            RenderError::TooManyPixels { .. } => "too-many-pixels",
            RenderError::TooMuchMemory { .. } => "too-much-memory",
            RenderError::ZeroDimension { .. } => "zero-dimension",
            RenderError::Corrupt { .. } => "corrupt-image",
            RenderError::EmptyCrop { .. } => "crop-empty",
            RenderError::CropOutOfBounds { .. } => "crop-out-of-bounds",
            RenderError::InvalidCrop { .. } => "crop-invalid",
            RenderError::UnknownStyle(_) => "unknown-style",
            RenderError::InvalidSettings(_) => "invalid-settings",
            RenderError::Resize(_) => "resize-failed",
            RenderError::Encode { .. } => "encode-failed",
            RenderError::Internal { .. } => "internal",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            RenderError::Empty
            | RenderError::UnsupportedFormat(_)
            | RenderError::UnsupportedFeature { .. } => ErrorKind::Unsupported,
            RenderError::TooManyBytes { .. }
            | RenderError::TooManyPixels { .. }
            | RenderError::TooMuchMemory { .. } => ErrorKind::TooLarge,
            RenderError::Encode { .. } | RenderError::Resize(_) | RenderError::Internal { .. } => {
                ErrorKind::Internal
            }
            _ => ErrorKind::Invalid,
        }
    }

    pub(crate) fn corrupt(format: &'static str, reason: impl fmt::Display) -> Self {
        RenderError::Corrupt {
            format,
            reason: reason.to_string(),
        }
    }
}
