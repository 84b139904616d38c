//! Easel's render worker: claims a job, renders every style, records assets.
//!
//! [`Worker::run_once`] is one step (claim, render, store, record) used by
//! both the [`Worker::run`] loop and the tests. Rendering is CPU-bound, so it
//! runs on `spawn_blocking` inside a dedicated rayon pool, never on the async
//! runtime's threads; the lease is renewed beside it while it runs.
//!
//! Failure policy: an image the engine refuses (unsupported, too large,
//! corrupt) will never render, so it ends in status `error` with the
//! engine's reason and code, without retry; so does one whose original is
//! missing from the store (`original-missing`: retrying cannot bring it
//! back). Storage and database trouble may pass, so the job goes back to
//! the queue with exponential backoff, until `max_attempts` is spent; an
//! outage of our own object store or catalogue (down, or full: `ENOSPC`, a
//! quota, `SQLITE_FULL`) spends no attempt: the job waits it out, backing
//! off up to `retry_max`, and resumes on its own once space returns.
//!
//! Files are claimed in the catalogue before they are stored, and the claim
//! ends in the transaction that commits their rows (see `easel_catalog`'s
//! "Deleting objects"); nothing here deletes an object. [`reaper`] does,
//! for every process that runs workers or the API. An origin fetched in a
//! fetch slot is claimed and stored like an upload's original, and the
//! hand-over to the render loops ends the claim.

pub mod reaper;
pub mod supervise;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use easel_app::feed;
use easel_app::originals::{self, OriginalError};
use easel_catalog::{
    now_ms, Catalog, CatalogError, Claim, ClaimFilter, Finish, Job, JobKind, NewAsset,
    OriginalFacts,
};
pub use easel_catalog::{Retention, DEFAULT_DELETE_DELAY, DEFAULT_GRACE};
use easel_origin::{OriginConfig, OriginError, OriginFetcher};
use easel_render::{Crop, Rendition, Settings, Style};
use easel_storage::{render_key, BlobStore, StorageError};
use tokio::sync::{watch, Notify, Semaphore};

/// Stable codes for failures that are the worker's, not the engine's.
pub mod codes {
    /// The job ran out of attempts (storage kept failing, or workers died).
    pub const ABANDONED: &str = "render-abandoned";
    /// The engine panicked: a bug, kept from taking the process down.
    pub const PANICKED: &str = "render-panicked";
    /// The image row disappeared before its job ran.
    pub const IMAGE_GONE: &str = "image-gone";
    /// The origin could not be fetched and retrying will not help.
    pub const ORIGIN_FAILED: &str = "origin-failed";
    /// The image's original is not in the object store: a render can
    /// never succeed, however often it is retried.
    pub const ORIGINAL_MISSING: &str = "original-missing";
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How long a claim lasts without renewal; a dead worker's job becomes
    /// claimable after it.
    pub lease: Duration,
    /// How often an idle worker looks for jobs (it is also woken on upload).
    pub poll_interval: Duration,
    /// Claims before a job is abandoned.
    pub max_attempts: i64,
    /// First retry delay; doubled per attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How origin URLs are fetched (timeouts, size, private addresses).
    pub origin: OriginConfig,
    /// When files stop being served and kept (grace period, delete delay).
    pub retention: Retention,
    /// Origin fetches at once, beside the render loops and apart from
    /// them: a slow origin holds a fetch slot, never a render loop.
    pub origin_fetches: usize,
    /// The process's render memory budget (shared with IIIF renders):
    /// each render reserves its estimate before it decodes.
    pub memory: easel_budget::MemoryBudget,
    /// Called with the image's id after each render this worker commits,
    /// so the process's file lookups drop what it replaced, and after each
    /// failure it records: either ends a `?wait=true` of this process.
    pub on_commit: OnCommit,
}

/// A callback after a commit (see [`WorkerConfig::on_commit`]).
#[derive(Clone, Default)]
pub struct OnCommit(Option<Arc<CommitCallback>>);

type CommitCallback = dyn Fn(&str) + Send + Sync;

impl OnCommit {
    pub fn new(callback: impl Fn(&str) + Send + Sync + 'static) -> Self {
        OnCommit(Some(Arc::new(callback)))
    }

    fn call(&self, image_id: &str) {
        if let Some(callback) = &self.0 {
            callback(image_id);
        }
    }
}

impl std::fmt::Debug for OnCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "OnCommit(Some)"
        } else {
            "OnCommit(None)"
        })
    }
}

/// The default [`WorkerConfig::lease`].
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// The default [`WorkerConfig::max_attempts`].
pub const DEFAULT_MAX_ATTEMPTS: i64 = 5;
/// The default [`WorkerConfig::origin_fetches`].
pub const DEFAULT_ORIGIN_FETCHES: usize = 4;

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            lease: DEFAULT_LEASE,
            poll_interval: Duration::from_millis(500),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            origin: OriginConfig::default(),
            retention: Retention::default(),
            origin_fetches: DEFAULT_ORIGIN_FETCHES,
            memory: easel_budget::MemoryBudget::default(),
            on_commit: OnCommit::default(),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every style stored and recorded.
    Finished { image_id: String, styles: usize },
    /// The image is in status `error` with this code.
    Failed { image_id: String, code: String },
    /// Put back in the queue for later.
    Retried { image_id: String, reason: String },
    /// Another worker took the job over; nothing was recorded.
    LeaseLost { image_id: String },
    /// The origin was fetched and stored; the job waits for a render loop.
    Fetched { image_id: String },
    /// The image changed while it rendered (a new crop, a replaced
    /// original): a newer job renders it again, so these files were not
    /// committed.
    Superseded { image_id: String },
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("cannot build the origin fetcher: {0}")]
    Origin(#[from] easel_origin::OriginError),
}

/// One worker; clone it to run several loops that share the rayon pool.
#[derive(Clone)]
pub struct Worker {
    id: String,
    catalog: Arc<dyn Catalog>,
    store: BlobStore,
    settings: Arc<Settings>,
    pool: Arc<rayon::ThreadPool>,
    config: WorkerConfig,
    origin: Arc<OriginFetcher>,
    wake: Arc<Notify>,
    /// The settings fingerprint this worker renders with: it claims only
    /// jobs that carry none or this one.
    fingerprint: Arc<str>,
    /// Origin fetch slots, shared by the clones of one worker.
    fetches: Arc<Semaphore>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Worker {
    pub fn new(
        id: impl Into<String>,
        catalog: Arc<dyn Catalog>,
        store: BlobStore,
        settings: Arc<Settings>,
        pool: Arc<rayon::ThreadPool>,
        config: WorkerConfig,
    ) -> Result<Self, WorkerError> {
        let origin = Arc::new(OriginFetcher::new(config.origin.clone())?);
        Ok(Worker {
            id: id.into(),
            catalog,
            store,
            fingerprint: settings.fingerprint().into(),
            settings,
            pool,
            fetches: Arc::new(Semaphore::new(config.origin_fetches.max(1))),
            config,
            origin,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Shares a wake-up signal, so an upload in the same process starts its
    /// render at once instead of at the next poll.
    pub fn with_wake(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// A copy under another lease owner name.
    pub fn named(&self, id: impl Into<String>) -> Self {
        Worker {
            id: id.into(),
            ..self.clone()
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Takes over the jobs of this machine's workers that died (`kill -9`,
    /// a crash, an OOM kill) instead of waiting out their leases: run once
    /// when a worker process starts, before its loops claim anything.
    ///
    /// Lease owners are named `<host>-<pid>-<loop>` (see `easel worker`), so
    /// a running job whose owner is on `host` and whose process is gone, or
    /// is this very process (a restarted container keeps its pid and host
    /// name), has no one working on it. Its lease is ended; the next claim
    /// runs it again (counting the attempt, as for any lapsed lease: a job
    /// that kills its worker every time is still abandoned in the end).
    /// Returns the jobs taken over. Without `/proc` nothing is taken over.
    pub async fn reclaim_jobs_of_dead_workers(&self, host: &str) -> Result<Vec<i64>, WorkerError> {
        let prefix = format!("{host}-");
        let mut reclaimed = Vec::new();
        for (job_id, owner) in self.catalog.running_leases().await? {
            let Some(pid) = owner
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            let dead = pid == std::process::id() || local_process_is_gone(pid) == Some(true);
            if dead && self.catalog.expire_lease(job_id, &owner, now_ms()).await? {
                tracing::warn!(worker = %self.id, job = job_id, dead = %owner, "took over the job of a worker that is no longer running");
                reclaimed.push(job_id);
            }
        }
        Ok(reclaimed)
    }

    /// Claims and runs at most one job (an ingest job's fetch and render
    /// both); `None` when the queue has nothing for this worker.
    pub async fn run_once(&self) -> Result<Option<Outcome>, WorkerError> {
        let Some(job) = self.claim(true).await? else {
            return Ok(None);
        };
        self.run_job(job, Step::Whole).await.map(Some)
    }

    /// Leases a due job this worker may run: one that carries no settings
    /// fingerprint or this worker's; an ingest job only if `ingest`.
    async fn claim(&self, ingest: bool) -> Result<Option<Job>, WorkerError> {
        let lease_ms = self.config.lease.as_millis() as i64;
        let filter = ClaimFilter {
            fingerprint: &self.fingerprint,
            ingest,
        };
        Ok(self
            .catalog
            .claim_job_for(&self.id, now_ms(), lease_ms, &filter)
            .await?)
    }

    async fn run_job(&self, job: Job, step: Step) -> Result<Outcome, WorkerError> {
        tracing::info!(worker = %self.id, job = job.id, image = %job.image_id, attempt = job.attempts, "claimed");
        let renewer = self.spawn_lease_renewal(&job);
        let result = match step {
            Step::Whole => self.process(&job).await,
            Step::Fetch => self.fetch(&job).await,
        };
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(WorkerError::Catalog(CatalogError::LeaseLost { .. })) => {
                tracing::warn!(worker = %self.id, job = job.id, "lease lost; another worker owns the job");
                Outcome::LeaseLost {
                    image_id: job.image_id.clone(),
                }
            }
            Err(WorkerError::Catalog(e)) if e.is_unavailable() => {
                let given_back = self.give_back(&job, e).await;
                renewer.abort();
                given_back?
            }
            Err(e) => {
                renewer.abort();
                return Err(e);
            }
        };
        renewer.abort();
        match &outcome {
            Outcome::Finished { image_id, styles } => {
                tracing::info!(worker = %self.id, image = %image_id, styles, "finished")
            }
            Outcome::Failed { image_id, code } => {
                metrics::counter!("easel_render_failures_total", "code" => code.clone())
                    .increment(1);
                tracing::warn!(worker = %self.id, image = %image_id, code = %code, "image failed")
            }
            Outcome::Retried { image_id, reason } => {
                metrics::counter!("easel_render_retries_total").increment(1);
                tracing::warn!(worker = %self.id, image = %image_id, reason = %reason, "will retry")
            }
            Outcome::Superseded { image_id } => {
                tracing::info!(worker = %self.id, image = %image_id, "superseded by a newer job; files not committed")
            }
            Outcome::Fetched { image_id } => {
                tracing::info!(worker = %self.id, image = %image_id, "origin fetched; queued for rendering")
            }
            Outcome::LeaseLost { .. } => {}
        }
        Ok(outcome)
    }

    /// Runs jobs until `shutdown` turns true; a job in progress is finished
    /// first, so stopping never wastes a render.
    ///
    /// Ingest jobs are fetched in one of the `origin_fetches` slots, as
    /// tasks beside the loop: a slow origin occupies a slot, not this loop,
    /// which goes on rendering. A fetched original goes back to the queue
    /// as a render job for whichever loop is free.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(worker = %self.id, "worker started");
        let mut fetching = tokio::task::JoinSet::new();
        loop {
            while fetching.try_join_next().is_some() {}
            if *shutdown.borrow() {
                break;
            }
            // The slot first: an ingest job is claimed only when its fetch
            // can start at once.
            let slot = self.fetches.clone().try_acquire_owned().ok();
            match self.claim(slot.is_some()).await {
                Ok(Some(job)) if job.kind() == JobKind::Ingest => {
                    let worker = self.clone();
                    fetching.spawn(async move {
                        let _slot = slot;
                        if let Err(e) = worker.run_job(job, Step::Fetch).await {
                            tracing::error!(worker = %worker.id, error = %e, "origin fetch failed");
                        }
                    });
                    continue;
                }
                Ok(Some(job)) => {
                    drop(slot);
                    if let Err(e) = self.run_job(job, Step::Whole).await {
                        tracing::error!(worker = %self.id, error = %e, "worker step failed");
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(worker = %self.id, error = %e, "worker step failed"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
        while fetching.join_next().await.is_some() {}
        tracing::info!(worker = %self.id, "worker stopped");
    }

    /// The catalogue went down or filled up mid-job: puts the job back
    /// without spending its attempt, trying again (the lease still renewed
    /// beside it) until that write gets through or a lease's time has
    /// passed. A job left to its lease instead spends an attempt when it is
    /// claimed again, and a few such outages would abandon the image.
    async fn give_back(&self, job: &Job, error: CatalogError) -> Result<Outcome, WorkerError> {
        let reason = format!("the catalogue failed: {error}");
        let deadline = Instant::now() + self.config.lease;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.retry(job, &reason, false).await {
                Err(WorkerError::Catalog(CatalogError::LeaseLost { .. })) => {
                    return Ok(Outcome::LeaseLost {
                        image_id: job.image_id.clone(),
                    })
                }
                Err(WorkerError::Catalog(e)) if e.is_unavailable() && Instant::now() < deadline => {
                    tracing::warn!(worker = %self.id, job = job.id, error = %e, "catalogue still failing; will put the job back");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    fn spawn_lease_renewal(&self, job: &Job) -> tokio::task::JoinHandle<()> {
        let (catalog, owner, job_id) = (self.catalog.clone(), self.id.clone(), job.id);
        let lease = self.config.lease;
        tokio::spawn(async move {
            // A third of the lease: two renewals can fail before it lapses.
            let mut tick = tokio::time::interval((lease / 3).max(Duration::from_millis(10)));
            tick.tick().await;
            loop {
                tick.tick().await;
                let until = now_ms() + lease.as_millis() as i64;
                match catalog.renew_lease(job_id, &owner, until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job = job_id, "lease taken over; stopping renewal");
                        break;
                    }
                    Err(e) => tracing::warn!(job = job_id, error = %e, "lease renewal failed"),
                }
            }
        })
    }

    async fn process(&self, job: &Job) -> Result<Outcome, WorkerError> {
        let image_id = job.image_id.clone();
        if job.attempts > self.config.max_attempts {
            let reason = format!(
                "gave up after {} attempts; last error: {}",
                job.attempts - 1,
                job.last_error
                    .as_deref()
                    .unwrap_or("the worker stopped mid-render")
            );
            return self.fail(job, &reason, codes::ABANDONED).await;
        }
        let Some(image) = self.catalog.image(&job.image_id).await? else {
            return self
                .fail(job, "the image no longer exists", codes::IMAGE_GONE)
                .await;
        };
        let crop = image.crop();
        let (original, facts) = match (job.kind(), image.original()) {
            (JobKind::Render, Some(stored)) => match self.store.take_or_get(stored.key).await {
                Ok(bytes) => match image.original_facts() {
                    Some(facts) => (bytes, facts),
                    None => {
                        let reason = "the image's row lacks its original's width or height";
                        return self.fail(job, reason, codes::ORIGINAL_MISSING).await;
                    }
                },
                Err(StorageError::NotFound { .. }) => {
                    let reason = format!(
                        "the original ({}) is missing from the object store",
                        stored.key
                    );
                    return self.fail(job, &reason, codes::ORIGINAL_MISSING).await;
                }
                Err(e) => return self.retry(job, &e.to_string(), !e.is_outage()).await,
            },
            // An ingest job, or a render whose origin never arrived.
            _ => match self.ingest(job, image.ingest_url()).await? {
                Ingested::Ready(bytes, facts) => {
                    // Records the original and ends its claim in one
                    // transaction.
                    if let Err(e) = self
                        .catalog
                        .set_original(&job.image_id, &facts, Utc::now())
                        .await
                    {
                        self.release_original(&facts).await;
                        return Err(e.into());
                    }
                    (bytes, facts)
                }
                Ingested::Done(outcome) => return Ok(outcome),
            },
        };

        // A bucket may hold its feed files to a budget of its own; the
        // settings fingerprint stays the server's (see the README).
        let settings = match self
            .catalog
            .bucket_settings(&image.bucket)
            .await?
            .feed_max_bytes
        {
            Some(budget) => Arc::new(Settings {
                feed_max_bytes: u64::try_from(budget).unwrap_or(0),
                ..(*self.settings).clone()
            }),
            None => self.settings.clone(),
        };

        // Memory before pixels: the header says what the render will hold;
        // one that can never fit the budget fails, others wait for room.
        let memory = match easel_render::decode_cost(&original, &self.settings.limits)
            .and_then(|cost| cost.check(self.config.memory.total_bytes()))
        {
            Ok(needed) => needed,
            Err(e) => return self.fail(job, &e.to_string(), e.code()).await,
        };
        if self.config.memory.available_bytes() < memory {
            tracing::info!(worker = %self.id, job = job.id, needed = memory, "waiting for render memory");
            metrics::counter!("easel_render_memory_waits_total").increment(1);
        }
        let Ok(reservation) = self.config.memory.reserve(memory).await else {
            return self
                .fail(
                    job,
                    "the render memory budget is too small",
                    "too-much-memory",
                )
                .await;
        };

        // Tells a slow fetch from a slow render in the logs.
        tracing::info!(worker = %self.id, job = job.id, image = %image_id, bytes = original.len(), memory, "rendering");
        let started = Instant::now();
        let mut rendition = match self.render(original, crop, settings, reservation).await {
            Ok(Ok(rendition)) => rendition,
            Ok(Err(e)) => {
                if e.kind() == easel_render::ErrorKind::Internal {
                    // A bug of ours on this original (its sha256 is in the message).
                    tracing::error!(worker = %self.id, job = job.id, image = %image_id, error = %e, "the render engine failed");
                }
                return self.fail(job, &e.to_string(), e.code()).await;
            }
            Err(panic) => return self.fail(job, &panic, codes::PANICKED).await,
        };
        record_render_metrics(&rendition, started.elapsed());

        let holder = claim_holder(&self.id, "render", job.id);
        let stored = match self.store_files(&holder, &facts, &mut rendition).await {
            Ok(stored) => stored,
            Err(e) => {
                self.release(&holder).await;
                return match e {
                    Stored::Catalog(e) => Err(e.into()),
                    Stored::Storage(e) => self.retry(job, &e.to_string(), !e.is_outage()).await,
                };
            }
        };
        let (assets, claimed) = stored;
        let styles = assets.len();
        let now = Utc::now();
        let feed = &rendition.feed;
        let finish = Finish {
            assets: &assets,
            feed_style: feed.style.map(|s| s.as_str().to_string()),
            feed_side: feed.side.map(i64::from),
            readiness: feed::readiness(feed::Outcome::Rendered(feed)),
            claim: Some(Claim {
                holder: &holder,
                keys: &claimed,
            }),
            retain_until_ms: self.config.retention.retain_until(now.timestamp_millis()),
            delete_at_ms: self.config.retention.delete_at(now.timestamp_millis()),
        };
        let finished = match self.catalog.finish_job(job, &self.id, &finish, now).await {
            Ok(finished) => finished,
            Err(e) => {
                self.release(&holder).await;
                return match e {
                    // Stored too slowly to trust the claim: store again.
                    CatalogError::ClaimLost { .. } => self.retry(job, &e.to_string(), false).await,
                    e => Err(e.into()),
                };
            }
        };
        Ok(if finished.committed {
            self.config.on_commit.call(&image_id);
            Outcome::Finished { image_id, styles }
        } else {
            Outcome::Superseded { image_id }
        })
    }

    /// Ends a claim nothing committed on (best effort: an unreleased claim
    /// lapses on its own, and the sweep finds what it left).
    async fn release(&self, holder: &str) {
        easel_app::release_claims(self.catalog.as_ref(), &self.config.retention, holder).await;
    }

    /// Ends the claim an origin fetch took on the original it stored, when
    /// nothing committed on it.
    async fn release_original(&self, facts: &OriginalFacts) {
        originals::release(self.catalog.as_ref(), &self.config.retention, facts).await;
    }

    /// An ingest job in a fetch slot: fetches and stores the original,
    /// then hands the job to the render loops.
    async fn fetch(&self, job: &Job) -> Result<Outcome, WorkerError> {
        let image_id = job.image_id.clone();
        let Some(image) = self.catalog.image(&image_id).await? else {
            return self
                .fail(job, "the image no longer exists", codes::IMAGE_GONE)
                .await;
        };
        match self.ingest(job, image.ingest_url()).await? {
            Ingested::Ready(_, facts) => {
                // Records the original and ends its claim in one
                // transaction; if the image moved on meanwhile, nothing
                // records it, and releasing the claim lets the reaper have
                // the object unless another row came to refer to it.
                let queued = match self
                    .catalog
                    .hand_over_fetched(job, &self.id, &facts, Utc::now())
                    .await
                {
                    Ok(queued) => queued,
                    Err(e) => {
                        self.release_original(&facts).await;
                        return Err(e.into());
                    }
                };
                if !queued {
                    self.release_original(&facts).await;
                    return Ok(Outcome::Superseded { image_id });
                }
                self.wake.notify_one();
                Ok(Outcome::Fetched { image_id })
            }
            Ingested::Done(outcome) => Ok(outcome),
        }
    }

    /// Fetches an origin, checks it like an upload and stores it. Passing
    /// trouble (a refused connection, a 5xx) retries; a refused address, a
    /// 404, a non-image or an origin too slow to send the image within the
    /// fetch timeout ends the image in `error` (a slow origin retried would
    /// only hold a fetch slot again for as long).
    async fn ingest(&self, job: &Job, origin: Option<&str>) -> Result<Ingested, WorkerError> {
        let Some(url) = origin else {
            let outcome = self
                .fail(
                    job,
                    "the image has neither an original nor an origin URL",
                    codes::IMAGE_GONE,
                )
                .await?;
            return Ok(Ingested::Done(outcome));
        };
        let fetched = match self.origin.fetch(url).await {
            Ok(fetched) => fetched,
            Err(e @ OriginError::Timeout { .. }) => {
                let reason = format!(
                    "{e}: the origin is too slow (the whole image must arrive within \
                     --origin-timeout-secs, {} s); not retried",
                    self.config.origin.total_timeout.as_secs()
                );
                let outcome = self.fail(job, &reason, e.code()).await?;
                return Ok(Ingested::Done(outcome));
            }
            Err(e) if e.is_transient() => {
                return Ok(Ingested::Done(self.retry(job, &e.to_string(), true).await?))
            }
            Err(e) => {
                let outcome = self.fail(job, &e.to_string(), e.code()).await?;
                return Ok(Ingested::Done(outcome));
            }
        };
        let bytes = fetched.bytes;
        let checks = originals::Checks {
            settings: self.settings.clone(),
            memory_budget: None,
            crop: None,
        };
        let facts = match originals::inspect(&bytes, checks).await {
            Ok(facts) => facts,
            Err(OriginalError::Refused(e)) => {
                return Ok(Ingested::Done(
                    self.fail(job, &e.to_string(), e.code()).await?,
                ))
            }
            Err(e) => {
                return Ok(Ingested::Done(
                    self.fail(job, &e.to_string(), codes::PANICKED).await?,
                ))
            }
        };
        let holder = claim_holder(&self.id, "origin", job.id);
        let stored = originals::store(
            self.catalog.as_ref(),
            &self.store,
            &self.config.retention,
            holder,
            facts,
            bytes.clone(),
        )
        .await;
        let facts = match stored {
            Ok(facts) => facts,
            Err(OriginalError::Storage(e)) => {
                return Ok(Ingested::Done(
                    self.retry(job, &e.to_string(), !e.is_outage()).await?,
                ));
            }
            Err(OriginalError::Catalog(e)) => return Err(e.into()),
            Err(e) => {
                return Ok(Ingested::Done(
                    self.fail(job, &e.to_string(), codes::PANICKED).await?,
                ))
            }
        };
        tracing::info!(image = %job.image_id, bytes = facts.size, url = %fetched.final_url, "origin fetched");
        Ok(Ingested::Ready(bytes, facts))
    }

    /// Renders off the async threads. The outer error is a panic, reported
    /// as text: one bad input must not take the worker down.
    async fn render(
        &self,
        original: Bytes,
        crop: Option<Crop>,
        settings: Arc<Settings>,
        memory: easel_budget::Reservation,
    ) -> Result<Result<Rendition, easel_render::RenderError>, String> {
        let pool = self.pool.clone();
        let give_back = gives_memory_back(memory.bytes(), self.config.memory.total_bytes());
        tokio::task::spawn_blocking(move || {
            // Held by the thread: given back when the pixels are.
            let _memory = memory;
            pool.install(|| {
                let rendition = easel_render::render(original, crop, &settings);
                if give_back {
                    give_back_freed_memory();
                }
                rendition
            })
        })
        .await
        .map_err(|e| format!("the render engine crashed: {e}"))
    }

    /// Claims the rendered files' keys, then stores them; returns their
    /// rows and the keys claimed. The files' bytes move into the store
    /// (uncopied); the rendition keeps their facts.
    async fn store_files(
        &self,
        holder: &str,
        image: &OriginalFacts,
        rendition: &mut Rendition,
    ) -> Result<(Vec<NewAsset>, Vec<String>), Stored> {
        let keys: Vec<String> = rendition
            .files
            .iter()
            .map(|file| render_key(&file.sha256, file.extension))
            .collect();
        self.catalog
            .claim_objects(holder, &keys, now_ms())
            .await
            .map_err(Stored::Catalog)?;
        let fingerprint = self.settings.fingerprint();
        // The original is an asset too, so every style is one row away.
        let mut assets = vec![NewAsset {
            style: Style::Original.as_str().to_string(),
            storage_key: image.original_key.clone(),
            size: image.size,
            mimetype: image.mimetype.clone(),
            width: image.width,
            height: image.height,
            sha256: image.sha256.clone(),
            upscaled: false,
            settings_fingerprint: fingerprint.clone(),
            quality: None,
        }];
        let puts = rendition.files.iter_mut().zip(&keys).map(|(file, key)| {
            let bytes = Bytes::from(std::mem::take(&mut file.bytes));
            self.store.put_if_absent(key, bytes)
        });
        // All at once: on S3 each put is a round trip, and the loop's next
        // render waits for them. Every put has ended before an error goes
        // back, since the caller then ends the claim: no write may land
        // after that.
        for stored in futures_util::future::join_all(puts).await {
            stored.map_err(Stored::Storage)?;
        }
        for (file, key) in rendition.files.iter().zip(&keys) {
            assets.push(NewAsset {
                style: file.style.as_str().to_string(),
                storage_key: key.clone(),
                size: file.size as i64,
                mimetype: file.mimetype.to_string(),
                width: i64::from(file.width),
                height: i64::from(file.height),
                sha256: file.sha256.clone(),
                upscaled: file.upscaled,
                settings_fingerprint: fingerprint.clone(),
                quality: file.quality.map(i64::from),
            });
        }
        Ok((assets, keys))
    }

    async fn fail(&self, job: &Job, reason: &str, code: &str) -> Result<Outcome, WorkerError> {
        self.catalog
            .fail_job(
                job,
                &self.id,
                reason,
                code,
                &feed::readiness(feed::Outcome::Failed(reason)),
                Utc::now(),
            )
            .await?;
        self.config.on_commit.call(&job.image_id);
        Ok(Outcome::Failed {
            image_id: job.image_id.clone(),
            code: code.to_string(),
        })
    }

    /// Back to the queue after a backoff; `attempt_spent` is false for an
    /// outage of our own store, which retries (at the capped backoff) for
    /// as long as it lasts instead of failing the image.
    async fn retry(
        &self,
        job: &Job,
        reason: &str,
        attempt_spent: bool,
    ) -> Result<Outcome, WorkerError> {
        let reason = reason.to_string();
        // Outages back off too: a store that is down for an hour is asked
        // again every `retry_max`, not every second.
        let delay = backoff(&self.config, job.attempts + job.outages);
        let run_after = now_ms() + delay.as_millis() as i64;
        self.catalog
            .retry_job(job, &self.id, run_after, &reason, attempt_spent, Utc::now())
            .await?;
        Ok(Outcome::Retried {
            image_id: job.image_id.clone(),
            reason,
        })
    }
}

/// Whether no process of this program runs as `pid` on this machine: it
/// exited, is a zombie, or the pid now belongs to another program. `None`
/// when `/proc` cannot tell.
fn local_process_is_gone(pid: u32) -> Option<bool> {
    /// The command name and state of `/proc/<pid>/stat`: `pid (comm) S ...`.
    fn stat(of: &str) -> Option<(String, char)> {
        let text = std::fs::read_to_string(format!("/proc/{of}/stat")).ok()?;
        let (open, close) = (text.find('(')?, text.rfind(')')?);
        let state = text.get(close + 1..)?.trim_start().chars().next()?;
        Some((text.get(open + 1..close)?.to_string(), state))
    }
    let (ours, _) = stat("self")?;
    Some(match stat(&pid.to_string()) {
        Some((name, state)) => name != ours || matches!(state, 'Z' | 'X'),
        None => true,
    })
}

/// What a claimed job is run for.
#[derive(Clone, Copy)]
enum Step {
    /// Everything: fetch the origin if needed, render, store, record.
    Whole,
    /// An ingest job in a fetch slot: fetch and store the origin only.
    Fetch,
}

enum Ingested {
    Ready(Bytes, OriginalFacts),
    Done(Outcome),
}

/// Why storing a render's files stopped.
enum Stored {
    Catalog(CatalogError),
    Storage(StorageError),
}

/// A claim holder name no other write uses: the worker, what it stores,
/// the job, and the time (a job can be claimed again by the same worker).
fn claim_holder(worker: &str, what: &str, job_id: i64) -> String {
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{worker}/{what}/{job_id}/{}-{n}", now_ms())
}

/// `retry_base * 2^(attempt-1)`, capped at `retry_max`.
pub fn backoff(config: &WorkerConfig, attempt: i64) -> Duration {
    let exponent = attempt.saturating_sub(1).clamp(0, 20) as u32;
    config
        .retry_base
        .saturating_mul(1u32 << exponent)
        .min(config.retry_max)
}

fn record_render_metrics(rendition: &Rendition, elapsed: Duration) {
    metrics::histogram!("easel_render_seconds").record(elapsed.as_secs_f64());
    let t = &rendition.timings;
    for (stage, d) in [
        ("decode", t.decode),
        ("orient", t.orient),
        ("colour", t.colour),
        ("strip", t.strip),
        ("resize", t.resize),
        ("encode", t.encode),
    ] {
        metrics::histogram!("easel_render_stage_seconds", "stage" => stage).record(d.as_secs_f64());
    }
    for file in &rendition.files {
        metrics::counter!("easel_renders_total", "style" => file.style.as_str()).increment(1);
        metrics::counter!("easel_rendered_bytes_total", "style" => file.style.as_str())
            .increment(file.size);
        metrics::histogram!("easel_style_render_seconds", "style" => file.style.as_str())
            .record(file.elapsed.as_secs_f64());
    }
}

/// Whether a render holding `reserved` of a `budget` gives the memory it
/// freed back to the system as soon as it ends, before its reservation is
/// released. mimalloc keeps freed memory resident for its purge delay (10 s
/// in the service), and a render admitted at once could not always reuse
/// it: a 400 MB decode buffer landed beside the previous render's unpurged
/// one, and the serve process's peak RSS with two 100 MP 16-bit PNGs was
/// 880-894 MiB in 3 of 10 runs instead of ~530, so the budget's accounting
/// did not hold for the process's memory. Giving back after every render
/// makes the next one fault its buffers in again: uploads of the 12 MP
/// photo took 15,400 page faults each instead of ~1,400, 14-20% more CPU,
/// and 11-15% fewer ran per minute. So only renders holding a quarter of the
/// budget or more do: what a smaller one leaves resident is less than a
/// quarter of the budget, and uploads of camera photos (~134 MiB of the
/// default 1 GiB) keep their buffers.
fn gives_memory_back(reserved: u64, budget: u64) -> bool {
    reserved >= budget / 4
}

/// Returns the memory this process's renders freed to the system now.
fn give_back_freed_memory() {
    // SAFETY: mi_collect has no preconditions; it only purges memory that
    // mimalloc already holds as free.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_an_unused_pid_is_gone() {
        assert_eq!(local_process_is_gone(std::process::id()), Some(false));
        // Above the kernel's pid_max (at most 2^22).
        assert_eq!(local_process_is_gone(u32::MAX - 1), Some(true));
    }

    #[test]
    fn renders_holding_a_quarter_of_the_budget_or_more_give_their_memory_back() {
        const MIB: u64 = 1 << 20;
        let budget = easel_budget::DEFAULT_BUDGET_BYTES;
        // A 100 MP 16-bit RGBA PNG: the render the safety test holds to the budget.
        assert!(gives_memory_back(730 * MIB, budget));
        assert!(gives_memory_back(budget / 4, budget));
        assert!(!gives_memory_back(budget / 4 - 1, budget));
        // The 12 MP camera photo of every upload benchmark.
        assert!(!gives_memory_back(140 * MIB, budget));
        // A small budget: every render is large for it.
        assert!(gives_memory_back(140 * MIB, 200 * MIB));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let config = WorkerConfig {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            ..WorkerConfig::default()
        };
        let delays: Vec<u64> = (1..=6).map(|a| backoff(&config, a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(&config, 0).as_secs(), 1);
        assert_eq!(backoff(&config, i64::MAX).as_secs(), 10);
    }
}
