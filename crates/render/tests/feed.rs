//! The feed file: the byte budget, the quality search, and the feed rule
//! (`square-3000` when it fits, else `itunes`, else the smaller, with the
//! reason), checked on the files' own bytes.

mod common;

use common::*;
use easel_render::{describe, ColourModel, Settings, Style};
use image::{Rgb, RgbImage};

const OLYMPUS: &str = "photo/olympus_e-p3_4032x3024.jpg";
const KIB: u64 = 1024;

/// A 3200 px cover as designers make them: flat colour fields and dark
/// lettering. JPEG's standard Huffman tables suit photos, not this.
pub fn flat_cover(side: u32) -> RgbImage {
    RgbImage::from_fn(side, side, |x, y| {
        let field = (x / 400 + y / 300) % 4;
        let colour = [[230, 60, 40], [250, 240, 220], [30, 40, 90], [240, 190, 30]][field as usize];
        let lettering = y % 240 > 200 && x % 37 < 20 && (x / 37) % 3 != 0;
        if lettering {
            Rgb([20, 20, 20])
        } else {
            Rgb(colour)
        }
    })
}

fn with_budget(budget: u64) -> Settings {
    Settings {
        feed_max_bytes: budget,
        ..Settings::default()
    }
}

#[test]
fn a_flat_covers_square_3000_fits_the_default_budget_at_full_quality_and_is_the_feed_file() {
    let png = encode_png_rgb(&flat_cover(3200));
    let r = render_with(&png, None, &Settings::default());
    let large = file(&r, Style::Square3000);
    assert!(
        large.size <= 512 * KIB,
        "square-3000 is {} bytes",
        large.size
    );
    assert_eq!(large.quality, Some(88), "no quality was given up");
    assert_eq!(r.feed.style, Some(Style::Square3000));
    assert!(r.feed.ok, "{:?}", r.feed);
    assert_eq!(r.feed.side, Some(3000));
    // Without a budget the same cover is the plain encode, larger than the
    // budget: the optimised tables are what made it fit.
    let unbounded = render_with(&png, None, &with_budget(0));
    let plain = file(&unbounded, Style::Square3000);
    assert!(
        plain.size > 512 * KIB,
        "plain encode is {} bytes",
        plain.size
    );
    assert_eq!(decode_rgb(&large.bytes).dimensions(), (3000, 3000));
}

#[test]
fn a_camera_photos_square_3000_cannot_fit_so_the_feed_file_is_itunes_within_the_budget() {
    let r = render(&fixture(OLYMPUS), None);
    let large = file(&r, Style::Square3000);
    let itunes = file(&r, Style::Itunes);
    assert!(
        large.size > 512 * KIB,
        "square-3000 is {} bytes",
        large.size
    );
    assert_eq!(
        large.quality,
        Some(88),
        "a file that cannot fit even at the floor keeps its quality"
    );
    assert!(itunes.size <= 512 * KIB, "itunes is {} bytes", itunes.size);
    assert_eq!(r.feed.style, Some(Style::Itunes));
    assert_eq!(r.feed.side, Some(1400));
    assert!(r.feed.ok, "{:?}", r.feed);
    assert!(
        r.feed
            .warnings
            .iter()
            .any(|w| w.contains("square-3000") && w.contains("over the feed budget")),
        "{:?}",
        r.feed.warnings
    );
}

#[test]
fn a_file_over_the_budget_is_searched_down_to_the_highest_quality_that_fits() {
    // 300 KiB: the photo's itunes (about 400 KB at 88) must give up quality.
    let budget = 300 * KIB;
    let r = render_with(&fixture(OLYMPUS), None, &with_budget(budget));
    let itunes = file(&r, Style::Itunes);
    let quality = itunes.quality.expect("a quality is recorded");
    assert!((70..88).contains(&quality), "quality {quality}");
    assert!(itunes.size <= budget, "itunes is {} bytes", itunes.size);
    // One step up would not have fitted: the search took the best it could.
    let above = render_with(
        &fixture(OLYMPUS),
        None,
        &Settings {
            jpeg_quality: quality + 1,
            feed_max_bytes: 0,
            ..Settings::default()
        },
    );
    assert!(
        file(&above, Style::Itunes).size > budget,
        "quality {} would have fitted too",
        quality + 1
    );
    assert_eq!(r.feed.style, Some(Style::Itunes));
    assert!(r.feed.ok, "{:?}", r.feed);
    assert!(
        r.feed
            .warnings
            .iter()
            .any(|w| w.contains(&format!("quality {quality} instead of 88"))),
        "{:?}",
        r.feed.warnings
    );
    // The other squares are not feed files: they keep the quality asked for.
    assert_eq!(file(&r, Style::Square640).quality, Some(88));
}

#[test]
fn when_nothing_fits_the_feed_file_is_the_smaller_and_feed_ready_says_why() {
    let budget = 100 * KIB;
    let r = render_with(&fixture(OLYMPUS), None, &with_budget(budget));
    let large = file(&r, Style::Square3000);
    let itunes = file(&r, Style::Itunes);
    assert!(itunes.size > budget && large.size > budget);
    assert_eq!(r.feed.style, Some(Style::Itunes), "the smaller of the two");
    assert!(itunes.size < large.size);
    assert!(!r.feed.ok);
    assert!(
        r.feed
            .reasons
            .iter()
            .any(|w| w.contains("over the feed budget")),
        "{:?}",
        r.feed.reasons
    );
}

#[test]
fn a_budget_of_zero_means_no_budget() {
    let r = render_with(&fixture(OLYMPUS), None, &with_budget(0));
    assert_eq!(r.feed.style, Some(Style::Square3000));
    assert!(r.feed.ok, "{:?}", r.feed);
    assert_eq!(file(&r, Style::Square3000).quality, Some(88));
}

#[test]
fn an_enlarged_itunes_is_the_feed_file_but_not_ready() {
    let png = encode_png_rgb(&flat_cover(600));
    let r = render(&png, None);
    assert_eq!(r.feed.style, Some(Style::Itunes));
    assert!(!r.feed.ok);
    assert!(
        r.feed.reasons.iter().any(|w| w.contains("enlarged")),
        "{:?}",
        r.feed.reasons
    );
}

#[test]
fn files_are_described_from_their_own_headers() {
    let r = render(&fixture(OLYMPUS), None);
    let facts = describe(&file(&r, Style::Itunes).bytes).expect("a JPEG");
    assert_eq!(
        (facts.mimetype, facts.width, facts.height),
        ("image/jpeg", 1400, 1400)
    );
    assert_eq!(facts.colour, ColourModel::Rgb);
    assert!(!facts.alpha && !facts.progressive);
    let grey = encode_jpeg_gray(64);
    let facts = describe(&grey).expect("a JPEG");
    assert_eq!(facts.colour, ColourModel::Gray);
    let rgba = encode_png_rgba(&image::RgbaImage::from_pixel(
        8,
        8,
        image::Rgba([1, 2, 3, 4]),
    ));
    let facts = describe(&rgba).expect("a PNG");
    assert!(facts.alpha);
    assert_eq!(facts.colour, ColourModel::Rgb);
    assert_eq!(describe(b"GIF89a...."), None);
}

fn encode_jpeg_gray(side: u32) -> Vec<u8> {
    let img = image::GrayImage::from_pixel(side, side, image::Luma([128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode a grey JPEG");
    out.into_inner()
}
