//! [`Database`](crate::Database): migrations, liveness and the write probe.
//!
//! Compiled once per backend (see the end of `sqlite.rs` and `postgres.rs`).

use super::Backend;
use crate::{CatalogError, Database};

#[async_trait::async_trait]
impl Database for Backend {
    async fn migrate(&self) -> Result<(), CatalogError> {
        Self::MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), CatalogError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn probe_write(&self, now_ms: i64) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO write_probes (name, at) VALUES ('readyz', $1) \
             ON CONFLICT (name) DO UPDATE SET at = $1",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        Self::BACKEND
    }
}
