//! One original in, every style out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::colour;
use crate::decode;
use crate::encode;
use crate::feed::{self, FeedChoice, FEED_STYLES};
use crate::format::{self, Format};
use crate::geometry::{Crop, Orientation};
use crate::pixels::{Bitmap, Channels};
use crate::region::{self, RegionRequest, Verify};
use crate::resize;
use crate::strip;
use crate::{RenderError, Settings, Style};

/// One rendered file and the facts a MediaAsset row records.
#[derive(Debug, Clone, Serialize)]
pub struct RenderedFile {
    pub style: Style,
    #[serde(skip)]
    pub bytes: Vec<u8>,
    pub mimetype: &'static str,
    #[serde(skip)]
    pub extension: &'static str,
    pub width: u32,
    pub height: u32,
    /// Size in bytes.
    #[serde(rename = "bytes")]
    pub size: u64,
    /// Lower-case hex SHA-256 of `bytes`: the ETag and the storage key.
    pub sha256: String,
    /// The style had to enlarge the source.
    pub upscaled: bool,
    /// The JPEG quality it was encoded at; `None` when it was not encoded
    /// by the engine (a byte-level strip) or is not a JPEG.
    pub quality: Option<u8>,
    /// Time this file took on its own (resize and encode, or strip).
    #[serde(skip)]
    pub elapsed: Duration,
}

impl RenderedFile {
    fn new(
        style: Style,
        bytes: Vec<u8>,
        format: Format,
        width: u32,
        height: u32,
        upscaled: bool,
    ) -> Self {
        RenderedFile {
            style,
            size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
            bytes,
            mimetype: format.mimetype(),
            extension: format.extension(),
            width,
            height,
            upscaled,
            quality: None,
            elapsed: Duration::ZERO,
        }
    }

    fn at_quality(mut self, quality: u8) -> Self {
        self.quality = Some(quality);
        self
    }

    fn took(mut self, elapsed: Duration) -> Self {
        self.elapsed = elapsed;
        self
    }

    /// `<style>.<ext>`, the name the CLI writes.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.style, self.extension)
    }
}

/// What the engine learnt about the original.
#[derive(Debug, Clone, Serialize)]
pub struct SourceFacts {
    pub format: Format,
    pub mimetype: &'static str,
    /// Oriented size, as a person sees the image.
    pub width: u32,
    pub height: u32,
    /// EXIF orientation that was applied (1 when none).
    pub orientation: u8,
    /// The crop every style was cut from.
    pub crop: Crop,
    pub had_icc_profile: bool,
}

/// Time spent per stage. Stages that run on several threads add up their
/// threads' time, so the sum can exceed `total` when rendering in parallel.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    pub decode: Duration,
    pub orient: Duration,
    pub colour: Duration,
    pub strip: Duration,
    pub resize: Duration,
    pub encode: Duration,
    pub total: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rendition {
    pub source: SourceFacts,
    /// In the order of [`Style::RENDERED`], without styles that do not apply.
    pub files: Vec<RenderedFile>,
    pub timings: Timings,
    /// Problems tolerated on the way (e.g. an unreadable ICC profile).
    pub warnings: Vec<String>,
    /// The file a feed should carry, and whether directories take it.
    pub feed: FeedChoice,
}

impl Rendition {
    pub fn file(&self, style: Style) -> Option<&RenderedFile> {
        self.files.iter().find(|f| f.style == style)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The oriented size and orientation of an original, from its header alone:
/// enough to validate a crop before paying for a decode.
pub fn inspect(original: &[u8], settings: &Settings) -> Result<SourceFacts, RenderError> {
    crate::guard::guarded(original, || inspect_unguarded(original, settings))
}

fn inspect_unguarded(original: &[u8], settings: &Settings) -> Result<SourceFacts, RenderError> {
    let probe = format::probe(original, &settings.limits)?;
    let orientation = decode::read_orientation(original, probe.format);
    let (width, height) = orientation.oriented_size(probe.width, probe.height);
    Ok(SourceFacts {
        format: probe.format,
        mimetype: probe.format.mimetype(),
        width,
        height,
        orientation: orientation as u8,
        crop: Crop::centred_square(width, height),
        had_icc_profile: false,
    })
}

#[derive(Default)]
struct StageClock {
    resize: AtomicU64,
    encode: AtomicU64,
}

impl StageClock {
    fn time<T>(counter: &AtomicU64, f: impl FnOnce() -> T) -> (T, Duration) {
        let start = Instant::now();
        let out = f();
        let elapsed = start.elapsed();
        counter.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        (out, elapsed)
    }
}

/// Renders every style that applies. Runs its parallel parts on the current
/// rayon pool: install a pool of one thread for a single-threaded render.
///
/// The original is taken as [`Bytes`] (a `Vec<u8>` converts without a
/// copy) so that `stripped-original`, when it is the original's bytes
/// without metadata, is cut from it without copying it first; and a
/// caller that hands over its only reference has it freed with the render.
pub fn render(
    original: impl Into<Bytes>,
    crop: Option<Crop>,
    settings: &Settings,
) -> Result<Rendition, RenderError> {
    let original = original.into();
    crate::guard::guarded(&original, || render_unguarded(&original, crop, settings))
}

fn render_unguarded(
    original: &Bytes,
    crop: Option<Crop>,
    settings: &Settings,
) -> Result<Rendition, RenderError> {
    let started = Instant::now();
    settings.validate()?;
    let mut timings = Timings::default();

    let probe = format::probe(original, &settings.limits)?;
    let orientation = decode::read_orientation(original, probe.format);
    let (width, height) = orientation.oriented_size(probe.width, probe.height);
    let crop = crop.unwrap_or_else(|| Crop::centred_square(width, height));
    crop.check_inside(width, height)?;

    // The crop's pixels (and those the resizes read past it) are all the
    // styles need, unless `stripped-original` is re-encoded from pixels.
    let whole = !strips_losslessly(probe.format, orientation);
    let needed = if whole {
        Crop::new(0, 0, width, height)?
    } else {
        crop
    };
    let request = RegionRequest {
        region: needed,
        margin: if whole {
            0
        } else {
            resize_reach(&crop, settings)
        },
        shrink_to: None,
        verify: Verify::WholeFile,
    };
    let t = Instant::now();
    let decoded = region::decode_region(original, &probe, orientation, &request)?;
    timings.orient = decoded.orient_time;
    timings.decode = t.elapsed().saturating_sub(decoded.orient_time);
    let mut warnings = decoded.warnings;
    let icc = decoded.icc;
    let had_icc_profile = decoded.had_icc_profile;
    let mut oriented = decoded.bitmap;
    let placed = decoded.area.covering();
    let local = Crop {
        x: crop.x - needed.x + placed.x,
        y: crop.y - needed.y + placed.y,
        ..crop
    };

    let strip = |pixels: Option<&Bitmap>| -> Result<(RenderedFile, Duration), RenderError> {
        let t = Instant::now();
        let file = stripped_original(
            original,
            probe.format,
            orientation,
            (pixels, (width, height)),
            icc.as_deref(),
            settings,
        )?;
        Ok((file.took(t.elapsed()), t.elapsed()))
    };
    // Re-encoded from the whole image while it is there; as the original's
    // bytes, once the pixels are freed, so its copies never add to their peak.
    let mut stripped = None;
    if whole {
        let (file, took) = strip(Some(&oriented))?;
        (stripped, timings.strip) = (Some(file), took);
    }

    let t = Instant::now();
    if let Some(profile) = icc
        .as_deref()
        .and_then(|icc| colour::conversion_source(icc, &mut warnings))
    {
        colour::convert_rect_to_srgb(&mut oriented, &local, &profile, &mut warnings);
    }
    // The crop is the whole decoded bitmap (a square image, by default):
    // flattened in its own buffer, not beside a copy.
    let all = Crop::new(0, 0, oriented.width, oriented.height)?;
    let (pixels, rect) = match oriented.channels {
        Channels::Rgb => (oriented, local),
        Channels::Rgba if local == all => (oriented.into_rgb(settings.background.0), local),
        Channels::Rgba | Channels::Gray => {
            let flat = oriented.crop_to_rgb(&local, settings.background.0);
            drop(oriented);
            (flat, Crop::new(0, 0, crop.width, crop.height)?)
        }
    };
    timings.colour = t.elapsed();

    let clock = StageClock::default();
    let rendered: Mutex<Vec<RenderedFile>> = Mutex::new(stripped.into_iter().collect());
    let first_error: Mutex<Option<RenderError>> = Mutex::new(None);
    let keep = |result: Result<RenderedFile, RenderError>| match result {
        Ok(file) => rendered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(file),
        Err(e) => {
            first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(e);
        }
    };

    // `regular` first: the crop's last use is then the largest square's
    // resize, which shrinks it in its own buffer (`resize::square_in_place`)
    // instead of beside a scratch image half its size.
    let (encoded, took) = StageClock::time(&clock.encode, || {
        encode::jpeg(
            &pixels,
            &rect,
            settings.jpeg_quality,
            None,
            Style::Regular.as_str(),
        )
    });
    keep(encoded.map(|bytes| {
        RenderedFile::new(
            Style::Regular,
            bytes,
            Format::Jpeg,
            rect.width,
            rect.height,
            false,
        )
        .at_quality(settings.jpeg_quality)
        .took(took)
    }));

    let square = rect.inner_square();
    let mut plan: Vec<Style> = Style::RENDERED
        .into_iter()
        .filter(|s| s.square_side().is_some() && s.applies_to_crop(crop.width, crop.height))
        .collect();
    plan.sort_by_key(|s| std::cmp::Reverse(s.square_side()));
    let (clock, keep) = (&clock, &keep);
    let mut crop_pixels = Some(pixels);
    rayon::scope(|scope| {
        // Squares are resized from the crop unless `resize_cascade` asks for
        // each to come from the next larger one (see the bench for both).
        let mut larger: Option<std::sync::Arc<Bitmap>> = None;
        // One resizer for every square: its intermediate is allocated once.
        let mut resizer = resize::Resizer::new();
        for (i, &style) in plan.iter().enumerate() {
            let side = style.square_side().unwrap_or_default();
            let from_larger = larger
                .as_ref()
                .filter(|previous| settings.resize_cascade && previous.width >= side);
            // The crop's last use frees it: a large crop gives its buffer
            // to the resize.
            let last_use =
                from_larger.is_none() && (settings.resize_cascade || i + 1 == plan.len());
            let used_up = || RenderError::Resize("the crop was already used up".into());
            let (resized, resize_took) = StageClock::time(&clock.resize, || match from_larger {
                Some(previous) => {
                    let whole = Crop {
                        x: 0,
                        y: 0,
                        width: previous.width,
                        height: previous.height,
                    };
                    resize::square_with(&mut resizer, previous, &whole, side)
                }
                None if last_use => match crop_pixels.take() {
                    Some(rgb) if resize::in_place_for(&square) => {
                        resize::square_in_place(rgb, &square, side)
                    }
                    Some(rgb) => resize::square_in_crop(rgb, &square, side),
                    None => Err(used_up()),
                },
                None => match &crop_pixels {
                    Some(rgb) => resize::square_with(&mut resizer, rgb, &square, side),
                    None => Err(used_up()),
                },
            });
            match resized.map(std::sync::Arc::new) {
                Ok(bitmap) => scope.spawn({
                    larger = Some(bitmap.clone());
                    move |_| {
                        let full = Crop {
                            x: 0,
                            y: 0,
                            width: side,
                            height: side,
                        };
                        // Only the feed candidates are held to the budget:
                        // the other squares are for players, not feeds.
                        let (encoded, took) = StageClock::time(&clock.encode, || {
                            if FEED_STYLES.contains(&style) {
                                encode::jpeg_within(
                                    &bitmap,
                                    &full,
                                    settings.jpeg_quality,
                                    settings.feed_min_quality,
                                    settings.feed_max_bytes,
                                    style.as_str(),
                                )
                            } else {
                                encode::jpeg(
                                    &bitmap,
                                    &full,
                                    settings.jpeg_quality,
                                    None,
                                    style.as_str(),
                                )
                                .map(|bytes| encode::Fitted {
                                    bytes,
                                    quality: settings.jpeg_quality,
                                })
                            }
                        });
                        keep(encoded.map(|fitted| {
                            RenderedFile::new(
                                style,
                                fitted.bytes,
                                Format::Jpeg,
                                side,
                                side,
                                square.width < side,
                            )
                            .at_quality(fitted.quality)
                            .took(resize_took + took)
                        }))
                    }
                }),
                // The render fails with the first error: no further square.
                Err(e) => {
                    keep(Err(e));
                    break;
                }
            }
        }
    });
    drop(crop_pixels);

    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let mut files = rendered.into_inner().unwrap_or_else(|e| e.into_inner());
    if !whole {
        let (file, took) = strip(None)?;
        timings.strip = took;
        files.push(file);
    }
    files.sort_by_key(|f| Style::RENDERED.iter().position(|s| *s == f.style));
    timings.resize = Duration::from_nanos(clock.resize.load(Ordering::Relaxed));
    timings.encode = Duration::from_nanos(clock.encode.load(Ordering::Relaxed));
    let feed = feed::choose(&files, settings.feed_max_bytes, settings.jpeg_quality);
    timings.total = started.elapsed();

    Ok(Rendition {
        source: SourceFacts {
            format: probe.format,
            mimetype: probe.format.mimetype(),
            width,
            height,
            orientation: orientation as u8,
            crop,
            had_icc_profile,
        },
        files,
        timings,
        warnings,
        feed,
    })
}

/// Whether `stripped-original` is the original's bytes without metadata,
/// so needs no pixels: when there is no orientation to bake in and the
/// format can be stripped byte by byte (see [`strip::strip`]).
fn strips_losslessly(format: Format, orientation: Orientation) -> bool {
    orientation == Orientation::Normal
        && matches!(format, Format::Jpeg | Format::Png | Format::Webp)
}

/// How far past the crop the squares' resizes read: Lanczos3's reach,
/// widened by the largest shrink made straight from the crop (only the
/// largest square's with the cascade, every square's without it).
fn resize_reach(crop: &Crop, settings: &Settings) -> u32 {
    let side = crop.width.min(crop.height);
    let from_crop = Style::RENDERED
        .into_iter()
        .filter(|s| s.applies_to_crop(crop.width, crop.height))
        .filter_map(|s| s.square_side());
    let target = if settings.resize_cascade {
        from_crop.max()
    } else {
        from_crop.min()
    };
    target.map_or(0, |to| resize::reach(side, to))
}

/// The original without metadata: byte-level when the pixels need no change,
/// else re-encoded from the oriented pixels in their own colour space, with
/// the ICC profile kept. `oriented` is the whole oriented image, which
/// [`strips_losslessly`] says when it is not needed; `size` is its size.
fn stripped_original(
    original: &Bytes,
    format: Format,
    orientation: Orientation,
    (oriented, size): (Option<&Bitmap>, (u32, u32)),
    icc: Option<&[u8]>,
    settings: &Settings,
) -> Result<RenderedFile, RenderError> {
    let style = Style::StrippedOriginal;
    let (w, h) = size;
    if strips_losslessly(format, orientation) {
        if let Some(bytes) = strip::strip(original, format)? {
            return Ok(RenderedFile::new(style, bytes, format, w, h, false));
        }
    }
    let Some(oriented) = oriented.filter(|o| (o.width, o.height) == size) else {
        return Err(RenderError::Internal {
            sha256: sha256_hex(original),
            message: format!("stripped-original of {format:?} needs the whole image decoded"),
        });
    };
    if format == Format::Jpeg {
        let whole = Crop::new(0, 0, w, h)?;
        let bytes = encode::jpeg(
            oriented,
            &whole,
            settings.stripped_quality,
            icc,
            style.as_str(),
        )?;
        return Ok(RenderedFile::new(style, bytes, Format::Jpeg, w, h, false)
            .at_quality(settings.stripped_quality));
    }
    let bytes = encode::png(oriented, icc, style.as_str())?;
    Ok(RenderedFile::new(style, bytes, Format::Png, w, h, false))
}
