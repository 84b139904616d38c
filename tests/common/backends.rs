//! Which database and object store an end-to-end test runs against.
//!
//! By default the embedded ones: a SQLite file and a filesystem store in the
//! test's temp dir. With `EASEL_TEST_DATABASE_URL` (a PostgreSQL admin URL)
//! and/or `EASEL_TEST_S3_URL` (`s3://bucket`, plus the `AWS_*` variables)
//! set, as `scripts/ci-services.sh` writes them to `target/ci-services.env`,
//! every test gets its own fresh PostgreSQL database and its own key prefix
//! in the bucket, so tests stay independent while running in parallel.

#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor, PgConnection};

const DATABASE_VAR: &str = "EASEL_TEST_DATABASE_URL";
const S3_VAR: &str = "EASEL_TEST_S3_URL";

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A name no other test in any concurrent run uses: process id, clock and a
/// counter, in lowercase hex (safe as a database name and a key segment).
fn unique_suffix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!(
        "{:x}_{:x}_{:x}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The catalogue URL for one test: a fresh database on the PostgreSQL server
/// `EASEL_TEST_DATABASE_URL` names (created here, left for the throwaway
/// cluster to take away), else a SQLite file in `dir`.
pub async fn test_database_url(dir: &Path) -> String {
    let Some(admin) = var(DATABASE_VAR) else {
        return format!("sqlite://{}", dir.join("easel.db").display());
    };
    let name = format!("easel_t_{}", unique_suffix());
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("{DATABASE_VAR}: cannot connect to {admin}: {e}"));
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .unwrap_or_else(|e| panic!("{DATABASE_VAR}: CREATE DATABASE {name}: {e}"));
    conn.close().await.ok();
    with_database(&admin, &name)
}

/// The object store URL for one test: a unique prefix in the bucket
/// `EASEL_TEST_S3_URL` names, else a directory in `dir`.
pub fn test_store_url(dir: &Path) -> String {
    match var(S3_VAR) {
        Some(base) => format!(
            "{}/easel-e2e/{}",
            base.trim().trim_end_matches('/'),
            unique_suffix()
        ),
        None => format!("file://{}", dir.join("objects").display()),
    }
}

/// The backends the tests use, for logs: `sqlite+file`, `postgres+s3`, ...
pub fn backend_name() -> &'static str {
    match (var(DATABASE_VAR).is_some(), var(S3_VAR).is_some()) {
        (false, false) => "sqlite+file",
        (false, true) => "sqlite+s3",
        (true, false) => "postgres+file",
        (true, true) => "postgres+s3",
    }
}

/// `admin` with its database (the URL path) replaced by `database`, user,
/// password, host and query parameters kept.
fn with_database(admin: &str, database: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    match query {
        Some(query) => format!("{}/{database}?{query}", &base[..path]),
        None => format!("{}/{database}", &base[..path]),
    }
}

#[test]
fn test_databases_keep_the_server_and_its_parameters() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:55432/postgres", "easel_t_1"),
        "postgres://postgres@127.0.0.1:55432/easel_t_1"
    );
    assert_eq!(
        with_database("postgres://u:p@h/admin?sslmode=disable", "d"),
        "postgres://u:p@h/d?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "d"),
        "postgres://h:5432/d"
    );
    assert_ne!(unique_suffix(), unique_suffix());
}
