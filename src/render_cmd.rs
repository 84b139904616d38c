//! `easel render` and `easel bench`: the engine without the service.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use easel_render::{Crop, Format, Rendition, Settings, Style};
use serde::Serialize;

/// The facts of every file `easel render` wrote, beside them.
const MANIFEST: &str = "assets.json";

/// Engine settings plus the size of the render pool.
#[derive(clap::Args, Debug)]
pub struct LocalEngineArgs {
    #[command(flatten)]
    settings: crate::engine_args::EngineArgs,
    /// Render threads (rayon); 0 means one per core.
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

impl LocalEngineArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        self.settings.settings()
    }

    fn pool(&self) -> anyhow::Result<rayon::ThreadPool> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .build()
            .context("cannot start the render thread pool")
    }
}

#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// The original image (JPEG, PNG, WebP, GIF or TIFF).
    input: PathBuf,
    /// Folder to write `<style>.<ext>` files and `assets.json` into.
    #[arg(long)]
    out: PathBuf,
    /// Crop in oriented pixels: x,y,width,height.
    #[arg(long)]
    crop: Option<Crop>,
    #[command(flatten)]
    engine: LocalEngineArgs,
}

pub fn render(args: RenderArgs) -> anyhow::Result<()> {
    let settings = args.engine.settings()?;
    let original = read_original(&args.input, settings.limits.max_bytes)?;
    let rendition = args
        .engine
        .pool()?
        .install(|| easel_render::render(original, args.crop, &settings))
        .with_context(|| format!("{}", args.input.display()))?;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    remove_earlier_output(&args.out)?;
    for file in &rendition.files {
        let path = args.out.join(file.file_name());
        std::fs::write(&path, &file.bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let manifest = args.out.join(MANIFEST);
    std::fs::write(&manifest, serde_json::to_vec_pretty(&rendition.files)?)
        .with_context(|| format!("cannot write {}", manifest.display()))?;

    print_table(&rendition);
    for warning in &rendition.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// Removes what an earlier `easel render` into the same folder wrote
/// (`<style>.<ext>` and `assets.json`), and nothing else, so that no stale
/// style (say, a `square-3000` the new image is too small for) sits beside
/// the new manifest. The new files are then written as new files: on ext4,
/// truncating a file that had data and writing it again starts its
/// writeback at once (`auto_da_alloc`), which made writing the 12 MP
/// photo's 6.6 MB of styles over an earlier render's take 9 ms instead of
/// 2 (`benches/compare.sh` renders into one folder again and again).
fn remove_earlier_output(out: &Path) -> anyhow::Result<()> {
    let styles = Style::RENDERED.into_iter().flat_map(|style| {
        Format::ALL
            .into_iter()
            .map(move |format| format!("{style}.{}", format.extension()))
    });
    for name in styles.chain(std::iter::once(MANIFEST.to_string())) {
        let path = out.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot replace {}", path.display())),
        }
    }
    Ok(())
}

/// Writes to stdout, giving up quietly if the reader went away (`| head`):
/// a closed pipe is not an error worth a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

fn print_table(rendition: &Rendition) {
    let s = &rendition.source;
    out!(
        "{} {}x{} (orientation {}), crop {}",
        s.mimetype,
        s.width,
        s.height,
        s.orientation,
        s.crop
    );
    out!(
        "{:<18} {:>11} {:>10} {:>8} {:>7}  upscaled",
        "style",
        "size",
        "bytes",
        "ms",
        "quality"
    );
    for f in &rendition.files {
        out!(
            "{:<18} {:>11} {:>10} {:>8.1} {:>7}  {}",
            f.style.as_str(),
            format!("{}x{}", f.width, f.height),
            f.size,
            ms(f.elapsed),
            f.quality.map(|q| q.to_string()).unwrap_or_default(),
            if f.upscaled { "yes" } else { "" }
        );
    }
    let feed = &rendition.feed;
    out!(
        "feed file: {} ({})",
        feed.style.map(|s| s.as_str()).unwrap_or("none"),
        if feed.ok {
            "ready".to_string()
        } else {
            feed.reasons.join("; ")
        }
    );
    for warning in &feed.warnings {
        out!("feed: {warning}");
    }
    out!("total {:.1} ms", ms(rendition.timings.total));
}

/// Refuses oversized files from their length, before reading them.
fn read_original(path: &Path, max_bytes: u64) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len > max_bytes {
        bail!(
            "{}: the file is {len} bytes, over the limit of {max_bytes} bytes",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Images to render; default: the camera photos in fixtures/photo.
    files: Vec<PathBuf>,
    /// Timed runs per file (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    engine: LocalEngineArgs,
}

#[derive(Serialize)]
struct BenchReport {
    threads: usize,
    runs: usize,
    jpeg_quality: u8,
    resize_cascade: bool,
    files: Vec<FileReport>,
    /// The process's peak resident memory after every render (Linux'
    /// `VmHWM`), in bytes.
    peak_rss_bytes: Option<u64>,
}

#[derive(Serialize)]
struct FileReport {
    file: String,
    width: u32,
    height: u32,
    styles: usize,
    output_bytes: u64,
    /// What the engine estimates a render of this file holds at most (the
    /// figure a service reserves from its render memory budget).
    memory_estimate_bytes: u64,
    /// Milliseconds; per stage the median over runs, total min and median.
    total_min_ms: f64,
    total_median_ms: f64,
    /// The process's first render, excluded from min and median.
    first_run_ms: f64,
    decode_ms: f64,
    orient_ms: f64,
    colour_ms: f64,
    strip_ms: f64,
    resize_ms: f64,
    encode_ms: f64,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let files = if args.files.is_empty() {
        default_bench_files()?
    } else {
        args.files.clone()
    };
    let settings = args.engine.settings()?;
    let pool = args.engine.pool()?;
    let runs = args.runs.max(1);
    let mut report = BenchReport {
        threads: pool.current_num_threads(),
        runs,
        jpeg_quality: settings.jpeg_quality,
        resize_cascade: settings.resize_cascade,
        files: Vec::new(),
        peak_rss_bytes: None,
    };
    for path in &files {
        let original = easel_render::Bytes::from(read_original(path, settings.limits.max_bytes)?);
        let render = || {
            pool.install(|| easel_render::render(original.clone(), None, &settings))
                .with_context(|| format!("{}", path.display()))
        };
        // The first render in a process pays for page faults and lazy tables;
        // it is reported apart and left out of the statistics.
        let first = render()?;
        let mut rendered = Vec::with_capacity(runs);
        for _ in 0..runs {
            rendered.push(render()?);
        }
        let mut summary = summarise(path, &rendered);
        summary.first_run_ms = ms(first.timings.total);
        summary.memory_estimate_bytes = easel_render::decode_cost(&original, &settings.limits)
            .map(|cost| cost.peak_bytes())
            .unwrap_or_default();
        report.files.push(summary);
    }
    report.peak_rss_bytes = peak_rss_bytes();
    if args.json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!(
            "threads {}, {} runs per file, quality {}",
            report.threads,
            runs,
            report.jpeg_quality
        );
        out!(
            "{:<40} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7}",
            "file",
            "min ms",
            "median",
            "decode",
            "orient",
            "colour",
            "resize",
            "encode"
        );
        for f in &report.files {
            out!(
                "{:<40} {:>9.1} {:>9.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1}",
                f.file,
                f.total_min_ms,
                f.total_median_ms,
                f.decode_ms,
                f.orient_ms,
                f.colour_ms,
                f.resize_ms,
                f.encode_ms
            );
        }
    }
    Ok(())
}

/// The process's peak resident set size, from `/proc/self/status`.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn default_bench_files() -> anyhow::Result<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/photo");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("no files given and {} is missing", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    Ok(files)
}

fn summarise(path: &Path, runs: &[Rendition]) -> FileReport {
    let median = |f: &dyn Fn(&Rendition) -> Duration| {
        let mut v: Vec<f64> = runs.iter().map(|r| ms(f(r))).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let first = &runs[0];
    FileReport {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        width: first.source.width,
        height: first.source.height,
        styles: first.files.len(),
        output_bytes: first.files.iter().map(|f| f.size).sum(),
        memory_estimate_bytes: 0,
        total_min_ms: runs
            .iter()
            .map(|r| ms(r.timings.total))
            .fold(f64::INFINITY, f64::min),
        total_median_ms: median(&|r| r.timings.total),
        first_run_ms: 0.0,
        decode_ms: median(&|r| r.timings.decode),
        orient_ms: median(&|r| r.timings.orient),
        colour_ms: median(&|r| r.timings.colour),
        strip_ms: median(&|r| r.timings.strip),
        resize_ms: median(&|r| r.timings.resize),
        encode_ms: median(&|r| r.timings.encode),
    }
}
