//! The SQLite catalogue: the embedded default.
//!
//! SQLite allows one writer at a time. Every write transaction here starts
//! with a write, so it takes the write lock up front and waits on the busy
//! timeout, instead of failing with `SQLITE_BUSY` when a read lock cannot be
//! upgraded.
//!
//! A failed transaction is rolled back when its `Transaction` drops (sqlx
//! runs the `ROLLBACK` before the connection's next command), and a
//! connection goes back to the pool only outside any transaction. After a
//! `COMMIT` that failed for want of disk space (`SQLITE_FULL`, `SQLITE_IOERR`)
//! SQLite may already have rolled back on its own: sqlx's `ROLLBACK` then
//! fails, its count of open transactions disagrees with SQLite's, and the
//! next `begin` on that connection opened a savepoint whose rollback left a
//! transaction open for good: every other writer got "database is locked",
//! and writes on that connection were acknowledged but never committed.
//! Such a connection is closed instead ([`outside_transaction`]).

use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolConnectionMetadata;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, SqlitePool};

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
        Self::connect_with_pragmas(url, &[]).await
    }

    /// [`SqliteCatalog::connect`] with extra `PRAGMA`s run on every
    /// connection, after Easel's own: e.g. `max_page_count` to make a small
    /// "full" database in a test.
    pub async fn connect_with_pragmas(
        url: &str,
        pragmas: &[(&str, &str)],
    ) -> Result<Self, crate::CatalogError> {
        let mut options = SqliteConnectOptions::from_str(url)?
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
        for (name, value) in pragmas {
            options = options.pragma(name.to_string(), value.to_string());
        }
        // Each connection to `:memory:` is its own empty database, so an
        // in-memory catalogue must live on exactly one connection.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 8 })
            // Checked once, on the way back: an idle connection runs
            // nothing, so it is still outside a transaction when next
            // acquired. A check on acquire as well cost every query one
            // more round trip to the connection's thread.
            .after_release(|conn, _: PoolConnectionMetadata| {
                Box::pin(async move { Ok(outside_transaction(conn).await) })
            })
            .connect_with(options)
            .await?;
        Ok(SqliteCatalog { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Whether a connection may serve another request: neither sqlx nor SQLite
/// itself thinks a transaction is open on it. `false` closes it (a fresh
/// one replaces it), which rolls back whatever it held.
async fn outside_transaction(conn: &mut SqliteConnection) -> bool {
    if conn.is_in_transaction() {
        tracing::warn!("closing a SQLite connection returned inside a transaction");
        return false;
    }
    let Ok(mut handle) = conn.lock_handle().await else {
        return false;
    };
    // SAFETY: the handle is locked for us (the connection's worker thread
    // is parked), and `sqlite3_get_autocommit` only reads a flag.
    let autocommit =
        unsafe { libsqlite3_sys::sqlite3_get_autocommit(handle.as_raw_handle().as_ptr()) };
    if autocommit == 0 {
        tracing::warn!("closing a SQLite connection whose transaction SQLite still holds open");
        return false;
    }
    true
}

// The shared SQL (`sql.rs` and one file per port in `sql/`), compiled
// for SQLite's types: each file names the driver only as `Db` and the
// catalogue as `Backend`.
type Db = sqlx::Sqlite;
type Backend = SqliteCatalog;

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
