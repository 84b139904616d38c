//! The one catalogue implementation, instantiated for SQLite and PostgreSQL.
//!
//! Both drivers accept `$N` placeholders and `RETURNING`, so the SQL text
//! is shared; a macro (rather than code generic over `sqlx::Database`)
//! keeps each instance on its driver's native types without a wall of
//! trait bounds. What differs lives on the catalogue type: `MIGRATOR`,
//! `CLAIM_LOCK` and `BACKEND`.
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

macro_rules! sql_catalog {
    ($catalog:ty, $db:ty) => {
        use chrono::{DateTime, Utc};
        use sqlx::QueryBuilder;

        use $crate::sql::{
            distinct_sorted, fold_name, like_contains, sort_expression, tags_json, ASSET_COLUMNS,
            BATCH_COLUMNS, CLAIMABLE_JOB, IMAGE_COLUMNS, JOB_COLUMNS, KEY_COLUMNS, REFERENCES,
            RETAINED_COLUMNS, STALE_IN_BATCH,
        };
        use $crate::{
            ApiKey, Batch, BatchCounts, BatchFailure, BucketSettings, Catalog, CatalogError, Claim,
            ClaimFilter, FeedReadiness, Finish, FinishedJob, Image, ImagePage, ImagePatch,
            ImageQuery, Job, MediaAsset, NewApiKey, NewImage, OriginalFacts, PageStart,
            RerenderFilter, RetainedFile, Trashed, CLAIM_COMMIT_MARGIN_MS, CLAIM_TTL_MS,
            CLAIM_WAIT_MS, DELETION_LEASE_MS,
        };

        type Tx<'c> = sqlx::Transaction<'c, $db>;

        /// After a conditional write touched no row: was the image missing
        /// (or trashed, for writes only live images take: `live_only`; or
        /// another bucket's, for writes that name the bucket), or was the
        /// caller's version stale?
        async fn explain_miss(
            tx: &mut Tx<'_>,
            id: &str,
            live_only: bool,
            bucket: Option<&str>,
        ) -> CatalogError {
            let found: Result<Option<(i64, Option<DateTime<Utc>>, String)>, sqlx::Error> =
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

        async fn insert_job(
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

        async fn write_tags(tx: &mut Tx<'_>, image_id: &str, tags: &[String]) -> Result<(), CatalogError> {
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
        async fn lock_object(tx: &mut Tx<'_>, key: &str) -> Result<(), CatalogError> {
            if !<$catalog>::OBJECT_LOCK.is_empty() {
                sqlx::query(<$catalog>::OBJECT_LOCK)
                    .bind(key)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }

        /// Whether rows refer to `key` (`.0`) or live claims hold it (`.1`).
        async fn references(tx: &mut Tx<'_>, key: &str, now_ms: i64) -> Result<(i64, i64), CatalogError> {
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
        async fn schedule(
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

        /// Ends the claim on an original in the transaction that records it.
        async fn settle_original_claim(
            tx: &mut Tx<'_>,
            facts: Option<&OriginalFacts>,
            now: DateTime<Utc>,
        ) -> Result<(), CatalogError> {
            let Some((facts, holder)) = facts.and_then(|f| Some((f, f.claim.as_deref()?))) else {
                return Ok(());
            };
            let keys = [facts.original_key.clone()];
            settle_claim(tx, Some(Claim { holder, keys: &keys }), now.timestamp_millis()).await
        }

        /// Ends `claim` in the transaction that commits the rows relying on
        /// it: every key must still be claimed with a margin to spare, or
        /// a deleter may have judged the claim lapsed (the caller's
        /// transaction is then dropped, and the write is retried).
        async fn settle_claim(tx: &mut Tx<'_>, claim: Option<Claim<'_>>, now_ms: i64) -> Result<(), CatalogError> {
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
        async fn close_job(
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
        async fn newer_job_waits(tx: &mut Tx<'_>, job: &Job) -> Result<bool, CatalogError> {
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

        fn lease_held(rows: u64, job: &Job, owner: &str) -> Result<(), CatalogError> {
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
        fn push_filters<'a>(qb: &mut QueryBuilder<'a, $db>, query: &'a ImageQuery) {
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
        fn push_stale<'a>(
            qb: &mut QueryBuilder<'a, $db>,
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
                qb.push(" AND (EXISTS (SELECT 1 FROM media_assets s WHERE s.image_id = i.id AND s.style = ")
                    .push_bind(style)
                    .push(") OR EXISTS (SELECT 1 FROM media_assets r WHERE r.image_id = i.id \
                           AND r.style = 'regular' AND r.width >= ")
                    .push_bind(side)
                    .push(" AND r.height >= ")
                    .push_bind(side)
                    .push("))");
            }
        }

        impl $catalog {
            /// The claim behind `claim_job` and `claim_job_for`.
            async fn claim_where(
                &self,
                owner: &str,
                now_ms: i64,
                lease_ms: i64,
                fingerprint: Option<&str>,
                ingest: bool,
            ) -> Result<Option<Job>, CatalogError> {
                let row: Result<Vec<Job>, sqlx::Error> = sqlx::query_as(&format!(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = $1, \
                     lease_until = $2 + $3, updated_at = $4 \
                     WHERE id = ({CLAIMABLE_JOB}{}) RETURNING {JOB_COLUMNS}",
                    Self::CLAIM_LOCK
                ))
                .bind(owner)
                .bind(now_ms)
                .bind(lease_ms)
                .bind(Utc::now())
                .bind(fingerprint)
                .bind(ingest)
                .fetch_all(&self.pool)
                .await;
                match row.map(|mut rows| rows.pop()) {
                    // Two claims raced for two jobs of one image (PostgreSQL):
                    // the unique index let one through; the other finds
                    // nothing this time and looks again at its next poll.
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(None),
                    other => Ok(other?),
                }
            }
        }

        #[async_trait::async_trait]
        impl Catalog for $catalog {
            async fn migrate(&self) -> Result<(), CatalogError> {
                Self::MIGRATOR.run(&self.pool).await?;
                Ok(())
            }

            async fn ping(&self) -> Result<(), CatalogError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn probe_write(&self, now_ms: i64) -> Result<(), CatalogError> {
                sqlx::query(
                    "INSERT INTO write_probes (name, at) VALUES ('readyz', $1) \
                     ON CONFLICT (name) DO UPDATE SET at = $1",
                )
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            fn backend(&self) -> &'static str {
                Self::BACKEND
            }

            async fn create_image(&self, image: &NewImage, now: DateTime<Utc>) -> Result<Image, CatalogError> {
                let mut tx = self.pool.begin().await?;
                let row = insert_image(&mut tx, image, now).await?.ok_or_else(|| {
                    CatalogError::Database(sqlx::Error::Protocol(format!("image {} already exists", image.id)))
                })?;
                settle_original_claim(&mut tx, image.original.as_ref(), now).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn replace_image(
                &self,
                image: &NewImage,
                expected_version: Option<i64>,
                now: DateTime<Utc>,
            ) -> Result<(Image, bool), CatalogError> {
                let mut tx = self.pool.begin().await?;
                if expected_version.is_none() {
                    if let Some(row) = insert_image(&mut tx, image, now).await? {
                        settle_original_claim(&mut tx, image.original.as_ref(), now).await?;
                        tx.commit().await?;
                        return Ok((row, true));
                    }
                }
                let f = &image.fields;
                let facts = image.original.clone().unwrap_or_default();
                let has_original = image.original.is_some();
                let row: Option<Image> = sqlx::query_as(&format!(
                    "UPDATE images SET name = $3, name_folded = $23, facet = $4, crop = $5, tags = $6, string1 = $7, \
                     string2 = $8, string3 = $9, number1 = $10, number2 = $11, number3 = $12, \
                     width = CASE WHEN $13 THEN $14 ELSE NULL END, \
                     height = CASE WHEN $13 THEN $15 ELSE NULL END, \
                     size = CASE WHEN $13 THEN $16 ELSE NULL END, \
                     mimetype = CASE WHEN $13 THEN $17 ELSE NULL END, \
                     sha256 = CASE WHEN $13 THEN $18 ELSE NULL END, \
                     original_key = CASE WHEN $13 THEN $19 ELSE original_key END, \
                     origin_url = $20, status = 'ingesting', error = NULL, error_code = NULL, \
                     max_unauthorised = $24, roles = $25, initial_origin = $26, \
                     deleted_at = NULL, version = version + 1, updated_at = $21 \
                     WHERE id = $1 AND bucket = $22 AND ($2 IS NULL OR version = $2) \
                     RETURNING {IMAGE_COLUMNS}"
                ))
                .bind(&image.id)
                .bind(expected_version)
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
                .bind(has_original)
                .bind(facts.width)
                .bind(facts.height)
                .bind(facts.size)
                .bind(&facts.mimetype)
                .bind(&facts.sha256)
                .bind(&facts.original_key)
                .bind(&image.origin_url)
                .bind(now)
                .bind(&image.bucket)
                .bind(f.name.as_deref().map(fold_name))
                .bind(f.max_unauthorised)
                .bind(tags_json(&f.roles))
                .bind(&image.initial_origin)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err(explain_miss(&mut tx, &image.id, false, Some(&image.bucket)).await);
                };
                write_tags(&mut tx, &image.id, &f.tags).await?;
                let kind = if has_original { "render" } else { "ingest" };
                insert_job(&mut tx, &image.id, kind, None, 0, None, now).await?;
                settle_original_claim(&mut tx, image.original.as_ref(), now).await?;
                tx.commit().await?;
                Ok((row, false))
            }

            async fn update_image(
                &self,
                id: &str,
                patch: &ImagePatch,
                expected_version: Option<i64>,
                rerender: bool,
                now: DateTime<Utc>,
            ) -> Result<Image, CatalogError> {
                let mut tx = self.pool.begin().await?;
                let mut qb: QueryBuilder<$db> =
                    QueryBuilder::new("UPDATE images SET version = version + 1, updated_at = ");
                qb.push_bind(now);
                macro_rules! set {
                    ($field:ident) => {
                        if let Some(value) = &patch.$field {
                            qb.push(concat!(", ", stringify!($field), " = ")).push_bind(value.clone());
                        }
                    };
                }
                set!(name);
                if let Some(name) = &patch.name {
                    qb.push(", name_folded = ").push_bind(name.as_deref().map(fold_name));
                }
                set!(facet);
                set!(crop);
                set!(string1);
                set!(string2);
                set!(string3);
                set!(number1);
                set!(number2);
                set!(number3);
                set!(max_unauthorised);
                if let Some(roles) = &patch.roles {
                    qb.push(", roles = ").push_bind(tags_json(roles));
                }
                if let Some(tags) = &patch.tags {
                    qb.push(", tags = ").push_bind(tags_json(tags));
                }
                if rerender {
                    qb.push(", status = 'ingesting', error = NULL, error_code = NULL");
                }
                qb.push(" WHERE id = ").push_bind(id);
                qb.push(" AND deleted_at IS NULL");
                if let Some(version) = expected_version {
                    qb.push(" AND version = ").push_bind(version);
                }
                qb.push(format!(" RETURNING {IMAGE_COLUMNS}"));
                let row: Option<Image> = qb.build_query_as().fetch_optional(&mut *tx).await?;
                let Some(row) = row else {
                    return Err(explain_miss(&mut tx, id, true, None).await);
                };
                if let Some(tags) = &patch.tags {
                    write_tags(&mut tx, id, tags).await?;
                }
                if rerender {
                    insert_job(&mut tx, id, "render", None, 0, None, now).await?;
                }
                tx.commit().await?;
                Ok(row)
            }

            async fn set_original(
                &self,
                image_id: &str,
                facts: &OriginalFacts,
                now: DateTime<Utc>,
            ) -> Result<(), CatalogError> {
                let mut tx = self.pool.begin().await?;
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
                .execute(&mut *tx)
                .await?;
                settle_original_claim(&mut tx, Some(facts), now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn enqueue_render(&self, image_id: &str, now: DateTime<Utc>) -> Result<(), CatalogError> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE images SET status = 'ingesting', error = NULL, error_code = NULL, \
                     version = version + 1, updated_at = $2 \
                     WHERE id = $1",
                )
                .bind(image_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(CatalogError::NotFound(image_id.to_string()));
                }
                insert_job(&mut tx, image_id, "render", None, 0, None, now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn soft_delete(
                &self,
                id: &str,
                expected_version: Option<i64>,
                now: DateTime<Utc>,
            ) -> Result<Image, CatalogError> {
                let mut tx = self.pool.begin().await?;
                let row: Option<Image> = sqlx::query_as(&format!(
                    "UPDATE images SET deleted_at = $3, version = version + 1, updated_at = $3 \
                     WHERE id = $1 AND deleted_at IS NULL AND ($2 IS NULL OR version = $2) \
                     RETURNING {IMAGE_COLUMNS}"
                ))
                .bind(id)
                .bind(expected_version)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err(explain_miss(&mut tx, id, true, None).await);
                };
                tx.commit().await?;
                Ok(row)
            }

            async fn restore(&self, id: &str, now: DateTime<Utc>) -> Result<Image, CatalogError> {
                let row: Option<Image> = sqlx::query_as(&format!(
                    "UPDATE images SET deleted_at = NULL, version = version + 1, updated_at = $2 \
                     WHERE id = $1 RETURNING {IMAGE_COLUMNS}"
                ))
                .bind(id)
                .bind(now)
                .fetch_all(&self.pool)
                .await?
                .pop();
                row.ok_or_else(|| CatalogError::NotFound(id.to_string()))
            }

            async fn hard_delete(
                &self,
                id: &str,
                expected_version: Option<i64>,
                now_ms: i64,
                delete_at_ms: i64,
            ) -> Result<Vec<String>, CatalogError> {
                let mut tx = self.pool.begin().await?;
                // The version check is the first write: it locks the row.
                let original: Option<(Option<String>,)> = sqlx::query_as(
                    "UPDATE images SET version = version + 1 WHERE id = $1 AND ($2 IS NULL OR version = $2) \
                     RETURNING original_key",
                )
                .bind(id)
                .bind(expected_version)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((original_key,)) = original else {
                    return Err(explain_miss(&mut tx, id, false, None).await);
                };
                let assets: Vec<(String,)> =
                    sqlx::query_as("DELETE FROM media_assets WHERE image_id = $1 RETURNING storage_key")
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?;
                let retained: Vec<(String,)> =
                    sqlx::query_as("DELETE FROM retained_files WHERE image_id = $1 RETURNING storage_key")
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?;
                sqlx::query("DELETE FROM images WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let keys: Vec<String> = original_key
                    .into_iter()
                    .chain(assets.into_iter().chain(retained).map(|(k,)| k))
                    .collect();
                let scheduled = schedule(&mut tx, &keys, "image deleted", now_ms, delete_at_ms).await?;
                tx.commit().await?;
                Ok(scheduled)
            }

            async fn image(&self, id: &str) -> Result<Option<Image>, CatalogError> {
                let row = sqlx::query_as(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row)
            }

            async fn list_images(&self, query: &ImageQuery) -> Result<ImagePage, CatalogError> {
                let mut count: QueryBuilder<$db> = QueryBuilder::new("SELECT COUNT(*) FROM images");
                push_filters(&mut count, query);
                let (total,): (i64,) = count.build_query_as().fetch_one(&self.pool).await?;

                let sort = sort_expression(query.sort);
                let (cmp, dir) = if query.descending { ("<", "DESC") } else { (">", "ASC") };
                let mut qb: QueryBuilder<$db> = QueryBuilder::new(format!("SELECT {IMAGE_COLUMNS} FROM images"));
                push_filters(&mut qb, query);
                let offset = match &query.start {
                    PageStart::Number(n) => n.saturating_sub(1).saturating_mul(query.page_size),
                    PageStart::After(after) => {
                        // The cursor row must itself be in the list, or the
                        // keyset would silently skip or repeat rows.
                        let mut cursor: QueryBuilder<$db> = QueryBuilder::new("SELECT id FROM images");
                        push_filters(&mut cursor, query);
                        cursor.push(" AND id = ").push_bind(after);
                        let found: Option<(String,)> = cursor.build_query_as().fetch_optional(&self.pool).await?;
                        if found.is_none() {
                            return Err(CatalogError::UnknownCursor(after.clone()));
                        }
                        qb.push(format!(
                            " AND ({sort}, id) {cmp} (SELECT {sort}, id FROM images WHERE id = "
                        ))
                        .push_bind(after)
                        .push(")");
                        0
                    }
                };
                qb.push(format!(" ORDER BY {sort} {dir}, id {dir} LIMIT "))
                    .push_bind(i64::try_from(query.page_size).unwrap_or(i64::MAX))
                    .push(" OFFSET ")
                    .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
                let images = qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(ImagePage { images, total })
            }

            async fn assets(&self, image_id: &str) -> Result<Vec<MediaAsset>, CatalogError> {
                let rows = sqlx::query_as(&format!(
                    "SELECT {ASSET_COLUMNS} FROM media_assets WHERE image_id = $1 ORDER BY id"
                ))
                .bind(image_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }

            async fn assets_of(&self, image_ids: &[String]) -> Result<Vec<MediaAsset>, CatalogError> {
                if image_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut qb: QueryBuilder<$db> =
                    QueryBuilder::new(format!("SELECT {ASSET_COLUMNS} FROM media_assets WHERE image_id IN ("));
                let mut ids = qb.separated(", ");
                for id in image_ids {
                    ids.push_bind(id);
                }
                qb.push(") ORDER BY image_id, id");
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn asset(&self, image_id: &str, style: &str) -> Result<Option<MediaAsset>, CatalogError> {
                let row = sqlx::query_as(&format!(
                    "SELECT {ASSET_COLUMNS} FROM media_assets WHERE image_id = $1 AND style = $2"
                ))
                .bind(image_id)
                .bind(style)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row)
            }

            async fn claim_job(&self, owner: &str, now_ms: i64, lease_ms: i64) -> Result<Option<Job>, CatalogError> {
                self.claim_where(owner, now_ms, lease_ms, None, true).await
            }

            async fn claim_job_for(
                &self,
                owner: &str,
                now_ms: i64,
                lease_ms: i64,
                filter: &ClaimFilter<'_>,
            ) -> Result<Option<Job>, CatalogError> {
                self.claim_where(owner, now_ms, lease_ms, Some(filter.fingerprint), filter.ingest)
                    .await
            }

            async fn hand_over_fetched(
                &self,
                job: &Job,
                owner: &str,
                facts: &OriginalFacts,
                now: DateTime<Utc>,
            ) -> Result<bool, CatalogError> {
                let mut tx = self.pool.begin().await?;
                // The lease check is the first write, as in `close_job`.
                let done = sqlx::query(
                    "UPDATE jobs SET kind = 'render', status = 'queued', lease_owner = NULL, \
                     lease_until = NULL, attempts = 0, run_after = $3, updated_at = $4 \
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(job.id)
                .bind(owner)
                .bind(now.timestamp_millis())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                lease_held(done.rows_affected(), job, owner)?;
                if newer_job_waits(&mut tx, job).await? {
                    sqlx::query(
                        "UPDATE jobs SET status = 'done', last_error = 'superseded by a newer render' \
                         WHERE id = $1",
                    )
                    .bind(job.id)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    return Ok(false);
                }
                sqlx::query(
                    "UPDATE images SET width = $2, height = $3, size = $4, mimetype = $5, sha256 = $6, \
                     original_key = $7, initial_origin = NULL, version = version + 1, updated_at = $8 \
                     WHERE id = $1",
                )
                .bind(&job.image_id)
                .bind(facts.width)
                .bind(facts.height)
                .bind(facts.size)
                .bind(&facts.mimetype)
                .bind(&facts.sha256)
                .bind(&facts.original_key)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                settle_original_claim(&mut tx, Some(facts), now).await?;
                tx.commit().await?;
                Ok(true)
            }


            async fn running_leases(&self) -> Result<Vec<(i64, String)>, CatalogError> {
                let rows = sqlx::query_as(
                    "SELECT id, lease_owner FROM jobs WHERE status = 'running' AND lease_owner IS NOT NULL \
                     ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }

            async fn expire_lease(&self, job_id: i64, owner: &str, now_ms: i64) -> Result<bool, CatalogError> {
                let done = sqlx::query(
                    "UPDATE jobs SET lease_until = $3 - 1 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(job_id)
                .bind(owner)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn renew_lease(&self, job_id: i64, owner: &str, until_ms: i64) -> Result<bool, CatalogError> {
                let done = sqlx::query(
                    "UPDATE jobs SET lease_until = $3 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(job_id)
                .bind(owner)
                .bind(until_ms)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn finish_job(
                &self,
                job: &Job,
                owner: &str,
                finish: &Finish<'_>,
                now: DateTime<Utc>,
            ) -> Result<FinishedJob, CatalogError> {
                let now_ms = now.timestamp_millis();
                let mut tx = self.pool.begin().await?;
                close_job(&mut tx, job, owner, "done", None, now).await?;
                if newer_job_waits(&mut tx, job).await? {
                    // Nothing commits on the claimed files: end the claim
                    // whatever its state, and let go of what no row needs.
                    if let Some(claim) = finish.claim {
                        sqlx::query("DELETE FROM object_claims WHERE holder = $1")
                            .bind(claim.holder)
                            .execute(&mut *tx)
                            .await?;
                    }
                    let keys: Vec<String> = finish.assets.iter().map(|a| a.storage_key.clone()).collect();
                    let orphans =
                        schedule(&mut tx, &keys, "render outrun by a newer job", now_ms, finish.delete_at_ms)
                            .await?;
                    tx.commit().await?;
                    return Ok(FinishedJob { committed: false, orphans });
                }
                settle_claim(&mut tx, finish.claim, now_ms).await?;
                // Replace, never append: a re-run after a lost lease or a
                // re-render leaves exactly one row per style.
                let old: Vec<(String, String, i64, String, i64, i64, String)> = sqlx::query_as(
                    "DELETE FROM media_assets WHERE image_id = $1 \
                     RETURNING style, storage_key, size, mimetype, width, height, sha256",
                )
                .bind(&job.image_id)
                .fetch_all(&mut *tx)
                .await?;
                for asset in finish.assets {
                    sqlx::query(
                        "INSERT INTO media_assets (image_id, style, storage_key, size, mimetype, width, height, \
                         sha256, upscaled, settings_fingerprint, quality, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    )
                    .bind(&job.image_id)
                    .bind(&asset.style)
                    .bind(&asset.storage_key)
                    .bind(asset.size)
                    .bind(&asset.mimetype)
                    .bind(asset.width)
                    .bind(asset.height)
                    .bind(&asset.sha256)
                    .bind(asset.upscaled)
                    .bind(&asset.settings_fingerprint)
                    .bind(asset.quality)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                // The files replaced keep serving their versioned URLs for
                // the grace period: a feed read before the change must
                // not show a broken image.
                for (style, key, size, mimetype, width, height, sha256) in old {
                    let unchanged = finish
                        .assets
                        .iter()
                        .any(|a| a.style == style && a.storage_key == key);
                    if unchanged {
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO retained_files (image_id, style, storage_key, size, mimetype, width, \
                         height, sha256, superseded_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(&job.image_id)
                    .bind(&style)
                    .bind(&key)
                    .bind(size)
                    .bind(&mimetype)
                    .bind(width)
                    .bind(height)
                    .bind(&sha256)
                    .bind(now_ms)
                    .bind(finish.retain_until_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                let readiness = &finish.readiness;
                sqlx::query(
                    "UPDATE images SET status = 'finished', error = NULL, error_code = NULL, \
                     feed_ready = $3, feed_reasons = $4, feed_style = $5, feed_side = $6, \
                     batch_id = $7, version = version + 1, finished_at = $2, updated_at = $2 WHERE id = $1",
                )
                .bind(&job.image_id)
                .bind(now)
                .bind(readiness.ok)
                .bind(readiness.to_json())
                .bind(&finish.feed_style)
                .bind(finish.feed_side)
                .bind(&job.batch_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(FinishedJob { committed: true, orphans: Vec::new() })
            }

            async fn fail_job(
                &self,
                job: &Job,
                owner: &str,
                reason: &str,
                code: &str,
                now: DateTime<Utc>,
            ) -> Result<(), CatalogError> {
                let mut tx = self.pool.begin().await?;
                close_job(&mut tx, job, owner, "failed", Some(reason), now).await?;
                if job.batch_id.is_some() || newer_job_waits(&mut tx, job).await? {
                    tx.commit().await?;
                    return Ok(());
                }
                let readiness = FeedReadiness::failing(&format!("the image failed to render: {reason}"));
                sqlx::query(
                    "UPDATE images SET status = 'error', error = $2, error_code = $3, \
                     feed_ready = FALSE, feed_reasons = $5, version = version + 1, \
                     finished_at = $4, updated_at = $4 WHERE id = $1",
                )
                .bind(&job.image_id)
                .bind(reason)
                .bind(code)
                .bind(now)
                .bind(readiness.to_json())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn retry_job(
                &self,
                job: &Job,
                owner: &str,
                run_after_ms: i64,
                reason: &str,
                attempt_spent: bool,
                now: DateTime<Utc>,
            ) -> Result<(), CatalogError> {
                let done = sqlx::query(
                    "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_until = NULL, \
                     run_after = $3, last_error = $4, updated_at = $5, \
                     attempts = attempts - $6, outages = outages + $6 \
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(job.id)
                .bind(owner)
                .bind(run_after_ms)
                .bind(reason)
                .bind(now)
                .bind(i64::from(!attempt_spent))
                .execute(&self.pool)
                .await?;
                lease_held(done.rows_affected(), job, owner)
            }

            async fn queue_depth(&self) -> Result<i64, CatalogError> {
                let (depth,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(depth)
            }

            async fn jobs_for_image(&self, image_id: &str) -> Result<Vec<Job>, CatalogError> {
                let rows = sqlx::query_as(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE image_id = $1 ORDER BY id"
                ))
                .bind(image_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }

            async fn create_api_key(&self, key: &NewApiKey, now: DateTime<Utc>) -> Result<ApiKey, CatalogError> {
                let row = sqlx::query_as(&format!(
                    "INSERT INTO api_keys (id, key_hash, bucket, scopes, name, created_at, roles) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {KEY_COLUMNS}"
                ))
                .bind(&key.id)
                .bind(&key.key_hash)
                .bind(&key.bucket)
                .bind(key.scopes.join(" "))
                .bind(&key.name)
                .bind(now)
                .bind(key.roles.join(" "))
                .fetch_all(&self.pool)
                .await?
                .pop();
                row.ok_or(CatalogError::Database(sqlx::Error::RowNotFound))
            }

            async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, CatalogError> {
                let row = sqlx::query_as(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
                ))
                .bind(key_hash)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row)
            }

            async fn api_keys(&self) -> Result<Vec<ApiKey>, CatalogError> {
                let rows = sqlx::query_as(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
                ))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }

            async fn revoke_api_key(&self, id: &str, now: DateTime<Utc>) -> Result<bool, CatalogError> {
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn bucket_settings(&self, bucket: &str) -> Result<BucketSettings, CatalogError> {
                let row: Option<(Option<i64>, Option<i64>)> =
                    sqlx::query_as("SELECT public_max_side, feed_max_bytes FROM buckets WHERE name = $1")
                        .bind(bucket)
                        .fetch_optional(&self.pool)
                        .await?;
                let (public_max_side, feed_max_bytes) = row.unwrap_or_default();
                Ok(BucketSettings {
                    public_max_side,
                    feed_max_bytes,
                })
            }

            async fn set_bucket_settings(
                &self,
                bucket: &str,
                settings: BucketSettings,
                now: DateTime<Utc>,
            ) -> Result<(), CatalogError> {
                sqlx::query(
                    "INSERT INTO buckets (name, public_max_side, feed_max_bytes, updated_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE \
                     SET public_max_side = $2, feed_max_bytes = $3, updated_at = $4",
                )
                .bind(bucket)
                .bind(settings.public_max_side)
                .bind(settings.feed_max_bytes)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn count_stale(&self, filter: &RerenderFilter, fingerprint: &str) -> Result<i64, CatalogError> {
                let mut qb: QueryBuilder<$db> = QueryBuilder::new("SELECT COUNT(*) FROM images i");
                push_stale(&mut qb, filter, fingerprint);
                let (count,): (i64,) = qb.build_query_as().fetch_one(&self.pool).await?;
                Ok(count)
            }

            async fn open_batch(&self, filter: &RerenderFilter, fingerprint: &str) -> Result<Option<Batch>, CatalogError> {
                let filter_json = serde_json::to_string(filter).unwrap_or_default();
                let row = sqlx::query_as(&format!(
                    "SELECT {BATCH_COLUMNS} FROM batches b WHERE filter = $1 AND fingerprint = $2 \
                     AND (NOT queued_all OR EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id \
                          AND j.status IN ('queued', 'running')) \
                          OR EXISTS ({STALE_IN_BATCH} AND j.batch_id = b.id)) \
                     ORDER BY created_at DESC LIMIT 1"
                ))
                .bind(filter_json)
                .bind(fingerprint)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row)
            }

            async fn create_batch(
                &self,
                id: &str,
                filter: &RerenderFilter,
                fingerprint: &str,
                now: DateTime<Utc>,
            ) -> Result<Batch, CatalogError> {
                let total = self.count_stale(filter, fingerprint).await?;
                let row = sqlx::query_as(&format!(
                    "INSERT INTO batches (id, bucket, filter, fingerprint, total, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {BATCH_COLUMNS}"
                ))
                .bind(id)
                .bind(&filter.bucket)
                .bind(serde_json::to_string(filter).unwrap_or_default())
                .bind(fingerprint)
                .bind(total)
                .bind(now)
                .fetch_all(&self.pool)
                .await?
                .pop();
                row.ok_or(CatalogError::Database(sqlx::Error::RowNotFound))
            }

            async fn enqueue_batch(&self, batch: &Batch, limit: i64, now: DateTime<Utc>) -> Result<i64, CatalogError> {
                let filter = batch.filter();
                let mut tx = self.pool.begin().await?;
                // Write first (see the module note), and it keeps `updated_at`
                // as the time of the last enqueue.
                sqlx::query("UPDATE batches SET updated_at = $2 WHERE id = $1")
                    .bind(&batch.id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let mut qb: QueryBuilder<$db> = QueryBuilder::new("SELECT i.id FROM images i");
                push_stale(&mut qb, &filter, &batch.fingerprint);
                qb.push(" AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.image_id = i.id AND j.batch_id = ")
                    .push_bind(&batch.id)
                    .push(") ORDER BY i.id LIMIT ")
                    .push_bind(limit);
                let ids: Vec<(String,)> = qb.build_query_as().fetch_all(&mut *tx).await?;
                // Done, but rendered since with other settings (an edit a
                // worker with other settings rendered): its job runs again.
                // Not while the image has a job waiting or running: that one
                // renders first, and is looked at once it is done.
                let reopened = sqlx::query(&format!(
                    "UPDATE jobs SET status = 'queued', attempts = 0, outages = 0, run_after = $2, \
                     last_error = NULL, updated_at = $3 WHERE id IN ({STALE_IN_BATCH} AND j.batch_id = $1 \
                     AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.image_id = j.image_id \
                         AND o.status IN ('queued', 'running')))"
                ))
                .bind(&batch.id)
                .bind(now.timestamp_millis())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                for (id,) in &ids {
                    insert_job(&mut tx, id, "render", Some(&batch.id), 1, Some(&batch.fingerprint), now).await?;
                }
                let total_sql = if ids.is_empty() {
                    // Nothing left to queue: the batch is what it queued. (Images
                    // counted at the start may have left the stale set since:
                    // deleted, or rendered by an edit.)
                    "UPDATE batches SET queued_all = TRUE, \
                     total = (SELECT COUNT(*) FROM jobs WHERE batch_id = $1) WHERE id = $1"
                } else {
                    // Images that became stale since the batch was counted
                    // still belong to it: keep the total honest.
                    "UPDATE batches SET total = (SELECT COUNT(*) FROM jobs WHERE batch_id = $1) \
                     WHERE id = $1 AND total < (SELECT COUNT(*) FROM jobs WHERE batch_id = $1)"
                };
                sqlx::query(total_sql).bind(&batch.id).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(ids.len() as i64 + reopened as i64)
            }

            async fn batch(&self, id: &str) -> Result<Option<Batch>, CatalogError> {
                let row = sqlx::query_as(&format!("SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row)
            }

            async fn batch_counts(&self, id: &str) -> Result<BatchCounts, CatalogError> {
                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT status, COUNT(*) FROM jobs WHERE batch_id = $1 GROUP BY status")
                        .bind(id)
                        .fetch_all(&self.pool)
                        .await?;
                let mut counts = BatchCounts::default();
                for (status, n) in rows {
                    match status.as_str() {
                        "queued" => counts.queued = n,
                        "running" => counts.running = n,
                        "done" => counts.done = n,
                        _ => counts.failed = n,
                    }
                }
                Ok(counts)
            }

            async fn batch_stale(&self, id: &str) -> Result<i64, CatalogError> {
                let (stale,): (i64,) = sqlx::query_as(&format!(
                    "SELECT COUNT(*) FROM jobs WHERE id IN ({STALE_IN_BATCH} AND j.batch_id = $1)"
                ))
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
                Ok(stale)
            }

            async fn batch_failures(&self, id: &str, limit: i64) -> Result<Vec<BatchFailure>, CatalogError> {
                let rows = sqlx::query_as(
                    "SELECT image_id, last_error AS reason FROM jobs WHERE batch_id = $1 AND status = 'failed' \
                     ORDER BY id LIMIT $2",
                )
                .bind(id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }

            async fn record_iiif_cache_use(
                &self,
                storage_key: &str,
                source_sha256: &str,
                size: i64,
                now_ms: i64,
                min_interval_ms: i64,
            ) -> Result<bool, CatalogError> {
                let done = sqlx::query(
                    "INSERT INTO iiif_cache (storage_key, source_sha256, size, last_used) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (storage_key) DO UPDATE \
                     SET source_sha256 = $2, size = $3, last_used = $4 \
                     WHERE iiif_cache.last_used <= $4 - $5",
                )
                .bind(storage_key)
                .bind(source_sha256)
                .bind(size)
                .bind(now_ms)
                .bind(min_interval_ms)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn evict_iiif_cache(&self, budget_bytes: i64) -> Result<Vec<String>, CatalogError> {
                // One statement, so concurrent evictions cannot both count a
                // row as kept: every row beyond the newest `budget_bytes`.
                let rows: Vec<(String,)> = sqlx::query_as(
                    "DELETE FROM iiif_cache WHERE storage_key IN (\
                     SELECT storage_key FROM (SELECT storage_key, \
                     CAST(SUM(size) OVER (ORDER BY last_used DESC, storage_key DESC \
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS BIGINT) AS kept \
                     FROM iiif_cache) newest WHERE kept > $1) RETURNING storage_key",
                )
                .bind(budget_bytes)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(k,)| k).collect())
            }

            async fn forget_iiif_cache_of(&self, source_sha256: &str) -> Result<Vec<String>, CatalogError> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "DELETE FROM iiif_cache WHERE source_sha256 = $1 \
                     AND NOT EXISTS (SELECT 1 FROM images WHERE sha256 = $1) RETURNING storage_key",
                )
                .bind(source_sha256)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(k,)| k).collect())
            }

            async fn iiif_cache_bytes(&self) -> Result<i64, CatalogError> {
                let (bytes,): (i64,) =
                    sqlx::query_as("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM iiif_cache")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(bytes)
            }

            async fn claim_objects(&self, holder: &str, keys: &[String], now_ms: i64) -> Result<(), CatalogError> {
                let keys = distinct_sorted(keys);
                let mut waited = 0;
                loop {
                    let mut tx = self.pool.begin().await?;
                    let mut busy = None;
                    for key in &keys {
                        lock_object(&mut tx, key).await?;
                        // Cancels a pending deletion, or takes over one whose
                        // deleter died.
                        sqlx::query(
                            "DELETE FROM object_deletions WHERE storage_key = $1 \
                             AND (deleting_until IS NULL OR deleting_until < $2)",
                        )
                        .bind(key)
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await?;
                        let (running,): (i64,) =
                            sqlx::query_as("SELECT COUNT(*) FROM object_deletions WHERE storage_key = $1")
                                .bind(key)
                                .fetch_one(&mut *tx)
                                .await?;
                        if running > 0 {
                            busy = Some(key.to_string());
                            break;
                        }
                        sqlx::query(
                            "INSERT INTO object_claims (storage_key, holder, expires_at) VALUES ($1, $2, $3) \
                             ON CONFLICT (storage_key, holder) DO UPDATE SET expires_at = $3",
                        )
                        .bind(key)
                        .bind(holder)
                        .bind(now_ms + CLAIM_TTL_MS)
                        .execute(&mut *tx)
                        .await?;
                    }
                    let Some(key) = busy else {
                        tx.commit().await?;
                        return Ok(());
                    };
                    // A deletion of it is running: it ends in moments (one
                    // store request); then the object is gone and the
                    // writer stores it again.
                    drop(tx);
                    if waited >= CLAIM_WAIT_MS {
                        return Err(CatalogError::DeletionInProgress { key });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    waited += 20;
                }
            }

            async fn release_claims(&self, holder: &str, now_ms: i64, delete_at_ms: i64) -> Result<Vec<String>, CatalogError> {
                let mut tx = self.pool.begin().await?;
                let keys: Vec<(String,)> =
                    sqlx::query_as("DELETE FROM object_claims WHERE holder = $1 RETURNING storage_key")
                        .bind(holder)
                        .fetch_all(&mut *tx)
                        .await?;
                let keys: Vec<String> = keys.into_iter().map(|(k,)| k).collect();
                let scheduled = schedule(&mut tx, &keys, "claim released", now_ms, delete_at_ms).await?;
                tx.commit().await?;
                Ok(scheduled)
            }

            async fn schedule_deletions(
                &self,
                keys: &[String],
                reason: &str,
                now_ms: i64,
                delete_at_ms: i64,
            ) -> Result<Vec<String>, CatalogError> {
                let mut tx = self.pool.begin().await?;
                // A write first (see the module note): lapsed claims go.
                sqlx::query("DELETE FROM object_claims WHERE expires_at <= $1")
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                let scheduled = schedule(&mut tx, keys, reason, now_ms, delete_at_ms).await?;
                tx.commit().await?;
                Ok(scheduled)
            }

            async fn expire_retained(&self, now_ms: i64, delete_at_ms: i64, limit: i64) -> Result<i64, CatalogError> {
                let mut tx = self.pool.begin().await?;
                let ended: Vec<(String,)> = sqlx::query_as(
                    "DELETE FROM retained_files WHERE id IN (SELECT id FROM retained_files \
                     WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2) RETURNING storage_key",
                )
                .bind(now_ms)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                let count = ended.len() as i64;
                let keys: Vec<String> = ended.into_iter().map(|(k,)| k).collect();
                schedule(&mut tx, &keys, "grace period over", now_ms, delete_at_ms).await?;
                tx.commit().await?;
                Ok(count)
            }

            async fn due_deletions(&self, now_ms: i64, limit: i64) -> Result<Vec<String>, CatalogError> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT storage_key FROM object_deletions WHERE due_at <= $1 \
                     AND (deleting_until IS NULL OR deleting_until < $1) ORDER BY due_at, storage_key LIMIT $2",
                )
                .bind(now_ms)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(k,)| k).collect())
            }

            async fn begin_deletion(&self, key: &str, now_ms: i64) -> Result<Option<i64>, CatalogError> {
                let lease = now_ms + DELETION_LEASE_MS;
                let mut tx = self.pool.begin().await?;
                lock_object(&mut tx, key).await?;
                // A write first (see the module note).
                let started = sqlx::query(
                    "UPDATE object_deletions SET deleting_until = $2 WHERE storage_key = $1 \
                     AND due_at <= $3 AND (deleting_until IS NULL OR deleting_until < $3)",
                )
                .bind(key)
                .bind(lease)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                if started.rows_affected() == 0 {
                    return Ok(None);
                }
                sqlx::query("DELETE FROM object_claims WHERE storage_key = $1 AND expires_at <= $2")
                    .bind(key)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                match references(&mut tx, key, now_ms).await? {
                    (0, 0) => {
                        tx.commit().await?;
                        Ok(Some(lease))
                    }
                    (0, _) => {
                        // Claimed: the writer's commit will refer to it, or
                        // its release schedule it again; look again later.
                        sqlx::query(
                            "UPDATE object_deletions SET deleting_until = NULL, due_at = $2 \
                             WHERE storage_key = $1",
                        )
                        .bind(key)
                        .bind(now_ms + DELETION_LEASE_MS)
                        .execute(&mut *tx)
                        .await?;
                        tx.commit().await?;
                        Ok(None)
                    }
                    _ => {
                        // Referred to again (an identical upload): alive.
                        sqlx::query("DELETE FROM object_deletions WHERE storage_key = $1")
                            .bind(key)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                        Ok(None)
                    }
                }
            }

            async fn end_deletion(&self, key: &str, lease: i64) -> Result<(), CatalogError> {
                sqlx::query("DELETE FROM object_deletions WHERE storage_key = $1 AND deleting_until = $2")
                    .bind(key)
                    .bind(lease)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn abandon_deletion(&self, key: &str, lease: i64) -> Result<(), CatalogError> {
                sqlx::query(
                    "UPDATE object_deletions SET deleting_until = NULL \
                     WHERE storage_key = $1 AND deleting_until = $2",
                )
                .bind(key)
                .bind(lease)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn retained_file(
                &self,
                image_id: &str,
                style: &str,
                sha256_prefix: &str,
                now_ms: i64,
            ) -> Result<Option<RetainedFile>, CatalogError> {
                // Hex has no LIKE wildcards; callers pass lower case.
                let row = sqlx::query_as(&format!(
                    "SELECT {RETAINED_COLUMNS} FROM retained_files WHERE image_id = $1 AND style = $2 \
                     AND sha256 LIKE $3 AND expires_at > $4 ORDER BY expires_at DESC LIMIT 1"
                ))
                .bind(image_id)
                .bind(style)
                .bind(format!("{sha256_prefix}%"))
                .bind(now_ms)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row)
            }
        }

        /// Inserts the row, its tags and first job; `None` when the id is
        /// taken.
        async fn insert_image(tx: &mut Tx<'_>, image: &NewImage, now: DateTime<Utc>) -> Result<Option<Image>, CatalogError> {
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
    };
}

pub(crate) use sql_catalog;
