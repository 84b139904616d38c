//! The API's one error type: every failure a client can see, and the single
//! place each becomes a status, a stable code and a problem+json body
//! (RFC 9457). 5xx bodies are opaque; their cause is logged once, here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use easel_catalog::CatalogError;
use easel_render::iiif::{IiifError, IiifErrorKind};
use easel_render::{ErrorKind, RenderError};
use easel_storage::StorageError;
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No such image (or not visible).
    #[error("no image with id {0:?}")]
    ImageNotFound(String),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    #[error("unknown style {0:?}: expected one of {styles}", styles = easel_app::style_names())]
    UnknownStyle(String),
    /// The style does not exist for this image, and never will.
    #[error("{0}")]
    StyleNotApplicable(String),
    /// Still rendering: the style will exist soon.
    #[error("style {0} is not rendered yet; the image is still ingesting")]
    StyleNotReady(String),
    /// The image could not be rendered, so it has no styles.
    #[error("the image could not be rendered: {reason}")]
    ImageFailed { reason: String },
    /// A versioned file URL that names no file kept for the image: never
    /// minted, or replaced longer ago than the grace period.
    #[error("no {style} file of this image has that version any more (replaced files are kept for a grace period); the current one is at {current}")]
    VersionNotFound { style: String, current: String },
    /// `/styles/itunes.png` when `itunes` is a JPEG.
    #[error("{style} is {mimetype}: its URL ends in .{extension}")]
    WrongExtension {
        style: String,
        mimetype: String,
        extension: &'static str,
    },
    /// The engine refused the upload (format, limits, crop).
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("the upload is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("the range {0:?} is outside the file")]
    RangeNotSatisfiable(String, u64),
    /// A backend (database, blob store) is down or overloaded: try again.
    #[error("the service is temporarily unavailable")]
    Unavailable(String),
    /// The database or the blob store has no room for the write (a full
    /// disk, a quota): nothing was stored; try again once space is freed.
    #[error("the service is out of storage space")]
    StorageFull(String),
    /// A bug or lost data on our side.
    #[error("internal error")]
    Internal(String),
    /// No credentials: no `Authorization` header, or another scheme.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A bearer key we do not know, or a revoked one.
    #[error("{0}")]
    InvalidToken(&'static str),
    /// A valid key without the scope the endpoint needs.
    #[error("this API key lacks the {0} scope")]
    Forbidden(&'static str),
    /// `If-Match` named a version that is no longer current.
    #[error(
        "the image has changed since you read it (its ETag is now \"{current}\"); fetch it again"
    )]
    PreconditionFailed { current: String },
    #[error("no batch with id {0:?}")]
    BatchNotFound(String),
    /// The request is well formed but its content cannot be used.
    #[error("{detail}")]
    Unprocessable { code: &'static str, detail: String },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A IIIF request the Image API refuses (malformed, beyond the image
    /// or the limits) or that names a feature this server lacks.
    #[error(transparent)]
    Iiif(#[from] IiifError),
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    /// A query string named parameters the endpoint does not take. All of
    /// them are named, with the ones it does take: a typo must not be
    /// silently ignored.
    pub fn unknown_parameters(names: &[&str], known: &[&str]) -> Self {
        let mut quoted: Vec<String> = Vec::new();
        for name in names {
            let name = format!("{name:?}");
            if !quoted.contains(&name) {
                quoted.push(name);
            }
        }
        let plural = if quoted.len() == 1 { "" } else { "s" };
        ApiError::bad_request(
            "invalid-parameter",
            format!(
                "unknown parameter{plural} {}; known: {}",
                quoted.join(", "),
                known.join(", ")
            ),
        )
    }

    /// Status, stable code, and a short title that never changes per code.
    fn classify(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::ImageNotFound(_) => {
                (StatusCode::NOT_FOUND, "image-not-found", "Image not found")
            }
            ApiError::RouteNotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            ApiError::UnknownStyle(_) => (StatusCode::NOT_FOUND, "unknown-style", "Unknown style"),
            ApiError::StyleNotApplicable(_) => (
                StatusCode::NOT_FOUND,
                "style-not-applicable",
                "Style does not exist for this image",
            ),
            ApiError::StyleNotReady(_) => (
                StatusCode::NOT_FOUND,
                "style-not-ready",
                "Style not rendered yet",
            ),
            ApiError::ImageFailed { .. } => (
                StatusCode::NOT_FOUND,
                "image-failed",
                "Image could not be rendered",
            ),
            ApiError::VersionNotFound { .. } => (
                StatusCode::NOT_FOUND,
                "version-not-found",
                "No such version of the file",
            ),
            ApiError::WrongExtension { .. } => (
                StatusCode::NOT_FOUND,
                "wrong-extension",
                "The extension does not match the file",
            ),
            ApiError::Render(e) => {
                let status = match (e.kind(), e) {
                    (_, RenderError::TooManyBytes { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
                    (ErrorKind::Unsupported, _) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    (ErrorKind::TooLarge | ErrorKind::Invalid, _) => {
                        StatusCode::UNPROCESSABLE_ENTITY
                    }
                    (ErrorKind::Internal, _) => StatusCode::INTERNAL_SERVER_ERROR,
                };
                (status, e.code(), render_title(status))
            }
            ApiError::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-many-bytes",
                "Upload too large",
            ),
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code, "Bad request"),
            ApiError::RangeNotSatisfiable(..) => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                "Range not satisfiable",
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            ApiError::StorageFull(_) => (
                StatusCode::INSUFFICIENT_STORAGE,
                "storage-full",
                "Insufficient storage",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
            ApiError::Unauthenticated(_) | ApiError::InvalidToken(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            ),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Missing scope"),
            ApiError::PreconditionFailed { .. } => (
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition failed",
            ),
            ApiError::BatchNotFound(_) => {
                (StatusCode::NOT_FOUND, "batch-not-found", "Batch not found")
            }
            ApiError::Unprocessable { code, .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                "Unprocessable request",
            ),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            ApiError::Iiif(e) => match e.kind() {
                IiifErrorKind::Invalid => (StatusCode::BAD_REQUEST, e.code(), "Bad request"),
                IiifErrorKind::Unsupported => {
                    (StatusCode::NOT_IMPLEMENTED, e.code(), "Not implemented")
                }
            },
        }
    }
}

fn render_title(status: StatusCode) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => "Upload too large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "Unsupported image format",
        StatusCode::UNPROCESSABLE_ENTITY => "Image refused",
        _ => "Internal error",
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound(id) => ApiError::ImageNotFound(id),
            CatalogError::VersionMismatch { current, .. } => ApiError::PreconditionFailed {
                current: crate::view::etag_value(current),
            },
            CatalogError::UnknownCursor(cursor) => ApiError::bad_request(
                "invalid-parameter",
                format!("page[after]={cursor:?} is not an image in this list"),
            ),
            e if e.is_full() => ApiError::StorageFull(format!("database: {e}")),
            e if e.is_unavailable() => ApiError::Unavailable(format!("database: {e}")),
            // SQLite says "database is locked" when the busy timeout ran out.
            CatalogError::Database(easel_catalog::SqlxError::Database(db))
                if db.message().contains("locked") =>
            {
                ApiError::Unavailable(format!("database: {db}"))
            }
            e => ApiError::Internal(format!("catalogue: {e}")),
        }
    }
}

impl From<easel_app::batches::BatchError> for ApiError {
    fn from(e: easel_app::batches::BatchError) -> Self {
        use easel_app::batches::BatchError;
        match e {
            BatchError::UnknownStyle(name) => ApiError::UnknownStyle(name),
            e @ BatchError::OriginalNotRendered => {
                ApiError::bad_request("invalid-parameter", e.to_string())
            }
            BatchError::Catalog(e) => e.into(),
        }
    }
}

impl From<easel_app::originals::OriginalError> for ApiError {
    fn from(e: easel_app::originals::OriginalError) -> Self {
        use easel_app::originals::OriginalError;
        match e {
            OriginalError::Refused(e) => e.into(),
            OriginalError::Crashed(e) => {
                ApiError::Internal(format!("upload inspection crashed: {e}"))
            }
            OriginalError::Catalog(e) => e.into(),
            OriginalError::Storage(e) => e.into(),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        if e.is_full() {
            ApiError::StorageFull(format!("blob store: {e}"))
        } else if e.is_unavailable() {
            ApiError::Unavailable(format!("blob store: {e}"))
        } else {
            // A row points at a missing object, or the store is
            // misconfigured: not the client's fault, not worth a retry.
            ApiError::Internal(format!("blob store: {e}"))
        }
    }
}

/// Responses many operations share, for the OpenAPI document only (errors
/// are built as [`ApiError`]): one definition each instead of a copy in
/// every path's `responses(...)`.
macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident = $status:tt, $description:tt $(, headers $headers:tt)?;)*) => {$(
        $(#[$doc])*
        #[derive(utoipa::IntoResponses)]
        #[response(
            status = $status,
            description = $description,
            content_type = "application/problem+json"
            $(, headers $headers)?
        )]
        #[allow(dead_code)]
        pub(crate) struct $name(Problem<'static>);
    )*};
}

problem_responses! {
    /// No key, or an unknown one: every keyed operation.
    Unauthorized = 401, "No API key, or an unknown one";
    /// The catalogue or the object store is down.
    Unavailable = 503, "A backend is unavailable; retry",
        headers(("Retry-After" = u32, description = "Seconds"));
    /// The catalogue or the object store is full: every write.
    InsufficientStorage = 507, "The database or the object store is full; nothing was written, retry once space is freed",
        headers(("Retry-After" = u32, description = "Seconds"));
    LacksRead = 403, "The key lacks image:read";
    LacksWrite = 403, "The key lacks image:write";
    LacksDelete = 403, "The key lacks image:delete";
    /// Missing and another bucket's look alike.
    NoSuchImage = 404, "No such image in the key's bucket";
}

/// An error, as RFC 9457 `application/problem+json`. Each response of the
/// document carries an example of its own status (`openapi::ProblemExamples`).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Problem<'a> {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    kind: String,
    /// A short summary that never changes for a given `code`.
    title: &'a str,
    /// The HTTP status code.
    pub(crate) status: u16,
    /// What went wrong with this request, in words.
    detail: String,
    /// A stable, machine-readable code (e.g. `image-not-found`).
    code: &'a str,
}

impl Problem<'static> {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: String,
    ) -> Self {
        Problem {
            kind: format!("https://easel.dev/problems/{code}"),
            title,
            status: status.as_u16(),
            detail,
            code,
        }
    }
}

impl ApiError {
    /// The body a client is sent: the causes of 5xx answers stay in the log.
    pub(crate) fn problem(&self) -> Problem<'static> {
        let (status, code, title) = self.classify();
        let detail = match self {
            ApiError::Internal(_) => {
                "something went wrong on our side; it has been logged".to_string()
            }
            ApiError::Unavailable(_) => "a backend is unavailable; retry shortly".to_string(),
            ApiError::StorageFull(_) => {
                "storage is full; nothing was written, retry once space is freed".to_string()
            }
            other => other.to_string(),
        };
        Problem::new(status, code, title, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => tracing::error!(cause = %cause, "internal error"),
            ApiError::Unavailable(cause) => tracing::warn!(cause = %cause, "backend unavailable"),
            ApiError::StorageFull(cause) => tracing::error!(cause = %cause, "storage full"),
            _ => {}
        }
        let body = self.problem();
        let status = StatusCode::from_u16(body.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match &self {
            ApiError::StyleNotReady(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            // Space comes back when an operator frees it: minutes, not seconds.
            ApiError::StorageFull(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            }
            // RFC 6750 §3: no error code when the client sent no bearer
            // credentials; `invalid_token` when it sent ones we refuse.
            ApiError::Unauthenticated(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"easel\""),
                );
            }
            ApiError::InvalidToken(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"easel\", error=\"invalid_token\""),
                );
            }
            ApiError::Forbidden(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"easel\", error=\"insufficient_scope\"",
                    ),
                );
            }
            ApiError::RangeNotSatisfiable(_, size) => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_their_statuses_once() {
        let cases = [
            (
                RenderError::TooManyBytes { bytes: 2, limit: 1 },
                413,
                "too-many-bytes",
            ),
            (
                RenderError::TooManyPixels {
                    width: 20000,
                    height: 20000,
                    pixels: 400_000_000,
                    limit: 1,
                },
                422,
                "too-many-pixels",
            ),
            (
                RenderError::UnsupportedFormat(None),
                415,
                "unsupported-format",
            ),
            (RenderError::Empty, 415, "empty-file"),
        ];
        for (error, status, code) in cases {
            let (s, c, _) = ApiError::Render(error).classify();
            assert_eq!((s.as_u16(), c), (status, code));
        }
    }

    #[test]
    fn iiif_refusals_are_400_and_missing_features_501_with_their_codes() {
        let cases = [
            (
                IiifError::InvalidSize("200x".into()),
                400,
                "iiif-invalid-size",
                "Bad request",
            ),
            (
                IiifError::UnsupportedRotation("45".into()),
                501,
                "iiif-unsupported-rotation",
                "Not implemented",
            ),
            (
                IiifError::UnsupportedFormat("tif"),
                501,
                "iiif-unsupported-format",
                "Not implemented",
            ),
            (
                IiifError::ZeroSize {
                    width: 0,
                    height: 10,
                },
                400,
                "iiif-zero-size",
                "Bad request",
            ),
        ];
        for (error, status, code, title) in cases {
            let (s, c, t) = ApiError::Iiif(error).classify();
            assert_eq!((s.as_u16(), c, t), (status, code, title));
        }
    }

    #[tokio::test]
    async fn internal_details_stay_out_of_the_body() {
        let response = ApiError::Internal("secret path /var/x".into()).into_response();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "internal");
        assert_eq!(body["status"], 500);
        assert!(
            !body.to_string().contains("/var/x"),
            "the cause leaked into {body}"
        );
    }
}
