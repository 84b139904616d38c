//! The contract tests' harness: a database per test on each backend, and
//! `both!`, which runs every case on SQLite and PostgreSQL.

use std::sync::Arc;

use easel_catalog::{connect, Catalog, NewAsset};

/// One test's database, removed by [`Db::finish`] (left behind for a look
/// when the test panics).
pub struct Db {
    pub catalog: Arc<dyn Catalog>,
    _dir: Option<tempfile::TempDir>,
    pub pg: Option<PgDb>,
}

/// A test database on the shared server, and how to reach it.
pub struct PgDb {
    pub admin_url: String,
    pub name: String,
}

impl Db {
    pub async fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("easel.db").display());
        let catalog = connect(&url).await.unwrap();
        migrate_twice(&catalog).await;
        Db {
            catalog,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// `None` (after saying so) when no server is configured.
    pub async fn postgres() -> Option<Db> {
        let admin_url = easel_test_support::postgres_admin("postgres::* (the PostgreSQL cases)")?;
        let (url, name) = easel_test_support::create_database(&admin_url).await;
        let catalog = connect(&url).await.unwrap();
        assert_eq!(catalog.backend(), "postgres");
        migrate_twice(&catalog).await;
        Some(Db {
            catalog,
            _dir: None,
            pg: Some(PgDb { admin_url, name }),
        })
    }

    pub async fn finish(self) {
        let Db { catalog, _dir, pg } = self;
        drop(catalog);
        if let Some(pg) = pg {
            easel_test_support::drop_database(&pg.admin_url, &pg.name).await;
        }
    }
}

async fn migrate_twice(catalog: &Arc<dyn Catalog>) {
    catalog.migrate().await.unwrap();
    catalog
        .migrate()
        .await
        .expect("migrating twice is harmless");
    catalog.ping().await.unwrap();
}

/// A 100x100 JPEG file of `style` at `key`, rendered with `fingerprint`.
pub fn asset_fp(style: &str, key: &str, fingerprint: &str) -> NewAsset {
    NewAsset {
        style: style.into(),
        storage_key: key.into(),
        size: 10,
        mimetype: "image/jpeg".into(),
        width: 100,
        height: 100,
        sha256: "cd".repeat(32),
        upscaled: false,
        settings_fingerprint: fingerprint.into(),
        quality: Some(88),
    }
}

/// Instantiates every case for both backends, plus backend-only tests.
macro_rules! both {
    (
        cases: [$($case:ident),* $(,)?],
        sqlite_only: { $($sqlite_only:item)* },
        postgres_only: { $($postgres_only:item)* } $(,)?
    ) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let db = super::Db::sqlite().await;
                    super::cases::$case(&db.catalog).await;
                    db.finish().await;
                }
            )*
            $($sqlite_only)*
        }

        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = super::Db::postgres().await else {
                        return;
                    };
                    super::cases::$case(&db.catalog).await;
                    db.finish().await;
                }
            )*
            $($postgres_only)*
        }
    };
}
