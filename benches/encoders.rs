//! Why the engine encodes with libjpeg-turbo: the same 3024x3024 crop of a
//! camera photo, quality 85, 4:2:0, through each candidate encoder. Prints
//! each encoder's output size once, so speed is read next to file size.

use criterion::{criterion_group, criterion_main, Criterion};
use image::ImageEncoder;

const PHOTO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/photo/olympus_e-p3_4032x3024.jpg"
);
const QUALITY: u8 = 85;

struct Crop {
    rgb: Vec<u8>,
    side: usize,
}

fn centre_square() -> Crop {
    let jpeg = std::fs::read(PHOTO).expect("fixtures/photo holds the camera photo");
    let full = turbojpeg::decompress(&jpeg, turbojpeg::PixelFormat::RGB).expect("a valid photo");
    let side = full.width.min(full.height);
    let x0 = (full.width - side) / 2;
    let mut rgb = Vec::with_capacity(side * side * 3);
    for row in full.pixels.chunks_exact(full.pitch).take(side) {
        rgb.extend_from_slice(&row[x0 * 3..(x0 + side) * 3]);
    }
    Crop { rgb, side }
}

fn turbo(c: &Crop) -> Vec<u8> {
    let mut compressor = turbojpeg::Compressor::new().unwrap();
    compressor.set_quality(QUALITY as i32).unwrap();
    compressor.set_subsamp(turbojpeg::Subsamp::Sub2x2).unwrap();
    let image = turbojpeg::Image {
        pixels: c.rgb.as_slice(),
        width: c.side,
        pitch: c.side * 3,
        height: c.side,
        format: turbojpeg::PixelFormat::RGB,
    };
    compressor.compress_to_vec(image).unwrap()
}

fn jpeg_encoder(c: &Crop) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, QUALITY);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    let side = c.side as u16;
    encoder
        .encode(&c.rgb, side, side, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

fn image_crate(c: &Crop) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, QUALITY)
        .write_image(
            &c.rgb,
            c.side as u32,
            c.side as u32,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

type Encoder = fn(&Crop) -> Vec<u8>;

fn encoders(criterion: &mut Criterion) {
    let crop = centre_square();
    let candidates: [(&str, Encoder); 3] = [
        ("turbojpeg", turbo),
        ("jpeg-encoder", jpeg_encoder),
        ("image", image_crate),
    ];
    let mut group = criterion.benchmark_group("encode 3024x3024 q85");
    group.sample_size(10);
    for (name, encode) in candidates {
        eprintln!("{name}: {} bytes", encode(&crop).len());
        group.bench_function(name, |b| b.iter(|| encode(&crop)));
    }
    group.finish();
}

criterion_group!(benches, encoders);
criterion_main!(benches);
