//! The feed file: which rendered square a podcast feed should carry, and
//! whether directories would take it.
//!
//! Apple Podcasts wants a square JPEG or PNG of 1400 to 3000 px, RGB,
//! without transparency; Spotify, NPR One and most hosts also want at most
//! 512 KiB (the budget). The rule, in order: `square-3000` when it fits the
//! budget, else `itunes` when that fits, else the smaller of the two, with
//! the reason. The checks read the chosen file's own header.

use serde::Serialize;

use crate::encode::{describe, ColourModel};
use crate::{RenderedFile, Style};

/// The feed candidates, preferred first.
pub const FEED_STYLES: [Style; 2] = [Style::Square3000, Style::Itunes];

/// Which file is the feed file, and what a directory would say of it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct FeedChoice {
    /// `None` when no candidate was rendered.
    pub style: Option<Style>,
    /// The chosen file's longer side, for the visibility check made when
    /// the file is served (a bucket may make large styles private).
    pub side: Option<u32>,
    pub ok: bool,
    /// Why a directory would refuse it.
    pub reasons: Vec<String>,
    /// Accepted, but worth knowing.
    pub warnings: Vec<String>,
}

fn kb(bytes: u64) -> u64 {
    bytes.div_ceil(1024)
}

/// Chooses among `files` (a rendition's) under `budget` bytes (0: none),
/// and checks the chosen one. `quality` is the quality asked for, to say
/// when the budget lowered it.
pub fn choose(files: &[RenderedFile], budget: u64, quality: u8) -> FeedChoice {
    let find = |style: Style| files.iter().find(|f| f.style == style);
    let fits = |f: &RenderedFile| budget == 0 || f.size <= budget;
    let (large, itunes) = (find(Style::Square3000), find(Style::Itunes));
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();
    let chosen = match (large, itunes) {
        (Some(large), _) if fits(large) => large,
        (large, Some(itunes)) if fits(itunes) => {
            if let Some(large) = large {
                warnings.push(format!(
                    "square-3000 is {} KB, over the feed budget of {} KB: the feed file is itunes",
                    kb(large.size),
                    kb(budget)
                ));
            }
            itunes
        }
        (None, None) => {
            return FeedChoice {
                reasons: vec!["no feed style (square-3000 or itunes) was rendered".into()],
                ..FeedChoice::default()
            }
        }
        (large, itunes) => {
            let smaller = [large, itunes]
                .into_iter()
                .flatten()
                .min_by_key(|f| f.size)
                .expect("one of the two exists");
            reasons.push(format!(
                "{} is {} KB, over the feed budget of {} KB, even at quality {}; \
                 a simpler or smaller image would fit",
                smaller.style,
                kb(smaller.size),
                kb(budget),
                smaller.quality.unwrap_or(quality)
            ));
            smaller
        }
    };
    if let Some(q) = chosen.quality.filter(|q| *q < quality) {
        warnings.push(format!(
            "{} was encoded at quality {q} instead of {quality} to fit the feed budget",
            chosen.style
        ));
    }
    match describe(&chosen.bytes) {
        None => reasons.push(format!("{} is not a JPEG or PNG", chosen.style)),
        Some(facts) => {
            let (w, h) = (facts.width, facts.height);
            if w != h {
                reasons.push(format!("not square: {w}x{h}"));
            }
            if w.min(h) < 1400 {
                reasons.push(format!("smaller than 1400x1400: {w}x{h}"));
            }
            if w.max(h) > 3000 {
                reasons.push(format!("larger than 3000x3000: {w}x{h}"));
            }
            if facts.colour != ColourModel::Rgb {
                reasons.push(format!(
                    "not RGB: the file is {}",
                    match facts.colour {
                        ColourModel::Gray => "greyscale",
                        ColourModel::Cmyk => "CMYK",
                        _ => "in another colour model",
                    }
                ));
            }
            if facts.alpha {
                reasons.push("has an alpha channel".into());
            }
        }
    }
    if chosen.upscaled {
        reasons.push(format!(
            "{} is enlarged from a smaller crop; upload at least 1400x1400",
            chosen.style
        ));
    }
    FeedChoice {
        style: Some(chosen.style),
        side: Some(chosen.width.max(chosen.height)),
        ok: reasons.is_empty(),
        reasons,
        warnings,
    }
}
