//! The serve path's two in-process caches, so that a style GET asks
//! neither the database nor the store while nothing changed.
//!
//! - **Lookups**: what a file URL resolves to (the image row, its bucket's
//!   settings, the asset), for at most `lookup_ttl`. The caller's access is
//!   decided on every request from these rows ([`crate::access::decide`]),
//!   never cached. Every write this process makes (any request that is not
//!   `GET`/`HEAD`/`OPTIONS`, and every render its workers commit) drops all
//!   lookups at once; other processes' writes are seen once the TTL ran out,
//!   which is never longer than the alias freshness.
//! - **Bytes**: stored files up to a byte budget, keyed by storage key and
//!   sha256 (the ETag), so a node never serves bytes under another file's
//!   ETag. Bytes are checked against their sha256 before they are kept.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use easel_catalog::{BucketSettings, Image, MediaAsset};
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use sha2::{Digest, Sha256};

use crate::ApiError;

/// The default byte budget of cached files: 64 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// The default lookup lifetime: one second, so another node's re-render,
/// delete or access change shows here within a second.
pub const DEFAULT_LOOKUP_TTL: Duration = Duration::from_secs(1);
/// The default number of cached lookups.
pub const DEFAULT_LOOKUP_ENTRIES: usize = 100_000;

/// What a file URL names: an alias (`thumb`, `feed`) or a version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Alias(String),
    Version { style: String, prefix: String },
}

/// A file URL resolved against the catalogue: the rows the access
/// decision and the response need.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub image: Image,
    pub settings: BucketSettings,
    pub asset: Option<MediaAsset>,
}

#[derive(Clone)]
struct Lookup {
    generation: u64,
    at: Instant,
    resolved: Arc<Resolved>,
}

tokio::task_local! {
    /// The generation and time of the lookup a request's answer was built
    /// from, set by [`ServeCache::resolve`] inside [`crate::warm`]'s scope.
    static LOOKUP_OF_REQUEST: Cell<Option<(u64, Instant)>>;
}

/// A public file URL's answer, kept so that the next GET of the same URL
/// (same `Host`, same `X-Forwarded-Proto`: they make the
/// `Content-Location`) gets it without the router.
pub(crate) struct Warm {
    generation: u64,
    at: Instant,
    pub host: Option<HeaderValue>,
    pub forwarded_proto: Option<HeaderValue>,
    key: Arc<str>,
    pub sha256: Arc<str>,
    /// The 200's headers, as the route sent them.
    pub ok: HeaderMap,
    /// The same without the body's `Content-Type` and `Content-Length`,
    /// as the route sends a 304.
    pub not_modified: HeaderMap,
}

/// What [`crate::files::serve`] tells [`crate::warm`] about a full public
/// 200 or a 304 (a response extension): the file, held by the file cache.
#[derive(Clone)]
pub(crate) struct WarmFile {
    pub key: Arc<str>,
    pub sha256: Arc<str>,
    /// What a 200 sends as `Content-Type`.
    pub mimetype: Option<HeaderValue>,
}

#[derive(Clone)]
struct Stored {
    sha256: Arc<str>,
    bytes: Bytes,
}

#[derive(Clone)]
struct ByLength;

impl Weighter<Arc<str>, Stored> for ByLength {
    fn weight(&self, key: &Arc<str>, value: &Stored) -> u64 {
        (key.len() + value.sha256.len() + value.bytes.len()) as u64
    }
}

/// Both caches; cheap to clone (one per process, shared).
#[derive(Clone)]
pub struct ServeCache {
    inner: Arc<Inner>,
}

struct Inner {
    lookups: Option<Cache<(String, Target), Lookup>>,
    lookup_ttl: Duration,
    generation: AtomicU64,
    bytes: Option<Cache<Arc<str>, Stored, ByLength>>,
    byte_budget: u64,
    warm: Option<Cache<Box<str>, Arc<Warm>>>,
    /// Woken by every [`ServeCache::invalidate`]: a render this process
    /// committed ends a `?wait=true` at once instead of at its next poll.
    changed: tokio::sync::Notify,
}

impl std::fmt::Debug for ServeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeCache")
            .field("byte_budget", &self.inner.byte_budget)
            .field("lookup_ttl", &self.inner.lookup_ttl)
            .finish_non_exhaustive()
    }
}

impl Default for ServeCache {
    fn default() -> Self {
        ServeCache::new(
            DEFAULT_CACHE_BYTES,
            DEFAULT_LOOKUP_TTL,
            DEFAULT_LOOKUP_ENTRIES,
        )
    }
}

impl ServeCache {
    /// `byte_budget` 0 keeps no bytes; `lookup_ttl` zero or `lookup_entries`
    /// 0 keeps no lookups.
    pub fn new(byte_budget: u64, lookup_ttl: Duration, lookup_entries: usize) -> Self {
        let lookups =
            (!lookup_ttl.is_zero() && lookup_entries > 0).then(|| Cache::new(lookup_entries));
        // Warm answers come from lookups and point into the file cache.
        let warm = (lookups.is_some() && byte_budget > 0).then(|| Cache::new(lookup_entries));
        // A file bigger than a shard's share of the budget is never kept,
        // so a few shards: the biggest style files still fit.
        let bytes = (byte_budget > 0).then(|| {
            let options = quick_cache::OptionsBuilder::new()
                .estimated_items_capacity(1024)
                .weight_capacity(byte_budget)
                .shards(2)
                .build()
                .expect("valid cache options");
            Cache::with_options(options, ByLength, Default::default(), Default::default())
        });
        ServeCache {
            inner: Arc::new(Inner {
                lookups,
                lookup_ttl,
                generation: AtomicU64::new(0),
                bytes,
                byte_budget,
                warm,
                changed: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Drops every lookup: this process changed something.
    pub fn invalidate(&self) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(lookups) = &self.inner.lookups {
            lookups.clear();
        }
        if let Some(warm) = &self.inner.warm {
            warm.clear();
        }
        self.inner.changed.notify_waiters();
    }

    /// Completes at the next [`ServeCache::invalidate`] after this call.
    pub(crate) fn changed(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut changed = Box::pin(self.inner.changed.notified());
        changed.as_mut().enable();
        changed
    }

    /// Whether warm answers are kept at all.
    pub(crate) fn keeps_warm(&self) -> bool {
        self.inner.warm.is_some()
    }

    /// The warm answer of `path` and its bytes, while its lookup would
    /// still be used and the file cache still holds its bytes.
    pub(crate) fn warm(&self, path: &str) -> Option<(Arc<Warm>, Bytes)> {
        let warm = self.inner.warm.as_ref()?.get(path)?;
        if warm.generation != self.inner.generation.load(Ordering::Acquire)
            || warm.at.elapsed() >= self.inner.lookup_ttl
        {
            return None;
        }
        let bytes = self.cached(&warm.key, &warm.sha256)?;
        Some((warm, bytes))
    }

    /// Runs a request with room for [`ServeCache::resolve`] to note the
    /// lookup its answer comes from; returns that lookup's generation and
    /// time too, if there was one.
    pub(crate) async fn noting_lookup<F: std::future::Future>(
        future: F,
    ) -> (F::Output, Option<(u64, Instant)>) {
        LOOKUP_OF_REQUEST
            .scope(Cell::new(None), async {
                let output = future.await;
                (output, LOOKUP_OF_REQUEST.with(Cell::get))
            })
            .await
    }

    /// Keeps the answer of `path` (a 200 or a 304 with `headers`), built
    /// from the lookup `lookup`, unless a write happened since.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn keep_warm(
        &self,
        path: &str,
        (generation, at): (u64, Instant),
        file: WarmFile,
        host: Option<HeaderValue>,
        forwarded_proto: Option<HeaderValue>,
        status: axum::http::StatusCode,
        headers: HeaderMap,
    ) {
        use axum::http::{header, StatusCode};
        let Some(warm) = &self.inner.warm else {
            return;
        };
        if generation != self.inner.generation.load(Ordering::Acquire) {
            return;
        }
        // The route's 304 is its 200 without the body's two headers.
        let (ok, not_modified) = match status {
            StatusCode::OK => {
                let mut not_modified = headers.clone();
                not_modified.remove(header::CONTENT_TYPE);
                not_modified.remove(header::CONTENT_LENGTH);
                (headers, not_modified)
            }
            StatusCode::NOT_MODIFIED => {
                let (Some(mimetype), Some(bytes)) =
                    (file.mimetype, self.cached(&file.key, &file.sha256))
                else {
                    return;
                };
                let mut ok = headers.clone();
                ok.insert(header::CONTENT_TYPE, mimetype);
                ok.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                (ok, headers)
            }
            _ => return,
        };
        warm.insert(
            Box::from(path),
            Arc::new(Warm {
                generation,
                at,
                host,
                forwarded_proto,
                key: file.key,
                sha256: file.sha256,
                ok,
                not_modified,
            }),
        );
    }

    /// The cached resolution of `target` of image `id`, else `resolve`'s,
    /// kept when no write happened meanwhile.
    pub(crate) async fn resolve<F, Fut>(
        &self,
        id: &str,
        target: Target,
        resolve: F,
    ) -> Result<Arc<Resolved>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Resolved, ApiError>>,
    {
        let Some(lookups) = &self.inner.lookups else {
            return resolve().await.map(Arc::new);
        };
        let generation = self.inner.generation.load(Ordering::Acquire);
        let key = (id.to_string(), target);
        if let Some(hit) = lookups.get(&key) {
            if hit.generation == generation && hit.at.elapsed() < self.inner.lookup_ttl {
                metrics::counter!("easel_serve_cache_total", "cache" => "lookup", "result" => "hit")
                    .increment(1);
                note_lookup(hit.generation, hit.at);
                return Ok(hit.resolved);
            }
        }
        metrics::counter!("easel_serve_cache_total", "cache" => "lookup", "result" => "miss")
            .increment(1);
        let at = Instant::now();
        let resolved = Arc::new(resolve().await?);
        // A write that started while we read may have missed these rows:
        // keep them only if none did. A missing file is not kept: it is
        // about to be rendered, and "not ready" must not outlive that.
        if resolved.asset.is_some() && self.inner.generation.load(Ordering::Acquire) == generation {
            lookups.insert(
                key,
                Lookup {
                    generation,
                    at,
                    resolved: resolved.clone(),
                },
            );
            note_lookup(generation, at);
        }
        Ok(resolved)
    }

    /// The bytes of `key` if they are cached as the file `sha256`.
    pub(crate) fn cached(&self, key: &str, sha256: &str) -> Option<Bytes> {
        let stored = self.inner.bytes.as_ref()?.get(key)?;
        (&*stored.sha256 == sha256).then_some(stored.bytes)
    }

    /// Whether a file of `size` bytes would be kept.
    fn keeps(&self, size: u64) -> bool {
        // quick_cache refuses an item over a shard's share; stay well
        // under it so that one file never evicts half of the rest.
        self.inner.bytes.is_some() && size <= self.inner.byte_budget / 8
    }

    /// The bytes of the file stored at `key` whose sha256 is `sha256`:
    /// from the cache, else from `load` (and kept when they fit and match).
    pub(crate) async fn bytes<F, Fut>(
        &self,
        key: &str,
        sha256: &str,
        size: u64,
        load: F,
    ) -> Result<Bytes, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, ApiError>>,
    {
        if let Some(bytes) = self.cached(key, sha256) {
            metrics::counter!("easel_serve_cache_total", "cache" => "bytes", "result" => "hit")
                .increment(1);
            return Ok(bytes);
        }
        let bytes = load().await?;
        if !self.keeps(size.max(bytes.len() as u64)) {
            return Ok(bytes);
        }
        metrics::counter!("easel_serve_cache_total", "cache" => "bytes", "result" => "miss")
            .increment(1);
        if hex::encode(Sha256::digest(&bytes)) != sha256 {
            // Never serve (nor keep) bytes under an ETag they do not have.
            return Err(ApiError::Internal(format!(
                "the stored bytes at {key} do not match their sha256 {sha256}"
            )));
        }
        if let Some(cache) = &self.inner.bytes {
            cache.insert(
                Arc::from(key),
                Stored {
                    sha256: Arc::from(sha256),
                    bytes: bytes.clone(),
                },
            );
            metrics::gauge!("easel_serve_cache_bytes").set(cache.weight() as f64);
        }
        Ok(bytes)
    }

    /// Bytes held by the file cache now.
    pub fn bytes_held(&self) -> u64 {
        self.inner.bytes.as_ref().map_or(0, |c| c.weight())
    }

    /// The file cache's budget.
    pub fn byte_budget(&self) -> u64 {
        self.inner.byte_budget
    }
}

/// Notes the lookup the request's answer is built from (the oldest, if
/// several), when [`ServeCache::noting_lookup`] runs it.
fn note_lookup(generation: u64, at: Instant) {
    let _ = LOOKUP_OF_REQUEST.try_with(|noted| {
        let older = match noted.get() {
            Some((g, earlier)) if earlier <= at => (g.min(generation), earlier),
            Some((g, _)) => (g.min(generation), at),
            None => (generation, at),
        };
        noted.set(Some(older));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    async fn fetch(cache: &ServeCache, key: &str, body: &[u8]) -> Result<Bytes, ApiError> {
        let owned = Bytes::copy_from_slice(body);
        cache
            .bytes(
                key,
                &sha(body),
                body.len() as u64,
                || async move { Ok(owned) },
            )
            .await
    }

    #[tokio::test]
    async fn the_file_cache_never_holds_more_than_its_budget() {
        let cache = ServeCache::new(64 * 1024, DEFAULT_LOOKUP_TTL, 10);
        for i in 0..200u32 {
            let body = vec![i as u8; 4000 + i as usize];
            fetch(&cache, &format!("k{i}"), &body).await.unwrap();
            assert!(
                cache.bytes_held() <= 64 * 1024,
                "{} bytes held after {i} files",
                cache.bytes_held()
            );
        }
        assert!(cache.bytes_held() > 32 * 1024, "the cache is used");
        // A file over an eighth of the budget is served but not kept.
        let big = vec![7u8; 20_000];
        fetch(&cache, "big", &big).await.unwrap();
        assert!(cache.cached("big", &sha(&big)).is_none());
    }

    #[tokio::test]
    async fn cached_bytes_are_served_only_under_their_own_sha256() {
        let cache = ServeCache::new(1 << 20, DEFAULT_LOOKUP_TTL, 10);
        fetch(&cache, "k", b"old bytes").await.unwrap();
        assert_eq!(
            cache.cached("k", &sha(b"old bytes")).unwrap(),
            &b"old bytes"[..]
        );
        assert!(cache.cached("k", &sha(b"new bytes")).is_none());
        // The same key now holding other bytes: the new ETag gets them.
        let served = fetch(&cache, "k", b"new bytes").await.unwrap();
        assert_eq!(served, &b"new bytes"[..]);
    }

    #[tokio::test]
    async fn bytes_that_do_not_match_their_sha256_are_refused_and_not_kept() {
        let cache = ServeCache::new(1 << 20, DEFAULT_LOOKUP_TTL, 10);
        let claimed = sha(b"what the row says");
        let result = cache
            .bytes("k", &claimed, 9, || async {
                Ok(Bytes::from_static(b"corrupted"))
            })
            .await;
        assert!(result.is_err());
        assert!(cache.cached("k", &claimed).is_none());
    }
}
