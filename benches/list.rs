//! How fast the image list is on a big bucket: a SQLite catalogue with
//! 100,000 images in one bucket, then many runs of `list_images` (each a
//! COUNT for the total plus the page) for the pages and filters the API
//! serves. Prints one JSON object: the build time and, per query, p50, p99
//! and max in milliseconds.
//!
//! Run: `cargo bench --bench list`. Knobs (environment):
//! - `EASEL_BENCH_IMAGES` (default 100000): images to create;
//! - `EASEL_BENCH_RUNS` (default 200): runs per query (fewer when a query
//!   is slow: each query stops after about 10 s);
//! - `EASEL_BENCH_DB`: keep the database at this path (reused when it
//!   already holds the images), e.g. to `EXPLAIN QUERY PLAN` with sqlite3.
//!
//! Images are created through the catalogue (`create_image`, one
//! transaction each, its tags and render job included) on a temp dir in
//! /dev/shm when there is one, so the build measures our code, not fsync.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use easel_catalog::{
    Database, ImageFields, ImageQuery, ImageRepo, NewImage, OriginalFacts, PageStart, SortKey,
    SqliteCatalog,
};
use serde_json::{json, Map, Value};

const BUCKET: &str = "bench";
const PAGE_SIZE: u64 = 25;
const WORDS: [&str; 16] = [
    "aurora", "basalt", "cobalt", "dune", "ember", "fjord", "glacier", "harbor", "island",
    "juniper", "kelp", "lagoon", "meadow", "nebula", "orchid", "prairie",
];

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn created_at(i: u64) -> DateTime<Utc> {
    // 2024-01-01, one image a minute, plus a few ms so the text times in
    // SQLite mix whole seconds and fractions.
    Utc.timestamp_millis_opt(1_704_067_200_000 + i as i64 * 60_000 + (i % 7) as i64 * 125)
        .unwrap()
}

fn image(i: u64) -> NewImage {
    let word = WORDS[(i % WORDS.len() as u64) as usize];
    let mut tags = vec![format!("show-{}", i % 100)];
    if i.is_multiple_of(1000) {
        tags.push("rare".into());
    }
    let sha = format!("{:064x}", i);
    NewImage {
        id: format!("img-{i:07}"),
        bucket: BUCKET.into(),
        fields: ImageFields {
            name: Some(format!("{word} episode #{i}")),
            facet: Some(
                if i.is_multiple_of(2) {
                    "cover"
                } else {
                    "small-cover"
                }
                .into(),
            ),
            tags,
            ..ImageFields::default()
        },
        original: Some(OriginalFacts {
            width: 3000,
            height: 3000,
            size: 1_234_567,
            mimetype: "image/jpeg".into(),
            original_key: format!("originals/{sha}"),
            sha256: sha,
            claim: None,
        }),
        origin_url: None,
        initial_origin: None,
    }
}

struct Stats {
    runs: usize,
    samples_ms: Vec<f64>,
    rows: usize,
    total: i64,
}

impl Stats {
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.samples_ms.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    fn json(&self) -> Value {
        let round = |ms: f64| (ms * 1000.0).round() / 1000.0;
        json!({
            "runs": self.runs,
            "p50_ms": round(self.percentile(50.0)),
            "p99_ms": round(self.percentile(99.0)),
            "max_ms": round(self.samples_ms.iter().copied().fold(0.0, f64::max)),
            "rows": self.rows,
            "total": self.total,
        })
    }
}

async fn measure(catalog: &SqliteCatalog, query: &ImageQuery, runs: usize) -> Stats {
    // One warm-up run, not counted.
    catalog.list_images(query).await.expect("list");
    let budget = Instant::now();
    let mut samples_ms = Vec::with_capacity(runs);
    let mut rows = 0;
    let mut total = 0;
    while samples_ms.len() < runs {
        let started = Instant::now();
        let page = catalog.list_images(query).await.expect("list");
        samples_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        rows = page.images.len();
        total = page.total;
        if budget.elapsed() > Duration::from_secs(10) && samples_ms.len() >= 20 {
            break;
        }
    }
    Stats {
        runs: samples_ms.len(),
        samples_ms,
        rows,
        total,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let images = env_or("EASEL_BENCH_IMAGES", 100_000);
    let runs = env_or("EASEL_BENCH_RUNS", 200) as usize;
    let shm = PathBuf::from("/dev/shm");
    let _dir;
    let path = match std::env::var("EASEL_BENCH_DB") {
        Ok(path) => PathBuf::from(path),
        Err(_) => {
            let dir = if shm.is_dir() {
                tempfile::tempdir_in(&shm)
            } else {
                tempfile::tempdir()
            }
            .unwrap();
            let path = dir.path().join("list.db");
            _dir = dir;
            path
        }
    };
    let catalog = SqliteCatalog::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    catalog.migrate().await.unwrap();

    let existing = catalog
        .list_images(&ImageQuery::new(BUCKET))
        .await
        .unwrap()
        .total as u64;
    let started = Instant::now();
    for i in existing..images {
        catalog
            .create_image(&image(i), created_at(i))
            .await
            .unwrap();
        if i > 0 && i % 20_000 == 0 {
            eprintln!(
                "list bench: {i} images in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let build_s = started.elapsed().as_secs_f64();
    let created = images.saturating_sub(existing);
    eprintln!("list bench: {images} images ready ({created} created in {build_s:.1} s)");

    let base = ImageQuery::new(BUCKET);
    let deep = 2000u64.min(images.div_ceil(PAGE_SIZE).max(2));
    // The keyset cursor that starts page `deep`: the last id of the page
    // before it. Both ways must give the same rows.
    let before = catalog
        .list_images(&ImageQuery {
            start: PageStart::Number(deep - 1),
            ..base.clone()
        })
        .await
        .unwrap();
    let cursor = before
        .images
        .last()
        .expect("the page before is full")
        .id
        .clone();
    let by_number = ImageQuery {
        start: PageStart::Number(deep),
        ..base.clone()
    };
    let by_keyset = ImageQuery {
        start: PageStart::After(cursor.clone()),
        ..base.clone()
    };
    let ids =
        |page: easel_catalog::ImagePage| page.images.into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(
        ids(catalog.list_images(&by_number).await.unwrap()),
        ids(catalog.list_images(&by_keyset).await.unwrap()),
        "keyset and page number disagree"
    );

    let cases: Vec<(String, ImageQuery)> = vec![
        ("page1_created_desc".to_string(), base.clone()),
        (
            "page1_created_asc".to_string(),
            ImageQuery {
                descending: false,
                ..base.clone()
            },
        ),
        (
            "page1_updated_desc".to_string(),
            ImageQuery {
                sort: SortKey::UpdatedAt,
                ..base.clone()
            },
        ),
        (
            "page1_name_asc".to_string(),
            ImageQuery {
                sort: SortKey::Name,
                descending: false,
                ..base.clone()
            },
        ),
        (format!("page{deep}_by_number"), by_number),
        (format!("page{deep}_by_keyset"), by_keyset),
        (
            "tag_1pct_page1".to_string(),
            ImageQuery {
                tag: Some("show-42".into()),
                ..base.clone()
            },
        ),
        (
            "tag_rare_page1".to_string(),
            ImageQuery {
                tag: Some("rare".into()),
                ..base.clone()
            },
        ),
        (
            "facet_half_page1".to_string(),
            ImageQuery {
                facet: Some("cover".into()),
                ..base.clone()
            },
        ),
        (
            "search_common_page1".to_string(),
            ImageQuery {
                search: Some("AURORA".into()),
                ..base.clone()
            },
        ),
        (
            "search_rare_page1".to_string(),
            ImageQuery {
                search: Some("#4242".into()),
                ..base.clone()
            },
        ),
    ];

    let mut queries = Map::new();
    for (name, query) in &cases {
        let stats = measure(&catalog, query, runs).await;
        eprintln!(
            "list bench: {name}: p50 {:.2} ms, p99 {:.2} ms ({} runs)",
            stats.percentile(50.0),
            stats.percentile(99.0),
            stats.runs
        );
        queries.insert(name.clone(), stats.json());
    }
    let report = json!({
        "backend": "sqlite",
        "images": images,
        "bucket": BUCKET,
        "page_size": PAGE_SIZE,
        "build": {
            "created": created,
            "seconds": (build_s * 100.0).round() / 100.0,
            "per_image_ms": if created > 0 { (build_s * 1000.0 / created as f64 * 1000.0).round() / 1000.0 } else { 0.0 },
        },
        "queries": Value::Object(queries),
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
