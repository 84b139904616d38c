//! [`ObjectLedger`](crate::ObjectLedger): claims on stored objects and
//! their scheduled deletions.
//!
//! Compiled once per backend (see the end of `sqlite.rs` and `postgres.rs`).

use super::common::{lock_object, references, schedule};
use sqlx::QueryBuilder;

use super::{Backend, Db};
use crate::sql::distinct_sorted;
use crate::{CatalogError, ObjectLedger, CLAIM_TTL_MS, CLAIM_WAIT_MS, DELETION_LEASE_MS};

#[async_trait::async_trait]
impl ObjectLedger for Backend {
    async fn claim_objects(
        &self,
        holder: &str,
        keys: &[String],
        now_ms: i64,
    ) -> Result<(), CatalogError> {
        let keys = distinct_sorted(keys);
        if keys.is_empty() {
            return Ok(());
        }
        let mut waited = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            for key in &keys {
                lock_object(&mut tx, key).await?;
            }
            // Set-wise, not key by key: each statement is a round trip to
            // the connection inside the write lock, and a render claims
            // every style's file at once.
            // Cancels pending deletions, or takes over those whose deleter
            // died.
            let mut cancel: QueryBuilder<Db> =
                QueryBuilder::new("DELETE FROM object_deletions WHERE storage_key IN (");
            push_keys(&mut cancel, &keys);
            cancel
                .push(") AND (deleting_until IS NULL OR deleting_until < ")
                .push_bind(now_ms)
                .push(")");
            cancel.build().execute(&mut *tx).await?;
            let mut running: QueryBuilder<Db> = QueryBuilder::new(
                "SELECT storage_key FROM object_deletions WHERE storage_key IN (",
            );
            push_keys(&mut running, &keys);
            running.push(") ORDER BY storage_key LIMIT 1");
            let busy: Option<(String,)> = running.build_query_as().fetch_optional(&mut *tx).await?;
            if busy.is_none() {
                let mut claim: QueryBuilder<Db> = QueryBuilder::new(
                    "INSERT INTO object_claims (storage_key, holder, expires_at) ",
                );
                claim.push_values(&keys, |mut row, key| {
                    row.push_bind(*key)
                        .push_bind(holder)
                        .push_bind(now_ms + CLAIM_TTL_MS);
                });
                claim.push(
                    " ON CONFLICT (storage_key, holder) DO UPDATE SET expires_at = excluded.expires_at",
                );
                claim.build().execute(&mut *tx).await?;
            }
            let Some((key,)) = busy else {
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

    async fn release_claims(
        &self,
        holder: &str,
        now_ms: i64,
        delete_at_ms: i64,
    ) -> Result<Vec<String>, CatalogError> {
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

    async fn expire_retained(
        &self,
        now_ms: i64,
        delete_at_ms: i64,
        limit: i64,
    ) -> Result<i64, CatalogError> {
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
}

/// `keys` as the bound list of an `IN (...)`.
fn push_keys<'a>(qb: &mut QueryBuilder<'a, Db>, keys: &[&'a str]) {
    let mut list = qb.separated(", ");
    for key in keys {
        list.push_bind(*key);
    }
}
