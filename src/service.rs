//! `serve`, `worker`, `migrate`: configuration and wiring of the service.
//!
//! Every setting is a flag and an `EASEL_*` environment variable, with
//! defaults that need nothing: SQLite at `$EASEL_DATA_DIR/easel.db`, a
//! local object store at `$EASEL_DATA_DIR/objects`, `./data`, and
//! `127.0.0.1:8080`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use easel_api::iiif::IiifConfig;
use easel_api::{ApiConfig, AppState, Application};
use easel_catalog::Catalog;
use easel_origin::OriginConfig;
use easel_render::iiif::IiifLimits;
use easel_render::Settings;
use easel_storage::BlobStore;
use easel_worker::supervise::{Loops, PoolConfig, DEFAULT_LOOPS};
use easel_worker::{OnCommit, Retention, WorkerConfig};

use crate::engine_args::EngineArgs;
use tokio::sync::Notify;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the data lives and how to log: shared by every service command.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct CommonArgs {
    /// Directory holding the embedded database and object store.
    #[arg(long, env = "EASEL_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Catalogue database [default: sqlite://$EASEL_DATA_DIR/easel.db].
    #[arg(long, env = "EASEL_DATABASE_URL")]
    database_url: Option<String>,
    /// Object store [default: file://$EASEL_DATA_DIR/objects].
    #[arg(long, env = "EASEL_STORE_URL")]
    store_url: Option<String>,
    /// Log format; the level comes from RUST_LOG (default: info).
    #[arg(long, env = "EASEL_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// How long files nothing refers to are kept: every process that renders
/// or deletes needs the same answer.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct RetentionArgs {
    /// Seconds a file replaced by a re-render keeps serving at its
    /// versioned URL (so a feed read before the change never shows a
    /// broken image), before it is deleted.
    #[arg(long, env = "EASEL_GRACE_SECS", default_value_t = easel_worker::DEFAULT_GRACE.as_secs())]
    grace_secs: u64,
    /// Seconds between a file losing its last reference (a force delete,
    /// the end of a grace period) and its deletion from the store.
    #[arg(long, env = "EASEL_DELETE_DELAY_SECS", default_value_t = easel_worker::DEFAULT_DELETE_DELAY.as_secs())]
    delete_delay_secs: u64,
}

impl RetentionArgs {
    pub(crate) fn retention(&self) -> Retention {
        Retention {
            grace: Duration::from_secs(self.grace_secs),
            delete_delay: Duration::from_secs(self.delete_delay_secs),
        }
    }
}

/// How workers run.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct WorkerTuning {
    #[command(flatten)]
    pub(crate) retention: RetentionArgs,
    /// Render threads (rayon) shared by this process's workers; 0 means one per core.
    #[arg(long, env = "EASEL_THREADS", default_value_t = 0)]
    threads: usize,
    /// Seconds a claimed job stays leased without renewal.
    #[arg(long, env = "EASEL_LEASE_SECS", default_value_t = easel_worker::DEFAULT_LEASE.as_secs())]
    lease_secs: u64,
    /// Attempts before a job is given up (storage errors are retried).
    #[arg(long, env = "EASEL_MAX_ATTEMPTS", default_value_t = easel_worker::DEFAULT_MAX_ATTEMPTS)]
    max_attempts: i64,
    /// Let origin URLs reach private, loopback and link-local addresses
    /// (refused by default: a client could otherwise make us fetch from
    /// the internal network).
    #[arg(long, env = "EASEL_ORIGIN_ALLOW_PRIVATE", default_value_t = false)]
    origin_allow_private: bool,
    /// Longest time, in seconds, to fetch one origin URL.
    #[arg(long, env = "EASEL_ORIGIN_TIMEOUT_SECS", default_value_t = easel_origin::DEFAULT_TOTAL_TIMEOUT.as_secs())]
    origin_timeout_secs: u64,
    /// Redirects followed when fetching an origin URL.
    #[arg(long, env = "EASEL_ORIGIN_MAX_REDIRECTS", default_value_t = easel_origin::DEFAULT_MAX_REDIRECTS)]
    origin_max_redirects: usize,
    /// Origin URLs fetched at once, apart from the render loops (a slow
    /// origin holds one of these, never a render loop).
    #[arg(long, env = "EASEL_ORIGIN_FETCHES", default_value_t = easel_worker::DEFAULT_ORIGIN_FETCHES)]
    origin_fetches: usize,
    /// Bytes of memory this process's renders (worker loops and IIIF) may
    /// hold at once, as estimated from each image's header; renders wait
    /// for room, and an image needing more than all of it is refused.
    #[arg(long, env = "EASEL_RENDER_MEMORY_BYTES", default_value_t = easel_budget::DEFAULT_BUDGET_BYTES)]
    render_memory_bytes: u64,
}

impl WorkerTuning {
    /// `loops` worker loops as these flags set them up, with the process's
    /// one render memory budget.
    pub(crate) fn pool(
        &self,
        loops: usize,
        settings: &Settings,
        on_commit: OnCommit,
    ) -> PoolConfig {
        PoolConfig {
            loops,
            threads: self.threads,
            worker: WorkerConfig {
                lease: Duration::from_secs(self.lease_secs.max(1)),
                max_attempts: self.max_attempts.max(1),
                origin: OriginConfig {
                    total_timeout: Duration::from_secs(self.origin_timeout_secs.max(1)),
                    max_redirects: self.origin_max_redirects,
                    allow_private: self.origin_allow_private,
                    max_bytes: settings.limits.max_bytes,
                    ..OriginConfig::default()
                },
                retention: self.retention.retention(),
                origin_fetches: self.origin_fetches.max(1),
                memory: easel_budget::MemoryBudget::new(self.render_memory_bytes),
                on_commit,
                ..WorkerConfig::default()
            },
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    render: EngineArgs,
    #[command(flatten)]
    tuning: WorkerTuning,
    /// Address to listen on.
    #[arg(long, env = "EASEL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Embedded worker loops; 0 leaves rendering to `easel worker` processes.
    /// Three by default: while one loop claims, stores and commits, two
    /// renders keep both cores of a 2-core machine busy.
    #[arg(long, env = "EASEL_WORKERS", default_value_t = DEFAULT_LOOPS)]
    workers: usize,
    /// Prefix for links and Location headers, e.g. https://img.example.com;
    /// empty takes the scheme and host of each request.
    #[arg(long, env = "EASEL_PUBLIC_URL", default_value = "")]
    public_url: String,
    /// Seconds caches may keep a stable alias (`/styles/itunes.jpg`,
    /// `/styles/feed`) before revalidating it; versioned URLs are immutable.
    #[arg(long, env = "EASEL_ALIAS_MAX_AGE_SECS", default_value_t = easel_api::DEFAULT_ALIAS_MAX_AGE.as_secs())]
    alias_max_age_secs: u64,
    /// Longest wait, in seconds, for `POST /v1/images?wait=true`.
    #[arg(long, env = "EASEL_WAIT_TIMEOUT_SECS", default_value_t = easel_api::DEFAULT_WAIT_TIMEOUT.as_secs())]
    wait_timeout_secs: u64,
    /// Largest `page[size]` of `GET /v1/images` (the default size is 25).
    #[arg(long, env = "EASEL_MAX_PAGE_SIZE", default_value_t = easel_api::DEFAULT_MAX_PAGE_SIZE, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    max_page_size: u64,
    /// IIIF: largest width of a rendered region (info.json `maxWidth`).
    #[arg(long, env = "EASEL_IIIF_MAX_WIDTH", default_value_t = IiifLimits::default().max_width)]
    iiif_max_width: u32,
    /// IIIF: largest height (info.json `maxHeight`).
    #[arg(long, env = "EASEL_IIIF_MAX_HEIGHT", default_value_t = IiifLimits::default().max_height)]
    iiif_max_height: u32,
    /// IIIF: largest pixel count (info.json `maxArea`).
    #[arg(long, env = "EASEL_IIIF_MAX_AREA", default_value_t = IiifLimits::default().max_area)]
    iiif_max_area: u64,
    /// IIIF: on-demand renders at once; more wait, then get a 503.
    #[arg(long, env = "EASEL_IIIF_MAX_RENDERS", default_value_t = IiifConfig::default().max_concurrent_renders)]
    iiif_max_renders: usize,
    /// IIIF: bytes of on-demand renders kept in the object store; the least
    /// recently used go first. 0 keeps none.
    #[arg(long, env = "EASEL_IIIF_CACHE_BYTES", default_value_t = easel_api::iiif::DEFAULT_CACHE_BUDGET_BYTES)]
    iiif_cache_bytes: u64,
    /// Bytes of a request body refused before it was read (no key, over the
    /// limit) read and thrown away so the client still gets the answer.
    #[arg(long, env = "EASEL_LINGER_MAX_BYTES", default_value_t = easel_api::DEFAULT_LINGER_MAX_BYTES)]
    linger_max_bytes: u64,
    /// Longest time, in seconds, spent reading such a body.
    #[arg(long, env = "EASEL_LINGER_SECS", default_value_t = easel_api::DEFAULT_LINGER_TIMEOUT.as_secs())]
    linger_secs: u64,
    /// Bytes of style files kept in memory to serve them without reading
    /// the store (each file at most an eighth of it); 0 keeps none.
    #[arg(long, env = "EASEL_SERVE_CACHE_BYTES", default_value_t = easel_api::serve_cache::DEFAULT_CACHE_BYTES)]
    serve_cache_bytes: u64,
    /// Milliseconds a file URL's lookup (image, bucket settings, file row)
    /// is reused without asking the database: how long another node's
    /// re-render, delete or access change may take to show here (at most
    /// the alias max age; this node's own changes show at once). 0 asks
    /// every time.
    #[arg(long, env = "EASEL_LOOKUP_CACHE_MS", default_value_t = easel_api::serve_cache::DEFAULT_LOOKUP_TTL.as_millis() as u64)]
    lookup_cache_ms: u64,
    /// File URL lookups kept at most.
    #[arg(long, env = "EASEL_LOOKUP_CACHE_ENTRIES", default_value_t = easel_api::serve_cache::DEFAULT_LOOKUP_ENTRIES)]
    lookup_cache_entries: usize,
    /// Log one INFO line per HTTP request (off by default: the
    /// `easel_http_requests_total` metrics count every request).
    #[arg(long, env = "EASEL_LOG_REQUESTS", default_value_t = false)]
    log_requests: bool,
}

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    render: EngineArgs,
    #[command(flatten)]
    tuning: WorkerTuning,
    /// Worker loops in this process (jobs rendered at once).
    #[arg(long, env = "EASEL_WORKERS", default_value_t = DEFAULT_LOOPS)]
    workers: usize,
}

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    common: CommonArgs,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.common.log_format);
    runtime()?.block_on(async move {
        let (catalog, store) = open(&args.common).await?;
        let settings = Arc::new(args.render.settings()?);
        let wake = Arc::new(Notify::new());
        let alias_max_age = Duration::from_secs(args.alias_max_age_secs);
        let serve_cache = easel_api::serve_cache::ServeCache::new(
            args.serve_cache_bytes,
            Duration::from_millis(args.lookup_cache_ms).min(alias_max_age),
            args.lookup_cache_entries,
        );
        let invalidate = serve_cache.clone();
        let on_commit = OnCommit::new(move |_| invalidate.invalidate());
        let pool = args.tuning.pool(args.workers, &settings, on_commit);
        let store = Loops::handing_over(store, &pool);
        // The one budget of this process: IIIF renders share the loops'.
        let memory = pool.worker.memory.clone();
        let workers = Loops::start_workers(&catalog, &store, &settings, &wake, pool).await?;

        let retention = args.tuning.retention.retention();
        let reaper = Loops::start_reaper(&catalog, &store, retention);
        let state = AppState {
            catalog,
            store,
            settings,
            config: Arc::new(ApiConfig {
                public_url: args.public_url,
                alias_max_age,
                retention,
                wait_timeout: Duration::from_secs(args.wait_timeout_secs),
                // This process's own renders wake the waits when they commit.
                wait_poll: if args.workers > 0 {
                    easel_api::EMBEDDED_WAIT_POLL
                } else {
                    easel_api::DEFAULT_WAIT_POLL
                },
                max_page_size: args.max_page_size,
                iiif: IiifConfig {
                    limits: IiifLimits {
                        max_width: args.iiif_max_width.max(1),
                        max_height: args.iiif_max_height.max(1),
                        max_area: args.iiif_max_area.max(1),
                    },
                    max_concurrent_renders: args.iiif_max_renders.max(1),
                    cache_budget_bytes: args.iiif_cache_bytes,
                    ..IiifConfig::default()
                },
                linger_max_bytes: args.linger_max_bytes,
                linger_timeout: Duration::from_secs(args.linger_secs),
                render_memory: memory,
                serve_cache,
                log_requests: args.log_requests,
            }),
            wake,
        };
        let app = Application::bind(args.listen, state)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = app.local_addr()?;
        // On stdout, for scripts and tests that start us on port 0.
        println!("easel: listening on http://{addr}");
        tracing::info!(%addr, workers = args.workers, "serving");
        app.run(shutdown_signal()).await?;
        workers.stop().await;
        reaper.stop().await;
        Ok(())
    })
}

pub fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    init_logging(args.common.log_format);
    runtime()?.block_on(async move {
        let (catalog, store) = open(&args.common).await?;
        let settings = Arc::new(args.render.settings()?);
        let wake = Arc::new(Notify::new());
        let pool = args
            .tuning
            .pool(args.workers.max(1), &settings, OnCommit::default());
        let store = Loops::handing_over(store, &pool);
        let workers = Loops::start_workers(&catalog, &store, &settings, &wake, pool).await?;
        let reaper = Loops::start_reaper(&catalog, &store, args.tuning.retention.retention());
        shutdown_signal().await;
        workers.stop().await;
        reaper.stop().await;
        Ok(())
    })
}

pub fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    init_logging(args.common.log_format);
    runtime()?.block_on(async move {
        let url = database_url(&args.common)?;
        let catalog = easel_catalog::connect(&url)
            .await
            .with_context(|| format!("cannot open database {url}"))?;
        catalog.migrate().await.context("migration failed")?;
        println!("easel: migrations applied to {url}");
        Ok(())
    })
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn init_logging(format: LogFormat) {
    init_logging_at(format, "info");
}

/// Logging for a command that draws a progress bar: `RUST_LOG` still
/// decides, but the default is `default_level`, and every line is written
/// above the bar (see [`crate::progress`]) instead of scrolling it away.
pub(crate) fn init_logging_at(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::progress::AboveTheBar);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

fn absolute_data_dir(common: &CommonArgs) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&common.data_dir)
        .with_context(|| format!("cannot create data directory {}", common.data_dir.display()))?;
    std::path::absolute(&common.data_dir)
        .with_context(|| format!("cannot resolve {}", common.data_dir.display()))
}

fn database_url(common: &CommonArgs) -> anyhow::Result<String> {
    match &common.database_url {
        Some(url) => Ok(url.clone()),
        None => Ok(sqlite_url(&absolute_data_dir(common)?.join("easel.db"))),
    }
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

pub(crate) fn log_format(common: &CommonArgs) -> LogFormat {
    common.log_format
}

/// Connects to the catalogue (migrating it) and the blob store.
pub(crate) async fn open(common: &CommonArgs) -> anyhow::Result<(Arc<dyn Catalog>, BlobStore)> {
    let url = database_url(common)?;
    let catalog = easel_catalog::connect(&url)
        .await
        .with_context(|| format!("cannot open database {url}"))?;
    catalog.migrate().await.context("migration failed")?;
    let store = match &common.store_url {
        Some(url) => BlobStore::from_url(url)?,
        None => {
            let dir = absolute_data_dir(common)?.join("objects");
            BlobStore::local(&dir)
                .with_context(|| format!("cannot open object store {}", dir.display()))?
        }
    };
    tracing::info!(database = %url, store = %store.describe(), "storage ready");
    Ok((catalog, store))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
