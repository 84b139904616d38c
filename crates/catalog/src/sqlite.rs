//! The SQLite catalogue: the embedded default.
//!
//! SQLite allows one writer at a time. Every write transaction here starts
//! with a write, so it takes the write lock up front and waits on the busy
//! timeout, instead of failing with `SQLITE_BUSY` when a read lock cannot be
//! upgraded.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    pool: SqlitePool,
}

impl SqliteCatalog {
    pub(crate) const BACKEND: &'static str = "sqlite";

    pub(crate) const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

    /// The claim is one statement, so SQLite's single writer makes it
    /// atomic: two workers can never both win the same row, no row locks.
    pub(crate) const CLAIM_LOCK: &'static str = "";

    /// SQLite's write lock already orders the transactions that claim,
    /// schedule and delete objects (each starts with a write).
    pub(crate) const OBJECT_LOCK: &'static str = "";

    /// Opens (creating if needed) the database file a `sqlite:` URL names.
    pub async fn connect(url: &str) -> Result<Self, crate::CatalogError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // WAL lets readers (the API) run beside the writer (the worker).
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before an upload is acknowledged.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // Keeps planner statistics fresh (bounded work per connection),
            // so a tag filter uses its index instead of scanning a bucket.
            .optimize_on_close(true, Some(400))
            .pragma("analysis_limit", "400")
            // Reads map the file instead of copying pages into each
            // connection's small private cache: a search that scans 100,000
            // rows took 40-60 ms on a connection and 200-300 ms on the
            // next, colder one of the pool; mapped, 40-60 ms on every one.
            .pragma("mmap_size", "268435456");
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

crate::sql::sql_catalog!(SqliteCatalog, sqlx::Sqlite);
