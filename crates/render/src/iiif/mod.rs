//! IIIF Image API 3.0: parse a request, plan it against an image, render it.
//!
//! The IIIF image is the *oriented original* (what `stripped-original`
//! shows), never the crop: every coordinate here is in oriented pixels.
//!
//! Three steps, each pure:
//! 1. [`IiifRequest::parse`] ([`request`]'s grammar) turns the four path
//!    segments (`{region}/{size}/{rotation}/{quality}.{format}`) into
//!    types, or an [`IiifError`] of kind [`IiifErrorKind::Invalid`] (a
//!    syntax error) or [`IiifErrorKind::Unsupported`] (a feature this
//!    server does not implement);
//! 2. [`IiifRequest::resolve`] ([`plan`]) ties the request to an image size
//!    and the server's [`IiifLimits`], giving an [`IiifPlan`]: the crop
//!    rectangle, the scaled size, mirroring, rotation, quality and format
//!    (invalid when the region misses the image, a size is zero, upscales
//!    without `^`, or names a size over the limits; `max` and `!w,h` shrink
//!    to fit them);
//! 3. [`render_iiif`] decodes the part of the original the plan needs, at
//!    the smallest scale that serves it, and produces the bytes.
//!
//! No HTTP here: the API maps an error's kind to a status. What the
//! service says of itself (`info.json`) is `easel_app::iiif::info`'s.

mod pipeline;
pub mod plan;
pub mod request;

pub use pipeline::{render_iiif, IiifImage};
pub use plan::{IiifLimits, IiifPlan};
pub use request::{
    IiifError, IiifErrorKind, IiifFormat, IiifRequest, Quality, Region, Rotation, Size, SizeKind,
};

/// Changes whenever [`render_iiif`] would give other bytes for the same
/// original, plan and settings while [`crate::ENGINE_VERSION`] (which
/// dates the styles) stays: part of a cached render's identity.
///
/// 2: regions are decoded alone, scaled down in the DCT when the size is
/// smaller (full-scale tiles keep their bytes; shrunk ones change a little).
pub const IIIF_PIPELINE_VERSION: &str = "iiif/2";
