//! The catalogue, its queue, API keys, bucket settings and batches, against
//! both backends.
//!
//! Every case in `cases` is an `async fn(&Arc<dyn Catalog>)`; `both!` turns
//! each into a `#[tokio::test]` in `mod sqlite` (a temp file) and in
//! `mod postgres` (a fresh `easel_t_<uuid>` database on the server that
//! `EASEL_TEST_DATABASE_URL` names, dropped when the case passes). Without
//! that variable the PostgreSQL tests say `SKIPPED postgres` on stderr and
//! pass, unless `CI=true`, where they fail.
//!
//! Start a throwaway server with `scripts/ci-services.sh`, then
//! `set -a; . target/ci-services.env; set +a; cargo test -p easel-catalog`.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use easel_catalog::{
    connect, ApiKey, BatchCounts, BatchFailure, BucketSettings, Catalog, CatalogError, Claim,
    ClaimFilter, Database, FeedReadiness, Finish, FinishedJob, Image, ImageFields, ImagePatch,
    ImageQuery, ImageRepo, ImageStatus, JobKind, JobStatus, NewApiKey, NewAsset, NewImage,
    OriginalFacts, PageStart, RerenderFilter, SortKey, Trashed,
};
use easel_render::Crop;
use sqlx::Connection;

#[macro_use]
mod common;

use common::{asset_fp, Db};

// ---------------------------------------------------------------- fixtures

/// 2024-05-01T00:00:00Z: every test runs on this fixed clock.
const T0: i64 = 1_714_521_600;
/// When claims and finishes happen: after every job in these tests is due.
const LATER: i64 = 1_000_000;
const LEASE_MS: i64 = 60_000;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(T0 + secs, 0).unwrap()
}

fn t_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(T0 * 1_000_000 + micros).unwrap()
}

fn ms(secs: i64) -> i64 {
    (T0 + secs) * 1_000
}

fn facts(key: &str) -> OriginalFacts {
    OriginalFacts {
        width: 4032,
        height: 3024,
        size: 2_913_134,
        mimetype: "image/jpeg".into(),
        sha256: "ab".repeat(32),
        original_key: key.into(),
        claim: None,
    }
}

/// An uploaded image: its original is stored, a render job is queued.
fn upload(id: &str, bucket: &str) -> NewImage {
    NewImage {
        id: id.into(),
        bucket: bucket.into(),
        fields: ImageFields {
            name: Some(format!("image {id}")),
            tags: vec!["cover".into()],
            ..ImageFields::default()
        },
        original: Some(facts(&format!("originals/{id}"))),
        origin_url: None,
        initial_origin: None,
    }
}

fn with_fields(mut image: NewImage, fields: ImageFields) -> NewImage {
    image.fields = fields;
    image
}

fn asset(style: &str, key: &str) -> NewAsset {
    asset_fp(style, key, "v1")
}

fn feed_asset(style: &str, side: i64, size: i64, upscaled: bool) -> NewAsset {
    NewAsset {
        width: side,
        height: side,
        size,
        upscaled,
        ..asset(style, &format!("r/{style}-{side}-{size}-{upscaled}"))
    }
}

/// The readiness a failed render leaves, as the worker passes it.
fn failure(reason: &str) -> FeedReadiness {
    FeedReadiness::failing(&format!("the image failed to render: {reason}"))
}

/// The files as a render hands them over: the feed file is square-3000,
/// else itunes, ready unless enlarged (the engine's full rule is tested
/// in easel-render; here what matters is that it is stored).
fn finish_with_readiness(assets: &[NewAsset]) -> Finish<'_> {
    let mut finish = Finish::of(assets);
    let feed = finish
        .feed_style
        .as_ref()
        .and_then(|style| assets.iter().find(|a| &a.style == style));
    finish.readiness = match feed {
        Some(feed) if feed.upscaled => FeedReadiness::failing("itunes is enlarged"),
        Some(_) => FeedReadiness {
            ok: true,
            ..FeedReadiness::default()
        },
        None => FeedReadiness::failing("no feed style (square-3000 or itunes) was rendered"),
    };
    finish
}

async fn create(c: &Arc<dyn Catalog>, image: NewImage, at: i64) -> Image {
    c.create_image(&image, t(at)).await.unwrap()
}

/// Claims the next due job, which must be `image_id`'s, and finishes it
/// with `assets`; returns the orphaned keys.
async fn render(c: &Arc<dyn Catalog>, image_id: &str, assets: &[NewAsset]) -> Vec<String> {
    let job = c
        .claim_job("renderer", ms(LATER), LEASE_MS)
        .await
        .unwrap()
        .expect("a job is due");
    assert_eq!(job.image_id, image_id, "claimed the expected image's job");
    let finished = c
        .finish_job(&job, "renderer", &finish_with_readiness(assets), t(LATER))
        .await
        .unwrap();
    assert!(finished.committed, "no newer job waited for {image_id}");
    finished.orphans
}

async fn list(c: &Arc<dyn Catalog>, query: &ImageQuery) -> (Vec<String>, i64) {
    let page = c.list_images(query).await.unwrap();
    (page.images.into_iter().map(|i| i.id).collect(), page.total)
}

async fn list_ids(c: &Arc<dyn Catalog>, query: ImageQuery) -> Vec<String> {
    let (ids, total) = list(c, &query).await;
    if matches!(query.start, PageStart::Number(1)) && ids.len() < query.page_size as usize {
        assert_eq!(total, ids.len() as i64, "total of {query:?}");
    }
    ids
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn sorted(mut keys: Vec<String>) -> Vec<String> {
    keys.sort();
    keys
}

both! {
    cases: [
        an_upload_is_created_with_its_render_job,
        a_job_is_claimed_once_until_its_lease_lapses,
        finishing_twice_replaces_assets_instead_of_duplicating_them,
        a_retried_job_waits_for_its_backoff_and_a_failed_one_records_why,
        an_origin_image_is_ingested_then_given_its_original,
        replace_creates_or_replaces_and_checks_the_version,
        update_patches_fields_tags_and_rerenders,
        soft_delete_hides_and_restore_brings_back,
        hard_delete_returns_only_keys_nothing_else_uses,
        finish_retains_replaced_files_then_schedules_only_keys_nothing_else_uses,
        finish_records_the_feed_file_and_reads_add_the_buckets_visibility,
        an_images_own_limit_and_roles_are_kept_and_its_limit_wins_over_the_buckets,
        the_batch_that_rendered_an_image_is_recorded_and_filtered_on,
        the_initial_origin_is_fetched_once_then_forgotten,
        list_filters,
        list_sorts_and_pages_by_number_and_keyset,
        list_rejects_a_cursor_outside_the_list,
        list_keeps_buckets_apart,
        api_keys_are_found_by_hash_until_revoked,
        bucket_settings_default_then_set_and_overwritten,
        count_stale_follows_the_filter,
        a_batch_is_queued_in_chunks_behind_interactive_work,
        a_render_outrun_by_a_newer_job_does_not_commit_its_files,
        a_new_job_supersedes_the_jobs_still_waiting_for_its_image,
        a_failed_batch_job_leaves_the_image_and_its_files_alone,
        a_batch_whose_images_left_the_stale_set_still_completes,
        replace_never_takes_another_buckets_image,
        search_folds_case_beyond_ascii,
        the_iiif_cache_keeps_the_most_recently_used_within_its_budget,
        a_claim_cancels_a_pending_deletion_and_its_commit_ends_it,
        a_commit_whose_claim_lapsed_or_was_never_taken_is_refused,
        a_deletion_starts_only_on_what_nothing_holds_and_claims_wait_for_it,
        a_claim_of_several_keys_cancels_their_schedules_and_waits_for_a_running_deletion,
    ],
    sqlite_only: {
        #[tokio::test]
        async fn an_in_memory_catalogue_keeps_its_tables_across_queries() {
            let catalog = connect("sqlite::memory:").await.unwrap();
            assert_eq!(catalog.backend(), "sqlite");
            catalog.migrate().await.unwrap();
            catalog.create_image(&upload("m", "b"), t(0)).await.unwrap();
            assert!(catalog.image("m").await.unwrap().is_some());
            assert_eq!(catalog.queue_depth().await.unwrap(), 1);
            assert!(matches!(
                connect("mysql://x").await,
                Err(CatalogError::UnsupportedUrl(_))
            ));
        }
        /// A database made by 0001 (issue 3) keeps its images, assets and
        /// jobs through 0002's table rebuild, which runs in sqlx's
        /// transaction with foreign keys on, and its cascades still work.
        #[tokio::test]
        async fn upgrading_from_0001_keeps_images_assets_and_jobs() {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("old.db").display());
            let catalog = easel_catalog::SqliteCatalog::connect(&url).await.unwrap();
            let pool = catalog.pool();
            let mut first = sqlx::migrate::Migrator::new(std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../migrations/sqlite"
            )))
            .await
            .unwrap();
            first.migrations = first.migrations[..1].to_vec().into();
            assert_eq!(first.migrations[0].version, 1);
            first.run(pool).await.unwrap();
            for statement in [
                "INSERT INTO images (id, bucket, name, width, height, size, mimetype, sha256, \
                 original_key, status, tags, created_at, updated_at) VALUES ('old', 'b', 'Old', \
                 10, 20, 30, 'image/png', 'ab', 'originals/old', 'finished', '[\"x\",\"y\"]', \
                 '2024-01-01T00:00:00+00:00', '2024-01-01T00:00:00+00:00')",
                "INSERT INTO media_assets (image_id, style, storage_key, size, mimetype, width, \
                 height, sha256, upscaled, settings_fingerprint, created_at) VALUES ('old', \
                 'thumb', 'r/old-thumb', 1, 'image/jpeg', 100, 100, 'cd', 0, 'v0', \
                 '2024-01-01T00:00:00+00:00')",
                "INSERT INTO jobs (image_id, status, attempts, run_after, created_at, updated_at) \
                 VALUES ('old', 'done', 1, 0, '2024-01-01T00:00:00+00:00', \
                 '2024-01-01T00:00:00+00:00')",
            ] {
                sqlx::query(statement).execute(pool).await.unwrap();
            }

            catalog.migrate().await.expect("0002 applies over 0001 data");
            let c: Arc<dyn Catalog> = Arc::new(catalog.clone());
            let image = c.image("old").await.unwrap().unwrap();
            assert_eq!(
                (image.name.as_deref(), image.width, image.status()),
                (Some("Old"), Some(10), ImageStatus::Finished)
            );
            assert_eq!(image.version, 1);
            assert_eq!(c.assets("old").await.unwrap().len(), 1);
            let jobs = c.jobs_for_image("old").await.unwrap();
            assert_eq!(jobs.len(), 1);
            assert_eq!((jobs[0].kind(), jobs[0].status()), (JobKind::Render, JobStatus::Done));
            let tagged = ImageQuery {
                tag: Some("y".into()),
                ..ImageQuery::new("b")
            };
            assert_eq!(list_ids(&c, tagged).await, ["old"], "tags were indexed");

            // New rows get fresh ids, and deleting cascades as before.
            c.create_image(&upload("new", "b"), t(0)).await.unwrap();
            assert!(c.jobs_for_image("new").await.unwrap()[0].id > jobs[0].id);
            assert_eq!(
                sorted(c.hard_delete("old", None, ms(LATER), ms(LATER)).await.unwrap()),
                ["originals/old", "r/old-thumb"]
            );
            assert!(c.jobs_for_image("old").await.unwrap().is_empty());
            let (orphan_tags,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM image_tags WHERE image_id = 'old'")
                    .fetch_one(pool)
                    .await
                    .unwrap();
            assert_eq!(orphan_tags, 0);
        }
        /// A row's original facts are all there or none are: a missing
        /// width reads as no facts, never as a zero or an empty hash.
        #[tokio::test]
        async fn original_facts_are_whole_or_absent() {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("facts.db").display());
            let catalog = easel_catalog::SqliteCatalog::connect(&url).await.unwrap();
            catalog.migrate().await.unwrap();
            catalog.create_image(&upload("f", "b"), t(0)).await.unwrap();
            let image = catalog.image("f").await.unwrap().unwrap();
            assert_eq!(image.original_facts(), Some(facts("originals/f")));
            sqlx::query("UPDATE images SET width = NULL WHERE id = 'f'")
                .execute(catalog.pool())
                .await
                .unwrap();
            let image = catalog.image("f").await.unwrap().unwrap();
            assert!(image.original().is_some());
            assert_eq!(image.original_facts(), None);
        }
        /// The crop column keeps the text `x,y,width,height` it held before
        /// crops were typed: a written crop reads back as that text, and a
        /// row written as text reads back as the crop.
        #[tokio::test]
        async fn a_crop_is_stored_as_the_text_it_always_was() {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("crop.db").display());
            let catalog = easel_catalog::SqliteCatalog::connect(&url).await.unwrap();
            catalog.migrate().await.unwrap();
            let cropped = with_fields(
                upload("c", "b"),
                ImageFields {
                    crop: Some(Crop::new(12, 0, 340, 56).unwrap()),
                    ..ImageFields::default()
                },
            );
            catalog.create_image(&cropped, t(0)).await.unwrap();
            let (text,): (Option<String>,) =
                sqlx::query_as("SELECT crop FROM images WHERE id = 'c'")
                    .fetch_one(catalog.pool())
                    .await
                    .unwrap();
            assert_eq!(text.as_deref(), Some("12,0,340,56"));

            sqlx::query("UPDATE images SET crop = '7,8,9,10' WHERE id = 'c'")
                .execute(catalog.pool())
                .await
                .unwrap();
            let image = catalog.image("c").await.unwrap().unwrap();
            assert_eq!(image.crop(), Some(Crop::new(7, 8, 9, 10).unwrap()));
            sqlx::query("UPDATE images SET crop = NULL WHERE id = 'c'")
                .execute(catalog.pool())
                .await
                .unwrap();
            assert_eq!(catalog.image("c").await.unwrap().unwrap().crop(), None);
        }
    },
    postgres_only: {
        /// `FOR UPDATE SKIP LOCKED`: workers racing on one queue each get
        /// different jobs, and between them get all of them.
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_claims_never_share_a_job() {
            let Some(db) = Db::postgres().await else {
                return;
            };
            let c = db.catalog.clone();
            for i in 0..50 {
                create(&c, upload(&format!("j{i:02}"), "b"), i).await;
            }
            let mut workers = Vec::new();
            for w in 0..4 {
                let c = c.clone();
                workers.push(tokio::spawn(async move {
                    let owner = format!("w{w}");
                    let mut claimed = Vec::new();
                    while let Some(job) = c.claim_job(&owner, ms(LATER), 600_000).await.unwrap() {
                        assert_eq!(job.lease_owner.as_deref(), Some(owner.as_str()));
                        assert_eq!(job.attempts, 1, "job {} claimed twice", job.id);
                        claimed.push(job.id);
                    }
                    claimed
                }));
            }
            let mut all = Vec::new();
            let mut per_worker = Vec::new();
            for worker in workers {
                let claimed = worker.await.unwrap();
                per_worker.push(claimed.len());
                all.extend(claimed);
            }
            eprintln!("claims per worker: {per_worker:?}");
            let distinct: std::collections::BTreeSet<i64> = all.iter().copied().collect();
            assert_eq!(all.len(), 50, "every job claimed exactly once: {per_worker:?}");
            assert_eq!(distinct.len(), 50, "no job claimed twice");
            assert!(c.claim_job("late", ms(LATER), 1).await.unwrap().is_none());
            db.finish().await;
        }

        /// The interleaving the object lock closes: a writer's claim is
        /// in flight (its transaction has looked for a schedule and found
        /// none, and holds the object's lock) when a force delete schedules
        /// the object. Without the lock the schedule would not see the
        /// uncommitted claim, and the object would be deleted under the
        /// writer; with it, the schedule waits, then sees the claim.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_schedule_waits_for_a_claim_in_flight_and_then_sees_it() {
            let Some(db) = Db::postgres().await else {
                return;
            };
            let pg = db.pg.as_ref().unwrap();
            let url = easel_test_support::with_database(&pg.admin_url, &pg.name);
            let mut writer = sqlx::PgConnection::connect(&url).await.unwrap();
            let key = "originals/in-flight";
            sqlx::query("BEGIN").execute(&mut writer).await.unwrap();
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(key)
                .execute(&mut writer)
                .await
                .unwrap();
            sqlx::query("INSERT INTO object_claims (storage_key, holder, expires_at) VALUES ($1, 'w', $2)")
                .bind(key)
                .bind(ms(LATER) + 3_600_000)
                .execute(&mut writer)
                .await
                .unwrap();
            let c = db.catalog.clone();
            let schedule = tokio::spawn(async move {
                c.schedule_deletions(&[key.to_string()], "force delete", ms(LATER), ms(LATER))
                    .await
                    .unwrap()
            });
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert!(!schedule.is_finished(), "the schedule waits for the claim's transaction");
            sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
            let scheduled = schedule.await.unwrap();
            assert!(scheduled.is_empty(), "the committed claim is seen: {scheduled:?}");
            assert!(db.catalog.due_deletions(i64::MAX, 10).await.unwrap().is_empty());
            db.finish().await;
        }

        /// A database that cannot be reached is "unavailable" (503, retry),
        /// and finding that out is bounded by the pool's acquire timeout.
        #[tokio::test]
        async fn an_unreachable_database_is_unavailable() {
            let started = std::time::Instant::now();
            let outcome = tokio::time::timeout(
                std::time::Duration::from_secs(20),
                easel_catalog::PgCatalog::connect("postgres://postgres@127.0.0.1:1/x"),
            )
            .await
            .expect("connect gives up on its own within 20 s");
            let err = outcome.expect_err("nothing listens on port 1");
            assert!(err.is_unavailable(), "{err:?} should be unavailable");
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
            assert!(!CatalogError::NotFound("x".into()).is_unavailable());
        }
    },
}

/// `id`'s second job is a queued render, and its `assets` old files are
/// still served meanwhile.
async fn rerender_queued_old_files_served(c: &Arc<dyn Catalog>, id: &str, assets: usize) {
    let jobs = c.jobs_for_image(id).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        (jobs[1].kind(), jobs[1].status()),
        (JobKind::Render, JobStatus::Queued)
    );
    assert_eq!(
        c.assets(id).await.unwrap().len(),
        assets,
        "old assets stay served"
    );
}

mod cases {
    use super::*;

    pub async fn an_upload_is_created_with_its_render_job(c: &Arc<dyn Catalog>) {
        let created = create(c, upload("a", "b"), 0).await;
        assert_eq!(created.status(), ImageStatus::Ingesting);
        assert_eq!(created.tags(), ["cover"]);
        assert_eq!(created.version, 1);
        assert_eq!((created.created_at, created.updated_at), (t(0), t(0)));
        assert_eq!(created.deleted_at, None);
        assert!(!created.feed_ready);
        assert_eq!(created.feed_readiness().reasons, ["not rendered yet"]);

        let read = c.image("a").await.unwrap().unwrap();
        assert_eq!(read.bucket, "b");
        assert_eq!(read.name.as_deref(), Some("image a"));
        assert_eq!(
            (read.width, read.height, read.size),
            (Some(4032), Some(3024), Some(2_913_134))
        );
        let original = read.original().unwrap();
        assert_eq!(
            (original.key, original.mimetype, original.size),
            ("originals/a", "image/jpeg", 2_913_134)
        );

        let jobs = c.jobs_for_image("a").await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(
            (jobs[0].kind(), jobs[0].status(), jobs[0].batch_id.clone()),
            (JobKind::Render, JobStatus::Queued, None)
        );
        assert_eq!((jobs[0].run_after, jobs[0].attempts), (ms(0), 0));
        assert_eq!(c.queue_depth().await.unwrap(), 1);
        assert!(c.image("nope").await.unwrap().is_none());

        let duplicate = c.create_image(&upload("a", "b"), t(1)).await;
        assert!(duplicate.is_err(), "ids are unique");
        assert_eq!(
            c.queue_depth().await.unwrap(),
            1,
            "a failed insert leaves no job behind"
        );
    }

    pub async fn a_job_is_claimed_once_until_its_lease_lapses(c: &Arc<dyn Catalog>) {
        create(c, upload("a", "b"), 0).await;
        let now = ms(10);
        assert!(
            c.claim_job("w1", ms(0) - 1, 1_000).await.unwrap().is_none(),
            "not due before run_after"
        );
        let job = c.claim_job("w1", now, 1_000).await.unwrap().unwrap();
        assert_eq!(
            (job.status(), job.attempts, job.lease_until),
            (JobStatus::Running, 1, Some(now + 1_000))
        );
        assert_eq!(job.lease_owner.as_deref(), Some("w1"));
        assert!(c.claim_job("w2", now + 999, 1_000).await.unwrap().is_none());
        assert!(c.renew_lease(job.id, "w1", now + 5_000).await.unwrap());
        assert!(
            !c.renew_lease(job.id, "w2", now + 9_000).await.unwrap(),
            "only the holder renews"
        );
        assert!(c
            .claim_job("w2", now + 4_999, 1_000)
            .await
            .unwrap()
            .is_none());
        let taken = c
            .claim_job("w2", now + 5_001, 1_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((taken.id, taken.attempts), (job.id, 2));
        assert!(
            !c.renew_lease(job.id, "w1", now + 9_000).await.unwrap(),
            "w1 lost it"
        );

        let late = c
            .finish_job(&job, "w1", &Finish::of(&[asset("thumb", "k")]), t(20))
            .await;
        assert!(matches!(late, Err(CatalogError::LeaseLost { .. })));
        let late = c
            .fail_job(&job, "w1", "why", "code", &failure("why"), t(20))
            .await;
        assert!(matches!(late, Err(CatalogError::LeaseLost { .. })));
        let late = c.retry_job(&job, "w1", ms(30), "why", true, t(20)).await;
        assert!(matches!(late, Err(CatalogError::LeaseLost { .. })));
        assert!(
            c.assets("a").await.unwrap().is_empty(),
            "the loser wrote nothing"
        );
        let image = c.image("a").await.unwrap().unwrap();
        assert_eq!((image.status(), image.version), (ImageStatus::Ingesting, 1));

        c.finish_job(&taken, "w2", &Finish::of(&[asset("thumb", "k")]), t(20))
            .await
            .unwrap();
        assert_eq!(c.assets("a").await.unwrap().len(), 1);
        assert_eq!(
            c.jobs_for_image("a").await.unwrap()[0].status(),
            JobStatus::Done
        );
        assert!(
            !c.renew_lease(job.id, "w2", now + 20_000).await.unwrap(),
            "a done job has no lease"
        );
    }

    pub async fn finishing_twice_replaces_assets_instead_of_duplicating_them(c: &Arc<dyn Catalog>) {
        create(c, upload("a", "b"), 0).await;
        let orphans = render(c, "a", &[asset("thumb", "r/t"), asset("itunes", "r/i")]).await;
        assert!(orphans.is_empty());
        let image = c.image("a").await.unwrap().unwrap();
        assert_eq!(image.status(), ImageStatus::Finished);
        assert_eq!(image.finished_at, Some(t(LATER)));
        assert_eq!(image.version, 2);
        assert_eq!(c.queue_depth().await.unwrap(), 0);

        // A re-render (a new job for the same image) swaps the set.
        c.enqueue_render("a", t(1)).await.unwrap();
        let image = c.image("a").await.unwrap().unwrap();
        assert_eq!((image.status(), image.version), (ImageStatus::Ingesting, 3));
        assert_eq!(
            c.assets("a").await.unwrap().len(),
            2,
            "old files stay served"
        );
        assert_eq!(c.queue_depth().await.unwrap(), 1);
        render(c, "a", &[asset("thumb", "r/t")]).await;
        let styles: Vec<String> = c
            .assets("a")
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.style)
            .collect();
        assert_eq!(styles, ["thumb"]);
        assert!(matches!(
            c.enqueue_render("nope", t(2)).await,
            Err(CatalogError::NotFound(_))
        ));
    }

    pub async fn a_retried_job_waits_for_its_backoff_and_a_failed_one_records_why(
        c: &Arc<dyn Catalog>,
    ) {
        create(c, upload("a", "b"), 0).await;
        let now = ms(10);
        let job = c.claim_job("w1", now, 1_000).await.unwrap().unwrap();
        c.retry_job(&job, "w1", now + 10_000, "origin timed out", true, t(10))
            .await
            .unwrap();
        assert_eq!(c.queue_depth().await.unwrap(), 1);
        assert!(
            c.claim_job("w1", now + 9_999, 1_000)
                .await
                .unwrap()
                .is_none(),
            "backing off"
        );
        let job = c
            .claim_job("w1", now + 10_000, 1_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (job.attempts, job.outages, job.last_error.as_deref()),
            (2, 0, Some("origin timed out"))
        );
        // Our store down: the attempt is given back, counted as an outage.
        c.retry_job(&job, "w1", now + 20_000, "store down", false, t(20))
            .await
            .unwrap();
        let job = c
            .claim_job("w1", now + 20_000, 1_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (job.attempts, job.outages, job.last_error.as_deref()),
            (2, 1, Some("store down"))
        );
        c.fail_job(
            &job,
            "w1",
            "the JPEG file is truncated",
            "corrupt-image",
            &failure("the JPEG file is truncated"),
            t(30),
        )
        .await
        .unwrap();
        let image = c.image("a").await.unwrap().unwrap();
        assert_eq!(image.status(), ImageStatus::Error);
        assert_eq!(image.error.as_deref(), Some("the JPEG file is truncated"));
        assert_eq!(image.error_code.as_deref(), Some("corrupt-image"));
        assert_eq!(image.finished_at, Some(t(30)));
        assert!(!image.feed_ready);
        assert!(image.feed_readiness().reasons[0].contains("failed to render"));
        assert_eq!(c.queue_depth().await.unwrap(), 0);
        let jobs = c.jobs_for_image("a").await.unwrap();
        assert_eq!(jobs[0].status(), JobStatus::Failed);
        assert_eq!(
            jobs[0].last_error.as_deref(),
            Some("the JPEG file is truncated")
        );

        // A later successful render clears the error.
        c.enqueue_render("a", t(40)).await.unwrap();
        render(c, "a", &[asset("itunes", "r/i")]).await;
        let image = c.image("a").await.unwrap().unwrap();
        assert_eq!(image.status(), ImageStatus::Finished);
        assert_eq!((image.error, image.error_code), (None, None));
    }

    pub async fn an_origin_image_is_ingested_then_given_its_original(c: &Arc<dyn Catalog>) {
        let new = NewImage {
            id: "o".into(),
            bucket: "b".into(),
            fields: ImageFields {
                name: Some("From origin".into()),
                ..ImageFields::default()
            },
            original: None,
            origin_url: Some("https://example.com/cover.jpg".into()),
            initial_origin: None,
        };
        let image = c.create_image(&new, t(0)).await.unwrap();
        assert_eq!(image.status(), ImageStatus::Ingesting);
        assert_eq!(
            image.origin_url.as_deref(),
            Some("https://example.com/cover.jpg")
        );
        assert_eq!((image.width, image.height, image.size), (None, None, None));
        assert_eq!((image.mimetype, image.sha256), (None, None));
        assert_eq!(image.original_key, None);
        let jobs = c.jobs_for_image("o").await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].kind(), JobKind::Ingest);

        let job = c.claim_job("w", ms(1), LEASE_MS).await.unwrap().unwrap();
        assert_eq!(job.kind(), JobKind::Ingest);
        c.set_original("o", &facts("originals/fetched"), t(1))
            .await
            .unwrap();
        let image = c.image("o").await.unwrap().unwrap();
        assert_eq!(
            (image.width, image.height, image.size),
            (Some(4032), Some(3024), Some(2_913_134))
        );
        let original = image.original().unwrap();
        assert_eq!(
            (original.key, original.mimetype),
            ("originals/fetched", "image/jpeg")
        );
        assert_eq!(original.sha256, "ab".repeat(32));
        assert_eq!((image.version, image.updated_at), (2, t(1)));
        assert_eq!(image.status(), ImageStatus::Ingesting);

        c.finish_job(&job, "w", &Finish::of(&[asset("itunes", "r/i")]), t(2))
            .await
            .unwrap();
        assert_eq!(
            c.image("o").await.unwrap().unwrap().status(),
            ImageStatus::Finished
        );
    }

    pub async fn replace_creates_or_replaces_and_checks_the_version(c: &Arc<dyn Catalog>) {
        let (image, created) = c
            .replace_image(&upload("r", "b"), None, t(0))
            .await
            .unwrap();
        assert!(created);
        assert_eq!((image.version, image.status()), (1, ImageStatus::Ingesting));
        assert_eq!(c.jobs_for_image("r").await.unwrap().len(), 1);
        render(
            c,
            "r",
            &[asset("thumb", "r/thumb-1"), asset("itunes", "r/itunes-1")],
        )
        .await;
        let version = c.image("r").await.unwrap().unwrap().version;
        assert_eq!(version, 2);

        let mut next = with_fields(
            upload("r", "b"),
            ImageFields {
                name: Some("Renamed".into()),
                facet: Some("cover".into()),
                crop: Some(Crop::new(0, 0, 100, 100).unwrap()),
                tags: vec!["new".into(), "fresh".into()],
                string1: Some("s1".into()),
                number1: Some(1.5),
                ..ImageFields::default()
            },
        );
        next.original = Some(OriginalFacts {
            width: 3000,
            sha256: "ef".repeat(32),
            ..facts("originals/r2")
        });
        let (image, created) = c.replace_image(&next, None, t(5)).await.unwrap();
        assert!(!created);
        assert_eq!(image.version, version + 1);
        assert_eq!(image.status(), ImageStatus::Ingesting);
        assert_eq!(image.name.as_deref(), Some("Renamed"));
        assert_eq!(image.facet.as_deref(), Some("cover"));
        assert_eq!(image.crop(), Some(Crop::new(0, 0, 100, 100).unwrap()));
        assert_eq!(
            (image.string1.as_deref(), image.number1),
            (Some("s1"), Some(1.5))
        );
        assert_eq!(image.tags(), ["new", "fresh"]);
        assert_eq!(image.width, Some(3000));
        assert_eq!(image.original_key.as_deref(), Some("originals/r2"));
        assert_eq!(image.sha256, Some("ef".repeat(32)));
        assert_eq!((image.created_at, image.updated_at), (t(0), t(5)));
        rerender_queued_old_files_served(c, "r", 2).await;
        let by_tag = |tag: &str| ImageQuery {
            tag: Some(tag.into()),
            ..ImageQuery::new("b")
        };
        assert!(
            list_ids(c, by_tag("cover")).await.is_empty(),
            "old tags gone"
        );
        assert_eq!(list_ids(c, by_tag("fresh")).await, ["r"]);

        // If-Match.
        let stale = c.replace_image(&next, Some(version), t(6)).await;
        assert!(
            matches!(stale, Err(CatalogError::VersionMismatch { current, .. }) if current == version + 1),
            "{stale:?}"
        );
        let (image, created) = c
            .replace_image(&next, Some(version + 1), t(7))
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(image.version, version + 2);
        assert_eq!(c.jobs_for_image("r").await.unwrap().len(), 3);
        let missing = c.replace_image(&upload("ghost", "b"), Some(1), t(8)).await;
        assert!(
            matches!(missing, Err(CatalogError::NotFound(_))),
            "{missing:?}"
        );
        assert!(c.image("ghost").await.unwrap().is_none());

        // Replacing with an origin URL: facts unknown until fetched, and the
        // job is an ingest.
        let origin = NewImage {
            original: None,
            origin_url: Some("https://example.com/new.png".into()),
            ..next.clone()
        };
        let (image, created) = c.replace_image(&origin, None, t(9)).await.unwrap();
        assert!(!created);
        assert_eq!((image.width, image.size, image.sha256), (None, None, None));
        assert_eq!(
            image.origin_url.as_deref(),
            Some("https://example.com/new.png")
        );
        let jobs = c.jobs_for_image("r").await.unwrap();
        assert_eq!(jobs.last().unwrap().kind(), JobKind::Ingest);

        // The new render supersedes the old files: retained first, then
        // (their grace over) scheduled for deletion.
        let orphans = render(
            c,
            "r",
            &[asset("thumb", "r/thumb-2"), asset("itunes", "r/itunes-2")],
        )
        .await;
        assert!(orphans.is_empty(), "{orphans:?}");
        assert_eq!(
            c.expire_retained(ms(LATER), ms(LATER), 100).await.unwrap(),
            2
        );
        assert_eq!(
            sorted(c.due_deletions(ms(LATER), 100).await.unwrap()),
            ["r/itunes-1", "r/thumb-1"]
        );
    }

    pub async fn update_patches_fields_tags_and_rerenders(c: &Arc<dyn Catalog>) {
        let new = with_fields(
            upload("u", "b"),
            ImageFields {
                name: Some("Old".into()),
                facet: Some("cover".into()),
                crop: Some(Crop::new(0, 0, 10, 10).unwrap()),
                tags: vec!["a".into(), "b".into()],
                string1: Some("s1".into()),
                string2: Some("s2".into()),
                number1: Some(1.0),
                number2: Some(2.0),
                ..ImageFields::default()
            },
        );
        create(c, new, 0).await;
        let patch = ImagePatch {
            name: Some(Some("New".into())),
            facet: Some(None),
            string2: Some(None),
            string3: Some(Some("s3".into())),
            number1: Some(Some(9.5)),
            number3: Some(None),
            tags: Some(vec!["b".into(), "c".into()]),
            ..ImagePatch::default()
        };
        let image = c
            .update_image("u", &patch, None, false, t(1))
            .await
            .unwrap();
        assert_eq!(image.name.as_deref(), Some("New"));
        assert_eq!(image.facet, None, "Some(None) clears");
        assert_eq!(
            image.crop(),
            Some(Crop::new(0, 0, 10, 10).unwrap()),
            "None leaves"
        );
        assert_eq!(image.string1.as_deref(), Some("s1"));
        assert_eq!(image.string2, None);
        assert_eq!(image.string3.as_deref(), Some("s3"));
        assert_eq!(
            (image.number1, image.number2, image.number3),
            (Some(9.5), Some(2.0), None)
        );
        assert_eq!(image.tags(), ["b", "c"]);
        assert_eq!(
            (image.version, image.updated_at, image.created_at),
            (2, t(1), t(0))
        );
        assert_eq!(image.status(), ImageStatus::Ingesting);
        assert_eq!(
            c.jobs_for_image("u").await.unwrap().len(),
            1,
            "no rerender asked"
        );
        let read = c.image("u").await.unwrap().unwrap();
        assert_eq!((read.name, read.version), (Some("New".into()), 2));

        let by_tag = |tag: &str| ImageQuery {
            tag: Some(tag.into()),
            ..ImageQuery::new("b")
        };
        assert!(
            list_ids(c, by_tag("a")).await.is_empty(),
            "tag a was removed"
        );
        assert_eq!(list_ids(c, by_tag("b")).await, ["u"]);
        assert_eq!(list_ids(c, by_tag("c")).await, ["u"]);

        render(c, "u", &[asset("itunes", "r/i")]).await;
        assert_eq!(c.image("u").await.unwrap().unwrap().version, 3);

        // A new crop re-renders.
        let crop = ImagePatch {
            crop: Some(Some(Crop::new(1, 1, 5, 5).unwrap())),
            ..ImagePatch::default()
        };
        let image = c
            .update_image("u", &crop, Some(3), true, t(2))
            .await
            .unwrap();
        assert_eq!((image.status(), image.version), (ImageStatus::Ingesting, 4));
        assert_eq!(image.crop(), Some(Crop::new(1, 1, 5, 5).unwrap()));
        assert_eq!(image.tags(), ["b", "c"], "tags left alone");
        rerender_queued_old_files_served(c, "u", 1).await;

        let stale = c.update_image("u", &crop, Some(3), false, t(3)).await;
        assert!(
            matches!(stale, Err(CatalogError::VersionMismatch { current: 4, .. })),
            "{stale:?}"
        );
        let missing = c.update_image("ghost", &crop, None, false, t(3)).await;
        assert!(
            matches!(missing, Err(CatalogError::NotFound(_))),
            "{missing:?}"
        );
        let missing = c.update_image("ghost", &crop, Some(1), false, t(3)).await;
        assert!(
            matches!(missing, Err(CatalogError::NotFound(_))),
            "{missing:?}"
        );

        // An empty patch still bumps the version (the ETag changes).
        let image = c
            .update_image("u", &ImagePatch::default(), Some(4), false, t(4))
            .await
            .unwrap();
        assert_eq!(image.version, 5);

        // A trashed image is not there to update.
        c.soft_delete("u", None, t(5)).await.unwrap();
        let trashed = c.update_image("u", &crop, None, false, t(6)).await;
        assert!(
            matches!(trashed, Err(CatalogError::NotFound(_))),
            "{trashed:?}"
        );
    }

    pub async fn soft_delete_hides_and_restore_brings_back(c: &Arc<dyn Catalog>) {
        create(c, upload("a", "b"), 0).await;
        create(c, upload("z", "b"), 1).await;
        let image = c.soft_delete("a", Some(1), t(2)).await.unwrap();
        assert_eq!((image.deleted_at, image.version), (Some(t(2)), 2));
        let trashed = |trashed| ImageQuery {
            trashed,
            ..ImageQuery::new("b")
        };
        assert_eq!(
            list(c, &trashed(Trashed::Without)).await,
            (strings(&["z"]), 1)
        );
        assert_eq!(list(c, &trashed(Trashed::Only)).await, (strings(&["a"]), 1));
        assert_eq!(
            list(c, &trashed(Trashed::With)).await,
            (strings(&["z", "a"]), 2)
        );
        assert!(
            c.image("a").await.unwrap().unwrap().deleted_at.is_some(),
            "still readable by id"
        );

        let again = c.soft_delete("a", None, t(3)).await;
        assert!(matches!(again, Err(CatalogError::NotFound(_))), "{again:?}");
        let stale = c.soft_delete("z", Some(99), t(3)).await;
        assert!(
            matches!(stale, Err(CatalogError::VersionMismatch { current: 1, .. })),
            "{stale:?}"
        );
        let missing = c.soft_delete("ghost", None, t(3)).await;
        assert!(
            matches!(missing, Err(CatalogError::NotFound(_))),
            "{missing:?}"
        );

        let image = c.restore("a", t(4)).await.unwrap();
        assert_eq!(
            (image.deleted_at, image.version, image.updated_at),
            (None, 3, t(4))
        );
        assert_eq!(
            list(c, &trashed(Trashed::Without)).await,
            (strings(&["z", "a"]), 2)
        );
        assert_eq!(list(c, &trashed(Trashed::Only)).await, (vec![], 0));
        assert!(matches!(
            c.restore("ghost", t(5)).await,
            Err(CatalogError::NotFound(_))
        ));
    }

    pub async fn hard_delete_returns_only_keys_nothing_else_uses(c: &Arc<dyn Catalog>) {
        let mut a = upload("a", "b");
        a.original = Some(facts("originals/shared"));
        let mut b = upload("z", "b");
        b.original = Some(facts("originals/shared"));
        create(c, a, 0).await;
        render(
            c,
            "a",
            &[
                asset("thumb", "r/shared-thumb"),
                asset("itunes", "r/a-itunes"),
            ],
        )
        .await;
        create(c, b, 1).await;
        render(
            c,
            "z",
            &[
                asset("thumb", "r/shared-thumb"),
                asset("itunes", "r/z-itunes"),
            ],
        )
        .await;

        let stale = c.hard_delete("a", Some(1), ms(LATER), ms(LATER)).await;
        assert!(
            matches!(stale, Err(CatalogError::VersionMismatch { current: 2, .. })),
            "{stale:?}"
        );
        assert!(
            c.image("a").await.unwrap().is_some(),
            "a refused delete deletes nothing"
        );

        let orphans = c
            .hard_delete("a", Some(2), ms(LATER), ms(LATER))
            .await
            .unwrap();
        assert_eq!(orphans, ["r/a-itunes"], "shared original and thumb stay");
        assert!(c.image("a").await.unwrap().is_none());
        assert!(c.assets("a").await.unwrap().is_empty());
        assert!(c.jobs_for_image("a").await.unwrap().is_empty());
        assert_eq!(c.assets("z").await.unwrap().len(), 2, "z untouched");

        // Trashed first, then forced: now nothing else holds z's keys.
        c.soft_delete("z", None, t(2)).await.unwrap();
        let orphans = c
            .hard_delete("z", None, ms(LATER), ms(LATER))
            .await
            .unwrap();
        assert_eq!(
            sorted(orphans),
            ["originals/shared", "r/shared-thumb", "r/z-itunes"]
        );
        assert!(matches!(
            c.hard_delete("z", None, ms(LATER), ms(LATER)).await,
            Err(CatalogError::NotFound(_))
        ));
        assert!(matches!(
            c.hard_delete("ghost", Some(1), ms(LATER), ms(LATER)).await,
            Err(CatalogError::NotFound(_))
        ));

        // An origin image not fetched yet has no keys at all.
        let origin = NewImage {
            original: None,
            origin_url: Some("https://example.com/x.jpg".into()),
            ..upload("o", "b")
        };
        create(c, origin, 3).await;
        assert!(c
            .hard_delete("o", None, ms(LATER), ms(LATER))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(c.queue_depth().await.unwrap(), 0, "its job went with it");
    }

    pub async fn finish_retains_replaced_files_then_schedules_only_keys_nothing_else_uses(
        c: &Arc<dyn Catalog>,
    ) {
        create(c, upload("z", "b"), 0).await; // original_key originals/z
        render(c, "z", &[asset("thumb", "r/z-thumb")]).await;
        create(c, upload("x", "b"), 1).await;
        let orphans = render(
            c,
            "x",
            &[
                asset("thumb", "r/x-thumb"),
                asset("itunes", "r/shared"),
                asset("square-400", "originals/z"),
            ],
        )
        .await;
        assert!(orphans.is_empty());
        create(c, upload("y", "b"), 2).await;
        render(
            c,
            "y",
            &[asset("itunes", "r/shared"), asset("thumb", "r/y-thumb")],
        )
        .await;

        // A re-render that keeps the replaced files a week.
        c.enqueue_render("x", t(3)).await.unwrap();
        let job = c
            .claim_job("renderer", ms(LATER), LEASE_MS)
            .await
            .unwrap()
            .unwrap();
        let week = 7 * 24 * 3600 * 1000;
        let new = [
            asset("thumb", "r/x-thumb2"),
            NewAsset {
                sha256: "ef".repeat(32),
                ..asset("itunes", "r/x-itunes2")
            },
        ];
        let finished = c
            .finish_job(
                &job,
                "renderer",
                &Finish {
                    retain_until_ms: ms(LATER) + week,
                    delete_at_ms: ms(LATER) + week,
                    ..Finish::of(&new)
                },
                t(LATER),
            )
            .await
            .unwrap();
        assert!(finished.committed && finished.orphans.is_empty());
        let assets = c.assets("x").await.unwrap();
        assert_eq!(
            assets.iter().map(|a| a.style.as_str()).collect::<Vec<_>>(),
            ["thumb", "itunes"]
        );
        let thumb = c.asset("x", "thumb").await.unwrap().unwrap();
        assert_eq!(thumb.storage_key, "r/x-thumb2");
        assert_eq!((thumb.width, thumb.size, thumb.upscaled), (100, 10, false));
        assert_eq!(thumb.quality, Some(88));
        assert_eq!(thumb.created_at, t(LATER));
        assert!(c.asset("x", "square-400").await.unwrap().is_none());
        let both = c.assets_of(&strings(&["y", "x", "ghost"])).await.unwrap();
        assert_eq!(
            both.iter().map(|a| a.image_id.as_str()).collect::<Vec<_>>(),
            ["x", "x", "y", "y"]
        );
        assert!(c.assets_of(&[]).await.unwrap().is_empty());

        // The replaced files are found by style and sha256 prefix while
        // their grace lasts, and only then.
        let old_itunes = c
            .retained_file("x", "itunes", "cdcdcdcd", ms(LATER) + 1)
            .await
            .unwrap()
            .expect("the replaced itunes is retained");
        assert_eq!(old_itunes.storage_key, "r/shared");
        assert_eq!(old_itunes.expires_at, ms(LATER) + week);
        assert!(c
            .retained_file("x", "itunes", "cdcdcdcd", ms(LATER) + week)
            .await
            .unwrap()
            .is_none());
        assert!(
            c.retained_file("x", "itunes", "efef", ms(LATER) + 1)
                .await
                .unwrap()
                .is_none(),
            "the current file is an asset, not retained"
        );
        assert!(c
            .retained_file("y", "itunes", "cdcd", ms(LATER) + 1)
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            c.expire_retained(ms(LATER) + 1, ms(LATER) + week, 100)
                .await
                .unwrap(),
            0,
            "nothing expires within the grace period"
        );
        assert!(c
            .due_deletions(ms(LATER) + week * 2, 100)
            .await
            .unwrap()
            .is_empty());

        // Once it is over, only keys nothing else uses are scheduled.
        let over = ms(LATER) + week;
        assert_eq!(c.expire_retained(over, over + 1000, 100).await.unwrap(), 3);
        assert!(
            c.due_deletions(over, 100).await.unwrap().is_empty(),
            "due after the delay"
        );
        assert_eq!(
            c.due_deletions(over + 1000, 100).await.unwrap(),
            ["r/x-thumb"],
            "r/shared is y's, originals/z is z's original"
        );

        // Identical output (same keys) retains nothing.
        c.enqueue_render("x", t(4)).await.unwrap();
        render(c, "x", &new).await;
        assert_eq!(c.expire_retained(i64::MAX, over, 100).await.unwrap(), 0);
    }

    pub async fn an_images_own_limit_and_roles_are_kept_and_its_limit_wins_over_the_buckets(
        c: &Arc<dyn Catalog>,
    ) {
        let members = strings(&["https://example.org/roles/members"]);
        let own = |id: &str, limit: Option<i64>| {
            let mut image = upload(id, "b");
            image.fields.max_unauthorised = limit;
            image.fields.roles = members.clone();
            image
        };
        let row = create(c, own("limited", Some(640)), 0).await;
        assert_eq!(
            (row.max_unauthorised, row.roles()),
            (Some(640), members.clone())
        );
        create(c, own("open", Some(-1)), 1).await;
        create(c, upload("follows", "b"), 2).await;
        for id in ["limited", "open", "follows"] {
            let assets = [asset("square-3000", &format!("r/{id}"))];
            let job = c
                .claim_job("w", ms(LATER), LEASE_MS)
                .await
                .unwrap()
                .unwrap();
            let finish = Finish {
                feed_side: Some(3000),
                readiness: FeedReadiness {
                    ok: true,
                    ..FeedReadiness::default()
                },
                ..Finish::of(&assets)
            };
            c.finish_job(&job, "w", &finish, t(LATER)).await.unwrap();
        }
        let ready = |ready| ImageQuery {
            feed_ready: Some(ready),
            sort: SortKey::CreatedAt,
            descending: false,
            ..ImageQuery::new("b")
        };
        let limited = c.image("limited").await.unwrap().unwrap();
        assert_eq!(limited.public_limit(None), Some(640));
        let readiness = limited.feed_readiness();
        assert!(!readiness.ok);
        assert!(
            readiness.reasons[0].contains("max_unauthorised (640)"),
            "{readiness:?}"
        );
        assert_eq!(list_ids(c, ready(true)).await, ["open", "follows"]);
        assert_eq!(list_ids(c, ready(false)).await, ["limited"]);

        // A bucket that shows nothing: -1 still opens its image, the one
        // without its own limit follows the bucket.
        c.set_bucket_settings(
            "b",
            BucketSettings {
                public_max_side: Some(0),
                feed_max_bytes: None,
            },
            t(LATER),
        )
        .await
        .unwrap();
        let open = c.image("open").await.unwrap().unwrap();
        assert_eq!(open.public_limit(Some(0)), None);
        assert!(open.feed_readiness().ok);
        assert_eq!(list_ids(c, ready(true)).await, ["open"]);
        assert_eq!(list_ids(c, ready(false)).await, ["limited", "follows"]);

        // PATCH: null goes back to the bucket's; roles are replaced.
        let patch = ImagePatch {
            max_unauthorised: Some(Some(3000)),
            roles: Some(strings(&["urn:x:staff"])),
            ..ImagePatch::default()
        };
        let row = c
            .update_image("limited", &patch, None, false, t(LATER))
            .await
            .unwrap();
        assert_eq!(
            (row.max_unauthorised, row.roles()),
            (Some(3000), strings(&["urn:x:staff"]))
        );
        assert!(row.feed_readiness().ok, "3000 px is within 3000");
        let patch = ImagePatch {
            max_unauthorised: Some(None),
            ..ImagePatch::default()
        };
        let row = c
            .update_image("limited", &patch, None, false, t(LATER))
            .await
            .unwrap();
        assert_eq!(row.max_unauthorised, None);
        assert_eq!(
            row.roles(),
            strings(&["urn:x:staff"]),
            "a PATCH without roles keeps them"
        );
        assert_eq!(list_ids(c, ready(true)).await, ["open"]);

        // PUT replaces them like every other field.
        let (row, created) = c
            .replace_image(&upload("open", "b"), None, t(LATER))
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(
            (row.max_unauthorised, row.roles()),
            (None, Vec::<String>::new())
        );
    }

    pub async fn the_batch_that_rendered_an_image_is_recorded_and_filtered_on(
        c: &Arc<dyn Catalog>,
    ) {
        for id in ["a", "b"] {
            create(c, upload(id, "b"), 0).await;
            render(c, id, &[asset_fp("itunes", &format!("r/{id}"), "v0")]).await;
            assert_eq!(c.image(id).await.unwrap().unwrap().batch_id, None);
        }
        let filter = RerenderFilter {
            bucket: Some("b".into()),
            ..RerenderFilter::default()
        };
        let batch = c
            .create_batch("batch-9", &filter, "v1", t(10))
            .await
            .unwrap();
        assert_eq!(c.enqueue_batch(&batch, 10, t(11)).await.unwrap(), 2);
        let claim = ClaimFilter {
            fingerprint: "v1",
            ingest: true,
        };
        let job = c
            .claim_job_for("w", ms(LATER), LEASE_MS, &claim)
            .await
            .unwrap()
            .unwrap();
        let assets = [asset_fp("itunes", &format!("r2/{}", job.image_id), "v1")];
        c.finish_job(&job, "w", &Finish::of(&assets), t(LATER))
            .await
            .unwrap();
        let rendered = job.image_id.clone();
        assert_eq!(
            c.image(&rendered)
                .await
                .unwrap()
                .unwrap()
                .batch_id
                .as_deref(),
            Some("batch-9")
        );
        let by_batch = |batch: &str| ImageQuery {
            batch: Some(batch.to_string()),
            ..ImageQuery::new("b")
        };
        assert_eq!(
            list_ids(c, by_batch("batch-9")).await,
            vec![rendered.clone()]
        );
        assert!(list_ids(c, by_batch("batch-0")).await.is_empty());
        // A render outside the batch: its files are no longer the batch's.
        c.enqueue_render(&rendered, t(LATER)).await.unwrap();
        loop {
            let job = c
                .claim_job_for("w", ms(LATER + 1), LEASE_MS, &claim)
                .await
                .unwrap()
                .unwrap();
            let done = job.image_id == rendered;
            let assets = [asset_fp("itunes", &format!("r3/{}", job.image_id), "v1")];
            c.finish_job(&job, "w", &Finish::of(&assets), t(LATER))
                .await
                .unwrap();
            if done {
                break;
            }
        }
        assert_eq!(c.image(&rendered).await.unwrap().unwrap().batch_id, None);
        assert!(!list_ids(c, by_batch("batch-9")).await.contains(&rendered));
    }

    pub async fn the_initial_origin_is_fetched_once_then_forgotten(c: &Arc<dyn Catalog>) {
        let image = NewImage {
            id: "o".into(),
            bucket: "b".into(),
            fields: ImageFields::default(),
            original: None,
            origin_url: Some("https://example.com/cover.jpg".into()),
            initial_origin: Some("https://example.com/cover.jpg?sig=once".into()),
        };
        let row = create(c, image, 0).await;
        assert_eq!(
            row.ingest_url(),
            Some("https://example.com/cover.jpg?sig=once")
        );
        let job = c.claim_job("w", ms(1), LEASE_MS).await.unwrap().unwrap();
        assert_eq!(job.kind(), JobKind::Ingest);
        assert!(c
            .hand_over_fetched(&job, "w", &facts("originals/fetched"), t(1))
            .await
            .unwrap());
        let row = c.image("o").await.unwrap().unwrap();
        assert_eq!(row.initial_origin, None);
        assert_eq!(row.ingest_url(), Some("https://example.com/cover.jpg"));
        assert_eq!(
            row.origin_url.as_deref(),
            Some("https://example.com/cover.jpg")
        );
    }

    pub async fn finish_records_the_feed_file_and_reads_add_the_buckets_visibility(
        c: &Arc<dyn Catalog>,
    ) {
        let readiness = |ok: bool, reason: &str, warning: &str| FeedReadiness {
            ok,
            reasons: [reason]
                .into_iter()
                .filter(|r| !r.is_empty())
                .map(String::from)
                .collect(),
            warnings: [warning]
                .into_iter()
                .filter(|w| !w.is_empty())
                .map(String::from)
                .collect(),
        };
        let cases = [
            ("big", "square-3000", 3000, readiness(true, "", "")),
            (
                "small",
                "itunes",
                1400,
                readiness(true, "", "quality 80 instead of 88"),
            ),
            (
                "enlarged",
                "itunes",
                1400,
                readiness(false, "itunes is enlarged", ""),
            ),
        ];
        for (i, (id, style, side, readiness)) in cases.iter().enumerate() {
            create(c, upload(id, "b"), i as i64).await;
            let job = c
                .claim_job("w", ms(LATER), LEASE_MS)
                .await
                .unwrap()
                .unwrap();
            let assets = [asset(style, &format!("r/{id}"))];
            let finish = Finish {
                feed_style: Some(style.to_string()),
                feed_side: Some(*side),
                readiness: readiness.clone(),
                ..Finish::of(&assets)
            };
            c.finish_job(&job, "w", &finish, t(LATER)).await.unwrap();
        }
        let read = |id: &'static str| async move {
            let image = c.image(id).await.unwrap().unwrap();
            let readiness = image.feed_readiness();
            (image, readiness)
        };
        let (big, ready) = read("big").await;
        assert_eq!(big.feed_style.as_deref(), Some("square-3000"));
        assert_eq!(big.feed_side, Some(3000));
        assert!(ready.ok && ready.reasons.is_empty(), "{ready:?}");
        let (_, ready) = read("small").await;
        assert!(ready.ok);
        assert_eq!(ready.warnings, ["quality 80 instead of 88"]);
        let (_, ready) = read("enlarged").await;
        assert!(!ready.ok);
        assert_eq!(ready.reasons, ["itunes is enlarged"]);

        let q = |ready| ImageQuery {
            feed_ready: Some(ready),
            sort: SortKey::CreatedAt,
            descending: false,
            ..ImageQuery::new("b")
        };
        assert_eq!(list_ids(c, q(true)).await, ["big", "small"]);
        assert_eq!(list_ids(c, q(false)).await, ["enlarged"]);

        // Styles up to 2000 px public: the 3000 feed file needs a key, which
        // a directory does not have. Reads and the filter both say so.
        let settings = |side| BucketSettings {
            public_max_side: side,
            feed_max_bytes: None,
        };
        c.set_bucket_settings("b", settings(Some(2000)), t(10))
            .await
            .unwrap();
        let (big, ready) = read("big").await;
        assert_eq!(big.styles_public_max_side, Some(2000));
        assert!(!ready.ok);
        assert!(ready.reasons[0].contains("not public"), "{ready:?}");
        assert!(read("small").await.1.ok);
        assert_eq!(list_ids(c, q(true)).await, ["small"]);
        assert_eq!(list_ids(c, q(false)).await, ["big", "enlarged"]);
        // A private bucket: nothing is ready.
        c.set_bucket_settings("b", settings(Some(0)), t(11))
            .await
            .unwrap();
        assert!(list_ids(c, q(true)).await.is_empty());
        let (_, ready) = read("small").await;
        assert!(
            !ready.ok && ready.reasons[0].contains("image:read"),
            "{ready:?}"
        );
        c.set_bucket_settings("b", settings(None), t(12))
            .await
            .unwrap();
        assert_eq!(list_ids(c, q(true)).await, ["big", "small"]);

        // A failed re-render is not feed-ready either.
        c.enqueue_render("big", t(13)).await.unwrap();
        let job = c
            .claim_job("w", ms(LATER), LEASE_MS)
            .await
            .unwrap()
            .unwrap();
        // The catalogue stores the readiness it is given (the rule is
        // easel-app's), warnings included.
        let given = FeedReadiness {
            warnings: vec!["a warning only the caller knows".into()],
            ..failure("boom")
        };
        c.fail_job(&job, "w", "boom", "corrupt-image", &given, t(14))
            .await
            .unwrap();
        let (_, failed) = read("big").await;
        assert!(!failed.ok);
        assert!(failed.reasons[0].contains("boom"), "{failed:?}");
        assert_eq!(failed.warnings, given.warnings);
    }

    pub async fn list_filters(c: &Arc<dyn Catalog>) {
        let fields = |name: Option<&str>, facet: Option<&str>, tags: &[&str]| ImageFields {
            name: name.map(str::to_string),
            facet: facet.map(str::to_string),
            tags: strings(tags),
            ..ImageFields::default()
        };
        let b = "f";
        create(
            c,
            with_fields(
                upload("a", b),
                fields(Some("Morning Show"), Some("cover"), &["news", "daily"]),
            ),
            1,
        )
        .await;
        render(c, "a", &[feed_asset("itunes", 1400, 1000, false)]).await;
        create(
            c,
            with_fields(
                upload("b", b),
                fields(Some("evening SHOW"), Some("small"), &["news"]),
            ),
            2,
        )
        .await;
        let job = c
            .claim_job("w", ms(LATER), LEASE_MS)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.image_id, "b");
        c.fail_job(&job, "w", "bad", "corrupt-image", &failure("bad"), t(2))
            .await
            .unwrap();
        create(
            c,
            with_fields(
                upload("c", b),
                fields(Some("100% Pure_Fun"), Some("cover"), &[]),
            ),
            3,
        )
        .await;
        create(
            c,
            with_fields(
                upload("d", b),
                fields(Some("100 PureXFun"), None, &["misc"]),
            ),
            4,
        )
        .await;
        create(c, with_fields(upload("e", b), fields(None, None, &[])), 5).await;
        create(
            c,
            with_fields(upload("f", b), fields(Some("C:\\art"), None, &[])),
            6,
        )
        .await;
        create(
            c,
            with_fields(
                upload("g", b),
                fields(Some("Morning ghost"), Some("cover"), &["news"]),
            ),
            7,
        )
        .await;
        c.soft_delete("g", None, t(8)).await.unwrap();
        create(
            c,
            with_fields(
                upload("h", "elsewhere"),
                fields(Some("Morning Show"), Some("cover"), &["news"]),
            ),
            9,
        )
        .await;

        let q = || ImageQuery::new(b);
        assert_eq!(
            list(c, &q()).await,
            (strings(&["f", "e", "d", "c", "b", "a"]), 6)
        );
        let ids = ImageQuery {
            ids: strings(&["a", "c", "zzz", "g", "h"]),
            ..q()
        };
        assert_eq!(list_ids(c, ids).await, ["c", "a"]);
        let facet = ImageQuery {
            facet: Some("cover".into()),
            ..q()
        };
        assert_eq!(list_ids(c, facet).await, ["c", "a"]);

        let tag = |tag: &str| ImageQuery {
            tag: Some(tag.into()),
            ..q()
        };
        assert_eq!(list_ids(c, tag("news")).await, ["b", "a"]);
        assert_eq!(list_ids(c, tag("daily")).await, ["a"]);
        assert!(list_ids(c, tag("nope")).await.is_empty());
        assert!(list_ids(c, tag("NEWS")).await.is_empty(), "tags are exact");
        let with_trashed = ImageQuery {
            trashed: Trashed::With,
            ..tag("news")
        };
        assert_eq!(list_ids(c, with_trashed.clone()).await, ["g", "b", "a"]);
        let paged = ImageQuery {
            page_size: 2,
            ..with_trashed.clone()
        };
        assert_eq!(list(c, &paged).await, (strings(&["g", "b"]), 3));
        let page2 = ImageQuery {
            start: PageStart::Number(2),
            ..paged.clone()
        };
        assert_eq!(list(c, &page2).await, (strings(&["a"]), 3));
        let page3 = ImageQuery {
            start: PageStart::Number(3),
            ..paged
        };
        assert_eq!(
            list(c, &page3).await,
            (vec![], 3),
            "past the end: empty, total kept"
        );

        let status = |status| ImageQuery {
            status: Some(status),
            ..q()
        };
        assert_eq!(list_ids(c, status(ImageStatus::Finished)).await, ["a"]);
        assert_eq!(list_ids(c, status(ImageStatus::Error)).await, ["b"]);
        assert_eq!(
            list_ids(c, status(ImageStatus::Ingesting)).await,
            ["f", "e", "d", "c"]
        );
        let ready = |ready| ImageQuery {
            feed_ready: Some(ready),
            ..q()
        };
        assert_eq!(list_ids(c, ready(true)).await, ["a"]);
        assert_eq!(list_ids(c, ready(false)).await, ["f", "e", "d", "c", "b"]);

        let search = |term: &str| ImageQuery {
            search: Some(term.into()),
            ..q()
        };
        assert_eq!(list_ids(c, search("show")).await, ["b", "a"]);
        assert_eq!(
            list_ids(c, search("SHOW")).await,
            ["b", "a"],
            "case-insensitive"
        );
        assert_eq!(list_ids(c, search("nInG sH")).await, ["b", "a"]);
        assert_eq!(list_ids(c, search("100%")).await, ["c"], "% is literal");
        assert_eq!(list_ids(c, search("%")).await, ["c"]);
        assert_eq!(list_ids(c, search("pure_fun")).await, ["c"], "_ is literal");
        assert_eq!(list_ids(c, search("_")).await, ["c"]);
        assert_eq!(list_ids(c, search("c:\\a")).await, ["f"], "\\ is literal");
        assert_eq!(list_ids(c, search("\\")).await, ["f"]);
        assert!(list_ids(c, search("ghost")).await.is_empty(), "trashed");
        assert_eq!(
            list_ids(c, search("")).await,
            ["f", "e", "d", "c", "b", "a"],
            "an empty term matches all, unnamed too"
        );

        let combined = ImageQuery {
            facet: Some("cover".into()),
            tag: Some("news".into()),
            ..q()
        };
        assert_eq!(list_ids(c, combined).await, ["a"]);
        let combined = ImageQuery {
            search: Some("show".into()),
            status: Some(ImageStatus::Error),
            ..q()
        };
        assert_eq!(list_ids(c, combined).await, ["b"]);
    }

    /// Every sort, both directions: pages by number and by keyset give the
    /// same sequence, which is the one computed here.
    pub async fn list_sorts_and_pages_by_number_and_keyset(c: &Arc<dyn Catalog>) {
        // (id, created µs, updated µs, name): ties in every key, a NULL and
        // an empty name (they sort alike), uppercase, and times with and
        // without fractions (SQLite keeps them as text).
        let rows: &[(&str, i64, i64, Option<&str>)] = &[
            ("s00", 5_000_000, 5_000_000, Some("beta")),
            ("s01", 3_000_000, 20_000_000, Some("alpha")),
            ("s02", 3_000_000, 3_000_000, None),
            ("s03", 9_000_000, 20_000_000, Some("beta")),
            ("s04", 1_000_000, 1_000_000, Some("gamma")),
            ("s05", 7_000_000, 21_500_000, Some("alpha")),
            ("s06", 7_000_000, 7_000_000, None),
            ("s07", 7_500_000, 21_000_250, Some("delta")),
            ("s08", 2_000_000, 2_000_000, Some("Zed")),
            ("s09", 0, 20_000_000, Some("beta")),
            ("s10", 4_000_000, 4_000_000, Some("")),
            ("s11", 7_000_250, 7_000_250, Some("alpha")),
        ];
        // Inserted in an order unrelated to any key.
        for &(id, created, _, name) in rows.iter().rev() {
            let new = with_fields(
                upload(id, "s"),
                ImageFields {
                    name: name.map(str::to_string),
                    ..ImageFields::default()
                },
            );
            c.create_image(&new, t_micros(created)).await.unwrap();
        }
        for &(id, created, updated, _) in rows {
            if updated != created {
                c.update_image(id, &ImagePatch::default(), None, false, t_micros(updated))
                    .await
                    .unwrap();
            }
        }
        let check = c.image("s07").await.unwrap().unwrap();
        assert_eq!(
            (check.created_at, check.updated_at),
            (t_micros(7_500_000), t_micros(21_000_250)),
            "microseconds survive the round trip"
        );

        for sort in [SortKey::CreatedAt, SortKey::UpdatedAt, SortKey::Name] {
            for descending in [false, true] {
                let mut expected: Vec<(String, &str)> = rows
                    .iter()
                    .map(|&(id, created, updated, name)| {
                        let key = match sort {
                            SortKey::CreatedAt => format!("{created:012}"),
                            SortKey::UpdatedAt => format!("{updated:012}"),
                            SortKey::Name => name.unwrap_or("").to_string(),
                        };
                        (key, id)
                    })
                    .collect();
                expected.sort();
                if descending {
                    expected.reverse();
                }
                let expected: Vec<String> =
                    expected.into_iter().map(|(_, id)| id.to_string()).collect();
                let what = format!("sort {sort:?} descending {descending}");

                for page_size in [1u64, 5, 12, 50] {
                    let query = ImageQuery {
                        sort,
                        descending,
                        page_size,
                        ..ImageQuery::new("s")
                    };
                    // By number.
                    let mut by_number = Vec::new();
                    for number in 1.. {
                        let page = ImageQuery {
                            start: PageStart::Number(number),
                            ..query.clone()
                        };
                        let (ids, total) = list(c, &page).await;
                        assert_eq!(total, 12, "{what}");
                        assert!(ids.len() <= page_size as usize);
                        if ids.is_empty() {
                            break;
                        }
                        by_number.extend(ids);
                    }
                    assert_eq!(
                        by_number, expected,
                        "{what}, pages of {page_size} by number"
                    );
                    // By keyset.
                    let mut by_keyset = Vec::new();
                    let mut start = PageStart::Number(1);
                    loop {
                        let page = ImageQuery {
                            start: start.clone(),
                            ..query.clone()
                        };
                        let (ids, total) = list(c, &page).await;
                        assert_eq!(total, 12, "{what}");
                        let Some(last) = ids.last().cloned() else {
                            break;
                        };
                        by_keyset.extend(ids);
                        start = PageStart::After(last);
                        assert!(by_keyset.len() <= 12, "{what}: keyset loops: {by_keyset:?}");
                    }
                    assert_eq!(
                        by_keyset, expected,
                        "{what}, pages of {page_size} by keyset"
                    );
                }
            }
        }
    }

    pub async fn list_rejects_a_cursor_outside_the_list(c: &Arc<dyn Catalog>) {
        let cover = ImageFields {
            facet: Some("cover".into()),
            ..ImageFields::default()
        };
        create(c, with_fields(upload("a", "b"), cover.clone()), 0).await;
        create(c, upload("m", "b"), 1).await;
        create(c, with_fields(upload("z", "b"), cover), 2).await;
        create(c, upload("t", "b"), 3).await;
        c.soft_delete("t", None, t(4)).await.unwrap();
        let after = |id: &str| ImageQuery {
            start: PageStart::After(id.into()),
            ..ImageQuery::new("b")
        };
        assert_eq!(list(c, &after("z")).await, (strings(&["m", "a"]), 3));
        assert_eq!(list(c, &after("a")).await, (vec![], 3));
        let unknown = c.list_images(&after("nope")).await;
        assert!(
            matches!(&unknown, Err(CatalogError::UnknownCursor(id)) if id == "nope"),
            "{unknown:?}"
        );
        let trashed = c.list_images(&after("t")).await;
        assert!(
            matches!(trashed, Err(CatalogError::UnknownCursor(_))),
            "{trashed:?}"
        );
        let with_trashed = ImageQuery {
            trashed: Trashed::With,
            ..after("t")
        };
        assert_eq!(list_ids(c, with_trashed).await, ["z", "m", "a"]);
        let filtered_out = ImageQuery {
            facet: Some("cover".into()),
            ..after("m")
        };
        let filtered_out = c.list_images(&filtered_out).await;
        assert!(
            matches!(filtered_out, Err(CatalogError::UnknownCursor(_))),
            "{filtered_out:?}"
        );
        let filtered = ImageQuery {
            facet: Some("cover".into()),
            ..after("z")
        };
        assert_eq!(list(c, &filtered).await, (strings(&["a"]), 2));
    }

    pub async fn list_keeps_buckets_apart(c: &Arc<dyn Catalog>) {
        create(c, upload("i1", "one"), 1).await;
        create(c, upload("i2", "two"), 2).await;
        create(c, upload("i3", "one"), 3).await;
        assert_eq!(
            list(c, &ImageQuery::new("one")).await,
            (strings(&["i3", "i1"]), 2)
        );
        assert_eq!(
            list(c, &ImageQuery::new("two")).await,
            (strings(&["i2"]), 1)
        );
        assert_eq!(list(c, &ImageQuery::new("three")).await, (vec![], 0));
        let ids = ImageQuery {
            ids: strings(&["i1", "i2"]),
            ..ImageQuery::new("one")
        };
        assert_eq!(list_ids(c, ids).await, ["i1"]);
        let tag = ImageQuery {
            tag: Some("cover".into()),
            ..ImageQuery::new("two")
        };
        assert_eq!(list_ids(c, tag).await, ["i2"]);
        let search = ImageQuery {
            search: Some("image".into()),
            ..ImageQuery::new("two")
        };
        assert_eq!(list_ids(c, search).await, ["i2"]);
        let foreign_cursor = ImageQuery {
            start: PageStart::After("i2".into()),
            ..ImageQuery::new("one")
        };
        assert!(matches!(
            c.list_images(&foreign_cursor).await,
            Err(CatalogError::UnknownCursor(_))
        ));
    }

    pub async fn api_keys_are_found_by_hash_until_revoked(c: &Arc<dyn Catalog>) {
        let k1 = NewApiKey {
            id: "k1".into(),
            key_hash: "h1".into(),
            bucket: "b".into(),
            scopes: strings(&["image:read", "image:write"]),
            name: Some("ci".into()),
            roles: strings(&["https://example.org/roles/members", "urn:x:staff"]),
        };
        let key = c.create_api_key(&k1, t(0)).await.unwrap();
        assert_eq!(
            key.roles(),
            strings(&["https://example.org/roles/members", "urn:x:staff"])
        );
        assert!(key.holds_any_role(&strings(&["urn:x:staff"])));
        assert!(!key.holds_any_role(&strings(&["urn:x:other"])));
        assert_eq!((key.id.as_str(), key.bucket.as_str()), ("k1", "b"));
        assert_eq!(key.scopes(), ["image:read", "image:write"]);
        assert!(key.has_scope("image:write") && !key.has_scope("image:delete"));
        assert!(!key.has_scope("image"));
        assert_eq!((key.created_at, key.revoked_at), (t(0), None));
        let k2 = NewApiKey {
            id: "k2".into(),
            key_hash: "h2".into(),
            bucket: "other".into(),
            scopes: strings(&["image:delete"]),
            name: None,
            roles: Vec::new(),
        };
        c.create_api_key(&k2, t(1)).await.unwrap();
        let clash = NewApiKey {
            id: "k3".into(),
            ..k1.clone()
        };
        assert!(
            c.create_api_key(&clash, t(2)).await.is_err(),
            "hashes are unique"
        );

        let found = c.api_key_by_hash("h1").await.unwrap().unwrap();
        assert_eq!((found.id, found.name), ("k1".into(), Some("ci".into())));
        assert!(c.api_key_by_hash("nope").await.unwrap().is_none());
        let ids = |keys: Vec<ApiKey>| keys.into_iter().map(|k| k.id).collect::<Vec<_>>();
        assert_eq!(ids(c.api_keys().await.unwrap()), ["k1", "k2"]);

        assert!(c.revoke_api_key("k1", t(3)).await.unwrap());
        assert!(
            !c.revoke_api_key("k1", t(4)).await.unwrap(),
            "already revoked"
        );
        assert!(!c.revoke_api_key("ghost", t(4)).await.unwrap());
        assert!(c.api_key_by_hash("h1").await.unwrap().is_none(), "revoked");
        assert_eq!(c.api_key_by_hash("h2").await.unwrap().unwrap().id, "k2");
        let keys = c.api_keys().await.unwrap();
        assert_eq!(keys[0].revoked_at, Some(t(3)), "listed, as revoked");
        assert_eq!(keys[1].revoked_at, None);
    }

    pub async fn bucket_settings_default_then_set_and_overwritten(c: &Arc<dyn Catalog>) {
        assert_eq!(
            c.bucket_settings("b").await.unwrap(),
            BucketSettings::default()
        );
        assert_eq!(c.bucket_settings("b").await.unwrap().public_max_side, None);
        let side = |n| BucketSettings {
            public_max_side: n,
            feed_max_bytes: None,
        };
        c.set_bucket_settings("b", side(Some(400)), t(0))
            .await
            .unwrap();
        assert_eq!(c.bucket_settings("b").await.unwrap(), side(Some(400)));
        c.set_bucket_settings("b", side(Some(0)), t(1))
            .await
            .unwrap();
        assert_eq!(c.bucket_settings("b").await.unwrap(), side(Some(0)));
        assert_eq!(c.bucket_settings("other").await.unwrap(), side(None));
        c.set_bucket_settings("b", side(None), t(2)).await.unwrap();
        assert_eq!(c.bucket_settings("b").await.unwrap(), side(None));
    }

    pub async fn count_stale_follows_the_filter(c: &Arc<dyn Catalog>) {
        // Bucket b: p rendered with v1; q with v0; big (a 3200 crop, with
        // square-3000) and big2 (a 3000 crop, square-3000 not yet a style)
        // with v0; w mixed; d v0 but trashed; e failed; busy rendered with
        // v0 and queued again; r not rendered yet; s origin not fetched.
        // Bucket other: u rendered with v0.
        let regular = |key: &str, side: i64| NewAsset {
            width: side,
            height: side,
            ..asset_fp("regular", key, "v0")
        };
        create(c, upload("p", "b"), 1).await;
        render(c, "p", &[asset("thumb", "p/t"), asset("itunes", "p/i")]).await;
        create(c, upload("q", "b"), 2).await;
        render(
            c,
            "q",
            &[
                asset_fp("thumb", "q/t", "v0"),
                asset_fp("itunes", "q/i", "v0"),
                regular("q/r", 100),
            ],
        )
        .await;
        create(c, upload("big", "b"), 3).await;
        render(
            c,
            "big",
            &[
                regular("big/r", 3200),
                asset_fp("square-3000", "big/s", "v0"),
            ],
        )
        .await;
        create(c, upload("big2", "b"), 4).await;
        render(c, "big2", &[regular("big2/r", 3000)]).await;
        create(c, upload("w", "b"), 5).await;
        render(
            c,
            "w",
            &[asset("thumb", "w/t"), asset_fp("itunes", "w/i", "v0")],
        )
        .await;
        create(c, upload("d", "b"), 6).await;
        render(c, "d", &[asset_fp("thumb", "d/t", "v0")]).await;
        c.soft_delete("d", None, t(6)).await.unwrap();
        create(c, upload("e", "b"), 7).await;
        let job = c
            .claim_job("renderer", ms(LATER), LEASE_MS)
            .await
            .unwrap()
            .unwrap();
        c.fail_job(
            &job,
            "renderer",
            "truncated",
            "corrupt-image",
            &failure("truncated"),
            t(7),
        )
        .await
        .unwrap();
        create(c, upload("u", "other"), 8).await;
        render(c, "u", &[asset_fp("thumb", "u/t", "v0")]).await;
        create(c, upload("busy", "b"), 9).await;
        render(c, "busy", &[asset_fp("thumb", "busy/t", "v0")]).await;
        c.enqueue_render("busy", t(9)).await.unwrap();
        create(c, upload("r", "b"), 10).await;
        let origin = NewImage {
            original: None,
            origin_url: Some("https://example.com/s.jpg".into()),
            ..upload("s", "b")
        };
        create(c, origin, 11).await;

        let count = |filter: RerenderFilter, fingerprint: &'static str| async move {
            c.count_stale(&filter, fingerprint).await.unwrap()
        };
        let in_b = || RerenderFilter {
            bucket: Some("b".into()),
            ..RerenderFilter::default()
        };
        assert_eq!(
            count(RerenderFilter::default(), "v1").await,
            5,
            "q big big2 w u"
        );
        assert_eq!(count(in_b(), "v1").await, 4, "q big big2 w");
        let other = RerenderFilter {
            bucket: Some("other".into()),
            ..RerenderFilter::default()
        };
        assert_eq!(count(other, "v1").await, 1, "u");
        assert_eq!(count(in_b(), "v0").await, 2, "p w");
        let all = RerenderFilter {
            all: true,
            ..in_b()
        };
        assert_eq!(count(all, "v1").await, 6, "p q big big2 w e");
        let all = RerenderFilter {
            all: true,
            ..RerenderFilter::default()
        };
        assert_eq!(count(all, "v1").await, 7, "p q big big2 w e u");
        let style = |style: &str, min: Option<i64>| RerenderFilter {
            style: Some(style.into()),
            style_min_crop_side: min,
            ..in_b()
        };
        assert_eq!(
            count(style("itunes", None), "v1").await,
            4,
            "a style every image has narrows nothing: q big big2 w"
        );
        assert_eq!(
            count(style("square-3000", Some(3000)), "v1").await,
            2,
            "only crops of 3000 and more: big big2"
        );
        let since = RerenderFilter {
            since: Some(t(5)),
            ..in_b()
        };
        assert_eq!(count(since, "v1").await, 1, "w");
        let since = RerenderFilter {
            since: Some(t(5)),
            ..RerenderFilter::default()
        };
        assert_eq!(count(since, "v1").await, 2, "w u");
        let since_all = RerenderFilter {
            since: Some(t(6)),
            all: true,
            ..RerenderFilter::default()
        };
        assert_eq!(count(since_all, "v1").await, 2, "e u");

        // Once rendered with v1, nothing is stale any more, square-3000
        // included: a small crop is not stale for lacking it.
        let job = c
            .claim_job("renderer", ms(LATER), LEASE_MS)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.image_id, "busy");
        c.finish_job(
            &job,
            "renderer",
            &Finish::of(&[asset("thumb", "busy/t1")]),
            t(12),
        )
        .await
        .unwrap();
        for id in ["r", "s"] {
            c.hard_delete(id, None, ms(LATER), ms(LATER)).await.unwrap();
        }
        for id in ["q", "big", "big2", "w"] {
            c.enqueue_render(id, t(12)).await.unwrap();
            let side = if id.starts_with("big") { 3000 } else { 100 };
            let mut assets = vec![NewAsset {
                width: side,
                height: side,
                ..asset("regular", &format!("{id}/r1"))
            }];
            if side == 3000 {
                assets.push(asset("square-3000", &format!("{id}/s1")));
            }
            render(c, id, &assets).await;
        }
        assert_eq!(count(in_b(), "v1").await, 0);
        assert_eq!(count(style("square-3000", Some(3000)), "v1").await, 0);
    }

    pub async fn a_batch_is_queued_in_chunks_behind_interactive_work(c: &Arc<dyn Catalog>) {
        for i in 0..5 {
            let id = format!("b{i}");
            create(c, upload(&id, "b"), i).await;
            render(c, &id, &[asset_fp("itunes", &format!("r/{id}"), "v0")]).await;
        }
        create(c, upload("cur", "b"), 5).await;
        render(c, "cur", &[asset("itunes", "r/cur")]).await;
        create(c, upload("x", "other"), 6).await;
        render(c, "x", &[asset_fp("itunes", "r/x", "v0")]).await;

        let filter = RerenderFilter {
            bucket: Some("b".into()),
            since: Some(t(0)),
            ..RerenderFilter::default()
        };
        assert_eq!(c.count_stale(&filter, "v1").await.unwrap(), 5);
        assert!(c.open_batch(&filter, "v1").await.unwrap().is_none());
        let batch = c
            .create_batch("batch-1", &filter, "v1", t(10))
            .await
            .unwrap();
        assert_eq!(batch.total, 5);
        assert_eq!(batch.bucket.as_deref(), Some("b"));
        assert_eq!(batch.filter(), filter);
        assert_eq!(
            (batch.fingerprint.as_str(), batch.created_at),
            ("v1", t(10))
        );
        assert_eq!(c.batch("batch-1").await.unwrap().unwrap().total, 5);
        assert!(c.batch("nope").await.unwrap().is_none());
        assert_eq!(
            c.open_batch(&filter, "v1")
                .await
                .unwrap()
                .map(|b| b.id)
                .as_deref(),
            Some("batch-1"),
            "a new batch with nothing queued yet is open"
        );
        assert!(c.open_batch(&filter, "v2").await.unwrap().is_none());
        let other = RerenderFilter {
            bucket: Some("other".into()),
            ..filter.clone()
        };
        assert!(c.open_batch(&other, "v1").await.unwrap().is_none());

        for expected in [2, 2, 1, 0, 0] {
            assert_eq!(c.enqueue_batch(&batch, 2, t(11)).await.unwrap(), expected);
        }
        assert_eq!(
            c.batch_counts("batch-1").await.unwrap(),
            BatchCounts {
                queued: 5,
                ..BatchCounts::default()
            }
        );
        for i in 0..5 {
            let jobs = c.jobs_for_image(&format!("b{i}")).await.unwrap();
            let job = jobs.last().unwrap();
            assert_eq!(job.batch_id.as_deref(), Some("batch-1"));
            assert_eq!(
                (job.kind(), job.status()),
                (JobKind::Render, JobStatus::Queued)
            );
            assert_eq!(job.run_after, ms(11));
        }
        assert!(c
            .jobs_for_image("cur")
            .await
            .unwrap()
            .iter()
            .all(|j| j.batch_id.is_none()));
        assert_eq!(c.jobs_for_image("x").await.unwrap().len(), 1);

        // An upload made after the batch was queued still goes first.
        create(c, upload("fresh", "b"), 20).await;
        let first = c
            .claim_job("w", ms(LATER), LEASE_MS)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (first.image_id.as_str(), first.batch_id.as_deref()),
            ("fresh", None)
        );
        c.finish_job(
            &first,
            "w",
            &Finish::of(&[asset("itunes", "r/fresh")]),
            t(21),
        )
        .await
        .unwrap();

        let claim = || async move {
            let job = c
                .claim_job("w", ms(LATER), LEASE_MS)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(job.batch_id.as_deref(), Some("batch-1"));
            job
        };
        let failing = claim().await;
        c.fail_job(
            &failing,
            "w",
            "truncated",
            "corrupt-image",
            &failure("truncated"),
            t(22),
        )
        .await
        .unwrap();
        let running = claim().await;
        let done = claim().await;
        c.finish_job(&done, "w", &Finish::of(&[asset("itunes", "r/done")]), t(23))
            .await
            .unwrap();
        assert_eq!(
            c.batch_counts("batch-1").await.unwrap(),
            BatchCounts {
                queued: 2,
                running: 1,
                done: 1,
                failed: 1
            }
        );
        assert_eq!(
            c.batch_failures("batch-1", 10).await.unwrap(),
            [BatchFailure {
                image_id: failing.image_id.clone(),
                reason: Some("truncated".into())
            }]
        );
        assert!(c.batch_failures("batch-1", 0).await.unwrap().is_empty());
        assert_eq!(
            c.open_batch(&filter, "v1")
                .await
                .unwrap()
                .map(|b| b.id)
                .as_deref(),
            Some("batch-1"),
            "unfinished"
        );

        c.finish_job(
            &running,
            "w",
            &Finish::of(&[asset("itunes", "r/running")]),
            t(24),
        )
        .await
        .unwrap();
        for _ in 0..2 {
            let job = claim().await;
            c.finish_job(
                &job,
                "w",
                &Finish::of(&[asset("itunes", &format!("r/{}", job.image_id))]),
                t(25),
            )
            .await
            .unwrap();
        }
        assert!(c
            .claim_job("w", ms(LATER), LEASE_MS)
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            c.batch_counts("batch-1").await.unwrap(),
            BatchCounts {
                done: 4,
                failed: 1,
                ..BatchCounts::default()
            }
        );
        assert!(
            c.open_batch(&filter, "v1").await.unwrap().is_none(),
            "a finished batch is not resumed"
        );

        // What is still stale (the failed image keeps its v0 file) makes a
        // new batch, and that one is open.
        assert_eq!(c.count_stale(&filter, "v1").await.unwrap(), 1);
        let again = c
            .create_batch("batch-2", &filter, "v1", t(30))
            .await
            .unwrap();
        assert_eq!(again.total, 1);
        assert_eq!(
            c.open_batch(&filter, "v1")
                .await
                .unwrap()
                .map(|b| b.id)
                .as_deref(),
            Some("batch-2")
        );
        assert_eq!(c.enqueue_batch(&again, 100, t(31)).await.unwrap(), 1);
        assert_eq!(c.enqueue_batch(&again, 100, t(31)).await.unwrap(), 0);
        assert_eq!(c.batch("batch-2").await.unwrap().unwrap().total, 1);
        assert_eq!(
            c.batch_counts("batch-1").await.unwrap().queued,
            0,
            "batches apart"
        );
    }

    pub async fn a_render_outrun_by_a_newer_job_does_not_commit_its_files(c: &Arc<dyn Catalog>) {
        create(c, upload("a", "b"), 0).await;
        let old = c
            .claim_job("w1", ms(LATER), LEASE_MS)
            .await
            .unwrap()
            .unwrap();
        // A new crop while the first render runs.
        let patch = ImagePatch {
            crop: Some(Some(Crop::new(0, 0, 10, 10).unwrap())),
            ..ImagePatch::default()
        };
        c.update_image("a", &patch, None, true, t(1)).await.unwrap();
        assert!(
            c.claim_job("w2", ms(LATER), LEASE_MS)
                .await
                .unwrap()
                .is_none(),
            "the new job waits while the image has a job running"
        );

        let finished = c
            .finish_job(&old, "w1", &Finish::of(&[asset("thumb", "r/old")]), t(2))
            .await
            .unwrap();
        assert_eq!(
            finished,
            FinishedJob {
                committed: false,
                orphans: vec!["r/old".into()]
            }
        );
        assert!(c.assets("a").await.unwrap().is_empty());
        assert_eq!(
            c.image("a").await.unwrap().unwrap().status(),
            ImageStatus::Ingesting,
            "still waiting for the render of the new crop"
        );

        let new = c
            .claim_job("w2", ms(LATER), LEASE_MS)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(new.id, old.id);
        let finished = c
            .finish_job(&new, "w2", &Finish::of(&[asset("thumb", "r/new")]), t(3))
            .await
            .unwrap();
        assert!(finished.committed);
        let assets = c.assets("a").await.unwrap();
        assert_eq!(
            assets
                .iter()
                .map(|a| a.storage_key.as_str())
                .collect::<Vec<_>>(),
            ["r/new"]
        );
        assert_eq!(
            c.image("a").await.unwrap().unwrap().status(),
            ImageStatus::Finished
        );
    }

    pub async fn a_new_job_supersedes_the_jobs_still_waiting_for_its_image(c: &Arc<dyn Catalog>) {
        create(c, upload("a", "b"), 0).await;
        c.enqueue_render("a", t(1)).await.unwrap();
        c.enqueue_render("a", t(2)).await.unwrap();
        let jobs = c.jobs_for_image("a").await.unwrap();
        assert_eq!(
            jobs.iter().map(|j| j.status()).collect::<Vec<_>>(),
            [JobStatus::Done, JobStatus::Done, JobStatus::Queued]
        );
        assert_eq!(
            jobs[0].last_error.as_deref(),
            Some("superseded by a newer render")
        );
        let claimed = c
            .claim_job("w", ms(LATER), LEASE_MS)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, jobs[2].id);
        assert!(c
            .claim_job("w", ms(LATER), LEASE_MS)
            .await
            .unwrap()
            .is_none());
    }

    pub async fn a_failed_batch_job_leaves_the_image_and_its_files_alone(c: &Arc<dyn Catalog>) {
        create(c, upload("a", "b"), 0).await;
        render(c, "a", &[asset_fp("itunes", "r/a", "v0")]).await;
        let before = c.image("a").await.unwrap().unwrap();
        let filter = RerenderFilter::default();
        let batch = c.create_batch("batch", &filter, "v1", t(1)).await.unwrap();
        assert_eq!(c.enqueue_batch(&batch, 10, t(1)).await.unwrap(), 1);
        let job = c
            .claim_job("w", ms(LATER), LEASE_MS)
            .await
            .unwrap()
            .unwrap();
        c.fail_job(
            &job,
            "w",
            "the original is gone",
            "storage",
            &failure("the original is gone"),
            t(2),
        )
        .await
        .unwrap();

        let after = c.image("a").await.unwrap().unwrap();
        assert_eq!(after.status(), ImageStatus::Finished);
        assert_eq!(
            (after.version, after.error.as_deref(), after.feed_ready),
            (before.version, None, before.feed_ready)
        );
        assert_eq!(c.assets("a").await.unwrap().len(), 1, "still served");
        assert_eq!(
            c.batch_failures("batch", 10).await.unwrap(),
            [BatchFailure {
                image_id: "a".into(),
                reason: Some("the original is gone".into())
            }]
        );
    }

    pub async fn a_batch_whose_images_left_the_stale_set_still_completes(c: &Arc<dyn Catalog>) {
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            create(c, upload(id, "b"), i as i64).await;
            render(c, id, &[asset_fp("itunes", &format!("r/{id}"), "v0")]).await;
        }
        let filter = RerenderFilter::default();
        let batch = c.create_batch("batch", &filter, "v1", t(5)).await.unwrap();
        assert_eq!(batch.total, 3);
        assert!(!batch.queued_all);
        // Before the batch queues them: one deleted, one re-rendered by an
        // edit (and so no longer stale).
        c.hard_delete("a", None, ms(LATER), ms(LATER))
            .await
            .unwrap();
        c.enqueue_render("b", t(6)).await.unwrap();
        render(c, "b", &[asset("itunes", "r/b1")]).await;

        assert_eq!(c.enqueue_batch(&batch, 10, t(7)).await.unwrap(), 1);
        assert_eq!(c.enqueue_batch(&batch, 10, t(7)).await.unwrap(), 0);
        let sealed = c.batch("batch").await.unwrap().unwrap();
        assert!(sealed.queued_all);
        assert_eq!(sealed.total, 1, "what it queued");
        assert!(c.open_batch(&filter, "v1").await.unwrap().is_some());
        render(c, "c", &[asset("itunes", "r/c1")]).await;
        assert!(
            c.open_batch(&filter, "v1").await.unwrap().is_none(),
            "complete: the same command starts afresh"
        );
        assert_eq!(
            c.batch_counts("batch").await.unwrap(),
            BatchCounts {
                done: 1,
                ..BatchCounts::default()
            }
        );
    }

    pub async fn replace_never_takes_another_buckets_image(c: &Arc<dyn Catalog>) {
        create(c, upload("x", "mine"), 0).await;
        let theirs = NewImage {
            fields: ImageFields {
                name: Some("theirs".into()),
                ..ImageFields::default()
            },
            ..upload("x", "theirs")
        };
        for expected in [None, Some(1)] {
            let refused = c.replace_image(&theirs, expected, t(1)).await;
            assert!(
                matches!(refused, Err(CatalogError::NotFound(ref id)) if id == "x"),
                "{refused:?}"
            );
        }
        let image = c.image("x").await.unwrap().unwrap();
        assert_eq!(
            (image.bucket.as_str(), image.name.as_deref(), image.version),
            ("mine", Some("image x"), 1)
        );
        assert_eq!(c.jobs_for_image("x").await.unwrap().len(), 1);
    }

    pub async fn search_folds_case_beyond_ascii(c: &Arc<dyn Catalog>) {
        let named = |id: &str, name: &str| {
            with_fields(
                upload(id, "b"),
                ImageFields {
                    name: Some(name.into()),
                    ..ImageFields::default()
                },
            )
        };
        create(c, named("e", "Été Show"), 0).await;
        create(c, named("g", "STRASSE GRÜN"), 1).await;
        create(c, named("p", "plain"), 2).await;
        let search = |term: &str| ImageQuery {
            search: Some(term.into()),
            ..ImageQuery::new("b")
        };
        for term in ["été", "ÉTÉ", "Été", "été show"] {
            assert_eq!(list_ids(c, search(term)).await, ["e"], "{term}");
        }
        assert_eq!(list_ids(c, search("grün")).await, ["g"]);
        // Renamed: the folded name follows.
        let patch = ImagePatch {
            name: Some(Some("Ölmühle".into())),
            ..ImagePatch::default()
        };
        c.update_image("p", &patch, None, false, t(3))
            .await
            .unwrap();
        assert_eq!(list_ids(c, search("ÖLMÜHLE")).await, ["p"]);
        let (replaced, _) = c
            .replace_image(&named("e", "Ärger"), None, t(4))
            .await
            .unwrap();
        assert_eq!(replaced.name.as_deref(), Some("Ärger"));
        assert!(list_ids(c, search("été")).await.is_empty());
        assert_eq!(list_ids(c, search("ärger")).await, ["e"]);
    }

    /// The writer's side of dedup-safe deletion: a claim cancels a pending
    /// deletion, a commit ends the claim, and then the object is referred to.
    pub async fn a_claim_cancels_a_pending_deletion_and_its_commit_ends_it(c: &Arc<dyn Catalog>) {
        let now = ms(LATER);
        let key = "originals/again".to_string();
        let keys = std::slice::from_ref(&key);
        // A force delete left the original unreferenced: scheduled.
        let mut first = upload("first", "b");
        first.original = Some(facts(&key));
        create(c, first, 0).await;
        assert_eq!(
            c.hard_delete("first", None, now, now + 60_000)
                .await
                .unwrap(),
            keys
        );
        assert!(c.due_deletions(now + 59_999, 10).await.unwrap().is_empty());
        assert_eq!(c.due_deletions(now + 60_000, 10).await.unwrap(), keys);

        // An identical upload claims it before storing: the schedule goes.
        c.claim_objects("upload-1", std::slice::from_ref(&key), now)
            .await
            .unwrap();
        assert!(c.due_deletions(now + 60_000, 10).await.unwrap().is_empty());
        // Even a schedule made now leaves a claimed key alone...
        assert!(c
            .schedule_deletions(std::slice::from_ref(&key), "sweep", now, now)
            .await
            .unwrap()
            .is_empty());
        // ...and the row commits with the claim, ending it.
        let mut again = upload("again", "b");
        again.original = Some(OriginalFacts {
            claim: Some("upload-1".into()),
            ..facts(&key)
        });
        c.create_image(&again, t(LATER)).await.unwrap();
        assert!(
            c.release_claims("upload-1", now, now)
                .await
                .unwrap()
                .is_empty(),
            "ended by the commit"
        );
        assert!(
            c.schedule_deletions(std::slice::from_ref(&key), "sweep", now, now)
                .await
                .unwrap()
                .is_empty(),
            "referred to by a row"
        );
    }

    pub async fn a_commit_whose_claim_lapsed_or_was_never_taken_is_refused(c: &Arc<dyn Catalog>) {
        let now = ms(LATER);
        let key = "originals/late".to_string();
        c.claim_objects("slow", std::slice::from_ref(&key), now)
            .await
            .unwrap();
        let mut late = upload("late", "b");
        late.original = Some(OriginalFacts {
            claim: Some("slow".into()),
            ..facts(&key)
        });
        // Committed 58 minutes later: less than the margin is left.
        let at = t(LATER + 58 * 60);
        let refused = c.create_image(&late, at).await;
        assert!(
            matches!(&refused, Err(CatalogError::ClaimLost { key: k }) if *k == key),
            "{refused:?}"
        );
        assert!(refused.unwrap_err().is_unavailable(), "a 503: retry");
        assert!(
            c.image("late").await.unwrap().is_none(),
            "nothing committed"
        );
        let mut unclaimed = upload("unclaimed", "b");
        unclaimed.original = Some(OriginalFacts {
            claim: Some("nobody".into()),
            ..facts(&key)
        });
        assert!(matches!(
            c.create_image(&unclaimed, t(LATER)).await,
            Err(CatalogError::ClaimLost { .. })
        ));

        // The same for a render's files.
        create(c, upload("r", "b"), 0).await;
        let job = c.claim_job("w", now, LEASE_MS).await.unwrap().unwrap();
        let keys = strings(&["r/claimed", "r/unclaimed"]);
        c.claim_objects("render-1", &keys[..1], now).await.unwrap();
        let assets = [asset("thumb", "r/claimed"), asset("itunes", "r/unclaimed")];
        let finish = Finish {
            claim: Some(Claim {
                holder: "render-1",
                keys: &keys,
            }),
            ..Finish::of(&assets)
        };
        let refused = c.finish_job(&job, "w", &finish, t(LATER)).await;
        assert!(
            matches!(&refused, Err(CatalogError::ClaimLost { key }) if key == "r/unclaimed"),
            "{refused:?}"
        );
        assert!(c.assets("r").await.unwrap().is_empty());
        c.claim_objects("render-1", &keys, now).await.unwrap();
        c.finish_job(&job, "w", &finish, t(LATER)).await.unwrap();
        assert_eq!(c.assets("r").await.unwrap().len(), 2);
    }

    /// The deleter's side: it starts only on a due, unreferenced, unclaimed
    /// key; while it runs a claim waits; a deleter that died is taken over.
    pub async fn a_deletion_starts_only_on_what_nothing_holds_and_claims_wait_for_it(
        c: &Arc<dyn Catalog>,
    ) {
        let now = ms(LATER);
        let key = "renders/x".to_string();
        let keys = std::slice::from_ref(&key);
        assert_eq!(
            c.schedule_deletions(keys, "sweep", now, now + 10)
                .await
                .unwrap(),
            keys
        );
        assert_eq!(
            c.begin_deletion(&key, now).await.unwrap(),
            None,
            "not due yet"
        );

        // Claimed when due: postponed, not deleted.
        c.claim_objects("w1", keys, now).await.unwrap();
        c.schedule_deletions(keys, "sweep", now, now).await.unwrap();
        assert_eq!(c.begin_deletion(&key, now + 10).await.unwrap(), None);
        // The writer gave up: its release schedules the key again.
        assert_eq!(c.release_claims("w1", now, now + 20).await.unwrap(), keys);
        let lease = c
            .begin_deletion(&key, now + 20)
            .await
            .unwrap()
            .expect("due, unreferenced and unclaimed");
        assert!(lease > now + 20);
        assert_eq!(
            c.begin_deletion(&key, now + 21).await.unwrap(),
            None,
            "one deleter at a time"
        );
        assert!(c.due_deletions(now + 21, 10).await.unwrap().is_empty());

        // A claim made while it runs waits, and gives up after a while.
        let waited = std::time::Instant::now();
        let blocked = c.claim_objects("w2", keys, now + 21).await;
        assert!(
            matches!(&blocked, Err(CatalogError::DeletionInProgress { .. })),
            "{blocked:?}"
        );
        assert!(waited.elapsed() >= std::time::Duration::from_secs(25));
        // Once the deleter is done, the claim goes through at once.
        c.end_deletion(&key, lease).await.unwrap();
        c.claim_objects("w2", keys, now + 22).await.unwrap();
        c.release_claims("w2", now + 22, now + 22).await.unwrap();

        // A deleter that died: its lease lapses, and both another deleter
        // and a claim may take over.
        let lease = c.begin_deletion(&key, now + 22).await.unwrap().unwrap();
        assert_eq!(c.due_deletions(lease + 1, 10).await.unwrap(), keys);
        c.claim_objects("w3", keys, lease + 1).await.unwrap();
        assert!(c.due_deletions(lease + 1, 10).await.unwrap().is_empty());
        c.release_claims("w3", lease + 1, lease + 1).await.unwrap();

        // Referred to again by then: the schedule is dropped.
        let mut image = upload("again", "b");
        image.original = Some(facts(&key));
        create(c, image, 0).await;
        assert_eq!(c.begin_deletion(&key, lease + 1).await.unwrap(), None);
        assert!(c.due_deletions(i64::MAX, 10).await.unwrap().is_empty());
    }

    pub async fn a_claim_of_several_keys_cancels_their_schedules_and_waits_for_a_running_deletion(
        c: &Arc<dyn Catalog>,
    ) {
        let now = ms(LATER);
        let keys = strings(&["renders/m1", "renders/m2", "renders/m3"]);
        assert_eq!(
            sorted(
                c.schedule_deletions(&keys, "sweep", now, now)
                    .await
                    .unwrap()
            ),
            keys
        );
        // The middle key's deletion is running when a render claims all three.
        let lease = c
            .begin_deletion(&keys[1], now)
            .await
            .unwrap()
            .expect("due, unreferenced and unclaimed");
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let deleter = {
            let (c, key, ended) = (c.clone(), keys[1].clone(), ended.clone());
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                ended.store(true, std::sync::atomic::Ordering::SeqCst);
                c.end_deletion(&key, lease).await.unwrap();
            })
        };
        c.claim_objects("render", &keys, now + 1).await.unwrap();
        assert!(
            ended.load(std::sync::atomic::Ordering::SeqCst),
            "the claim went through while a deletion of one of its keys ran"
        );
        deleter.await.unwrap();
        // The other two schedules were cancelled, and all three are held.
        assert!(c.due_deletions(i64::MAX, 10).await.unwrap().is_empty());
        assert!(c
            .schedule_deletions(&keys, "sweep", now + 2, now + 2)
            .await
            .unwrap()
            .is_empty());
        // Given up: every key is scheduled again.
        assert_eq!(
            sorted(c.release_claims("render", now + 3, now + 3).await.unwrap()),
            keys
        );
    }

    pub async fn the_iiif_cache_keeps_the_most_recently_used_within_its_budget(
        c: &Arc<dyn Catalog>,
    ) {
        let shared = "ab".repeat(32); // the sha256 of every `upload` original
        let other = "ef".repeat(32);
        assert_eq!(c.iiif_cache_bytes().await.unwrap(), 0);
        assert!(c.evict_iiif_cache(0).await.unwrap().is_empty());

        // Three renders of 100 bytes, used at 1, 2 and 3 s.
        for (i, key) in ["iiif/a", "iiif/b", "iiif/c"].into_iter().enumerate() {
            let at = ms(i as i64 + 1);
            assert!(c
                .record_iiif_cache_use(key, &shared, 100, at, 0)
                .await
                .unwrap());
        }
        assert_eq!(c.iiif_cache_bytes().await.unwrap(), 300);

        // A hit within the interval writes nothing; after it, it does.
        assert!(!c
            .record_iiif_cache_use("iiif/a", &shared, 100, ms(30), 60_000)
            .await
            .unwrap());
        assert!(c
            .record_iiif_cache_use("iiif/a", &shared, 100, ms(70), 60_000)
            .await
            .unwrap());
        // Recording again is an update, not a second row.
        assert_eq!(c.iiif_cache_bytes().await.unwrap(), 300);

        // Within budget nothing goes; past it the least recently used
        // (b, then c; a was used last) go until the rest fit.
        assert!(c.evict_iiif_cache(300).await.unwrap().is_empty());
        assert_eq!(c.evict_iiif_cache(250).await.unwrap(), ["iiif/b"]);
        assert_eq!(c.iiif_cache_bytes().await.unwrap(), 200);
        c.record_iiif_cache_use("iiif/big", &other, 150, ms(80), 0)
            .await
            .unwrap();
        assert_eq!(
            sorted(c.evict_iiif_cache(200).await.unwrap()),
            ["iiif/a", "iiif/c"],
            "by recency only: the newest 150 bytes stay, nothing older fits beside them"
        );
        assert_eq!(c.iiif_cache_bytes().await.unwrap(), 150);
        // One render larger than the whole budget does not stay either.
        assert_eq!(c.evict_iiif_cache(100).await.unwrap(), ["iiif/big"]);
        assert_eq!(c.iiif_cache_bytes().await.unwrap(), 0);

        // Renders of an original go with the last image that has it.
        create(c, upload("x", "b"), 0).await;
        create(c, upload("y", "b"), 1).await;
        for (key, sha) in [
            ("iiif/x1", &shared),
            ("iiif/x2", &shared),
            ("iiif/o", &other),
        ] {
            c.record_iiif_cache_use(key, sha, 10, ms(90), 0)
                .await
                .unwrap();
        }
        c.hard_delete("x", None, ms(LATER), ms(LATER))
            .await
            .unwrap();
        assert!(
            c.forget_iiif_cache_of(&shared).await.unwrap().is_empty(),
            "y still has that original"
        );
        c.hard_delete("y", None, ms(LATER), ms(LATER))
            .await
            .unwrap();
        assert_eq!(
            sorted(c.forget_iiif_cache_of(&shared).await.unwrap()),
            ["iiif/x1", "iiif/x2"]
        );
        assert_eq!(c.iiif_cache_bytes().await.unwrap(), 10, "iiif/o stays");
    }
}
