//! The SQLite catalogue and queue against a real database file.

use std::sync::Arc;

use chrono::Utc;
use easel_catalog::{connect, Catalog, CatalogError, ImageStatus, JobStatus, NewAsset, NewImage};

async fn catalog() -> (tempfile::TempDir, Arc<dyn Catalog>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("easel.db").display());
    let catalog = connect(&url).await.unwrap();
    catalog.migrate().await.unwrap();
    catalog
        .migrate()
        .await
        .expect("migrating twice is harmless");
    (dir, catalog)
}

fn image(id: &str) -> NewImage {
    NewImage {
        id: id.into(),
        bucket: "default".into(),
        width: 4032,
        height: 3024,
        size: 2_913_134,
        mimetype: "image/jpeg".into(),
        sha256: "ab".repeat(32),
        original_key: format!("originals/ab/ab/{}", "ab".repeat(32)),
        tags: vec!["cover".into()],
        ..NewImage::default()
    }
}

fn asset(style: &str) -> NewAsset {
    NewAsset {
        style: style.into(),
        storage_key: format!("renders/{style}"),
        size: 10,
        mimetype: "image/jpeg".into(),
        width: 100,
        height: 100,
        sha256: "cd".repeat(32),
        upscaled: false,
        settings_fingerprint: "f".into(),
    }
}

#[tokio::test]
async fn an_image_is_created_with_its_job_and_read_back() {
    let (_dir, catalog) = catalog().await;
    let created = catalog.create_image(&image("a"), Utc::now()).await.unwrap();
    assert_eq!(created.status(), ImageStatus::Ingesting);
    assert_eq!(created.tags(), ["cover"]);
    let read = catalog.image("a").await.unwrap().unwrap();
    assert_eq!(
        (read.width, read.height, read.size),
        (4032, 3024, 2_913_134)
    );
    assert_eq!(catalog.queue_depth().await.unwrap(), 1);
    assert!(catalog.image("b").await.unwrap().is_none());
    let duplicate = catalog.create_image(&image("a"), Utc::now()).await;
    assert!(duplicate.is_err(), "ids are unique");
    assert_eq!(
        catalog.queue_depth().await.unwrap(),
        1,
        "a failed insert leaves no job behind"
    );
}

#[tokio::test]
async fn a_job_is_claimed_once_until_its_lease_lapses() {
    let (_dir, catalog) = catalog().await;
    catalog.create_image(&image("a"), Utc::now()).await.unwrap();
    let now = easel_catalog::now_ms() + 1_000;
    let job = catalog.claim_job("w1", now, 1_000).await.unwrap().unwrap();
    assert_eq!(
        (job.status(), job.attempts, job.lease_until),
        (JobStatus::Running, 1, Some(now + 1_000))
    );
    assert!(catalog
        .claim_job("w2", now + 999, 1_000)
        .await
        .unwrap()
        .is_none());
    assert!(catalog
        .renew_lease(job.id, "w1", now + 5_000)
        .await
        .unwrap());
    assert!(catalog
        .claim_job("w2", now + 4_999, 1_000)
        .await
        .unwrap()
        .is_none());
    let taken = catalog
        .claim_job("w2", now + 5_001, 1_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((taken.id, taken.attempts), (job.id, 2));
    assert!(
        !catalog
            .renew_lease(job.id, "w1", now + 9_000)
            .await
            .unwrap(),
        "w1 lost it"
    );
    let late = catalog
        .finish_job(&job, "w1", &[asset("thumb")], Utc::now())
        .await;
    assert!(matches!(late, Err(CatalogError::LeaseLost { .. })));
    assert!(
        catalog.assets("a").await.unwrap().is_empty(),
        "the loser wrote nothing"
    );
}

#[tokio::test]
async fn finishing_twice_replaces_assets_instead_of_duplicating_them() {
    let (_dir, catalog) = catalog().await;
    catalog.create_image(&image("a"), Utc::now()).await.unwrap();
    let now = easel_catalog::now_ms() + 1_000;
    let job = catalog.claim_job("w1", now, 1_000).await.unwrap().unwrap();
    catalog
        .finish_job(&job, "w1", &[asset("thumb"), asset("itunes")], Utc::now())
        .await
        .unwrap();
    assert_eq!(
        catalog.image("a").await.unwrap().unwrap().status(),
        ImageStatus::Finished
    );
    assert_eq!(catalog.queue_depth().await.unwrap(), 0);

    // A re-render (a new job for the same image) swaps the set.
    catalog.enqueue_render("a", Utc::now()).await.unwrap();
    let image = catalog.image("a").await.unwrap().unwrap();
    assert_eq!(image.status(), ImageStatus::Ingesting);
    assert_eq!(
        catalog.assets("a").await.unwrap().len(),
        2,
        "old files stay served meanwhile"
    );
    let job = catalog
        .claim_job("w2", now + 1_000, 1_000)
        .await
        .unwrap()
        .unwrap();
    catalog
        .finish_job(&job, "w2", &[asset("thumb")], Utc::now())
        .await
        .unwrap();
    let styles: Vec<String> = catalog
        .assets("a")
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.style)
        .collect();
    assert_eq!(styles, ["thumb"]);
}

#[tokio::test]
async fn a_retried_job_waits_for_its_backoff_and_a_failed_one_records_why() {
    let (_dir, catalog) = catalog().await;
    catalog.create_image(&image("a"), Utc::now()).await.unwrap();
    let now = easel_catalog::now_ms() + 1_000;
    let job = catalog.claim_job("w1", now, 1_000).await.unwrap().unwrap();
    catalog
        .retry_job(&job, "w1", now + 10_000, "store down", Utc::now())
        .await
        .unwrap();
    assert!(
        catalog
            .claim_job("w1", now + 9_999, 1_000)
            .await
            .unwrap()
            .is_none(),
        "backing off"
    );
    let job = catalog
        .claim_job("w1", now + 10_000, 1_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (job.attempts, job.last_error.as_deref()),
        (2, Some("store down"))
    );
    catalog
        .fail_job(
            &job,
            "w1",
            "the JPEG file is truncated",
            "corrupt-image",
            Utc::now(),
        )
        .await
        .unwrap();
    let image = catalog.image("a").await.unwrap().unwrap();
    assert_eq!(image.status(), ImageStatus::Error);
    assert_eq!(image.error_code.as_deref(), Some("corrupt-image"));
    assert!(image.finished_at.is_some());
    assert_eq!(catalog.queue_depth().await.unwrap(), 0);
}

#[tokio::test]
async fn an_in_memory_catalogue_keeps_its_tables_across_queries() {
    let catalog = connect("sqlite::memory:").await.unwrap();
    catalog.migrate().await.unwrap();
    catalog.create_image(&image("m"), Utc::now()).await.unwrap();
    assert!(catalog.image("m").await.unwrap().is_some());
    assert!(matches!(
        connect("mysql://x").await,
        Err(CatalogError::UnsupportedUrl(_))
    ));
}
