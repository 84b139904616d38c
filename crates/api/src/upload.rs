//! `POST /v1/images`: multipart or raw body in, 202 + Location out.
//!
//! Order matters for "nothing is lost, nothing half-done": limits and the
//! header are checked before anything is stored; the original is stored
//! before the row; the row and its job commit together before we answer.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::BytesMut;
use chrono::Utc;
use easel_catalog::{ImageStatus, NewImage};
use easel_render::{Crop, RenderError};
use easel_storage::original_key;
use http_body_util::BodyExt;

use crate::view::{image_path, image_view};
use crate::{ApiError, AppState};

const MAX_NAME: usize = 1024;
const MAX_LABEL: usize = 128;
const MAX_TAGS: usize = 64;

/// Metadata sent beside the file, as query parameters or multipart fields.
#[derive(Default, Debug)]
struct UploadMeta {
    name: Option<String>,
    facet: Option<String>,
    crop: Option<String>,
    tags: Option<String>,
    wait: bool,
}

impl UploadMeta {
    fn set(&mut self, key: &str, value: String) -> Result<(), ApiError> {
        match key {
            "name" => self.name = Some(value),
            "facet" => self.facet = Some(value),
            "crop" => self.crop = Some(value),
            "tags" => self.tags = Some(value),
            "wait" => {
                self.wait = match value.as_str() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(ApiError::bad_request(
                            "invalid-parameter",
                            format!("wait must be true or false, got {other:?}"),
                        ))
                    }
                }
            }
            // Unknown metadata is ignored, like unknown JSON fields.
            _ => {}
        }
        Ok(())
    }
}

pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let result = accept(&state, &headers, request).await;
    let outcome = match &result {
        Ok(_) => "accepted",
        Err(_) => "rejected",
    };
    metrics::counter!("easel_uploads_total", "outcome" => outcome).increment(1);
    metrics::histogram!("easel_upload_seconds").record(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        tracing::info!(error = %e, "upload rejected");
    }
    result
}

async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let limit = state.settings.limits.max_bytes;
    let mut meta = UploadMeta::default();
    if let Some(query) = request.uri().query() {
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            meta.set(&key, value.into_owned())?;
        }
    }

    let is_multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    let allowance = if is_multipart {
        limit.saturating_add(crate::MULTIPART_OVERHEAD)
    } else {
        limit
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (parts, body) = request.into_parts();
    if declared.is_some_and(|n| n > allowance) {
        // Refused before storing or buffering a byte of it; what is drained
        // is discarded (see `drain`).
        if declared.is_some_and(|n| n <= allowance.saturating_add(DRAIN_BUDGET)) {
            drain(body, DRAIN_BUDGET).await;
        }
        return Err(ApiError::BodyTooLarge { limit });
    }
    let body = read_body(body, allowance, limit).await?;

    let bytes = if is_multipart {
        let request = Request::from_parts(parts, Body::from(body));
        read_multipart(state, request, limit, &mut meta).await?
    } else {
        body
    };

    let new = prepare(state, bytes.clone(), &meta).await?;
    state.store.put_if_absent(&new.original_key, bytes).await?;
    let image = state.catalog.create_image(&new, Utc::now()).await?;
    metrics::counter!("easel_upload_bytes_total").increment(u64::try_from(new.size).unwrap_or(0));
    state.wake.notify_one();
    tracing::info!(image = %image.id, bytes = new.size, "upload accepted");

    let (status, image) = if meta.wait {
        wait_for_render(state, image).await?
    } else {
        (StatusCode::ACCEPTED, image)
    };
    let assets = state.catalog.assets(&image.id).await?;
    let location = state.link(&image_path(&image.id));
    let mut response = (status, Json(image_view(state, image, assets))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// How much of a refused body we read and throw away so the client gets
/// to read our 413. Closing with unread bytes makes the kernel reset the
/// connection, which can destroy the response before the client sees it.
/// Above this, we answer and close anyway.
const DRAIN_BUDGET: u64 = 16 * 1024 * 1024;

/// Reads the body up to `cap` bytes, refusing (and draining) a longer one.
async fn read_body(mut body: Body, cap: u64, limit: u64) -> Result<Bytes, ApiError> {
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(
                "invalid-body",
                format!("could not read the request body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if (buffer.len() + data.len()) as u64 > cap {
                drain(body, DRAIN_BUDGET).await;
                return Err(ApiError::BodyTooLarge { limit });
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

/// Reads and discards up to `budget` bytes of a body we refused.
async fn drain(mut body: Body, budget: u64) {
    let mut seen = 0u64;
    while seen <= budget {
        match body.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => break,
        }
    }
}

async fn read_multipart(
    state: &AppState,
    request: Request,
    limit: u64,
    meta: &mut UploadMeta,
) -> Result<Bytes, ApiError> {
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|e| ApiError::bad_request("invalid-multipart", e.body_text()))?;
    let mut file: Option<Vec<u8>> = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, limit))?
    {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            if file.is_some() {
                return Err(ApiError::bad_request(
                    "invalid-multipart",
                    "send exactly one file field",
                ));
            }
            let mut buffer = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
                if (buffer.len() + chunk.len()) as u64 > limit {
                    return Err(ApiError::BodyTooLarge { limit });
                }
                buffer.extend_from_slice(&chunk);
            }
            file = Some(buffer);
        } else {
            let value = field.text().await.map_err(|e| multipart_error(e, limit))?;
            meta.set(&name, value)?;
        }
    }
    file.map(Bytes::from).ok_or_else(|| {
        ApiError::bad_request("missing-file", "the multipart body has no \"file\" field")
    })
}

fn multipart_error(e: axum::extract::multipart::MultipartError, limit: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::BodyTooLarge { limit }
    } else {
        ApiError::bad_request("invalid-multipart", e.body_text())
    }
}

/// Validates the metadata, reads the header (format, oriented size) against
/// the limits, checks the crop, and hashes the bytes: everything that can
/// refuse the upload, before anything is stored.
async fn prepare(state: &AppState, bytes: Bytes, meta: &UploadMeta) -> Result<NewImage, ApiError> {
    let name = bounded("name", meta.name.as_deref(), MAX_NAME)?;
    let facet = bounded("facet", meta.facet.as_deref(), MAX_LABEL)?;
    let tags = parse_tags(meta.tags.as_deref())?;
    let crop = meta.crop.as_deref().map(str::parse::<Crop>).transpose()?;

    let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    let settings = state.settings.clone();
    // Hashing 64 MB takes ~100 ms of CPU: keep it off the async threads.
    let (facts, sha256) = tokio::task::spawn_blocking(move || {
        let facts = easel_render::inspect(&bytes, &settings)?;
        Ok::<_, RenderError>((facts, easel_render::sha256_hex(&bytes)))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("upload inspection crashed: {e}")))??;
    if let Some(crop) = crop {
        crop.check_inside(facts.width, facts.height)?;
    }
    Ok(NewImage {
        id: uuid::Uuid::now_v7().to_string(),
        bucket: "default".into(),
        name,
        facet,
        crop: crop.map(|c| c.to_string()),
        width: i64::from(facts.width),
        height: i64::from(facts.height),
        size,
        mimetype: facts.mimetype.to_string(),
        original_key: original_key(&sha256),
        sha256,
        tags,
    })
}

fn bounded(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, ApiError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.chars().count() > max => Err(ApiError::bad_request(
            "invalid-parameter",
            format!("{field} is longer than {max} characters"),
        )),
        Some(v) => Ok(Some(v.to_string())),
    }
}

/// `tags=cover,season-2`: comma-separated, trimmed, empty ones dropped.
fn parse_tags(value: Option<&str>) -> Result<Vec<String>, ApiError> {
    let tags: Vec<String> = value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if tags.len() > MAX_TAGS {
        return Err(ApiError::bad_request(
            "invalid-parameter",
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    if let Some(long) = tags.iter().find(|t| t.chars().count() > MAX_LABEL) {
        return Err(ApiError::bad_request(
            "invalid-parameter",
            format!("tag {long:?} is longer than {MAX_LABEL} characters"),
        ));
    }
    Ok(tags)
}

/// Polls until the worker is done with the image or the wait times out.
/// Polling the catalogue (not an in-process signal) works whether the
/// worker is embedded or another process.
async fn wait_for_render(
    state: &AppState,
    image: easel_catalog::Image,
) -> Result<(StatusCode, easel_catalog::Image), ApiError> {
    let deadline = tokio::time::Instant::now() + state.config.wait_timeout;
    let mut latest = image;
    loop {
        if latest.status() != ImageStatus::Ingesting {
            return Ok((StatusCode::CREATED, latest));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok((StatusCode::ACCEPTED, latest));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if let Some(image) = state.catalog.image(&latest.id).await? {
            latest = image;
        }
    }
}
