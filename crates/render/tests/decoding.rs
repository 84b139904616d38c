//! What designers send, decoded right or refused for the true reason: TIFF
//! through libtiff, JPEG warnings that do and do not mean damage, EXIF
//! orientation in WebP and PNG, and the probe's header facts.

mod common;

use std::io::Cursor;

use common::{
    decode_rgb, decode_rgba, encode_png_rgb, file, fixture, pixel, quadrants, render, render_err,
};
use easel_render::{metadata_found, Settings, Style};
use image::{Rgb, RgbImage};
use tiff::encoder::{colortype, TiffEncoder};
use tiff::tags::{ExtraSamples, Tag};

const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 255, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const WHITE: [u8; 3] = [255, 255, 255];

fn stripped_png(bytes: &[u8]) -> (Vec<u8>, u32, u32) {
    let rendition = render(bytes, None);
    let stripped = file(&rendition, Style::StrippedOriginal);
    assert_eq!(stripped.mimetype, "image/png");
    (stripped.bytes.clone(), stripped.width, stripped.height)
}

#[test]
fn a_tiled_planar_tiff_decodes_where_the_tiff_crate_panicked() {
    let bytes = fixture("corpus/pillow-tiff_tiled_planar_lzw.tiff");
    let rendition = render(&bytes, None);
    assert_eq!(
        (rendition.source.width, rendition.source.height),
        (278, 374)
    );
    // The same picture stored strip by strip, contiguous (the reference).
    let reference = render(
        &fixture("corpus/pillow-tiff_tiled_planar_16bit_RGBa.tiff"),
        None,
    );
    assert_eq!(reference.source.width, 100);
    let regular = decode_rgb(&file(&rendition, Style::Regular).bytes);
    // Not a black or single-colour frame: planes 2 and 3 were read too.
    let colours: std::collections::HashSet<[u8; 3]> =
        regular.pixels().map(|p| p.0.map(|v| v / 32)).collect();
    assert!(colours.len() > 40, "{} colours", colours.len());
}

#[test]
fn thirty_two_bit_integer_samples_keep_every_gradation() {
    // A 256-step ramp spread over the whole 32-bit range.
    let (w, h) = (256u32, 2u32);
    let data: Vec<u32> = (0..h)
        .flat_map(|_| (0..w).flat_map(|x| [x * 0x0101_0101; 3]))
        .collect();
    let mut tif = Vec::new();
    TiffEncoder::new(Cursor::new(&mut tif))
        .unwrap()
        .write_image::<colortype::RGB32>(w, h, &data)
        .unwrap();
    let (png, width, height) = stripped_png(&tif);
    assert_eq!((width, height), (w, h));
    let decoded = decode_rgb(&png);
    for x in 0..w {
        assert_eq!(pixel(&decoded, x, 0), [x as u8; 3], "column {x}");
    }
}

#[test]
fn floating_point_samples_are_linear_light_encoded_to_srgb() {
    // Linear 0.0, 0.2159 (sRGB 128, mid grey), 1.0 and an out-of-range 4.0.
    let values = [0.0f32, 0.2159, 1.0, 4.0];
    let data: Vec<f32> = values.iter().flat_map(|v| [*v; 3]).collect();
    let mut tif = Vec::new();
    TiffEncoder::new(Cursor::new(&mut tif))
        .unwrap()
        .write_image::<colortype::RGB32Float>(4, 1, &data)
        .unwrap();
    let (png, _, _) = stripped_png(&tif);
    let decoded = decode_rgb(&png);
    let got: Vec<u8> = (0..4).map(|x| pixel(&decoded, x, 0)[0]).collect();
    assert_eq!(got, vec![0, 128, 255, 255]);
}

/// Writes a 16-bit RGB TIFF with one alpha sample of the given kind.
fn rgba16_tiff(pixels: &[[u16; 4]], width: u32, alpha: ExtraSamples) -> Vec<u8> {
    let mut tif = Vec::new();
    let mut encoder = TiffEncoder::new(Cursor::new(&mut tif)).unwrap();
    let height = pixels.len() as u32 / width;
    let mut image = encoder
        .new_image::<colortype::RGB16>(width, height)
        .unwrap();
    image.extra_samples(&[alpha]).unwrap();
    let data: Vec<u16> = pixels.iter().flatten().copied().collect();
    image.write_data(&data).unwrap();
    tif
}

#[test]
fn associated_alpha_is_divided_out_once_and_unassociated_alpha_kept() {
    // Half-transparent pure red: premultiplied it is stored as half red.
    let half = 32768u16;
    let associated = rgba16_tiff(&[[half, 0, 0, half]; 4], 2, ExtraSamples::AssociatedAlpha);
    let unassociated = rgba16_tiff(
        &[[65535, 0, 0, half]; 4],
        2,
        ExtraSamples::UnassociatedAlpha,
    );
    for (what, tif) in [("associated", associated), ("unassociated", unassociated)] {
        let (png, _, _) = stripped_png(&tif);
        let px = decode_rgba(&png).get_pixel(0, 0).0;
        assert!(
            px[0] >= 254 && px[1] == 0 && px[2] == 0 && px[3].abs_diff(128) <= 1,
            "{what}: {px:?}"
        );
        // On white: pink (255, 127, 127), not the washed-out (255, 191, 191)
        // of multiplying by alpha twice.
        let rendition = render(&tif, None);
        let regular = decode_rgb(&file(&rendition, Style::Regular).bytes);
        let got = pixel(&regular, 0, 0);
        assert!(
            got[0] >= 250 && got[1].abs_diff(127) <= 6 && got[2].abs_diff(127) <= 6,
            "{what} on white: {got:?}"
        );
    }
}

#[test]
fn a_tiff_keeps_its_icc_profile_in_the_stripped_original() {
    let bytes = fixture("corpus/pillow-hopper.iccprofile.tif");
    let rendition = render(&bytes, None);
    assert!(rendition.source.had_icc_profile);
    let stripped = &file(&rendition, Style::StrippedOriginal).bytes;
    let chunks = common::png_chunk_names(stripped);
    assert!(chunks.contains(&"iCCP".to_string()), "{chunks:?}");
    assert!(metadata_found(stripped).is_empty());
}

#[test]
fn the_tiff_orientation_tag_turns_the_picture_once() {
    // Red/green over blue/white; Orientation 6 means "rotate 90° clockwise".
    let img = quadrants(4, 2, [RED, GREEN, BLUE, WHITE]);
    let mut tif = Vec::new();
    let mut encoder = TiffEncoder::new(Cursor::new(&mut tif)).unwrap();
    let mut image = encoder.new_image::<colortype::RGB8>(4, 2).unwrap();
    image.encoder().write_tag(Tag::Orientation, 6u16).unwrap();
    image.write_data(img.as_raw()).unwrap();
    let (png, width, height) = stripped_png(&tif);
    assert_eq!((width, height), (2, 4));
    let turned = decode_rgb(&png);
    // Rotated clockwise: the bottom-left (blue) is now top-left.
    assert_eq!(pixel(&turned, 0, 0), BLUE);
    assert_eq!(pixel(&turned, 1, 0), RED);
    assert_eq!(pixel(&turned, 0, 3), WHITE);
    assert_eq!(pixel(&turned, 1, 3), GREEN);
}

#[test]
fn unsupported_tiff_features_are_named_and_not_called_corrupt() {
    let lab = render_err(
        &fixture("corpus/pillow-lab-red.tif"),
        None,
        &Settings::default(),
    );
    assert_eq!(lab.code(), "unsupported-format");
    assert!(lab.to_string().contains("CIELab"), "{lab}");
    // Refused at the probe, so an upload is refused before it is stored.
    let probed = easel_render::probe(
        &fixture("corpus/pillow-12bit.cropped.tif"),
        &Settings::default().limits,
    )
    .unwrap_err();
    assert_eq!(probed.code(), "unsupported-format");
    assert!(probed.to_string().contains("12-bit"), "{probed}");
    // Damaged data is still corrupt-image, with libtiff's reason.
    let damaged = render_err(
        &fixture("corpus/pillow-crash-0da013a13571cc8eb457a39fee8db18f8a3c7127.tif"),
        None,
        &Settings::default(),
    );
    assert_eq!(damaged.code(), "corrupt-image");
}

#[test]
fn the_probe_reports_bits_and_channels_for_every_format() {
    let limits = Settings::default().limits;
    let probe = |path: &str| {
        let p = easel_render::probe(&fixture(path), &limits).unwrap();
        (p.bits_per_sample, p.channels)
    };
    assert_eq!(probe("photo/iphone6_3264x2448.jpg"), (8, 3));
    assert_eq!(probe("jpeg/cmyk_pil_sample.jpg"), (8, 4));
    assert_eq!(probe("png/rgba16_mode_16bit.png"), (16, 4));
    assert_eq!(probe("png/palette_indexed.png"), (8, 3));
    assert_eq!(probe("corpus/pillow-tiff_16bit_RGBa.tiff"), (16, 4));
    assert_eq!(probe("corpus/libvips-1bit.tif"), (1, 1));
    // A 1-bit palette image.
    assert_eq!(probe("corpus/pillow-multipage.tiff"), (1, 1));
    assert_eq!(probe("corpus/pillow-10ct_32bit_128.tiff"), (32, 1));
    assert_eq!(probe("corpus/pillow-hopper_orientation_6.webp"), (8, 3));
}

/// A JPEG's bytes with `junk` inserted just before its first DQT segment.
fn with_header_junk(jpeg: &[u8], junk: &[u8]) -> Vec<u8> {
    let at = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xDB])
        .expect("a DQT segment");
    [&jpeg[..at], junk, &jpeg[at..]].concat()
}

#[test]
fn junk_between_jpeg_header_segments_decodes_to_the_same_pixels() {
    let original = fixture("jpeg/hopper_orientation_6.jpg");
    let junked = with_header_junk(&original, &[0x00, 0x12, 0xFF, 0x00, 0x34]);
    let clean = render(&original, None);
    let tolerated = render(&junked, None);
    assert!(
        tolerated.warnings.iter().any(|w| w.contains("extraneous")),
        "{:?}",
        tolerated.warnings
    );
    // Byte for byte: the junk is skipped, nothing else changes.
    assert_eq!(
        file(&clean, Style::Regular).sha256,
        file(&tolerated, Style::Regular).sha256
    );
    let stripped = &file(&tolerated, Style::StrippedOriginal).bytes;
    assert!(metadata_found(stripped).is_empty());
}

#[test]
fn header_junk_does_not_hide_a_truncated_scan() {
    // libjpeg-turbo keeps only its first warning: the junk's. The damage
    // after it must still be found.
    let original = fixture("jpeg/hopper_orientation_6.jpg");
    let junked = with_header_junk(&original, &[0x00, 0x12]);
    let truncated = &junked[..junked.len() * 2 / 3];
    let err = render_err(truncated, None, &Settings::default());
    assert_eq!(err.code(), "corrupt-image");
    assert!(err.to_string().contains("Premature end"), "{err}");
}

#[test]
fn a_jpeg_with_extraneous_bytes_inside_its_scan_is_refused() {
    // Its scan data is damaged (the picture is stripes); libjpeg-turbo
    // only warns of extraneous bytes before a restart marker.
    let err = render_err(
        &fixture("corpus/pillow-hopper_bad_exif.jpg"),
        None,
        &Settings::default(),
    );
    assert_eq!(err.code(), "corrupt-image");
}

#[test]
fn webp_exif_orientation_is_applied_and_baked_into_the_stripped_original() {
    let rendition = render(&fixture("corpus/pillow-hopper_orientation_6.webp"), None);
    assert_eq!(rendition.source.orientation, 6);
    let stripped = file(&rendition, Style::StrippedOriginal);
    // Re-encoded losslessly with the rotation applied, and no EXIF left
    // to rotate it a second time.
    assert_eq!(stripped.mimetype, "image/png");
    assert!(metadata_found(&stripped.bytes).is_empty());
    assert!(!common::png_chunk_names(&stripped.bytes).contains(&"eXIf".to_string()));
}

#[test]
fn png_exif_written_with_jpeg_s_exif_prefix_is_applied_too() {
    // Pillow, ImageMagick and exiftool write "Exif\0\0" before the TIFF
    // header in PNG and WebP chunks.
    let img = quadrants(4, 2, [RED, GREEN, BLUE, WHITE]);
    let plain = common::png_with_orientation(&encode_png_rgb(&img), 6);
    let (_, exif) = common::png_chunks(&plain)
        .into_iter()
        .find(|(kind, _)| kind == b"eXIf")
        .unwrap();
    let png = common::png_with_chunk(
        &encode_png_rgb(&img),
        *b"eXIf",
        &[b"Exif\0\0".as_slice(), &exif].concat(),
    );
    let rendition = render(&png, None);
    assert_eq!(rendition.source.orientation, 6);
    assert_eq!((rendition.source.width, rendition.source.height), (2, 4));
    let stripped = file(&rendition, Style::StrippedOriginal);
    assert!(!common::png_chunk_names(&stripped.bytes).contains(&"eXIf".to_string()));
    let turned = decode_rgb(&stripped.bytes);
    assert_eq!(pixel(&turned, 0, 0), BLUE);
    assert_eq!(pixel(&turned, 1, 3), GREEN);
}

#[test]
fn a_png_without_exif_is_not_turned() {
    let img: RgbImage = RgbImage::from_pixel(3, 2, Rgb(RED));
    let rendition = render(&encode_png_rgb(&img), None);
    assert_eq!(rendition.source.orientation, 1);
    assert_eq!((rendition.source.width, rendition.source.height), (3, 2));
}
