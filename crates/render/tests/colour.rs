//! Colour: every derived style is sRGB. ICC profiles and CMYK are converted,
//! transparency is flattened onto the configured background, and 16-bit,
//! palette and grey PNGs come out right.

mod common;

use common::*;
use easel_render::{Background, Crop, Settings, Style};
use image::{Rgb, RgbImage, Rgba, RgbaImage};
use moxcms::{ColorProfile, Layout, TransformOptions};

/// sRGB pure red expressed in Display P3.
const P3_OF_SRGB_RED: [u8; 3] = [234, 51, 35];
const SRGB_RED: [u8; 3] = [255, 0, 0];

fn p3_profile() -> Vec<u8> {
    ColorProfile::new_display_p3()
        .encode()
        .expect("moxcms encodes Display P3")
}

/// Flat P3 patches: sRGB red, white, mid grey, black. White, grey and black
/// are the same in both spaces (same white point and transfer curve).
fn p3_patches() -> RgbImage {
    quadrants(
        64,
        64,
        [P3_OF_SRGB_RED, [255, 255, 255], [128, 128, 128], [0, 0, 0]],
    )
}

fn assert_patches_are_srgb(img: &RgbImage, what: &str) {
    let (w, h) = img.dimensions();
    let r = w / 8;
    assert_colour_near(
        mean_colour(img, w / 4, h / 4, r),
        SRGB_RED,
        6,
        &format!("{what}: red"),
    );
    assert_colour_near(
        mean_colour(img, 3 * w / 4, h / 4, r),
        [255, 255, 255],
        3,
        &format!("{what}: white"),
    );
    assert_colour_near(
        mean_colour(img, w / 4, 3 * h / 4, r),
        [128, 128, 128],
        3,
        &format!("{what}: grey"),
    );
    assert_colour_near(
        mean_colour(img, 3 * w / 4, 3 * h / 4, r),
        [0, 0, 0],
        3,
        &format!("{what}: black"),
    );
}

fn png_with_icc(img: &RgbImage, icc: &[u8]) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    let mut encoder = image::codecs::png::PngEncoder::new(&mut out);
    encoder
        .set_icc_profile(icc.to_vec())
        .expect("PNG takes a profile");
    encoder
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

#[test]
fn a_display_p3_png_is_converted_to_srgb_in_every_derived_style() {
    let png = png_with_icc(&p3_patches(), &p3_profile());
    assert!(png_chunk_names(&png).contains(&"iCCP".to_string()));
    let r = render(&png, None);
    assert!(r.source.had_icc_profile);
    for style in [Style::Regular, Style::Thumb, Style::Itunes] {
        assert_patches_are_srgb(&decode_rgb(&file(&r, style).bytes), style.as_str());
    }
}

#[test]
fn a_display_p3_png_keeps_its_profile_and_its_p3_pixels_in_the_stripped_original() {
    let png = png_with_icc(&p3_patches(), &p3_profile());
    let r = render(&png, None);
    let stripped = &file(&r, Style::StrippedOriginal).bytes;
    let iccp = |bytes: &[u8]| {
        png_chunks(bytes)
            .into_iter()
            .find(|(k, _)| k == b"iCCP")
            .map(|(_, d)| d)
    };
    assert_eq!(
        iccp(stripped),
        iccp(&png),
        "the ICC profile is colour, not metadata"
    );
    assert_eq!(
        decode_rgb(stripped),
        p3_patches(),
        "the pixels stay in P3 next to their profile"
    );
}

#[test]
fn a_display_p3_jpeg_is_converted_to_srgb() {
    let jpeg = jpeg_with_icc(&encode_jpeg(&p3_patches(), 100), &p3_profile());
    let r = render(&jpeg, None);
    assert!(r.source.had_icc_profile);
    assert_patches_are_srgb(&decode_rgb(&file(&r, Style::Regular).bytes), "regular");
    assert_patches_are_srgb(&decode_rgb(&file(&r, Style::Square640).bytes), "square-640");
    // The derived files are sRGB and say nothing else.
    assert_eq!(jpeg_icc(&file(&r, Style::Regular).bytes), None);
}

#[test]
fn a_rotated_display_p3_jpeg_keeps_its_profile_in_the_re_encoded_stripped_original() {
    // One profile for input and comparison: moxcms stamps the current time
    // into each encoded profile's header.
    let profile = p3_profile();
    let stored = image::imageops::rotate270(&p3_patches());
    let jpeg = jpeg_with_orientation(&jpeg_with_icc(&encode_jpeg(&stored, 100), &profile), 6);
    let r = render(&jpeg, None);
    assert_eq!(r.source.orientation, 6);
    let stripped = &file(&r, Style::StrippedOriginal).bytes;
    assert_eq!(jpeg_icc(stripped), Some(profile));
    assert_eq!(jpeg_metadata_segments(stripped), Vec::<String>::new());
    // Still P3 pixels (upright now), described by the kept profile.
    let img = decode_rgb(stripped);
    assert_colour_near(
        mean_colour(&img, 16, 16, 6),
        P3_OF_SRGB_RED,
        6,
        "stripped red stays P3",
    );
    assert_patches_are_srgb(&decode_rgb(&file(&r, Style::Regular).bytes), "regular");
}

#[test]
fn an_unconverted_p3_red_would_fail_the_srgb_check() {
    // Guards the tolerance: P3 numbers read as sRGB are far from sRGB red.
    let off = P3_OF_SRGB_RED
        .iter()
        .zip(SRGB_RED)
        .any(|(a, b)| a.abs_diff(b) > 6);
    assert!(off);
}

#[test]
fn the_progressive_jpeg_with_a_big_icc_profile_renders_and_keeps_the_profile_when_stripped() {
    let original = fixture("jpeg/icc_profile_big_progressive.jpg");
    let profile = jpeg_icc(&original).expect("the fixture carries a profile");
    let r = render(&original, None);
    assert!(r.source.had_icc_profile);
    assert_eq!((r.source.width, r.source.height), (425, 250));
    let stripped = &file(&r, Style::StrippedOriginal).bytes;
    assert_eq!(
        jpeg_icc(stripped),
        Some(profile),
        "profile reassembled byte for byte"
    );
    // Reference: zune-jpeg's decode converted with the embedded profile by
    // moxcms directly, outside the engine.
    let naive = decode_rgb(&original);
    let source = ColorProfile::new_from_slice(&jpeg_icc(&original).unwrap()).unwrap();
    let transform = source
        .create_transform_8bit(
            Layout::Rgb,
            &ColorProfile::new_srgb(),
            Layout::Rgb,
            TransformOptions::default(),
        )
        .unwrap();
    let mut managed = naive.clone();
    transform.transform(naive.as_raw(), &mut managed).unwrap();
    let crop = r.source.crop;
    let cut = |img: &RgbImage| {
        image::imageops::crop_imm(img, crop.x, crop.y, crop.width, crop.height).to_image()
    };
    let regular = decode_rgb(&file(&r, Style::Regular).bytes);
    let mad = mean_abs_diff(&regular, &cut(&managed));
    assert!(
        mad < 3.0,
        "regular is {mad:.2} away from the colour-managed reference"
    );
    let unmanaged = mean_abs_diff(&regular, &cut(&naive));
    assert!(
        unmanaged > 2.0 * mad,
        "the profile made no difference ({unmanaged:.2} vs {mad:.2})"
    );
}

// ---- CMYK ----

/// The textbook naive CMYK->RGB for Adobe files (stored values are 255 - ink),
/// applied to libjpeg-turbo's raw CMYK: what browsers and Pillow show for a
/// CMYK JPEG without a profile.
fn textbook_cmyk_to_rgb(jpeg: &[u8]) -> RgbImage {
    let raw = turbojpeg::decompress(jpeg, turbojpeg::PixelFormat::CMYK).expect("CMYK decode");
    RgbImage::from_fn(raw.width as u32, raw.height as u32, |x, y| {
        let i = y as usize * raw.pitch + x as usize * 4;
        let px = &raw.pixels[i..i + 4];
        // Paper showing through each ink, times paper showing through black.
        let light = |v: u8| (v as f64 / 255.0) * (px[3] as f64 / 255.0);
        Rgb([0, 1, 2].map(|c| (light(px[c]) * 255.0).round() as u8))
    })
}

#[test]
fn an_adobe_cmyk_jpeg_renders_as_srgb_matching_the_textbook_conversion_and_another_decoder() {
    let original = fixture("jpeg/cmyk_pil_sample.jpg");
    assert_eq!(
        jpeg_icc(&original),
        None,
        "no profile: the naive conversion applies"
    );
    let r = render_with(
        &original,
        None,
        &Settings {
            jpeg_quality: 100,
            ..Settings::default()
        },
    );
    let regular = file(&r, Style::Regular);
    let (segments, _) = jpeg_segments(&regular.bytes);
    let sof = segments
        .iter()
        .find(|s| s.marker == 0xC0)
        .expect("baseline SOF");
    assert_eq!(
        sof.payload[5], 3,
        "three components: an RGB (YCbCr) JPEG, not CMYK"
    );
    let regular = decode_rgb(&regular.bytes);
    let textbook = textbook_cmyk_to_rgb(&original);
    let mad = block_mean_abs_diff(&regular, &textbook, 4);
    assert!(
        mad < 3.0,
        "regular is {mad:.2} away from the textbook conversion"
    );
    // zune-jpeg converts CMYK with its own (slightly different) formula: it
    // agrees roughly, while inverted or unconverted ink is off by >100.
    let mad = mean_abs_diff(&regular, &decode_rgb(&original));
    assert!(
        mad < 10.0,
        "regular is {mad:.2} away from zune-jpeg's decode"
    );
    let thumb = decode_rgb(&file(&r, Style::Thumb).bytes);
    assert_eq!(thumb.dimensions(), (100, 100));
    assert!(block_mean_abs_diff(&thumb, &textbook, 4) < 3.0);
}

#[test]
fn the_stripped_cmyk_original_keeps_its_adobe_segment_and_ink() {
    let original = fixture("jpeg/cmyk_pil_sample.jpg");
    let r = render(&original, None);
    let stripped = &file(&r, Style::StrippedOriginal).bytes;
    let (segments, _) = jpeg_segments(stripped);
    assert!(segments
        .iter()
        .any(|s| s.marker == 0xEE && s.payload.starts_with(b"Adobe")));
    assert_eq!(decode_rgb(stripped), decode_rgb(&original));
}

/// A YCCK JPEG written by libjpeg-turbo from Adobe-convention values
/// (255 means no ink), the way Photoshop stores CMYK.
fn synthetic_cmyk_jpeg(inks: [[u8; 4]; 4]) -> Vec<u8> {
    let (w, h) = (64usize, 64usize);
    let mut pixels = Vec::with_capacity(w * h * 4);
    for y in 0..h {
        for x in 0..w {
            let ink = inks[(y >= h / 2) as usize * 2 + (x >= w / 2) as usize];
            pixels.extend(ink.iter().map(|v| 255 - v));
        }
    }
    let image = turbojpeg::Image {
        pixels: pixels.as_slice(),
        width: w,
        pitch: w * 4,
        height: h,
        format: turbojpeg::PixelFormat::CMYK,
    };
    let mut compressor = turbojpeg::Compressor::new().unwrap();
    compressor.set_quality(100).unwrap();
    compressor.set_subsamp(turbojpeg::Subsamp::None).unwrap();
    compressor
        .compress_to_vec(image)
        .expect("libjpeg-turbo writes CMYK")
}

#[test]
fn pure_cmyk_inks_become_their_srgb_complements() {
    // cyan, magenta / yellow, full black
    let jpeg = synthetic_cmyk_jpeg([
        [255, 0, 0, 0],
        [0, 255, 0, 0],
        [0, 0, 255, 0],
        [0, 0, 0, 255],
    ]);
    assert_eq!(
        turbojpeg::read_header(&jpeg).unwrap().colorspace,
        turbojpeg::Colorspace::YCCK
    );
    let r = render(&jpeg, None);
    let regular = decode_rgb(&file(&r, Style::Regular).bytes);
    let want = [[0, 255, 255], [255, 0, 255], [255, 255, 0], [0, 0, 0]];
    let centres = [(16, 16), (48, 16), (16, 48), (48, 48)];
    for ((x, y), want) in centres.into_iter().zip(want) {
        assert_colour_near(
            mean_colour(&regular, x, y, 6),
            want,
            10,
            &format!("patch at {x},{y}"),
        );
    }
    // zune-jpeg agrees on the same file.
    assert!(mean_abs_diff(&regular, &decode_rgb(&jpeg)) < 4.0);
}

// ---- transparency ----

/// Flattens with the textbook "over" in floating point, independently of
/// the engine's integer version.
fn flatten(img: &RgbaImage, crop: Crop, bg: [u8; 3]) -> RgbImage {
    RgbImage::from_fn(crop.width, crop.height, |x, y| {
        let Rgba([r, g, b, a]) = *img.get_pixel(crop.x + x, crop.y + y);
        let a = a as f64 / 255.0;
        let over = |c: u8, bg: u8| (c as f64 * a + bg as f64 * (1.0 - a)).round() as u8;
        Rgb([over(r, bg[0]), over(g, bg[1]), over(b, bg[2])])
    })
}

/// Quality 100 so comparisons with a reference measure the flattening, not
/// JPEG loss.
fn with_background(bg: [u8; 3]) -> Settings {
    Settings {
        background: Background(bg),
        jpeg_quality: 100,
        ..Settings::default()
    }
}

const MAGENTA: [u8; 3] = [255, 0, 255];
const TEAL: [u8; 3] = [0x33, 0x99, 0xCC];

#[test]
fn a_fully_transparent_png_becomes_the_background_colour_whatever_colour_hides_under_it() {
    // Bright green that must never show through alpha 0.
    let clear = RgbaImage::from_pixel(48, 48, Rgba([20, 240, 20, 0]));
    let png = encode_png_rgba(&clear);
    for bg in [[255, 255, 255], MAGENTA, TEAL] {
        let r = render_with(&png, None, &with_background(bg));
        for style in [Style::Regular, Style::Thumb, Style::Square888] {
            let img = decode_rgb(&file(&r, style).bytes);
            for (x, y) in [
                (0, 0),
                (img.width() / 2, img.height() / 2),
                (img.width() - 1, img.height() - 1),
            ] {
                assert_colour_near(
                    pixel(&img, x, y),
                    bg,
                    3,
                    &format!("{style} at {x},{y} on {bg:?}"),
                );
            }
        }
    }
}

#[test]
fn half_transparent_red_blends_with_the_background() {
    let png = encode_png_rgba(&RgbaImage::from_pixel(32, 32, Rgba([255, 0, 0, 128])));
    let r = render_with(&png, None, &with_background([0, 0, 255]));
    let img = decode_rgb(&file(&r, Style::Regular).bytes);
    assert_colour_near(
        mean_colour(&img, 16, 16, 8),
        [128, 0, 127],
        4,
        "half red over blue",
    );
}

#[test]
fn the_transparent_fixture_is_flattened_onto_each_configured_background() {
    let original = fixture("png/rgba_transparent.png");
    let rgba = decode_rgba(&original);
    // Somewhere fully transparent, away from edges so JPEG ringing stays out.
    let crop = Crop::centred_square(rgba.width(), rgba.height());
    let clear_spot = (crop.x + 4..crop.x + crop.width - 4)
        .flat_map(|x| (crop.y + 4..crop.y + crop.height - 4).map(move |y| (x, y)))
        .find(|&(x, y)| {
            (x - 4..=x + 4).all(|xx| (y - 4..=y + 4).all(|yy| rgba.get_pixel(xx, yy)[3] == 0))
        })
        .expect("the fixture has a transparent area");
    let mut regulars = Vec::new();
    for bg in [[255, 255, 255], MAGENTA] {
        let r = render_with(&original, None, &with_background(bg));
        let regular = decode_rgb(&file(&r, Style::Regular).bytes);
        let mad = block_mean_abs_diff(&regular, &flatten(&rgba, crop, bg), 4);
        assert!(
            mad < 2.0,
            "on {bg:?}: regular is {mad:.2} away from the reference flattening"
        );
        let spot = pixel(&regular, clear_spot.0 - crop.x, clear_spot.1 - crop.y);
        assert_colour_near(
            spot,
            bg,
            3,
            &format!("transparent pixel {clear_spot:?} on {bg:?}"),
        );
        regulars.push(regular);
    }
    assert!(
        mean_abs_diff(&regulars[0], &regulars[1]) > 1.0,
        "the background made no difference"
    );
}

#[test]
fn sixteen_bit_palette_and_grey_alpha_pngs_match_a_reference_flattening() {
    for name in [
        "png/rgba16_mode_16bit.png",
        "png/gray16_trns.png",
        "png/gray_alpha_la.png",
        "png/palette_indexed.png",
        "png/rgba_libvips.png",
    ] {
        let original = fixture(name);
        let rgba = decode_rgba(&original);
        for bg in [[255, 255, 255], TEAL] {
            let r = render_with(&original, None, &with_background(bg));
            assert_eq!(
                (r.source.width, r.source.height),
                rgba.dimensions(),
                "{name}"
            );
            let crop = r.source.crop;
            let regular = decode_rgb(&file(&r, Style::Regular).bytes);
            let mad = block_mean_abs_diff(&regular, &flatten(&rgba, crop, bg), 4);
            assert!(
                mad < 2.0,
                "{name} on {bg:?}: regular is {mad:.2} away from the reference"
            );
            let thumb = file(&r, Style::Thumb);
            assert_eq!(decode_rgb(&thumb.bytes).dimensions(), (100, 100), "{name}");
        }
    }
}

#[test]
fn a_transparent_png_with_a_crop_flattens_only_the_crop() {
    // Left half opaque blue, right half transparent.
    let img = RgbaImage::from_fn(80, 40, |x, _| {
        if x < 40 {
            Rgba([0, 0, 255, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    });
    let r = render_with(
        &encode_png_rgba(&img),
        Some(Crop::new(40, 0, 40, 40).unwrap()),
        &with_background(MAGENTA),
    );
    let regular = decode_rgb(&file(&r, Style::Regular).bytes);
    assert_eq!(regular.dimensions(), (40, 40));
    assert_colour_near(
        mean_colour(&regular, 20, 20, 8),
        MAGENTA,
        3,
        "cropped transparent half",
    );
}
