//! The loops of one process: its worker loops (sharing one render thread
//! pool) and its reaper, each started here and stopped by [`Loops::stop`].
//!
//! The binary turns its flags into a [`PoolConfig`]; naming the loops, the
//! thread pool and taking over the jobs of this machine's dead workers
//! happen here, so every command that runs workers (`easel serve`,
//! `easel worker`, `easel rerender`) starts them the same way.

use std::sync::Arc;
use std::time::Duration;

use easel_catalog::Catalog;
use easel_render::Settings;
use easel_storage::BlobStore;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::reaper::Reaper;
use crate::{Retention, Worker, WorkerConfig, WorkerError};

/// Worker loops of a process. A render's decode and the cascade's last
/// steps run on fewer threads than the pool has, and a loop spends a tenth
/// of each job outside the render (claiming, reading the original, storing
/// the files, committing). With two loops the pool often had one render to
/// work on; a third keeps a render queued in the pool for whichever thread
/// frees up (`benches/serve.sh` measures uploads against the render-bound
/// limit). The memory budget still bounds what renders hold at once.
pub const DEFAULT_LOOPS: usize = 3;

/// How long an original a process stored stays in memory for its own
/// render loops ([`Loops::handing_over`]): a job queued longer reads it
/// from the store.
pub const HANDOVER_TTL: Duration = Duration::from_secs(30);

/// The share of the render memory budget that originals awaiting this
/// process's render loops may hold: an eighth, 128 MiB of the default 1
/// GiB (~40 camera photos).
pub const HANDOVER_BUDGET_DIVISOR: u64 = 8;

/// How often a process deletes what is due (and ends grace periods).
pub const REAP_INTERVAL: Duration = Duration::from_secs(30);

/// How a process's worker loops run.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Worker loops (jobs rendered at once); 0 starts none.
    pub loops: usize,
    /// Render threads (rayon) shared by the loops; 0 means one per core.
    pub threads: usize,
    /// What every loop is given.
    pub worker: WorkerConfig,
}

/// Why the worker loops could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the render thread pool")]
    ThreadPool(#[source] rayon::ThreadPoolBuildError),
    #[error("cannot start the worker")]
    Worker(#[source] WorkerError),
}

/// Running loops and the switch that stops them.
#[derive(Debug)]
pub struct Loops {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl Loops {
    /// Starts `config.loops` worker loops, after taking over the jobs that
    /// workers of this machine killed mid-job (kill -9, OOM) left leased:
    /// they would otherwise wait out their leases.
    pub async fn start_workers(
        catalog: &Arc<dyn Catalog>,
        store: &BlobStore,
        settings: &Arc<Settings>,
        wake: &Arc<Notify>,
        config: PoolConfig,
    ) -> Result<Loops, StartError> {
        let (stop, stopped) = watch::channel(false);
        if config.loops == 0 {
            return Ok(Loops {
                stop,
                handles: Vec::new(),
            });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("easel-render-{i}"))
            .build()
            .map_err(StartError::ThreadPool)?;
        let base = Worker::new(
            worker_name(0),
            catalog.clone(),
            store.clone(),
            settings.clone(),
            Arc::new(pool),
            config.worker,
        )
        .map_err(StartError::Worker)?
        .with_wake(wake.clone());
        if let Err(e) = base.reclaim_jobs_of_dead_workers(&host_name()).await {
            tracing::warn!(error = %e, "could not look for the jobs of dead workers");
        }
        let handles = (0..config.loops)
            .map(|i| tokio::spawn(base.named(worker_name(i)).run(stopped.clone())))
            .collect();
        Ok(Loops { stop, handles })
    }

    /// `store` for a process that runs `config`'s loops: with them, the
    /// originals it stores (uploads, origin fetches) stay in memory for a
    /// loop to take instead of reading them back, within an eighth of the
    /// render memory budget and [`HANDOVER_TTL`]; without loops, unchanged.
    /// Give the result to the loops and the API alike.
    pub fn handing_over(store: BlobStore, config: &PoolConfig) -> BlobStore {
        if config.loops == 0 {
            return store;
        }
        let budget = config.worker.memory.total_bytes() / HANDOVER_BUDGET_DIVISOR;
        store.with_handover(budget, HANDOVER_TTL)
    }

    /// Starts the reaper of this process (see [`crate::reaper`]): every API
    /// node and worker process runs one; several at once are safe.
    pub fn start_reaper(
        catalog: &Arc<dyn Catalog>,
        store: &BlobStore,
        retention: Retention,
    ) -> Loops {
        let (stop, stopped) = watch::channel(false);
        let reaper = Reaper::new(catalog.clone(), store.clone(), retention);
        let handle = tokio::spawn(reaper.run(REAP_INTERVAL, stopped));
        Loops {
            stop,
            handles: vec![handle],
        }
    }

    /// Lets each loop finish its current job, then waits for them all.
    pub async fn stop(self) {
        tracing::info!("stopping workers after their current job");
        let _ = self.stop.send(true);
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

/// Unique per loop across machines: the lease owner in the jobs table,
/// `<host>-<pid>-<loop>`, which is how a restarted worker finds the jobs of
/// a dead one ([`Worker::reclaim_jobs_of_dead_workers`]).
pub fn worker_name(index: usize) -> String {
    format!("{}-{}-{index}", host_name(), std::process::id())
}

/// This machine's name, as lease owners carry it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "easel".into())
}
