//! The style table of DESIGN.md: which files exist, their sizes, the
//! `upscaled` flag, and the facts recorded with each file.

mod common;

use common::*;
use easel_render::{Crop, Rendition, Settings, Style};
use image::{Rgb, RgbImage};
use sha2::{Digest, Sha256};

const OLYMPUS: &str = "photo/olympus_e-p3_4032x3024.jpg";

/// A smooth photo-like gradient with some texture, so JPEG sizes are realistic.
fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * 255 / width) as u8,
            (y * 255 / height) as u8,
            ((x ^ y) & 0x3F) as u8 + 96,
        ])
    })
}

/// Checks what every file must satisfy whatever the input: the recorded
/// facts describe the bytes, and the bytes decode to the recorded size.
fn assert_files_describe_their_bytes(r: &Rendition) {
    for f in &r.files {
        let what = f.style.as_str();
        assert_eq!(f.size, f.bytes.len() as u64, "{what}: size");
        assert_eq!(f.sha256, hex_sha256(&f.bytes), "{what}: sha256");
        let decoded = decode_rgb(&f.bytes);
        assert_eq!(
            decoded.dimensions(),
            (f.width, f.height),
            "{what}: decoded size"
        );
        let sniffed = image::guess_format(&f.bytes).expect("a known format");
        let want = match sniffed {
            image::ImageFormat::Jpeg => ("image/jpeg", "jpg"),
            image::ImageFormat::Png => ("image/png", "png"),
            other => panic!("{what}: unexpected output format {other:?}"),
        };
        assert_eq!(
            (f.mimetype, f.extension),
            want,
            "{what}: mimetype and extension"
        );
        assert_eq!(f.file_name(), format!("{what}.{}", want.1));
        if f.style != Style::StrippedOriginal {
            assert_eq!(f.mimetype, "image/jpeg", "{what}: derived styles are JPEG");
        }
        if let Some(side) = f.style.square_side() {
            assert_eq!((f.width, f.height), (side, side), "{what}: square size");
        }
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn upscaled_flags(r: &Rendition) -> Vec<(Style, bool)> {
    r.files.iter().map(|f| (f.style, f.upscaled)).collect()
}

#[test]
fn a_small_image_gets_every_square_upscaled_except_those_smaller_than_it() {
    let r = render(&encode_jpeg(&gradient(500, 300), 90), None);
    assert_eq!(
        upscaled_flags(&r),
        vec![
            (Style::StrippedOriginal, false),
            (Style::Regular, false),
            (Style::Thumb, false),
            (Style::Square400, true),
            (Style::Square640, true),
            (Style::Square888, true),
            (Style::Itunes, true),
        ],
        "no square-3000 for a 300 crop, and only thumb is a reduction"
    );
    assert_eq!(
        (
            file(&r, Style::StrippedOriginal).width,
            file(&r, Style::StrippedOriginal).height
        ),
        (500, 300)
    );
    assert_eq!(
        (
            file(&r, Style::Regular).width,
            file(&r, Style::Regular).height
        ),
        (300, 300)
    );
    assert_eq!(r.source.crop, Crop::new(100, 0, 300, 300).unwrap());
    assert_files_describe_their_bytes(&r);
}

#[test]
fn a_square_exactly_the_size_of_a_style_is_not_an_upscale() {
    let r = render(&encode_png_rgb(&gradient(400, 400)), None);
    assert!(!file(&r, Style::Square400).upscaled);
    assert!(file(&r, Style::Square640).upscaled);
    assert_eq!(file(&r, Style::StrippedOriginal).mimetype, "image/png");
    assert_files_describe_their_bytes(&r);
}

#[test]
fn a_4032x3024_photo_gets_every_style_including_square_3000_and_nothing_is_upscaled() {
    let r = render(&fixture(OLYMPUS), None);
    assert_eq!(styles_of(&r), Style::RENDERED.to_vec());
    assert!(
        r.files.iter().all(|f| !f.upscaled),
        "{:?}",
        upscaled_flags(&r)
    );
    let regular = file(&r, Style::Regular);
    assert_eq!((regular.width, regular.height), (3024, 3024));
    let stripped = file(&r, Style::StrippedOriginal);
    assert_eq!((stripped.width, stripped.height), (4032, 3024));
    assert_eq!((r.source.width, r.source.height), (4032, 3024));
    assert_eq!(r.source.crop, Crop::new(504, 0, 3024, 3024).unwrap());
    assert_files_describe_their_bytes(&r);
}

#[test]
fn a_crop_under_3000_on_either_side_gets_no_square_3000() {
    for crop in [
        Crop::new(0, 0, 4032, 2999).unwrap(),
        Crop::new(10, 0, 2999, 3024).unwrap(),
    ] {
        let r = render(&fixture(OLYMPUS), Some(crop));
        assert!(
            r.file(Style::Square3000).is_none(),
            "{crop}: {:?}",
            styles_of(&r)
        );
        assert_eq!(r.files.len(), 7, "{crop}");
        let regular = file(&r, Style::Regular);
        assert_eq!((regular.width, regular.height), (crop.width, crop.height));
        assert!(!file(&r, Style::Itunes).upscaled);
    }
}

#[test]
fn a_crop_of_exactly_3000_gets_a_square_3000_that_is_not_upscaled() {
    let r = render(
        &fixture(OLYMPUS),
        Some(Crop::new(1032, 24, 3000, 3000).unwrap()),
    );
    let square = file(&r, Style::Square3000);
    assert!(!square.upscaled);
    assert_eq!(decode_rgb(&square.bytes).dimensions(), (3000, 3000));
}

#[test]
fn the_squares_show_the_centred_square_of_the_crop() {
    // Three vertical bands: red | green | blue, each 100 wide.
    let bands = RgbImage::from_fn(300, 100, |x, _| match x / 100 {
        0 => Rgb([220, 30, 30]),
        1 => Rgb([30, 200, 30]),
        _ => Rgb([30, 30, 220]),
    });
    let png = encode_png_rgb(&bands);
    let centred = render(&png, None);
    let thumb = decode_rgb(&file(&centred, Style::Thumb).bytes);
    assert_colour_near(
        mean_colour(&thumb, 50, 50, 20),
        [30, 200, 30],
        10,
        "default crop is the middle band",
    );

    // A crop over the first two bands: its centred square straddles them.
    let r = render(&png, Some(Crop::new(0, 0, 200, 100).unwrap()));
    let regular = decode_rgb(&file(&r, Style::Regular).bytes);
    assert_eq!(regular.dimensions(), (200, 100));
    let square = decode_rgb(&file(&r, Style::Square400).bytes);
    assert_colour_near(
        mean_colour(&square, 80, 200, 20),
        [220, 30, 30],
        12,
        "left half of the square",
    );
    assert_colour_near(
        mean_colour(&square, 320, 200, 20),
        [30, 200, 30],
        12,
        "right half of the square",
    );
}

#[test]
fn the_jpeg_quality_setting_changes_the_derived_files_but_not_the_lossless_strip() {
    let original = fixture("jpeg/exif_iptc_nokia.jpg");
    let low = render_with(
        &original,
        None,
        &Settings {
            jpeg_quality: 40,
            ..Settings::default()
        },
    );
    let high = render_with(
        &original,
        None,
        &Settings {
            jpeg_quality: 95,
            ..Settings::default()
        },
    );
    assert!(
        file(&low, Style::Itunes).size < file(&high, Style::Itunes).size,
        "quality 40 should be smaller than quality 95"
    );
    assert_eq!(
        file(&low, Style::StrippedOriginal).bytes,
        file(&high, Style::StrippedOriginal).bytes
    );
}

#[test]
fn files_come_in_the_order_of_the_style_table() {
    let r = render(&fixture("jpeg/exif_iptc_nokia.jpg"), None);
    let order: Vec<usize> = r
        .files
        .iter()
        .map(|f| Style::RENDERED.iter().position(|s| *s == f.style).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{:?}", styles_of(&r));
    assert_files_describe_their_bytes(&r);
}

// ---- determinism ----

fn on_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
        .install(f)
}

fn assert_same_files(a: &Rendition, b: &Rendition, what: &str) {
    assert_eq!(styles_of(a), styles_of(b), "{what}");
    for (x, y) in a.files.iter().zip(&b.files) {
        assert!(
            x.bytes == y.bytes,
            "{what}: {} differs between runs",
            x.style
        );
        assert_eq!(x.sha256, y.sha256);
    }
}

#[test]
fn rendering_twice_gives_byte_identical_files_for_every_style() {
    let inputs = [
        fixture("jpeg/exif_iptc_nokia.jpg"),
        fixture("orientation/Portrait_6.jpg"),
        fixture("png/rgba_transparent.png"),
        fixture("jpeg/cmyk_pil_sample.jpg"),
        fixture("jpeg/icc_profile_big_progressive.jpg"),
    ];
    for input in &inputs {
        let first = render(input, None);
        let second = render(input, None);
        assert_same_files(&first, &second, "same pool");
    }
}

#[test]
fn one_thread_and_two_threads_give_byte_identical_files() {
    for name in [
        OLYMPUS,
        "orientation/Landscape_8.jpg",
        "png/rgba16_mode_16bit.png",
    ] {
        let input = fixture(name);
        let single = on_pool(1, || render(&input, None));
        let double = on_pool(2, || render(&input, None));
        assert_same_files(&single, &double, name);
    }
}
