//! Bad input gets a typed error and never takes the process down: limits,
//! bombs, corrupt and truncated files, and mutated fixtures.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::*;
use easel_render::{ErrorKind, Limits, RenderError, Rendition, Settings, Style};

/// Every code a caller can get for bad image bytes (as opposed to a bad crop
/// or bad settings).
const INPUT_ERROR_CODES: [&str; 6] = [
    "empty-file",
    "unsupported-format",
    "too-many-bytes",
    "too-many-pixels",
    "zero-dimension",
    "corrupt-image",
];

fn limits(max_bytes: u64, max_pixels: u64) -> Settings {
    Settings {
        limits: Limits {
            max_bytes,
            max_pixels,
        },
        ..Settings::default()
    }
}

/// Runs `render` and turns a panic into a description, so a loop over many
/// inputs can report every failure at once.
fn render_catching(
    bytes: &[u8],
    settings: &Settings,
) -> Result<Result<Rendition, RenderError>, String> {
    catch_unwind(AssertUnwindSafe(|| {
        easel_render::render(bytes.to_vec(), None, settings)
    }))
    .map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

/// An Ok rendition must be sound; an error must be one of the input codes.
fn check_outcome(
    outcome: Result<Result<Rendition, RenderError>, String>,
    what: &str,
    failures: &mut Vec<String>,
) {
    match outcome {
        Err(panic) => failures.push(format!("{what}: panicked: {panic}")),
        Ok(Err(e)) if !INPUT_ERROR_CODES.contains(&e.code()) => {
            failures.push(format!("{what}: unexpected error code {} ({e})", e.code()))
        }
        Ok(Err(e)) if e.to_string().is_empty() => failures.push(format!("{what}: empty message")),
        Ok(Err(_)) => {}
        Ok(Ok(r)) => {
            for f in &r.files {
                if f.size != f.bytes.len() as u64 || f.sha256 != easel_render::sha256_hex(&f.bytes)
                {
                    failures.push(format!("{what}: {} facts do not match its bytes", f.style));
                }
                match image::load_from_memory(&f.bytes) {
                    Ok(img) if (img.width(), img.height()) == (f.width, f.height) => {}
                    Ok(img) => failures.push(format!(
                        "{what}: {} decodes to {}x{}, recorded {}x{}",
                        f.style,
                        img.width(),
                        img.height(),
                        f.width,
                        f.height
                    )),
                    Err(e) => failures.push(format!("{what}: {} does not decode: {e}", f.style)),
                }
            }
        }
    }
}

// ---- limits ----

#[test]
fn a_file_over_the_byte_limit_is_refused_and_one_at_the_limit_is_accepted() {
    let jpeg = fixture("jpeg/exif_iptc_nokia.jpg");
    let len = jpeg.len() as u64;
    let err = render_err(&jpeg, None, &limits(len - 1, u64::MAX));
    assert_eq!(err.code(), "too-many-bytes");
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert!(err.to_string().contains(&len.to_string()), "{err}");
    render_with(&jpeg, None, &limits(len, u64::MAX));
}

#[test]
fn an_image_over_the_pixel_limit_is_refused_and_one_at_the_limit_is_accepted() {
    let jpeg = fixture("jpeg/exif_iptc_nokia.jpg"); // 640x480
    let settings = limits(u64::MAX, 640 * 480 - 1);
    let err = render_err(&jpeg, None, &settings);
    assert_eq!(err.code(), "too-many-pixels");
    assert!(err.to_string().contains("640x480"), "{err}");
    assert_eq!(
        easel_render::inspect(&jpeg, &settings).unwrap_err().code(),
        "too-many-pixels"
    );
    render_with(&jpeg, None, &limits(u64::MAX, 640 * 480));
}

/// A complete, valid 20000x20000 PNG (1-bit grey, all zeros): 400 million
/// pixels that deflate to a few tens of kilobytes.
fn png_bomb() -> Vec<u8> {
    let (w, h) = (20_000u32, 20_000u32);
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::One);
        encoder.set_compression(png::Compression::High);
        let mut writer = encoder.write_header().unwrap();
        let mut stream = writer.stream_writer().unwrap();
        let row = vec![0u8; w as usize / 8];
        for _ in 0..h {
            std::io::Write::write_all(&mut stream, &row).unwrap();
        }
        stream.finish().unwrap();
    }
    out
}

#[test]
fn a_20000x20000_png_bomb_is_refused_from_its_header_alone() {
    let bomb = png_bomb();
    assert!(bomb.len() < 100_000, "the bomb is {} bytes", bomb.len());
    let defaults = Settings::default();
    // `probe` reads the header only; refusing there means no pixel buffer.
    let probed = easel_render::probe(&bomb, &defaults.limits).unwrap_err();
    assert_eq!(probed.code(), "too-many-pixels");
    assert!(probed.to_string().contains("20000x20000"), "{probed}");
    assert_eq!(
        easel_render::inspect(&bomb, &defaults).unwrap_err().code(),
        "too-many-pixels"
    );
    assert_eq!(render_err(&bomb, None, &defaults).code(), "too-many-pixels");
}

#[test]
fn an_oversized_header_followed_by_junk_pixel_data_is_refused_for_its_size_not_its_corruption() {
    // The limit is checked before anything reads the pixel data: a header
    // claiming 20000x20000 followed by IDAT junk that no inflater accepts
    // still says too-many-pixels, not corrupt-image.
    let bomb = png_bomb();
    let mut junk = bomb[..8 + 25].to_vec(); // signature + IHDR
    let idat = b"this is not a zlib stream";
    junk.extend_from_slice(&(idat.len() as u32).to_be_bytes());
    junk.extend_from_slice(b"IDAT");
    junk.extend_from_slice(idat);
    junk.extend_from_slice(&crc32(&[b"IDAT".as_slice(), idat].concat()).to_be_bytes());
    junk.extend_from_slice(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]);
    assert_eq!(
        render_err(&junk, None, &Settings::default()).code(),
        "too-many-pixels"
    );

    // The same for a JPEG whose frame header claims 60000x60000. (Made
    // here, so no EXIF thumbnail carries a second SOF0 to confuse the patch.)
    let mut jpeg = encode_jpeg(
        &quadrants(
            64,
            64,
            [[9, 9, 9], [90, 90, 90], [180, 180, 180], [250, 250, 250]],
        ),
        90,
    );
    let (segments, _) = jpeg_segments(&jpeg);
    assert_eq!(segments.iter().filter(|s| s.marker == 0xC0).count(), 1);
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    let err = render_err(&jpeg, None, &Settings::default());
    assert_eq!(err.code(), "too-many-pixels", "{err}");
    assert!(err.to_string().contains("60000x60000"), "{err}");
}

#[test]
fn out_of_range_settings_are_refused_before_any_work() {
    let jpeg = fixture("jpeg/exif_iptc_nokia.jpg");
    let bad = Settings {
        jpeg_quality: 0,
        ..Settings::default()
    };
    assert_eq!(render_err(&jpeg, None, &bad).code(), "invalid-settings");
    assert_eq!(
        render_err(&jpeg, None, &limits(0, 1)).code(),
        "invalid-settings"
    );
}

// ---- corrupt and non-image input ----

#[test]
fn every_corrupt_fixture_returns_a_typed_error() {
    let cases = [
        ("corrupt/corrupted_3648x2736.jpg", "corrupt-image"),
        ("corrupt/truncated_jpeg.jpg", "corrupt-image"),
        ("corrupt/truncated_libvips.jpg", "corrupt-image"),
        ("corrupt/truncated_image.png", "corrupt-image"),
        ("corrupt/broken.png", "corrupt-image"),
    ];
    let mut failures = Vec::new();
    for (name, code) in cases {
        match render_catching(&fixture(name), &Settings::default()) {
            Err(panic) => failures.push(format!("{name}: panicked: {panic}")),
            Ok(Ok(_)) => failures.push(format!("{name}: rendered, want {code}")),
            Ok(Err(e)) if e.code() != code => {
                failures.push(format!("{name}: {} ({e}), want {code}", e.code()))
            }
            Ok(Err(e)) => assert_eq!(e.kind(), ErrorKind::Invalid, "{name}"),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn empty_text_and_junk_after_a_magic_number_get_typed_errors() {
    let defaults = Settings::default();
    let cases: [(&[u8], &str); 9] = [
        (b"", "empty-file"),
        (b"This is my podcast cover, honest.\n", "unsupported-format"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "unsupported-format"),
        (
            b"\x89PNG\r\n\x1a\nthis is not a chunk at all, just junk bytes",
            "corrupt-image",
        ),
        (b"\x89PNG\r\n\x1a\n", "corrupt-image"),
        (
            b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00junk junk junk junk junk junk",
            "corrupt-image",
        ),
        (b"\xFF\xD8\xFF", "corrupt-image"),
        (b"GIF89a\x01", "corrupt-image"),
        (b"II*\0\xff\xff\xff\xff", "corrupt-image"),
    ];
    for (bytes, code) in cases {
        let err = render_err(bytes, None, &defaults);
        assert_eq!(
            err.code(),
            code,
            "{:?}: {err}",
            String::from_utf8_lossy(bytes)
        );
    }
    let text = render_err(b"hello", None, &defaults);
    assert_eq!(text.kind(), ErrorKind::Unsupported);
    assert!(text.to_string().contains("text"), "{text}");
}

/// Cut points: every length up to 80 bytes (the headers), then `stride`.
fn cut_points(len: usize, stride: usize) -> impl Iterator<Item = usize> {
    (0..80.min(len)).chain((80..len).step_by(stride))
}

#[test]
fn a_jpeg_cut_short_anywhere_returns_a_typed_error() {
    let mut failures = Vec::new();
    for name in [
        "jpeg/exif_iptc_nokia.jpg",
        "jpeg/hopper_orientation_6.jpg",
        "jpeg/progressive_app13_iptc.jpg",
    ] {
        let jpeg = fixture(name);
        for cut in cut_points(jpeg.len(), 61) {
            let what = format!("{name} cut at {cut} of {}", jpeg.len());
            match render_catching(&jpeg[..cut], &Settings::default()) {
                Ok(Ok(_)) => failures.push(format!("{what}: rendered a truncated file")),
                outcome => check_outcome(outcome, &what, &mut failures),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
}

#[test]
fn a_png_cut_short_anywhere_returns_a_typed_error() {
    let mut failures = Vec::new();
    for name in [
        "png/gray_alpha_la.png",
        "png/rgba_transparent.png",
        "png/palette_indexed.png",
    ] {
        let png = fixture(name);
        // The IEND chunk carries no pixels: losing only (part of) it leaves a
        // complete image, which may render.
        let iend = png.len() - 12;
        for cut in cut_points(png.len(), 127) {
            let what = format!("{name} cut at {cut} of {}", png.len());
            let outcome = render_catching(&png[..cut], &Settings::default());
            if cut < iend && matches!(outcome, Ok(Ok(_))) {
                failures.push(format!("{what}: rendered a truncated file"));
            }
            check_outcome(outcome, &what, &mut failures);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
}

#[test]
fn a_tiff_cut_short_anywhere_returns_a_typed_error() {
    let mut failures = Vec::new();
    for name in [
        "corpus/pillow-tiff_tiled_planar_lzw.tiff",
        "corpus/pillow-tiff_16bit_RGBa.tiff",
        "corpus/pillow-tiff_strip_ycbcr_jpeg_2x2_sampling.tif",
        "corpus/pillow-hopper_bigtiff.tif",
    ] {
        let tiff = fixture(name);
        for cut in cut_points(tiff.len(), 997) {
            let what = format!("{name} cut at {cut} of {}", tiff.len());
            let outcome = render_catching(&tiff[..cut], &Settings::default());
            // Pixel data is most of these files: losing a tenth loses pixels.
            if cut < tiff.len() * 9 / 10 && matches!(outcome, Ok(Ok(_))) {
                failures.push(format!("{what}: rendered a truncated file"));
            }
            check_outcome(outcome, &what, &mut failures);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
}

// ---- mutation fuzzing on a small budget ----

fn mutate(rng: &mut XorShift, original: &[u8]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        match rng.below(6) {
            0 => bytes[at] = rng.next() as u8,
            1 => bytes[at] ^= 1 << rng.below(8),
            2 => bytes[at] = [0x00, 0xFF, 0x7F, 0x80][rng.below(4)],
            3 => {
                let end = (at + 1 + rng.below(64)).min(bytes.len());
                bytes.drain(at..end);
            }
            4 => {
                let len = 1 + rng.below(32);
                let filler = rng.next() as u8;
                bytes.splice(at..at, std::iter::repeat_n(filler, len));
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

#[test]
fn mutated_fixtures_never_panic_and_never_give_an_unsound_rendition() {
    // Small limits keep a mutated size field from asking for gigabytes.
    let settings = limits(1 << 20, 4_000_000);
    let inputs = [
        "jpeg/hopper_orientation_6.jpg",
        "jpeg/cmyk_pil_sample.jpg",
        "jpeg/progressive_app13_iptc.jpg",
        "png/gray_alpha_la.png",
        "png/gray16_trns.png",
        "png/rgba16_mode_16bit.png",
        // libtiff, through each of our two ways in, and WebP's EXIF.
        "corpus/pillow-tiff_tiled_planar_16bit_RGBa.tiff",
        "corpus/pillow-tiff_strip_ycbcr_jpeg_2x2_sampling.tif",
        "corpus/libvips-ojpeg-tile.tif",
        "corpus/pillow-hopper_g4.tif",
        "corpus/pillow-16bit.r.tif",
        "corpus/pillow-hopper_bigtiff.tif",
        "corpus/pillow-tiff_strip_cmyk_jpeg.tif",
        "corpus/pillow-hopper_orientation_6.webp",
    ];
    let mut rng = XorShift(0x5EED_EA5E_1000_0001);
    let mut failures = Vec::new();
    let mut rendered = 0;
    for name in inputs {
        let original = fixture(name);
        for case in 0..64 {
            let mutant = mutate(&mut rng, &original);
            let outcome = render_catching(&mutant, &settings);
            if matches!(outcome, Ok(Ok(_))) {
                rendered += 1;
            }
            check_outcome(outcome, &format!("{name} mutant {case}"), &mut failures);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    // Mutating a few bytes of pixel data usually leaves a renderable file; if
    // nothing renders, the mutations are not reaching the decoders.
    assert!(rendered > 0, "no mutant rendered");
}

#[test]
fn a_valid_file_still_renders_after_the_error_tests() {
    // Guards against a decoder left in a bad state by earlier failures in
    // the same process (libjpeg-turbo handles are per call, but check).
    let _ = render_catching(&fixture("corrupt/truncated_jpeg.jpg"), &Settings::default());
    let r = render(&fixture("jpeg/exif_iptc_nokia.jpg"), None);
    assert_eq!(file(&r, Style::Thumb).width, 100);
}
