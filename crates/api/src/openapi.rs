//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations, served at `GET /openapi.json`, with Swagger UI at `/docs`
//! (its files are compiled in: the page works with no internet).

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::schema::{Binary, Health, Ready};
use crate::AppState;

/// The scheme name handlers refer to in `security(("bearer" = []))`.
pub const BEARER: &str = "bearer";

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("easel_<id>_<secret>")
                    .description(Some(
                        "An API key made with `easel keys create`, bound to one bucket and \
                         to scopes image:read, image:write, image:delete.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Fills in the version at run time: the derive cannot read it.
struct Version;

impl Modify for Version {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.info.version = env!("CARGO_PKG_VERSION").to_string();
        let license = env!("CARGO_PKG_LICENSE");
        openapi.info.license = Some(
            utoipa::openapi::info::LicenseBuilder::new()
                .name(license)
                .identifier(Some(license))
                .build(),
        );
    }
}

/// Documents hyper's own refusal of a request line longer than 64 KiB
/// (`414`, empty body) on every operation: it comes before any handler,
/// so no route can answer it otherwise, yet a client can receive it from
/// any of them (schemathesis found it with a long query string).
struct UriTooLong;

impl Modify for UriTooLong {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item) {
                op.responses.responses.insert(
                    "414".to_string(),
                    utoipa::openapi::RefOr::T(
                        utoipa::openapi::ResponseBuilder::new()
                            .description(
                                "The request target is longer than the HTTP server takes \
                                 (64 KiB); the body is empty.",
                            )
                            .build(),
                    ),
                );
            }
        }
    }
}

/// Gives every problem response an example of its own status, built from
/// the real error type, so `/docs` shows a 413 with the 413 body a client
/// gets (the schema's one example stood under every status before).
struct ProblemExamples;

impl Modify for ProblemExamples {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item) {
                let id = op.operation_id.clone().unwrap_or_default();
                for (status, response) in op.responses.responses.iter_mut() {
                    let utoipa::openapi::RefOr::T(response) = response else {
                        continue;
                    };
                    let Some(content) = response.content.get_mut(crate::PROBLEM_JSON) else {
                        continue;
                    };
                    let Some(example) = status.parse().ok().and_then(|s| example_problem(&id, s))
                    else {
                        continue;
                    };
                    content.example = serde_json::to_value(example).ok();
                }
            }
        }
    }
}

/// Lists `application/octet-stream` first beside the `image/*` types of
/// every file response. Client generators such as openapi-python-client
/// know no `image/*` type: they dropped those responses, so a generated
/// `get_image_style` raised on a 200 instead of returning the bytes. With
/// octet-stream listed they hand the body over as bytes, whatever image
/// type the `Content-Type` header then names.
struct BytesForGenerators;

impl Modify for BytesForGenerators {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item) {
                for response in op.responses.responses.values_mut() {
                    let utoipa::openapi::RefOr::T(response) = response else {
                        continue;
                    };
                    let Some(image) = response
                        .content
                        .iter()
                        .find(|(kind, _)| kind.starts_with("image/"))
                        .map(|(_, content)| content.clone())
                    else {
                        continue;
                    };
                    if response.content.keys().any(|k| k == "application/json") {
                        // The JSON resource stays the operation's main answer.
                        continue;
                    }
                    let rest = std::mem::take(&mut response.content);
                    response.content = std::iter::once((OCTET_STREAM.to_string(), image))
                        .chain(rest)
                        .collect();
                }
            }
        }
    }
}

const OCTET_STREAM: &str = "application/octet-stream";

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// A representative error of `status` for the operation `id`, as the
/// server would send it.
fn example_problem(id: &str, status: u16) -> Option<crate::error::Problem<'static>> {
    use crate::error::ApiError;
    use easel_render::iiif::IiifError;
    use easel_render::{Edge, RenderError};
    let iiif = id.starts_with("iiif");
    let api = match status {
        400 if iiif => ApiError::Iiif(IiifError::InvalidSize("200x".into())),
        400 => ApiError::unknown_parameters(&["page[sise]"], &["page[size]", "page[number]"]),
        401 => ApiError::Unauthenticated(
            "this endpoint needs an API key: send Authorization: Bearer <key>",
        ),
        403 => ApiError::Forbidden(match id {
            "deleteImage" | "restoreImage" => crate::auth::DELETE,
            "uploadImage" | "putImage" | "updateImage" | "renderImage" | "startRerender" => {
                crate::auth::WRITE
            }
            _ => crate::auth::READ,
        }),
        404 if id == "showBatch" => {
            ApiError::BatchNotFound("0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b".into())
        }
        404 if id == "startRerender" => ApiError::UnknownStyle("square-100".into()),
        404 if id == "getImageStyle" => ApiError::StyleNotReady("itunes".into()),
        404 if id == "getImageStyleVersion" => ApiError::VersionNotFound {
            style: "itunes".into(),
            current: "https://img.example/v1/images/show-42/styles/itunes".into(),
        },
        404 if id == "getPodcastTags" => ApiError::StyleNotReady("itunes".into()),
        404 => ApiError::ImageNotFound("show-42".into()),
        412 => ApiError::PreconditionFailed {
            current: "\"7\"".into(),
        },
        413 => ApiError::BodyTooLarge { limit: 67_108_864 },
        415 if id == "updateImage" => {
            ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())
        }
        415 => ApiError::Render(RenderError::UnsupportedFormat(None)),
        416 => ApiError::RangeNotSatisfiable("bytes=900000-".into(), 5120),
        422 => ApiError::Render(RenderError::CropOutOfBounds {
            edge: Edge::Right,
            at: 4100,
            limit_name: "width",
            limit: 4032,
            image_width: 4032,
            image_height: 3024,
        }),
        501 if iiif => ApiError::Iiif(IiifError::UnsupportedRotation("45".into())),
        503 => ApiError::Unavailable(String::new()),
        507 => ApiError::StorageFull(String::new()),
        _ => return None,
    };
    Some(api.problem())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Easel",
        description = "Media asset service for artwork: upload an image once, get every \
                       style a player or feed needs. Errors are `application/problem+json` \
                       (RFC 9457).",
    ),
    paths(
        crate::list::list,
        crate::upload::upload,
        crate::images::show,
        crate::write::patch,
        crate::write::put,
        crate::write::delete,
        crate::write::restore,
        crate::write::render,
        crate::images::assets,
        crate::images::style,
        crate::images::style_version,
        crate::podcast::podcast,
        crate::batches::start,
        crate::batches::show,
        crate::auth::show_key,
        crate::iiif::redirect,
        crate::iiif::info,
        crate::iiif::image,
        crate::iiif_auth::probe,
        crate::iiif_auth::token,
        crate::ops::healthz,
        crate::ops::readyz,
        crate::ops::metrics,
    ),
    components(schemas(crate::error::Problem, Binary, Health, Ready)),
    modifiers(&BearerAuth, &Version, &ProblemExamples, &BytesForGenerators, &UriTooLong),
    tags(
        (name = "images", description = "Upload, read, change and delete images"),
        (name = "styles", description = "Rendered files; public unless the bucket says otherwise"),
        (name = "batches", description = "Batch re-render with progress"),
        (name = "keys", description = "The calling API key's bucket and scopes"),
        (name = "iiif", description = "IIIF Image API 3.0, level 2"),
        (name = "ops", description = "Probes and metrics"),
    ),
)]
pub struct ApiDoc;

const DOCUMENT: &str = "/openapi.json";

/// `GET /openapi.json` and the Swagger UI at `/docs`.
pub fn routes() -> Router<AppState> {
    // Swagger UI would otherwise send the whole document to
    // validator.swagger.io from every visitor's browser: a third party
    // learning the API, and a request that fails offline.
    let config = Config::new([DOCUMENT]).validator_url("none");
    Router::new().merge(
        SwaggerUi::new("/docs")
            .url(DOCUMENT, ApiDoc::openapi())
            .config(config),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route `router()` serves, as OpenAPI paths with their methods.
    const ROUTES: [(&str, &[&str]); 19] = [
        ("/v1/images", &["get", "post"]),
        ("/v1/images/{id}", &["get", "patch", "put", "delete"]),
        ("/v1/images/{id}/restore", &["post"]),
        ("/v1/images/{id}/render", &["post"]),
        ("/v1/images/{id}/assets", &["get"]),
        ("/v1/images/{id}/styles/{style}", &["get"]),
        ("/v1/images/{id}/styles/{style}/{file}", &["get"]),
        ("/v1/images/{id}/podcast", &["get"]),
        ("/v1/rerender", &["post"]),
        ("/v1/batches/{id}", &["get"]),
        ("/v1/key", &["get"]),
        ("/iiif/3/{id}", &["get"]),
        ("/iiif/3/{id}/info.json", &["get"]),
        ("/iiif/3/{id}/probe", &["get"]),
        ("/iiif/auth/2/token", &["get"]),
        (
            "/iiif/3/{id}/{region}/{size}/{rotation}/{quality_format}",
            &["get"],
        ),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
    ];

    #[test]
    fn every_route_is_documented_with_its_methods() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (path, methods) in ROUTES {
            let item = paths
                .get(path)
                .unwrap_or_else(|| panic!("{path} is not in the document"));
            for method in methods {
                assert!(item.get(*method).is_some(), "{method} {path} is missing");
            }
        }
        let documented: usize = paths
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, 23, "a documented operation has no route here");
    }

    #[test]
    fn the_document_is_openapi_3_1_with_bearer_auth() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "Easel");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            doc["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
        assert!(doc["components"]["schemas"]["Problem"].is_object());
    }

    #[test]
    fn documented_styles_are_the_rendered_styles() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let documented: Vec<&str> = doc["components"]["schemas"]["RenderedStyle"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let rendered: Vec<&str> = easel_render::Style::RENDERED
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(documented, rendered);
    }

    #[test]
    fn every_operation_documents_the_414_of_an_overlong_request_line() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                operations += 1;
                assert!(
                    op["responses"].get("414").is_some(),
                    "{method} {path} does not document 414"
                );
            }
        }
        assert!(operations > 20, "only {operations} operations");
    }

    #[test]
    fn every_problem_response_has_an_example_of_its_own_status() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut codes_by_status = std::collections::BTreeMap::<String, Vec<String>>::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    let Some(content) = response["content"].get(crate::PROBLEM_JSON) else {
                        continue;
                    };
                    let example = &content["example"];
                    assert_eq!(
                        example["status"].to_string(),
                        *status,
                        "{method} {path} {status}: example {example}"
                    );
                    let code = example["code"].as_str().unwrap_or_default();
                    assert!(!code.is_empty(), "{method} {path} {status} has no code");
                    assert_eq!(
                        example["type"],
                        format!("https://easel.dev/problems/{code}")
                    );
                    codes_by_status
                        .entry(status.clone())
                        .or_default()
                        .push(code.to_string());
                }
            }
        }
        // The bug this guards against: one 404 example under every status.
        for (status, codes) in &codes_by_status {
            for (other, other_codes) in &codes_by_status {
                if status != other {
                    assert!(
                        codes.iter().all(|c| !other_codes.contains(c)),
                        "{status} and {other} share an example code"
                    );
                }
            }
        }
        assert!(codes_by_status.len() >= 10, "{codes_by_status:?}");
    }

    #[test]
    fn file_responses_list_octet_stream_first_for_client_generators() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (path, status) in [
            ("/v1/images/{id}/styles/{style}", "200"),
            ("/v1/images/{id}/styles/{style}", "206"),
            ("/v1/images/{id}/styles/{style}/{file}", "200"),
            ("/v1/images/{id}/styles/{style}/{file}", "206"),
            (
                "/iiif/3/{id}/{region}/{size}/{rotation}/{quality_format}",
                "200",
            ),
        ] {
            let content = doc["paths"][path]["get"]["responses"][status]["content"]
                .as_object()
                .unwrap_or_else(|| panic!("{path} {status} has no content"));
            let kinds: Vec<&String> = content.keys().collect();
            assert_eq!(kinds[0], OCTET_STREAM, "{path} {status}: {kinds:?}");
            assert!(
                kinds.iter().any(|k| *k == "image/jpeg"),
                "{path} {status}: {kinds:?}"
            );
        }
        let show = &doc["paths"]["/v1/images/{id}"]["get"]["responses"]["200"]["content"];
        assert_eq!(
            show.as_object().unwrap().keys().next().unwrap(),
            "application/json"
        );
    }

    #[test]
    fn every_operation_documents_its_errors_as_problems() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    // 414 is hyper's, sent before any handler runs.
                    if (status.starts_with('4') || status.starts_with('5')) && status != "414" {
                        assert!(
                            response["content"][crate::PROBLEM_JSON].is_object(),
                            "{method} {path} {status} is not problem+json"
                        );
                    }
                }
            }
        }
    }
}
