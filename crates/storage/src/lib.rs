//! Easel's blob store port: the only place that knows object keys.
//!
//! Keys are derived from content hashes alone, never from names a user sent,
//! so a key cannot escape the store and identical bytes share one object.
//! The backend is any `object_store` implementation chosen by URL:
//! `file:///abs/path` (the embedded default) or `memory://` (tests); S3 and
//! friends join by adding their `object_store` feature and a branch in
//! [`BlobStore::from_url`].

use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use url::Url;

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
    description: String,
}

impl BlobStore {
    /// Opens the store a URL names, creating a local directory if needed.
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        let invalid = |reason: String| StorageError::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| invalid("a file URL needs an absolute path".into()))?;
                Self::local(&dir).map_err(|e| invalid(e.to_string()))
            }
            "memory" => Ok(Self::in_memory()),
            other => Err(invalid(format!(
                "unsupported scheme {other:?}: use file:///absolute/path or memory://"
            ))),
        }
    }

    /// A store rooted at a local directory, created when missing.
    pub fn local(dir: &FsPath) -> Result<Self, std::io::Error> {
        std::fs::create_dir_all(dir)?;
        let fs = LocalFileSystem::new_with_prefix(dir).map_err(std::io::Error::other)?;
        Ok(BlobStore {
            inner: Arc::new(fs),
            description: format!("file://{}", dir.display()),
        })
    }

    pub fn in_memory() -> Self {
        BlobStore {
            inner: Arc::new(InMemory::new()),
            description: "memory://".into(),
        }
    }

    /// Where the store lives, for logs.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Writes an object. Local writes go to a temporary file renamed into
    /// place, so readers never see half an object.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let path = Path::from(key);
        self.inner
            .put(&path, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| StorageError::backend(&path, e))
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

    /// Checks the backend answers: a missing probe object is an answer.
    pub async fn ping(&self) -> Result<(), StorageError> {
        match self.size(".easel-readyz").await {
            Ok(_) | Err(StorageError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

    #[test]
    fn keys_come_from_the_hash_only() {
        assert_eq!(original_key(SHA), format!("originals/ab/cd/{SHA}"));
        assert_eq!(render_key(SHA, "jpg"), format!("renders/ab/cd/{SHA}.jpg"));
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

    #[test]
    fn unknown_schemes_are_refused_with_a_reason() {
        let err = BlobStore::from_url("ftp://x/y").unwrap_err();
        assert!(err.to_string().contains("unsupported scheme"), "{err}");
        assert!(BlobStore::from_url("not a url").is_err());
    }
}
