//! The PostgreSQL catalogue: for several API nodes and workers on several
//! machines.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

#[derive(Debug, Clone)]
pub struct PgCatalog {
    pool: PgPool,
}

impl PgCatalog {
    pub(crate) const BACKEND: &'static str = "postgres";

    pub(crate) const MIGRATOR: sqlx::migrate::Migrator =
        sqlx::migrate!("../../migrations/postgres");

    /// `SKIP LOCKED`: concurrent workers each take a different row instead
    /// of queueing on the same one; the outer UPDATE then holds its lock.
    pub(crate) const CLAIM_LOCK: &'static str = " FOR UPDATE SKIP LOCKED";

    /// A transaction-scoped advisory lock on a storage key's hash: claims,
    /// schedules and deletions of one object take it before they read
    /// whether it is referred to (see `lock_object` in sql.rs). Two keys
    /// that share a hash only wait for each other.
    pub(crate) const OBJECT_LOCK: &'static str =
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

    /// Connects lazily-checked: the pool gives up on a connection after a
    /// few seconds so that an outage surfaces as a 503, not a hang.
    pub async fn connect(url: &str) -> Result<Self, crate::CatalogError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await?;
        Ok(PgCatalog { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

crate::sql::sql_catalog!(PgCatalog, sqlx::Postgres);
