//! The engine settings as flags and `EASEL_*` variables, shared by every
//! command that renders, so one environment configures them all.

use easel_render::{Background, Limits, Settings};

#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// JPEG quality of the derived styles (1-100).
    #[arg(long, env = "EASEL_JPEG_QUALITY", default_value_t = Settings::default().jpeg_quality)]
    pub quality: u8,
    /// Colour transparency is flattened onto, as #rrggbb.
    #[arg(long, env = "EASEL_BACKGROUND", default_value = "#ffffff")]
    pub background: Background,
    /// Largest accepted original, in bytes (413 above).
    #[arg(long, env = "EASEL_MAX_BYTES", default_value_t = Limits::default().max_bytes)]
    pub max_bytes: u64,
    /// Largest accepted width x height of an original (422 above).
    #[arg(long, env = "EASEL_MAX_PIXELS", default_value_t = Limits::default().max_pixels)]
    pub max_pixels: u64,
    /// Resize every square straight from the crop instead of from the next
    /// larger square (slower, for comparison; changes output bytes).
    #[arg(long, env = "EASEL_NO_CASCADE")]
    pub no_cascade: bool,
    /// Feed byte budget: square-3000 and itunes over it are encoded again
    /// (optimised tables, then lower quality down to --feed-min-quality)
    /// to fit; the feed file is the largest that fits. 0: no budget.
    /// A bucket may set its own (`easel buckets set-feed-budget`).
    #[arg(long, env = "EASEL_FEED_MAX_BYTES", default_value_t = Settings::default().feed_max_bytes)]
    pub feed_max_bytes: u64,
    /// The lowest JPEG quality the feed budget may lower a file to (1-100).
    #[arg(long, env = "EASEL_FEED_MIN_QUALITY", default_value_t = Settings::default().feed_min_quality)]
    pub feed_min_quality: u8,
}

impl EngineArgs {
    /// The validated settings, or a message naming the bad value.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let settings = Settings {
            limits: Limits {
                max_bytes: self.max_bytes,
                max_pixels: self.max_pixels,
            },
            jpeg_quality: self.quality,
            background: self.background,
            resize_cascade: !self.no_cascade,
            feed_max_bytes: self.feed_max_bytes,
            feed_min_quality: self.feed_min_quality,
            ..Settings::default()
        };
        settings.validate()?;
        Ok(settings)
    }
}
