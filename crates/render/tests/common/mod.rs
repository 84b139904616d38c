//! Helpers shared by the integration tests.
//!
//! The checks here deliberately avoid the engine's own code paths: JPEGs are
//! decoded with the `image` crate (zune-jpeg, not libjpeg-turbo), and JPEG
//! segments and PNG chunks are parsed by hand, so a test cannot pass by
//! sharing a bug with the code it checks.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;

use easel_render::{Crop, RenderError, RenderedFile, Rendition, Settings, Style};
use image::{ImageEncoder, Rgb, RgbImage, RgbaImage};

/// A file from the repository's real-world fixtures (see fixtures/SOURCES.md).
pub fn fixture_path(relative: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures")).join(relative)
}

pub fn fixture(relative: &str) -> Vec<u8> {
    let path = fixture_path(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

pub fn render(bytes: &[u8], crop: Option<Crop>) -> Rendition {
    render_with(bytes, crop, &Settings::default())
}

pub fn render_with(bytes: &[u8], crop: Option<Crop>, settings: &Settings) -> Rendition {
    easel_render::render(bytes.to_vec(), crop, settings)
        .unwrap_or_else(|e| panic!("render failed with {}: {e}", e.code()))
}

pub fn render_err(bytes: &[u8], crop: Option<Crop>, settings: &Settings) -> RenderError {
    match easel_render::render(bytes.to_vec(), crop, settings) {
        Ok(r) => panic!(
            "expected an error, got {} files for a {}x{} image",
            r.files.len(),
            r.source.width,
            r.source.height
        ),
        Err(e) => e,
    }
}

pub fn file(rendition: &Rendition, style: Style) -> &RenderedFile {
    rendition
        .file(style)
        .unwrap_or_else(|| panic!("no {style} among {:?}", styles_of(rendition)))
}

pub fn styles_of(rendition: &Rendition) -> Vec<Style> {
    rendition.files.iter().map(|f| f.style).collect()
}

/// Decodes any output with the `image` crate, ignoring EXIF orientation (the
/// engine must have baked it in already).
pub fn decode_rgb(bytes: &[u8]) -> RgbImage {
    image::load_from_memory(bytes)
        .expect("the output decodes")
        .to_rgb8()
}

pub fn decode_rgba(bytes: &[u8]) -> RgbaImage {
    image::load_from_memory(bytes)
        .expect("the input decodes")
        .to_rgba8()
}

pub fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(
        a.dimensions(),
        b.dimensions(),
        "compared images differ in size"
    );
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y) as u64)
        .sum();
    total as f64 / a.as_raw().len() as f64
}

/// Mean absolute difference of the `block`x`block` averages: blind to the
/// chroma subsampling of JPEG 4:2:0 at sharp colour edges, not to a wrong
/// colour over an area.
pub fn block_mean_abs_diff(a: &RgbImage, b: &RgbImage, block: u32) -> f64 {
    assert_eq!(
        a.dimensions(),
        b.dimensions(),
        "compared images differ in size"
    );
    let shrink = |img: &RgbImage| {
        let (w, h) = (img.width() / block, img.height() / block);
        RgbImage::from_fn(w, h, |bx, by| {
            Rgb(mean_colour(
                img,
                bx * block + block / 2,
                by * block + block / 2,
                block / 2,
            ))
        })
    };
    mean_abs_diff(&shrink(a), &shrink(b))
}

pub fn pixel(img: &RgbImage, x: u32, y: u32) -> [u8; 3] {
    img.get_pixel(x, y).0
}

/// The mean colour of a small square around (x, y): robust to JPEG noise.
pub fn mean_colour(img: &RgbImage, cx: u32, cy: u32, radius: u32) -> [u8; 3] {
    let mut sum = [0u64; 3];
    let mut n = 0u64;
    for y in cy.saturating_sub(radius)..=(cy + radius).min(img.height() - 1) {
        for x in cx.saturating_sub(radius)..=(cx + radius).min(img.width() - 1) {
            for (s, v) in sum.iter_mut().zip(img.get_pixel(x, y).0) {
                *s += v as u64;
            }
            n += 1;
        }
    }
    sum.map(|s| ((s + n / 2) / n) as u8)
}

pub fn assert_colour_near(got: [u8; 3], want: [u8; 3], tolerance: u8, what: &str) {
    let off = got.iter().zip(want).any(|(g, w)| g.abs_diff(w) > tolerance);
    assert!(!off, "{what}: got {got:?}, want {want:?} (±{tolerance})");
}

/// A `width`x`height` image split into four flat quadrants:
/// top-left, top-right, bottom-left, bottom-right.
pub fn quadrants(width: u32, height: u32, colours: [[u8; 3]; 4]) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let right = x >= width / 2;
        let bottom = y >= height / 2;
        Rgb(colours[(bottom as usize) * 2 + right as usize])
    })
}

pub fn encode_png_rgb(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

pub fn encode_png_rgba(img: &RgbaImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgba8,
        )
        .unwrap();
    out
}

pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .unwrap();
    out
}

/// One JPEG marker segment before the first scan.
#[derive(Debug, Clone)]
pub struct Segment {
    pub marker: u8,
    pub payload: Vec<u8>,
}

/// The marker segments of a JPEG from SOI up to and including the first SOS,
/// and the offset where the entropy-coded data of that scan begins.
pub fn jpeg_segments(bytes: &[u8]) -> (Vec<Segment>, usize) {
    assert!(bytes.starts_with(&[0xFF, 0xD8]), "not a JPEG: no SOI");
    let mut segments = Vec::new();
    let mut i = 2;
    loop {
        assert!(i + 4 <= bytes.len(), "the JPEG ends inside its header");
        assert_eq!(bytes[i], 0xFF, "expected a marker at {i}");
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        assert!(
            len >= 2 && i + 2 + len <= bytes.len(),
            "bad segment length at {i}"
        );
        segments.push(Segment {
            marker,
            payload: bytes[i + 4..i + 2 + len].to_vec(),
        });
        i += 2 + len;
        if marker == 0xDA {
            return (segments, i);
        }
    }
}

/// Describes every segment that carries metadata rather than pixels or
/// colour: empty for a properly stripped JPEG.
pub fn jpeg_metadata_segments(bytes: &[u8]) -> Vec<String> {
    let (segments, _) = jpeg_segments(bytes);
    segments
        .iter()
        .filter(|s| match s.marker {
            0xE0 => !s.payload.starts_with(b"JFIF\0"),
            0xE2 => !s.payload.starts_with(b"ICC_PROFILE\0"),
            0xEE => !s.payload.starts_with(b"Adobe"),
            0xE1..=0xEF | 0xFE => true,
            _ => false,
        })
        .map(|s| {
            let tag: String = s
                .payload
                .iter()
                .take(12)
                .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
                .collect();
            format!("marker 0x{:02X} ({tag})", s.marker)
        })
        .collect()
}

/// The ICC profile of a JPEG, reassembled from its APP2 chunks in sequence order.
pub fn jpeg_icc(bytes: &[u8]) -> Option<Vec<u8>> {
    let (segments, _) = jpeg_segments(bytes);
    let mut chunks: Vec<(u8, &[u8])> = segments
        .iter()
        .filter(|s| s.marker == 0xE2 && s.payload.starts_with(b"ICC_PROFILE\0"))
        .map(|s| (s.payload[12], &s.payload[14..]))
        .collect();
    if chunks.is_empty() {
        return None;
    }
    chunks.sort_by_key(|(seq, _)| *seq);
    Some(
        chunks
            .into_iter()
            .flat_map(|(_, data)| data.iter().copied())
            .collect(),
    )
}

/// Inserts a marker segment right after SOI.
pub fn jpeg_with_segment(jpeg: &[u8], marker: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len() + 2).expect("segment fits");
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A JPEG ICC profile as APP2 chunks (one chunk: tests use small profiles).
pub fn jpeg_with_icc(jpeg: &[u8], icc: &[u8]) -> Vec<u8> {
    let mut payload = b"ICC_PROFILE\0".to_vec();
    payload.extend_from_slice(&[1, 1]);
    payload.extend_from_slice(icc);
    jpeg_with_segment(jpeg, 0xE2, &payload)
}

/// A big-endian TIFF structure holding one IFD with the Orientation tag.
pub fn exif_tiff_with_orientation(orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2A".to_vec();
    tiff.extend_from_slice(&8u32.to_be_bytes()); // IFD0 right after the header
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // one value
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    tiff
}

pub fn jpeg_with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&exif_tiff_with_orientation(orientation));
    jpeg_with_segment(jpeg, 0xE1, &payload)
}

pub fn png_with_orientation(png: &[u8], orientation: u16) -> Vec<u8> {
    png_with_chunk(png, *b"eXIf", &exif_tiff_with_orientation(orientation))
}

/// The chunks of a PNG, each checked against its CRC.
pub fn png_chunks(bytes: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let mut chunks = Vec::new();
    let mut i = 8;
    while i < bytes.len() {
        assert!(i + 12 <= bytes.len(), "the PNG ends inside a chunk header");
        let len = u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = bytes[i + 4..i + 8].try_into().unwrap();
        let end = i + 8 + len;
        assert!(
            end + 4 <= bytes.len(),
            "chunk {} overruns the file",
            String::from_utf8_lossy(&kind)
        );
        let crc = u32::from_be_bytes(bytes[end..end + 4].try_into().unwrap());
        assert_eq!(
            crc,
            crc32(&bytes[i + 4..end]),
            "bad CRC on {}",
            String::from_utf8_lossy(&kind)
        );
        chunks.push((kind, bytes[i + 8..end].to_vec()));
        i = end + 4;
    }
    chunks
}

pub fn png_chunk_names(bytes: &[u8]) -> Vec<String> {
    png_chunks(bytes)
        .into_iter()
        .map(|(kind, _)| String::from_utf8_lossy(&kind).into_owned())
        .collect()
}

/// Inserts a chunk right after IHDR (where EXIF and text must come to be
/// read before the pixels).
pub fn png_with_chunk(png: &[u8], kind: [u8; 4], data: &[u8]) -> Vec<u8> {
    let ihdr_end = 8 + 8 + 13 + 4;
    assert_eq!(&png[12..16], b"IHDR");
    let mut chunk = Vec::new();
    chunk.extend_from_slice(&(data.len() as u32).to_be_bytes());
    chunk.extend_from_slice(&kind);
    chunk.extend_from_slice(data);
    chunk.extend_from_slice(&crc32(&chunk[4..]).to_be_bytes());
    let mut out = png[..ihdr_end].to_vec();
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&png[ihdr_end..]);
    out
}

/// CRC-32 (ISO-HDLC), as PNG uses it; bitwise because speed does not matter.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A tiny deterministic generator, so "random" inputs are the same on every run.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
