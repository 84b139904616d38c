//! Changing images: PATCH, PUT (create or replace, from bytes or an origin
//! URL), re-render, soft delete, restore and force delete.
//!
//! Every change goes through the catalogue in one conditional statement,
//! so `If-Match` is checked atomically with the write, not before it.

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use easel_catalog::{Image, NewImage};

use serde::Deserialize;

use crate::access::{check_visible, visible_image, Trashed};
use crate::auth::{scope, RequireScope};
use crate::fields;
use crate::images::resource;
use crate::upload::{self, read_image_body, respond_created, store_original};
use crate::view::etag_value;
use crate::{ApiError, AppState};

/// JSON bodies (PATCH, PUT with an origin) are small; this bounds them.
const MAX_JSON: usize = 256 * 1024;

/// Longest image id, in bytes (ids are ASCII).
pub const MAX_ID_LEN: usize = 128;

/// Client-chosen ids: `[A-Za-z0-9._-]{1,128}`, never `.` or `..`.
pub fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `If-Match`, resolved against the current row: `Ok(None)` when absent
/// (unconditional), `Ok(Some(v))` to write only while the version is `v`.
fn expected_version(headers: &HeaderMap, current: Option<&Image>) -> Result<Option<i64>, ApiError> {
    let values: Vec<&str> = headers
        .get_all(header::IF_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        return Ok(None);
    }
    let stale = || ApiError::PreconditionFailed {
        current: current.map_or_else(|| "none".into(), |i| etag_value(i.version)),
    };
    let Some(image) = current else {
        return Err(stale());
    };
    if values.contains(&"*") {
        return Ok(Some(image.version));
    }
    let wanted = format!("\"{}\"", etag_value(image.version));
    // If-Match uses the strong comparison: weak tags never match.
    if values.iter().any(|v| *v == wanted) {
        Ok(Some(image.version))
    } else {
        Err(stale())
    }
}

async fn json_body(request: Request) -> Result<Bytes, ApiError> {
    let body = axum::body::to_bytes(request.into_body(), MAX_JSON)
        .await
        .map_err(|_| {
            ApiError::bad_request(
                "invalid-body",
                format!("a JSON body must be at most {MAX_JSON} bytes"),
            )
        })?;
    Ok(body)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|v| v == "application/json" || v == "application/merge-patch+json")
}

/// A PATCH body: keys present change (null clears), absent keys stay.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ImagePatchBody {
    #[schema(max_length = 1024)]
    name: Option<String>,
    #[schema(max_length = 128)]
    facet: Option<String>,
    /// A new crop re-renders the image; `null` goes back to the centred square.
    crop: Option<crate::view::CropView>,
    #[schema(max_items = 64)]
    tags: Option<Vec<String>>,
    #[schema(max_length = 4096)]
    string1: Option<String>,
    #[schema(max_length = 4096)]
    string2: Option<String>,
    #[schema(max_length = 4096)]
    string3: Option<String>,
    number1: Option<f64>,
    number2: Option<f64>,
    number3: Option<f64>,
    /// The longest edge a caller without a key may see: -1 open to
    /// everyone, 0 nothing, N pixels; null follows the bucket's setting.
    #[schema(minimum = -1, example = 640)]
    max_unauthorised: Option<i64>,
    /// Role URIs: a key holding one of them sees the image above
    /// `max_unauthorised` without image:read.
    #[schema(max_items = 32, example = json!(["https://example.org/roles/members"]))]
    roles: Option<Vec<String>>,
}

/// A JSON PUT: the image is fetched from `origin`; the other fields replace
/// the image's (absent ones become empty).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct PutOriginBody {
    /// An http(s) URL without credentials.
    #[schema(format = "uri", example = "https://example.com/cover.jpg")]
    origin: String,
    #[schema(max_length = 1024)]
    name: Option<String>,
    #[schema(max_length = 128)]
    facet: Option<String>,
    crop: Option<crate::view::CropView>,
    #[schema(max_items = 64)]
    tags: Option<Vec<String>>,
    #[schema(max_length = 4096)]
    string1: Option<String>,
    #[schema(max_length = 4096)]
    string2: Option<String>,
    #[schema(max_length = 4096)]
    string3: Option<String>,
    number1: Option<f64>,
    number2: Option<f64>,
    number3: Option<f64>,
    /// The longest edge a caller without a key may see: -1 open to
    /// everyone, 0 nothing, N pixels; null follows the bucket's setting.
    #[schema(minimum = -1, example = 640)]
    max_unauthorised: Option<i64>,
    /// Role URIs: a key holding one of them sees the image above
    /// `max_unauthorised` without image:read.
    #[schema(max_items = 32, example = json!(["https://example.org/roles/members"]))]
    roles: Option<Vec<String>>,
    /// Fetched by this ingest only (e.g. a short-lived presigned URL);
    /// `origin` is what a re-ingest fetches. Never returned.
    #[schema(format = "uri")]
    initial_origin: Option<String>,
}

/// Change an image's metadata or crop (a new crop re-renders it).
#[utoipa::path(
    patch,
    path = "/v1/images/{id}",
    tag = "images",
    operation_id = "updateImage",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The image's id"),
        ("If-Match" = Option<String>, Header, description = "Write only if the image's ETag is still this one (or `*`)"),
    ),
    request_body(
        content(
            (ImagePatchBody = "application/json"),
            (ImagePatchBody = "application/merge-patch+json"),
        ),
    ),
    responses(
        (status = 200, description = "The updated image", body = crate::view::ImageView, headers(("ETag" = String, description = "The image's new version"))),
        (status = 400, description = "Invalid JSON, an unknown field or a bad value", body = crate::error::Problem, content_type = "application/problem+json"),
        crate::error::Unauthorized,
        crate::error::LacksWrite,
        crate::error::NoSuchImage,
        (status = 412, description = "`If-Match` names an old version", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The crop is outside the image", body = crate::error::Problem, content_type = "application/problem+json"),
        crate::error::Unavailable,
        crate::error::InsufficientStorage,
    ),
)]
pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    key: RequireScope<scope::Write>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let image = visible_image(&state, Some(&*key), &id, Trashed::Hidden).await?;
    if !is_json(&headers) {
        return Err(ApiError::UnsupportedMediaType(
            "PATCH takes a JSON object (Content-Type: application/json)".into(),
        ));
    }
    let body = fields::json_object(&json_body(request).await?)?;
    let patch = fields::patch_from_json(&body)?;
    let expected = expected_version(&headers, Some(&image))?;
    if let Some(Some(crop)) = patch.crop {
        if let (Some(w), Some(h)) = (image.width, image.height) {
            crop.check_inside(u32::try_from(w).unwrap_or(0), u32::try_from(h).unwrap_or(0))?;
        }
    }
    let rerender = patch.crop.is_some_and(|c| c != image.crop());
    let updated = state
        .catalog
        .update_image(&id, &patch, expected, rerender, Utc::now())
        .await?;
    if rerender {
        state.wake.notify_one();
    }
    let assets = state.catalog.assets(&id).await?;
    Ok(resource(&state, StatusCode::OK, updated, assets))
}

/// Create or replace under a client-chosen id, from an image body or a
/// JSON `{ "origin": "https://..." }`.
#[utoipa::path(
    put,
    path = "/v1/images/{id}",
    tag = "images",
    operation_id = "putImage",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The image's id: 1 to 128 of `A-Z a-z 0-9 . _ -`"),
        ("If-Match" = Option<String>, Header, description = "Write only if the image's ETag is still this one (or `*`)"),
        crate::upload::UploadQuery,
    ),
    request_body(
        description = "The image's bytes, a multipart form with a `file` part, or JSON with an `origin` URL (then the query takes only `wait`)",
        content(
            (PutOriginBody = "application/json"),
            (crate::schema::Binary = "image/jpeg"),
            (crate::schema::Binary = "image/png"),
            (crate::schema::Binary = "image/webp"),
            (crate::schema::Binary = "image/gif"),
            (crate::schema::Binary = "image/tiff"),
            (crate::schema::Binary = "application/octet-stream"),
            (crate::upload::UploadForm = "multipart/form-data"),
        ),
    ),
    responses(
        (status = 200, description = "Replaced", body = crate::view::ImageView,
            headers(
                ("Location" = String, description = "The image's URL"),
                ("ETag" = String, description = "The image's new version"),
            )),
        (status = 201, description = "Created", body = crate::view::ImageView,
            headers(
                ("Location" = String, description = "The image's URL"),
                ("ETag" = String, description = "The image's version"),
            )),
        (status = 400, description = "A bad id, JSON, field, or a bad or unknown query parameter", body = crate::error::Problem, content_type = "application/problem+json"),
        crate::error::Unauthorized,
        crate::error::LacksWrite,
        (status = 404, description = "The id belongs to another bucket", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names another version, or the image does not exist", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than the byte limit", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not an image of a supported format", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Corrupt image, too many pixels, more memory to render than the budget, a crop outside the image, or a bad origin URL", body = crate::error::Problem, content_type = "application/problem+json"),
        crate::error::Unavailable,
        crate::error::InsufficientStorage,
    ),
)]
pub async fn put(
    State(state): State<AppState>,
    Path(id): Path<String>,
    key: RequireScope<scope::Write>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::bad_request(
            "invalid-id",
            "image ids are 1 to 128 characters of A-Z a-z 0-9 . _ -",
        ));
    }
    let current = state.catalog.image(&id).await?;
    if let Some(image) = &current {
        // Another bucket's id is not ours to see or take.
        check_visible(image, Some(&*key), Trashed::Included)?;
    }
    let expected = expected_version(&headers, current.as_ref())?;
    let (new, wait) = if is_json(&headers) {
        // The image fields travel in the JSON body; the query carries
        // `wait` only, parsed as for an image body.
        let query = upload::query_pairs(&request);
        let misplaced: Vec<&str> = query
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| fields::FIELD_NAMES.contains(name))
            .collect();
        if !misplaced.is_empty() {
            return Err(ApiError::bad_request(
                "invalid-parameter",
                format!(
                    "with a JSON body, {} go in the body; the query takes only wait",
                    misplaced.join(", ")
                ),
            ));
        }
        upload::reject_unknown_parameters(&query, &["wait"])?;
        let mut wait = false;
        for (_, value) in &query {
            wait = upload::parse_wait(value)?;
        }
        let body = fields::json_object(&json_body(request).await?)?;
        let mut allowed = fields::FIELD_NAMES.to_vec();
        allowed.extend(["origin", "initial_origin"]);
        fields::reject_unknown(&body, &allowed)?;
        let origin = match body.get("origin") {
            Some(serde_json::Value::String(url)) => checked_origin(url)?,
            _ => {
                return Err(ApiError::bad_request(
                    "missing-origin",
                    "a JSON PUT needs \"origin\": an http(s) URL to fetch the image from; \
                     send the image itself with an image Content-Type instead",
                ))
            }
        };
        // Fetched by this ingest only; `origin` stays for re-ingests.
        let initial_origin = match body.get("initial_origin") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(url)) => Some(checked_origin(url)?),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid-field",
                    "initial_origin must be an http(s) URL or null",
                ))
            }
        };
        let fields = fields::fields_from_json(&body)?;
        let new = NewImage {
            id: id.clone(),
            bucket: key.bucket.clone(),
            fields,
            original: None,
            origin_url: Some(origin),
            initial_origin,
        };
        (new, wait)
    } else {
        let (bytes, meta) = read_image_body(&state, &headers, request).await?;
        let original = store_original(&state, bytes, meta.crop).await?;
        let mut fields = meta.fields;
        fields.crop = meta.crop;
        let new = NewImage {
            id: id.clone(),
            bucket: key.bucket.clone(),
            fields,
            original: Some(original),
            origin_url: None,
            initial_origin: None,
        };
        (new, meta.wait)
    };
    let replaced = state
        .catalog
        .replace_image(&new, expected, Utc::now())
        .await;
    let (image, created) = upload::settle(&state, new.original.as_ref(), replaced).await?;
    state.wake.notify_one();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    respond_created(&state, image, status, wait).await
}

/// Syntax only: the worker's fetcher checks addresses when it connects
/// (a name can resolve differently later).
fn checked_origin(url: &str) -> Result<String, ApiError> {
    let parsed = url::Url::parse(url).map_err(|e| ApiError::Unprocessable {
        code: "origin-invalid-url",
        detail: format!("origin {url:?} is not a URL: {e}"),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ApiError::Unprocessable {
            code: "origin-invalid-url",
            detail: format!("origin must be an http or https URL with a host, got {url:?}"),
        });
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ApiError::Unprocessable {
            code: "origin-invalid-url",
            detail: "origin URLs must not carry credentials".into(),
        });
    }
    Ok(parsed.to_string())
}

/// Queues a re-render with the current crop and settings.
#[utoipa::path(
    post,
    path = "/v1/images/{id}/render",
    tag = "images",
    operation_id = "renderImage",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The image's id")),
    responses(
        (status = 202, description = "Queued", body = crate::view::ImageView, headers(("ETag" = String, description = "The image's version"))),
        crate::error::Unauthorized,
        crate::error::LacksWrite,
        crate::error::NoSuchImage,
        crate::error::Unavailable,
        crate::error::InsufficientStorage,
    ),
)]
pub async fn render(
    State(state): State<AppState>,
    Path(id): Path<String>,
    key: RequireScope<scope::Write>,
) -> Result<Response, ApiError> {
    visible_image(&state, Some(&*key), &id, Trashed::Hidden).await?;
    state.catalog.enqueue_render(&id, Utc::now()).await?;
    state.wake.notify_one();
    let image = visible_image(&state, Some(&*key), &id, Trashed::Hidden).await?;
    let assets = state.catalog.assets(&id).await?;
    Ok(resource(&state, StatusCode::ACCEPTED, image, assets))
}

#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Remove the row and every stored file no other image shares, trashed
    /// or not (204), instead of a soft delete.
    #[serde(default)]
    force: Option<bool>,
}

/// Soft delete (200 with the resource), or with `?force=true` remove the
/// row and every stored file no other image shares (204).
#[utoipa::path(
    delete,
    path = "/v1/images/{id}",
    tag = "images",
    operation_id = "deleteImage",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The image's id"),
        ("If-Match" = Option<String>, Header, description = "Write only if the image's ETag is still this one (or `*`)"),
        DeleteQuery,
    ),
    responses(
        (status = 200, description = "Soft-deleted (restorable)", body = crate::view::ImageView, headers(("ETag" = String, description = "The image's new version"))),
        (status = 204, description = "Deleted for good (`force=true`)"),
        (status = 400, description = "An unknown or bad parameter", body = crate::error::Problem, content_type = "application/problem+json"),
        crate::error::Unauthorized,
        crate::error::LacksDelete,
        crate::error::NoSuchImage,
        (status = 412, description = "`If-Match` names an old version", body = crate::error::Problem, content_type = "application/problem+json"),
        crate::error::Unavailable,
        crate::error::InsufficientStorage,
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    key: RequireScope<scope::Delete>,
    headers: HeaderMap,
    query: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    // `key` is checked before the query is read: a caller without one
    // learns nothing, not even that its query string is wrong.
    let Query(query) =
        query.map_err(|e| ApiError::bad_request("invalid-parameter", e.body_text()))?;
    if query.force.unwrap_or(false) {
        let image = visible_image(&state, Some(&*key), &id, Trashed::Included).await?;
        let expected = expected_version(&headers, Some(&image))?;
        // The files go after the delete delay, by the reaper, and only
        // those nothing refers to then: an identical upload racing this
        // delete keeps its original (see easel_catalog, "Deleting objects").
        let now = easel_catalog::now_ms();
        let delete_at = state.config.retention.delete_at(now);
        state
            .catalog
            .hard_delete(&id, expected, now, delete_at)
            .await?;
        if let Some(sha256) = &image.sha256 {
            crate::iiif::forget_renders_of(&state, sha256).await;
        }
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let image = visible_image(&state, Some(&*key), &id, Trashed::Hidden).await?;
    let expected = expected_version(&headers, Some(&image))?;
    let deleted = state.catalog.soft_delete(&id, expected, Utc::now()).await?;
    let assets = state.catalog.assets(&id).await?;
    Ok(resource(&state, StatusCode::OK, deleted, assets))
}

/// Undo a soft delete.
#[utoipa::path(
    post,
    path = "/v1/images/{id}/restore",
    tag = "images",
    operation_id = "restoreImage",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The image's id")),
    responses(
        (status = 200, description = "Restored", body = crate::view::ImageView, headers(("ETag" = String, description = "The image's new version"))),
        crate::error::Unauthorized,
        crate::error::LacksDelete,
        crate::error::NoSuchImage,
        crate::error::Unavailable,
        crate::error::InsufficientStorage,
    ),
)]
pub async fn restore(
    State(state): State<AppState>,
    Path(id): Path<String>,
    key: RequireScope<scope::Delete>,
) -> Result<Response, ApiError> {
    visible_image(&state, Some(&*key), &id, Trashed::Included).await?;
    let restored = state.catalog.restore(&id, Utc::now()).await?;
    let assets = state.catalog.assets(&id).await?;
    Ok(resource(&state, StatusCode::OK, restored, assets))
}
