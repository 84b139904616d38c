//! Easel's catalogue: images, their media assets, and the render job queue.
//!
//! [`Catalog`] is the port the API and the worker talk to. Each database gets
//! its own implementation and its own migration folder (`migrations/sqlite`,
//! later `migrations/postgres`), because the queue's claim step is where the
//! two dialects differ most (`UPDATE ... RETURNING` here, `FOR UPDATE SKIP
//! LOCKED` there). [`connect`] picks the implementation from the URL.
//!
//! Invariants every implementation keeps:
//! - an image row and its first job are committed together;
//! - a job is run by whoever holds its lease; a lapsed lease is claimable;
//! - finishing a job replaces the image's assets and sets its status in one
//!   transaction, and only while the finisher still holds the lease, so a
//!   re-run never duplicates and a slow worker cannot clobber a fast one.

mod model;
mod sqlite;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use model::{Image, ImageStatus, Job, JobStatus, MediaAsset, NewAsset, NewImage};
pub use sqlite::SqliteCatalog;

/// What can go wrong in the catalogue.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH (PostgreSQL is not wired yet)")]
    UnsupportedUrl(String),
    #[error("job {job_id} is no longer leased to {owner}")]
    LeaseLost { job_id: i64, owner: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The catalogue and queue port.
#[async_trait::async_trait]
pub trait Catalog: Send + Sync + std::fmt::Debug + 'static {
    /// Applies pending migrations; safe to call at every start.
    async fn migrate(&self) -> Result<(), CatalogError>;

    /// Checks the database answers.
    async fn ping(&self) -> Result<(), CatalogError>;

    /// Inserts an image in status `ingesting` and its render job, atomically.
    async fn create_image(
        &self,
        image: &NewImage,
        now: DateTime<Utc>,
    ) -> Result<Image, CatalogError>;

    /// Queues a re-render of an existing image; it goes back to `ingesting`
    /// while its current assets keep being served.
    async fn enqueue_render(&self, image_id: &str, now: DateTime<Utc>) -> Result<(), CatalogError>;

    /// An image by id, soft-deleted ones included.
    async fn image(&self, id: &str) -> Result<Option<Image>, CatalogError>;

    /// The image's assets, in style order as stored.
    async fn assets(&self, image_id: &str) -> Result<Vec<MediaAsset>, CatalogError>;

    async fn asset(&self, image_id: &str, style: &str) -> Result<Option<MediaAsset>, CatalogError>;

    /// Leases the oldest due job to `owner` until `now_ms + lease_ms`: a
    /// queued job whose `run_after` has come, or a running job whose lease
    /// lapsed (its worker died). Counts the attempt.
    async fn claim_job(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Job>, CatalogError>;

    /// Extends a lease still held by `owner`; `false` when it was lost.
    async fn renew_lease(
        &self,
        job_id: i64,
        owner: &str,
        until_ms: i64,
    ) -> Result<bool, CatalogError>;

    /// Replaces the image's assets, marks it `finished` and the job `done`,
    /// in one transaction, if `owner` still holds the lease.
    async fn finish_job(
        &self,
        job: &Job,
        owner: &str,
        assets: &[NewAsset],
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError>;

    /// Marks the image `error` with a reason and a stable code, and the job
    /// `failed`: for inputs that will never render.
    async fn fail_job(
        &self,
        job: &Job,
        owner: &str,
        reason: &str,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError>;

    /// Puts the job back in the queue, due at `run_after_ms`: for failures
    /// that may pass (storage, database).
    async fn retry_job(
        &self,
        job: &Job,
        owner: &str,
        run_after_ms: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError>;

    /// Jobs waiting to run (queued or running).
    async fn queue_depth(&self) -> Result<i64, CatalogError>;

    /// Every job of an image, oldest first: for operators and tests.
    async fn jobs_for_image(&self, image_id: &str) -> Result<Vec<Job>, CatalogError>;
}

/// Opens the catalogue a URL names. `sqlite://path/to/file.db` (created if
/// missing) and `sqlite::memory:` are supported.
pub async fn connect(url: &str) -> Result<Arc<dyn Catalog>, CatalogError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteCatalog::connect(url).await?))
    } else {
        Err(CatalogError::UnsupportedUrl(url.to_string()))
    }
}

/// Milliseconds since the Unix epoch: the queue's clock.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Re-exported so callers can classify database failures without a direct
/// sqlx dependency.
pub use sqlx::Error as SqlxError;
