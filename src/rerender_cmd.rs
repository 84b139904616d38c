//! `easel rerender`: finds images rendered with other settings (or all of
//! them) and renders them again, with a progress bar.
//!
//! The batch is recorded in the catalogue with its filter and settings
//! fingerprint, so running the same command again after an interruption
//! resumes it: images already queued or done are not queued twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use easel_app::batches::{open_or_create, progress, rerender_filter, ENQUEUE_CHUNK};
use easel_worker::supervise::Loops;
use easel_worker::OnCommit;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Notify;

use crate::engine_args::EngineArgs;
use crate::service::{init_logging_at, log_format, runtime, CommonArgs, WorkerTuning};

#[derive(clap::Args, Debug)]
pub struct RerenderArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    render: EngineArgs,
    #[command(flatten)]
    tuning: WorkerTuning,
    /// Only this bucket's images.
    #[arg(long, value_parser = crate::admin::bucket_name)]
    bucket: Option<String>,
    /// Only images whose file of this style is missing or stale.
    #[arg(long)]
    style: Option<String>,
    /// Only images created at or after this date (YYYY-MM-DD or RFC 3339).
    #[arg(long, value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
    /// Every matching image, not only stale ones.
    #[arg(long)]
    all: bool,
    /// Worker loops in this process; 0 only queues the jobs and follows
    /// progress while `easel worker` processes render them.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Count what would be re-rendered, change nothing.
    #[arg(long)]
    dry_run: bool,
}

fn parse_since(value: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("expected YYYY-MM-DD or an RFC 3339 time, got {value:?}"))
}

pub fn rerender(args: RerenderArgs) -> anyhow::Result<()> {
    // The bar is what an operator watches; the workers' INFO lines (one
    // or two per image) are there with RUST_LOG=info.
    init_logging_at(log_format(&args.common), "warn");
    runtime()?.block_on(async move {
        let (catalog, store) = crate::service::open(&args.common).await?;
        let settings = Arc::new(args.render.settings()?);
        let filter = rerender_filter(
            args.bucket.clone(),
            args.style.clone(),
            args.since,
            args.all,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let fingerprint = settings.fingerprint();
        if args.dry_run {
            let count = catalog.count_stale(&filter, &fingerprint).await?;
            println!("easel: {count} image(s) would be re-rendered (settings {fingerprint})");
            return Ok(());
        }
        // Listening from before the batch exists: a Ctrl-C at any point
        // after it is announced ends the run with a summary (the async
        // `ctrl_c()` would only start listening when first polled).
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("cannot listen for Ctrl-C")?;
        let (batch, resumed) = open_or_create(catalog.as_ref(), &filter, &fingerprint)
            .await
            .context("cannot start the batch")?;
        eprintln!(
            "easel: {} batch {} ({} image(s), settings {fingerprint})",
            if resumed { "resuming" } else { "started" },
            batch.id,
            batch.total
        );
        if args.concurrency == 0 {
            // Its jobs carry these settings: a worker with others leaves them.
            eprintln!(
                "easel: only workers rendering with settings {fingerprint} take this batch's \
                 jobs (run `easel worker` with the same flags as this command)"
            );
        }
        let wake = Arc::new(Notify::new());
        let pool = args
            .tuning
            .pool(args.concurrency, &settings, OnCommit::default());
        let workers = Loops::start_workers(&catalog, &store, &settings, &wake, pool).await?;

        let bar = ProgressBar::new(batch.total.max(0) as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} images  {per_sec}  ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        // A resumed batch starts part done: the rate and ETA count this
        // run's renders only.
        let before = catalog.batch_counts(&batch.id).await?;
        let finished_before = before.done + before.failed;
        bar.set_position(finished_before.max(0) as u64);
        bar.reset_eta();
        crate::progress::show(&bar);
        let started = Instant::now();
        let mut interrupted = false;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let (current, counts, progress) = loop {
            // Every pass, not only until everything is queued: an image
            // whose batch job is done may have been rendered since with
            // other settings, and is queued again.
            let added = catalog
                .enqueue_batch(&batch, ENQUEUE_CHUNK, Utc::now())
                .await?;
            if added > 0 {
                wake.notify_waiters();
            }
            let current = catalog
                .batch(&batch.id)
                .await?
                .context("the batch disappeared")?;
            let counts = catalog.batch_counts(&batch.id).await?;
            let stale = catalog.batch_stale(&batch.id).await?;
            let progress = progress(&current, &counts, stale);
            bar.set_length(current.total.max(0) as u64);
            bar.set_position((counts.done + counts.failed).max(0) as u64);
            bar.set_message(format!("{} failed", counts.failed));
            if progress.complete {
                break (current, counts, progress);
            }
            tokio::select! {
                _ = tick.tick() => {}
                _ = interrupt.recv() => { interrupted = true; break (current, counts, progress); }
            }
        };
        bar.finish_and_clear();
        crate::progress::hide();
        workers.stop().await;
        let elapsed = started.elapsed().as_secs_f64();
        let failures = catalog.batch_failures(&batch.id, 10).await?;
        let finished_now = counts.done + counts.failed - finished_before;
        println!(
            "easel: batch {}: {} done, {} failed, {} still queued, {} not queued yet; \
             this run: {} in {:.1} s ({:.1} images/s)",
            current.id,
            counts.done,
            counts.failed,
            counts.queued + counts.running,
            progress.pending,
            finished_now,
            elapsed,
            finished_now as f64 / elapsed.max(0.001),
        );
        for failure in failures {
            println!(
                "  failed: {} ({})",
                failure.image_id,
                failure.reason.as_deref().unwrap_or("no reason recorded")
            );
        }
        if interrupted {
            eprintln!("easel: interrupted; run the same command again to resume");
        }
        Ok(())
    })
}
