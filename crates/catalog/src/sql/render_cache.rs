//! [`RenderCacheIndex`](crate::RenderCacheIndex): sizes and last use of
//! the cached IIIF renders.
//!
//! Compiled once per backend (see the end of `sqlite.rs` and `postgres.rs`).

use super::Backend;
use crate::{CatalogError, RenderCacheIndex};

#[async_trait::async_trait]
impl RenderCacheIndex for Backend {
    async fn record_iiif_cache_use(
        &self,
        storage_key: &str,
        source_sha256: &str,
        size: i64,
        now_ms: i64,
        min_interval_ms: i64,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "INSERT INTO iiif_cache (storage_key, source_sha256, size, last_used) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (storage_key) DO UPDATE \
             SET source_sha256 = $2, size = $3, last_used = $4 \
             WHERE iiif_cache.last_used <= $4 - $5",
        )
        .bind(storage_key)
        .bind(source_sha256)
        .bind(size)
        .bind(now_ms)
        .bind(min_interval_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn evict_iiif_cache(&self, budget_bytes: i64) -> Result<Vec<String>, CatalogError> {
        // One statement, so concurrent evictions cannot both count a
        // row as kept: every row beyond the newest `budget_bytes`.
        let rows: Vec<(String,)> = sqlx::query_as(
            "DELETE FROM iiif_cache WHERE storage_key IN (\
             SELECT storage_key FROM (SELECT storage_key, \
             CAST(SUM(size) OVER (ORDER BY last_used DESC, storage_key DESC \
             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS BIGINT) AS kept \
             FROM iiif_cache) newest WHERE kept > $1) RETURNING storage_key",
        )
        .bind(budget_bytes)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(k,)| k).collect())
    }

    async fn forget_iiif_cache_of(&self, source_sha256: &str) -> Result<Vec<String>, CatalogError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "DELETE FROM iiif_cache WHERE source_sha256 = $1 \
             AND NOT EXISTS (SELECT 1 FROM images WHERE sha256 = $1) RETURNING storage_key",
        )
        .bind(source_sha256)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(k,)| k).collect())
    }

    async fn iiif_cache_bytes(&self) -> Result<i64, CatalogError> {
        let (bytes,): (i64,) =
            sqlx::query_as("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM iiif_cache")
                .fetch_one(&self.pool)
                .await?;
        Ok(bytes)
    }
}
