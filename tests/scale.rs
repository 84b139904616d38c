//! Scale-out: several `easel worker` processes on one PostgreSQL and one S3
//! store, a worker killed mid-render, and PostgreSQL / S3 outages under
//! upload load.
//!
//! Every test here starts the real binary as separate processes and needs
//! the real services (`scripts/ci-services.sh`, then
//! `set -a; . target/ci-services.env; set +a`). Without them each test prints
//! `SKIPPED` and passes, unless `CI=true`, where it fails.
//!
//! The outage test never touches the shared services: it starts its own
//! PostgreSQL cluster (initdb + pg_ctl, as the `postgres` user when root)
//! and its own moto_server, stops the first with `pg_ctl stop -m fast` and
//! freezes the second with SIGSTOP (moto keeps objects in memory, so it is
//! paused, not killed).
//!
//! The tests of this file run one at a time (a lock): the throughput test
//! compares wall-clock times and must not share the cores with the others.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::backends::{test_database_url, test_store_url};
use common::{client_with_key, postgres_and_s3_or_skip, ChildGuard};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};

// Async-aware: each test runs on its own runtime and holds this across
// awaits; a panicking holder simply releases it.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// Styles of an image whose centred square is under 3000: the original
/// plus stripped-original, regular, thumb, square-400/640/888 and itunes.
const SMALL_IMAGE_ASSETS: i64 = 8;
/// The same plus square-3000.
const LARGE_IMAGE_ASSETS: i64 = 9;

// ---------------------------------------------------------------------------
// Processes

/// The environment of one deployment: its database, store and data dir.
#[derive(Clone)]
struct Deployment {
    data: PathBuf,
    database_url: String,
    store_url: String,
    logs: PathBuf,
    /// Extra variables for every process (e.g. another AWS_ENDPOINT).
    extra: Vec<(String, String)>,
}

impl Deployment {
    async fn fresh(dir: &Path) -> Deployment {
        Deployment {
            data: dir.join("data"),
            database_url: test_database_url(dir).await,
            store_url: test_store_url(dir),
            logs: dir.to_path_buf(),
            extra: Vec::new(),
        }
    }

    /// `easel <args>` with this deployment's env plus `vars`; stdout piped,
    /// stderr (the log) in `<logs>/<log>.log`.
    fn spawn(&self, args: &[&str], vars: &[(&str, &str)], log: &str) -> ChildGuard {
        let log_path = self.logs.join(format!("{log}.log"));
        let log_file = std::fs::File::create(&log_path).expect("create a log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_easel"));
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .env("EASEL_DATA_DIR", &self.data)
            .env("EASEL_DATABASE_URL", &self.database_url)
            .env("EASEL_STORE_URL", &self.store_url)
            .env("RUST_LOG", "info")
            .env("EASEL_LOG_FORMAT", "json");
        for (key, value) in &self.extra {
            command.env(key, value);
        }
        for (key, value) in vars {
            command.env(key, value);
        }
        ChildGuard(command.spawn().expect("spawn easel"))
    }

    /// `easel serve` on port 0; returns it and its base URL.
    async fn serve(&self, vars: &[(&str, &str)]) -> (ChildGuard, String) {
        let mut vars = vars.to_vec();
        vars.push(("EASEL_LISTEN", "127.0.0.1:0"));
        let mut child = self.spawn(&["serve"], &vars, "serve");
        let base = child.listening_on().await.unwrap_or_else(|line| {
            panic!(
                "unexpected first line {line:?}; log:
{}",
                self.log("serve")
            )
        });
        (child, base)
    }

    /// `easel worker` with one loop and one render thread.
    fn worker(&self, name: &str, vars: &[(&str, &str)]) -> ChildGuard {
        let mut all = vec![("EASEL_WORKERS", "1"), ("EASEL_THREADS", "1")];
        all.extend_from_slice(vars);
        self.spawn(&["worker"], &all, name)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// A key with every scope for bucket `default`.
    async fn key(&self) -> String {
        let catalog = easel_catalog::connect(&self.database_url)
            .await
            .expect("open the catalogue");
        catalog.migrate().await.expect("migrate");
        let scopes = ["image:read", "image:write", "image:delete"].map(String::from);
        let (key, _) = easel_app::keys::create_key(catalog.as_ref(), "default", &scopes, &[], None)
            .await
            .expect("create a key");
        key
    }

    async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.database_url)
            .await
            .expect("connect to the test database")
    }
}

/// How many jobs a worker's (JSON) log says it claimed.
fn claims_in(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("\"message\":\"claimed\""))
        .count()
}

/// Whether a worker's (JSON) log has `message` about job `job`.
fn logged_job(log: &str, message: &str, job: i64) -> bool {
    log.lines().any(|l| {
        l.contains(&format!("\"message\":\"{message}\""))
            && (l.contains(&format!("\"job\":{job},")) || l.contains(&format!("\"job\":{job}}}")))
    })
}

// ---------------------------------------------------------------------------
// Images and requests

/// A small JPEG whose pixels depend on `seed`: every upload is a different
/// original, so nothing is shared by content addressing.
fn distinct_jpeg(seed: u32, side: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(side, side, |x, y| {
        image::Rgb([
            (x.wrapping_mul(3).wrapping_add(seed)) as u8,
            (y.wrapping_mul(5).wrapping_add(seed.wrapping_mul(7))) as u8,
            ((x ^ y).wrapping_add(seed.wrapping_mul(13)) ^ (seed >> 8)) as u8,
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&image)
        .expect("encode a JPEG");
    out
}

async fn upload(client: &reqwest::Client, base: &str, bytes: Vec<u8>) -> reqwest::Response {
    client
        .post(format!("{base}/v1/images"))
        .header("content-type", "image/jpeg")
        .body(bytes)
        .send()
        .await
        .expect("upload request")
}

/// Uploads every image, `parallel` at a time; returns their ids in order.
async fn upload_all(
    client: &reqwest::Client,
    base: &str,
    images: Vec<Vec<u8>>,
    parallel: usize,
) -> Vec<String> {
    let permits = Arc::new(tokio::sync::Semaphore::new(parallel));
    let tasks: Vec<_> = images
        .into_iter()
        .map(|bytes| {
            let (client, base) = (client.clone(), base.to_string());
            let permits = permits.clone();
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore");
                let response = upload(&client, &base, bytes).await;
                assert_eq!(response.status(), 202, "upload accepted");
                let body: Value = response.json().await.expect("json");
                body["id"].as_str().expect("an id").to_string()
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(tasks.len());
    for task in tasks {
        ids.push(task.await.expect("upload task"));
    }
    ids
}

/// Waits until no image of the database is `ingesting`.
async fn wait_all_rendered(pool: &PgPool, limit: Duration) {
    let started = Instant::now();
    loop {
        let (left,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM images WHERE status = 'ingesting'")
                .fetch_one(pool)
                .await
                .expect("count ingesting images");
        if left == 0 {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{left} image(s) still ingesting after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every image finished, exactly one job each (done, with `attempts` as
/// given, 1 unless listed in `expected_attempts`), and exactly one asset
/// row per style with `assets_per_image` rows.
async fn assert_rendered_once(
    pool: &PgPool,
    ids: &[String],
    assets_per_image: i64,
    expected_attempts: &[(i64, i64)],
) {
    let (images, finished): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'finished') FROM images")
            .fetch_one(pool)
            .await
            .expect("count images");
    assert_eq!(images, ids.len() as i64, "one image row per upload");
    assert_eq!(finished, images, "every image finished");

    let jobs: Vec<(i64, String, String, i64, Option<String>)> =
        sqlx::query_as("SELECT id, image_id, status, attempts, lease_owner FROM jobs ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("read jobs");
    assert_eq!(jobs.len(), ids.len(), "exactly one job per image");
    let mut seen = std::collections::HashSet::new();
    for (id, image_id, status, attempts, owner) in &jobs {
        assert!(
            seen.insert(image_id.clone()),
            "image {image_id} has two jobs"
        );
        assert_eq!(status, "done", "job {id} of {image_id}");
        assert!(owner.is_none(), "job {id} released its lease");
        let expected = expected_attempts
            .iter()
            .find(|(job, _)| job == id)
            .map_or(1, |(_, a)| *a);
        assert_eq!(
            *attempts, expected,
            "job {id} of {image_id}: claimed {attempts} time(s), expected {expected}"
        );
    }

    let assets: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT image_id, COUNT(*), COUNT(DISTINCT style) FROM media_assets GROUP BY image_id",
    )
    .fetch_all(pool)
    .await
    .expect("count assets");
    assert_eq!(assets.len(), ids.len(), "every image has assets");
    for (image_id, rows, styles) in assets {
        assert_eq!(rows, styles, "image {image_id}: one row per style");
        assert_eq!(
            rows, assets_per_image,
            "image {image_id}: {rows} asset rows, expected {assets_per_image}"
        );
    }
}

// ---------------------------------------------------------------------------
// 1. Three worker processes are faster than one, and render each image once.

struct Run {
    elapsed: Duration,
    claims: Vec<usize>,
}

async fn render_with_workers(workers: usize, images: &[Vec<u8>]) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let deployment = Deployment::fresh(dir.path()).await;
    let (_serve, base) = deployment.serve(&[("EASEL_WORKERS", "0")]).await;
    let client = client_with_key(&deployment.key().await);
    let pool = deployment.pool().await;
    let ids = upload_all(&client, &base, images.to_vec(), 8).await;

    // The queue is full before the first worker starts: the clock measures
    // rendering only, the same way for 1 and 3 processes.
    let started = Instant::now();
    let names: Vec<String> = (0..workers).map(|i| format!("worker-{i}")).collect();
    let _workers: Vec<ChildGuard> = names
        .iter()
        .map(|name| deployment.worker(name, &[]))
        .collect();
    wait_all_rendered(&pool, Duration::from_secs(300)).await;
    let elapsed = started.elapsed();

    assert_rendered_once(&pool, &ids, SMALL_IMAGE_ASSETS, &[]).await;
    // Every style file is in S3 and served: spot-check a few through the API.
    for id in ids.iter().step_by(50) {
        let thumb = client
            .get(format!("{base}/v1/images/{id}/styles/thumb"))
            .send()
            .await
            .expect("get thumb");
        assert_eq!(thumb.status(), 200, "thumb of {id}");
        assert_eq!(
            common::dimensions(&thumb.bytes().await.unwrap()),
            (100, 100)
        );
    }
    let claims: Vec<usize> = names
        .iter()
        .map(|name| claims_in(&deployment.log(name)))
        .collect();
    assert_eq!(
        claims.iter().sum::<usize>(),
        ids.len(),
        "the workers' logs claim each job once: {claims:?}"
    );
    Run { elapsed, claims }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_render_every_image_once_and_faster_than_one() {
    if !postgres_and_s3_or_skip(
        "three_worker_processes_render_every_image_once_and_faster_than_one",
    ) {
        return;
    }
    let _serial = one_at_a_time().await;
    const IMAGES: u32 = 200;
    let images: Vec<Vec<u8>> = (0..IMAGES).map(|i| distinct_jpeg(i, 320)).collect();

    let one = render_with_workers(1, &images).await;
    let three = render_with_workers(3, &images).await;
    println!(
        "scale-out: {IMAGES} images of 320x320, one render thread per process: \
         1 worker {:.2} s ({:.0} images/min), 3 workers {:.2} s ({:.0} images/min), \
         speed-up {:.2}x; claims per worker {:?}",
        one.elapsed.as_secs_f64(),
        f64::from(IMAGES) * 60.0 / one.elapsed.as_secs_f64(),
        three.elapsed.as_secs_f64(),
        f64::from(IMAGES) * 60.0 / three.elapsed.as_secs_f64(),
        one.elapsed.as_secs_f64() / three.elapsed.as_secs_f64(),
        three.claims,
    );
    assert!(
        three.claims.iter().all(|&c| c > 0),
        "every one of the 3 workers rendered something: {:?}",
        three.claims
    );
    assert!(
        three.elapsed < one.elapsed,
        "3 workers ({:?}) should beat 1 worker ({:?})",
        three.elapsed,
        one.elapsed
    );
}

// ---------------------------------------------------------------------------
// 2. A worker killed with SIGKILL mid-render: its job is claimed again after
//    the lease and finished by another worker, once.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_render_has_its_job_finished_by_another_after_the_lease() {
    if !postgres_and_s3_or_skip(
        "a_worker_killed_mid_render_has_its_job_finished_by_another_after_the_lease",
    ) {
        return;
    }
    let _serial = one_at_a_time().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let deployment = Deployment::fresh(dir.path()).await;
    let (_serve, base) = deployment.serve(&[("EASEL_WORKERS", "0")]).await;
    let client = client_with_key(&deployment.key().await);
    let pool = deployment.pool().await;
    // Big photos (a render takes a good part of a second on one thread):
    // plenty of time to catch one mid-render.
    let photo = common::fixture("photo/olympus_e-p3_4032x3024.jpg");
    let ids = upload_all(&client, &base, vec![photo.clone(); 4], 2).await;
    let lease = [("EASEL_LEASE_SECS", "2")];

    // Start a worker, wait until it is rendering, SIGKILL it. If it happened
    // to finish that job just before dying, try again with the next one.
    let mut killed_job = None;
    for attempt in 0..3 {
        let mut victim = deployment.worker(&format!("victim-{attempt}"), &lease);
        let pid = victim.0.id();
        let started = Instant::now();
        let job = loop {
            let running: Option<(i64,)> = sqlx::query_as(
                "SELECT id FROM jobs WHERE status = 'running' AND lease_owner LIKE $1",
            )
            .bind(format!("%-{pid}-%"))
            .fetch_optional(&pool)
            .await
            .expect("look for a running job");
            if let Some((id,)) = running {
                break id;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the worker never claimed a job; log:\n{}",
                deployment.log(&format!("victim-{attempt}"))
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // Past the claim and the fetch of the original: into the render
        // itself (a few hundred ms for this photo on one thread).
        let name = format!("victim-{attempt}");
        while !logged_job(&deployment.log(&name), "rendering", job) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "job {job} never started rendering; log:\n{}",
                deployment.log(&name)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        victim.0.kill().expect("SIGKILL the worker");
        victim.0.wait().expect("reap the worker");
        let (status, owner): (String, Option<String>) =
            sqlx::query_as("SELECT status, lease_owner FROM jobs WHERE id = $1")
                .bind(job)
                .fetch_one(&pool)
                .await
                .expect("read the job");
        if status == "running" && owner.is_some_and(|o| o.contains(&format!("-{pid}-"))) {
            killed_job = Some(job);
            break;
        }
        eprintln!("job {job} was {status} when its worker died; trying again");
    }
    let killed_job = killed_job.expect("killed a worker while its job was running");
    let (image_of_killed,): (String,) = sqlx::query_as("SELECT image_id FROM jobs WHERE id = $1")
        .bind(killed_job)
        .fetch_one(&pool)
        .await
        .expect("the killed job's image");

    // Another worker takes over: the dead one's lease lapses after 2 s.
    let killed_at = Instant::now();
    let _rescuer = deployment.worker("rescuer", &lease);
    wait_all_rendered(&pool, Duration::from_secs(180)).await;
    println!(
        "kill -9: job {killed_job} (image {image_of_killed}) finished by another worker; \
         all {} images done {:.1} s after the kill",
        ids.len(),
        killed_at.elapsed().as_secs_f64()
    );
    assert!(
        logged_job(&deployment.log("rescuer"), "claimed", killed_job),
        "the rescuer claimed the killed job"
    );
    assert_rendered_once(&pool, &ids, LARGE_IMAGE_ASSETS, &[(killed_job, 2)]).await;

    // The re-rendered image is whole: its original and a style are served.
    let original = client
        .get(format!("{base}/v1/images/{image_of_killed}"))
        .header("accept", "application/octet-stream")
        .send()
        .await
        .expect("get the original");
    assert_eq!(original.status(), 200);
    assert!(original.bytes().await.unwrap() == photo, "original intact");
    let large = client
        .get(format!(
            "{base}/v1/images/{image_of_killed}/styles/square-3000"
        ))
        .send()
        .await
        .expect("get square-3000");
    assert_eq!(large.status(), 200);
    assert_eq!(
        common::dimensions(&large.bytes().await.unwrap()),
        (3000, 3000)
    );
    // This photo's square-3000 is over the feed byte budget: the feed
    // file is itunes.
    let feed = client
        .get(format!("{base}/v1/images/{image_of_killed}/styles/feed"))
        .send()
        .await
        .expect("get feed");
    assert_eq!(feed.status(), 200);
    assert_eq!(
        common::dimensions(&feed.bytes().await.unwrap()),
        (1400, 1400)
    );
}

// ---------------------------------------------------------------------------
// 3. PostgreSQL stopped, then S3 frozen, under upload load: 503 with
//    Retry-After within a bound, never a 500 or a hang; every acknowledged
//    upload intact afterwards.

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a PostgreSQL tool as the cluster owner (`postgres` when root).
fn as_pg(program: &Path, args: &[&str]) -> std::process::Output {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
}

fn pg_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("EASEL_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .or_else(|| {
            let out = Command::new("sh")
                .args(["-c", "command -v initdb"])
                .output()
                .ok()?;
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            Path::new(&path).parent().map(Path::to_path_buf)
        })
        .expect("no PostgreSQL binaries (initdb) under /usr/lib/postgresql/*/bin or on PATH")
}

/// A throwaway PostgreSQL cluster of this test alone.
struct OwnPostgres {
    bin: PathBuf,
    data: tempfile::TempDir,
    port: u16,
}

impl OwnPostgres {
    fn start_new() -> OwnPostgres {
        let bin = pg_bin_dir();
        let data = tempfile::Builder::new()
            .prefix("easel-scale-pg")
            .tempdir()
            .expect("cluster dir");
        if is_root() {
            let chown = Command::new("chown")
                .args(["postgres:", &data.path().display().to_string()])
                .status()
                .expect("chown");
            assert!(chown.success(), "chown the cluster dir to postgres");
        }
        let dir = data.path().display().to_string();
        let mut out = as_pg(
            &bin.join("initdb"),
            &[
                "-D",
                &dir,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ],
        );
        if !out.status.success() {
            out = as_pg(
                &bin.join("initdb"),
                &["-D", &dir, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            );
        }
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = OwnPostgres {
            bin,
            data,
            port: free_port(),
        };
        cluster.start();
        cluster
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let dir = self.data.path().display().to_string();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='{dir}' \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port
        );
        let out = as_pg(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &dir,
                "-l",
                &format!("{dir}/server.log"),
                "-w",
                "-t",
                "30",
                "-o",
                &options,
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stop(&self, mode: &str) -> bool {
        let dir = self.data.path().display().to_string();
        as_pg(
            &self.bin.join("pg_ctl"),
            &["-D", &dir, "-m", mode, "-w", "stop"],
        )
        .status
        .success()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop("immediate");
    }
}

fn moto_server() -> PathBuf {
    if let Ok(path) = std::env::var("EASEL_TEST_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cache = std::env::var("XDG_CACHE_HOME").unwrap_or_else(|_| format!("{home}/.cache"));
    let venv = PathBuf::from(cache).join("easel/moto-venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    let out = Command::new("sh")
        .args(["-c", "command -v moto_server"])
        .output()
        .expect("sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "no moto_server (pip install 'moto[server]')"
    );
    PathBuf::from(path)
}

/// A moto_server of this test alone; SIGSTOP/SIGCONT pause and resume it.
struct OwnMoto {
    child: ChildGuard,
    port: u16,
}

impl OwnMoto {
    async fn start(bucket: &str) -> OwnMoto {
        let port = free_port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = OwnMoto {
            child: ChildGuard(child),
            port,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let started = Instant::now();
        while http.get(moto.endpoint()).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not answer on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let created = http
            .put(format!("{}/{bucket}", moto.endpoint()))
            .send()
            .await
            .expect("create bucket");
        assert!(
            created.status().is_success(),
            "create bucket: {}",
            created.status()
        );
        moto
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} moto_server");
    }
}

impl Drop for OwnMoto {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.0.id().to_string()])
            .status();
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Normal,
    PostgresDown,
    S3Paused,
}

#[derive(Debug)]
struct Answer {
    phase: Phase,
    /// When it was sent, from the start of the load.
    sent_at: Duration,
    status: Option<u16>,
    retry_after: Option<String>,
    elapsed: Duration,
    id: Option<String>,
    seed: u32,
    error: Option<String>,
}

/// Longest a request may take, even during an outage.
const ANSWER_BOUND: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_s3_outages_give_503s_and_lose_no_acknowledged_upload() {
    if !postgres_and_s3_or_skip("postgres_and_s3_outages_give_503s_and_lose_no_acknowledged_upload")
    {
        return;
    }
    let _serial = one_at_a_time().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let postgres = OwnPostgres::start_new();
    let moto = OwnMoto::start("easel-outage").await;
    let deployment = Deployment::on_own_services(dir.path(), &postgres, &moto);
    let (_serve, base) = deployment
        .serve(&[("EASEL_WORKERS", "2"), ("EASEL_LEASE_SECS", "3")])
        .await;
    let client = patient_client(&deployment.key().await);

    let load = UploadLoad::start(&client, &base);
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.enter(Phase::PostgresDown);
    assert!(postgres.stop("fast"), "pg_ctl stop -m fast");
    tokio::time::sleep(Duration::from_secs(6)).await;
    postgres.start();
    load.enter(Phase::Normal);
    tokio::time::sleep(Duration::from_secs(4)).await;
    load.enter(Phase::S3Paused);
    moto.signal("-STOP");
    tokio::time::sleep(Duration::from_secs(7)).await;
    moto.signal("-CONT");
    load.enter(Phase::Normal);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let answers = load.stop().await;

    print_what_the_clients_saw(&answers);
    every_request_got_a_202_or_a_503_within_the_bound(&answers, &deployment);
    each_outage_gave_503s_and_normal_times_202s(&answers);
    every_acknowledged_upload_finishes_with_its_original(&client, &base, &answers).await;
}

impl Deployment {
    /// Serving from this test's own PostgreSQL and moto.
    fn on_own_services(dir: &Path, postgres: &OwnPostgres, moto: &OwnMoto) -> Deployment {
        Deployment {
            data: dir.join("data"),
            database_url: postgres.url(),
            store_url: "s3://easel-outage/outage".into(),
            logs: dir.to_path_buf(),
            extra: vec![
                ("AWS_ENDPOINT".into(), moto.endpoint()),
                ("AWS_ALLOW_HTTP".into(), "true".into()),
                ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
                ("AWS_REGION".into(), "us-east-1".into()),
                ("AWS_TIMEOUT".into(), "2s".into()),
                ("AWS_CONNECT_TIMEOUT".into(), "1s".into()),
            ],
        }
    }
}

/// A client with `key` that gives up later than the bound, so a hang shows
/// as a too-slow answer rather than a stuck test.
fn patient_client(key: &str) -> reqwest::Client {
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .timeout(ANSWER_BOUND + Duration::from_secs(5))
        .default_headers(auth)
        .build()
        .unwrap()
}

/// Four clients uploading distinct JPEGs until stopped, each answer
/// tagged with the phase it was sent in.
struct UploadLoad {
    phase: Arc<Mutex<Phase>>,
    stop: Arc<AtomicBool>,
    started: Instant,
    tasks: Vec<tokio::task::JoinHandle<Vec<Answer>>>,
}

impl UploadLoad {
    fn start(client: &reqwest::Client, base: &str) -> UploadLoad {
        let phase = Arc::new(Mutex::new(Phase::Normal));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks = (0..4u32)
            .map(|task| {
                let (client, base, phase, stop) = (
                    client.clone(),
                    base.to_string(),
                    phase.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    let mut n = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        let seed = 10_000 + task * 100_000 + n;
                        n += 1;
                        let at = *phase.lock().unwrap();
                        let answer = upload_one(&client, &base, seed, at, started).await;
                        let refused = answer.status == Some(503);
                        answers.push(answer);
                        // A client that honours Retry-After would wait; a
                        // short pause keeps the load up while the outage lasts.
                        tokio::time::sleep(Duration::from_millis(if refused { 200 } else { 400 }))
                            .await;
                    }
                    answers
                })
            })
            .collect();
        UploadLoad {
            phase,
            stop,
            started,
            tasks,
        }
    }

    /// Tags the requests sent from now on with `phase`.
    fn enter(&self, phase: Phase) {
        *self.phase.lock().unwrap() = phase;
        println!(
            "outage: {:>5.2} s {phase:?}",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Every answer, once each client has had its last one.
    async fn stop(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        let mut answers = Vec::new();
        for task in self.tasks {
            answers.extend(task.await.expect("load task"));
        }
        answers
    }
}

/// Uploads the JPEG of `seed` and notes how it was answered.
async fn upload_one(
    client: &reqwest::Client,
    base: &str,
    seed: u32,
    phase: Phase,
    load_started: Instant,
) -> Answer {
    let started = Instant::now();
    let sent = client
        .post(format!("{base}/v1/images"))
        .header("content-type", "image/jpeg")
        .body(distinct_jpeg(seed, 160))
        .send()
        .await;
    let mut answer = Answer {
        phase,
        sent_at: started.duration_since(load_started),
        status: None,
        retry_after: None,
        elapsed: Duration::ZERO,
        id: None,
        seed,
        error: None,
    };
    match sent {
        Ok(response) => {
            answer.status = Some(response.status().as_u16());
            answer.retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let body: Value = response.json().await.unwrap_or(Value::Null);
            answer.id = body["id"].as_str().map(String::from);
        }
        Err(e) => answer.error = Some(e.to_string()),
    }
    answer.elapsed = started.elapsed();
    answer
}

/// Answers of `phase` with `status`.
fn count(answers: &[Answer], phase: Phase, status: u16) -> usize {
    answers
        .iter()
        .filter(|a| a.phase == phase && a.status == Some(status))
        .count()
}

fn print_what_the_clients_saw(answers: &[Answer]) {
    let slowest = answers.iter().map(|a| a.elapsed).max().unwrap_or_default();
    println!(
        "outage load: {} requests; normal: {} x 202, {} x 503; PostgreSQL down: {} x 202, {} x 503; \
         S3 paused: {} x 202, {} x 503; slowest answer {:.2} s",
        answers.len(),
        count(answers, Phase::Normal, 202),
        count(answers, Phase::Normal, 503),
        count(answers, Phase::PostgresDown, 202),
        count(answers, Phase::PostgresDown, 503),
        count(answers, Phase::S3Paused, 202),
        count(answers, Phase::S3Paused, 503),
        slowest.as_secs_f64(),
    );
    for answer in answers.iter().filter(|a| a.status != Some(202)) {
        println!(
            "outage: sent at {:>5.2} s ({:?}): {:?} in {:.2} s, Retry-After {:?}",
            answer.sent_at.as_secs_f64(),
            answer.phase,
            answer.status,
            answer.elapsed.as_secs_f64(),
            answer.retry_after
        );
    }
}

fn every_request_got_a_202_or_a_503_within_the_bound(answers: &[Answer], deployment: &Deployment) {
    for answer in answers {
        assert!(
            answer.error.is_none(),
            "a request got no answer: {answer:?}; serve log:\n{}",
            tail(&deployment.log("serve"))
        );
        assert!(
            answer.elapsed <= ANSWER_BOUND,
            "a request took {:?} (bound {ANSWER_BOUND:?}): {answer:?}",
            answer.elapsed
        );
        match answer.status {
            Some(202) => assert!(answer.id.is_some(), "a 202 names its image: {answer:?}"),
            Some(503) => assert!(
                answer.retry_after.is_some(),
                "a 503 says when to retry: {answer:?}"
            ),
            _ => panic!(
                "only 202 or 503 expected, got {answer:?}; serve log:\n{}",
                tail(&deployment.log("serve"))
            ),
        }
    }
}

fn each_outage_gave_503s_and_normal_times_202s(answers: &[Answer]) {
    assert!(
        count(answers, Phase::PostgresDown, 503) > 0,
        "PostgreSQL down gave 503s"
    );
    assert!(
        count(answers, Phase::S3Paused, 503) > 0,
        "S3 paused gave 503s"
    );
    assert!(
        count(answers, Phase::Normal, 202) > 0,
        "uploads succeed when all is up"
    );
}

/// Every acknowledged upload: finished, original byte-identical.
async fn every_acknowledged_upload_finishes_with_its_original(
    client: &reqwest::Client,
    base: &str,
    answers: &[Answer],
) {
    let acknowledged: Vec<&Answer> = answers.iter().filter(|a| a.status == Some(202)).collect();
    let started = Instant::now();
    for answer in &acknowledged {
        let id = answer.id.as_deref().unwrap();
        let image = loop {
            let response = client
                .get(format!("{base}/v1/images/{id}"))
                .send()
                .await
                .expect("get image");
            let image: Value = if response.status() == 200 {
                response.json().await.expect("json")
            } else {
                Value::Null
            };
            if image["status"] == "finished" || image["status"] == "error" {
                break image;
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "image {id} not finished 180 s after the outages: {image}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            image["status"], "finished",
            "acknowledged upload {id} (seed {}) must finish: {image}",
            answer.seed
        );
        let original = client
            .get(format!("{base}/v1/images/{id}"))
            .header("accept", "application/octet-stream")
            .send()
            .await
            .expect("get original");
        assert_eq!(original.status(), 200, "original of {id}");
        assert!(
            original.bytes().await.unwrap() == distinct_jpeg(answer.seed, 160),
            "original of {id} byte-identical"
        );
    }
    println!(
        "outage: all {} acknowledged uploads finished with intact originals ({:.1} s after the load)",
        acknowledged.len(),
        started.elapsed().as_secs_f64()
    );
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
