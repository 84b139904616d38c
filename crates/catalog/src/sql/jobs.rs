//! [`JobQueue`](crate::JobQueue): claims with leases, and the ends of a
//! job, `finish_job` committing a render's assets with its image's state.
//!
//! Compiled once per backend (see the end of `sqlite.rs` and `postgres.rs`).

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::common::{record_original, schedule, settle_claim, Tx};
use super::{Backend, Db};
use crate::sql::{CLAIMABLE_JOB, JOB_COLUMNS};
use crate::{
    CatalogError, ClaimFilter, FeedReadiness, Finish, FinishedJob, Job, JobQueue, OriginalFacts,
};

impl Backend {
    /// The claim behind `claim_job` and `claim_job_for`.
    async fn claim_where(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        fingerprint: Option<&str>,
        ingest: bool,
    ) -> Result<Option<Job>, CatalogError> {
        let row: Result<Vec<Job>, sqlx::Error> = sqlx::query_as(&format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = $1, \
             lease_until = $2 + $3, updated_at = $4 \
             WHERE id = ({CLAIMABLE_JOB}{}) RETURNING {JOB_COLUMNS}",
            Self::CLAIM_LOCK
        ))
        .bind(owner)
        .bind(now_ms)
        .bind(lease_ms)
        .bind(Utc::now())
        .bind(fingerprint)
        .bind(ingest)
        .fetch_all(&self.pool)
        .await;
        match row.map(|mut rows| rows.pop()) {
            // Two claims raced for two jobs of one image (PostgreSQL):
            // the unique index let one through; the other finds
            // nothing this time and looks again at its next poll.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(None),
            other => Ok(other?),
        }
    }
}

#[async_trait::async_trait]
impl JobQueue for Backend {
    async fn claim_job(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Job>, CatalogError> {
        self.claim_where(owner, now_ms, lease_ms, None, true).await
    }

    async fn claim_job_for(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        filter: &ClaimFilter<'_>,
    ) -> Result<Option<Job>, CatalogError> {
        self.claim_where(
            owner,
            now_ms,
            lease_ms,
            Some(filter.fingerprint),
            filter.ingest,
        )
        .await
    }

    async fn hand_over_fetched(
        &self,
        job: &Job,
        owner: &str,
        facts: &OriginalFacts,
        now: DateTime<Utc>,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.pool.begin().await?;
        // The lease check is the first write, as in `close_job`.
        let done = sqlx::query(
            "UPDATE jobs SET kind = 'render', status = 'queued', lease_owner = NULL, \
             lease_until = NULL, attempts = 0, run_after = $3, updated_at = $4 \
             WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(job.id)
        .bind(owner)
        .bind(now.timestamp_millis())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        lease_held(done.rows_affected(), job, owner)?;
        if newer_job_waits(&mut tx, job).await? {
            sqlx::query(
                "UPDATE jobs SET status = 'done', last_error = 'superseded by a newer render' \
                 WHERE id = $1",
            )
            .bind(job.id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(false);
        }
        record_original(&mut tx, &job.image_id, facts, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn running_leases(&self) -> Result<Vec<(i64, String)>, CatalogError> {
        let rows = sqlx::query_as(
            "SELECT id, lease_owner FROM jobs WHERE status = 'running' AND lease_owner IS NOT NULL \
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn expire_lease(
        &self,
        job_id: i64,
        owner: &str,
        now_ms: i64,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = $3 - 1 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(job_id)
        .bind(owner)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn renew_lease(
        &self,
        job_id: i64,
        owner: &str,
        until_ms: i64,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = $3 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
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
        finish: &Finish<'_>,
        now: DateTime<Utc>,
    ) -> Result<FinishedJob, CatalogError> {
        let now_ms = now.timestamp_millis();
        let mut tx = self.pool.begin().await?;
        close_job(&mut tx, job, owner, "done", None, now).await?;
        if newer_job_waits(&mut tx, job).await? {
            // Nothing commits on the claimed files: end the claim
            // whatever its state, and let go of what no row needs.
            if let Some(claim) = finish.claim {
                sqlx::query("DELETE FROM object_claims WHERE holder = $1")
                    .bind(claim.holder)
                    .execute(&mut *tx)
                    .await?;
            }
            let keys: Vec<String> = finish
                .assets
                .iter()
                .map(|a| a.storage_key.clone())
                .collect();
            let orphans = schedule(
                &mut tx,
                &keys,
                "render outrun by a newer job",
                now_ms,
                finish.delete_at_ms,
            )
            .await?;
            tx.commit().await?;
            return Ok(FinishedJob {
                committed: false,
                orphans,
            });
        }
        settle_claim(&mut tx, finish.claim, now_ms).await?;
        // Replace, never append: a re-run after a lost lease or a
        // re-render leaves exactly one row per style.
        let old: Vec<(String, String, i64, String, i64, i64, String)> = sqlx::query_as(
            "DELETE FROM media_assets WHERE image_id = $1 \
             RETURNING style, storage_key, size, mimetype, width, height, sha256",
        )
        .bind(&job.image_id)
        .fetch_all(&mut *tx)
        .await?;
        if !finish.assets.is_empty() {
            // One statement for every style: each statement is a round
            // trip to the connection inside the write lock.
            let mut insert: QueryBuilder<Db> = QueryBuilder::new(
                "INSERT INTO media_assets (image_id, style, storage_key, size, mimetype, width, \
                 height, sha256, upscaled, settings_fingerprint, quality, created_at) ",
            );
            insert.push_values(finish.assets, |mut row, asset| {
                row.push_bind(&job.image_id)
                    .push_bind(&asset.style)
                    .push_bind(&asset.storage_key)
                    .push_bind(asset.size)
                    .push_bind(&asset.mimetype)
                    .push_bind(asset.width)
                    .push_bind(asset.height)
                    .push_bind(&asset.sha256)
                    .push_bind(asset.upscaled)
                    .push_bind(&asset.settings_fingerprint)
                    .push_bind(asset.quality)
                    .push_bind(now);
            });
            insert.build().execute(&mut *tx).await?;
        }
        // The files replaced keep serving their versioned URLs for
        // the grace period: a feed read before the change must
        // not show a broken image.
        for (style, key, size, mimetype, width, height, sha256) in old {
            let unchanged = finish
                .assets
                .iter()
                .any(|a| a.style == style && a.storage_key == key);
            if unchanged {
                continue;
            }
            sqlx::query(
                "INSERT INTO retained_files (image_id, style, storage_key, size, mimetype, width, \
                 height, sha256, superseded_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&job.image_id)
            .bind(&style)
            .bind(&key)
            .bind(size)
            .bind(&mimetype)
            .bind(width)
            .bind(height)
            .bind(&sha256)
            .bind(now_ms)
            .bind(finish.retain_until_ms)
            .execute(&mut *tx)
            .await?;
        }
        let readiness = &finish.readiness;
        sqlx::query(
            "UPDATE images SET status = 'finished', error = NULL, error_code = NULL, \
             feed_ready = $3, feed_reasons = $4, feed_style = $5, feed_side = $6, \
             batch_id = $7, version = version + 1, finished_at = $2, updated_at = $2 WHERE id = $1",
        )
        .bind(&job.image_id)
        .bind(now)
        .bind(readiness.ok)
        .bind(readiness.to_json())
        .bind(&finish.feed_style)
        .bind(finish.feed_side)
        .bind(&job.batch_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(FinishedJob {
            committed: true,
            orphans: Vec::new(),
        })
    }

    async fn fail_job(
        &self,
        job: &Job,
        owner: &str,
        reason: &str,
        code: &str,
        readiness: &FeedReadiness,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        close_job(&mut tx, job, owner, "failed", Some(reason), now).await?;
        if job.batch_id.is_some() || newer_job_waits(&mut tx, job).await? {
            tx.commit().await?;
            return Ok(());
        }
        sqlx::query(
            "UPDATE images SET status = 'error', error = $2, error_code = $3, \
             feed_ready = $6, feed_reasons = $5, version = version + 1, \
             finished_at = $4, updated_at = $4 WHERE id = $1",
        )
        .bind(&job.image_id)
        .bind(reason)
        .bind(code)
        .bind(now)
        .bind(readiness.to_json())
        .bind(readiness.ok)
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
        attempt_spent: bool,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_until = NULL, \
             run_after = $3, last_error = $4, updated_at = $5, \
             attempts = attempts - $6, outages = outages + $6 \
             WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(job.id)
        .bind(owner)
        .bind(run_after_ms)
        .bind(reason)
        .bind(now)
        .bind(i64::from(!attempt_spent))
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
            "SELECT {JOB_COLUMNS} FROM jobs WHERE image_id = $1 ORDER BY id"
        ))
        .bind(image_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

/// Ends a job held by `owner`; the first write of its transaction,
/// so the lease check and the write lock come together.
async fn close_job(
    tx: &mut Tx<'_>,
    job: &Job,
    owner: &str,
    status: &str,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), CatalogError> {
    let done = sqlx::query(
        "UPDATE jobs SET status = $3, lease_owner = NULL, lease_until = NULL, \
         last_error = COALESCE($4, last_error), updated_at = $5 \
         WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
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

/// Whether a job queued after `job` will render its image again.
async fn newer_job_waits(tx: &mut Tx<'_>, job: &Job) -> Result<bool, CatalogError> {
    let (newer,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM jobs WHERE image_id = $1 AND id > $2 \
         AND status IN ('queued', 'running')",
    )
    .bind(&job.image_id)
    .bind(job.id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(newer > 0)
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
