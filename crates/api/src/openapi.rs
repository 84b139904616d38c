//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations, served at `GET /openapi.json`, with Swagger UI at `/docs`
//! (its files are compiled in: the page works with no internet).

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::AppState;

/// The scheme name handlers refer to in `security(("bearer" = []))`.
pub const BEARER: &str = "bearer";

/// Uploaded bytes (or a served file): any of the accepted image formats.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Binary(Vec<u8>);

/// `GET /healthz`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: String,
}

/// `GET /readyz`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Ready {
    #[schema(example = "ready")]
    status: String,
    #[schema(example = "ok")]
    database: String,
    #[schema(example = "ok")]
    store: String,
}

/// A style that can be re-rendered (every style but `original`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum RenderedStyle {
    #[schema(rename = "stripped-original")]
    StrippedOriginal,
    #[schema(rename = "regular")]
    Regular,
    #[schema(rename = "thumb")]
    Thumb,
    #[schema(rename = "square-400")]
    Square400,
    #[schema(rename = "square-640")]
    Square640,
    #[schema(rename = "square-888")]
    Square888,
    #[schema(rename = "itunes")]
    Itunes,
    #[schema(rename = "square-3000")]
    Square3000,
}

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
        crate::batches::start,
        crate::batches::show,
        crate::iiif::redirect,
        crate::iiif::info,
        crate::iiif::image,
        crate::ops::healthz,
        crate::ops::readyz,
        crate::ops::metrics,
    ),
    components(schemas(crate::error::Problem, Binary, Health, Ready)),
    modifiers(&BearerAuth, &Version),
    tags(
        (name = "images", description = "Upload, read, change and delete images"),
        (name = "styles", description = "Rendered files; public unless the bucket says otherwise"),
        (name = "batches", description = "Batch re-render with progress"),
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
    const ROUTES: [(&str, &[&str]); 14] = [
        ("/v1/images", &["get", "post"]),
        ("/v1/images/{id}", &["get", "patch", "put", "delete"]),
        ("/v1/images/{id}/restore", &["post"]),
        ("/v1/images/{id}/render", &["post"]),
        ("/v1/images/{id}/assets", &["get"]),
        ("/v1/images/{id}/styles/{style}", &["get"]),
        ("/v1/rerender", &["post"]),
        ("/v1/batches/{id}", &["get"]),
        ("/iiif/3/{id}", &["get"]),
        ("/iiif/3/{id}/info.json", &["get"]),
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
        assert_eq!(documented, 18, "a documented operation has no route here");
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
    fn every_operation_documents_its_errors_as_problems() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
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
