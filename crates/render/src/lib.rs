//! Easel's render engine: original bytes and settings in, every style out.
//!
//! This crate is pure: no files, network, database or async runtime. The
//! worker, the CLI, the benchmarks and IIIF all call [`render`]. Every entry
//! point ([`probe`], [`inspect`], [`render`], [`iiif::render_iiif`]) turns a
//! panic into [`RenderError::Internal`], so no input takes a caller down.
//!
//! The pipeline, in order:
//! 1. [`probe`]: sniff the format from magic bytes, read the header, refuse
//!    over-limit inputs before any pixel buffer exists;
//! 2. read the EXIF orientation and validate the crop against the oriented size;
//! 3. decode once (libjpeg-turbo for JPEG, libtiff for TIFF, `image` for
//!    the rest) to 8-bit;
//! 4. orient; keep a metadata-free `stripped-original`;
//! 5. convert the crop to sRGB (ICC via moxcms, CMYK), flatten alpha;
//! 6. encode `regular`, then resize each square (fast_image_resize, Lanczos3;
//!    the largest in the crop's own buffer, its last use) and encode it, in
//!    parallel on the current rayon pool; the feed candidates (`square-3000`,
//!    `itunes`) are held to the feed byte budget;
//! 7. choose the feed file and check it from its own header ([`feed`]).

mod colour;
mod decode;
mod encode;
mod error;
pub mod feed;
mod format;
mod geometry;
mod guard;
pub mod iiif;
mod memory;
mod pixels;
mod png16;
mod region;
mod render;
mod resize;
mod settings;
mod strip;
mod style;
mod tiff;
mod turbo;

pub use bytes::Bytes;
pub use encode::{describe, ColourModel, FileFacts};
pub use error::{ErrorKind, RenderError};
pub use feed::FeedChoice;
pub use format::{probe, Format, Probe};
pub use geometry::{Crop, Edge, Orientation};
pub use memory::{decode_cost, DecodeCost};
pub use render::{inspect, render, sha256_hex, RenderedFile, Rendition, SourceFacts, Timings};
pub use settings::{
    Background, Limits, Settings, DEFAULT_FEED_MAX_BYTES, DEFAULT_FEED_MIN_QUALITY,
};
pub use strip::metadata_found;
pub use style::Style;

/// Bumped whenever a change to the engine changes output bytes, so stored
/// renditions can be recognised as stale.
///
/// 2: TIFF decoded by libtiff (alpha, FillOrder, 16/32-bit and float
/// samples read differently), WebP EXIF orientation applied; feed candidates
/// (`square-3000`, `itunes`) over the feed byte budget encoded again. Both
/// changes came in the same release, so one bump covers them.
pub const ENGINE_VERSION: &str = "easel-render/2";
