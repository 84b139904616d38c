//! What the tests of every crate share to reach the real services: the
//! PostgreSQL server and the S3 bucket `scripts/ci-services.sh` starts and
//! names in `target/ci-services.env`, and the one rule for a test whose
//! service is not configured: a loud `SKIPPED` line on a developer's
//! machine, a panic under `CI=true` (CI must never pass a test it did not
//! run). A dev-dependency only.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor, PgConnection, SqliteConnection};

/// A PostgreSQL admin URL: each test makes its own database on that server.
pub const DATABASE_VAR: &str = "EASEL_TEST_DATABASE_URL";
/// `s3://bucket` (with the `AWS_*` variables): each test uses its own prefix.
pub const S3_VAR: &str = "EASEL_TEST_S3_URL";

const HOW: &str = "run scripts/ci-services.sh, then `set -a; . target/ci-services.env; set +a` \
                   before cargo test";

/// The variable's value, if set to something.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The skip rule: the values of `vars` when all are set; else panics under
/// `CI=true`, or says (once per `what`, straight to the stream: libtest
/// captures `eprintln!`) that `what` is skipped, and returns `None`.
pub fn required(what: &str, vars: &[&str]) -> Option<Vec<String>> {
    let values: Vec<String> = vars.iter().filter_map(|v| var(v)).collect();
    if values.len() == vars.len() {
        return Some(values);
    }
    let names = vars.join(" and ");
    if in_ci() {
        panic!("{what} needs {names}: {HOW} (CI=true: refusing to skip)");
    }
    static SAID: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let first = SAID
        .lock()
        .map(|mut said| said.insert(what.to_string()))
        .unwrap_or(true);
    if first {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED {what}: set {names} ({HOW}) ***\n"
        );
    }
    None
}

/// The PostgreSQL admin URL, or `None` under the skip rule.
pub fn postgres_admin(what: &str) -> Option<String> {
    required(what, &[DATABASE_VAR]).map(|mut v| v.remove(0))
}

/// A name no other test in any concurrent run uses: process id, clock and a
/// counter, in lowercase hex (safe as a database name and a key segment).
pub fn unique_suffix() -> String {
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

/// A fresh database on the server `admin` names: its URL and its name (for
/// [`drop_database`]; a database left behind goes with the throwaway
/// cluster).
pub async fn create_database(admin: &str) -> (String, String) {
    let name = format!("easel_t_{}", unique_suffix());
    let mut conn = PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("{DATABASE_VAR}: cannot connect to {admin}: {e}"));
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .unwrap_or_else(|e| panic!("{DATABASE_VAR}: CREATE DATABASE {name}: {e}"));
    conn.close().await.ok();
    (with_database(admin, &name), name)
}

/// Drops a database [`create_database`] made, closing its connections.
pub async fn drop_database(admin: &str, name: &str) {
    let mut conn = PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("{DATABASE_VAR}: cannot connect to {admin}: {e}"));
    conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await
        .unwrap_or_else(|e| panic!("{DATABASE_VAR}: DROP DATABASE {name}: {e}"));
    conn.close().await.ok();
}

/// `admin` with its database (the URL path) replaced by `database`, user,
/// password, host and query parameters kept.
pub fn with_database(admin: &str, database: &str) -> String {
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

/// Panics unless a connection of its own takes the SQLite database's write
/// lock within `wait`: no connection of the code under test may keep a
/// write transaction open (after a failed commit, say).
pub async fn sqlite_write_lock_is_free(url: &str, wait: Duration) {
    let mut probe = SqliteConnection::connect(url).await.expect("open a probe");
    probe
        .execute(format!("PRAGMA busy_timeout = {}", wait.as_millis()).as_str())
        .await
        .unwrap();
    probe
        .execute("BEGIN IMMEDIATE")
        .await
        .expect("no connection of the code under test holds a write transaction open");
    probe.execute("ROLLBACK").await.unwrap();
    probe.close().await.ok();
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
