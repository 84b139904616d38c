//! EXIF orientation and crops: every size and coordinate is in the oriented
//! image, as a person sees it.

mod common;

use common::*;
use easel_render::{Crop, Settings, Style};
use image::{imageops, RgbImage};

/// The orientation fixtures were made by transforming one upright picture
/// and re-encoding it, so oriented outputs match orientation 1 up to JPEG
/// noise; a wrong transform is off by far more (see the stored-pixels check).
const SAME_PICTURE_MAD: f64 = 6.0;

fn oriented_outputs(name: &str) -> (RgbImage, RgbImage, u8, (u32, u32)) {
    let r = render(&fixture(&format!("orientation/{name}.jpg")), None);
    let stripped = decode_rgb(&file(&r, Style::StrippedOriginal).bytes);
    let regular = decode_rgb(&file(&r, Style::Regular).bytes);
    (
        stripped,
        regular,
        r.source.orientation,
        (r.source.width, r.source.height),
    )
}

fn every_orientation_shows_the_upright_picture(shape: &str, upright_size: (u32, u32)) {
    let (upright, upright_regular, _, size) = oriented_outputs(&format!("{shape}_1"));
    assert_eq!(size, upright_size);
    assert_eq!(upright.dimensions(), upright_size);
    for n in 2..=8u8 {
        let name = format!("{shape}_{n}");
        let (stripped, regular, orientation, size) = oriented_outputs(&name);
        assert_eq!(orientation, n, "{name}: orientation read from EXIF");
        assert_eq!(size, upright_size, "{name}: oriented size");
        assert_eq!(
            stripped.dimensions(),
            upright_size,
            "{name}: stripped-original size"
        );
        let mad = mean_abs_diff(&stripped, &upright);
        assert!(
            mad < SAME_PICTURE_MAD,
            "{name}: stripped-original differs from orientation 1 by {mad:.2}"
        );
        let mad = mean_abs_diff(&regular, &upright_regular);
        assert!(
            mad < SAME_PICTURE_MAD,
            "{name}: regular differs from orientation 1 by {mad:.2}"
        );
    }
}

#[test]
fn every_exif_orientation_of_the_landscape_fixture_shows_the_upright_picture() {
    every_orientation_shows_the_upright_picture("Landscape", (1800, 1200));
}

#[test]
fn every_exif_orientation_of_the_portrait_fixture_shows_the_upright_picture() {
    every_orientation_shows_the_upright_picture("Portrait", (1200, 1800));
}

#[test]
fn the_orientation_fixtures_store_transformed_pixels_so_the_check_can_fail() {
    // Without this, a no-op orientation could pass the tests above if the
    // fixtures happened to store upright pixels.
    let upright = decode_rgb(&fixture("orientation/Landscape_1.jpg"));
    for n in 2..=4 {
        let stored = decode_rgb(&fixture(&format!("orientation/Landscape_{n}.jpg")));
        assert_eq!(stored.dimensions(), upright.dimensions());
        let mad = mean_abs_diff(&stored, &upright);
        assert!(
            mad > 8.0 * SAME_PICTURE_MAD,
            "Landscape_{n} stored pixels are too close to upright ({mad:.2})"
        );
    }
    for n in 5..=8 {
        let stored = decode_rgb(&fixture(&format!("orientation/Landscape_{n}.jpg")));
        assert_eq!(
            stored.dimensions(),
            (1200, 1800),
            "Landscape_{n} is stored sideways"
        );
    }
}

#[test]
fn an_invalid_orientation_of_zero_is_treated_as_upright() {
    for shape in ["Landscape", "Portrait"] {
        let (upright, _, _, upright_size) = oriented_outputs(&format!("{shape}_1"));
        let (stripped, _, orientation, size) = oriented_outputs(&format!("{shape}_0"));
        assert_eq!(orientation, 1, "{shape}_0");
        assert_eq!(size, upright_size);
        let mad = mean_abs_diff(&stripped, &upright);
        assert!(
            mad < SAME_PICTURE_MAD,
            "{shape}_0 differs from {shape}_1 by {mad:.2}"
        );
    }
}

const RED: [u8; 3] = [230, 20, 20];
const GREEN: [u8; 3] = [20, 200, 40];
const BLUE: [u8; 3] = [20, 40, 220];
const YELLOW: [u8; 3] = [240, 230, 30];

/// The picture as it must look once oriented: 64x32, four flat quadrants.
fn upright_quadrants() -> RgbImage {
    quadrants(64, 32, [RED, GREEN, BLUE, YELLOW])
}

/// The pixels a camera would store so that EXIF orientation `n` shows
/// `upright`: the inverse of each orientation's display transform, written
/// with the `image` crate's operations rather than the engine's.
fn stored_for(upright: &RgbImage, n: u16) -> RgbImage {
    match n {
        1 => upright.clone(),
        2 => imageops::flip_horizontal(upright),
        3 => imageops::rotate180(upright),
        4 => imageops::flip_vertical(upright),
        // Transpose is its own inverse.
        5 => imageops::flip_horizontal(&imageops::rotate90(upright)),
        // Shown by turning 90° clockwise, so stored turned 90° anticlockwise.
        6 => imageops::rotate270(upright),
        // Transverse is its own inverse.
        7 => imageops::flip_vertical(&imageops::rotate90(upright)),
        8 => imageops::rotate90(upright),
        _ => unreachable!(),
    }
}

fn assert_quadrants(img: &RgbImage, tolerance: u8, what: &str) {
    let (w, h) = img.dimensions();
    let centres = [
        (w / 4, h / 4),
        (3 * w / 4, h / 4),
        (w / 4, 3 * h / 4),
        (3 * w / 4, 3 * h / 4),
    ];
    for ((x, y), (want, name)) in centres.into_iter().zip([
        (RED, "top-left red"),
        (GREEN, "top-right green"),
        (BLUE, "bottom-left blue"),
        (YELLOW, "bottom-right yellow"),
    ]) {
        assert_colour_near(
            pixel(img, x, y),
            want,
            tolerance,
            &format!("{what}: {name}"),
        );
    }
}

#[test]
fn each_orientation_puts_the_quadrants_of_a_synthetic_png_where_a_person_expects_them() {
    let upright = upright_quadrants();
    let whole = Crop::new(0, 0, 64, 32).unwrap();
    for n in 1..=8u16 {
        let stored = stored_for(&upright, n);
        let png = png_with_orientation(&encode_png_rgb(&stored), n);
        let r = render(&png, Some(whole));
        assert_eq!(r.source.orientation as u16, n);
        assert_eq!(
            (r.source.width, r.source.height),
            (64, 32),
            "orientation {n}"
        );
        // PNG in, PNG out: the re-encoded stripped original is lossless.
        let stripped = file(&r, Style::StrippedOriginal);
        assert_eq!(stripped.mimetype, "image/png");
        assert_eq!(
            decode_rgb(&stripped.bytes),
            upright,
            "orientation {n}: stripped-original pixels"
        );
        let regular = decode_rgb(&file(&r, Style::Regular).bytes);
        assert_eq!(regular.dimensions(), (64, 32));
        assert_quadrants(&regular, 12, &format!("orientation {n} regular"));
        // The squares use the centred 32x32 of the crop: left half red over
        // blue, right half green over yellow.
        let thumb = decode_rgb(&file(&r, Style::Thumb).bytes);
        assert_quadrants(&thumb, 12, &format!("orientation {n} thumb"));
    }
}

#[test]
fn each_orientation_puts_the_quadrants_of_a_synthetic_jpeg_where_a_person_expects_them() {
    let upright = upright_quadrants();
    let whole = Crop::new(0, 0, 64, 32).unwrap();
    for n in 1..=8u16 {
        let stored = stored_for(&upright, n);
        let jpeg = jpeg_with_orientation(&encode_jpeg(&stored, 100), n);
        let r = render(&jpeg, Some(whole));
        assert_eq!(r.source.orientation as u16, n);
        let stripped = file(&r, Style::StrippedOriginal);
        assert_eq!(
            (stripped.width, stripped.height),
            (64, 32),
            "orientation {n}"
        );
        let stripped = decode_rgb(&stripped.bytes);
        assert_eq!(
            stripped.dimensions(),
            (64, 32),
            "orientation {n}: decoded stripped-original"
        );
        assert_quadrants(&stripped, 12, &format!("orientation {n} stripped-original"));
        assert_quadrants(
            &decode_rgb(&file(&r, Style::Regular).bytes),
            12,
            &format!("orientation {n} regular"),
        );
        assert_quadrants(
            &decode_rgb(&file(&r, Style::Square400).bytes),
            12,
            &format!("orientation {n} square-400"),
        );
    }
}

#[test]
fn a_rotated_original_leaves_no_exif_in_its_re_encoded_stripped_original() {
    let original = fixture("jpeg/hopper_orientation_6.jpg");
    assert!(
        jpeg_segments(&original).0.iter().any(|s| s.marker == 0xE1),
        "fixture has EXIF"
    );
    let r = render(&original, None);
    assert_eq!(r.source.orientation, 6);
    let stripped = &file(&r, Style::StrippedOriginal).bytes;
    let entropy = |jpeg: &[u8]| jpeg[jpeg_segments(jpeg).1..].to_vec();
    assert_ne!(
        entropy(stripped),
        entropy(&original),
        "re-encoded, not copied"
    );
    assert_eq!(jpeg_metadata_segments(stripped), Vec::<String>::new());
    assert!(easel_render::metadata_found(stripped).is_empty());
    // Re-rendering the stripped file must not rotate it a second time.
    let again = render(stripped, None);
    assert_eq!(again.source.orientation, 1);
    let mad = mean_abs_diff(
        &decode_rgb(stripped),
        &decode_rgb(&file(&again, Style::StrippedOriginal).bytes),
    );
    assert!(mad < 1.0, "{mad}");
}

// ---- crops ----

fn crop_error(name: &str, crop: Crop) -> easel_render::RenderError {
    render_err(&fixture(name), Some(crop), &Settings::default())
}

#[test]
fn a_crop_outside_the_image_is_refused_naming_the_edge_it_crosses() {
    // Landscape_1 is 1800x1200.
    let cases = [
        (Crop::new(1800, 0, 10, 10).unwrap(), "left"),
        (Crop::new(0, 1200, 10, 10).unwrap(), "top"),
        (Crop::new(1700, 0, 101, 10).unwrap(), "right"),
        (Crop::new(0, 1100, 10, 101).unwrap(), "bottom"),
        (
            Crop::new(u32::MAX, u32::MAX, u32::MAX, u32::MAX).unwrap(),
            "left",
        ),
    ];
    for (crop, edge) in cases {
        let err = crop_error("orientation/Landscape_1.jpg", crop);
        assert_eq!(err.code(), "crop-out-of-bounds", "{crop}");
        let message = err.to_string();
        assert!(
            message.contains(&format!("{edge} edge")),
            "{crop}: {message}"
        );
        assert!(message.contains("1800x1200"), "{crop}: {message}");
    }
}

#[test]
fn a_crop_touching_all_four_edges_is_accepted() {
    let r = render(
        &fixture("orientation/Landscape_1.jpg"),
        Some(Crop::new(0, 0, 1800, 1200).unwrap()),
    );
    let regular = file(&r, Style::Regular);
    assert_eq!((regular.width, regular.height), (1800, 1200));
    assert_eq!(decode_rgb(&regular.bytes).dimensions(), (1800, 1200));
}

#[test]
fn crops_are_in_oriented_coordinates_on_a_rotated_image() {
    // Landscape_6 is stored 1200x1800 and seen 1800x1200. This crop only
    // fits the oriented size.
    let crop = Crop::new(1300, 100, 480, 400).unwrap();
    let rotated = render(&fixture("orientation/Landscape_6.jpg"), Some(crop));
    let upright = render(&fixture("orientation/Landscape_1.jpg"), Some(crop));
    assert_eq!(rotated.source.crop, crop);
    let regular = file(&rotated, Style::Regular);
    assert_eq!((regular.width, regular.height), (480, 400));
    let mad = mean_abs_diff(
        &decode_rgb(&regular.bytes),
        &decode_rgb(&file(&upright, Style::Regular).bytes),
    );
    assert!(
        mad < SAME_PICTURE_MAD,
        "the crop cut a different part of the picture ({mad:.2})"
    );

    // And one that fits only the stored size is refused at the bottom edge.
    let err = crop_error(
        "orientation/Landscape_6.jpg",
        Crop::new(0, 1000, 100, 400).unwrap(),
    );
    assert_eq!(err.code(), "crop-out-of-bounds");
    assert!(err.to_string().contains("bottom edge"), "{err}");
}

#[test]
fn inspect_reports_the_oriented_size_without_decoding() {
    let facts = easel_render::inspect(&fixture("orientation/Portrait_8.jpg"), &Settings::default())
        .unwrap();
    assert_eq!((facts.width, facts.height), (1200, 1800));
    assert_eq!(facts.orientation, 8);
    assert_eq!(facts.crop, Crop::new(0, 300, 1200, 1200).unwrap());
}
