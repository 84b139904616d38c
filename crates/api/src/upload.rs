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
use easel_app::originals;
use easel_catalog::{ImageFields, ImageStatus, NewImage, OriginalFacts};
use easel_render::Crop;
use http_body_util::BodyExt;

use crate::auth::{scope, RequireScope};
use crate::fields;
use crate::view::{etag_header, image_path, image_view};
use crate::{ApiError, AppState};

/// Metadata sent beside the file, as query parameters or multipart fields.
#[derive(Default, Debug)]
pub(crate) struct UploadMeta {
    pub fields: ImageFields,
    pub crop: Option<Crop>,
    pub wait: bool,
}

/// The query parameters an image body takes: the fields, and `wait`.
pub(crate) const UPLOAD_PARAMETERS: [&str; fields::FIELD_NAMES.len() + 1] = {
    let mut names = [""; fields::FIELD_NAMES.len() + 1];
    let mut i = 0;
    while i < fields::FIELD_NAMES.len() {
        names[i] = fields::FIELD_NAMES[i];
        i += 1;
    }
    names[i] = "wait";
    names
};

impl UploadMeta {
    /// Sets one field; `Ok(false)` when `key` names none, which the caller
    /// decides about (a 400 in a query string, ignored as a multipart part).
    fn set(&mut self, key: &str, value: String) -> Result<bool, ApiError> {
        let f = &mut self.fields;
        match key {
            "name" => f.name = fields::text(key, &value, fields::MAX_NAME)?,
            "facet" => f.facet = fields::text(key, &value, fields::MAX_LABEL)?,
            "string1" => f.string1 = fields::text(key, &value, fields::MAX_STRING)?,
            "string2" => f.string2 = fields::text(key, &value, fields::MAX_STRING)?,
            "string3" => f.string3 = fields::text(key, &value, fields::MAX_STRING)?,
            "number1" | "number2" | "number3" => {
                let number = match value.trim() {
                    "" => None,
                    v => Some(fields::number(
                        key,
                        v.parse::<f64>().map_err(|_| {
                            ApiError::bad_request(
                                "invalid-field",
                                format!("{key} must be a number, got {v:?}"),
                            )
                        })?,
                    )?),
                };
                match key {
                    "number1" => f.number1 = number,
                    "number2" => f.number2 = number,
                    _ => f.number3 = number,
                }
            }
            "crop" => {
                self.crop = match value.trim() {
                    "" => None,
                    v => Some(v.parse::<Crop>()?),
                }
            }
            "tags" => f.tags = fields::tags_csv(&value)?,
            "max_unauthorised" => {
                f.max_unauthorised = match value.trim() {
                    "" => None,
                    v => Some(fields::max_unauthorised(v.parse::<i64>().map_err(
                        |_| {
                            ApiError::bad_request(
                                "invalid-field",
                                format!("max_unauthorised must be an integer, got {v:?}"),
                            )
                        },
                    )?)?),
                }
            }
            // Comma separated, as tags are.
            "roles" => f.roles = fields::roles(value.split(',').map(str::to_string).collect())?,
            "wait" => self.wait = parse_wait(&value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The `wait` query parameter: `true`, `1` or bare `wait` waits.
pub(crate) fn parse_wait(value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(ApiError::bad_request(
            "invalid-parameter",
            format!("wait must be true or false, got {other:?}"),
        )),
    }
}

/// Metadata an upload may carry as query parameters (or as multipart fields
/// beside `file`). Documentation only: [`UploadMeta::set`] parses them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct UploadQuery {
    /// A display name (at most 1024 characters, no control characters).
    #[param(max_length = 1024)]
    name: Option<String>,
    /// A label such as `cover` (at most 128 characters).
    #[param(max_length = 128)]
    facet: Option<String>,
    /// `x,y,width,height` in oriented pixels, inside the image.
    #[param(example = "0,0,1400,1400")]
    crop: Option<String>,
    /// Comma-separated tags (at most 64, each at most 128 characters).
    #[param(example = "cover,season-2")]
    tags: Option<String>,
    #[param(max_length = 4096)]
    string1: Option<String>,
    #[param(max_length = 4096)]
    string2: Option<String>,
    #[param(max_length = 4096)]
    string3: Option<String>,
    number1: Option<f64>,
    number2: Option<f64>,
    number3: Option<f64>,
    /// The longest edge a caller without a key may see: -1 open, 0
    /// nothing, N pixels; absent follows the bucket's setting.
    #[param(minimum = -1, example = 640)]
    max_unauthorised: Option<i64>,
    /// Comma-separated role URIs (at most 32).
    #[param(example = "https://example.org/roles/members")]
    roles: Option<String>,
    /// Wait for the render (up to the server's wait timeout) before answering.
    wait: Option<bool>,
}

/// A multipart upload: exactly one `file` part, and optional metadata parts.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct UploadForm {
    /// The image (JPEG, PNG, WebP, GIF or TIFF).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    #[schema(max_length = 1024)]
    name: Option<String>,
    #[schema(max_length = 128)]
    facet: Option<String>,
    /// `x,y,width,height` in oriented pixels.
    crop: Option<String>,
    /// Comma-separated tags.
    tags: Option<String>,
    string1: Option<String>,
    string2: Option<String>,
    string3: Option<String>,
    number1: Option<f64>,
    number2: Option<f64>,
    number3: Option<f64>,
    max_unauthorised: Option<i64>,
    /// Comma-separated role URIs.
    roles: Option<String>,
    wait: Option<bool>,
}

/// Upload an image: its bytes as the body, or a multipart `file` part.
#[utoipa::path(
    post,
    path = "/v1/images",
    tag = "images",
    operation_id = "uploadImage",
    security(("bearer" = [])),
    params(UploadQuery),
    request_body(
        description = "The image itself (its type is sniffed from its bytes), or a multipart form",
        content(
            (crate::schema::Binary = "image/jpeg"),
            (crate::schema::Binary = "image/png"),
            (crate::schema::Binary = "image/webp"),
            (crate::schema::Binary = "image/gif"),
            (crate::schema::Binary = "image/tiff"),
            (crate::schema::Binary = "application/octet-stream"),
            (UploadForm = "multipart/form-data"),
        ),
    ),
    responses(
        (status = 201, description = "With `wait`: rendered (or failed) before the wait ran out", body = crate::view::ImageView,
            headers(
                ("Location" = String, description = "The new image's URL"),
                ("ETag" = String, description = "The image's version"),
            )),
        (status = 202, description = "Stored; rendering in the background", body = crate::view::ImageView,
            headers(
                ("Location" = String, description = "The new image's URL"),
                ("ETag" = String, description = "The image's version"),
            )),
        (status = 400, description = "Bad metadata, an unknown query parameter, or a bad multipart body", body = crate::error::Problem, content_type = "application/problem+json"),
        crate::error::Unauthorized,
        crate::error::LacksWrite,
        (status = 413, description = "Larger than the byte limit", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not an image of a supported format", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Corrupt, too many pixels, more memory to render than the budget, or a crop outside the image", body = crate::error::Problem, content_type = "application/problem+json"),
        crate::error::Unavailable,
        crate::error::InsufficientStorage,
    ),
)]
pub async fn upload(
    State(state): State<AppState>,
    key: RequireScope<scope::Write>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let bucket = key.bucket.clone();
    let result = accept(&state, &bucket, &headers, request).await;
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
    bucket: &str,
    headers: &HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let (bytes, meta) = read_image_body(state, headers, request).await?;
    let original = store_original(state, bytes, meta.crop).await?;
    let new = NewImage {
        id: uuid::Uuid::now_v7().to_string(),
        bucket: bucket.to_string(),
        fields: ImageFields {
            crop: meta.crop,
            ..meta.fields
        },
        original: Some(original),
        origin_url: None,
        initial_origin: None,
    };
    let created = state.catalog.create_image(&new, Utc::now()).await;
    let image = settle(state, new.original.as_ref(), created).await?;
    state.wake.notify_one();
    tracing::info!(image = %image.id, bytes = image.size, "upload accepted");
    respond_created(state, image, StatusCode::ACCEPTED, meta.wait).await
}

/// Answers a create: `accepted` at once, or with `wait` once the render is
/// done (201) or the wait timed out (202). Location and ETag set.
pub(crate) async fn respond_created(
    state: &AppState,
    image: easel_catalog::Image,
    accepted: StatusCode,
    wait: bool,
) -> Result<Response, ApiError> {
    let (status, image) = if wait {
        wait_for_render(state, image, accepted).await?
    } else {
        (accepted, image)
    };
    let assets = state.catalog.assets(&image.id).await?;
    let location = state.link(&image_path(&image.id));
    let etag = etag_header(&image);
    let mut response = (status, Json(image_view(state, image, Some(assets)))).into_response();
    response.headers_mut().insert(header::ETAG, etag);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Reads an image body (raw or multipart) with its metadata from the query
/// string and multipart fields, refusing anything over the byte limit
/// before buffering it.
pub(crate) async fn read_image_body(
    state: &AppState,
    headers: &HeaderMap,
    request: Request,
) -> Result<(Bytes, UploadMeta), ApiError> {
    let limit = state.settings.limits.max_bytes;
    let mut meta = UploadMeta::default();
    let query = query_pairs(&request);
    reject_unknown_parameters(&query, &UPLOAD_PARAMETERS)?;
    for (key, value) in query {
        meta.set(&key, value)?;
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
        // Refused before storing or buffering a byte of it; the rest of the
        // body is read and thrown away after the answer (`crate::linger`).
        return Err(ApiError::BodyTooLarge { limit });
    }
    let body = read_body(body, declared, allowance, limit).await?;

    let bytes = if is_multipart {
        let request = Request::from_parts(parts, Body::from(body));
        read_multipart(state, request, limit, &mut meta).await?
    } else {
        body
    };
    Ok((bytes, meta))
}

/// The request's query string, decoded.
pub(crate) fn query_pairs(request: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// A 400 naming every parameter of `query` outside `known`.
pub(crate) fn reject_unknown_parameters(
    query: &[(String, String)],
    known: &[&str],
) -> Result<(), ApiError> {
    let unknown: Vec<&str> = query
        .iter()
        .map(|(key, _)| key.as_str())
        .filter(|key| !known.contains(key))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ApiError::unknown_parameters(&unknown, known))
    }
}

/// Checks the bytes (format, limits, crop) and stores them: the original
/// is durable before any row points at it, and claimed (see
/// `easel_app::originals`) until the row that commits with it ends the
/// claim (see [`settle`]).
pub(crate) async fn store_original(
    state: &AppState,
    bytes: Bytes,
    crop: Option<Crop>,
) -> Result<OriginalFacts, ApiError> {
    let checks = originals::Checks {
        settings: state.settings.clone(),
        memory_budget: Some(state.config.render_memory.total_bytes()),
        crop,
    };
    let facts = originals::inspect(&bytes, checks).await?;
    let holder = format!("upload/{}", uuid::Uuid::now_v7());
    let facts = originals::store(
        state.catalog.as_ref(),
        &state.store,
        &state.config.retention,
        holder,
        facts,
        bytes,
    )
    .await?;
    metrics::counter!("easel_upload_bytes_total").increment(u64::try_from(facts.size).unwrap_or(0));
    Ok(facts)
}

/// The outcome of the write that records a stored original: when it
/// failed, its claim is released (the original is scheduled for deletion
/// if nothing else refers to it), so a refused upload leaves nothing.
pub(crate) async fn settle<T>(
    state: &AppState,
    original: Option<&OriginalFacts>,
    written: Result<T, easel_catalog::CatalogError>,
) -> Result<T, ApiError> {
    match written {
        Ok(value) => Ok(value),
        Err(e) => {
            if let Some(original) = original {
                originals::release(state.catalog.as_ref(), &state.config.retention, original).await;
            }
            Err(e.into())
        }
    }
}

/// Reads the body up to `cap` bytes, refusing a longer one (whose rest is
/// drained after the answer, see `crate::linger`). The buffer starts at the
/// declared length (at most `cap`): grown from empty, a 3 MB photo was
/// copied again at each doubling.
async fn read_body(
    mut body: Body,
    declared: Option<u64>,
    cap: u64,
    limit: u64,
) -> Result<Bytes, ApiError> {
    let expected = declared.unwrap_or(0).min(cap);
    let mut buffer = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(
                "invalid-body",
                format!("could not read the request body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if (buffer.len() + data.len()) as u64 > cap {
                return Err(ApiError::BodyTooLarge { limit });
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
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
            // Unknown parts are ignored: browsers' forms send extras (a
            // submit button, a CSRF token) that are not the client's typos.
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

/// Polls until the worker is done with the image or the wait times out.
/// Polling the catalogue works whether the worker is embedded or another
/// process; a render this process commits cuts the poll's sleep short.
async fn wait_for_render(
    state: &AppState,
    image: easel_catalog::Image,
    accepted: StatusCode,
) -> Result<(StatusCode, easel_catalog::Image), ApiError> {
    let deadline = tokio::time::Instant::now() + state.config.wait_timeout;
    let mut latest = image;
    let mut committed = state.config.serve_cache.changed();
    loop {
        if latest.status() != ImageStatus::Ingesting {
            // Done: a create says 201, a replace keeps its 200.
            let done = if accepted == StatusCode::ACCEPTED {
                StatusCode::CREATED
            } else {
                accepted
            };
            return Ok((done, latest));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok((accepted, latest));
        }
        tokio::select! {
            _ = &mut committed => {}
            _ = tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + state.config.wait_poll)) => {}
        }
        committed = state.config.serve_cache.changed();
        if let Some(image) = state.catalog.image(&latest.id).await? {
            latest = image;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_upload_parameter_sets_a_field_and_no_other_name_does() {
        for name in UPLOAD_PARAMETERS {
            let value = match name {
                "crop" => "0,0,10,10",
                "wait" => "true",
                "max_unauthorised" => "640",
                "roles" => "https://example.org/roles/member",
                n if n.starts_with("number") => "1.5",
                _ => "x",
            };
            let known = UploadMeta::default().set(name, value.into()).unwrap();
            assert!(known, "{name}");
        }
        for name in crate::fields::FIELD_NAMES {
            assert!(UPLOAD_PARAMETERS.contains(&name), "{name}");
        }
        assert!(!UploadMeta::default().set("colour", "red".into()).unwrap());
    }
}
