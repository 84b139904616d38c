//! Uncached IIIF renders against a whole decode of the same original, in
//! one run: what a tiled viewer asks for, per zoom level, as JSON.
//!
//! The requests are an OpenSeadragon pyramid over the oriented image
//! (`info.json` advertises 512 px tiles): every full-resolution tile
//! (`1:1`), and every tile of the zoomed-out levels, whose regions are
//! 1024, 2048 and 4096 px squares shown at 512 px (`1:2`, `1:4`, `1:8`).
//! `viewer` is all of them together. The reference is libjpeg-turbo
//! decoding the whole original to RGB in this process (what every IIIF
//! render began with before region decoding). Rounds interleave the two,
//! so a busy machine slows both alike.
//!
//! Run: `cargo bench --bench iiif [-- IMAGE [ROUNDS]]` (default: the
//! Olympus photo, 5 rounds). Engine only: the service adds reading the
//! original from the store (`benches/iiif.sh` measures through HTTP).

use std::time::{Duration, Instant};

use easel_app::iiif::info::TILE_SIZE;
use easel_render::iiif::{render_iiif, IiifLimits, IiifPlan, IiifRequest};
use easel_render::Settings;
use serde_json::json;

struct Request {
    class: &'static str,
    path: String,
    plan: IiifPlan,
}

/// The tiles of one pyramid level whose regions are `side` px squares.
fn level(class: &'static str, side: u32, width: u32, height: u32) -> Vec<Request> {
    let mut requests = Vec::new();
    for y in (0..height).step_by(side as usize) {
        for x in (0..width).step_by(side as usize) {
            let (w, h) = (side.min(width - x), side.min(height - y));
            let out = |v: u32| (v * TILE_SIZE).div_ceil(side);
            let path = format!("{x},{y},{w},{h}/{},{}/0/default.jpg", out(w), out(h));
            let parts: Vec<&str> = path.split('/').collect();
            let plan = IiifRequest::parse(parts[0], parts[1], parts[2], parts[3])
                .and_then(|r| r.resolve(width, height, &IiifLimits::default()))
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            requests.push(Request { class, path, plan });
        }
    }
    requests
}

fn percentile(times: &mut [Duration], p: f64) -> f64 {
    times.sort();
    let i = ((times.len() as f64 - 1.0) * p).round() as usize;
    times[i].as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; anything else is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let image = args.first().cloned().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/photo/olympus_e-p3_4032x3024.jpg"
        )
        .to_string()
    });
    let rounds: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(5);
    let original = std::fs::read(&image).unwrap_or_else(|e| panic!("{image}: {e}"));
    let settings = Settings::default();
    let facts = easel_render::inspect(&original, &settings).expect("a readable image");
    let (width, height) = (facts.width, facts.height);

    let mut requests = Vec::new();
    for (class, side) in [("1:1", 512), ("1:2", 1024), ("1:4", 2048), ("1:8", 4096)] {
        requests.extend(level(class, side, width, height));
    }
    let full_decode =
        || turbojpeg::decompress(&original, turbojpeg::PixelFormat::RGB).expect("a JPEG original");
    // Warm up: page faults, lazy tables, the allocator.
    full_decode();
    for r in &requests {
        render_iiif(&original, &r.plan, &settings).expect("renders");
    }

    let mut tile_times: Vec<Vec<Duration>> = vec![Vec::new(); requests.len()];
    let mut decode_times = Vec::new();
    for _ in 0..rounds {
        for (i, r) in requests.iter().enumerate() {
            let t = Instant::now();
            let image = render_iiif(&original, &r.plan, &settings).expect("renders");
            tile_times[i].push(t.elapsed());
            std::hint::black_box(image);
            // One whole decode per few tiles keeps the reference in step
            // with the machine's load without doubling the run.
            if i % 4 == 0 {
                let t = Instant::now();
                std::hint::black_box(full_decode());
                decode_times.push(t.elapsed());
            }
        }
    }

    let decode_p50 = percentile(&mut decode_times.clone(), 0.5);
    let summary = |class: &str, times: &mut Vec<Duration>, count: usize| {
        let p50 = percentile(times, 0.5);
        json!({
            "class": class,
            "requests": count,
            "p50_ms": p50,
            "p90_ms": percentile(times, 0.9),
            "p50_over_full_decode_p50": p50 / decode_p50,
        })
    };
    let mut classes = Vec::new();
    for class in ["1:1", "1:2", "1:4", "1:8", "viewer"] {
        let mut times: Vec<Duration> = Vec::new();
        let mut count = 0;
        for (r, t) in requests.iter().zip(&tile_times) {
            if class == "viewer" || r.class == class {
                times.extend(t);
                count += 1;
            }
        }
        if count > 0 {
            classes.push(summary(class, &mut times, count));
        }
    }
    let slowest = requests
        .iter()
        .zip(&tile_times)
        .map(|(r, t)| (r.path.as_str(), percentile(&mut t.clone(), 0.5)))
        .fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let report = json!({
        "image": image,
        "width": width,
        "height": height,
        "rounds": rounds,
        "full_decode_ms": {
            "what": "libjpeg-turbo, whole image to RGB, in process",
            "runs": decode_times.len(),
            "p50": decode_p50,
            "p90": percentile(&mut decode_times, 0.9),
        },
        "tiles": classes,
        "slowest_tile": { "path": slowest.0, "p50_ms": slowest.1 },
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("JSON of plain values")
    );
}
