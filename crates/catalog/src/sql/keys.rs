//! [`KeyStore`](crate::KeyStore): API keys and bucket settings.
//!
//! Compiled once per backend (see the end of `sqlite.rs` and `postgres.rs`).

use chrono::{DateTime, Utc};

use super::Backend;
use crate::sql::KEY_COLUMNS;
use crate::{ApiKey, BucketSettings, CatalogError, KeyStore, NewApiKey};

#[async_trait::async_trait]
impl KeyStore for Backend {
    async fn create_api_key(
        &self,
        key: &NewApiKey,
        now: DateTime<Utc>,
    ) -> Result<ApiKey, CatalogError> {
        let row = sqlx::query_as(&format!(
            "INSERT INTO api_keys (id, key_hash, bucket, scopes, name, created_at, roles) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {KEY_COLUMNS}"
        ))
        .bind(&key.id)
        .bind(&key.key_hash)
        .bind(&key.bucket)
        .bind(key.scopes.join(" "))
        .bind(&key.name)
        .bind(now)
        .bind(key.roles.join(" "))
        .fetch_all(&self.pool)
        .await?
        .pop();
        row.ok_or(CatalogError::Database(sqlx::Error::RowNotFound))
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, CatalogError> {
        let row = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    async fn api_keys(&self) -> Result<Vec<ApiKey>, CatalogError> {
        let rows = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn revoke_api_key(&self, id: &str, now: DateTime<Utc>) -> Result<bool, CatalogError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn bucket_settings(&self, bucket: &str) -> Result<BucketSettings, CatalogError> {
        let row: Option<(Option<i64>, Option<i64>)> =
            sqlx::query_as("SELECT public_max_side, feed_max_bytes FROM buckets WHERE name = $1")
                .bind(bucket)
                .fetch_optional(&self.pool)
                .await?;
        let (public_max_side, feed_max_bytes) = row.unwrap_or_default();
        Ok(BucketSettings {
            public_max_side,
            feed_max_bytes,
        })
    }

    async fn set_bucket_settings(
        &self,
        bucket: &str,
        settings: BucketSettings,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO buckets (name, public_max_side, feed_max_bytes, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE \
             SET public_max_side = $2, feed_max_bytes = $3, updated_at = $4",
        )
        .bind(bucket)
        .bind(settings.public_max_side)
        .bind(settings.feed_max_bytes)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
