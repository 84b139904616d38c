//! Easel's catalogue: images, their media assets, and the render job queue.
//!
//! The ports are split by aggregate: [`ImageRepo`], [`JobQueue`],
//! [`KeyStore`], [`BatchRepo`], [`RenderCacheIndex`] and [`ObjectLedger`]
//! (plus [`Database`] for the schema and health); [`Catalog`] is all of
//! them, for the callers that need several. SQLite and PostgreSQL share one
//! implementation (`sql.rs` and one file per port in `sql/`, compiled per
//! driver so sqlx keeps native types) and differ only in their migration folders
//! (`migrations/sqlite`, `migrations/postgres`), connection set-up and the
//! queue's claim step (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's
//! single writer makes its `UPDATE ... RETURNING` atomic already).
//! [`connect`] picks the implementation from the URL.
//!
//! Invariants every implementation keeps:
//! - an image row and its first job are committed together;
//! - a job is run by whoever holds its lease; a lapsed lease is claimable;
//! - finishing a job replaces the image's assets and sets its status in one
//!   transaction, and only while the finisher still holds the lease, so a
//!   re-run never duplicates and a slow worker cannot clobber a fast one;
//! - no stored object a committed row refers to is ever deleted (see
//!   "Deleting objects" below).
//!
//! # Deleting objects
//!
//! Objects are content-addressed and shared: an upload that finds its
//! original already stored skips the write and relies on the object that
//! is there, which a concurrent delete may be about to remove. So nothing
//! deletes an object directly. A change that leaves an object unreferenced
//! schedules it (`object_deletions`, in the same transaction as the change,
//! due after a delay); files a re-render replaced are first retained for
//! the grace period (`retained_files`, still served at their versioned
//! URLs). Every transaction that claims, schedules or starts deleting an
//! object first takes that object's lock (a transaction-scoped advisory
//! lock on PostgreSQL; SQLite's one write lock), so they are ordered even
//! when no row exists yet to lock. The reaper deletes a due object only
//! after such a transaction finds no row referring to it and no live claim.
//! A writer claims an object (`object_claims`) before it puts or relies on
//! it: the claim cancels a pending deletion, and waits while one is
//! running; the write that then commits the row checks its claim is still
//! live in the same transaction. A schedule made after a claim sees it and
//! schedules nothing. Either the claim commits first, and the reaper sees
//! it (or the row that replaced it), or the deletion starts first, and the
//! writer waits for it to end and stores the object again.
//! The only clock this trusts is the one bounding a running deletion and a
//! claim's life, with margins far above one store request
//! ([`DELETION_LEASE_MS`], [`CLAIM_TTL_MS`]).

mod model;
mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use model::{
    ApiKey, Batch, BatchCounts, BatchFailure, BucketSettings, Claim, ClaimFilter, FeedReadiness,
    Finish, FinishedJob, Image, ImageFields, ImagePage, ImagePatch, ImageQuery, ImageStatus, Job,
    JobKind, JobStatus, MediaAsset, NewApiKey, NewAsset, NewImage, OriginalFacts, PageStart,
    RerenderFilter, RetainedFile, Retention, SortKey, StoredOriginal, Trashed,
    DEFAULT_DELETE_DELAY, DEFAULT_GRACE,
};

/// How long a claim on an object lasts: far beyond one upload's store and
/// commit, so only a writer that died leaves one to lapse.
pub const CLAIM_TTL_MS: i64 = 60 * 60 * 1000;
/// A commit refuses a claim with less than this left (clocks of different
/// machines may disagree by less than this).
pub const CLAIM_COMMIT_MARGIN_MS: i64 = 5 * 60 * 1000;
/// How long a started deletion holds its object; a claim waits for it.
pub const DELETION_LEASE_MS: i64 = 10 * 60 * 1000;
/// A deleter that has less than this left of its lease does not start the
/// store request: after the lease, a claim may take the object over.
pub const DELETION_ABANDON_MARGIN_MS: i64 = 5 * 60 * 1000;
/// How long a claim waits for a running deletion of its object to end.
pub const CLAIM_WAIT_MS: i64 = 30 * 1000;
pub use postgres::PgCatalog;
pub use sqlite::SqliteCatalog;

/// What can go wrong in the catalogue.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("job {job_id} is no longer leased to {owner}")]
    LeaseLost { job_id: i64, owner: String },
    #[error("image {0} not found")]
    NotFound(String),
    #[error("image {id} has changed (version {current}); fetch it again")]
    VersionMismatch { id: String, current: i64 },
    #[error("a page after {0:?} was asked for, but that image is not in the list")]
    UnknownCursor(String),
    #[error("the claim on {key} lapsed before the rows relying on it committed")]
    ClaimLost { key: String },
    #[error("{key} is being deleted; try again")]
    DeletionInProgress { key: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Why the database cannot take a request now: not the request's fault,
/// and it may pass. The API answers 507 for [`Outage::Full`] and 503 for
/// [`Outage::Unavailable`], both with `Retry-After`; the worker puts the job
/// back without spending an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// The disk (or a quota) is full: writes fail until space is freed.
    Full,
    /// Unreachable, overloaded, or a lock held too long.
    Unavailable,
}

impl CatalogError {
    /// The outage this error is, if any. A claim that lapsed or an object
    /// being deleted is a conflict with other writers that passes: the
    /// client retries (503) and the worker spends no attempt on it.
    pub fn outage(&self) -> Option<Outage> {
        let e = match self {
            CatalogError::ClaimLost { .. } | CatalogError::DeletionInProgress { .. } => {
                return Some(Outage::Unavailable)
            }
            CatalogError::Database(e) => e,
            _ => return None,
        };
        if matches!(
            e,
            sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Tls(_)
        ) {
            return Some(Outage::Unavailable);
        }
        let db = e.as_database_error()?;
        let code = db.code()?;
        if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
            sqlite_outage(code.parse().ok()?)
        } else {
            postgres_outage(&code)
        }
    }

    /// True when the database could not be reached, answered too slowly or
    /// is full: a client should retry later, nothing is wrong with the
    /// request.
    pub fn is_unavailable(&self) -> bool {
        self.outage().is_some()
    }

    /// True when the database has no room for the write.
    pub fn is_full(&self) -> bool {
        self.outage() == Some(Outage::Full)
    }
}

/// SQLite result codes (extended ones carry the primary code in their low
/// byte): `SQLITE_FULL` is a full disk or `max_page_count`; busy, locked
/// (the busy timeout ran out), out of memory and I/O errors are outages.
fn sqlite_outage(code: i64) -> Option<Outage> {
    match code & 0xff {
        13 => Some(Outage::Full),
        5 | 6 | 7 | 10 => Some(Outage::Unavailable),
        _ => None,
    }
}

/// PostgreSQL SQLSTATEs: `53100` disk full; the other insufficient
/// resources (`53xxx`), connection failures (`08xxx`), shutdowns
/// (`57P0x`), cancelled statements (`57014`), lock timeouts (`55P03`),
/// serialization failures and deadlocks (`40001`, `40P01`), a read-only
/// server (`25006`, a standby after failover) and I/O errors (`58030`) are
/// outages.
fn postgres_outage(code: &str) -> Option<Outage> {
    match code {
        "53100" => Some(Outage::Full),
        "57014" | "55P03" | "40001" | "40P01" | "25006" | "58030" => Some(Outage::Unavailable),
        _ if code.starts_with("53") || code.starts_with("08") || code.starts_with("57P0") => {
            Some(Outage::Unavailable)
        }
        _ => None,
    }
}

/// The database itself: its schema and whether it answers and takes writes.
#[async_trait::async_trait]
pub trait Database: Send + Sync + 'static {
    /// Applies pending migrations; safe to call at every start.
    async fn migrate(&self) -> Result<(), CatalogError>;

    /// Checks the database answers.
    async fn ping(&self) -> Result<(), CatalogError>;

    /// Checks the database takes a write: rewrites one small row, so a full
    /// disk (or a lock held too long) fails it where a read would pass.
    async fn probe_write(&self, now_ms: i64) -> Result<(), CatalogError>;

    /// `sqlite` or `postgres`, for logs and `/readyz`.
    fn backend(&self) -> &'static str;
}

/// Images and what serving them reads: their rows, assets and the files a
/// re-render replaced, still served for the grace period.
#[async_trait::async_trait]
pub trait ImageRepo: Send + Sync + 'static {
    /// Inserts an image in status `ingesting` and its first job (an ingest
    /// job when it has an origin to fetch), atomically.
    async fn create_image(
        &self,
        image: &NewImage,
        now: DateTime<Utc>,
    ) -> Result<Image, CatalogError>;

    /// Creates the image, or replaces every client field and the original
    /// of an existing one and queues its render; old assets stay served
    /// until the new ones land. `expected_version` is `If-Match`. Returns
    /// the row and whether it was created.
    async fn replace_image(
        &self,
        image: &NewImage,
        expected_version: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<(Image, bool), CatalogError>;

    /// Applies a partial update; with `rerender` (a new crop) the image goes
    /// back to `ingesting` and a render job is queued in the same
    /// transaction.
    async fn update_image(
        &self,
        id: &str,
        patch: &ImagePatch,
        expected_version: Option<i64>,
        rerender: bool,
        now: DateTime<Utc>,
    ) -> Result<Image, CatalogError>;

    /// Records the original an ingest job fetched.
    async fn set_original(
        &self,
        image_id: &str,
        facts: &OriginalFacts,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError>;

    /// Queues a re-render of an existing image; it goes back to `ingesting`
    /// while its current assets keep being served.
    async fn enqueue_render(&self, image_id: &str, now: DateTime<Utc>) -> Result<(), CatalogError>;

    /// Hides the image from lists and style URLs.
    async fn soft_delete(
        &self,
        id: &str,
        expected_version: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Image, CatalogError>;

    async fn restore(&self, id: &str, now: DateTime<Utc>) -> Result<Image, CatalogError>;

    /// Deletes the row, its assets, retained files and jobs, and schedules
    /// the deletion, at `delete_at_ms`, of the storage keys nothing else
    /// refers to (returned).
    async fn hard_delete(
        &self,
        id: &str,
        expected_version: Option<i64>,
        now_ms: i64,
        delete_at_ms: i64,
    ) -> Result<Vec<String>, CatalogError>;

    /// An image by id, soft-deleted ones included.
    async fn image(&self, id: &str) -> Result<Option<Image>, CatalogError>;

    /// One page of a bucket's images.
    async fn list_images(&self, query: &ImageQuery) -> Result<ImagePage, CatalogError>;

    /// The image's assets, in style order as stored.
    async fn assets(&self, image_id: &str) -> Result<Vec<MediaAsset>, CatalogError>;

    /// The assets of several images at once (`include=assets`).
    async fn assets_of(&self, image_ids: &[String]) -> Result<Vec<MediaAsset>, CatalogError>;

    async fn asset(&self, image_id: &str, style: &str) -> Result<Option<MediaAsset>, CatalogError>;

    /// A retained file of `style` of the image whose sha256 starts with
    /// `sha256_prefix` (lower-case hex), while its grace period lasts.
    async fn retained_file(
        &self,
        image_id: &str,
        style: &str,
        sha256_prefix: &str,
        now_ms: i64,
    ) -> Result<Option<RetainedFile>, CatalogError>;
}

/// The render job queue: claims with leases, and the ends of a job (whose
/// `finish_job` commits a render's assets with the image's new state).
#[async_trait::async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Leases the most urgent due job to `owner` until `now_ms + lease_ms`:
    /// a queued job whose `run_after` has come, or a running job whose lease
    /// lapsed (its worker died). Interactive jobs go before batch ones; an
    /// image with a job running has no other job claimed until it ends.
    /// Counts the attempt. Any job, whatever its settings or kind: workers
    /// use [`JobQueue::claim_job_for`].
    async fn claim_job(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Job>, CatalogError>;

    /// [`JobQueue::claim_job`] for a worker: only jobs it may run (its
    /// settings, and ingest jobs only when `filter.ingest`).
    async fn claim_job_for(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        filter: &ClaimFilter<'_>,
    ) -> Result<Option<Job>, CatalogError>;

    /// Ends an ingest job whose original was fetched and stored: records
    /// the original and puts the job back in the queue as a render job
    /// (attempts reset: fetching and rendering fail for different reasons),
    /// so a render loop picks it up. If a newer job for the image is
    /// waiting, the job is closed instead and the original not recorded:
    /// the image has moved on. `Ok(false)` then, and the claim in
    /// `facts.claim` is left for the caller to release; otherwise it is
    /// checked and ended with the write that records the original.
    async fn hand_over_fetched(
        &self,
        job: &Job,
        owner: &str,
        facts: &OriginalFacts,
        now: DateTime<Utc>,
    ) -> Result<bool, CatalogError>;

    /// The running jobs and who holds their leases: `(job id, owner)`.
    async fn running_leases(&self) -> Result<Vec<(i64, String)>, CatalogError>;

    /// Ends at once the lease `owner` holds on a running job, because that
    /// worker is known to be dead: the job is claimable now instead of when
    /// the lease would have lapsed. `false` when `owner` no longer holds it.
    async fn expire_lease(
        &self,
        job_id: i64,
        owner: &str,
        now_ms: i64,
    ) -> Result<bool, CatalogError>;

    /// Extends a lease still held by `owner`; `false` when it was lost.
    async fn renew_lease(
        &self,
        job_id: i64,
        owner: &str,
        until_ms: i64,
    ) -> Result<bool, CatalogError>;

    /// Replaces the image's assets, records its feed file and readiness,
    /// marks it `finished` and the job `done`, in one transaction, if
    /// `owner` still holds the lease and the render's claim is live. The
    /// files replaced are retained until `retain_until_ms`. When a newer
    /// job for the image is waiting, only the job is closed: its files
    /// stand for an older state of the image and the newer job will commit
    /// its own; those nothing refers to are scheduled for deletion.
    async fn finish_job(
        &self,
        job: &Job,
        owner: &str,
        finish: &Finish<'_>,
        now: DateTime<Utc>,
    ) -> Result<FinishedJob, CatalogError>;

    /// Marks the job `failed` and the image `error` with a reason, a
    /// stable code and the feed readiness the failure leaves: for inputs
    /// that will never render. A batch job's or a superseded job's failure
    /// stays on the job: the image keeps the files (and status, and
    /// readiness) it has, which are still served.
    async fn fail_job(
        &self,
        job: &Job,
        owner: &str,
        reason: &str,
        code: &str,
        readiness: &FeedReadiness,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError>;

    /// Puts the job back in the queue, due at `run_after_ms`: for failures
    /// that may pass (storage, database, origin timeouts). Unless
    /// `attempt_spent`, the claim's attempt is given back: an outage of our
    /// own object store says nothing about the image, and must not use up
    /// its attempts however long it lasts.
    async fn retry_job(
        &self,
        job: &Job,
        owner: &str,
        run_after_ms: i64,
        reason: &str,
        attempt_spent: bool,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError>;

    /// Jobs waiting to run (queued or running).
    async fn queue_depth(&self) -> Result<i64, CatalogError>;

    /// Every job of an image, oldest first: for operators and tests.
    async fn jobs_for_image(&self, image_id: &str) -> Result<Vec<Job>, CatalogError>;
}

/// Who may see what: API keys and the settings of the buckets they open.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync + 'static {
    async fn create_api_key(
        &self,
        key: &NewApiKey,
        now: DateTime<Utc>,
    ) -> Result<ApiKey, CatalogError>;

    /// A key that is not revoked, by the hash of its secret.
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, CatalogError>;

    async fn api_keys(&self) -> Result<Vec<ApiKey>, CatalogError>;

    /// `false` when no live key has that id.
    async fn revoke_api_key(&self, id: &str, now: DateTime<Utc>) -> Result<bool, CatalogError>;

    async fn bucket_settings(&self, bucket: &str) -> Result<BucketSettings, CatalogError>;

    async fn set_bucket_settings(
        &self,
        bucket: &str,
        settings: BucketSettings,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError>;
}

/// Batch re-renders: which images are stale for a settings fingerprint,
/// and the batches that queue them.
#[async_trait::async_trait]
pub trait BatchRepo: Send + Sync + 'static {
    /// Images a re-render with `filter` would cover now (not yet rendered
    /// with `fingerprint`, or all with `filter.all`).
    async fn count_stale(
        &self,
        filter: &RerenderFilter,
        fingerprint: &str,
    ) -> Result<i64, CatalogError>;

    /// The unfinished batch with this filter and fingerprint, if any: a
    /// re-run of the same command resumes it.
    async fn open_batch(
        &self,
        filter: &RerenderFilter,
        fingerprint: &str,
    ) -> Result<Option<Batch>, CatalogError>;

    async fn create_batch(
        &self,
        id: &str,
        filter: &RerenderFilter,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Batch, CatalogError>;

    /// Queues (at batch priority, carrying the batch's fingerprint) up to
    /// `limit` images of the batch that have no job in it yet, and queues
    /// again the images whose batch job is done but which are not rendered
    /// with the batch's settings (a newer edit was rendered by a worker
    /// with other settings); returns how many. Zero means all are queued.
    async fn enqueue_batch(
        &self,
        batch: &Batch,
        limit: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, CatalogError>;

    async fn batch(&self, id: &str) -> Result<Option<Batch>, CatalogError>;

    async fn batch_counts(&self, id: &str) -> Result<BatchCounts, CatalogError>;

    /// Images whose job in the batch is done but which are not (or not
    /// yet) rendered with the batch's settings: a batch is complete only
    /// when this is zero.
    async fn batch_stale(&self, id: &str) -> Result<i64, CatalogError>;

    async fn batch_failures(&self, id: &str, limit: i64)
        -> Result<Vec<BatchFailure>, CatalogError>;
}

/// The index of cached IIIF renders: their sizes and last use, for the
/// least-recently-used eviction (the files are in the object store).
#[async_trait::async_trait]
pub trait RenderCacheIndex: Send + Sync + 'static {
    /// Records that the cached IIIF render at `storage_key` (`size` bytes,
    /// rendered from the original with `source_sha256`) was stored or used
    /// at `now_ms`, adding its row if it has none. A row already marked
    /// less than `min_interval_ms` before is left alone, so that cache hits
    /// are not a write each; `false` then.
    async fn record_iiif_cache_use(
        &self,
        storage_key: &str,
        source_sha256: &str,
        size: i64,
        now_ms: i64,
        min_interval_ms: i64,
    ) -> Result<bool, CatalogError>;

    /// Removes the least recently used IIIF cache rows until the rest take
    /// at most `budget_bytes`; returns their storage keys, for the caller
    /// to delete.
    async fn evict_iiif_cache(&self, budget_bytes: i64) -> Result<Vec<String>, CatalogError>;

    /// Removes the IIIF cache rows of renders of the original with
    /// `source_sha256`, unless an image still has that original; returns
    /// their storage keys, for the caller to delete.
    async fn forget_iiif_cache_of(&self, source_sha256: &str) -> Result<Vec<String>, CatalogError>;

    /// The bytes the IIIF cache rows account for.
    async fn iiif_cache_bytes(&self) -> Result<i64, CatalogError>;
}

/// Claims on stored objects and their scheduled deletions (see "Deleting
/// objects" above): only the reaper deletes, and only what this lets it.
#[async_trait::async_trait]
pub trait ObjectLedger: Send + Sync + 'static {
    /// Claims `keys` for `holder` before it puts or relies on them: cancels
    /// their pending deletions and waits (up to [`CLAIM_WAIT_MS`]) while
    /// one is running. The write that commits rows referring to them ends
    /// the claim (see [`OriginalFacts::claim`], [`Finish::claim`]); a
    /// writer that fails calls [`ObjectLedger::release_claims`].
    async fn claim_objects(
        &self,
        holder: &str,
        keys: &[String],
        now_ms: i64,
    ) -> Result<(), CatalogError>;

    /// Ends `holder`'s claims without committing anything, scheduling the
    /// deletion of the keys nothing refers to; returns those.
    async fn release_claims(
        &self,
        holder: &str,
        now_ms: i64,
        delete_at_ms: i64,
    ) -> Result<Vec<String>, CatalogError>;

    /// Schedules the deletion of those of `keys` nothing refers to or
    /// claims (objects found in the store with no row); returns them.
    async fn schedule_deletions(
        &self,
        keys: &[String],
        reason: &str,
        now_ms: i64,
        delete_at_ms: i64,
    ) -> Result<Vec<String>, CatalogError>;

    /// Ends up to `limit` retained files whose grace period is over,
    /// scheduling the deletion of the keys that were their last reference.
    /// Returns how many ended.
    async fn expire_retained(
        &self,
        now_ms: i64,
        delete_at_ms: i64,
        limit: i64,
    ) -> Result<i64, CatalogError>;

    /// Up to `limit` keys whose deletion is due (or whose deleter died).
    async fn due_deletions(&self, now_ms: i64, limit: i64) -> Result<Vec<String>, CatalogError>;

    /// Starts deleting `key` if it is due and nothing refers to or claims
    /// it: returns the lease (Unix ms) until which the caller may delete
    /// the object, then calls [`ObjectLedger::end_deletion`]. `None` when it is
    /// to be kept (its schedule is then dropped or postponed).
    async fn begin_deletion(&self, key: &str, now_ms: i64) -> Result<Option<i64>, CatalogError>;

    /// Records that the object of a deletion begun with `lease` is gone.
    async fn end_deletion(&self, key: &str, lease: i64) -> Result<(), CatalogError>;

    /// Puts a deletion begun with `lease` back to pending, its object
    /// perhaps still there (the store refused the request): a later pass
    /// retries it, and a claim may cancel it meanwhile.
    async fn abandon_deletion(&self, key: &str, lease: i64) -> Result<(), CatalogError>;
}

/// The whole catalogue, for callers that need several of its parts (the
/// API, the worker, the binary): every implementation of all the ports is
/// one, so `Arc<dyn Catalog>` reaches each part's methods once its trait
/// is in scope.
pub trait Catalog:
    Database
    + ImageRepo
    + JobQueue
    + KeyStore
    + BatchRepo
    + RenderCacheIndex
    + ObjectLedger
    + std::fmt::Debug
{
}

impl<T> Catalog for T where
    T: Database
        + ImageRepo
        + JobQueue
        + KeyStore
        + BatchRepo
        + RenderCacheIndex
        + ObjectLedger
        + std::fmt::Debug
{
}

/// Opens the catalogue a URL names: `sqlite://path/to/file.db` (created if
/// missing), `sqlite::memory:`, or `postgres://user:pass@host/db`.
pub async fn connect(url: &str) -> Result<Arc<dyn Catalog>, CatalogError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteCatalog::connect(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PgCatalog::connect(url).await?))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disks_and_busy_databases_are_outages_other_errors_are_not() {
        // SQLite: FULL, BUSY, BUSY_SNAPSHOT (517), LOCKED, IOERR_WRITE (778).
        assert_eq!(sqlite_outage(13), Some(Outage::Full));
        for code in [5, 517, 6, 7, 778] {
            assert_eq!(sqlite_outage(code), Some(Outage::Unavailable), "{code}");
        }
        // CONSTRAINT_UNIQUE (2067), a plain error (1), READONLY (8).
        for code in [2067, 1, 8] {
            assert_eq!(sqlite_outage(code), None, "{code}");
        }
        assert_eq!(postgres_outage("53100"), Some(Outage::Full));
        for code in [
            "53200", "53300", "08006", "57P01", "57014", "55P03", "40001", "40P01",
        ] {
            assert_eq!(postgres_outage(code), Some(Outage::Unavailable), "{code}");
        }
        // unique_violation, undefined_table, syntax_error.
        for code in ["23505", "42P01", "42601"] {
            assert_eq!(postgres_outage(code), None, "{code}");
        }
    }
}
