//! [`ImageRepo`](crate::ImageRepo): image rows, their assets and the
//! files a re-render replaced.
//!
//! Compiled once per backend (see the end of `sqlite.rs` and `postgres.rs`).

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::common::{insert_job, record_original, schedule, settle_original_claim, Tx};
use super::{Backend, Db};
use crate::model::StoredCrop;
use crate::sql::{
    fold_name, like_contains, sort_expression, tags_json, ASSET_COLUMNS, IMAGE_COLUMNS,
    RETAINED_COLUMNS,
};
use crate::{
    CatalogError, Image, ImageFields, ImagePage, ImagePatch, ImageQuery, ImageRepo, MediaAsset,
    NewImage, OriginalFacts, PageStart, RetainedFile, Trashed,
};

#[async_trait::async_trait]
impl ImageRepo for Backend {
    async fn create_image(
        &self,
        image: &NewImage,
        now: DateTime<Utc>,
    ) -> Result<Image, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let row = insert_image(&mut tx, image, now).await?.ok_or_else(|| {
            CatalogError::Database(sqlx::Error::Protocol(format!(
                "image {} already exists",
                image.id
            )))
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
        let sql = format!(
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
        );
        let update = sqlx::query_as(&sql).bind(&image.id).bind(expected_version);
        let row: Option<Image> = bind_fields(update, f)
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
        let mut qb: QueryBuilder<Db> =
            QueryBuilder::new("UPDATE images SET version = version + 1, updated_at = ");
        qb.push_bind(now);
        macro_rules! set {
            ($field:ident) => {
                if let Some(value) = &patch.$field {
                    qb.push(concat!(", ", stringify!($field), " = "))
                        .push_bind(value.clone());
                }
            };
        }
        set!(name);
        if let Some(name) = &patch.name {
            qb.push(", name_folded = ")
                .push_bind(name.as_deref().map(fold_name));
        }
        set!(facet);
        if let Some(crop) = patch.crop {
            qb.push(", crop = ").push_bind(crop.map(StoredCrop));
        }
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
        record_original(&mut tx, image_id, facts, now).await?;
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
        let mut count: QueryBuilder<Db> = QueryBuilder::new("SELECT COUNT(*) FROM images");
        push_filters(&mut count, query);
        let (total,): (i64,) = count.build_query_as().fetch_one(&self.pool).await?;

        let sort = sort_expression(query.sort);
        let (cmp, dir) = if query.descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        let mut qb: QueryBuilder<Db> =
            QueryBuilder::new(format!("SELECT {IMAGE_COLUMNS} FROM images"));
        push_filters(&mut qb, query);
        let offset = match &query.start {
            PageStart::Number(n) => n.saturating_sub(1).saturating_mul(query.page_size),
            PageStart::After(after) => {
                // The cursor row must itself be in the list, or the
                // keyset would silently skip or repeat rows.
                let mut cursor: QueryBuilder<Db> = QueryBuilder::new("SELECT id FROM images");
                push_filters(&mut cursor, query);
                cursor.push(" AND id = ").push_bind(after);
                let found: Option<(String,)> =
                    cursor.build_query_as().fetch_optional(&self.pool).await?;
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
        let mut qb: QueryBuilder<Db> = QueryBuilder::new(format!(
            "SELECT {ASSET_COLUMNS} FROM media_assets WHERE image_id IN ("
        ));
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

/// The WHERE clause shared by list and count.
fn push_filters<'a>(qb: &mut QueryBuilder<'a, Db>, query: &'a ImageQuery) {
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

/// Inserts the row, its tags and first job; `None` when the id is
/// taken.
async fn insert_image(
    tx: &mut Tx<'_>,
    image: &NewImage,
    now: DateTime<Utc>,
) -> Result<Option<Image>, CatalogError> {
    let f = &image.fields;
    let facts = image.original.as_ref();
    let sql = format!(
        "INSERT INTO images (id, bucket, name, facet, crop, tags, string1, string2, string3, \
         number1, number2, number3, width, height, size, mimetype, sha256, original_key, \
         origin_url, status, created_at, updated_at, name_folded, max_unauthorised, roles, \
         initial_origin) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, 'ingesting', $20, $20, $21, $22, $23, $24) ON CONFLICT (id) DO NOTHING RETURNING {IMAGE_COLUMNS}"
    );
    let insert = sqlx::query_as(&sql).bind(&image.id).bind(&image.bucket);
    let row: Option<Image> = bind_fields(insert, f)
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

type ImageQueryAs<'q> = sqlx::query::QueryAs<'q, Db, Image, <Db as sqlx::Database>::Arguments<'q>>;

/// Binds the client's fields, `$3` to `$12` of both the insert and the
/// replace of an image.
fn bind_fields<'q>(query: ImageQueryAs<'q>, f: &'q ImageFields) -> ImageQueryAs<'q> {
    query
        .bind(&f.name)
        .bind(&f.facet)
        .bind(f.crop.map(StoredCrop))
        .bind(tags_json(&f.tags))
        .bind(&f.string1)
        .bind(&f.string2)
        .bind(&f.string3)
        .bind(f.number1)
        .bind(f.number2)
        .bind(f.number3)
}
