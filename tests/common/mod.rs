//! `TestApp`: the real service (API + optional embedded worker) on port 0,
//! in its own temp dir with a real SQLite file and filesystem store, plus
//! one helper per endpoint.

#![allow(dead_code)]

pub mod backends;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use easel_api::{ApiConfig, AppState, Application};
use easel_catalog::Catalog;
use easel_render::{Limits, Settings};
use easel_storage::BlobStore;
use easel_worker::{Worker, WorkerConfig};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;
use tokio::sync::{oneshot, watch, Notify};

pub struct TestOptions {
    /// Embedded worker loops; 0 to drive the queue by hand.
    pub workers: usize,
    pub max_bytes: u64,
    pub max_pixels: u64,
    pub lease: Duration,
    /// Origin URLs may point at loopback (the tests' own origin servers).
    pub allow_private_origins: bool,
    pub iiif: easel_api::iiif::IiifConfig,
    /// Grace period and delete delay, for the worker and the API alike.
    pub retention: easel_catalog::Retention,
    /// Runs a reaper every this often (deleting what is due); `None`: the
    /// test reaps by hand with [`TestApp::reaper`].
    pub reap_every: Option<Duration>,
    /// The server's feed byte budget.
    pub feed_max_bytes: u64,
    /// How long the API reuses a file URL's lookup. Zero by default: most
    /// tests change rows behind the API's back (as another node would) and
    /// look at once; the serve cache's own tests turn it on.
    pub lookup_ttl: Duration,
    /// The API's file cache budget.
    pub serve_cache_bytes: u64,
    /// How long `?wait=true` waits, and how often it reads the image again
    /// when no commit woke it.
    pub wait_timeout: Duration,
    pub wait_poll: Duration,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            workers: 1,
            max_bytes: Limits::default().max_bytes,
            max_pixels: Limits::default().max_pixels,
            lease: Duration::from_secs(30),
            allow_private_origins: true,
            iiif: Default::default(),
            retention: easel_catalog::Retention::default(),
            reap_every: None,
            feed_max_bytes: Settings::default().feed_max_bytes,
            lookup_ttl: Duration::ZERO,
            serve_cache_bytes: easel_api::serve_cache::DEFAULT_CACHE_BYTES,
            // Generous: the machine running the tests may be busy compiling.
            wait_timeout: Duration::from_secs(300),
            wait_poll: easel_api::DEFAULT_WAIT_POLL,
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    /// Sends a key with every scope for bucket `default`.
    pub client: reqwest::Client,
    /// Sends no key.
    pub anonymous: reqwest::Client,
    pub key: String,
    pub dir: tempfile::TempDir,
    pub catalog: Arc<dyn Catalog>,
    pub store: BlobStore,
    /// A worker that is not looping: call `run_once` to drive the queue.
    pub worker: Worker,
    /// Deletes what is due: call `run_once(now)` to reap by hand.
    pub reaper: easel_worker::reaper::Reaper,
    stop_server: Option<oneshot::Sender<()>>,
    stop_workers: watch::Sender<bool>,
}

/// A client that sends `Authorization: Bearer <key>` on every request.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

impl TestApp {
    /// Makes the default bucket private: no style file is public
    /// (`public_max_side` 0), so strangers see what a missing id shows.
    pub async fn make_default_bucket_private(&self) {
        let private = easel_catalog::BucketSettings {
            public_max_side: Some(0),
            feed_max_bytes: None,
        };
        self.catalog
            .set_bucket_settings("default", private, chrono::Utc::now())
            .await
            .unwrap();
    }

    /// A new key for `bucket` with `scopes`, and a client sending it.
    pub async fn key_for(&self, bucket: &str, scopes: &[&str]) -> (String, reqwest::Client) {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let (key, _) =
            easel_app::keys::create_key(self.catalog.as_ref(), bucket, &scopes, &[], None)
                .await
                .expect("create a key");
        let client = client_with_key(&key);
        (key, client)
    }

    /// A new key for `bucket` holding `roles` and no scope, and a client
    /// sending it.
    pub async fn role_key_for(&self, bucket: &str, roles: &[&str]) -> (String, reqwest::Client) {
        let roles: Vec<String> = roles.iter().map(|s| s.to_string()).collect();
        let (key, _) =
            easel_app::keys::create_key(self.catalog.as_ref(), bucket, &[], &roles, None)
                .await
                .expect("create a key");
        let client = client_with_key(&key);
        (key, client)
    }

    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(TestOptions::default()).await
    }

    /// An API whose uploads stay queued until a test renders them.
    pub async fn spawn_without_workers() -> TestApp {
        TestApp::spawn_with(TestOptions {
            workers: 0,
            ..TestOptions::default()
        })
        .await
    }

    pub async fn spawn_with(options: TestOptions) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = backends::test_database_url(dir.path()).await;
        let catalog = easel_catalog::connect(&database_url)
            .await
            .expect("open the catalogue");
        catalog.migrate().await.expect("migrate");
        let store = BlobStore::from_url(&backends::test_store_url(dir.path())).expect("store");
        let settings = Arc::new(Settings {
            limits: Limits {
                max_bytes: options.max_bytes,
                max_pixels: options.max_pixels,
            },
            feed_max_bytes: options.feed_max_bytes,
            ..Settings::default()
        });
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .expect("pool"),
        );
        let wake = Arc::new(Notify::new());
        let serve_cache = easel_api::serve_cache::ServeCache::new(
            options.serve_cache_bytes,
            options.lookup_ttl,
            easel_api::serve_cache::DEFAULT_LOOKUP_ENTRIES,
        );
        let invalidate = serve_cache.clone();
        let worker = Worker::new(
            "test-worker",
            catalog.clone(),
            store.clone(),
            settings.clone(),
            pool,
            WorkerConfig {
                lease: options.lease,
                poll_interval: Duration::from_millis(50),
                origin: easel_origin::OriginConfig {
                    allow_private: options.allow_private_origins,
                    total_timeout: Duration::from_secs(10),
                    ..easel_origin::OriginConfig::default()
                },
                retention: options.retention,
                on_commit: easel_worker::OnCommit::new(move |_| invalidate.invalidate()),
                ..WorkerConfig::default()
            },
        )
        .expect("worker")
        .with_wake(wake.clone());
        let (stop_workers, stopped) = watch::channel(false);
        for i in 0..options.workers {
            tokio::spawn(worker.named(format!("embedded-{i}")).run(stopped.clone()));
        }
        let reaper =
            easel_worker::reaper::Reaper::new(catalog.clone(), store.clone(), options.retention);
        if let Some(every) = options.reap_every {
            tokio::spawn(reaper.clone().run(every, stopped.clone()));
        }

        let state = AppState {
            catalog: catalog.clone(),
            store: store.clone(),
            settings,
            config: Arc::new(ApiConfig {
                public_url: String::new(),
                retention: options.retention,
                wait_timeout: options.wait_timeout,
                wait_poll: options.wait_poll,
                max_page_size: 100,
                iiif: options.iiif.clone(),
                serve_cache,
                ..ApiConfig::default()
            }),
            wake,
        };
        let app = Application::bind("127.0.0.1:0".parse().expect("addr"), state)
            .await
            .expect("bind");
        let addr = app.local_addr().expect("local addr");
        let (stop_server, stopped_server) = oneshot::channel::<()>();
        tokio::spawn(app.run(async move {
            let _ = stopped_server.await;
        }));
        let (key, _) = easel_app::keys::create_key(
            catalog.as_ref(),
            "default",
            &[
                "image:read".into(),
                "image:write".into(),
                "image:delete".into(),
            ],
            &[],
            Some("tests".into()),
        )
        .await
        .expect("create a key");
        TestApp {
            addr,
            base: format!("http://{addr}"),
            client: client_with_key(&key),
            anonymous: reqwest::Client::new(),
            key,
            dir,
            catalog,
            store,
            worker,
            reaper,
            stop_server: Some(stop_server),
            stop_workers,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /v1/images` as multipart: `file` plus text fields.
    pub async fn upload_multipart(
        &self,
        bytes: Vec<u8>,
        fields: &[(&str, &str)],
        query: &str,
    ) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("upload.bin"),
        );
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        self.client
            .post(self.url(&format!("/v1/images{query}")))
            .multipart(form)
            .send()
            .await
            .expect("upload request")
    }

    /// `POST /v1/images` with the file as the raw body.
    pub async fn upload_raw(
        &self,
        bytes: Vec<u8>,
        content_type: &str,
        query: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/v1/images{query}")))
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .expect("upload request")
    }

    /// Uploads with `?wait=true` and returns the finished (or failed) resource.
    pub async fn upload_and_wait(&self, bytes: Vec<u8>) -> Value {
        let response = self.upload_multipart(bytes, &[], "?wait=true").await;
        assert_eq!(
            response.status(),
            201,
            "wait=true answers 201 once rendered"
        );
        response.json().await.expect("json")
    }

    /// `method path` with `body`, as `client` (whose key it sends).
    pub async fn send_as(
        &self,
        client: &reqwest::Client,
        method: Method,
        path: &str,
        body: Body,
    ) -> reqwest::Response {
        let request = client.request(method, self.url(path));
        let request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Image(bytes, content_type) => {
                request.header("content-type", content_type).body(bytes)
            }
        };
        request.send().await.expect("request")
    }

    /// As [`TestApp::send_as`] with the key of every scope.
    pub async fn send(&self, method: Method, path: &str, body: Body) -> reqwest::Response {
        self.send_as(&self.client, method, path, body).await
    }

    /// `GET /v1/images/{id}`: 200, and the resource.
    pub async fn image_json(&self, id: &str) -> Value {
        let response = self.get_image(id).await;
        assert_eq!(response.status(), 200, "GET /v1/images/{id}");
        response.json().await.expect("json")
    }

    /// `PATCH /v1/images/{id}` with `body`: 200, and the resource.
    pub async fn patch_image(&self, id: &str, body: Value) -> Value {
        let path = format!("/v1/images/{id}");
        let response = self
            .send(Method::PATCH, &path, Body::Json(body.clone()))
            .await;
        assert_eq!(response.status(), 200, "PATCH {path} {body}");
        response.json().await.expect("json")
    }

    pub async fn get_image(&self, id: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/v1/images/{id}")))
            .send()
            .await
            .expect("get image")
    }

    pub async fn get_original(&self, id: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/v1/images/{id}")))
            .header("accept", "application/octet-stream")
            .send()
            .await
            .expect("get original")
    }

    pub async fn get_assets(&self, id: &str) -> Value {
        let response = self
            .client
            .get(self.url(&format!("/v1/images/{id}/assets")))
            .send()
            .await
            .expect("get assets");
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    pub async fn get_style(&self, id: &str, style: &str, headers: HeaderMap) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/v1/images/{id}/styles/{style}")))
            .headers(headers)
            .send()
            .await
            .expect("get style")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("get")
    }

    /// Polls the resource until it leaves `ingesting`.
    pub async fn wait_until_done(&self, id: &str) -> Value {
        for _ in 0..2400 {
            let image = self.image_json(id).await;
            if image["status"] != "ingesting" {
                return image;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("image {id} still ingesting after 120 s");
    }

    pub fn objects_dir(&self) -> PathBuf {
        self.dir.path().join("objects")
    }

    /// Every stored object under a prefix (`originals`, `renders`).
    /// Keys of the objects under `prefix`, from the store itself (a
    /// directory or an S3 prefix alike).
    pub async fn stored_keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = self.store.list(prefix).await.expect("list the store");
        keys.sort();
        keys
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.stop_workers.send(true);
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
    }
}

/// A request's body for [`TestApp::send`].
pub enum Body {
    None,
    Json(Value),
    Image(Vec<u8>, &'static str),
}

/// The asset of `style` in an Image resource.
pub fn asset<'a>(image: &'a Value, style: &str) -> &'a Value {
    image["assets"]
        .as_array()
        .expect("assets")
        .iter()
        .find(|a| a["style"] == style)
        .unwrap_or_else(|| panic!("no {style} asset in {image}"))
}

/// The id of the Image resource in a response body.
pub async fn id_of(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("an Image resource");
    body["id"].as_str().expect("an id").to_string()
}

/// A real-world fixture from `fixtures/` (sources in fixtures/SOURCES.md).
pub fn fixture(relative: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A PNG header claiming `width` x `height` with an empty IDAT: a few dozen
/// bytes that would need gigabytes if anyone decoded them.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &[]);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// Width and height from a file's header.
pub fn dimensions(bytes: &[u8]) -> (u32, u32) {
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .expect("guess format")
        .into_dimensions()
        .expect("dimensions")
}

pub fn header(name: &'static str, value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(name, value.parse().expect("header value"));
    headers
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "problem+json content type"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], code, "code in {body}");
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

/// A child process killed (by its own handle) when the test ends, pass or fail.
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    /// The base URL in the first line `easel serve` prints on its piped
    /// stdout (`easel: listening on <base URL>`), or the line it printed
    /// instead, for the caller to show with its log.
    pub async fn listening_on(&mut self) -> Result<String, String> {
        use std::io::{BufRead, BufReader};
        let stdout = self.0.stdout.take().expect("stdout is piped");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .expect("join")
        .expect("read stdout");
        match line.trim().strip_prefix("easel: listening on ") {
            Some(base) => Ok(base.to_string()),
            None => Err(line),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real `easel` binary with `args`, configured by `env` only.
pub fn easel(args: &[&str], env: &[(&str, &Path)], extra: &[(&str, &str)]) -> ChildGuard {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_easel"));
    command
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    for (key, value) in extra {
        command.env(key, value);
    }
    ChildGuard(command.spawn().expect("spawn easel"))
}

/// `easel keys create` against a data dir: a key with every scope for
/// bucket `default`, and a client that sends it.
pub fn easel_key(data: &Path) -> (String, reqwest::Client) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args([
            "keys",
            "create",
            "--bucket",
            "default",
            "--scopes",
            "image:read,image:write,image:delete",
        ])
        .env("EASEL_DATA_DIR", data)
        .output()
        .expect("run easel keys create");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert!(key.starts_with("easel_"), "printed the key: {key:?}");
    let client = client_with_key(&key);
    (key, client)
}

/// The value of one series (name and labels, as `/metrics` prints them)
/// in a Prometheus text page; 0 when the page has no such line yet.
pub fn metric_in(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Starts `easel serve` on port 0 and returns it with its base URL, read
/// from the line it prints on stdout.
pub async fn easel_serve(data: &Path, extra: &[(&str, &str)]) -> (ChildGuard, String) {
    let mut extra = extra.to_vec();
    extra.push(("EASEL_LISTEN", "127.0.0.1:0"));
    let mut child = easel(&["serve"], &[("EASEL_DATA_DIR", data)], &extra);
    let base = child
        .listening_on()
        .await
        .unwrap_or_else(|line| panic!("unexpected first line {line:?}"));
    (child, base)
}

/// True when the real PostgreSQL and S3 services are configured
/// (`EASEL_TEST_DATABASE_URL` and `EASEL_TEST_S3_URL`, as
/// `scripts/ci-services.sh` writes them). Otherwise prints a loud
/// `SKIPPED` line and returns false, or panics when `CI=true`: CI must
/// never pass a scale-out test it did not run.
pub fn postgres_and_s3_or_skip(test: &str) -> bool {
    use easel_test_support::{required, DATABASE_VAR, S3_VAR};
    required(test, &[DATABASE_VAR, S3_VAR]).is_some()
}
