//! Real files other projects keep for their own decoders (Pillow's and
//! libvips' test images, see fixtures/SOURCES.md), each checked against a
//! reference decode made once with Pillow (fixtures/corpus/expected.json,
//! made by fixtures/corpus/make_reference.py): the size as a person sees it,
//! an 8x8 grid of mean colours over the `regular` style, a stripped original
//! without metadata, or the refusal code and reason.
//!
//! `regular` is decoded here with the `image` crate (zune-jpeg), not with
//! the engine's libjpeg-turbo.

mod common;

use std::path::Path;

use common::{decode_rgb, file, fixture_path};
use easel_render::{metadata_found, Settings, Style};
use image::RgbImage;
use serde_json::Value;

/// Mean and worst cell difference (0-255 per channel) allowed between the
/// grid of our `regular` JPEG and the reference: JPEG at quality 88 with
/// 4:2:0 chroma costs about 1 on average and up to 8 on sharp colour edges.
const MEAN_TOLERANCE: f64 = 2.5;
const CELL_TOLERANCE: f64 = 12.0;

fn expected() -> serde_json::Map<String, Value> {
    let path = fixture_path("corpus/expected.json");
    let text = std::fs::read_to_string(&path).expect("fixtures/corpus/expected.json");
    match serde_json::from_str(&text).expect("expected.json is JSON") {
        Value::Object(map) => map,
        _ => panic!("expected.json is an object"),
    }
}

/// Mean colours of an n x n grid over a square image, as make_reference.py
/// computes them.
fn grid_means(square: &RgbImage, n: u32) -> Vec<[f64; 3]> {
    let side = square.width().min(square.height());
    let mut means = Vec::new();
    for gy in 0..n {
        for gx in 0..n {
            let (y0, y1) = (gy * side / n, (gy + 1) * side / n);
            let (x0, x1) = (gx * side / n, (gx + 1) * side / n);
            let mut sum = [0f64; 3];
            for y in y0..y1 {
                for x in x0..x1 {
                    let p = square.get_pixel(x, y).0;
                    for c in 0..3 {
                        sum[c] += p[c] as f64;
                    }
                }
            }
            let count = ((x1 - x0) * (y1 - y0)) as f64;
            means.push(sum.map(|s| s / count));
        }
    }
    means
}

/// What went wrong with one file, or `None`.
fn check(bytes: &[u8], want: &Value) -> Option<String> {
    let settings = Settings::default();
    let expect = want["expect"].as_str().unwrap();
    let rendered = easel_render::render(bytes.to_vec(), None, &settings);
    if expect != "ok" {
        return match rendered {
            Ok(_) => Some(format!("rendered, but must be refused with {expect}")),
            Err(e) if e.code() != expect => Some(format!("refused with {}: {e}", e.code())),
            Err(e) => {
                let reason = want["reason_contains"].as_str().unwrap();
                (!e.to_string().contains(reason))
                    .then(|| format!("the reason {e:?} does not name {reason:?}"))
            }
        };
    }
    let rendition = match rendered {
        Ok(r) => r,
        Err(e) => return Some(format!("refused with {}: {e}", e.code())),
    };
    let (width, height) = (
        want["width"].as_u64().unwrap() as u32,
        want["height"].as_u64().unwrap() as u32,
    );
    if (rendition.source.width, rendition.source.height) != (width, height) {
        return Some(format!(
            "oriented size {}x{}, reference {width}x{height}",
            rendition.source.width, rendition.source.height
        ));
    }
    let stripped = file(&rendition, Style::StrippedOriginal);
    if (stripped.width, stripped.height) != (width, height) {
        return Some(format!(
            "stripped-original is {}x{}",
            stripped.width, stripped.height
        ));
    }
    let left = metadata_found(&stripped.bytes);
    if !left.is_empty() {
        return Some(format!("stripped-original still has {left:?}"));
    }
    let probe = easel_render::probe(bytes, &settings.limits).unwrap();
    if probe.bits_per_sample == 0 || probe.channels == 0 {
        return Some(format!("the probe says {probe:?}"));
    }

    let regular = decode_rgb(&file(&rendition, Style::Regular).bytes);
    let n = want["grid"].as_u64().unwrap() as u32;
    let ours = grid_means(&regular, n);
    let reference: Vec<[f64; 3]> = want["means"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cell| {
            let c = cell.as_array().unwrap();
            [0, 1, 2].map(|i| c[i].as_f64().unwrap())
        })
        .collect();
    let diffs: Vec<f64> = ours
        .iter()
        .zip(&reference)
        .flat_map(|(a, b)| (0..3).map(move |c| (a[c] - b[c]).abs()))
        .collect();
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let worst = diffs.iter().cloned().fold(0.0, f64::max);
    (mean > MEAN_TOLERANCE || worst > CELL_TOLERANCE).then(|| {
        format!(
            "differs from the {} reference: mean {mean:.2}, worst cell {worst:.1}",
            want["reference"].as_str().unwrap_or("?")
        )
    })
}

#[test]
fn every_corpus_image_decodes_like_its_reference_or_is_refused_for_its_reason() {
    let expected = expected();
    let dir = fixture_path("corpus");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".json") && !n.ends_with(".py"))
        .collect();
    on_disk.sort();
    let listed: Vec<String> = expected.keys().cloned().collect();
    assert_eq!(on_disk, listed, "every corpus file has a reference");
    assert!(listed.len() >= 50, "the corpus is broad");

    let failures: Vec<String> = expected
        .iter()
        .filter_map(|(name, want)| {
            let bytes = std::fs::read(Path::new(&dir).join(name)).unwrap();
            check(&bytes, want).map(|why| format!("{name}: {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} files:\n{}",
        failures.len(),
        listed.len(),
        failures.join("\n")
    );
}
