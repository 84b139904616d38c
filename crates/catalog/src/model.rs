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

    fn parse(s: &str) -> Self {
        match s {
            "finished" => ImageStatus::Finished,
            "error" => ImageStatus::Error,
            // The CHECK constraint leaves only this.
            _ => ImageStatus::Ingesting,
        }
    }
}

/// An image row. Dimensions are of the oriented original.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Image {
    pub id: String,
    pub bucket: String,
    pub name: Option<String>,
    pub facet: Option<String>,
    /// `x,y,width,height`, as the render engine's `Crop` parses it.
    pub crop: Option<String>,
    pub width: i64,
    pub height: i64,
    pub size: i64,
    pub mimetype: String,
    pub sha256: String,
    pub original_key: String,
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
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Image {
    pub fn status(&self) -> ImageStatus {
        ImageStatus::parse(&self.status)
    }

    pub fn tags(&self) -> Vec<String> {
        serde_json::from_str(&self.tags).unwrap_or_default()
    }
}

/// What the API knows about an upload once the original is stored.
#[derive(Debug, Clone, Default)]
pub struct NewImage {
    pub id: String,
    pub bucket: String,
    pub name: Option<String>,
    pub facet: Option<String>,
    pub crop: Option<String>,
    pub width: i64,
    pub height: i64,
    pub size: i64,
    pub mimetype: String,
    pub sha256: String,
    pub original_key: String,
    pub tags: Vec<String>,
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
    status: String,
    /// Claims so far, this one included.
    pub attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub run_after: i64,
    pub last_error: Option<String>,
}

impl Job {
    pub fn status(&self) -> JobStatus {
        match self.status.as_str() {
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "failed" => JobStatus::Failed,
            _ => JobStatus::Queued,
        }
    }
}
