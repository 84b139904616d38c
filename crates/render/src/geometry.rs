//! Crop rectangles and EXIF orientation, in the oriented image's coordinates.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::RenderError;

/// A rectangle in oriented pixels, as a person sees the image.
///
/// A `Crop` only says the rectangle is non-empty; [`Crop::check_inside`]
/// ties it to an image, because the same crop can fit one image and not
/// another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawCrop")]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

#[derive(Deserialize)]
struct RawCrop {
    x: u32,
    y: u32,
    width: u32,
    height: u32,
}

impl TryFrom<RawCrop> for Crop {
    type Error = RenderError;
    fn try_from(raw: RawCrop) -> Result<Self, Self::Error> {
        Crop::new(raw.x, raw.y, raw.width, raw.height)
    }
}

/// The side of a crop that falls outside the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Left,
    Top,
    Right,
    Bottom,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Edge::Left => "left",
            Edge::Top => "top",
            Edge::Right => "right",
            Edge::Bottom => "bottom",
        })
    }
}

impl Crop {
    pub fn new(x: u32, y: u32, width: u32, height: u32) -> Result<Self, RenderError> {
        if width == 0 || height == 0 {
            return Err(RenderError::EmptyCrop { width, height });
        }
        Ok(Crop {
            x,
            y,
            width,
            height,
        })
    }

    /// The centred square of side min(w, h): the default crop.
    pub fn centred_square(width: u32, height: u32) -> Self {
        let side = width.min(height);
        Crop {
            x: (width - side) / 2,
            y: (height - side) / 2,
            width: side,
            height: side,
        }
    }

    /// The centred square of this crop, which every square style uses.
    pub fn inner_square(&self) -> Self {
        let side = self.width.min(self.height);
        Crop {
            x: self.x + (self.width - side) / 2,
            y: self.y + (self.height - side) / 2,
            width: side,
            height: side,
        }
    }

    /// Checks the crop lies inside an image of the given oriented size,
    /// naming the first edge that does not.
    pub fn check_inside(&self, image_width: u32, image_height: u32) -> Result<(), RenderError> {
        let out = |edge, at, limit_name, limit| RenderError::CropOutOfBounds {
            edge,
            at,
            limit_name,
            limit,
            image_width,
            image_height,
        };
        if self.x >= image_width {
            return Err(out(Edge::Left, self.x as u64, "width", image_width));
        }
        if self.y >= image_height {
            return Err(out(Edge::Top, self.y as u64, "height", image_height));
        }
        let right = self.x as u64 + self.width as u64;
        if right > image_width as u64 {
            return Err(out(Edge::Right, right, "width", image_width));
        }
        let bottom = self.y as u64 + self.height as u64;
        if bottom > image_height as u64 {
            return Err(out(Edge::Bottom, bottom, "height", image_height));
        }
        Ok(())
    }
}

impl fmt::Display for Crop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{},{}", self.x, self.y, self.width, self.height)
    }
}

/// Parses `x,y,width,height`, the form the CLI and query strings use.
impl FromStr for Crop {
    type Err = RenderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| RenderError::InvalidCrop {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        if parts.len() != 4 {
            return Err(invalid("expected four numbers x,y,width,height"));
        }
        let mut n = [0u32; 4];
        for (slot, part) in n.iter_mut().zip(&parts) {
            *slot = part
                .parse()
                .map_err(|_| invalid("each value must be a whole number of pixels, 0 or more"))?;
        }
        Crop::new(n[0], n[1], n[2], n[3])
    }
}

/// EXIF orientation 1..=8. Missing, 0 and out-of-range values mean 1, as
/// browsers treat them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Orientation {
    #[default]
    Normal = 1,
    FlipHorizontal = 2,
    Rotate180 = 3,
    FlipVertical = 4,
    Transpose = 5,
    Rotate90 = 6,
    Transverse = 7,
    Rotate270 = 8,
}

impl Orientation {
    pub fn from_exif(value: u32) -> Self {
        match value {
            2 => Orientation::FlipHorizontal,
            3 => Orientation::Rotate180,
            4 => Orientation::FlipVertical,
            5 => Orientation::Transpose,
            6 => Orientation::Rotate90,
            7 => Orientation::Transverse,
            8 => Orientation::Rotate270,
            _ => Orientation::Normal,
        }
    }

    /// Whether width and height trade places.
    pub fn swaps_axes(self) -> bool {
        matches!(
            self,
            Orientation::Transpose
                | Orientation::Rotate90
                | Orientation::Transverse
                | Orientation::Rotate270
        )
    }

    pub fn oriented_size(self, width: u32, height: u32) -> (u32, u32) {
        if self.swaps_axes() {
            (height, width)
        } else {
            (width, height)
        }
    }

    /// The stored pixel that lands at oriented (x, y) for a stored image of
    /// `width`x`height`.
    #[inline]
    pub(crate) fn source_of(
        self,
        x: usize,
        y: usize,
        width: usize,
        height: usize,
    ) -> (usize, usize) {
        match self {
            Orientation::Normal => (x, y),
            Orientation::FlipHorizontal => (width - 1 - x, y),
            Orientation::Rotate180 => (width - 1 - x, height - 1 - y),
            Orientation::FlipVertical => (x, height - 1 - y),
            Orientation::Transpose => (y, x),
            Orientation::Rotate90 => (y, height - 1 - x),
            Orientation::Transverse => (width - 1 - y, height - 1 - x),
            Orientation::Rotate270 => (width - 1 - y, x),
        }
    }

    /// The orientation that undoes this one.
    fn inverse(self) -> Self {
        match self {
            Orientation::Rotate90 => Orientation::Rotate270,
            Orientation::Rotate270 => Orientation::Rotate90,
            other => other,
        }
    }

    /// The rectangle of a stored image of `width`x`height` that shows as
    /// `area` of the oriented image. Continuous coordinates (pixel edges,
    /// not centres), so fractional areas map exactly.
    pub(crate) fn stored_area(self, area: &Area, width: f64, height: f64) -> Area {
        let point = |x: f64, y: f64| match self {
            Orientation::Normal => (x, y),
            Orientation::FlipHorizontal => (width - x, y),
            Orientation::Rotate180 => (width - x, height - y),
            Orientation::FlipVertical => (x, height - y),
            Orientation::Transpose => (y, x),
            Orientation::Rotate90 => (y, height - x),
            Orientation::Transverse => (width - y, height - x),
            Orientation::Rotate270 => (width - y, x),
        };
        let (ax, ay) = point(area.x, area.y);
        let (bx, by) = point(area.x + area.width, area.y + area.height);
        Area {
            x: ax.min(bx),
            y: ay.min(by),
            width: (bx - ax).abs(),
            height: (by - ay).abs(),
        }
    }

    /// Where `area` of a stored image of `width`x`height` shows in the
    /// oriented image: the inverse of [`Orientation::stored_area`].
    pub(crate) fn oriented_area(self, area: &Area, width: f64, height: f64) -> Area {
        let (ow, oh) = if self.swaps_axes() {
            (height, width)
        } else {
            (width, height)
        };
        self.inverse().stored_area(area, ow, oh)
    }
}

/// A rectangle in continuous pixel coordinates, where a scaled decode puts
/// a region's edges between pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Area {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

impl Area {
    /// The area scaled by `factor` about the origin.
    pub fn scaled(&self, factor: f64) -> Area {
        Area {
            x: self.x * factor,
            y: self.y * factor,
            width: self.width * factor,
            height: self.height * factor,
        }
    }

    /// The whole pixels the area touches (at least one on each side).
    pub fn covering(&self) -> Crop {
        // Scaled edges that should be whole can land a hair off them.
        const SLACK: f64 = 1e-6;
        let x0 = (self.x + SLACK).floor().max(0.0);
        let y0 = (self.y + SLACK).floor().max(0.0);
        let x1 = (self.x + self.width - SLACK).ceil().max(x0 + 1.0);
        let y1 = (self.y + self.height - SLACK).ceil().max(y0 + 1.0);
        Crop {
            x: x0 as u32,
            y: y0 as u32,
            width: (x1 - x0) as u32,
            height: (y1 - y0) as u32,
        }
    }
}

impl From<&Crop> for Area {
    fn from(crop: &Crop) -> Self {
        Area {
            x: crop.x as f64,
            y: crop.y as f64,
            width: crop.width as f64,
            height: crop.height as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crop_past_the_right_edge_names_the_right_edge() {
        let err = Crop::new(50, 0, 60, 10)
            .unwrap()
            .check_inside(100, 100)
            .unwrap_err();
        assert_eq!(err.code(), "crop-out-of-bounds");
        assert!(err.to_string().contains("right edge is at 110"), "{err}");
    }

    #[test]
    fn a_crop_past_the_bottom_edge_names_the_bottom_edge() {
        let err = Crop::new(0, 90, 10, 11)
            .unwrap()
            .check_inside(100, 100)
            .unwrap_err();
        assert!(err.to_string().contains("bottom edge is at 101"), "{err}");
    }

    #[test]
    fn a_crop_starting_outside_names_left_or_top() {
        let left = Crop::new(100, 0, 1, 1)
            .unwrap()
            .check_inside(100, 100)
            .unwrap_err();
        assert!(left.to_string().contains("left edge"), "{left}");
        let top = Crop::new(0, 100, 1, 1)
            .unwrap()
            .check_inside(100, 100)
            .unwrap_err();
        assert!(top.to_string().contains("top edge"), "{top}");
    }

    #[test]
    fn a_crop_touching_every_edge_is_inside() {
        Crop::new(0, 0, 100, 80)
            .unwrap()
            .check_inside(100, 80)
            .unwrap();
    }

    #[test]
    fn huge_crop_values_do_not_overflow() {
        let err = Crop::new(u32::MAX - 1, 0, u32::MAX, 1)
            .unwrap()
            .check_inside(u32::MAX, 10);
        assert!(err.is_err());
    }

    #[test]
    fn zero_sized_crops_are_refused() {
        assert_eq!(Crop::new(0, 0, 0, 5).unwrap_err().code(), "crop-empty");
        assert_eq!("1,2,3,0".parse::<Crop>().unwrap_err().code(), "crop-empty");
    }

    #[test]
    fn crops_parse_from_text_and_reject_junk() {
        assert_eq!(
            "10, 20,30,40".parse::<Crop>().unwrap(),
            Crop::new(10, 20, 30, 40).unwrap()
        );
        for bad in ["", "1,2,3", "1,2,3,4,5", "a,b,c,d", "-1,0,5,5", "1.5,0,5,5"] {
            assert_eq!(
                bad.parse::<Crop>().unwrap_err().code(),
                "crop-invalid",
                "{bad}"
            );
        }
    }

    #[test]
    fn centred_squares_sit_in_the_middle() {
        assert_eq!(
            Crop::centred_square(400, 300),
            Crop::new(50, 0, 300, 300).unwrap()
        );
        assert_eq!(
            Crop::centred_square(300, 401),
            Crop::new(0, 50, 300, 300).unwrap()
        );
        let c = Crop::new(10, 10, 100, 40).unwrap();
        assert_eq!(c.inner_square(), Crop::new(40, 10, 40, 40).unwrap());
    }

    #[test]
    fn stored_areas_hold_the_pixels_that_orientation_moves_there() {
        let (w, h) = (5usize, 3usize);
        for exif in 1..=8 {
            let o = Orientation::from_exif(exif);
            let (ow, oh) = o.oriented_size(w as u32, h as u32);
            for y in 0..oh as usize {
                for x in 0..ow as usize {
                    let pixel = Area {
                        x: x as f64,
                        y: y as f64,
                        width: 1.0,
                        height: 1.0,
                    };
                    let stored = o.stored_area(&pixel, w as f64, h as f64);
                    let (sx, sy) = o.source_of(x, y, w, h);
                    assert_eq!(
                        (stored.x, stored.y, stored.width, stored.height),
                        (sx as f64, sy as f64, 1.0, 1.0),
                        "orientation {exif}, oriented pixel ({x},{y})"
                    );
                    let back = o.oriented_area(&stored, w as f64, h as f64);
                    assert_eq!(back, pixel, "orientation {exif} round trip");
                }
            }
        }
    }

    #[test]
    fn a_rotated_area_keeps_its_fractional_edges() {
        let area = Area {
            x: 0.5,
            y: 1.25,
            width: 2.0,
            height: 1.5,
        };
        // Orientation 6: oriented x runs down the stored image's rows from
        // the bottom, oriented y along its columns.
        let stored = Orientation::Rotate90.stored_area(&area, 4.0, 6.0);
        assert_eq!(
            stored,
            Area {
                x: 1.25,
                y: 3.5,
                width: 1.5,
                height: 2.0
            }
        );
        assert_eq!(
            stored.covering(),
            Crop {
                x: 1,
                y: 3,
                width: 2,
                height: 3
            }
        );
    }

    #[test]
    fn crops_deserialize_through_validation() {
        let ok: Crop = serde_json::from_str(r#"{"x":1,"y":2,"width":3,"height":4}"#).unwrap();
        assert_eq!(ok, Crop::new(1, 2, 3, 4).unwrap());
        assert!(serde_json::from_str::<Crop>(r#"{"x":1,"y":2,"width":0,"height":4}"#).is_err());
    }
}
