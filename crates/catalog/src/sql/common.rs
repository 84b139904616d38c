//! The transaction steps several ports share: conditional-write
//! diagnosis, queueing a job, tags, object locks and claims, closing a job,
//! and the filters of image lists and re-render candidates.
//!
//! Compiled once per backend (see the end of `sqlite.rs` and `postgres.rs`).

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::{Backend, Db};
use crate::sql::{distinct_sorted, fold_name, like_contains, tags_json, IMAGE_COLUMNS, REFERENCES};
use crate::{
    CatalogError, Claim, Image, ImageQuery, Job, NewImage, OriginalFacts, RerenderFilter, Trashed,
    CLAIM_COMMIT_MARGIN_MS,
};

pub(super) type Tx<'c> = sqlx::Transaction<'c, Db>;

/// After a conditional write touched no row: was the image missing
/// (or trashed, for writes only live images take: `live_only`; or
/// another bucket's, for writes that name the bucket), or was the
/// caller's version stale?
pub(super) async fn explain_miss(
    tx: &mut Tx<'_>,
    id: &str,
    live_only: bool,
    bucket: Option<&str>,
) -> CatalogError {
    /// The row's version, when it was trashed, and its bucket.
    type Found = (i64, Option<DateTime<Utc>>, String);
    let found: Result<Option<Found>, sqlx::Error> =
        sqlx::query_as("SELECT version, deleted_at, bucket FROM images WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await;
    match found {
        Ok(Some((_, Some(_), _))) if live_only => CatalogError::NotFound(id.to_string()),
        Ok(Some((_, _, owner))) if bucket.is_some_and(|b| b != owner) => {
            CatalogError::NotFound(id.to_string())
        }
        Ok(Some((current, _, _))) => CatalogError::VersionMismatch {
            id: id.to_string(),
            current,
        },
        Ok(None) => CatalogError::NotFound(id.to_string()),
        Err(e) => e.into(),
    }
}

pub(super) async fn insert_job(
    tx: &mut Tx<'_>,
    image_id: &str,
    kind: &str,
    batch_id: Option<&str>,
    priority: i64,
    fingerprint: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), CatalogError> {
    // The new job renders the image as it is now, so jobs still
    // waiting would only render it again (or render what it was).
    // A running one is left to finish: `finish_job` sees this newer
    // job and does not commit its files over the newer state.
    sqlx::query(
        "UPDATE jobs SET status = 'done', last_error = 'superseded by a newer render', \
         updated_at = $2 WHERE image_id = $1 AND status = 'queued'",
    )
    .bind(image_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    // A render of an image whose origin was never fetched must fetch
    // it first: an ingest job, for the fetch slots.
    sqlx::query(
        "INSERT INTO jobs (image_id, kind, batch_id, priority, status, attempts, run_after, \
         created_at, updated_at, fingerprint) \
         SELECT $1, CASE WHEN $2 = 'render' AND original_key IS NULL AND origin_url IS NOT NULL \
         THEN 'ingest' ELSE $2 END, $3, $4, 'queued', 0, $5, $6, $6, $7 FROM images WHERE id = $1",
    )
    .bind(image_id)
    .bind(kind)
    .bind(batch_id)
    .bind(priority)
    .bind(now.timestamp_millis())
    .bind(now)
    .bind(fingerprint)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) async fn write_tags(
    tx: &mut Tx<'_>,
    image_id: &str,
    tags: &[String],
) -> Result<(), CatalogError> {
    sqlx::query("DELETE FROM image_tags WHERE image_id = $1")
        .bind(image_id)
        .execute(&mut **tx)
        .await?;
    for tag in tags {
        sqlx::query(
            "INSERT INTO image_tags (image_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(image_id)
        .bind(tag)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Orders this transaction with every other that claims, schedules
/// or starts deleting `key`, until it ends. A claim must see a
/// schedule made before it, and a schedule or a deletion must see a
/// claim made before it, even when neither has a row to lock yet.
/// SQLite needs nothing: a write transaction (all of these start
/// with a write) holds the database's one write lock.
pub(super) async fn lock_object(tx: &mut Tx<'_>, key: &str) -> Result<(), CatalogError> {
    if !Backend::OBJECT_LOCK.is_empty() {
        sqlx::query(Backend::OBJECT_LOCK)
            .bind(key)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Whether rows refer to `key` (`.0`) or live claims hold it (`.1`).
pub(super) async fn references(
    tx: &mut Tx<'_>,
    key: &str,
    now_ms: i64,
) -> Result<(i64, i64), CatalogError> {
    let counts: (i64, i64) = sqlx::query_as(REFERENCES)
        .bind(key)
        .bind(now_ms)
        .fetch_one(&mut **tx)
        .await?;
    Ok(counts)
}

/// Schedules, at `due_at`, the deletion of those of `keys` nothing
/// refers to or claims; returns them. An earlier schedule of a key
/// keeps the earlier time; a running deletion is left alone.
pub(super) async fn schedule(
    tx: &mut Tx<'_>,
    keys: &[String],
    reason: &str,
    now_ms: i64,
    due_at: i64,
) -> Result<Vec<String>, CatalogError> {
    let mut scheduled = Vec::new();
    for key in distinct_sorted(keys) {
        lock_object(tx, key).await?;
        let (rows, claims) = references(tx, key, now_ms).await?;
        if rows + claims > 0 {
            continue;
        }
        sqlx::query(
            "INSERT INTO object_deletions (storage_key, due_at, reason) VALUES ($1, $2, $3) \
             ON CONFLICT (storage_key) DO UPDATE SET \
             due_at = CASE WHEN excluded.due_at < object_deletions.due_at \
                 THEN excluded.due_at ELSE object_deletions.due_at END, \
             reason = excluded.reason \
             WHERE object_deletions.deleting_until IS NULL",
        )
        .bind(key)
        .bind(due_at)
        .bind(reason)
        .execute(&mut **tx)
        .await?;
        scheduled.push(key.to_string());
    }
    Ok(scheduled)
}

/// Records on the image the original an ingest fetched (its facts and
/// key; the origin is no longer the image's first), and ends the claim on
/// it, in the caller's transaction.
pub(super) async fn record_original(
    tx: &mut Tx<'_>,
    image_id: &str,
    facts: &OriginalFacts,
    now: DateTime<Utc>,
) -> Result<(), CatalogError> {
    sqlx::query(
        "UPDATE images SET width = $2, height = $3, size = $4, mimetype = $5, sha256 = $6, \
             original_key = $7, initial_origin = NULL, version = version + 1, updated_at = $8 \
             WHERE id = $1",
    )
    .bind(image_id)
    .bind(facts.width)
    .bind(facts.height)
    .bind(facts.size)
    .bind(&facts.mimetype)
    .bind(&facts.sha256)
    .bind(&facts.original_key)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    settle_original_claim(tx, Some(facts), now).await
}

/// Ends the claim on an original in the transaction that records it.
pub(super) async fn settle_original_claim(
    tx: &mut Tx<'_>,
    facts: Option<&OriginalFacts>,
    now: DateTime<Utc>,
) -> Result<(), CatalogError> {
    let Some((facts, holder)) = facts.and_then(|f| Some((f, f.claim.as_deref()?))) else {
        return Ok(());
    };
    let keys = [facts.original_key.clone()];
    settle_claim(
        tx,
        Some(Claim {
            holder,
            keys: &keys,
        }),
        now.timestamp_millis(),
    )
    .await
}

/// Ends `claim` in the transaction that commits the rows relying on
/// it: every key must still be claimed with a margin to spare, or
/// a deleter may have judged the claim lapsed (the caller's
/// transaction is then dropped, and the write is retried).
pub(super) async fn settle_claim(
    tx: &mut Tx<'_>,
    claim: Option<Claim<'_>>,
    now_ms: i64,
) -> Result<(), CatalogError> {
    let Some(claim) = claim else {
        return Ok(());
    };
    let held: Vec<(String, i64)> = sqlx::query_as(
        "DELETE FROM object_claims WHERE holder = $1 RETURNING storage_key, expires_at",
    )
    .bind(claim.holder)
    .fetch_all(&mut **tx)
    .await?;
    for key in claim.keys {
        let live = held
            .iter()
            .any(|(k, until)| k == key && *until > now_ms + CLAIM_COMMIT_MARGIN_MS);
        if !live {
            return Err(CatalogError::ClaimLost { key: key.clone() });
        }
    }
    Ok(())
}

/// Ends a job held by `owner`; the first write of its transaction,
/// so the lease check and the write lock come together.
pub(super) async fn close_job(
    tx: &mut Tx<'_>,
    job: &Job,
    owner: &str,
    status: &str,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), CatalogError> {
    let done = sqlx::query(
        "UPDATE jobs SET status = $3, lease_owner = NULL, lease_until = NULL, \
         last_error = COALESCE($4, last_error), updated_at = $5 \
         WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
    )
    .bind(job.id)
    .bind(owner)
    .bind(status)
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    lease_held(done.rows_affected(), job, owner)
}

/// Whether a job queued after `job` will render its image again.
pub(super) async fn newer_job_waits(tx: &mut Tx<'_>, job: &Job) -> Result<bool, CatalogError> {
    let (newer,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM jobs WHERE image_id = $1 AND id > $2 \
         AND status IN ('queued', 'running')",
    )
    .bind(&job.image_id)
    .bind(job.id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(newer > 0)
}

pub(super) fn lease_held(rows: u64, job: &Job, owner: &str) -> Result<(), CatalogError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(CatalogError::LeaseLost {
            job_id: job.id,
            owner: owner.to_string(),
        })
    }
}

/// The WHERE clause shared by list and count.
pub(super) fn push_filters<'a>(qb: &mut QueryBuilder<'a, Db>, query: &'a ImageQuery) {
    qb.push(" WHERE bucket = ").push_bind(&query.bucket);
    match query.trashed {
        Trashed::Without => qb.push(" AND deleted_at IS NULL"),
        Trashed::Only => qb.push(" AND deleted_at IS NOT NULL"),
        Trashed::With => qb,
    };
    if !query.ids.is_empty() {
        qb.push(" AND id IN (");
        let mut ids = qb.separated(", ");
        for id in &query.ids {
            ids.push_bind(id);
        }
        qb.push(")");
    }
    if let Some(facet) = &query.facet {
        qb.push(" AND facet = ").push_bind(facet);
    }
    if let Some(tag) = &query.tag {
        // IN, not a correlated EXISTS: the planner can start from
        // image_tags_tag instead of probing every row of the bucket.
        qb.push(" AND id IN (SELECT image_id FROM image_tags WHERE tag = ")
            .push_bind(tag)
            .push(")");
    }
    if let Some(status) = query.status {
        qb.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(ready) = query.feed_ready {
        // As `Image::feed_readiness` says it: ready as rendered, and
        // public under the limit in force (`Image::public_limit`:
        // the image's own, else the bucket's; negative is open).
        let limit = "COALESCE(images.max_unauthorised, (SELECT b.public_max_side FROM buckets b \
             WHERE b.name = images.bucket), -1)";
        qb.push(format!(
            " AND (CASE WHEN feed_ready AND NOT ({limit} >= 0 \
             AND (images.feed_side IS NULL OR images.feed_side > {limit})) \
             THEN TRUE ELSE FALSE END) = "
        ))
        .push_bind(ready);
    }
    if let Some(batch) = &query.batch {
        qb.push(" AND batch_id = ").push_bind(batch);
    }
    if let Some(search) = &query.search {
        qb.push(" AND COALESCE(name_folded, '') LIKE ")
            .push_bind(like_contains(search))
            .push(" ESCAPE '\\'");
    }
}

/// The WHERE clause of a re-render's candidates: live images with an
/// original and no job waiting or running (that job renders with the
/// current settings anyway), and then
/// - with `all`: every one that rendered or failed;
/// - else: finished ones whose files were rendered with other
///   settings (all of an image's assets share one fingerprint, as one
///   job writes them). Images in `error` are retried only by `all`:
///   the same input fails the same way.
///
/// `style` narrows to images that have that style or, for a style
/// that exists only for big crops, whose crop (the `regular` file)
/// is big enough: a small image never gets `square-3000`, so it is
/// not stale for lacking one.
pub(super) fn push_stale<'a>(
    qb: &mut QueryBuilder<'a, Db>,
    filter: &'a RerenderFilter,
    fingerprint: &'a str,
) {
    qb.push(
        " WHERE i.deleted_at IS NULL AND i.original_key IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.image_id = i.id \
         AND o.status IN ('queued', 'running'))",
    );
    if let Some(bucket) = &filter.bucket {
        qb.push(" AND i.bucket = ").push_bind(bucket);
    }
    if let Some(since) = filter.since {
        qb.push(" AND i.created_at >= ").push_bind(since);
    }
    if filter.all {
        qb.push(" AND i.status IN ('finished', 'error')");
        return;
    }
    qb.push(
        " AND i.status = 'finished' AND EXISTS (SELECT 1 FROM media_assets a \
         WHERE a.image_id = i.id AND a.settings_fingerprint <> ",
    )
    .push_bind(fingerprint)
    .push(")");
    if let (Some(style), Some(side)) = (&filter.style, filter.style_min_crop_side) {
        qb.push(
            " AND (EXISTS (SELECT 1 FROM media_assets s WHERE s.image_id = i.id AND s.style = ",
        )
        .push_bind(style)
        .push(
            ") OR EXISTS (SELECT 1 FROM media_assets r WHERE r.image_id = i.id \
                   AND r.style = 'regular' AND r.width >= ",
        )
        .push_bind(side)
        .push(" AND r.height >= ")
        .push_bind(side)
        .push("))");
    }
}

/// Inserts the row, its tags and first job; `None` when the id is
/// taken.
pub(super) async fn insert_image(
    tx: &mut Tx<'_>,
    image: &NewImage,
    now: DateTime<Utc>,
) -> Result<Option<Image>, CatalogError> {
    let f = &image.fields;
    let facts = image.original.as_ref();
    let row: Option<Image> = sqlx::query_as(&format!(
        "INSERT INTO images (id, bucket, name, facet, crop, tags, string1, string2, string3, \
         number1, number2, number3, width, height, size, mimetype, sha256, original_key, \
         origin_url, status, created_at, updated_at, name_folded, max_unauthorised, roles, \
         initial_origin) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, 'ingesting', $20, $20, $21, $22, $23, $24) ON CONFLICT (id) DO NOTHING RETURNING {IMAGE_COLUMNS}"
    ))
    .bind(&image.id)
    .bind(&image.bucket)
    .bind(&f.name)
    .bind(&f.facet)
    .bind(&f.crop)
    .bind(tags_json(&f.tags))
    .bind(&f.string1)
    .bind(&f.string2)
    .bind(&f.string3)
    .bind(f.number1)
    .bind(f.number2)
    .bind(f.number3)
    .bind(facts.map(|o| o.width))
    .bind(facts.map(|o| o.height))
    .bind(facts.map(|o| o.size))
    .bind(facts.map(|o| o.mimetype.clone()))
    .bind(facts.map(|o| o.sha256.clone()))
    .bind(facts.map(|o| o.original_key.clone()))
    .bind(&image.origin_url)
    .bind(now)
    .bind(f.name.as_deref().map(fold_name))
    .bind(f.max_unauthorised)
    .bind(tags_json(&f.roles))
    .bind(&image.initial_origin)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    write_tags(tx, &image.id, &f.tags).await?;
    let kind = if facts.is_some() { "render" } else { "ingest" };
    insert_job(tx, &image.id, kind, None, 0, None, now).await?;
    Ok(Some(row))
}
