//! Colour management: every derived style is sRGB.

use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};

use crate::geometry::Crop;
use crate::pixels::{Bitmap, Channels};

/// Parses an embedded profile, keeping it only if it needs converting.
/// Unreadable or non-RGB profiles are ignored with a warning: a broken
/// profile is no reason to refuse an otherwise good picture.
pub(crate) fn conversion_source(icc: &[u8], warnings: &mut Vec<String>) -> Option<ColorProfile> {
    let profile = match ColorProfile::new_from_slice(icc) {
        Ok(p) => p,
        Err(e) => {
            warnings.push(format!(
                "ignored an unreadable ICC profile ({e}); assumed sRGB"
            ));
            return None;
        }
    };
    if profile.color_space != DataColorSpace::Rgb {
        warnings.push(format!(
            "ignored an ICC profile for {:?} on RGB pixels; assumed sRGB",
            profile.color_space
        ));
        return None;
    }
    if describes_srgb(&profile) {
        return None;
    }
    Some(profile)
}

/// sRGB-tagged files are the common case; converting them is a no-op that
/// would cost a pass over every pixel.
fn describes_srgb(profile: &ColorProfile) -> bool {
    use moxcms::ProfileText;
    let text = match &profile.description {
        Some(ProfileText::PlainString(s)) => s.clone(),
        Some(ProfileText::Description(d)) => d.ascii_string.clone(),
        Some(ProfileText::Localizable(l)) => l.first().map(|s| s.value.clone()).unwrap_or_default(),
        None => String::new(),
    };
    text.to_ascii_lowercase().contains("srgb")
}

/// Converts the pixels under `rect` to sRGB in place. Only the crop is ever
/// converted: the rest of the bitmap is not used after this point.
pub(crate) fn convert_rect_to_srgb(
    bitmap: &mut Bitmap,
    rect: &Crop,
    source: &ColorProfile,
    warnings: &mut Vec<String>,
) {
    let layout = match bitmap.channels {
        Channels::Gray => Layout::Gray,
        Channels::Rgb => Layout::Rgb,
        Channels::Rgba => Layout::Rgba,
    };
    let srgb = ColorProfile::new_srgb();
    let transform =
        match source.create_transform_8bit(layout, &srgb, layout, TransformOptions::default()) {
            Ok(t) => t,
            Err(e) => {
                warnings.push(format!(
                    "could not convert the ICC profile ({e}); assumed sRGB"
                ));
                return;
            }
        };
    let n = bitmap.channels.count();
    let stride = bitmap.stride();
    let row_len = rect.width as usize * n;
    let mut converted = vec![0u8; row_len];
    for y in rect.y..rect.y + rect.height {
        let start = y as usize * stride + rect.x as usize * n;
        let row = &mut bitmap.data[start..start + row_len];
        if transform.transform(row, &mut converted).is_ok() {
            row.copy_from_slice(&converted);
        }
    }
}

/// CMYK (or YCCK, which libjpeg-turbo hands over as CMYK) to sRGB.
///
/// With an embedded CMYK profile the conversion is colour-managed. Without
/// one there is no right answer, so we use the naive complement formula that
/// browsers and Pillow use. Adobe's encoder stores inverted values, flagged
/// by its APP14 segment.
pub(crate) fn cmyk_to_srgb(
    cmyk: &[u8],
    icc: Option<&[u8]>,
    adobe_inverted: bool,
    warnings: &mut Vec<String>,
) -> Vec<u8> {
    let pixels = cmyk.len() / 4;
    let mut rgb = vec![0u8; pixels * 3];
    if let Some(profile) = icc.and_then(|icc| cmyk_profile(icc, warnings)) {
        let srgb = ColorProfile::new_srgb();
        if let Ok(transform) = profile.create_transform_8bit(
            Layout::Rgba,
            &srgb,
            Layout::Rgb,
            TransformOptions::default(),
        ) {
            // ICC CMYK means ink amounts: 0 is no ink. Adobe files store 255 - ink.
            let ink: Vec<u8> = if adobe_inverted {
                cmyk.iter().map(|v| 255 - v).collect()
            } else {
                cmyk.to_vec()
            };
            if transform.transform(&ink, &mut rgb).is_ok() {
                return rgb;
            }
        }
        warnings.push("could not apply the CMYK ICC profile; used the naive conversion".into());
    }
    for (src, dst) in cmyk.chunks_exact(4).zip(rgb.chunks_exact_mut(3)) {
        // `light` is the amount of paper showing: 255 - ink.
        let light = |v: u8| {
            if adobe_inverted {
                v as u32
            } else {
                255 - v as u32
            }
        };
        let k = light(src[3]);
        for (channel, out) in src[..3].iter().zip(dst.iter_mut()) {
            *out = ((light(*channel) * k + 127) / 255) as u8;
        }
    }
    rgb
}

fn cmyk_profile(icc: &[u8], warnings: &mut Vec<String>) -> Option<ColorProfile> {
    match ColorProfile::new_from_slice(icc) {
        Ok(p) if p.color_space == DataColorSpace::Cmyk => Some(p),
        Ok(_) => {
            warnings.push("ignored a non-CMYK ICC profile on CMYK pixels".into());
            None
        }
        Err(e) => {
            warnings.push(format!("ignored an unreadable CMYK ICC profile ({e})"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_cmyk_maps_inks_to_their_rgb_complements() {
        let mut warnings = Vec::new();
        // Plain (non-inverted) CMYK: no ink is white, full K is black, full C is cyan.
        let cmyk = [0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 0];
        let rgb = cmyk_to_srgb(&cmyk, None, false, &mut warnings);
        assert_eq!(rgb, vec![255, 255, 255, 0, 0, 0, 0, 255, 255]);
        // Adobe stores the complement.
        let inverted: Vec<u8> = cmyk.iter().map(|v| 255 - v).collect();
        assert_eq!(cmyk_to_srgb(&inverted, None, true, &mut warnings), rgb);
        assert!(warnings.is_empty());
    }

    #[test]
    fn a_garbage_profile_is_ignored_with_a_warning() {
        let mut warnings = Vec::new();
        assert!(conversion_source(b"definitely not an icc profile", &mut warnings).is_none());
        assert_eq!(warnings.len(), 1);
    }

    /// An embedded profile as the engine would see it in a file.
    fn embedded(profile: &ColorProfile, description: Option<&str>) -> Vec<u8> {
        let mut profile = profile.clone();
        profile.description = description.map(|d| moxcms::ProfileText::PlainString(d.into()));
        profile.encode().expect("encode the profile")
    }

    fn converted(icc: &[u8], pixel: [u8; 3]) -> Option<Vec<u8>> {
        let mut warnings = Vec::new();
        let source = conversion_source(icc, &mut warnings)?;
        let mut bitmap = Bitmap::new(1, 1, Channels::Rgb, pixel.to_vec());
        convert_rect_to_srgb(
            &mut bitmap,
            &Crop::new(0, 0, 1, 1).unwrap(),
            &source,
            &mut warnings,
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        Some(bitmap.data)
    }

    #[test]
    fn a_profile_that_says_srgb_is_not_converted() {
        let icc = embedded(&ColorProfile::new_srgb(), Some("sRGB IEC61966-2.1"));
        assert_eq!(converted(&icc, [200, 100, 50]), None);
    }

    #[test]
    fn an_unnamed_srgb_profile_converts_pixels_to_themselves() {
        let icc = embedded(&ColorProfile::new_srgb(), None);
        let pixels = converted(&icc, [200, 100, 50]).expect("an unnamed profile is converted");
        for (got, want) in pixels.iter().zip([200u8, 100, 50]) {
            assert!(got.abs_diff(want) <= 1, "{pixels:?}");
        }
    }

    #[test]
    fn a_display_p3_profile_is_converted_to_srgb() {
        let icc = embedded(&ColorProfile::new_display_p3(), Some("Display P3"));
        let pixels = converted(&icc, [200, 100, 50]).expect("P3 needs converting");
        // P3's red is more saturated than sRGB's: in sRGB the same colour
        // has more red and less green.
        assert!(
            pixels[0] > 205 && pixels[1] < 95,
            "P3 (200, 100, 50) became {pixels:?} in sRGB"
        );
    }
}
