//! IIIF Authorization Flow 2.0 for images that are not fully open.
//!
//! An image whose `max_unauthorised` (or bucket) limits what strangers see
//! declares, in its `info.json`, a probe service (`GET /iiif/3/{id}/probe`)
//! whose access service has the `external` profile: the caller already
//! holds what authorises it, an API key, and no login page is involved.
//! Its token service hands a client the token to send to the probe; for a
//! bearer key that token is the key the client presented. The probe
//! answers, always with HTTP 200, the status the client would get for the
//! full image, and for a 401 the largest public view as a substitute.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::Wanted;
use crate::auth::Caller;
use crate::iiif::{find_image, id_url};
use crate::{ApiError, AppState};

/// The JSON-LD context of the Authorization Flow 2.0 terms.
pub const AUTH_CONTEXT: &str = "http://iiif.io/api/auth/2/context.json";
/// Where the token service is: outside `/iiif/3/{id}`, so no image id can
/// shadow it.
pub const TOKEN_PATH: &str = "/iiif/auth/2/token";
/// How long a client may use the token before asking again.
const TOKEN_EXPIRES_IN_SECS: u64 = 3600;

/// Adds the probe service (and through it the access and token services)
/// to an image information document, and the auth context before the
/// image context, as the specification asks.
pub(crate) fn declare_services(info: &mut Value, id_url: &str, service_base: &str) {
    let Some(object) = info.as_object_mut() else {
        return;
    };
    let image_context = object.remove("@context").unwrap_or(Value::Null);
    let mut contexts = vec![Value::from(AUTH_CONTEXT)];
    match image_context {
        Value::Array(list) => contexts.extend(list),
        Value::Null => {}
        other => contexts.push(other),
    }
    let mut ordered = serde_json::Map::new();
    ordered.insert("@context".into(), Value::Array(contexts));
    ordered.extend(std::mem::take(object));
    ordered.insert(
        "service".into(),
        json!([{
            "id": format!("{id_url}/probe"),
            "type": "AuthProbeService2",
            "errorHeading": { "en": ["A larger size needs an API key"] },
            "errorNote": { "en": ["Without a key, the largest public size is shown."] },
            "service": [{
                "type": "AuthAccessService2",
                "profile": "external",
                "label": { "en": ["An API key of this image's bucket, or one holding a role of the image"] },
                "service": [{
                    "id": format!("{service_base}{TOKEN_PATH}"),
                    "type": "AuthAccessTokenService2",
                    "errorHeading": { "en": ["No API key was sent"] },
                    "errorNote": { "en": ["Send Authorization: Bearer <key> to this service."] }
                }]
            }]
        }]),
    );
    *object = ordered;
}

/// The probe result for the image's full size (Authorization Flow 2.0 §5).
#[utoipa::path(
    get,
    path = "/iiif/3/{id}/probe",
    tag = "iiif",
    operation_id = "iiifProbe",
    security((), ("bearer" = [])),
    params(("id" = String, Path, description = "The image's id")),
    responses(
        (status = 200, description = "An `AuthProbeResult2`: `status` 200 when this caller may see the full image, \
            else 401 with, when some size is public, a `substitute` naming the largest public view",
            content_type = "application/ld+json", body = Object),
        crate::error::Unauthorized,
        (status = 403, description = "A key of the bucket without image:read or a role of the image, where nothing is public", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image (or nothing of it is public and no key was sent)", body = crate::error::Problem, content_type = "application/problem+json"),
        crate::error::Unavailable,
    ),
)]
pub(crate) async fn probe(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let found = find_image(&state, &headers, &id).await?;
    let mut result = json!({
        "@context": AUTH_CONTEXT,
        "id": format!("{}/probe", id_url(&state, &headers, &id)),
        "type": "AuthProbeResult2",
    });
    if found.decide(Wanted::Everything).allowed() {
        result["status"] = json!(200);
    } else {
        result["status"] = json!(401);
        result["heading"] = json!({ "en": ["A larger size needs an API key"] });
        result["note"] = json!({ "en": ["Send an API key of this image's bucket, or one holding a role of the image."] });
        let side = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0);
        let public = match (side(found.image.width), side(found.image.height)) {
            (Some(w), Some(h)) => found.public_size(w, h),
            _ => None,
        };
        if let Some((width, height)) = public {
            result["substitute"] = json!([{
                "id": format!("{}/full/{width},/0/default.jpg", id_url(&state, &headers, &id)),
                "type": "Image",
                "format": "image/jpeg",
                "width": width,
                "height": height,
                "label": { "en": [format!("The largest public size, {width}x{height}")] }
            }]);
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/ld+json"),
            (header::CACHE_CONTROL, "private, no-store"),
            (header::VARY, "Authorization"),
        ],
        Json(result),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenRequest {
    message_id: Option<String>,
    origin: Option<String>,
}

/// The access token service (Authorization Flow 2.0 §4).
#[utoipa::path(
    get,
    path = "/iiif/auth/2/token",
    tag = "iiif",
    operation_id = "iiifAccessToken",
    security((), ("bearer" = [])),
    params(
        ("messageId" = Option<String>, Query, description = "With `origin`: answer with the HTML page that posts the message to the opening window"),
        ("origin" = Option<String>, Query, description = "The origin of the page that opened the service"),
    ),
    responses(
        (status = 200, description = "An `AuthAccessToken2` whose `accessToken` is the presented key (send it to probe services as `Authorization: Bearer`), \
            or an `AuthAccessTokenError2` (`missingAspect`: no key sent; `invalidAspect`: an unknown key); as JSON, \
            or as the HTML page that posts it when `messageId` and `origin` are given",
            content(
                (Object = "application/json"),
                (String = "text/html"),
            )),
    ),
)]
pub(crate) async fn token(
    State(state): State<AppState>,
    Query(request): Query<TokenRequest>,
    headers: HeaderMap,
) -> Response {
    let message = match Caller::from_headers(&state, &headers).await {
        Ok(Caller(Some(_))) => {
            let key = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().split_once(' '))
                .map(|(_, key)| key.trim().to_string())
                .unwrap_or_default();
            json!({
                "@context": AUTH_CONTEXT,
                "type": "AuthAccessToken2",
                "accessToken": key,
                "expiresIn": TOKEN_EXPIRES_IN_SECS,
            })
        }
        Ok(Caller(None)) => token_error("missingAspect", "No API key was sent"),
        Err(ApiError::Unauthenticated(_) | ApiError::InvalidToken(_)) => {
            token_error("invalidAspect", "The API key is unknown or revoked")
        }
        Err(_) => token_error("unavailable", "The service is unavailable; try again"),
    };
    respond_token(message, request)
}

fn token_error(profile: &str, heading: &str) -> Value {
    json!({
        "@context": AUTH_CONTEXT,
        "type": "AuthAccessTokenError2",
        "profile": profile,
        "heading": { "en": [heading] },
    })
}

/// JSON to a script; to a frame (`messageId` and `origin`), the page that
/// posts it to that origin only.
fn respond_token(mut message: Value, request: TokenRequest) -> Response {
    let no_store = [(header::CACHE_CONTROL, "no-store")];
    let (Some(message_id), Some(origin)) = (request.message_id, request.origin) else {
        return (no_store, Json(message)).into_response();
    };
    message["messageId"] = Value::from(message_id);
    // JSON in a script element: `<` escaped so no value can close it.
    let script_json = |v: &Value| v.to_string().replace('<', "\\u003c");
    let page = format!(
        "<!doctype html><html><body><script>window.parent.postMessage({}, {});</script></body></html>",
        script_json(&message),
        script_json(&Value::from(origin)),
    );
    (no_store, Html(page)).into_response()
}
