//! Types that exist only to be described in the OpenAPI document (bodies
//! the handlers write by hand, enums the catalogue keeps as text). Handlers
//! name them here; this module names no handler, so `openapi.rs` can list
//! every handler without a cycle.

use utoipa::ToSchema;

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
