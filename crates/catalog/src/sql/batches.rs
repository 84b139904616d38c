//! [`BatchRepo`](crate::BatchRepo): batch re-renders and the stale
//! images they queue.
//!
//! Compiled once per backend (see the end of `sqlite.rs` and `postgres.rs`).

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::common::insert_job;
use super::{Backend, Db};
use crate::sql::{BATCH_COLUMNS, STALE_IN_BATCH};
use crate::{Batch, BatchCounts, BatchFailure, BatchRepo, CatalogError, RerenderFilter};

#[async_trait::async_trait]
impl BatchRepo for Backend {
    async fn count_stale(
        &self,
        filter: &RerenderFilter,
        fingerprint: &str,
    ) -> Result<i64, CatalogError> {
        let mut qb: QueryBuilder<Db> = QueryBuilder::new("SELECT COUNT(*) FROM images i");
        push_stale(&mut qb, filter, fingerprint);
        let (count,): (i64,) = qb.build_query_as().fetch_one(&self.pool).await?;
        Ok(count)
    }

    async fn open_batch(
        &self,
        filter: &RerenderFilter,
        fingerprint: &str,
    ) -> Result<Option<Batch>, CatalogError> {
        let filter_json = serde_json::to_string(filter).unwrap_or_default();
        let row = sqlx::query_as(&format!(
            "SELECT {BATCH_COLUMNS} FROM batches b WHERE filter = $1 AND fingerprint = $2 \
             AND (NOT queued_all OR EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id \
                  AND j.status IN ('queued', 'running')) \
                  OR EXISTS ({STALE_IN_BATCH} AND j.batch_id = b.id)) \
             ORDER BY created_at DESC LIMIT 1"
        ))
        .bind(filter_json)
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    async fn create_batch(
        &self,
        id: &str,
        filter: &RerenderFilter,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Batch, CatalogError> {
        let total = self.count_stale(filter, fingerprint).await?;
        let row = sqlx::query_as(&format!(
            "INSERT INTO batches (id, bucket, filter, fingerprint, total, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {BATCH_COLUMNS}"
        ))
        .bind(id)
        .bind(&filter.bucket)
        .bind(serde_json::to_string(filter).unwrap_or_default())
        .bind(fingerprint)
        .bind(total)
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .pop();
        row.ok_or(CatalogError::Database(sqlx::Error::RowNotFound))
    }

    async fn enqueue_batch(
        &self,
        batch: &Batch,
        limit: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, CatalogError> {
        let filter = batch.filter();
        let mut tx = self.pool.begin().await?;
        // Write first (see the module note), and it keeps `updated_at`
        // as the time of the last enqueue.
        sqlx::query("UPDATE batches SET updated_at = $2 WHERE id = $1")
            .bind(&batch.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let mut qb: QueryBuilder<Db> = QueryBuilder::new("SELECT i.id FROM images i");
        push_stale(&mut qb, &filter, &batch.fingerprint);
        qb.push(" AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.image_id = i.id AND j.batch_id = ")
            .push_bind(&batch.id)
            .push(") ORDER BY i.id LIMIT ")
            .push_bind(limit);
        let ids: Vec<(String,)> = qb.build_query_as().fetch_all(&mut *tx).await?;
        // Done, but rendered since with other settings (an edit a
        // worker with other settings rendered): its job runs again.
        // Not while the image has a job waiting or running: that one
        // renders first, and is looked at once it is done.
        let reopened = sqlx::query(&format!(
            "UPDATE jobs SET status = 'queued', attempts = 0, outages = 0, run_after = $2, \
             last_error = NULL, updated_at = $3 WHERE id IN ({STALE_IN_BATCH} AND j.batch_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.image_id = j.image_id \
                 AND o.status IN ('queued', 'running')))"
        ))
        .bind(&batch.id)
        .bind(now.timestamp_millis())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        for (id,) in &ids {
            insert_job(
                &mut tx,
                id,
                "render",
                Some(&batch.id),
                1,
                Some(&batch.fingerprint),
                now,
            )
            .await?;
        }
        let total_sql = if ids.is_empty() {
            // Nothing left to queue: the batch is what it queued. (Images
            // counted at the start may have left the stale set since:
            // deleted, or rendered by an edit.)
            "UPDATE batches SET queued_all = TRUE, \
             total = (SELECT COUNT(*) FROM jobs WHERE batch_id = $1) WHERE id = $1"
        } else {
            // Images that became stale since the batch was counted
            // still belong to it: keep the total honest.
            "UPDATE batches SET total = (SELECT COUNT(*) FROM jobs WHERE batch_id = $1) \
             WHERE id = $1 AND total < (SELECT COUNT(*) FROM jobs WHERE batch_id = $1)"
        };
        sqlx::query(total_sql)
            .bind(&batch.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ids.len() as i64 + reopened as i64)
    }

    async fn batch(&self, id: &str) -> Result<Option<Batch>, CatalogError> {
        let row = sqlx::query_as(&format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    async fn batch_counts(&self, id: &str) -> Result<BatchCounts, CatalogError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM jobs WHERE batch_id = $1 GROUP BY status")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        let mut counts = BatchCounts::default();
        for (status, n) in rows {
            match status.as_str() {
                "queued" => counts.queued = n,
                "running" => counts.running = n,
                "done" => counts.done = n,
                _ => counts.failed = n,
            }
        }
        Ok(counts)
    }

    async fn batch_stale(&self, id: &str) -> Result<i64, CatalogError> {
        let (stale,): (i64,) = sqlx::query_as(&format!(
            "SELECT COUNT(*) FROM jobs WHERE id IN ({STALE_IN_BATCH} AND j.batch_id = $1)"
        ))
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(stale)
    }

    async fn batch_failures(
        &self,
        id: &str,
        limit: i64,
    ) -> Result<Vec<BatchFailure>, CatalogError> {
        let rows = sqlx::query_as(
            "SELECT image_id, last_error AS reason FROM jobs WHERE batch_id = $1 AND status = 'failed' \
             ORDER BY id LIMIT $2",
        )
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

/// The WHERE clause of a re-render's candidates: live images with an
/// original and no job waiting or running (that job renders with the
/// current settings anyway), and then
/// - with `all`: every one that rendered or failed;
/// - else: finished ones whose files were rendered with other
///   settings (all of an image's assets share one fingerprint, as one
///   job writes them). Images in `error` are retried only by `all`:
///   the same input fails the same way.
///
/// `style` narrows to images that have that style or, for a style
/// that exists only for big crops, whose crop (the `regular` file)
/// is big enough: a small image never gets `square-3000`, so it is
/// not stale for lacking one.
fn push_stale<'a>(qb: &mut QueryBuilder<'a, Db>, filter: &'a RerenderFilter, fingerprint: &'a str) {
    qb.push(
        " WHERE i.deleted_at IS NULL AND i.original_key IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.image_id = i.id \
         AND o.status IN ('queued', 'running'))",
    );
    if let Some(bucket) = &filter.bucket {
        qb.push(" AND i.bucket = ").push_bind(bucket);
    }
    if let Some(since) = filter.since {
        qb.push(" AND i.created_at >= ").push_bind(since);
    }
    if filter.all {
        qb.push(" AND i.status IN ('finished', 'error')");
        return;
    }
    qb.push(
        " AND i.status = 'finished' AND EXISTS (SELECT 1 FROM media_assets a \
         WHERE a.image_id = i.id AND a.settings_fingerprint <> ",
    )
    .push_bind(fingerprint)
    .push(")");
    if let (Some(style), Some(side)) = (&filter.style, filter.style_min_crop_side) {
        qb.push(
            " AND (EXISTS (SELECT 1 FROM media_assets s WHERE s.image_id = i.id AND s.style = ",
        )
        .push_bind(style)
        .push(
            ") OR EXISTS (SELECT 1 FROM media_assets r WHERE r.image_id = i.id \
                   AND r.style = 'regular' AND r.width >= ",
        )
        .push_bind(side)
        .push(" AND r.height >= ")
        .push_bind(side)
        .push("))");
    }
}
