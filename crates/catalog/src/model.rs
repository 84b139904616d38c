//! Rows and the values used to create them.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Where an image is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageStatus {
    Ingesting,
    Finished,
    Error,
}

impl ImageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Ingesting => "ingesting",
            ImageStatus::Finished => "finished",
            ImageStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ingesting" => Some(ImageStatus::Ingesting),
            "finished" => Some(ImageStatus::Finished),
            "error" => Some(ImageStatus::Error),
            _ => None,
        }
    }

    fn from_column(s: &str) -> Self {
        match s {
            "finished" => ImageStatus::Finished,
            "error" => ImageStatus::Error,
            // The CHECK constraint leaves only this.
            _ => ImageStatus::Ingesting,
        }
    }
}

/// An image row. Dimensions are of the oriented original; they, the size,
/// type and hash are `None` only while an origin URL is still to be fetched.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Image {
    pub id: String,
    pub bucket: String,
    pub name: Option<String>,
    pub facet: Option<String>,
    /// `x,y,width,height`, as the render engine's `Crop` parses it.
    pub crop: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub size: Option<i64>,
    pub mimetype: Option<String>,
    pub sha256: Option<String>,
    pub original_key: Option<String>,
    pub origin_url: Option<String>,
    status: String,
    pub error: Option<String>,
    pub error_code: Option<String>,
    /// A JSON array; read it with [`Image::tags`].
    tags: String,
    pub string1: Option<String>,
    pub string2: Option<String>,
    pub string3: Option<String>,
    pub number1: Option<f64>,
    pub number2: Option<f64>,
    pub number3: Option<f64>,
    pub feed_ready: bool,
    /// JSON; read it with [`Image::feed_readiness`].
    feed_reasons: String,
    /// Bumped by every change to the row: the resource's ETag.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Image {
    pub fn status(&self) -> ImageStatus {
        ImageStatus::from_column(&self.status)
    }

    pub fn tags(&self) -> Vec<String> {
        serde_json::from_str(&self.tags).unwrap_or_default()
    }

    pub fn feed_readiness(&self) -> FeedReadiness {
        let mut readiness: FeedReadiness =
            serde_json::from_str(&self.feed_reasons).unwrap_or_default();
        readiness.ok = self.feed_ready;
        readiness
    }

    /// The original as stored, once it is.
    pub fn original(&self) -> Option<StoredOriginal<'_>> {
        Some(StoredOriginal {
            key: self.original_key.as_deref()?,
            sha256: self.sha256.as_deref()?,
            mimetype: self.mimetype.as_deref()?,
            size: self.size?,
        })
    }
}

/// Where an image's original bytes are.
#[derive(Debug, Clone, Copy)]
pub struct StoredOriginal<'a> {
    pub key: &'a str,
    pub sha256: &'a str,
    pub mimetype: &'a str,
    pub size: i64,
}

/// Facts about a stored original: what an upload knows at once and an
/// origin ingest learns after fetching.
#[derive(Debug, Clone, Default)]
pub struct OriginalFacts {
    pub width: i64,
    pub height: i64,
    pub size: i64,
    pub mimetype: String,
    pub sha256: String,
    pub original_key: String,
}

/// The fields a client may set on an image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageFields {
    pub name: Option<String>,
    pub facet: Option<String>,
    pub crop: Option<String>,
    pub tags: Vec<String>,
    pub string1: Option<String>,
    pub string2: Option<String>,
    pub string3: Option<String>,
    pub number1: Option<f64>,
    pub number2: Option<f64>,
    pub number3: Option<f64>,
}

/// A new image: uploaded bytes (`original`) or an origin URL to fetch.
#[derive(Debug, Clone, Default)]
pub struct NewImage {
    pub id: String,
    pub bucket: String,
    pub fields: ImageFields,
    pub original: Option<OriginalFacts>,
    pub origin_url: Option<String>,
}

/// A partial update: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ImagePatch {
    pub name: Option<Option<String>>,
    pub facet: Option<Option<String>>,
    pub crop: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub string1: Option<Option<String>>,
    pub string2: Option<Option<String>>,
    pub string3: Option<Option<String>>,
    pub number1: Option<Option<f64>>,
    pub number2: Option<Option<f64>>,
    pub number3: Option<Option<f64>>,
}

/// Whether an image's feed file passes Apple Podcasts' artwork rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct FeedReadiness {
    #[serde(default)]
    pub ok: bool,
    /// Why a directory would reject the feed image.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Accepted, but worth fixing.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Feed files above this size draw a warning from podcast directories.
pub const FEED_WARN_BYTES: i64 = 512 * 1024;

impl FeedReadiness {
    /// Checks the feed file (`square-3000`, else `itunes`) of a render:
    /// square, 1400 to 3000 px, JPEG or PNG, not enlarged. The engine only
    /// writes RGB without alpha for square styles, so colour model and
    /// transparency need no check here.
    pub fn assess(assets: &[NewAsset]) -> FeedReadiness {
        let feed = ["square-3000", "itunes"]
            .iter()
            .find_map(|style| assets.iter().find(|a| a.style == *style));
        let Some(feed) = feed else {
            return FeedReadiness::failing("no feed style (square-3000 or itunes) was rendered");
        };
        let mut reasons = Vec::new();
        let mut warnings = Vec::new();
        if feed.width != feed.height {
            reasons.push(format!("not square: {}x{}", feed.width, feed.height));
        }
        if feed.width < 1400 || feed.height < 1400 {
            reasons.push(format!(
                "smaller than 1400x1400: {}x{}",
                feed.width, feed.height
            ));
        }
        if feed.width > 3000 || feed.height > 3000 {
            reasons.push(format!(
                "larger than 3000x3000: {}x{}",
                feed.width, feed.height
            ));
        }
        if !matches!(feed.mimetype.as_str(), "image/jpeg" | "image/png") {
            reasons.push(format!("not JPEG or PNG: {}", feed.mimetype));
        }
        if feed.upscaled {
            reasons.push(format!(
                "{} is enlarged from a smaller crop; upload at least 1400x1400",
                feed.style
            ));
        }
        if feed.size > FEED_WARN_BYTES {
            warnings.push(format!(
                "{} is {} KB; directories recommend at most 512 KB",
                feed.style,
                feed.size / 1024
            ));
        }
        FeedReadiness {
            ok: reasons.is_empty(),
            reasons,
            warnings,
        }
    }

    pub fn failing(reason: &str) -> FeedReadiness {
        FeedReadiness {
            ok: false,
            reasons: vec![reason.to_string()],
            warnings: Vec::new(),
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// An API key as stored: the secret itself is never kept, only its hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKey {
    pub id: String,
    pub key_hash: String,
    pub bucket: String,
    /// Space separated.
    scopes: String,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    pub fn scopes(&self) -> Vec<String> {
        self.scopes.split_whitespace().map(str::to_string).collect()
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.split_whitespace().any(|s| s == scope)
    }
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: String,
    pub key_hash: String,
    pub bucket: String,
    pub scopes: Vec<String>,
    pub name: Option<String>,
}

/// Per-bucket settings; a bucket without a row has the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketSettings {
    /// `None`: every style file is public. `Some(0)`: style files need a
    /// key. `Some(n)`: styles whose longer side is at most `n` are public.
    pub public_max_side: Option<i64>,
}

/// Sort orders of the image list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    CreatedAt,
    UpdatedAt,
    Name,
}

/// Which soft-deleted images a list includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trashed {
    #[default]
    Without,
    With,
    Only,
}

/// Where a page starts.
#[derive(Debug, Clone, PartialEq)]
pub enum PageStart {
    /// 1-based page number (offset pagination).
    Number(u64),
    /// Keyset: the rows after this image id in the chosen order.
    After(String),
}

/// A validated list request, all within one bucket.
#[derive(Debug, Clone)]
pub struct ImageQuery {
    pub bucket: String,
    pub ids: Vec<String>,
    pub facet: Option<String>,
    pub tag: Option<String>,
    pub status: Option<ImageStatus>,
    pub feed_ready: Option<bool>,
    pub search: Option<String>,
    pub trashed: Trashed,
    pub sort: SortKey,
    pub descending: bool,
    pub page_size: u64,
    pub start: PageStart,
}

impl ImageQuery {
    pub fn new(bucket: &str) -> Self {
        ImageQuery {
            bucket: bucket.to_string(),
            ids: Vec::new(),
            facet: None,
            tag: None,
            status: None,
            feed_ready: None,
            search: None,
            trashed: Trashed::Without,
            sort: SortKey::CreatedAt,
            descending: true,
            page_size: 25,
            start: PageStart::Number(1),
        }
    }
}

/// One page of images and the total matching the filters.
#[derive(Debug, Clone)]
pub struct ImagePage {
    pub images: Vec<Image>,
    pub total: i64,
}

/// What [`crate::Catalog::finish_job`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinishedJob {
    /// The files are now the image's assets; false when a newer job for the
    /// image was waiting and will render it again.
    pub committed: bool,
    /// Storage keys nothing refers to any more: delete them.
    pub orphans: Vec<String>,
}

/// Which images a re-render batch covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct RerenderFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Only images missing this style or holding a stale file of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    /// Only images created at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Every matching image, stale or not.
    #[serde(default)]
    pub all: bool,
    /// `style` exists only for crops at least this many pixels on both
    /// sides (`square-3000`): smaller images never have it, and are not
    /// stale for lacking it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style_min_crop_side: Option<i64>,
}

/// A batch re-render and its progress.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Batch {
    pub id: String,
    pub bucket: Option<String>,
    filter: String,
    pub fingerprint: String,
    pub total: i64,
    /// No image is left to queue: `total` is exact and nothing is pending.
    pub queued_all: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Batch {
    pub fn filter(&self) -> RerenderFilter {
        serde_json::from_str(&self.filter).unwrap_or_default()
    }
}

/// Job counts of a batch by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BatchCounts {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
}

/// A failed job of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct BatchFailure {
    pub image_id: String,
    pub reason: Option<String>,
}

/// One stored file of an image: a rendered style or the original.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct MediaAsset {
    #[serde(skip)]
    pub id: i64,
    pub image_id: String,
    pub style: String,
    #[serde(skip)]
    pub storage_key: String,
    pub size: i64,
    pub mimetype: String,
    pub width: i64,
    pub height: i64,
    pub sha256: String,
    pub upscaled: bool,
    pub settings_fingerprint: String,
    pub created_at: DateTime<Utc>,
}

/// A file the worker stored and wants recorded.
#[derive(Debug, Clone)]
pub struct NewAsset {
    pub style: String,
    pub storage_key: String,
    pub size: i64,
    pub mimetype: String,
    pub width: i64,
    pub height: i64,
    pub sha256: String,
    pub upscaled: bool,
    pub settings_fingerprint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
}

/// A render job and its lease.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub image_id: String,
    kind: String,
    pub batch_id: Option<String>,
    status: String,
    /// Claims so far, this one included, less those given back because
    /// our own store was down (see `outages`).
    pub attempts: i64,
    /// Retries because our own object store was unavailable.
    pub outages: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub run_after: i64,
    pub last_error: Option<String>,
    /// The render settings the job must be rendered with (a batch's); only
    /// a worker with these settings claims it. `None`: any worker, with its
    /// own settings.
    pub fingerprint: Option<String>,
}

/// What a worker may claim (see [`Catalog::claim_job_for`](crate::Catalog::claim_job_for)).
#[derive(Debug, Clone, Copy)]
pub struct ClaimFilter<'a> {
    /// The worker's settings fingerprint: a job that carries another one is
    /// left to a worker that renders with those settings.
    pub fingerprint: &'a str,
    /// Whether jobs that must fetch an origin first may be claimed (a
    /// worker whose fetch slots are all busy leaves them to others).
    pub ingest: bool,
}

/// What a job does: fetch an origin first, or only render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Render,
    Ingest,
}

impl Job {
    pub fn kind(&self) -> JobKind {
        if self.kind == "ingest" {
            JobKind::Ingest
        } else {
            JobKind::Render
        }
    }

    pub fn status(&self) -> JobStatus {
        match self.status.as_str() {
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "failed" => JobStatus::Failed,
            _ => JobStatus::Queued,
        }
    }
}
