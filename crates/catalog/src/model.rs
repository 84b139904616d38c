//! Rows and the values used to create them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use easel_render::Crop;
use serde::Serialize;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;

/// A crop as its column holds it: the text `x,y,width,height` that
/// [`Crop`]'s `Display` writes and its `FromStr` reads, so the rows stay
/// what they were when the column held plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredCrop(pub(crate) Crop);

impl<DB: sqlx::Database> sqlx::Type<DB> for StoredCrop
where
    String: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for StoredCrop
where
    String: sqlx::Decode<'r, DB>,
{
    fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <String as sqlx::Decode<'r, DB>>::decode(value)?;
        Ok(StoredCrop(text.parse()?))
    }
}

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for StoredCrop
where
    String: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        <String as sqlx::Encode<'q, DB>>::encode(self.0.to_string(), buf)
    }
}

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
    /// Read it with [`Image::crop`].
    crop: Option<StoredCrop>,
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
    /// The style the `feed` alias serves, as the last render chose it.
    pub feed_style: Option<String>,
    /// That file's longer side.
    pub feed_side: Option<i64>,
    /// The bucket's style visibility (see [`BucketSettings`]), read with
    /// the row: whether a directory may fetch the feed file is part of
    /// its readiness, and can change without a render.
    pub styles_public_max_side: Option<i64>,
    /// The image's own `maxUnauthorised`: `None` follows the bucket, `-1`
    /// is open, `0` nothing without a key, `n` the longest public edge.
    /// Read the limit in force with [`Image::public_limit`].
    pub max_unauthorised: Option<i64>,
    /// A JSON array of role URIs; read it with [`Image::roles`].
    roles: String,
    /// The URL the first ingest fetches instead of `origin_url`; cleared
    /// once fetched. Never shown.
    pub initial_origin: Option<String>,
    /// The batch whose job rendered the files now served.
    pub batch_id: Option<String>,
    /// Bumped by every change to the row: the resource's ETag.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Image {
    /// The client's crop; `None` is the centred square.
    pub fn crop(&self) -> Option<Crop> {
        self.crop.map(|stored| stored.0)
    }

    pub fn status(&self) -> ImageStatus {
        ImageStatus::from_column(&self.status)
    }

    pub fn tags(&self) -> Vec<String> {
        serde_json::from_str(&self.tags).unwrap_or_default()
    }

    pub fn roles(&self) -> Vec<String> {
        serde_json::from_str(&self.roles).unwrap_or_default()
    }

    /// The longest edge a caller without a key may see, given its bucket's
    /// style visibility (`BucketSettings::public_max_side`): the image's
    /// own `max_unauthorised` when it has one. `None`: everything is public.
    pub fn public_limit(&self, bucket_public_max_side: Option<i64>) -> Option<i64> {
        match self.max_unauthorised {
            Some(n) if n < 0 => None,
            Some(n) => Some(n),
            None => bucket_public_max_side,
        }
    }

    /// The URL an ingest fetches: the first one's own, else the origin.
    pub fn ingest_url(&self) -> Option<&str> {
        self.initial_origin
            .as_deref()
            .or(self.origin_url.as_deref())
    }

    /// The feed file's readiness as rendered, and whether it is public:
    /// a directory fetches it without a key.
    pub fn feed_readiness(&self) -> FeedReadiness {
        let mut readiness: FeedReadiness =
            serde_json::from_str(&self.feed_reasons).unwrap_or_default();
        readiness.ok = self.feed_ready;
        if let Some(reason) = self.feed_visibility_problem() {
            readiness.ok = false;
            readiness.reasons.push(reason);
        }
        readiness
    }

    /// Why directories could not fetch the feed file, if they could not.
    fn feed_visibility_problem(&self) -> Option<String> {
        let max = self.public_limit(self.styles_public_max_side)?;
        let style = self.feed_style.as_deref().unwrap_or("the feed file");
        let who = if self.max_unauthorised.is_some() {
            format!("the image's max_unauthorised ({max})")
        } else {
            format!("bucket {}", self.bucket)
        };
        match self.feed_side {
            _ if max == 0 => Some(format!(
                "{style} is not public: {who} serves style files only to keys with \
                 image:read or one of the image's roles, and directories fetch without one"
            )),
            Some(side) if side > max => Some(format!(
                "{style} ({side} px) is not public: {who} serves styles larger than \
                 {max} px only to keys with image:read or one of the image's roles, and \
                 directories fetch without one"
            )),
            _ => None,
        }
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

    /// Every fact of the stored original, as its row holds them: `None`
    /// when one is missing (an origin not fetched yet), never a made-up
    /// value such as an empty hash.
    pub fn original_facts(&self) -> Option<OriginalFacts> {
        let stored = self.original()?;
        Some(OriginalFacts {
            width: self.width?,
            height: self.height?,
            size: stored.size,
            mimetype: stored.mimetype.to_string(),
            sha256: stored.sha256.to_string(),
            original_key: stored.key.to_string(),
            claim: None,
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OriginalFacts {
    pub width: i64,
    pub height: i64,
    pub size: i64,
    pub mimetype: String,
    pub sha256: String,
    pub original_key: String,
    /// The holder of the claim (see [`crate::ObjectLedger::claim_objects`]) that
    /// kept `original_key` from deletion since it was stored: the write
    /// that records these facts checks it is still live and ends it.
    pub claim: Option<String>,
}

/// The fields a client may set on an image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageFields {
    pub name: Option<String>,
    pub facet: Option<String>,
    pub crop: Option<Crop>,
    pub tags: Vec<String>,
    pub string1: Option<String>,
    pub string2: Option<String>,
    pub string3: Option<String>,
    pub number1: Option<f64>,
    pub number2: Option<f64>,
    pub number3: Option<f64>,
    /// See [`Image::max_unauthorised`].
    pub max_unauthorised: Option<i64>,
    pub roles: Vec<String>,
}

/// A new image: uploaded bytes (`original`) or an origin URL to fetch.
#[derive(Debug, Clone, Default)]
pub struct NewImage {
    pub id: String,
    pub bucket: String,
    pub fields: ImageFields,
    pub original: Option<OriginalFacts>,
    pub origin_url: Option<String>,
    /// Fetched instead of `origin_url` by the first ingest only.
    pub initial_origin: Option<String>,
}

/// A partial update: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ImagePatch {
    pub name: Option<Option<String>>,
    pub facet: Option<Option<String>>,
    pub crop: Option<Option<Crop>>,
    pub tags: Option<Vec<String>>,
    pub string1: Option<Option<String>>,
    pub string2: Option<Option<String>>,
    pub string3: Option<Option<String>>,
    pub number1: Option<Option<f64>>,
    pub number2: Option<Option<f64>>,
    pub number3: Option<Option<f64>>,
    pub max_unauthorised: Option<Option<i64>>,
    pub roles: Option<Vec<String>>,
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

impl FeedReadiness {
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
    /// Role URIs, space separated.
    roles: String,
}

impl ApiKey {
    pub fn scopes(&self) -> Vec<String> {
        self.scopes.split_whitespace().map(str::to_string).collect()
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.split_whitespace().any(|s| s == scope)
    }

    pub fn roles(&self) -> Vec<String> {
        self.roles.split_whitespace().map(str::to_string).collect()
    }

    /// Whether the key holds at least one of `roles`.
    pub fn holds_any_role(&self, roles: &[String]) -> bool {
        self.roles
            .split_whitespace()
            .any(|r| roles.iter().any(|x| x == r))
    }
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: String,
    pub key_hash: String,
    pub bucket: String,
    pub scopes: Vec<String>,
    pub name: Option<String>,
    /// Role URIs (no whitespace in them).
    pub roles: Vec<String>,
}

/// Per-bucket settings; a bucket without a row has the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketSettings {
    /// `None`: every style file is public. `Some(0)`: style files need a
    /// key. `Some(n)`: styles whose longer side is at most `n` are public.
    pub public_max_side: Option<i64>,
    /// The feed byte budget of this bucket's renders: `None` follows the
    /// server's, `Some(0)` is none.
    pub feed_max_bytes: Option<i64>,
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
    /// Only images whose files that batch rendered.
    pub batch: Option<String>,
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
            batch: None,
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

/// What [`crate::JobQueue::finish_job`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinishedJob {
    /// The files are now the image's assets; false when a newer job for the
    /// image was waiting and will render it again.
    pub committed: bool,
    /// Storage keys nothing refers to any more, now scheduled for deletion
    /// (the reaper deletes them once due, if still unreferenced). Files the
    /// new ones replaced are not among them: they are retained first.
    pub orphans: Vec<String>,
}

/// What a worker hands [`crate::JobQueue::finish_job`]: the files of a
/// render and what the render decided about the feed.
#[derive(Debug, Clone, Default)]
pub struct Finish<'a> {
    pub assets: &'a [NewAsset],
    /// The feed file (`None`: no candidate was rendered) and its longer side.
    pub feed_style: Option<String>,
    pub feed_side: Option<i64>,
    /// The feed file's readiness as rendered (visibility is added on read).
    pub readiness: FeedReadiness,
    /// The claim that has kept the new files from deletion since they were
    /// stored: checked live and ended in the commit.
    pub claim: Option<Claim<'a>>,
    /// Until when the files these replace are still served (Unix ms).
    pub retain_until_ms: i64,
    /// When files nothing refers to may be deleted (Unix ms).
    pub delete_at_ms: i64,
}

impl<'a> Finish<'a> {
    /// The files alone: the feed file is `square-3000`, else `itunes`, its
    /// readiness unknown; replaced files and orphans are due at once.
    pub fn of(assets: &'a [NewAsset]) -> Self {
        let feed = ["square-3000", "itunes"]
            .iter()
            .find_map(|style| assets.iter().find(|a| a.style == *style));
        Finish {
            assets,
            feed_style: feed.map(|a| a.style.clone()),
            feed_side: feed.map(|a| a.width.max(a.height)),
            ..Finish::default()
        }
    }
}

/// A claim on stored objects: who holds it, and on which keys.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub holder: &'a str,
    pub keys: &'a [String],
}

/// A file a re-render replaced, kept for its versioned URL until it expires.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RetainedFile {
    pub image_id: String,
    pub style: String,
    pub storage_key: String,
    pub size: i64,
    pub mimetype: String,
    pub width: i64,
    pub height: i64,
    pub sha256: String,
    /// Unix ms.
    pub superseded_at: i64,
    pub expires_at: i64,
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
    /// The JPEG quality it was encoded at; `None` for the original and
    /// files the engine did not encode.
    pub quality: Option<i64>,
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
    pub quality: Option<i64>,
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

/// What a worker may claim (see [`JobQueue::claim_job_for`](crate::JobQueue::claim_job_for)).
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

/// How long files nothing refers to any more are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Files a re-render replaced keep serving at their versioned URLs for
    /// this long, so a feed read before the change never shows a broken
    /// image.
    pub grace: Duration,
    /// Files nothing refers to (a force-deleted image's, a grace period
    /// over) are deleted after this delay: a request that read a row just
    /// before still finds its file.
    pub delete_delay: Duration,
}

/// The default grace period: 7 days.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The default delete delay: a minute.
pub const DEFAULT_DELETE_DELAY: Duration = Duration::from_secs(60);

impl Default for Retention {
    fn default() -> Self {
        Retention {
            grace: DEFAULT_GRACE,
            delete_delay: DEFAULT_DELETE_DELAY,
        }
    }
}

impl Retention {
    /// `now_ms` plus the grace period, in Unix ms.
    pub fn retain_until(&self, now_ms: i64) -> i64 {
        now_ms.saturating_add(millis(self.grace))
    }

    /// `now_ms` plus the delete delay, in Unix ms.
    pub fn delete_at(&self, now_ms: i64) -> i64 {
        now_ms.saturating_add(millis(self.delete_delay))
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
