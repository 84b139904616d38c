//! A full SQLite database (its `max_page_count` reached), a busy one, and a
//! connection whose transaction SQLite rolled back on its own (what a
//! `COMMIT` that failed for want of disk space does): writes fail as
//! outages the API answers with 507 or 503, no pooled connection keeps a
//! transaction (and SQLite's write lock) open afterwards, and every write
//! the catalogue acknowledged is there when read back from a fresh
//! connection.

use std::time::Duration;

use chrono::Utc;
use easel_catalog::{
    now_ms, BucketSettings, CatalogError, Database, ImageFields, ImagePatch, ImageRepo, KeyStore,
    NewImage, OriginalFacts, Outage, SqliteCatalog,
};
use easel_test_support::sqlite_write_lock_is_free;
use sqlx::{Connection, SqliteConnection};

/// `SqliteCatalog`'s pool size for a database file.
const POOL_SIZE: usize = 8;

fn image(i: usize, filler: &str) -> NewImage {
    NewImage {
        id: format!("img-{i:04}"),
        bucket: "default".into(),
        fields: ImageFields {
            name: Some(format!("cover {i}")),
            string1: Some(filler.to_string()),
            ..ImageFields::default()
        },
        original: Some(OriginalFacts {
            width: 10,
            height: 10,
            size: 100,
            mimetype: "image/png".into(),
            sha256: format!("{i:064x}"),
            original_key: format!("originals/{i:064x}"),
            claim: None,
        }),
        origin_url: None,
        initial_origin: None,
    }
}

fn renamed(i: usize, round: usize) -> ImagePatch {
    ImagePatch {
        name: Some(Some(format!("cover {i} round {round}"))),
        string2: Some(Some("y".repeat(2000))),
        ..ImagePatch::default()
    }
}

/// A write that matches no row is answered "not found", full disk or not.
async fn an_update_of_a_missing_image_is_not_found(catalog: &SqliteCatalog, i: usize) {
    let miss = catalog
        .update_image("no-such-image", &renamed(i, i), None, false, Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(miss, CatalogError::NotFound(_)), "{miss}");
}

/// Bucket `bucket-<i>`, whose public images are at most `i` pixels.
fn bucket_with_side(i: usize) -> (String, BucketSettings) {
    let side = BucketSettings {
        public_max_side: Some(i as i64),
        feed_max_bytes: None,
    };
    (format!("bucket-{i}"), side)
}

async fn page_count(url: &str) -> i64 {
    let mut conn = SqliteConnection::connect(url).await.unwrap();
    let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    pages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sqlite_database_refuses_writes_as_full_and_keeps_every_acknowledged_one() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("easel.db").display());
    {
        let catalog = SqliteCatalog::connect(&url).await.unwrap();
        catalog.migrate().await.unwrap();
    }
    // Room for a few dozen rows beyond the schema. A short busy timeout:
    // a write lock left held shows as "locked" in a second, not ten.
    let limit = page_count(&url).await + 40;
    let catalog = SqliteCatalog::connect_with_pragmas(
        &url,
        &[
            ("max_page_count", limit.to_string().as_str()),
            ("busy_timeout", "1000"),
        ],
    )
    .await
    .unwrap();

    let filler = "x".repeat(3000);
    let mut created = Vec::new();
    let mut renamed_to: Vec<(String, String)> = Vec::new();
    let mut settings_written = Vec::new();
    let mut refused = 0;
    // Creates and edits, interleaved with what every API node does all
    // day (a lookup that misses, a one-statement write), well past the
    // point of being full. A refused write may have been rolled back by
    // SQLite itself; the connection must not then serve anyone inside a
    // transaction it believes open. Every write is committed or refused as
    // `Full`: never acknowledged and lost, never "database is locked".
    for i in 0..200 {
        match catalog.create_image(&image(i, &filler), Utc::now()).await {
            Ok(row) => created.push(row.id),
            Err(e) => {
                assert_eq!(e.outage(), Some(Outage::Full), "create {i}: {e}");
                refused += 1;
            }
        }
        if let Some(id) = created.get(i % created.len().max(1)).cloned() {
            match catalog
                .update_image(&id, &renamed(i, i), None, false, Utc::now())
                .await
            {
                Ok(row) => renamed_to.push((id, row.name.unwrap_or_default())),
                Err(e) => {
                    assert_eq!(e.outage(), Some(Outage::Full), "update {id}: {e}");
                    refused += 1;
                }
            }
        }
        an_update_of_a_missing_image_is_not_found(&catalog, i).await;
        let (bucket, side) = bucket_with_side(i);
        match catalog.set_bucket_settings(&bucket, side, Utc::now()).await {
            Ok(()) => settings_written.push((bucket, i as i64)),
            Err(e) => {
                assert_eq!(e.outage(), Some(Outage::Full), "settings {i}: {e}");
                refused += 1;
            }
        }
    }
    assert!(
        refused > 100,
        "the database was not full for long: {refused}"
    );
    assert!(!created.is_empty(), "nothing fitted before it was full");
    sqlite_write_lock_is_free(&url, Duration::ZERO).await;

    // Space returns (rows go): writes succeed again, at once.
    for id in created.drain(..created.len() / 2).collect::<Vec<_>>() {
        catalog
            .hard_delete(&id, None, now_ms(), now_ms())
            .await
            .expect("deletes still work");
        renamed_to.retain(|(renamed, _)| *renamed != id);
    }
    let id = created[0].clone();
    let row = catalog
        .update_image(&id, &renamed(0, 999), None, false, Utc::now())
        .await
        .expect("a write succeeds once there is room again");
    renamed_to.push((id, row.name.unwrap_or_default()));
    sqlite_write_lock_is_free(&url, Duration::ZERO).await;
    drop(catalog);

    // What was acknowledged is what a fresh connection reads.
    let fresh = SqliteCatalog::connect(&url).await.unwrap();
    for id in &created {
        assert!(fresh.image(id).await.unwrap().is_some(), "{id} was lost");
    }
    let mut last: std::collections::BTreeMap<String, String> = Default::default();
    for (id, name) in renamed_to {
        last.insert(id, name);
    }
    for (id, name) in last {
        let row = fresh.image(&id).await.unwrap().expect("renamed image");
        assert_eq!(row.name.as_deref(), Some(name.as_str()), "{id}");
    }
    for (bucket, side) in settings_written {
        let settings = fresh.bucket_settings(&bucket).await.unwrap();
        assert_eq!(settings.public_max_side, Some(side), "{bucket} was lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_elsewhere_is_an_outage_that_passes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("easel.db").display());
    let catalog = SqliteCatalog::connect_with_pragmas(&url, &[("busy_timeout", "200")])
        .await
        .unwrap();
    catalog.migrate().await.unwrap();
    catalog
        .create_image(&image(1, "a"), Utc::now())
        .await
        .unwrap();

    let mut holder = SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let err: CatalogError = catalog
        .update_image("img-0001", &renamed(1, 1), None, false, Utc::now())
        .await
        .unwrap_err();
    assert_eq!(err.outage(), Some(Outage::Unavailable), "{err}");
    assert!(!err.is_full());
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();

    tokio::time::sleep(Duration::from_millis(10)).await;
    let row = catalog
        .update_image("img-0001", &renamed(1, 2), None, false, Utc::now())
        .await
        .expect("the write goes through once the lock is free");
    assert_eq!(row.name.as_deref(), Some("cover 1 round 2"));
    sqlite_write_lock_is_free(&url, Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_transaction_sqlite_ended_itself_never_serves_again() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("easel.db").display());
    let catalog = SqliteCatalog::connect_with_pragmas(&url, &[("busy_timeout", "1000")])
        .await
        .unwrap();
    catalog.migrate().await.unwrap();

    // On a full disk a failed COMMIT can roll the transaction back inside
    // SQLite while sqlx still counts it open; its own ROLLBACK then fails,
    // and the next `begin` on that connection opens a savepoint instead of
    // a transaction. Here SQLite is told to roll back behind sqlx's back,
    // on every connection the pool will ever hand out.
    let mut held = Vec::new();
    for _ in 0..POOL_SIZE {
        held.push(catalog.pool().acquire().await.unwrap());
    }
    for conn in &mut held {
        let mut tx = sqlx::Connection::begin(&mut **conn).await.unwrap();
        sqlx::query("ROLLBACK").execute(&mut *tx).await.unwrap();
    }
    drop(held);

    let mut written = Vec::new();
    for i in 0..20 {
        an_update_of_a_missing_image_is_not_found(&catalog, i).await;
        let (bucket, side) = bucket_with_side(i);
        catalog
            .set_bucket_settings(&bucket, side, Utc::now())
            .await
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
        written.push((bucket, i as i64));
    }
    sqlite_write_lock_is_free(&url, Duration::ZERO).await;
    drop(catalog);

    let fresh = SqliteCatalog::connect(&url).await.unwrap();
    for (bucket, side) in written {
        let settings = fresh.bucket_settings(&bucket).await.unwrap();
        assert_eq!(
            settings.public_max_side,
            Some(side),
            "{bucket} was acknowledged but never committed"
        );
    }
}
