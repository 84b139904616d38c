//! The blob store against a real S3-compatible server.
//!
//! Set `EASEL_TEST_S3_URL=s3://bucket` and the `AWS_*` variables (endpoint,
//! credentials, region); `scripts/ci-services.sh` starts moto and writes
//! them to `target/ci-services.env`. Each test works under its own unique
//! prefix in the bucket and removes what it wrote. Without the variable the
//! tests say loudly that they skipped, except under `CI=true`, where a
//! missing server is a failure.
//!
//! The unreachable-endpoint tests need no server and always run.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use easel_storage::{original_key, render_key, BlobStore, StorageError, MULTIPART_THRESHOLD};

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The S3 store under a prefix no other test or run uses, or `None` when
/// no server is configured (a panic under CI).
fn s3_store(test: &str) -> Option<(BlobStore, String)> {
    let base = easel_test_support::required(test, &[easel_test_support::S3_VAR])?.remove(0);
    let prefix = format!(
        "easel-storage-tests/{test}-{}",
        easel_test_support::unique_suffix()
    );
    let url = format!("{}/{prefix}", base.trim_end_matches('/'));
    let store = BlobStore::from_url(&url).unwrap_or_else(|e| panic!("open {url}: {e}"));
    Some((store, url))
}

async fn remove_everything(store: &BlobStore) {
    for key in store.list("").await.unwrap() {
        store.delete(&key).await.unwrap();
    }
    assert!(store.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn s3_put_get_range_put_if_absent_delete_list() {
    let Some((store, url)) = s3_store("basic") else {
        return;
    };
    eprintln!("S3 store: {}", store.describe());
    store.ping().await.unwrap();

    let original = original_key(SHA);
    let render = render_key(SHA, "jpg");
    assert!(matches!(
        store.get(&original).await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        store.size(&original).await,
        Err(StorageError::NotFound { .. })
    ));

    assert!(store
        .put_if_absent(&original, Bytes::from_static(b"hello world"))
        .await
        .unwrap());
    assert!(!store
        .put_if_absent(&original, Bytes::from_static(b"hello world"))
        .await
        .unwrap());
    store
        .put(&render, Bytes::from_static(b"rendered"))
        .await
        .unwrap();

    assert_eq!(
        store.get(&original).await.unwrap(),
        Bytes::from_static(b"hello world")
    );
    assert_eq!(
        store.get_range(&original, 6..11).await.unwrap(),
        Bytes::from_static(b"world")
    );
    assert_eq!(store.size(&original).await.unwrap(), 11);

    // Keys are relative to the prefix: a second handle on the same URL sees
    // them, one on another prefix does not.
    let again = BlobStore::from_url(&url).unwrap();
    let mut keys = again.list("").await.unwrap();
    keys.sort();
    assert_eq!(keys, vec![original.clone(), render.clone()]);
    assert_eq!(store.list("renders").await.unwrap(), vec![render.clone()]);
    assert!(store.list("render").await.unwrap().is_empty());
    let (other, _) = s3_store("basic-other").unwrap();
    assert!(other.list("").await.unwrap().is_empty());
    assert!(matches!(
        other.get(&original).await,
        Err(StorageError::NotFound { .. })
    ));

    store.delete(&render).await.unwrap();
    store.delete(&render).await.unwrap(); // already gone: still fine
    assert!(matches!(
        store.get(&render).await,
        Err(StorageError::NotFound { .. })
    ));
    assert_eq!(store.list("").await.unwrap(), vec![original.clone()]);

    remove_everything(&store).await;
}

#[tokio::test]
async fn s3_large_objects_go_up_in_parts() {
    let Some((store, _)) = s3_store("multipart") else {
        return;
    };
    let big: Vec<u8> = (0..MULTIPART_THRESHOLD * 2 + 4321)
        .map(|i| (i * 13 % 251) as u8)
        .collect();
    let big = Bytes::from(big);
    let key = original_key(SHA);
    assert!(store.put_if_absent(&key, big.clone()).await.unwrap());
    assert_eq!(store.size(&key).await.unwrap(), big.len() as u64);
    assert_eq!(store.get(&key).await.unwrap(), big);
    let edge = MULTIPART_THRESHOLD as u64;
    assert_eq!(
        store.get_range(&key, edge - 2..edge + 2).await.unwrap(),
        big.slice(edge as usize - 2..edge as usize + 2)
    );
    remove_everything(&store).await;
}

#[tokio::test]
async fn s3_missing_bucket_fails_ping_but_is_not_unavailable() {
    if s3_store("no-bucket").is_none() {
        return;
    }
    let store = BlobStore::from_url("s3://easel-no-such-bucket-for-tests").unwrap();
    let err = store.ping().await.unwrap_err();
    assert!(!err.is_unavailable(), "{err}");
}

/// Settings that point at `endpoint` whatever the environment says.
fn options(endpoint: &str, timeout: &str) -> Vec<(&'static str, String)> {
    vec![
        ("aws_endpoint", endpoint.to_string()),
        ("aws_allow_http", "true".into()),
        ("aws_access_key_id", "testing".into()),
        ("aws_secret_access_key", "testing".into()),
        ("aws_region", "us-east-1".into()),
        ("aws_timeout", timeout.into()),
    ]
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_fast_as_unavailable() {
    // Nothing listens on port 1: every connect is refused.
    let store =
        BlobStore::from_url_with_options("s3://easel-test/p", options("http://127.0.0.1:1", "30s"))
            .unwrap();
    let started = Instant::now();
    let err = store
        .put("k", Bytes::from_static(b"x"))
        .await
        .expect_err("nothing listens on port 1");
    let elapsed = started.elapsed();
    eprintln!("refused put failed after {elapsed:?}: {err}");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");

    let started = Instant::now();
    for err in [
        store.get("k").await.unwrap_err(),
        store.ping().await.unwrap_err(),
        store.delete("k").await.unwrap_err(),
        store.list("").await.unwrap_err(),
    ] {
        assert!(err.is_unavailable(), "{err:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_as_unavailable() {
    // Accepts connections (the kernel does, via the backlog) and never
    // answers: each attempt hits the request timeout, and the retries stop
    // after the bounded retry window.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let store =
        BlobStore::from_url_with_options("s3://easel-test", options(&endpoint, "300ms")).unwrap();
    let started = Instant::now();
    let err = store.get("k").await.expect_err("the server never answers");
    let elapsed = started.elapsed();
    eprintln!("silent get failed after {elapsed:?}: {err}");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    drop(listener);
}
