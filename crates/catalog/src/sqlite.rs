//! The SQLite catalogue: the embedded default.
//!
//! SQLite allows one writer at a time. Every write transaction here starts
//! with a write, so it takes the write lock up front and waits on the busy
//! timeout, instead of failing with `SQLITE_BUSY` when a read lock cannot be
//! upgraded.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::{Catalog, CatalogError, Image, Job, MediaAsset, NewAsset, NewImage};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

const IMAGE_COLUMNS: &str =
    "id, bucket, name, facet, crop, width, height, size, mimetype, sha256, \
     original_key, status, error, error_code, tags, string1, string2, string3, number1, number2, \
     number3, created_at, updated_at, finished_at, deleted_at";

const ASSET_COLUMNS: &str =
    "id, image_id, style, storage_key, size, mimetype, width, height, sha256, \
     upscaled, settings_fingerprint, created_at";

const JOB_COLUMNS: &str =
    "id, image_id, status, attempts, lease_owner, lease_until, run_after, last_error";

#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    pool: SqlitePool,
}

impl SqliteCatalog {
    /// Opens (creating if needed) the database file a `sqlite:` URL names.
    pub async fn connect(url: &str) -> Result<Self, CatalogError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // WAL lets readers (the API) run beside the writer (the worker).
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before an upload is acknowledged.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // Each connection to `:memory:` is its own empty database, so an
        // in-memory catalogue must live on exactly one connection.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 8 })
            .connect_with(options)
            .await?;
        Ok(SqliteCatalog { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait::async_trait]
impl Catalog for SqliteCatalog {
    async fn migrate(&self) -> Result<(), CatalogError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), CatalogError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_image(
        &self,
        image: &NewImage,
        now: DateTime<Utc>,
    ) -> Result<Image, CatalogError> {
        let tags = serde_json::to_string(&image.tags).unwrap_or_else(|_| "[]".into());
        let mut tx = self.pool.begin().await?;
        let row: Image = sqlx::query_as(&format!(
            "INSERT INTO images (id, bucket, name, facet, crop, width, height, size, mimetype, sha256, \
             original_key, status, tags, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'ingesting', ?12, ?13, ?13) \
             RETURNING {IMAGE_COLUMNS}"
        ))
        .bind(&image.id)
        .bind(&image.bucket)
        .bind(&image.name)
        .bind(&image.facet)
        .bind(&image.crop)
        .bind(image.width)
        .bind(image.height)
        .bind(image.size)
        .bind(&image.mimetype)
        .bind(&image.sha256)
        .bind(&image.original_key)
        .bind(tags)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO jobs (image_id, status, attempts, run_after, created_at, updated_at) \
             VALUES (?1, 'queued', 0, ?2, ?3, ?3)",
        )
        .bind(&image.id)
        .bind(now.timestamp_millis())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn enqueue_render(&self, image_id: &str, now: DateTime<Utc>) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE images SET status = 'ingesting', updated_at = ?2 WHERE id = ?1")
            .bind(image_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO jobs (image_id, status, attempts, run_after, created_at, updated_at) \
             VALUES (?1, 'queued', 0, ?2, ?3, ?3)",
        )
        .bind(image_id)
        .bind(now.timestamp_millis())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn image(&self, id: &str) -> Result<Option<Image>, CatalogError> {
        let row = sqlx::query_as(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row)
    }

    async fn assets(&self, image_id: &str) -> Result<Vec<MediaAsset>, CatalogError> {
        let rows = sqlx::query_as(&format!(
            "SELECT {ASSET_COLUMNS} FROM media_assets WHERE image_id = ?1 ORDER BY id"
        ))
        .bind(image_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn asset(&self, image_id: &str, style: &str) -> Result<Option<MediaAsset>, CatalogError> {
        let row = sqlx::query_as(&format!(
            "SELECT {ASSET_COLUMNS} FROM media_assets WHERE image_id = ?1 AND style = ?2"
        ))
        .bind(image_id)
        .bind(style)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    async fn claim_job(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Job>, CatalogError> {
        // One statement, so SQLite's single writer makes it atomic: two
        // workers can never both win the same row.
        let row = sqlx::query_as(&format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = ?1, \
             lease_until = ?2 + ?3, updated_at = ?4 \
             WHERE id = (SELECT id FROM jobs \
                         WHERE (status = 'queued' AND run_after <= ?2) \
                            OR (status = 'running' AND lease_until < ?2) \
                         ORDER BY run_after, id LIMIT 1) \
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(owner)
        .bind(now_ms)
        .bind(lease_ms)
        .bind(Utc::now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    async fn renew_lease(
        &self,
        job_id: i64,
        owner: &str,
        until_ms: i64,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
        )
        .bind(job_id)
        .bind(owner)
        .bind(until_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_job(
        &self,
        job: &Job,
        owner: &str,
        assets: &[NewAsset],
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        close_job(&mut tx, job, owner, "done", None, now).await?;
        // Replace, never append: a re-run after a lost lease or a re-render
        // leaves exactly one row per style.
        sqlx::query("DELETE FROM media_assets WHERE image_id = ?1")
            .bind(&job.image_id)
            .execute(&mut *tx)
            .await?;
        for asset in assets {
            sqlx::query(
                "INSERT INTO media_assets (image_id, style, storage_key, size, mimetype, width, height, \
                 sha256, upscaled, settings_fingerprint, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .bind(&job.image_id)
            .bind(&asset.style)
            .bind(&asset.storage_key)
            .bind(asset.size)
            .bind(&asset.mimetype)
            .bind(asset.width)
            .bind(asset.height)
            .bind(&asset.sha256)
            .bind(asset.upscaled)
            .bind(&asset.settings_fingerprint)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE images SET status = 'finished', error = NULL, error_code = NULL, \
             finished_at = ?2, updated_at = ?2 WHERE id = ?1",
        )
        .bind(&job.image_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn fail_job(
        &self,
        job: &Job,
        owner: &str,
        reason: &str,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        close_job(&mut tx, job, owner, "failed", Some(reason), now).await?;
        sqlx::query(
            "UPDATE images SET status = 'error', error = ?2, error_code = ?3, \
             finished_at = ?4, updated_at = ?4 WHERE id = ?1",
        )
        .bind(&job.image_id)
        .bind(reason)
        .bind(code)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn retry_job(
        &self,
        job: &Job,
        owner: &str,
        run_after_ms: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_until = NULL, \
             run_after = ?3, last_error = ?4, updated_at = ?5 \
             WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
        )
        .bind(job.id)
        .bind(owner)
        .bind(run_after_ms)
        .bind(reason)
        .bind(now)
        .execute(&self.pool)
        .await?;
        lease_held(done.rows_affected(), job, owner)
    }

    async fn queue_depth(&self) -> Result<i64, CatalogError> {
        let (depth,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')")
                .fetch_one(&self.pool)
                .await?;
        Ok(depth)
    }

    async fn jobs_for_image(&self, image_id: &str) -> Result<Vec<Job>, CatalogError> {
        let rows = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE image_id = ?1 ORDER BY id"
        ))
        .bind(image_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

/// Ends a job held by `owner`; the first write of its transaction, so the
/// lease check and the write lock come together.
async fn close_job(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    job: &Job,
    owner: &str,
    status: &str,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), CatalogError> {
    let done = sqlx::query(
        "UPDATE jobs SET status = ?3, lease_owner = NULL, lease_until = NULL, \
         last_error = COALESCE(?4, last_error), updated_at = ?5 \
         WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
    )
    .bind(job.id)
    .bind(owner)
    .bind(status)
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    lease_held(done.rows_affected(), job, owner)
}

fn lease_held(rows: u64, job: &Job, owner: &str) -> Result<(), CatalogError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(CatalogError::LeaseLost {
            job_id: job.id,
            owner: owner.to_string(),
        })
    }
}
