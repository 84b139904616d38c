//! A JPEG render decodes only its crop (and the pixels the resizes read
//! around it): its files must be the ones a whole decode gives.
//!
//! The whole decode is the engine's own PNG path fed the very pixels
//! libjpeg-turbo decodes from the JPEG, so any file that differs comes
//! from decoding less of the JPEG.

mod common;

use common::{encode_png_rgb, fixture, render_with};
use easel_render::{Crop, Settings, Style};
use image::RgbImage;

/// libjpeg-turbo's pixels of a JPEG, as the engine decodes them.
fn turbo_pixels(jpeg: &[u8]) -> RgbImage {
    let image = turbojpeg::decompress(jpeg, turbojpeg::PixelFormat::RGB).unwrap();
    RgbImage::from_raw(image.width as u32, image.height as u32, image.pixels).unwrap()
}

/// A 1601x1203 JPEG cut from a camera photo (no ICC profile, no EXIF), and
/// a PNG of the pixels it decodes to.
fn jpeg_and_png_of_its_pixels() -> (Vec<u8>, Vec<u8>) {
    let photo = turbo_pixels(&fixture("photo/olympus_e-p3_4032x3024.jpg"));
    let patch = image::imageops::crop_imm(&photo, 1201, 803, 1601, 1203).to_image();
    let mut compressor = turbojpeg::Compressor::new().unwrap();
    compressor.set_quality(90).unwrap();
    compressor.set_subsamp(turbojpeg::Subsamp::Sub2x2).unwrap();
    let jpeg = compressor
        .compress_to_vec(turbojpeg::Image {
            pixels: patch.as_raw().as_slice(),
            width: patch.width() as usize,
            pitch: patch.width() as usize * 3,
            height: patch.height() as usize,
            format: turbojpeg::PixelFormat::RGB,
        })
        .unwrap();
    let png = encode_png_rgb(&turbo_pixels(&jpeg));
    (jpeg, png)
}

#[test]
fn a_jpeg_decoded_only_around_its_crop_renders_the_files_of_a_whole_decode() {
    let (jpeg, png) = jpeg_and_png_of_its_pixels();
    let crops = [
        None,
        Some(Crop::new(301, 157, 1000, 800).unwrap()),
        Some(Crop::new(1, 2, 640, 641).unwrap()),
        Some(Crop::new(950, 601, 651, 602).unwrap()),
        Some(Crop::new(777, 0, 97, 1203).unwrap()),
    ];
    for cascade in [true, false] {
        let settings = Settings {
            resize_cascade: cascade,
            ..Settings::default()
        };
        for crop in crops {
            let from_jpeg = render_with(&jpeg, crop, &settings);
            let from_png = render_with(&png, crop, &settings);
            let styles: Vec<Style> = from_png.files.iter().map(|f| f.style).collect();
            assert_eq!(
                from_jpeg.files.iter().map(|f| f.style).collect::<Vec<_>>(),
                styles
            );
            for (a, b) in from_jpeg.files.iter().zip(&from_png.files) {
                if a.style == Style::StrippedOriginal {
                    // The original's own bytes in either case: not pixels.
                    continue;
                }
                assert_eq!(
                    (a.width, a.height, &a.sha256),
                    (b.width, b.height, &b.sha256),
                    "{} of crop {crop:?}, cascade {cascade}",
                    a.style
                );
            }
        }
    }
}

#[test]
fn a_jpeg_cut_short_below_its_crop_is_still_refused_as_corrupt() {
    let photo = turbo_pixels(&fixture("photo/olympus_e-p3_4032x3024.jpg"));
    let tall = image::imageops::crop_imm(&photo, 1000, 0, 1200, 2400).to_image();
    let jpeg = {
        let mut compressor = turbojpeg::Compressor::new().unwrap();
        compressor.set_quality(90).unwrap();
        compressor
            .compress_to_vec(turbojpeg::Image {
                pixels: tall.as_raw().as_slice(),
                width: 1200,
                pitch: 1200 * 3,
                height: 2400,
                format: turbojpeg::PixelFormat::RGB,
            })
            .unwrap()
    };
    // The last tenth of the scan is gone: rows far below the crop.
    let cut = &jpeg[..jpeg.len() * 9 / 10];
    let top = Crop::new(0, 0, 1200, 1200).unwrap();
    let err = common::render_err(cut, Some(top), &Settings::default());
    assert_eq!(err.code(), "corrupt-image", "{err}");
    assert!(err.to_string().contains("Premature end"), "{err}");
    // The same crop of the whole file renders.
    render_with(&jpeg, Some(top), &Settings::default());
}
