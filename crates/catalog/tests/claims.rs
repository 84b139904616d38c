//! Who may claim what: a batch job only a worker with the batch's settings,
//! an ingest job only a worker with a free fetch slot; a batch is complete
//! only when its images are rendered with its settings. And how those
//! meet the claims on stored objects: a hand-over records its original
//! under its claim, an outrun batch job's files are scheduled and claimed
//! back. On SQLite, and on
//! PostgreSQL when `EASEL_TEST_DATABASE_URL` names a server (else SKIPPED,
//! or a failure when `CI=true`).

use std::sync::Arc;

use chrono::Utc;
use easel_catalog::{
    now_ms, Batch, Catalog, CatalogError, Claim, ClaimFilter, Finish, ImageFields, ImagePatch,
    JobKind, JobStatus, NewAsset, NewImage, OriginalFacts, RerenderFilter, CLAIM_TTL_MS,
};
use easel_render::Crop;

#[macro_use]
mod common;

use common::{asset_fp, Db};

const LEASE_MS: i64 = 60_000;
/// Two deployments' settings: the running `serve` (88) and a re-render (80).
const AT_88: &str = "fp-q88";
const AT_80: &str = "fp-q80";

fn facts(seed: u8) -> OriginalFacts {
    OriginalFacts {
        width: 800,
        height: 800,
        size: 1000,
        mimetype: "image/jpeg".into(),
        sha256: format!("{seed:02x}").repeat(32),
        original_key: format!("originals/{seed}"),
        claim: None,
    }
}

fn assets(fingerprint: &str) -> Vec<NewAsset> {
    ["original", "regular", "thumb"]
        .into_iter()
        .map(|style| {
            asset_fp(
                style,
                &format!("renders/{style}-{fingerprint}"),
                fingerprint,
            )
        })
        .collect()
}

fn worker(fingerprint: &str, ingest: bool) -> ClaimFilter<'_> {
    ClaimFilter {
        fingerprint,
        ingest,
    }
}

/// Claims for a worker with `fingerprint` and finishes with files rendered
/// with it; returns the job's id.
async fn render(c: &Arc<dyn Catalog>, fingerprint: &str) -> i64 {
    let owner = format!("worker-{fingerprint}");
    let job = c
        .claim_job_for(
            &owner,
            Utc::now().timestamp_millis(),
            LEASE_MS,
            &worker(fingerprint, true),
        )
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("a job for {fingerprint}"));
    let done = c
        .finish_job(&job, &owner, &Finish::of(&assets(fingerprint)), Utc::now())
        .await
        .unwrap();
    assert!(done.committed);
    job.id
}

async fn nothing_for(c: &Arc<dyn Catalog>, fingerprint: &str) {
    let job = c
        .claim_job_for(
            "idle",
            Utc::now().timestamp_millis(),
            LEASE_MS,
            &worker(fingerprint, true),
        )
        .await
        .unwrap();
    assert!(job.is_none(), "{fingerprint} claimed {job:?}");
}

/// Image `cover`, rendered by serve's worker (at 88).
async fn cover_rendered_at_88(c: &Arc<dyn Catalog>) {
    let image = NewImage {
        id: "cover".into(),
        bucket: "default".into(),
        original: Some(facts(1)),
        ..NewImage::default()
    };
    c.create_image(&image, Utc::now()).await.unwrap();
    render(c, AT_88).await;
}

/// `easel rerender --quality 80` over `filter`: batch `batch-1`.
async fn batch_at_80(c: &Arc<dyn Catalog>, filter: &RerenderFilter) -> Batch {
    c.create_batch("batch-1", filter, AT_80, Utc::now())
        .await
        .unwrap()
}

/// An edit of `cover` that re-renders it: a new crop.
async fn recrop_cover(c: &Arc<dyn Catalog>) {
    let crop = ImagePatch {
        crop: Some(Some(Crop::new(0, 0, 400, 400).unwrap())),
        ..ImagePatch::default()
    };
    c.update_image("cover", &crop, None, true, Utc::now())
        .await
        .unwrap();
}

both! {
    cases: [
        batch_jobs_carry_their_settings_and_complete_only_when_fresh,
        ingest_jobs_wait_for_a_fetch_slot_and_come_back_as_renders,
        an_origin_fetch_hands_its_original_over_under_its_claim,
        a_batch_job_outrun_by_an_edit_commits_nothing_and_its_files_come_back_claimed,
    ],
    sqlite_only: {},
    postgres_only: {},
}

mod cases {
    use super::*;

    pub async fn batch_jobs_carry_their_settings_and_complete_only_when_fresh(
        c: &Arc<dyn Catalog>,
    ) {
        cover_rendered_at_88(c).await;

        // `easel rerender --quality 80` while serve (88) runs.
        let filter = RerenderFilter::default();
        assert_eq!(c.count_stale(&filter, AT_80).await.unwrap(), 1);
        let batch = batch_at_80(c, &filter).await;
        assert_eq!(c.enqueue_batch(&batch, 100, Utc::now()).await.unwrap(), 1);
        let job = &c.jobs_for_image("cover").await.unwrap()[1];
        assert_eq!(job.fingerprint.as_deref(), Some(AT_80));
        nothing_for(c, AT_88).await;
        let batch_job = render(c, AT_80).await;
        assert_eq!(c.enqueue_batch(&batch, 100, Utc::now()).await.unwrap(), 0);
        assert_eq!(c.batch_stale("batch-1").await.unwrap(), 0);

        // An edit, rendered by serve's worker at 88: the batch's image is
        // stale again, so the batch is not complete, and its job runs again
        // (only for a worker at 80).
        recrop_cover(c).await;
        assert_eq!(
            c.batch_stale("batch-1").await.unwrap(),
            1,
            "being re-rendered"
        );
        render(c, AT_88).await;
        assert_eq!(c.batch_stale("batch-1").await.unwrap(), 1, "rendered at 88");
        assert!(
            c.open_batch(&filter, AT_80).await.unwrap().is_some(),
            "an incomplete batch is resumed, not started again"
        );
        assert_eq!(c.enqueue_batch(&batch, 100, Utc::now()).await.unwrap(), 1);
        let counts = c.batch_counts("batch-1").await.unwrap();
        assert_eq!((counts.queued, counts.done), (1, 0));
        nothing_for(c, AT_88).await;
        assert_eq!(render(c, AT_80).await, batch_job, "the same job ran again");
        assert_eq!(c.batch_stale("batch-1").await.unwrap(), 0);
        assert_eq!(c.enqueue_batch(&batch, 100, Utc::now()).await.unwrap(), 0);
        let counts = c.batch_counts("batch-1").await.unwrap();
        assert_eq!((counts.queued, counts.running, counts.done), (0, 0, 1));
        assert!(c.open_batch(&filter, AT_80).await.unwrap().is_none());
    }

    pub async fn ingest_jobs_wait_for_a_fetch_slot_and_come_back_as_renders(c: &Arc<dyn Catalog>) {
        let image = NewImage {
            id: "from-origin".into(),
            bucket: "default".into(),
            fields: ImageFields::default(),
            original: None,
            origin_url: Some("https://example.com/cover.jpg".into()),
            initial_origin: None,
        };
        c.create_image(&image, Utc::now()).await.unwrap();
        let now = Utc::now().timestamp_millis();
        let busy = c
            .claim_job_for("w", now, LEASE_MS, &worker(AT_88, false))
            .await
            .unwrap();
        assert!(busy.is_none(), "no fetch slot, no ingest job: {busy:?}");
        let job = c
            .claim_job_for("w", now, LEASE_MS, &worker(AT_88, true))
            .await
            .unwrap()
            .expect("the ingest job");
        assert_eq!(job.kind(), JobKind::Ingest);

        assert!(c
            .hand_over_fetched(&job, "w", &facts(7), Utc::now())
            .await
            .unwrap());
        let stored = c.image("from-origin").await.unwrap().unwrap();
        assert_eq!(stored.original_key.as_deref(), Some("originals/7"));
        let now = Utc::now().timestamp_millis();
        let render = c
            .claim_job_for("w", now, LEASE_MS, &worker(AT_88, false))
            .await
            .unwrap()
            .expect("the same job, now a render");
        assert_eq!(
            (render.id, render.kind(), render.attempts),
            (job.id, JobKind::Render, 1)
        );
        assert_eq!(render.status(), JobStatus::Running);

        // A render asked for an image whose origin never arrived fetches first.
        let other = NewImage {
            id: "never-fetched".into(),
            bucket: "default".into(),
            origin_url: Some("https://example.com/other.jpg".into()),
            ..NewImage::default()
        };
        c.create_image(&other, Utc::now()).await.unwrap();
        c.enqueue_render("never-fetched", Utc::now()).await.unwrap();
        let jobs = c.jobs_for_image("never-fetched").await.unwrap();
        assert_eq!(jobs.last().unwrap().kind(), JobKind::Ingest);
    }

    /// Claims the keys of files rendered with `fingerprint` for `holder`, as a
    /// worker does before it stores them: `(files, their keys)`.
    async fn claimed_files(
        c: &Arc<dyn Catalog>,
        fingerprint: &str,
        holder: &str,
    ) -> (Vec<NewAsset>, Vec<String>) {
        let files = assets(fingerprint);
        let keys: Vec<String> = files.iter().map(|a| a.storage_key.clone()).collect();
        c.claim_objects(holder, &keys, now_ms()).await.unwrap();
        (files, keys)
    }

    /// A finish as the worker hands it: the files under their claim, anything
    /// left unreferenced due at once.
    fn finish_under<'a>(files: &'a [NewAsset], holder: &'a str, keys: &'a [String]) -> Finish<'a> {
        Finish {
            claim: Some(Claim { holder, keys }),
            delete_at_ms: now_ms(),
            ..Finish::of(files)
        }
    }

    /// Whether the reaper may delete `key` now (a deletion is due and nothing
    /// refers to or claims it); a deletion begun is put back.
    async fn deletable(c: &Arc<dyn Catalog>, key: &str) -> bool {
        match c.begin_deletion(key, now_ms() + 1).await.unwrap() {
            Some(lease) => {
                c.abandon_deletion(key, lease).await.unwrap();
                true
            }
            None => false,
        }
    }

    /// Issue 11's fetch slots hand an origin's original over to the render
    /// loops; issue 12's claims keep it from deletion while it is stored. The
    /// hand-over is the write that records the original, so it must check the
    /// claim is still live and end it: a lapsed claim records nothing, and a
    /// claim left behind would keep the original from ever being deleted.
    pub async fn an_origin_fetch_hands_its_original_over_under_its_claim(c: &Arc<dyn Catalog>) {
        let ingest = |id: &str| NewImage {
            id: id.into(),
            bucket: "default".into(),
            origin_url: Some(format!("https://example.com/{id}.jpg")),
            ..NewImage::default()
        };
        let fetched = |seed: u8, holder: &str| OriginalFacts {
            claim: Some(holder.into()),
            ..facts(seed)
        };
        let claim_ingest = || async {
            c.claim_job_for("w", now_ms(), LEASE_MS, &worker(AT_88, true))
                .await
                .unwrap()
                .expect("an ingest job")
        };

        // Stored under a live claim: recorded, and the claim ends with it.
        c.create_image(&ingest("live"), Utc::now()).await.unwrap();
        let job = claim_ingest().await;
        let key = facts(7).original_key;
        c.claim_objects("fetch-live", std::slice::from_ref(&key), now_ms())
            .await
            .unwrap();
        assert!(c
            .hand_over_fetched(&job, "w", &fetched(7, "fetch-live"), Utc::now())
            .await
            .unwrap());
        assert_eq!(
            c.image("live").await.unwrap().unwrap().original_key,
            Some(key.clone())
        );
        // Nothing but the row holds the original now: a force delete lets the
        // reaper have it.
        let scheduled = c
            .hard_delete("live", None, now_ms(), now_ms())
            .await
            .unwrap();
        assert_eq!(scheduled, vec![key.clone()], "the claim was left behind");
        assert!(deletable(c, &key).await);

        // Stored so long ago that its claim lapsed (a deleter may have judged
        // the object unclaimed): refused, nothing recorded, the job still ours.
        c.create_image(&ingest("slow"), Utc::now()).await.unwrap();
        let job = claim_ingest().await;
        let key = facts(8).original_key;
        c.claim_objects(
            "fetch-slow",
            std::slice::from_ref(&key),
            now_ms() - CLAIM_TTL_MS,
        )
        .await
        .unwrap();
        let lost = c
            .hand_over_fetched(&job, "w", &fetched(8, "fetch-slow"), Utc::now())
            .await;
        assert!(
            matches!(lost, Err(CatalogError::ClaimLost { .. })),
            "{lost:?}"
        );
        assert_eq!(c.image("slow").await.unwrap().unwrap().original_key, None);
        let jobs = c.jobs_for_image("slow").await.unwrap();
        assert_eq!(
            (jobs[0].kind(), jobs[0].status()),
            (JobKind::Ingest, JobStatus::Running)
        );

        // The image moved on while it was fetched: the hand-over records
        // nothing and leaves the claim to its holder, whose release lets the
        // original go (nothing refers to it).
        c.create_image(&ingest("moved"), Utc::now()).await.unwrap();
        let job = claim_ingest().await;
        let key = facts(9).original_key;
        c.claim_objects("fetch-moved", std::slice::from_ref(&key), now_ms())
            .await
            .unwrap();
        c.enqueue_render("moved", Utc::now()).await.unwrap();
        assert!(!c
            .hand_over_fetched(&job, "w", &fetched(9, "fetch-moved"), Utc::now())
            .await
            .unwrap());
        assert!(!deletable(c, &key).await, "claimed until released");
        assert_eq!(
            c.release_claims("fetch-moved", now_ms(), now_ms())
                .await
                .unwrap(),
            vec![key.clone()]
        );
        assert!(deletable(c, &key).await);
    }

    /// Issue 11's batch job, claimed by a worker with the batch's settings,
    /// outrun by an edit (issue 12's claims and scheduled deletions): it
    /// commits nothing and its files are scheduled for deletion; the edit
    /// renders with other settings, so the batch runs the job again, and that
    /// render, which makes the very same files, claims them back from their
    /// pending deletion before it commits them.
    pub async fn a_batch_job_outrun_by_an_edit_commits_nothing_and_its_files_come_back_claimed(
        c: &Arc<dyn Catalog>,
    ) {
        cover_rendered_at_88(c).await;
        let filter = RerenderFilter::default();
        let batch = batch_at_80(c, &filter).await;
        assert_eq!(c.enqueue_batch(&batch, 100, Utc::now()).await.unwrap(), 1);
        nothing_for(c, AT_88).await;
        let job = c
            .claim_job_for("w80", now_ms(), LEASE_MS, &worker(AT_80, false))
            .await
            .unwrap()
            .expect("the batch job, for a worker at 80");
        assert_eq!(job.fingerprint.as_deref(), Some(AT_80));
        let (files, keys) = claimed_files(c, AT_80, "render-80").await;

        // The edit lands while the batch job renders.
        recrop_cover(c).await;
        let done = c
            .finish_job(
                &job,
                "w80",
                &finish_under(&files, "render-80", &keys),
                Utc::now(),
            )
            .await
            .unwrap();
        assert!(!done.committed);
        let mut orphans = done.orphans.clone();
        orphans.sort();
        let mut expected = keys.clone();
        expected.sort();
        assert_eq!(orphans, expected, "every file of the outrun render");
        let served: Vec<String> = c
            .assets("cover")
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.settings_fingerprint)
            .collect();
        assert!(served.iter().all(|f| f == AT_88), "{served:?}");
        for key in &keys {
            assert!(deletable(c, key).await, "{key} is due");
        }

        // The edit's job carries no fingerprint: serve's worker at 88 renders it.
        render(c, AT_88).await;
        assert_eq!(c.batch_stale("batch-1").await.unwrap(), 1);
        assert_eq!(c.enqueue_batch(&batch, 100, Utc::now()).await.unwrap(), 1);
        nothing_for(c, AT_88).await;
        let again = c
            .claim_job_for("w80", now_ms(), LEASE_MS, &worker(AT_80, false))
            .await
            .unwrap()
            .expect("the batch job again");
        assert_eq!(again.id, job.id);
        let (files, keys) = claimed_files(c, AT_80, "render-80-again").await;
        for key in &keys {
            assert!(!deletable(c, key).await, "{key} is claimed again");
        }
        let done = c
            .finish_job(
                &again,
                "w80",
                &finish_under(&files, "render-80-again", &keys),
                Utc::now(),
            )
            .await
            .unwrap();
        assert!(done.committed);
        assert_eq!(c.batch_stale("batch-1").await.unwrap(), 0);
        for key in &keys {
            assert!(!deletable(c, key).await, "{key} is an asset");
        }
        let due = c.due_deletions(now_ms() + 1, 100).await.unwrap();
        assert!(
            keys.iter().all(|key| !due.contains(key)),
            "a committed file is still due for deletion: {due:?}"
        );
    }
}
