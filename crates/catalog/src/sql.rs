//! The SQL text and helpers every port's implementation shares.
//!
//! Both drivers accept `$N` placeholders and `RETURNING`, so the SQL text
//! is shared. The implementations live in `sql/`, one file per port, in
//! plain Rust that names the driver only as `Db` and the catalogue type as
//! `Backend`; `sqlite.rs` and `postgres.rs` each declare those two and
//! include the files (`#[path]` modules), so each backend keeps its
//! driver's native types without code generic over `sqlx::Database` and
//! its wall of trait bounds. What differs lives on the catalogue type:
//! `MIGRATOR`, `CLAIM_LOCK`, `OBJECT_LOCK` and `BACKEND`.
//!
//! Every write transaction starts with a write, so SQLite takes its write
//! lock up front (and waits on the busy timeout) instead of failing when a
//! read lock cannot be upgraded; on PostgreSQL the same order locks the row
//! before it is read.
//!
//! A one-statement write with `RETURNING` outside a transaction reads its
//! rows with `fetch_all`, never `fetch_optional`/`fetch_one`: on SQLite its
//! implicit commit happens when the statement runs to its end, but sqlx
//! stops stepping after the one row those ask for and resets the statement,
//! dropping any error of that commit (a full disk): the row would come back
//! for a write that was never committed.

/// An image row and, read with it, its bucket's style visibility (see
/// `Image::styles_public_max_side`). The bucket table is addressed by its
/// name so the subquery works after `FROM images` and in `RETURNING`.
pub(crate) const IMAGE_COLUMNS: &str =
    "id, bucket, name, facet, crop, width, height, size, mimetype, sha256, original_key, \
     origin_url, status, error, error_code, tags, string1, string2, string3, number1, number2, \
     number3, feed_ready, feed_reasons, feed_style, feed_side, version, created_at, updated_at, \
     finished_at, deleted_at, max_unauthorised, roles, initial_origin, batch_id, (SELECT buckets.public_max_side FROM buckets \
     WHERE buckets.name = images.bucket) AS styles_public_max_side";

pub(crate) const ASSET_COLUMNS: &str =
    "id, image_id, style, storage_key, size, mimetype, width, height, sha256, \
     upscaled, settings_fingerprint, quality, created_at";

pub(crate) const RETAINED_COLUMNS: &str =
    "image_id, style, storage_key, size, mimetype, width, height, sha256, superseded_at, \
     expires_at";

/// Whether anything keeps `$1` alive at Unix ms `$2`: a row that refers
/// to it, a retained file still in its grace period, or a live claim.
/// (References first, claims last: the sum says which.)
pub(crate) const REFERENCES: &str = "SELECT (SELECT COUNT(*) FROM images WHERE original_key = $1) \
          + (SELECT COUNT(*) FROM media_assets WHERE storage_key = $1) \
          + (SELECT COUNT(*) FROM retained_files WHERE storage_key = $1 AND expires_at > $2), \
            (SELECT COUNT(*) FROM object_claims WHERE storage_key = $1 AND expires_at > $2)";

/// Sorted and without repeats: transactions that lock several keys' rows
/// take them in one order, so two of them cannot deadlock.
pub(crate) fn distinct_sorted<'a>(keys: impl IntoIterator<Item = &'a String>) -> Vec<&'a str> {
    let mut keys: Vec<&str> = keys.into_iter().map(String::as_str).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

pub(crate) const JOB_COLUMNS: &str =
    "id, image_id, kind, batch_id, status, attempts, outages, lease_owner, lease_until, run_after, \
     last_error, fingerprint";

/// Jobs `j` of a batch that are done while their image is not rendered
/// with the batch's settings: rendered since by a worker with others, or
/// being rendered again (an edit). Callers add `AND j.batch_id = ...`.
pub(crate) const STALE_IN_BATCH: &str = "SELECT j.id FROM jobs j \
     JOIN batches b ON b.id = j.batch_id JOIN images i ON i.id = j.image_id \
     WHERE j.status = 'done' AND i.deleted_at IS NULL \
     AND (i.status = 'ingesting' OR (i.status = 'finished' AND EXISTS (SELECT 1 FROM media_assets a \
         WHERE a.image_id = i.id AND a.settings_fingerprint <> b.fingerprint)))";

pub(crate) const KEY_COLUMNS: &str =
    "id, key_hash, bucket, scopes, name, created_at, revoked_at, roles";

pub(crate) const BATCH_COLUMNS: &str =
    "id, bucket, filter, fingerprint, total, queued_all, created_at, updated_at";

/// A name as `search` matches it: lowercased here with Unicode's rules,
/// not by the database (SQLite's LOWER folds only ASCII).
pub(crate) fn fold_name(name: &str) -> String {
    name.to_lowercase()
}

/// The next job to run: a queued one that is due, or a running one whose
/// lease lapsed (its worker died); interactive jobs (priority 0) before
/// batch ones; never a job of an image that has another job running, so
/// two renders of one image never race to commit. `$5`, when set, is the
/// claimer's settings fingerprint: a job that must be rendered with other
/// settings is left to a worker that has them. Ingest jobs only if `$6`.
pub(crate) const CLAIMABLE_JOB: &str = "SELECT id FROM jobs \
     WHERE ((status = 'queued' AND run_after <= $2) OR (status = 'running' AND lease_until < $2)) \
     AND ($5 IS NULL OR fingerprint IS NULL OR fingerprint = $5) AND ($6 OR kind <> 'ingest') \
     AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.image_id = jobs.image_id \
         AND r.status = 'running' AND r.id <> jobs.id) \
     ORDER BY priority, run_after, id LIMIT 1";

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern, folded
/// like [`fold_name`].
pub(crate) fn like_contains(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in fold_name(term).chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

pub(crate) fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

/// The column and direction of a sort; `name` sorts NULL as empty on both
/// databases (they disagree on where NULLs go otherwise).
pub(crate) fn sort_expression(key: crate::SortKey) -> &'static str {
    match key {
        crate::SortKey::CreatedAt => "created_at",
        crate::SortKey::UpdatedAt => "updated_at",
        crate::SortKey::Name => "COALESCE(name, '')",
    }
}
