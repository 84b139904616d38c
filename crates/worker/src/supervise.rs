//! A process's worker loops and its reaper: started together, stopped
//! together, each loop finishing its current job first.

use std::sync::Arc;
use std::time::Duration;

use easel_catalog::Catalog;
use easel_render::Settings;
use easel_storage::BlobStore;
use tokio::sync::{watch, Notify};

use crate::reaper::Reaper;
use crate::{Retention, Worker, WorkerConfig, WorkerError};

/// How often a process deletes what is due (and ends grace periods).
pub const REAP_INTERVAL: Duration = Duration::from_secs(30);

/// Loops of this process and the switch that stops them.
pub struct Loops {
    stop: watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Loops {
    /// Lets each loop finish its current job, then waits for them all.
    pub async fn stop(self) {
        tracing::info!("stopping workers after their current job");
        let _ = self.stop.send(true);
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

/// `count` loops of one worker, sharing a rayon pool of `threads` render
/// threads (0: one per core). Jobs that a dead worker of this machine left
/// leased are taken over first.
pub async fn spawn_loops(
    count: usize,
    threads: usize,
    config: WorkerConfig,
    catalog: &Arc<dyn Catalog>,
    store: &BlobStore,
    settings: &Arc<Settings>,
    wake: &Arc<Notify>,
) -> Result<Loops, WorkerError> {
    let (stop, stopped) = watch::channel(false);
    if count == 0 {
        return Ok(Loops {
            stop,
            handles: Vec::new(),
        });
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("easel-render-{i}"))
        .build()
        .map_err(|e| WorkerError::Pool(e.to_string()))?;
    let base = Worker::new(
        loop_name(0),
        catalog.clone(),
        store.clone(),
        settings.clone(),
        Arc::new(pool),
        config,
    )?
    .with_wake(wake.clone());
    // A worker of this machine killed mid-job (kill -9, OOM) left leases
    // that would hold its jobs for up to the lease: take them over now.
    if let Err(e) = base.reclaim_jobs_of_dead_workers(&host_name()).await {
        tracing::warn!(error = %e, "could not look for the jobs of dead workers");
    }
    let handles = (0..count)
        .map(|i| tokio::spawn(base.named(loop_name(i)).run(stopped.clone())))
        .collect();
    Ok(Loops { stop, handles })
}

/// The reaper of this process (see [`crate::reaper`]): every API node and
/// worker process runs one; several at once are safe.
pub fn spawn_reaper(catalog: &Arc<dyn Catalog>, store: &BlobStore, retention: Retention) -> Loops {
    let (stop, stopped) = watch::channel(false);
    let reaper = Reaper::new(catalog.clone(), store.clone(), retention);
    let handle = tokio::spawn(reaper.run(REAP_INTERVAL, stopped));
    Loops {
        stop,
        handles: vec![handle],
    }
}

/// Unique per loop across machines: the lease owner in the jobs table,
/// `<host>-<pid>-<loop>`, which is how a restarted worker finds the jobs of
/// a dead one ([`Worker::reclaim_jobs_of_dead_workers`]).
fn loop_name(index: usize) -> String {
    format!("{}-{}-{index}", host_name(), std::process::id())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "easel".into())
}
