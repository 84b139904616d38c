//! Deleting what nothing refers to any more, and finding what no row ever
//! did.
//!
//! Nothing else in Easel deletes a stored object: changes schedule
//! deletions in the catalogue (see `easel_catalog`'s "Deleting objects"),
//! and [`Reaper::run_once`] carries out those that are due, each only
//! after the catalogue has checked, under the lock a writer's claim also
//! takes, that no row refers to the object and no writer claims it.
//! [`Reaper::sweep`] schedules objects of the store that no row knows
//! (an upload whose commit failed, a process that died between a put and
//! its commit), once they are old enough that no writer can still be
//! about to refer to them.

use std::time::{Duration, SystemTime};

use easel_catalog::{now_ms, Catalog, CatalogError, DELETION_ABANDON_MARGIN_MS};
use easel_storage::BlobStore;
use serde::Serialize;
use tokio::sync::watch;

use crate::Retention;

/// Keys handled per catalogue round trip.
const BATCH: i64 = 200;

/// The prefixes whose objects rows refer to. IIIF renders (`iiif/`) are a
/// cache with its own rows and budget, and are left to it.
pub const SWEPT_PREFIXES: [&str; 2] = ["originals", "renders"];

/// Carries out due deletions; cheap to clone.
#[derive(Debug, Clone)]
pub struct Reaper {
    catalog: std::sync::Arc<dyn Catalog>,
    store: BlobStore,
    retention: Retention,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reaped {
    /// Retained files whose grace period ended.
    pub expired: i64,
    /// Objects deleted from the store.
    pub deleted: Vec<String>,
    /// Deletions the store refused (retried by a later pass).
    pub failed: usize,
}

/// What a sweep found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    /// Objects listed under [`SWEPT_PREFIXES`].
    pub listed: usize,
    /// Of those, old enough to judge.
    pub old_enough: usize,
    /// Of those, referred to by no row, claimed by no writer: scheduled.
    pub scheduled: Vec<String>,
}

impl Reaper {
    pub fn new(
        catalog: std::sync::Arc<dyn Catalog>,
        store: BlobStore,
        retention: Retention,
    ) -> Self {
        Reaper {
            catalog,
            store,
            retention,
        }
    }

    /// One pass at `now_ms`: ends the retained files whose grace period is
    /// over (scheduling what they were the last reference to), then
    /// deletes every object whose deletion is due.
    pub async fn run_once(&self, now_ms: i64) -> Result<Reaped, CatalogError> {
        let mut reaped = Reaped::default();
        let delete_at = self.retention.delete_at(now_ms);
        loop {
            let expired = self
                .catalog
                .expire_retained(now_ms, delete_at, BATCH)
                .await?;
            reaped.expired += expired;
            if expired < BATCH {
                break;
            }
        }
        loop {
            let due = self.catalog.due_deletions(now_ms, BATCH).await?;
            let mut progressed = false;
            for key in &due {
                let Some(lease) = self.catalog.begin_deletion(key, now_ms).await? else {
                    progressed = true;
                    continue;
                };
                // The lease bounds how long a claim waits for this
                // deletion; past it, a writer may take the object over.
                // A request started that late could outlive it.
                let clock = easel_catalog::now_ms().max(now_ms);
                if clock > lease - DELETION_ABANDON_MARGIN_MS {
                    tracing::warn!(key = %key, "deletion lease too short to start; left to lapse");
                    continue;
                }
                match self.store.delete(key).await {
                    Ok(()) => {
                        self.catalog.end_deletion(key, lease).await?;
                        tracing::debug!(key = %key, "deleted an object nothing refers to");
                        reaped.deleted.push(key.clone());
                        progressed = true;
                    }
                    Err(e) => {
                        // Pending again: retried by a later pass, and a
                        // claim may cancel it meanwhile.
                        self.catalog.abandon_deletion(key, lease).await?;
                        tracing::warn!(key = %key, error = %e, "could not delete an object; will retry");
                        reaped.failed += 1;
                    }
                }
            }
            if (due.len() as i64) < BATCH || !progressed {
                break;
            }
        }
        Ok(reaped)
    }

    /// Runs [`Reaper::run_once`] at once and then every `interval` until
    /// `shutdown` turns true. Failures are logged; the next pass retries.
    pub async fn run(self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.run_once(now_ms()).await {
                Ok(reaped) if !reaped.deleted.is_empty() || reaped.expired > 0 => {
                    tracing::info!(
                        deleted = reaped.deleted.len(),
                        expired = reaped.expired,
                        failed = reaped.failed,
                        "reaped"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reaper pass failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Lists the store and schedules, due at `now_ms`, the deletion of
    /// every object older than `min_age` that no row refers to and no
    /// writer claims. The objects go at the next [`Reaper::run_once`].
    pub async fn sweep(&self, min_age: Duration, now_ms: i64) -> Result<Swept, SweepError> {
        let mut swept = Swept::default();
        let cutoff = SystemTime::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(now_ms).unwrap_or(0))
                .checked_sub(min_age)
                .unwrap_or_default();
        let mut old = Vec::new();
        for prefix in SWEPT_PREFIXES {
            for (key, modified) in self.store.list_with_times(prefix).await? {
                swept.listed += 1;
                if modified <= cutoff {
                    old.push(key);
                }
            }
        }
        swept.old_enough = old.len();
        for chunk in old.chunks(BATCH as usize) {
            let scheduled = self
                .catalog
                .schedule_deletions(chunk, "no row refers to it", now_ms, now_ms)
                .await?;
            swept.scheduled.extend(scheduled);
        }
        Ok(swept)
    }
}

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Storage(#[from] easel_storage::StorageError),
}
