//! The transaction steps several ports share: queueing a job (which
//! supersedes the ones waiting), object locks, deletion schedules and
//! claims, and recording an original.
//!
//! Compiled once per backend (see the end of `sqlite.rs` and `postgres.rs`).

use chrono::{DateTime, Utc};

use super::{Backend, Db};
use crate::sql::{distinct_sorted, REFERENCES};
use crate::{CatalogError, Claim, OriginalFacts, CLAIM_COMMIT_MARGIN_MS};

pub(super) type Tx<'c> = sqlx::Transaction<'c, Db>;

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
