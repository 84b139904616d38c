//! `stripped-original`: metadata removed byte-for-byte when the pixels need
//! no change, re-encoded only to bake in an orientation; ICC kept.
//!
//! Every check parses the output with this file's own parsers as well as
//! `easel_render::metadata_found`, so a bug shared by the engine's strip and
//! its audit cannot hide.

mod common;

use common::*;
use easel_render::{Crop, Style};

const UPRIGHT_JPEGS_WITH_METADATA: [&str; 5] = [
    "photo/olympus_e-p3_4032x3024.jpg",
    "photo/iphone6_3264x2448.jpg",
    "photo/nokia8.3_4608x1976.jpg",
    "jpeg/exif_iptc_nokia.jpg",
    "jpeg/progressive_app13_iptc.jpg",
];

/// Segments that are not metadata (tables, frame, scan, JFIF, ICC, Adobe),
/// in order: a lossless strip must keep exactly these.
fn non_metadata_segments(jpeg: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let (segments, _) = jpeg_segments(jpeg);
    segments
        .into_iter()
        .filter(|s| match s.marker {
            0xE0 => s.payload.starts_with(b"JFIF\0"),
            0xE2 => s.payload.starts_with(b"ICC_PROFILE\0"),
            0xEE => s.payload.starts_with(b"Adobe"),
            0xE1..=0xEF | 0xFE => false,
            _ => true,
        })
        .map(|s| (s.marker, s.payload))
        .collect()
}

fn entropy_data(jpeg: &[u8]) -> &[u8] {
    &jpeg[jpeg_segments(jpeg).1..]
}

#[test]
fn upright_jpegs_lose_every_metadata_segment_and_keep_their_compressed_pixels_byte_for_byte() {
    for name in UPRIGHT_JPEGS_WITH_METADATA {
        let original = fixture(name);
        let before = jpeg_metadata_segments(&original);
        assert!(
            !before.is_empty(),
            "{name}: the fixture should carry metadata"
        );
        // The audit must see it too, or its "clean" verdicts mean nothing.
        assert!(
            !easel_render::metadata_found(&original).is_empty(),
            "{name}: metadata_found missed {before:?}"
        );
        let r = render(&original, None);
        assert_eq!(
            r.source.orientation, 1,
            "{name}: these fixtures are upright"
        );
        let stripped = &file(&r, Style::StrippedOriginal).bytes;

        assert_eq!(
            jpeg_metadata_segments(stripped),
            Vec::<String>::new(),
            "{name} (had {before:?})"
        );
        assert_eq!(
            easel_render::metadata_found(stripped),
            Vec::<String>::new(),
            "{name}"
        );
        assert_eq!(
            non_metadata_segments(stripped),
            non_metadata_segments(&original),
            "{name}: tables and frame kept"
        );
        assert_eq!(
            jpeg_icc(stripped),
            jpeg_icc(&original),
            "{name}: ICC profile kept"
        );

        // Lossless: the first scan's data is a copy, and the file ends at the
        // primary image's EOI.
        let data = entropy_data(stripped);
        assert!(
            entropy_data(&original).starts_with(data),
            "{name}: compressed data changed"
        );
        assert!(stripped.ends_with(&[0xFF, 0xD9]), "{name}: ends at EOI");
        assert!(stripped.len() < original.len());
        assert!(
            decode_rgb(stripped) == decode_rgb(&original),
            "{name}: decoded pixels differ"
        );
    }
}

#[test]
fn the_olympus_photo_keeps_no_trace_of_its_camera() {
    let original = fixture("photo/olympus_e-p3_4032x3024.jpg");
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(&original, b"OLYMPUS"),
        "the fixture names its maker"
    );
    let r = render(&original, None);
    let stripped = &file(&r, Style::StrippedOriginal).bytes;
    assert!(!contains(stripped, b"OLYMPUS"));
    assert!(!contains(stripped, b"Exif\0\0"));
}

#[test]
fn comments_xmp_iptc_and_trailing_data_are_removed_from_a_synthetic_jpeg() {
    let plain = encode_jpeg(
        &quadrants(
            32,
            32,
            [[200, 0, 0], [0, 200, 0], [0, 0, 200], [90, 90, 90]],
        ),
        90,
    );
    let mut jpeg = jpeg_with_segment(&plain, 0xFE, b"secret comment");
    jpeg = jpeg_with_segment(
        &jpeg,
        0xE1,
        b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>secret xmp</x:xmpmeta>",
    );
    jpeg = jpeg_with_segment(&jpeg, 0xED, b"Photoshop 3.0\08BIM\x04\x04secret iptc");
    jpeg = jpeg_with_segment(&jpeg, 0xEA, b"AROT\0secret app10");
    jpeg.extend_from_slice(b"secret trailer after EOI, as phones append");
    let r = render(&jpeg, None);
    let stripped = &file(&r, Style::StrippedOriginal).bytes;
    assert!(
        !stripped.windows(6).any(|w| w == b"secret"),
        "some metadata survived"
    );
    assert_eq!(jpeg_metadata_segments(stripped), Vec::<String>::new());
    assert!(stripped.ends_with(&[0xFF, 0xD9]));
    assert!(decode_rgb(stripped) == decode_rgb(&plain));
}

#[test]
fn rotated_jpegs_are_re_encoded_without_any_metadata() {
    for n in 2..=8 {
        let name = format!("orientation/Portrait_{n}.jpg");
        let original = fixture(&name);
        assert!(!jpeg_metadata_segments(&original).is_empty());
        let r = render(&original, None);
        let stripped = &file(&r, Style::StrippedOriginal).bytes;
        assert_eq!(
            jpeg_metadata_segments(stripped),
            Vec::<String>::new(),
            "{name}"
        );
        assert!(easel_render::metadata_found(stripped).is_empty(), "{name}");
        assert_eq!(
            decode_rgb(stripped).dimensions(),
            (1200, 1800),
            "{name}: orientation baked in"
        );
    }
}

#[test]
fn the_stripped_original_is_never_cropped() {
    let original = fixture("jpeg/exif_iptc_nokia.jpg");
    let r = render(&original, Some(Crop::new(10, 20, 100, 50).unwrap()));
    let stripped = file(&r, Style::StrippedOriginal);
    assert_eq!((stripped.width, stripped.height), (640, 480));
    assert_eq!(decode_rgb(&stripped.bytes).dimensions(), (640, 480));
}

// ---- PNG ----

const PNG_METADATA: [&str; 5] = ["tEXt", "iTXt", "zTXt", "eXIf", "tIME"];

#[test]
fn png_text_exif_and_time_chunks_are_removed_and_everything_else_is_kept() {
    let base = encode_png_rgba(&image::RgbaImage::from_fn(40, 30, |x, y| {
        image::Rgba([(x * 6) as u8, (y * 8) as u8, 77, (x * y) as u8])
    }));
    let mut png = png_with_chunk(&base, *b"gAMA", &45455u32.to_be_bytes());
    png = png_with_chunk(&png, *b"pHYs", &[0, 0, 11, 19, 0, 0, 11, 19, 1]);
    png = png_with_chunk(&png, *b"tEXt", b"Author\0secret author");
    png = png_with_chunk(&png, *b"iTXt", b"Description\0\0\0en\0\0secret description");
    // zTXt: keyword, method 0, then a zlib stream ("secret" stored, no compression).
    png = png_with_chunk(
        &png,
        *b"zTXt",
        b"Comment\0\0\x78\x01\x01\x06\x00\xf9\xffsecret\x08\xd1\x02\x87",
    );
    png = png_with_chunk(&png, *b"tIME", &[0x07, 0xEA, 11, 25, 12, 0, 0]);
    png = png_with_chunk(&png, *b"eXIf", &exif_tiff_with_orientation(1));
    let before = png_chunk_names(&png);
    for kind in PNG_METADATA {
        assert!(before.iter().any(|k| k == kind), "{kind} inserted");
    }

    let r = render(&png, None);
    let stripped = &file(&r, Style::StrippedOriginal).bytes;
    let after = png_chunk_names(stripped);
    let want: Vec<String> = before
        .iter()
        .filter(|k| !PNG_METADATA.contains(&k.as_str()))
        .cloned()
        .collect();
    assert_eq!(after, want);
    assert!(after.contains(&"gAMA".to_string()) && after.contains(&"pHYs".to_string()));
    assert!(easel_render::metadata_found(stripped).is_empty());
    assert!(!stripped.windows(6).any(|w| w == b"secret"));
    // Same IDAT bytes, so the same pixels.
    let idat = |b: &[u8]| {
        png_chunks(b)
            .into_iter()
            .filter(|(k, _)| k == b"IDAT")
            .collect::<Vec<_>>()
    };
    assert_eq!(idat(stripped), idat(&png));
    assert!(decode_rgba(stripped) == decode_rgba(&png));
}

#[test]
fn the_real_pngs_strip_to_the_same_pixels() {
    for name in [
        "png/rgba_transparent.png",
        "png/rgba16_mode_16bit.png",
        "png/gray16_trns.png",
        "png/gray_alpha_la.png",
        "png/rgba_libvips.png",
        "png/palette_indexed.png",
    ] {
        let original = fixture(name);
        let r = render(&original, None);
        let stripped = file(&r, Style::StrippedOriginal);
        assert_eq!(stripped.mimetype, "image/png", "{name}");
        let after = png_chunk_names(&stripped.bytes);
        for kind in PNG_METADATA {
            assert!(!after.iter().any(|k| k == kind), "{name}: {after:?}");
        }
        // Compared at full depth, so a 16-bit file that lost precision fails.
        let full = |b: &[u8]| image::load_from_memory(b).unwrap().to_rgba16();
        assert!(
            full(&stripped.bytes) == full(&original),
            "{name}: pixels changed"
        );
    }
}

#[test]
fn a_rotated_png_is_re_encoded_as_png_without_its_exif_chunk() {
    let upright = quadrants(
        20,
        10,
        [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]],
    );
    let stored = image::imageops::rotate90(&upright);
    let mut png = png_with_orientation(&encode_png_rgb(&stored), 8);
    png = png_with_chunk(&png, *b"tEXt", b"Software\0secret");
    let r = render(&png, None);
    let stripped = &file(&r, Style::StrippedOriginal).bytes;
    assert_eq!(decode_rgb(stripped), upright);
    let after = png_chunk_names(stripped);
    assert!(
        !after.contains(&"eXIf".to_string()) && !after.contains(&"tEXt".to_string()),
        "{after:?}"
    );
}
