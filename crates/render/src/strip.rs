//! Lossless metadata removal: segments and chunks are dropped, the
//! compressed pixels are copied byte for byte.
//!
//! Kept: whatever decides how the pixels look (ICC, gamma, chromaticity,
//! transparency, Adobe's colour-transform flag, JFIF density, animation).
//! Dropped: EXIF, XMP, IPTC/Photoshop, comments, text, timestamps, maker
//! notes, and data after the image's end (phones append previews and depth
//! maps there).

use img_parts::jpeg::{markers, Jpeg};
use img_parts::png::Png;
use img_parts::webp::{WebP, CHUNK_XMP};
use img_parts::{Bytes, ImageEXIF, ImageICC};

use crate::format::Format;
use crate::RenderError;

/// Strips metadata from an original whose pixels need no change. Returns
/// `None` for formats kept only by re-encoding (GIF, TIFF).
pub(crate) fn strip(original: &Bytes, format: Format) -> Result<Option<Vec<u8>>, RenderError> {
    let (input, bytes) = (original.clone(), original.as_ref());
    let corrupt = |e: img_parts::Error| RenderError::corrupt(format.name(), e);
    let out = match format {
        Format::Jpeg => strip_jpeg(input).map_err(corrupt)?,
        Format::Png => {
            let mut png = Png::from_bytes(input).map_err(corrupt)?;
            png.chunks_mut().retain(|c| png_chunk_is_kept(c.kind()));
            collect(png.encoder(), bytes.len())
        }
        Format::Webp => {
            let mut webp = WebP::from_bytes(input).map_err(corrupt)?;
            webp.remove_chunks_by_id(CHUNK_XMP);
            // Also recomputes the VP8X flags, so no flag points at a removed chunk.
            webp.set_exif(None);
            collect(webp.encoder(), bytes.len())
        }
        Format::Gif | Format::Tiff => return Ok(None),
    };
    Ok(Some(out))
}

/// The encoder's pieces in one buffer, copied once: the file stays whole in
/// memory only as the original and the output.
fn collect<I>(pieces: img_parts::ImageEncoder<I>, size_hint: usize) -> Vec<u8>
where
    img_parts::ImageEncoder<I>: Iterator<Item = Bytes>,
{
    let mut out = Vec::with_capacity(size_hint);
    for piece in pieces {
        out.extend_from_slice(&piece);
    }
    out
}

fn strip_jpeg(input: Bytes) -> Result<Vec<u8>, img_parts::Error> {
    let mut jpeg = match Jpeg::from_bytes(input.clone()) {
        Ok(jpeg) => jpeg,
        // Junk between header segments (which decoding tolerates) trips
        // the segment parser: parse the same segments without it.
        Err(e) => match jpeg_without_header_junk(&input, false) {
            Some(clean) => Jpeg::from_bytes(Bytes::from(clean))?,
            None => return Err(e),
        },
    };
    jpeg.segments_mut()
        .retain(|s| jpeg_segment_is_kept(s.marker(), s.contents()));
    let mut out = collect(jpeg.encoder(), input.len());
    // img-parts keeps everything after the first scan header as "entropy",
    // including trailing data after EOI. Cut at the primary image's end.
    if let Some(end) = primary_image_end(&out) {
        out.truncate(end);
    }
    Ok(out)
}

fn jpeg_segment_is_kept(marker: u8, contents: &[u8]) -> bool {
    match marker {
        markers::APP0 => contents.starts_with(b"JFIF\0"),
        markers::APP2 => contents.starts_with(b"ICC_PROFILE\0"),
        // Adobe's APP14 says whether YCC/YCCK was used: decoders need it.
        markers::APP14 => contents.starts_with(b"Adobe"),
        markers::APP1..=markers::APP15 | markers::COM => false,
        _ => true,
    }
}

fn png_chunk_is_kept(kind: [u8; 4]) -> bool {
    matches!(
        &kind,
        b"IHDR"
            | b"PLTE"
            | b"IDAT"
            | b"IEND"
            | b"tRNS"
            | b"gAMA"
            | b"cHRM"
            | b"sRGB"
            | b"iCCP"
            | b"sBIT"
            | b"cICP"
            | b"mDCv"
            | b"cLLi"
            | b"pHYs"
            | b"bKGD"
            | b"acTL"
            | b"fcTL"
            | b"fdAT"
    )
}

/// The JPEG with the bytes between header segments that belong to no
/// segment removed (libjpeg skips them with an "extraneous bytes" warning).
/// `for_pixels` also drops the ICC segments and writes JFIF's major version
/// as 1: neither changes a pixel, and both would otherwise warn again.
/// Everything from the first scan on is copied as is. `None` when there is
/// no scan to keep.
pub(crate) fn jpeg_without_header_junk(jpeg: &[u8], for_pixels: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(jpeg.len());
    out.extend_from_slice(jpeg.get(..2)?);
    let mut i = 2;
    loop {
        // A marker is 0xFF (fill bytes allowed) and a code other than 0x00.
        let is_marker = |i: usize| jpeg[i] == 0xFF && !matches!(jpeg[i + 1], 0x00 | 0xFF);
        while i + 1 < jpeg.len() && !is_marker(i) {
            i += 1;
        }
        let marker = *jpeg.get(i + 1)?;
        match marker {
            0xDA => {
                out.extend_from_slice(&jpeg[i..]);
                return Some(out);
            }
            0xD9 => return None,
            0x01 | 0xD0..=0xD8 => i += 2,
            _ => {
                let len = u16::from_be_bytes([*jpeg.get(i + 2)?, *jpeg.get(i + 3)?]) as usize;
                let segment = jpeg.get(i..i + 2 + len)?;
                let icc = marker == markers::APP2
                    && segment
                        .get(4..)
                        .is_some_and(|d| d.starts_with(b"ICC_PROFILE\0"));
                let jfif = marker == markers::APP0
                    && segment.len() > 9
                    && segment[4..].starts_with(b"JFIF\0");
                if !(for_pixels && icc) {
                    out.extend_from_slice(segment);
                }
                if for_pixels && jfif {
                    let at = out.len() - segment.len() + 9;
                    out[at] = 1;
                }
                i += 2 + len;
            }
        }
    }
}

/// The offset just past the EOI marker of the first (primary) image, found
/// by walking the scans: inside entropy-coded data 0xFF is always followed by
/// a stuffed 0x00 or a restart marker, so the first other marker ends a scan.
pub(crate) fn primary_image_end(jpeg: &[u8]) -> Option<usize> {
    let mut i = 2; // after SOI
    let mut in_scan = false;
    while i + 1 < jpeg.len() {
        if jpeg[i] != 0xFF {
            if !in_scan {
                return None;
            }
            // Entropy-coded data is most of the file: jump to the next 0xFF.
            i += memchr::memchr(0xFF, &jpeg[i..])?;
            continue;
        }
        let marker = jpeg[i + 1];
        match marker {
            0x00 | 0xFF | 0xD0..=0xD7 if in_scan => i += if marker == 0xFF { 1 } else { 2 },
            0xFF => i += 1,
            0xD9 => return Some(i + 2),
            0x01 | 0xD0..=0xD8 => i += 2,
            _ => {
                let len = u16::from_be_bytes([*jpeg.get(i + 2)?, *jpeg.get(i + 3)?]) as usize;
                i += 2 + len;
                in_scan = marker == 0xDA;
            }
        }
    }
    None
}

/// What a JPEG's header says about its colour: the embedded ICC profile
/// (reassembled from its APP2 chunks) and whether Adobe's APP14 segment is
/// present (Photoshop stores CMYK inverted). One parse serves both.
pub(crate) struct JpegColourInfo {
    pub icc: Option<Vec<u8>>,
    pub adobe: bool,
}

pub(crate) fn jpeg_colour_info(bytes: &[u8]) -> JpegColourInfo {
    match Jpeg::from_bytes(Bytes::copy_from_slice(header_part(bytes))) {
        Ok(jpeg) => JpegColourInfo {
            icc: jpeg.icc_profile().map(|b| b.to_vec()),
            adobe: jpeg
                .segments_by_marker(markers::APP14)
                .any(|s| s.contents().starts_with(b"Adobe")),
        },
        Err(_) => JpegColourInfo {
            icc: None,
            adobe: false,
        },
    }
}

/// Up to and including the first scan header: all the metadata lives there,
/// and parsing it needs no copy of the compressed pixels.
fn header_part(bytes: &[u8]) -> &[u8] {
    let mut i = 2;
    while i + 3 < bytes.len() && bytes[i] == 0xFF {
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        i += 2 + len;
        if marker == 0xDA {
            // img-parts 0.4.2 rejects a file as truncated when nothing at
            // all follows the SOS header, so keep the scan's first byte.
            i += 1;
            break;
        }
    }
    &bytes[..i.min(bytes.len())]
}

/// The payload of a PNG `eXIf` or WebP `EXIF` chunk, found by walking the
/// chunk headers (no copy of the pixels).
pub(crate) fn exif_chunk(bytes: &[u8], format: Format) -> Option<Vec<u8>> {
    let (mut i, wanted, little_endian, padded) = match format {
        Format::Png => (8, *b"eXIf", false, false),
        Format::Webp => (12, *b"EXIF", true, true),
        _ => return None,
    };
    while i + 8 <= bytes.len() {
        let (kind, len) = if little_endian {
            let len = u32::from_le_bytes(bytes[i + 4..i + 8].try_into().ok()?);
            (&bytes[i..i + 4], len as usize)
        } else {
            let len = u32::from_be_bytes(bytes[i..i + 4].try_into().ok()?);
            (&bytes[i + 4..i + 8], len as usize)
        };
        let data = i + 8;
        let end = data.checked_add(len)?;
        if kind == wanted {
            return bytes.get(data..end).map(<[u8]>::to_vec);
        }
        // PNG chunks end with a CRC; RIFF chunks are padded to even sizes.
        i = if little_endian {
            end + (padded && len % 2 == 1) as usize
        } else {
            end.checked_add(4)?
        };
    }
    None
}

/// Metadata a stripped file must not contain, for tests and for audits:
/// lists what is found, empty when clean.
pub fn metadata_found(bytes: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    match Format::sniff(bytes) {
        Ok(Format::Jpeg) => {
            if let Ok(jpeg) = Jpeg::from_bytes(Bytes::copy_from_slice(header_part(bytes))) {
                for s in jpeg.segments() {
                    if !jpeg_segment_is_kept(s.marker(), s.contents()) {
                        found.push(format!("JPEG marker 0x{:02X}", s.marker()));
                    }
                }
            }
            if let Some(end) = primary_image_end(bytes) {
                if end < bytes.len() {
                    found.push(format!("{} bytes after EOI", bytes.len() - end));
                }
            }
        }
        Ok(Format::Png) => {
            if let Ok(png) = Png::from_bytes(Bytes::copy_from_slice(bytes)) {
                for c in png.chunks() {
                    if !png_chunk_is_kept(c.kind()) {
                        found.push(format!("PNG chunk {}", String::from_utf8_lossy(&c.kind())));
                    }
                }
            }
        }
        Ok(Format::Webp) => {
            if let Ok(webp) = WebP::from_bytes(Bytes::copy_from_slice(bytes)) {
                for id in [*b"EXIF", CHUNK_XMP] {
                    if webp.has_chunk(id) {
                        found.push(format!("WebP chunk {}", String::from_utf8_lossy(&id)));
                    }
                }
            }
        }
        _ => {}
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_image_ends_at_its_eoi_not_at_a_stuffed_ff() {
        // SOI, SOS(len 2), entropy with FF00 and RST0, EOI, then trailing junk.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF,
            0xD9, 0xAA, 0xBB,
        ];
        assert_eq!(primary_image_end(&jpeg), Some(15));
    }

    #[test]
    fn metadata_is_found_when_the_scan_data_follows_the_sos_header_directly() {
        // SOI, APP1 "Exif", SOS (length 2), one byte of scan data, EOI.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x08, b'E', b'x', b'i', b'f', 0, 0, 0xFF, 0xDA, 0x00,
            0x02, 0x12, 0xFF, 0xD9,
        ];
        assert_eq!(metadata_found(&jpeg), vec!["JPEG marker 0xE1".to_string()]);
    }

    #[test]
    fn junk_between_header_segments_is_dropped_and_the_scan_kept() {
        // SOI, 3 junk bytes, APP2 ICC (len 16), 1 junk byte, SOS (len 2), data, EOI.
        let mut jpeg = vec![0xFF, 0xD8, 0x00, 0x12, 0xFF, 0xFF, 0xE2, 0x00, 0x10];
        jpeg.extend_from_slice(b"ICC_PROFILE\0\x01\x01");
        jpeg.extend_from_slice(&[0x42, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0xFF, 0xD9]);
        let clean = jpeg_without_header_junk(&jpeg, false).unwrap();
        let mut want = vec![0xFF, 0xD8, 0xFF, 0xE2, 0x00, 0x10];
        want.extend_from_slice(b"ICC_PROFILE\0\x01\x01");
        want.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0xFF, 0xD9]);
        assert_eq!(clean, want);
        let without_icc = jpeg_without_header_junk(&jpeg, true).unwrap();
        // A JFIF major version libjpeg does not know is written as 1.
        let mut jfif = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        jfif.extend_from_slice(b"JFIF\0\x07\x02\0\0\x01\0\x01\0\0");
        jfif.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0xD9]);
        let fixed = jpeg_without_header_junk(&jfif, true).unwrap();
        assert_eq!(fixed[11..13], [1, 2]);
        assert_eq!(jpeg_without_header_junk(&jfif, false).unwrap(), jfif);
        assert_eq!(
            without_icc,
            vec![0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0xFF, 0xD9]
        );
    }

    #[test]
    fn a_jpeg_without_eoi_has_no_end() {
        assert_eq!(
            primary_image_end(&[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34]),
            None
        );
    }
}
