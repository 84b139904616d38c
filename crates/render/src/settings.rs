//! What the caller controls: limits, quality, background.

use serde::{Deserialize, Serialize};

use crate::RenderError;

/// Limits checked before any pixel buffer is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest accepted original, in bytes.
    pub max_bytes: u64,
    /// Largest accepted width x height of the original.
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Camera JPEGs are 3-15 MB; designers' PNGs can reach 60.
            max_bytes: 64 * 1024 * 1024,
            // 100 MP: a 12000x8000 scan. A 20000x20000 bomb is refused.
            max_pixels: 100_000_000,
        }
    }
}

/// An sRGB colour that transparency is flattened onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Background(pub [u8; 3]);

impl Default for Background {
    fn default() -> Self {
        Background([255, 255, 255])
    }
}

impl std::str::FromStr for Background {
    type Err = RenderError;
    /// Parses `#rrggbb` or `rrggbb`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_digits = s.strip_prefix('#').unwrap_or(s);
        let invalid = || RenderError::InvalidSettings(format!("background {s:?} is not #rrggbb"));
        if hex_digits.len() != 6 || !hex_digits.is_ascii() {
            return Err(invalid());
        }
        let mut rgb = [0u8; 3];
        for (i, slot) in rgb.iter_mut().enumerate() {
            *slot = u8::from_str_radix(&hex_digits[i * 2..i * 2 + 2], 16).map_err(|_| invalid())?;
        }
        Ok(Background(rgb))
    }
}

/// Render settings. Together with the engine's version they decide the
/// output bytes: the same original, crop and settings give the same files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub limits: Limits,
    /// JPEG quality of the derived styles, 1-100.
    pub jpeg_quality: u8,
    /// JPEG quality used when `stripped-original` must be re-encoded to bake
    /// in its orientation: higher, because it stands for the original.
    pub stripped_quality: u8,
    pub background: Background,
    /// Resize each square from the next larger square instead of from the
    /// crop. Measured on a 4032x3024 photo: resize time halves, and the
    /// squares differ from direct resizes by 43-45 dB PSNR (invisible).
    #[serde(default = "default_cascade")]
    pub resize_cascade: bool,
    /// Largest file a feed should carry, in bytes (0: no budget). The feed
    /// candidates (`square-3000`, `itunes`) over it are encoded again at a
    /// lower quality, down to `feed_min_quality`, until they fit.
    #[serde(default = "default_feed_max_bytes")]
    pub feed_max_bytes: u64,
    /// The lowest JPEG quality the budget may push a feed candidate to.
    #[serde(default = "default_feed_min_quality")]
    pub feed_min_quality: u8,
}

/// What Spotify, NPR One and most podcast hosts ask of a cover: 512 KiB.
pub const DEFAULT_FEED_MAX_BYTES: u64 = 512 * 1024;
/// Below 70, JPEG artefacts show on flat colours and lettering.
pub const DEFAULT_FEED_MIN_QUALITY: u8 = 70;

fn default_feed_max_bytes() -> u64 {
    DEFAULT_FEED_MAX_BYTES
}

fn default_feed_min_quality() -> u8 {
    DEFAULT_FEED_MIN_QUALITY
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            jpeg_quality: 88,
            stripped_quality: 95,
            background: Background::default(),
            resize_cascade: true,
            feed_max_bytes: DEFAULT_FEED_MAX_BYTES,
            feed_min_quality: DEFAULT_FEED_MIN_QUALITY,
        }
    }
}

fn default_cascade() -> bool {
    true
}

impl Settings {
    pub fn validate(&self) -> Result<(), RenderError> {
        for (name, q) in [
            ("jpeg_quality", self.jpeg_quality),
            ("stripped_quality", self.stripped_quality),
            ("feed_min_quality", self.feed_min_quality),
        ] {
            if !(1..=100).contains(&q) {
                return Err(RenderError::InvalidSettings(format!(
                    "{name} must be 1-100, got {q}"
                )));
            }
        }
        if self.limits.max_bytes == 0 || self.limits.max_pixels == 0 {
            return Err(RenderError::InvalidSettings(
                "limits must be greater than zero".into(),
            ));
        }
        Ok(())
    }

    /// A short fingerprint of everything that changes the output bytes, so
    /// stored files can be recognised as stale when settings change.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(crate::ENGINE_VERSION.as_bytes());
        hasher.update([self.jpeg_quality, self.stripped_quality]);
        hasher.update(self.background.0);
        hasher.update([self.resize_cascade as u8]);
        hasher.update(self.feed_max_bytes.to_le_bytes());
        hasher.update([self.feed_min_quality]);
        for style in crate::Style::RENDERED {
            hasher.update(style.as_str().as_bytes());
        }
        hex::encode(&hasher.finalize()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backgrounds_parse_hex() {
        assert_eq!(
            "#ff8000".parse::<Background>().unwrap(),
            Background([255, 128, 0])
        );
        assert_eq!(
            "000000".parse::<Background>().unwrap(),
            Background([0, 0, 0])
        );
        for bad in ["#fff", "gg0000", "#ff80001", "é12345"] {
            assert!(bad.parse::<Background>().is_err(), "{bad}");
        }
    }

    #[test]
    fn quality_out_of_range_is_refused() {
        let s = Settings {
            jpeg_quality: 0,
            ..Settings::default()
        };
        assert_eq!(s.validate().unwrap_err().code(), "invalid-settings");
        let s = Settings {
            stripped_quality: 101,
            ..Settings::default()
        };
        assert!(s.validate().is_err());
        Settings::default().validate().unwrap();
    }

    #[test]
    fn the_fingerprint_changes_with_the_quality() {
        let a = Settings::default();
        let b = Settings {
            jpeg_quality: 80,
            ..Settings::default()
        };
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), Settings::default().fingerprint());
    }

    #[test]
    fn the_fingerprint_changes_with_the_feed_budget_and_its_floor() {
        let a = Settings::default();
        let budget = Settings {
            feed_max_bytes: 0,
            ..Settings::default()
        };
        let floor = Settings {
            feed_min_quality: 60,
            ..Settings::default()
        };
        assert_ne!(a.fingerprint(), budget.fingerprint());
        assert_ne!(a.fingerprint(), floor.fingerprint());
        let bad = Settings {
            feed_min_quality: 0,
            ..Settings::default()
        };
        assert_eq!(bad.validate().unwrap_err().code(), "invalid-settings");
    }
}
