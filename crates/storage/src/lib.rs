//! Easel's blob store port: the only place that knows object keys.
//!
//! Keys are derived from content hashes alone, never from names a user sent,
//! so a key cannot escape the store and identical bytes share one object.
//! The backend is any `object_store` implementation chosen by URL:
//!
//! - `file:///abs/path`: the embedded default;
//! - `memory://`: tests;
//! - `s3://bucket` or `s3://bucket/key/prefix`: Amazon S3 or any
//!   S3-compatible service (MinIO, Ceph, R2, moto). Endpoint, region and
//!   credentials come from the standard `AWS_*` variables
//!   ([`AmazonS3Builder::from_env`]'s): `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`,
//!   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, ... A key
//!   prefix keeps every object under it (several deployments or test runs
//!   can share one bucket).
//!
//! # Failing fast when S3 is down
//!
//! `object_store`'s own retry policy keeps retrying for up to three minutes,
//! which turns an outage into requests hanging for minutes. Easel bounds it
//! (see [`S3_RETRY_TIMEOUT`] and friends): a request that cannot connect is
//! retried at most [`S3_MAX_RETRIES`] times with a short backoff and no new
//! attempt starts after [`S3_RETRY_TIMEOUT`], so with the default connect
//! timeout ([`S3_CONNECT_TIMEOUT`]) an unreachable or refusing endpoint
//! gives an error within about five seconds. The whole-request timeout
//! ([`S3_REQUEST_TIMEOUT`]) stays long enough for large bodies; `AWS_TIMEOUT`
//! and `AWS_CONNECT_TIMEOUT` (e.g. `10s`) override both defaults. Such an
//! error answers `true` to [`StorageError::is_unavailable`], which the API
//! turns into `503` with `Retry-After`.

mod handover;

use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, PutPayload, RetryConfig, WriteMultipart,
};
use url::Url;

/// Connect timeout of an S3 store unless `AWS_CONNECT_TIMEOUT` says otherwise.
pub const S3_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Whole-request timeout (headers and body) of an S3 store unless
/// `AWS_TIMEOUT` says otherwise: long, because an original may be 64 MiB.
pub const S3_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Retries of one S3 request that failed to connect, timed out (safe
/// requests) or got a 5xx.
pub const S3_MAX_RETRIES: usize = 3;
/// No retry of an S3 request starts this long after its first attempt.
pub const S3_RETRY_TIMEOUT: Duration = Duration::from_secs(3);

/// Objects larger than this are written as multipart uploads, in parts of
/// this size (S3 wants parts of at least 5 MiB): each part is its own
/// request, retried and timed on its own.
pub const MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;

/// What can go wrong talking to the blob store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object {key} not found")]
    NotFound { key: String },
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("blob store failure on {key}: {source}")]
    Backend {
        key: String,
        #[source]
        source: object_store::Error,
    },
}

impl StorageError {
    fn backend(key: &Path, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => StorageError::NotFound {
                key: key.to_string(),
            },
            source => StorageError::Backend {
                key: key.to_string(),
                source,
            },
        }
    }

    /// True when the store could not be reached or is failing as a whole:
    /// connection refused, reset or timed out, or a 5xx after the bounded
    /// retries. Worth a `503` with `Retry-After`; anything else (denied
    /// credentials, a missing bucket, a bad request) is a configuration or
    /// program error that waiting will not fix.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StorageError::Backend { source, .. } => unavailable_cause(source),
            StorageError::NotFound { .. } | StorageError::InvalidUrl { .. } => false,
        }
    }

    /// True when the store has no room for a write: a full disk (`ENOSPC`)
    /// or an exceeded quota (`EDQUOT`) under a local store; an S3-compatible
    /// service's `507 Insufficient Storage` (MinIO's `XMinioStorageFull`) or
    /// `QuotaExceeded` (Ceph). An outage like [`is_unavailable`]: the API
    /// answers 507 with `Retry-After`, and the worker waits it out without
    /// spending attempts.
    ///
    /// [`is_unavailable`]: StorageError::is_unavailable
    pub fn is_full(&self) -> bool {
        match self {
            StorageError::Backend { source, .. } => full_cause(source),
            StorageError::NotFound { .. } | StorageError::InvalidUrl { .. } => false,
        }
    }

    /// Either outage: the store is down or full. Retrying later can work.
    pub fn is_outage(&self) -> bool {
        self.is_full() || self.is_unavailable()
    }
}

/// `ENOSPC` and `EDQUOT` on Linux (`std` names them `StorageFull` and
/// `QuotaExceeded`).
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

fn full_cause(error: &object_store::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(e) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
            {
                return true;
            }
        }
        let text = e.to_string();
        if text.contains("status code: 507")
            || text.contains("XMinioStorageFull")
            || text.contains("QuotaExceeded")
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Walks an error's causes looking for a transport failure. The retry
/// error that wraps an S3 failure is private to `object_store`, so the
/// reqwest, HTTP and IO errors under it are what can be recognised.
fn unavailable_cause(error: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    use std::io::ErrorKind;
    if matches!(error, object_store::Error::JoinError { .. }) {
        return false;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(e) = e.downcast_ref::<reqwest::Error>() {
            if e.is_connect() || e.is_timeout() {
                return true;
            }
        }
        if let Some(e) = e.downcast_ref::<HttpError>() {
            if matches!(
                e.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
                    | HttpErrorKind::Request
            ) {
                return true;
            }
        }
        if let Some(e) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                e.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::NotConnected
                    | ErrorKind::TimedOut
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
            ) {
                return true;
            }
        }
        // `RetryError` says "Server returned non-2xx status code: 503 ..."
        // once the retries for a 5xx are spent.
        if e.to_string()
            .contains("Server returned non-2xx status code: 5")
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The storage key of an original: `originals/ab/cd/<sha256>`.
///
/// Fanning out by the first two bytes keeps directories small on file
/// systems; the hash alone names the object, so identical uploads collapse.
pub fn original_key(sha256: &str) -> String {
    fanned("originals", sha256, None)
}

/// The storage key of a rendered file: `renders/ab/cd/<sha256>.<ext>`.
pub fn render_key(sha256: &str, extension: &str) -> String {
    fanned("renders", sha256, Some(extension))
}

/// The storage key of a cached IIIF render: `iiif/ab/cd/<sha256>.<ext>`,
/// named by the hash of what made it (see `easel_app::iiif::cache`).
pub fn iiif_render_key(sha256: &str, extension: &str) -> String {
    fanned("iiif", sha256, Some(extension))
}

fn fanned(prefix: &str, sha256: &str, extension: Option<&str>) -> String {
    // Callers pass hex digests; anything else is a bug, but keys must stay
    // path-safe even then, so non-hex characters are dropped.
    let hex: String = sha256.chars().filter(char::is_ascii_hexdigit).collect();
    let (a, b) = (hex.get(0..2).unwrap_or("00"), hex.get(2..4).unwrap_or("00"));
    match extension {
        Some(ext) => {
            let ext: String = ext.chars().filter(char::is_ascii_alphanumeric).collect();
            format!("{prefix}/{a}/{b}/{hex}.{ext}")
        }
        None => format!("{prefix}/{a}/{b}/{hex}"),
    }
}

/// A cheap-to-clone handle on one object store.
#[derive(Clone, Debug)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    /// Shared, not owned: every request clones the store (in the API's
    /// state), and a `String` here was an allocation per request.
    description: Arc<str>,
    /// Originals stored by this process, for its render loops (see
    /// [`BlobStore::with_handover`]); shared by every clone.
    handover: Option<Arc<handover::Handover>>,
}

impl BlobStore {
    /// Opens the store a URL names, creating a local directory if needed.
    ///
    /// `s3://bucket[/prefix]` reads endpoint, region and credentials from
    /// the `AWS_*` environment; nothing is contacted until the first call.
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        Self::from_url_with_options(url, std::iter::empty::<(&str, &str)>())
    }

    /// [`BlobStore::from_url`] with extra backend settings that win over
    /// the environment: for S3, `object_store`'s configuration keys such as
    /// `("aws_endpoint", "http://127.0.0.1:9000")`, `("aws_allow_http",
    /// "true")`, `("aws_timeout", "10s")`. Other backends take none.
    pub fn from_url_with_options<I, K, V>(url: &str, options: I) -> Result<Self, StorageError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let invalid = |reason: String| StorageError::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        let mut options = options.into_iter().peekable();
        if parsed.scheme() != "s3" && options.peek().is_some() {
            return Err(invalid(format!(
                "options are for s3:// stores, not {}://",
                parsed.scheme()
            )));
        }
        match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| invalid("a file URL needs an absolute path".into()))?;
                Self::local(&dir).map_err(|e| invalid(e.to_string()))
            }
            "memory" => Ok(Self::in_memory()),
            "s3" => Self::s3(&parsed, options).map_err(invalid),
            other => Err(invalid(format!(
                "unsupported scheme {other:?}: use file:///absolute/path, s3://bucket[/prefix] \
                 or memory://"
            ))),
        }
    }

    fn s3<I, K, V>(url: &Url, options: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or("an s3 URL needs a bucket: s3://bucket[/prefix]")?;
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(
                "an s3 URL is s3://bucket[/prefix]; credentials and endpoint \
                        come from the AWS_* environment"
                    .into(),
            );
        }
        let prefix = url.path().trim_matches('/');
        let prefix = if prefix.is_empty() {
            None
        } else {
            let decoded = percent_decode(prefix)?;
            Some(Path::parse(&decoded).map_err(|e| format!("bad key prefix {decoded:?}: {e}"))?)
        };

        // Easel's defaults, then the environment (as `from_env` reads it),
        // then the caller's options: each may override the one before.
        let mut builder = AmazonS3Builder::new()
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                format!("{}ms", S3_CONNECT_TIMEOUT.as_millis()),
            )
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                format!("{}ms", S3_REQUEST_TIMEOUT.as_millis()),
            );
        for (key, value) in std::env::vars_os() {
            if let (Some(key), Some(value)) = (key.to_str(), value.to_str()) {
                if key.starts_with("AWS_") {
                    if let Ok(key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                        builder = builder.with_config(key, value);
                    }
                }
            }
        }
        for (key, value) in options {
            let key = key.as_ref();
            let key = key
                .to_ascii_lowercase()
                .parse::<AmazonS3ConfigKey>()
                .map_err(|e| format!("unknown S3 option {key:?}: {e}"))?;
            builder = builder.with_config(key, value);
        }
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
        let s3 = builder
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: S3_MAX_RETRIES,
                retry_timeout: S3_RETRY_TIMEOUT,
            })
            .build()
            .map_err(|e| e.to_string())?;

        let mut description = format!("s3://{bucket}");
        if let Some(prefix) = &prefix {
            description = format!("{description}/{prefix}");
        }
        if let Some(endpoint) = endpoint {
            description = format!("{description} at {endpoint}");
        }
        let inner: Arc<dyn ObjectStore> = match prefix {
            Some(prefix) => Arc::new(PrefixStore::new(s3, prefix)),
            None => Arc::new(s3),
        };
        Ok(BlobStore {
            inner,
            description: description.into(),
            handover: None,
        })
    }

    /// A store rooted at a local directory, created when missing.
    pub fn local(dir: &FsPath) -> Result<Self, std::io::Error> {
        std::fs::create_dir_all(dir)?;
        let fs = LocalFileSystem::new_with_prefix(dir).map_err(std::io::Error::other)?;
        Ok(BlobStore {
            inner: Arc::new(fs),
            description: format!("file://{}", dir.display()).into(),
            handover: None,
        })
    }

    pub fn in_memory() -> Self {
        BlobStore {
            inner: Arc::new(InMemory::new()),
            description: "memory://".into(),
            handover: None,
        }
    }

    /// Where the store lives, for logs.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Writes an object, replacing any at that key. Local writes go to a
    /// temporary file renamed into place, and S3 makes an object visible
    /// only once complete, so readers never see half an object. Objects
    /// over [`MULTIPART_THRESHOLD`] go up as multipart uploads.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let path = Path::from(key);
        if bytes.len() > MULTIPART_THRESHOLD {
            return self
                .put_multipart(&path, &bytes)
                .await
                .map_err(|e| StorageError::backend(&path, e));
        }
        self.inner
            .put(&path, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| StorageError::backend(&path, e))
    }

    async fn put_multipart(&self, path: &Path, bytes: &Bytes) -> object_store::Result<()> {
        let upload = self.inner.put_multipart(path).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_THRESHOLD);
        for chunk in bytes.chunks(MULTIPART_THRESHOLD) {
            if let Err(e) = writer.wait_for_capacity(4).await {
                let _ = writer.abort().await;
                return Err(e);
            }
            writer.write(chunk);
        }
        // `finish` aborts the upload itself when a part failed.
        writer.finish().await.map(|_| ())
    }

    /// This store, and its clones from now on, keeping what
    /// [`BlobStore::put_original`] stores in memory for
    /// [`BlobStore::take_or_get`], up to `budget_bytes` at once and each
    /// for at most `ttl`: for a process whose render loops read back the
    /// originals it stores (see `handover.rs`).
    pub fn with_handover(mut self, budget_bytes: u64, ttl: Duration) -> Self {
        self.handover = Some(Arc::new(handover::Handover::new(budget_bytes, ttl)));
        self
    }

    /// Bytes the hand-over holds now (0 without one).
    pub fn handover_bytes(&self) -> u64 {
        self.handover.as_ref().map_or(0, |h| h.held_bytes())
    }

    /// Writes a content-addressed object unless it is already there: the
    /// key is the hash, so an existing object has these very bytes.
    pub async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool, StorageError> {
        match self.size(key).await {
            Ok(size) if size == bytes.len() as u64 => Ok(false),
            Ok(_) | Err(StorageError::NotFound { .. }) => self.put(key, bytes).await.map(|()| true),
            Err(e) => Err(e),
        }
    }

    /// [`BlobStore::put_if_absent`] for an original that a render will
    /// read next: once stored, the hand-over (if any) holds its bytes for
    /// [`BlobStore::take_or_get`]. Rendered files go through
    /// `put_if_absent`: nothing reads them back, and they would only fill
    /// the hand-over's budget.
    pub async fn put_original(&self, key: &str, bytes: Bytes) -> Result<bool, StorageError> {
        let written = self.put_if_absent(key, bytes.clone()).await?;
        if let Some(handover) = &self.handover {
            handover.offer(key, &bytes);
        }
        Ok(written)
    }

    /// An object's bytes: those the hand-over holds, taken (once), when
    /// this process stored it a moment ago; else read from the store.
    pub async fn take_or_get(&self, key: &str) -> Result<Bytes, StorageError> {
        match self.handover.as_ref().and_then(|h| h.take(key)) {
            Some(bytes) => {
                metrics::counter!("easel_original_handovers_total", "from" => "memory")
                    .increment(1);
                Ok(bytes)
            }
            None => {
                if self.handover.is_some() {
                    metrics::counter!("easel_original_handovers_total", "from" => "store")
                        .increment(1);
                }
                self.get(key).await
            }
        }
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let path = Path::from(key);
        let result = self
            .inner
            .get(&path)
            .await
            .map_err(|e| StorageError::backend(&path, e))?;
        result
            .bytes()
            .await
            .map_err(|e| StorageError::backend(&path, e))
    }

    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let path = Path::from(key);
        self.inner
            .get_range(&path, range)
            .await
            .map_err(|e| StorageError::backend(&path, e))
    }

    /// The size of an object in bytes.
    pub async fn size(&self, key: &str) -> Result<u64, StorageError> {
        let path = Path::from(key);
        self.inner
            .head(&path)
            .await
            .map(|meta| meta.size)
            .map_err(|e| StorageError::backend(&path, e))
    }

    /// Deletes an object. Deleting one that is not there is not an error
    /// (S3 does not say, and a retried force-delete must succeed).
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        if let Some(handover) = &self.handover {
            handover.forget(key);
        }
        let path = Path::from(key);
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StorageError::backend(&path, e)),
        }
    }

    /// The keys under a prefix (`"renders"`, `"originals/ab"`; `""` for
    /// all), in no particular order. A prefix matches whole path segments:
    /// `"render"` does not list `renders/...`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let path = Path::from(prefix);
        let prefix = (!prefix.trim_matches('/').is_empty()).then_some(&path);
        self.inner
            .list(prefix)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(|e| StorageError::backend(&path, e))
    }

    /// As [`BlobStore::list`], with each object's last modification time:
    /// a sweep leaves young objects alone.
    pub async fn list_with_times(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, std::time::SystemTime)>, StorageError> {
        let path = Path::from(prefix);
        let prefix = (!prefix.trim_matches('/').is_empty()).then_some(&path);
        self.inner
            .list(prefix)
            .map_ok(|meta| (meta.location.to_string(), meta.last_modified.into()))
            .try_collect()
            .await
            .map_err(|e| StorageError::backend(&path, e))
    }

    /// Checks the backend answers: lists a probe prefix that is normally
    /// empty. Unlike a HEAD of a missing object, a listing fails when an S3
    /// bucket does not exist.
    pub async fn ping(&self) -> Result<(), StorageError> {
        let probe = Path::from(".easel-readyz");
        match self.inner.list_with_delimiter(Some(&probe)).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StorageError::backend(&probe, e)),
        }
    }

    /// Checks the backend takes a write: rewrites one tiny object (a full
    /// disk refuses even that; on S3 it is one small PUT). Readers never
    /// look at it.
    pub async fn probe_write(&self) -> Result<(), StorageError> {
        self.put(".easel-readyz/write-probe", Bytes::from_static(b"ok"))
            .await
    }
}

/// Decodes `%XX` escapes of a URL path (a prefix with spaces, say).
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("prefix {s:?} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

    #[test]
    fn keys_come_from_the_hash_only() {
        assert_eq!(original_key(SHA), format!("originals/ab/cd/{SHA}"));
        assert_eq!(render_key(SHA, "jpg"), format!("renders/ab/cd/{SHA}.jpg"));
        assert_eq!(
            iiif_render_key(SHA, "webp"),
            format!("iiif/ab/cd/{SHA}.webp")
        );
        let hostile = original_key("../../etc/passwd");
        assert!(
            !hostile.contains("..") && hostile.matches('/').count() == 3,
            "{hostile}"
        );
    }

    #[tokio::test]
    async fn a_local_store_round_trips_and_skips_identical_puts() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("objects").display());
        let store = BlobStore::from_url(&url).unwrap();
        let key = original_key(SHA);
        assert!(store
            .put_if_absent(&key, Bytes::from_static(b"hello"))
            .await
            .unwrap());
        assert!(!store
            .put_if_absent(&key, Bytes::from_static(b"hello"))
            .await
            .unwrap());
        assert_eq!(store.get(&key).await.unwrap(), Bytes::from_static(b"hello"));
        assert_eq!(
            store.get_range(&key, 1..3).await.unwrap(),
            Bytes::from_static(b"el")
        );
        assert_eq!(store.size(&key).await.unwrap(), 5);
        assert!(dir.path().join("objects").join(&key).is_file());
        assert!(matches!(
            store.get("nope").await,
            Err(StorageError::NotFound { .. })
        ));
        store.ping().await.unwrap();
    }

    #[tokio::test]
    async fn a_stored_original_is_handed_over_once_then_read_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let objects = dir.path().join("objects");
        let store = BlobStore::local(&objects)
            .unwrap()
            .with_handover(1024, Duration::from_secs(60));
        let key = original_key(SHA);
        let (first, second) = (Bytes::from_static(b"first"), Bytes::from_static(b"again"));
        // A rendered file is not held: nothing reads it back.
        let rendered = render_key(SHA, "jpg");
        assert!(store.put_if_absent(&rendered, first.clone()).await.unwrap());
        assert_eq!(store.handover_bytes(), 0);
        assert!(store.put_original(&key, first.clone()).await.unwrap());
        // Stored all the same: the hand-over is beside the store.
        assert_eq!(std::fs::read(objects.join(&key)).unwrap(), b"first");
        assert_eq!(store.handover_bytes(), 5);

        // A clone shares it; the file is gone behind the store's back, so
        // these bytes can only come from memory.
        std::fs::remove_file(objects.join(&key)).unwrap();
        assert_eq!(store.clone().take_or_get(&key).await.unwrap(), first);
        assert_eq!(store.handover_bytes(), 0);
        assert!(matches!(
            store.take_or_get(&key).await,
            Err(StorageError::NotFound { .. })
        ));

        // What the store deletes is not handed out afterwards.
        store.put_original(&key, second).await.unwrap();
        store.delete(&key).await.unwrap();
        assert_eq!(store.handover_bytes(), 0);
        assert!(matches!(
            store.take_or_get(&key).await,
            Err(StorageError::NotFound { .. })
        ));

        // Without a hand-over nothing is held; take_or_get reads the store.
        let plain = BlobStore::local(&objects).unwrap();
        plain.put_original(&key, first.clone()).await.unwrap();
        assert_eq!(plain.handover_bytes(), 0);
        assert_eq!(plain.take_or_get(&key).await.unwrap(), first);
        assert_eq!(plain.take_or_get(&key).await.unwrap(), first);
    }

    #[tokio::test]
    async fn delete_and_list_work_on_local_and_memory_stores() {
        let dir = tempfile::tempdir().unwrap();
        for store in [
            BlobStore::in_memory(),
            BlobStore::local(&dir.path().join("objects")).unwrap(),
        ] {
            store.ping().await.unwrap();
            let (a, b) = (original_key(SHA), render_key(SHA, "jpg"));
            store.put(&a, Bytes::from_static(b"a")).await.unwrap();
            store.put(&b, Bytes::from_static(b"b")).await.unwrap();
            let mut all = store.list("").await.unwrap();
            all.sort();
            assert_eq!(all, vec![a.clone(), b.clone()], "{}", store.describe());
            assert_eq!(store.list("renders").await.unwrap(), vec![b.clone()]);
            assert_eq!(store.list("renders/").await.unwrap(), vec![b.clone()]);
            assert!(store.list("render").await.unwrap().is_empty());
            assert!(store.list("nothing/here").await.unwrap().is_empty());
            store.delete(&b).await.unwrap();
            store.delete(&b).await.unwrap(); // already gone: still fine
            assert!(matches!(
                store.get(&b).await,
                Err(StorageError::NotFound { .. })
            ));
            assert_eq!(store.list("").await.unwrap(), vec![a.clone()]);
            store.ping().await.unwrap();
        }
    }

    #[tokio::test]
    async fn large_objects_go_up_in_parts_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(&dir.path().join("objects")).unwrap();
        let big: Vec<u8> = (0..MULTIPART_THRESHOLD * 2 + 12345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let big = Bytes::from(big);
        store.put("big", big.clone()).await.unwrap();
        assert_eq!(store.size("big").await.unwrap(), big.len() as u64);
        assert_eq!(store.get("big").await.unwrap(), big);
        let r = MULTIPART_THRESHOLD as u64 - 3..MULTIPART_THRESHOLD as u64 + 5;
        assert_eq!(
            store.get_range("big", r.clone()).await.unwrap(),
            big.slice(r.start as usize..r.end as usize)
        );
    }

    #[test]
    fn s3_urls_name_a_bucket_and_an_optional_prefix() {
        let opts = [
            ("aws_endpoint", "http://127.0.0.1:9"),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "k"),
            ("aws_secret_access_key", "s"),
            ("aws_region", "us-east-1"),
        ];
        let store = BlobStore::from_url_with_options("s3://bucket", opts).unwrap();
        assert_eq!(store.describe(), "s3://bucket at http://127.0.0.1:9");
        let store = BlobStore::from_url_with_options("s3://bucket/a/b%20c/", opts).unwrap();
        assert_eq!(store.describe(), "s3://bucket/a/b c at http://127.0.0.1:9");
        for bad in ["s3:///no-bucket", "s3://b?region=x", "s3://user:pw@b"] {
            let err = BlobStore::from_url_with_options(bad, opts).unwrap_err();
            assert!(
                matches!(err, StorageError::InvalidUrl { .. }),
                "{bad}: {err}"
            );
        }
        let err = BlobStore::from_url_with_options("s3://b", [("no_such_key", "1")]).unwrap_err();
        assert!(err.to_string().contains("no_such_key"), "{err}");
        let err = BlobStore::from_url_with_options("memory://", [("aws_region", "x")]).unwrap_err();
        assert!(err.to_string().contains("options are for s3"), "{err}");
    }

    #[tokio::test]
    async fn only_transport_failures_count_as_unavailable() {
        let store = BlobStore::in_memory();
        let missing = store.get("nope").await.unwrap_err();
        assert!(!missing.is_unavailable());
        let invalid = BlobStore::from_url("ftp://x").unwrap_err();
        assert!(!invalid.is_unavailable());
        let refused = StorageError::Backend {
            key: "k".into(),
            source: object_store::Error::Generic {
                store: "S3",
                source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            },
        };
        assert!(refused.is_unavailable());
        let denied = StorageError::Backend {
            key: "k".into(),
            source: object_store::Error::PermissionDenied {
                path: "k".into(),
                source: "403 Forbidden".into(),
            },
        };
        assert!(!denied.is_unavailable());
        assert!(!denied.is_outage());
        assert!(!refused.is_full() && refused.is_outage());
    }

    #[tokio::test]
    async fn a_full_disk_is_an_outage_of_its_own() {
        // A local store on a full disk says ENOSPC through object_store's
        // own error types; a quota says EDQUOT.
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let full = std::fs::File::options()
            .write(true)
            .open("/dev/full")
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"))
            .unwrap_err();
        assert_eq!(full.raw_os_error(), Some(ENOSPC));
        for io in [full, std::io::Error::from_raw_os_error(EDQUOT)] {
            let error = StorageError::Backend {
                key: "k".into(),
                source: object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(io),
                },
            };
            assert!(error.is_full() && error.is_outage(), "{error}");
        }
        // S3-compatible services: MinIO's 507, Ceph's quota.
        for text in [
            "Server returned non-2xx status code: 507 Insufficient Storage: ",
            "Server returned non-2xx status code: 403 Forbidden: <Error><Code>QuotaExceeded</Code></Error>",
        ] {
            let error = StorageError::Backend {
                key: "k".into(),
                source: object_store::Error::Generic {
                    store: "S3",
                    source: text.into(),
                },
            };
            assert!(error.is_full(), "{text}");
        }
        assert!(!store.get("nope").await.unwrap_err().is_full());
    }

    #[test]
    fn unknown_schemes_are_refused_with_a_reason() {
        let err = BlobStore::from_url("ftp://x/y").unwrap_err();
        assert!(err.to_string().contains("unsupported scheme"), "{err}");
        assert!(BlobStore::from_url("not a url").is_err());
    }
}
