//! The style table of DESIGN.md, as types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::RenderError;

/// A named file Easel keeps for every image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Style {
    /// The uploaded bytes, untouched. Stored by the service, never rendered.
    Original,
    StrippedOriginal,
    Regular,
    Thumb,
    Square400,
    Square640,
    Square888,
    Itunes,
    Square3000,
}

impl Style {
    /// Every style the engine renders, largest square last.
    pub const RENDERED: [Style; 8] = [
        Style::StrippedOriginal,
        Style::Regular,
        Style::Thumb,
        Style::Square400,
        Style::Square640,
        Style::Square888,
        Style::Itunes,
        Style::Square3000,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Style::Original => "original",
            Style::StrippedOriginal => "stripped-original",
            Style::Regular => "regular",
            Style::Thumb => "thumb",
            Style::Square400 => "square-400",
            Style::Square640 => "square-640",
            Style::Square888 => "square-888",
            Style::Itunes => "itunes",
            Style::Square3000 => "square-3000",
        }
    }

    /// The side of a square style, `None` for the others.
    pub fn square_side(self) -> Option<u32> {
        match self {
            Style::Thumb => Some(100),
            Style::Square400 => Some(400),
            Style::Square640 => Some(640),
            Style::Square888 => Some(888),
            Style::Itunes => Some(1400),
            Style::Square3000 => Some(3000),
            _ => None,
        }
    }

    /// The smallest crop side (on both sides) for which the style exists;
    /// `None` when it always does. Only `square-3000` is conditional: it is
    /// never an enlargement.
    pub fn min_crop_side(self) -> Option<u32> {
        match self {
            Style::Square3000 => Some(3000),
            _ => None,
        }
    }

    /// Whether the style exists for an image whose crop is `crop_w`x`crop_h`.
    pub fn applies_to_crop(self, crop_w: u32, crop_h: u32) -> bool {
        self.min_crop_side()
            .is_none_or(|side| crop_w >= side && crop_h >= side)
    }
}

impl fmt::Display for Style {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Style {
    type Err = RenderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Style::Original]
            .into_iter()
            .chain(Style::RENDERED)
            .find(|style| style.as_str() == s)
            .ok_or_else(|| RenderError::UnknownStyle(s.to_string()))
    }
}

impl TryFrom<String> for Style {
    type Error = RenderError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Style> for String {
    fn from(style: Style) -> Self {
        style.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_style_round_trips_through_its_name() {
        for style in Style::RENDERED.into_iter().chain([Style::Original]) {
            assert_eq!(style.as_str().parse::<Style>().unwrap(), style);
        }
        assert_eq!(
            "square-401".parse::<Style>().unwrap_err().code(),
            "unknown-style"
        );
        assert!(
            "Thumb".parse::<Style>().is_err(),
            "names are case-sensitive"
        );
    }

    #[test]
    fn square_3000_needs_a_crop_of_3000_on_both_sides() {
        assert!(Style::Square3000.applies_to_crop(3000, 3000));
        assert!(!Style::Square3000.applies_to_crop(2999, 4000));
        assert!(!Style::Square3000.applies_to_crop(4000, 2999));
        assert!(Style::Itunes.applies_to_crop(10, 10));
    }
}
