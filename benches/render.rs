//! The full style set per original, single-threaded and on 2 threads.
//!
//! Inputs: the real camera photos in `fixtures/photo/`, plus a
//! 3000x3000 and a 4000x3000 photo-like JPEG cut from the Olympus photo at
//! start-up (through the engine itself, so no second JPEG codec is needed).
//!
//! Run: `cargo bench --bench render` (a couple of minutes); filter with e.g.
//! `cargo bench --bench render -- 1-thread/olympus`.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use easel_render::{render, Crop, Settings, Style};

fn photo_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/photo"))
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the bench reads fixtures/photo)", path.display()))
}

/// The `regular` style of a crop is a plain sRGB JPEG of exactly the crop's
/// size, without EXIF: a realistic large upload of the size we want.
fn cut_from(photo: &[u8], crop: Crop) -> Vec<u8> {
    let rendition = render(photo.to_vec(), Some(crop), &Settings::default())
        .expect("the Olympus photo renders");
    let regular = rendition
        .file(Style::Regular)
        .expect("regular is always rendered");
    assert_eq!((regular.width, regular.height), (crop.width, crop.height));
    regular.bytes.clone()
}

fn inputs() -> Vec<(String, Vec<u8>)> {
    let olympus = read(photo_dir().join("olympus_e-p3_4032x3024.jpg"));
    let mut inputs = vec![
        (
            "generated_3000x3000".to_string(),
            cut_from(
                &olympus,
                Crop {
                    x: 516,
                    y: 12,
                    width: 3000,
                    height: 3000,
                },
            ),
        ),
        (
            "generated_4000x3000".to_string(),
            cut_from(
                &olympus,
                Crop {
                    x: 16,
                    y: 12,
                    width: 4000,
                    height: 3000,
                },
            ),
        ),
    ];
    let mut photos: Vec<PathBuf> = std::fs::read_dir(photo_dir())
        .expect("the photo fixtures")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg")))
        .collect();
    photos.sort();
    for path in photos {
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        inputs.push((name, read(path)));
    }
    inputs
}

fn full_style_set(c: &mut Criterion) {
    let settings = Settings::default();
    // Shared, not copied, by each render.
    let inputs: Vec<(String, easel_render::Bytes)> = inputs()
        .into_iter()
        .map(|(name, bytes)| (name, bytes.into()))
        .collect();
    for threads in [1, 2] {
        // The engine fans out on the current rayon pool; installing a pool
        // of one thread makes the whole render single-threaded.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a rayon pool");
        let mut group = c.benchmark_group(format!("full-style-set/{threads}-thread"));
        // Renders take hundreds of milliseconds: flat sampling runs each of
        // the 10 samples once instead of criterion's 1+2+..+10 iterations.
        group.sampling_mode(SamplingMode::Flat);
        for (name, bytes) in &inputs {
            group.bench_with_input(BenchmarkId::from_parameter(name), bytes, |b, bytes| {
                b.iter(|| pool.install(|| render(bytes.clone(), None, &settings).expect("renders")))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = full_style_set
}
criterion_main!(benches);
