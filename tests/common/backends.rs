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

use easel_test_support::{create_database, unique_suffix, var, DATABASE_VAR, S3_VAR};

/// The catalogue URL for one test: a fresh database on the PostgreSQL server
/// `EASEL_TEST_DATABASE_URL` names (created here, left for the throwaway
/// cluster to take away), else a SQLite file in `dir`.
pub async fn test_database_url(dir: &Path) -> String {
    match var(DATABASE_VAR) {
        Some(admin) => create_database(&admin).await.0,
        None => format!("sqlite://{}", dir.join("easel.db").display()),
    }
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
