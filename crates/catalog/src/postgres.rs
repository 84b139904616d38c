//! The PostgreSQL catalogue: for several API nodes and workers on several
//! machines.

use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Connection;

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
    ///
    /// A write that waits for a row lock gives up after 10 s (SQLite's busy
    /// timeout): a 503 to retry rather than a request hung behind another
    /// one. A session left idle inside a transaction is ended by the server
    /// after a minute, and a connection returned to the pool inside one is
    /// closed: no transaction can hold its locks for good.
    pub async fn connect(url: &str) -> Result<Self, crate::CatalogError> {
        let options = PgConnectOptions::from_str(url)?.options([
            ("lock_timeout", "10s"),
            ("idle_in_transaction_session_timeout", "60s"),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(3))
            .after_release(|conn, _: PoolConnectionMetadata| {
                Box::pin(async move {
                    let clean = !conn.is_in_transaction();
                    if !clean {
                        tracing::warn!(
                            "closing a PostgreSQL connection returned inside a transaction"
                        );
                    }
                    Ok(clean)
                })
            })
            .connect_with(options)
            .await?;
        Ok(PgCatalog { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

// The shared SQL (`sql.rs` and one file per port in `sql/`), compiled
// for PostgreSQL's types: each file names the driver only as `Db` and the
// catalogue as `Backend`.
type Db = sqlx::Postgres;
type Backend = PgCatalog;

#[allow(clippy::duplicate_mod)]
#[path = "sql/batches.rs"]
mod batches;
#[allow(clippy::duplicate_mod)]
#[path = "sql/common.rs"]
mod common;
#[allow(clippy::duplicate_mod)]
#[path = "sql/database.rs"]
mod database;
#[allow(clippy::duplicate_mod)]
#[path = "sql/images.rs"]
mod images;
#[allow(clippy::duplicate_mod)]
#[path = "sql/jobs.rs"]
mod jobs;
#[allow(clippy::duplicate_mod)]
#[path = "sql/keys.rs"]
mod keys;
#[allow(clippy::duplicate_mod)]
#[path = "sql/objects.rs"]
mod objects;
#[allow(clippy::duplicate_mod)]
#[path = "sql/render_cache.rs"]
mod render_cache;
