//! The IIIF render cache policy: what a render is kept under, when a hit
//! is recorded, and what goes once the cache is over its byte budget.
//!
//! A render is kept in the object store under a key made of hashes only
//! ([`easel_storage::iiif_render_key`]); the catalogue's
//! [`RenderCacheIndex`] counts those objects, so the least recently used
//! go once they take more than the budget. A hit records its use at most
//! once per touch interval per entry and process: eviction needs a rough
//! order, not a database write per hit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use easel_catalog::RenderCacheIndex;
use easel_render::iiif::{IiifPlan, IIIF_PIPELINE_VERSION};
use easel_render::{sha256_hex, ENGINE_VERSION};
use easel_storage::{BlobStore, StorageError};

/// Cache entries remembered by [`Touches`] before the stale ones are dropped.
const TOUCHES_REMEMBERED: usize = 10_000;

/// Where a render of a plan is kept, and the ETag it is served with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub key: String,
    /// The hash that names the render.
    pub etag: String,
}

impl CacheEntry {
    /// The entry of `plan` (resolved against the `width`x`height` oriented
    /// original with `source_sha256`) under settings with
    /// `settings_fingerprint`. The hash covers the engine and IIIF pipeline
    /// versions, the settings, the original and the normalised request,
    /// and nothing a user typed.
    pub fn of(
        settings_fingerprint: &str,
        source_sha256: &str,
        plan: &IiifPlan,
        width: u32,
        height: u32,
    ) -> CacheEntry {
        let identity = format!(
            "iiif|{ENGINE_VERSION}|{IIIF_PIPELINE_VERSION}|{settings_fingerprint}|{source_sha256}|{}",
            plan.normalised(width, height)
        );
        let hash = sha256_hex(identity.as_bytes());
        CacheEntry {
            key: easel_storage::iiif_render_key(&hash, plan.format.extension()),
            etag: hash,
        }
    }
}

/// The cache's policy and this process's memory of recent hits.
#[derive(Debug)]
pub struct RenderCache {
    budget_bytes: u64,
    touch_interval: Duration,
    touches: Touches,
}

impl RenderCache {
    /// `budget_bytes` 0 turns the cache off.
    pub fn new(budget_bytes: u64, touch_interval: Duration) -> Self {
        RenderCache {
            budget_bytes,
            touch_interval,
            touches: Touches::default(),
        }
    }

    fn enabled(&self) -> bool {
        self.budget_bytes > 0
    }

    /// A cached render, if there is one. A missing object is a miss whatever
    /// the catalogue says (it may have been evicted a moment ago); a failing
    /// store is logged and is a miss too: the render can still answer.
    pub async fn get<C: RenderCacheIndex + ?Sized>(
        &self,
        catalog: &C,
        store: &BlobStore,
        entry: &CacheEntry,
        source_sha256: &str,
    ) -> Option<Bytes> {
        if !self.enabled() {
            return None;
        }
        let key = entry.key.as_str();
        let bytes = match store.get(key).await {
            Ok(bytes) => bytes,
            Err(StorageError::NotFound { .. }) => return None,
            Err(e) => {
                tracing::warn!(error = %e, key = %key, "IIIF cache read failed");
                return None;
            }
        };
        let interval = self.touch_interval;
        if self.touches.due(key, Instant::now(), interval) {
            let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
            // Also adds the row of an object the catalogue lost track of.
            record_use(catalog, key, source_sha256, bytes.len(), interval_ms).await;
        }
        Some(bytes)
    }

    /// Stores a render, then evicts what no longer fits the budget.
    pub async fn put<C: RenderCacheIndex + ?Sized>(
        &self,
        catalog: &C,
        store: &BlobStore,
        entry: &CacheEntry,
        source_sha256: &str,
        bytes: Bytes,
    ) {
        if !self.enabled() {
            return;
        }
        let key = entry.key.as_str();
        let size = bytes.len();
        if let Err(e) = store.put(key, bytes).await {
            // The response is still good; the next request renders again.
            tracing::warn!(error = %e, key = %key, "could not cache a IIIF render");
            return;
        }
        self.touches.note(key, Instant::now(), self.touch_interval);
        if !record_use(catalog, key, source_sha256, size, 0).await {
            // An object the catalogue does not count would escape the budget.
            delete_objects(store, vec![key.to_string()]).await;
            return;
        }
        let budget = i64::try_from(self.budget_bytes).unwrap_or(i64::MAX);
        match catalog.evict_iiif_cache(budget).await {
            Ok(evicted) => delete_objects(store, evicted).await,
            Err(e) => tracing::warn!(error = %e, "could not evict from the IIIF cache"),
        }
    }
}

/// Deletes the cached renders of the original with `sha256` when no image
/// has it any more: for a force delete, after the image's row is gone.
/// Failures are logged: the image is deleted either way, and left-over
/// renders cost space until they are evicted, not data.
pub async fn forget_renders_of<C: RenderCacheIndex + ?Sized>(
    catalog: &C,
    store: &BlobStore,
    sha256: &str,
) {
    match catalog.forget_iiif_cache_of(sha256).await {
        Ok(keys) => delete_objects(store, keys).await,
        Err(e) => tracing::warn!(error = %e, "could not drop the IIIF renders of a deleted image"),
    }
}

/// Records a use of a cache entry; `false` when the catalogue failed.
async fn record_use<C: RenderCacheIndex + ?Sized>(
    catalog: &C,
    key: &str,
    source_sha256: &str,
    size: usize,
    min_interval_ms: i64,
) -> bool {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    let now = easel_catalog::now_ms();
    match catalog
        .record_iiif_cache_use(key, source_sha256, size, now, min_interval_ms)
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, key = %key, "could not record a IIIF cache entry");
            false
        }
    }
}

async fn delete_objects(store: &BlobStore, keys: Vec<String>) {
    for key in keys {
        if let Err(e) = store.delete(&key).await {
            tracing::warn!(error = %e, key = %key, "could not delete a IIIF cache object");
        }
    }
}

/// When this process last recorded a use of each cache entry.
#[derive(Debug, Default)]
struct Touches(Mutex<HashMap<String, Instant>>);

impl Touches {
    /// Whether a use of `key` at `now` is to be recorded: not if one was
    /// less than `interval` ago. Notes it when it is, under the same lock,
    /// so concurrent hits of one entry record it once.
    fn due(&self, key: &str, now: Instant, interval: Duration) -> bool {
        let mut last = self.lock();
        if last
            .get(key)
            .is_some_and(|at| now.saturating_duration_since(*at) < interval)
        {
            return false;
        }
        remember(&mut last, key, now, interval);
        true
    }

    /// Remembers a use of `key` at `now`, recorded already.
    fn note(&self, key: &str, now: Instant, interval: Duration) {
        remember(&mut self.lock(), key, now, interval);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn remember(last: &mut HashMap<String, Instant>, key: &str, now: Instant, interval: Duration) {
    if last.len() >= TOUCHES_REMEMBERED {
        last.retain(|_, at| now.saturating_duration_since(*at) < interval);
        if last.len() >= TOUCHES_REMEMBERED {
            // Forgetting costs an early write per entry, nothing more.
            last.clear();
        }
    }
    last.insert(key.to_string(), now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use easel_render::iiif::{IiifLimits, IiifRequest};

    fn plan(quality: &str) -> IiifPlan {
        IiifRequest::parse("full", "100,", "0", &format!("{quality}.jpg"))
            .and_then(|r| r.resolve(400, 300, &IiifLimits::default()))
            .unwrap()
    }

    #[test]
    fn a_cache_entry_is_named_by_the_hash_of_what_made_it() {
        let entry = CacheEntry::of("settings", "abc123", &plan("default"), 400, 300);
        assert_eq!(entry.etag.len(), 64);
        assert_eq!(
            entry.key,
            format!(
                "iiif/{}/{}/{}.jpg",
                &entry.etag[0..2],
                &entry.etag[2..4],
                entry.etag
            )
        );
        // color and default give the same pixels, so the same entry.
        assert_eq!(
            CacheEntry::of("settings", "abc123", &plan("color"), 400, 300),
            entry
        );
        for other in [
            CacheEntry::of("other settings", "abc123", &plan("default"), 400, 300),
            CacheEntry::of("settings", "abc124", &plan("default"), 400, 300),
            CacheEntry::of("settings", "abc123", &plan("gray"), 400, 300),
        ] {
            assert_ne!(other.etag, entry.etag);
        }
    }

    #[test]
    fn a_hit_is_recorded_once_per_interval() {
        let touches = Touches::default();
        let (t0, minute) = (Instant::now(), Duration::from_secs(60));
        assert!(touches.due("k", t0, minute));
        assert!(!touches.due("k", t0 + Duration::from_secs(30), minute));
        assert!(touches.due("k", t0 + Duration::from_secs(61), minute));
        touches.note("j", t0, minute);
        assert!(!touches.due("j", t0 + Duration::from_secs(1), minute));
    }
}
