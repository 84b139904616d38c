//! `easel gc`: deletes stored objects no row refers to.
//!
//! Lists the object store (originals and renders), schedules the deletion
//! of every object older than `--gc-min-age-secs` that no row refers to and
//! no writer claims, then carries out whatever deletions are due, as every
//! serving process's reaper does every half minute. Safe beside running
//! servers and workers: each deletion is checked again under the lock a
//! writer's claim takes (see `easel_catalog`, "Deleting objects").

use std::time::Duration;

use anyhow::Context;
use easel_worker::reaper::Reaper;
use serde::Serialize;

use crate::service::{init_logging, log_format, runtime, CommonArgs, RetentionArgs};

#[derive(clap::Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    retention: RetentionArgs,
    /// Objects younger than this many seconds are left alone: an upload may
    /// have stored one a moment ago and not yet committed its row.
    #[arg(long, env = "EASEL_GC_MIN_AGE_SECS", default_value_t = 3600)]
    gc_min_age_secs: u64,
}

#[derive(Serialize)]
struct Report {
    listed: usize,
    old_enough: usize,
    unreferenced: usize,
    deleted: usize,
    failed: usize,
    retained_expired: i64,
}

pub fn gc(args: GcArgs) -> anyhow::Result<()> {
    init_logging(log_format(&args.common));
    runtime()?.block_on(async move {
        let (catalog, store) = crate::service::open(&args.common).await?;
        let reaper = Reaper::new(catalog, store, args.retention.retention());
        let now = easel_catalog::now_ms();
        let swept = reaper
            .sweep(Duration::from_secs(args.gc_min_age_secs), now)
            .await
            .context("cannot list the object store")?;
        let reaped = reaper.run_once(now).await.context("cannot delete")?;
        let report = Report {
            listed: swept.listed,
            old_enough: swept.old_enough,
            unreferenced: swept.scheduled.len(),
            deleted: reaped.deleted.len(),
            failed: reaped.failed,
            retained_expired: reaped.expired,
        };
        println!("{}", serde_json::to_string(&report)?);
        if reaped.failed > 0 {
            anyhow::bail!("{} objects could not be deleted; run again", reaped.failed);
        }
        Ok(())
    })
}
