//! Batch re-render over HTTP: `POST /v1/rerender` starts (or resumes) a
//! batch for the caller's bucket; `GET /v1/batches/{id}` shows its progress.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use easel_app::batches::{open_or_create, progress, rerender_filter, ENQUEUE_CHUNK};
use easel_catalog::{Batch, BatchCounts, BatchFailure};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{scope, RequireScope};
use crate::{ApiError, AppState};

/// Failures listed in a batch view.
const FAILURES_SHOWN: i64 = 100;

/// What to re-render: the caller's bucket, optionally narrowed.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerenderRequest {
    /// Only images missing this style or holding a stale file of it.
    #[schema(value_type = Option<crate::schema::RenderedStyle>)]
    pub style: Option<String>,
    /// Only images created at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Every image, stale or not.
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchCountsView {
    /// Matching images not queued yet.
    pub pending: i64,
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
    /// Done, but rendered since with other settings (an edit rendered by a
    /// worker with other settings): queued again by the batch's next pass.
    pub stale: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchFailureView {
    pub image_id: String,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    pub id: String,
    pub bucket: Option<String>,
    pub style: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub all: bool,
    /// The render settings the batch renders to.
    pub fingerprint: String,
    pub total: i64,
    pub counts: BatchCountsView,
    /// True once every image is done (rendered with the batch's settings)
    /// or failed.
    pub complete: bool,
    pub failures: Vec<BatchFailureView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) fn batch_view(
    batch: Batch,
    counts: BatchCounts,
    stale: i64,
    failures: Vec<BatchFailure>,
) -> BatchView {
    let filter = batch.filter();
    let progress = progress(&batch, &counts, stale);
    BatchView {
        complete: progress.complete,
        counts: BatchCountsView {
            pending: progress.pending,
            queued: counts.queued,
            running: counts.running,
            done: counts.done,
            failed: counts.failed,
            stale,
        },
        failures: failures
            .into_iter()
            .map(|f| BatchFailureView {
                image_id: f.image_id,
                reason: f.reason,
            })
            .collect(),
        id: batch.id,
        bucket: batch.bucket,
        style: filter.style,
        since: filter.since,
        all: filter.all,
        fingerprint: batch.fingerprint,
        total: batch.total,
        created_at: batch.created_at,
        updated_at: batch.updated_at,
    }
}

/// Start (or resume) a re-render of the caller's bucket.
#[utoipa::path(
    post,
    path = "/v1/rerender",
    tag = "batches",
    operation_id = "startRerender",
    security(("bearer" = [])),
    request_body(content = Option<RerenderRequest>, content_type = "application/json",
        description = "What to re-render; an empty body means every stale image"),
    responses(
        (status = 202, description = "The batch, queueing in the background", body = BatchView,
            headers(("Location" = String, description = "The batch's URL"))),
        (status = 400, description = "Invalid JSON, or the `original` style", body = crate::error::Problem, content_type = "application/problem+json"),
        crate::error::Unauthorized,
        crate::error::LacksWrite,
        (status = 404, description = "Unknown style", body = crate::error::Problem, content_type = "application/problem+json"),
        crate::error::Unavailable,
        crate::error::InsufficientStorage,
    ),
)]
pub async fn start(
    State(state): State<AppState>,
    key: RequireScope<scope::Write>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let request: RerenderRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RerenderRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request("invalid-json", format!("invalid re-render request: {e}"))
        })?
    };
    let filter = rerender_filter(
        Some(key.bucket.clone()),
        request.style,
        request.since,
        request.all,
    )?;
    let fingerprint = state.settings.fingerprint();
    let (batch, _resumed) = open_or_create(state.catalog.as_ref(), &filter, &fingerprint).await?;
    // The first chunk now, so a small batch answers with its real state (an
    // empty one complete at once); the rest in the background: a catalogue
    // of 100,000 images must not hold the request open. If this node stops
    // mid-way, POSTing again resumes.
    let first = state
        .catalog
        .enqueue_batch(&batch, ENQUEUE_CHUNK, Utc::now())
        .await?;
    if first > 0 {
        state.wake.notify_waiters();
        let (catalog, wake, queued) = (state.catalog.clone(), state.wake.clone(), batch.clone());
        tokio::spawn(async move {
            loop {
                match catalog
                    .enqueue_batch(&queued, ENQUEUE_CHUNK, Utc::now())
                    .await
                {
                    Ok(0) => break,
                    Ok(_) => wake.notify_waiters(),
                    Err(e) => {
                        tracing::warn!(batch = %queued.id, error = %e, "enqueueing the batch stopped; POST again to resume");
                        break;
                    }
                }
            }
        });
    }
    let batch = state
        .catalog
        .batch(&batch.id)
        .await?
        .ok_or_else(|| ApiError::BatchNotFound(batch.id.clone()))?;
    let counts = state.catalog.batch_counts(&batch.id).await?;
    let stale = state.catalog.batch_stale(&batch.id).await?;
    let location = state.link(&format!("/v1/batches/{}", batch.id));
    let mut response = (
        StatusCode::ACCEPTED,
        Json(batch_view(batch, counts, stale, Vec::new())),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// A batch's progress.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}",
    tag = "batches",
    operation_id = "showBatch",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch", body = BatchView),
        crate::error::Unauthorized,
        crate::error::LacksRead,
        (status = 404, description = "No such batch in the key's bucket", body = crate::error::Problem, content_type = "application/problem+json"),
        crate::error::Unavailable,
    ),
)]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    key: RequireScope<scope::Read>,
) -> Result<Json<BatchView>, ApiError> {
    let batch = match state.catalog.batch(&id).await? {
        Some(batch) if batch.bucket.as_deref() == Some(key.bucket.as_str()) => batch,
        _ => return Err(ApiError::BatchNotFound(id)),
    };
    let counts = state.catalog.batch_counts(&id).await?;
    let stale = state.catalog.batch_stale(&id).await?;
    let failures = state.catalog.batch_failures(&id, FAILURES_SHOWN).await?;
    Ok(Json(batch_view(batch, counts, stale, failures)))
}
