//! `GET /v1/images`: one page of the caller's bucket, JSON:API-style
//! parameters (`page[size]`, `filter[tag]`, `sort=-created_at`,
//! `fields[image]`, `include=assets`), links in the body and in an RFC 8288
//! `Link` header. Unknown parameters and values are refused by name: a
//! typo must not silently return everything.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use easel_catalog::{ImageQuery, ImageStatus, MediaAsset, PageStart, SortKey, Trashed};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::{scope, RequireScope};
use crate::fields;
use crate::view::{image_view, ImageView};
use crate::write::{valid_id, MAX_ID_LEN};
use crate::{ApiError, AppState};

const PARAMETERS: [&str; 16] = [
    "page[size]",
    "page[number]",
    "page[after]",
    "filter[id]",
    "filter[facet]",
    "filter[tag]",
    "filter[status]",
    "filter[feed_ready]",
    "filter[batch]",
    "filter[trashed]",
    "search",
    "sort",
    "fields[image]",
    "include",
    // Accepted for symmetry with other list APIs; they change nothing.
    "page[offset]",
    "filter[bucket]",
];

const SORTS: [&str; 3] = ["created_at", "updated_at", "name"];

/// At most this many ids in one `filter[id]` list.
const MAX_IDS: usize = 100;

/// Longest `search`, in characters. No name is longer, so a longer search
/// cannot match anything; unbounded, it reaches SQLite as a LIKE pattern
/// that it refuses past 50,000 bytes, failing the whole request.
pub const MAX_SEARCH: usize = fields::MAX_NAME;

/// Longest `filter[facet]` and `filter[tag]`: the longest facet or tag.
pub const MAX_LABEL_FILTER: usize = fields::MAX_LABEL;

/// Longest value of the other parameters (numbers, keywords, field
/// lists): far above any valid one, low enough to echo in an error.
const MAX_OTHER: usize = 512;

/// Longest value each parameter takes, in characters.
fn max_chars(name: &str) -> usize {
    match name {
        "search" => MAX_SEARCH,
        "filter[facet]" | "filter[tag]" => MAX_LABEL_FILTER,
        "page[after]" => MAX_ID_LEN,
        // Each id of the list is checked on its own too.
        "filter[id]" => MAX_IDS * (MAX_ID_LEN + 1),
        _ => MAX_OTHER,
    }
}

/// The fields `fields[image]` may name: exactly [`ImageView`]'s.
const IMAGE_FIELDS: [&str; 31] = [
    "id",
    "bucket",
    "name",
    "facet",
    "crop",
    "width",
    "height",
    "size",
    "mimetype",
    "sha256",
    "origin",
    "status",
    "error",
    "error_code",
    "tags",
    "string1",
    "string2",
    "string3",
    "number1",
    "number2",
    "number3",
    "feed_ready",
    "max_unauthorised",
    "roles",
    "batch",
    "created_at",
    "updated_at",
    "finished_at",
    "deleted_at",
    "links",
    "assets",
];

#[derive(Debug, Serialize, ToSchema)]
pub struct PageLinks {
    pub first: Option<String>,
    pub prev: Option<String>,
    pub next: Option<String>,
    pub last: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PageMeta {
    /// Null when paging by `page[after]`.
    pub current_page: Option<u64>,
    pub per_page: u64,
    pub total: i64,
    pub last_page: u64,
}

/// An item of a page: an [`ImageView`] whose fields are all optional but
/// `id`, since `fields[image]` keeps only the named ones. Schema only.
pub struct ImageItem;

impl utoipa::PartialSchema for ImageItem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::Schema;
        use utoipa::openapi::RefOr;
        let mut schema = <ImageView as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.required = vec!["id".to_string()];
            object.description = Some(
                "An image as in ImageView; with `fields[image]`, only the named fields (and `id`)"
                    .into(),
            );
        }
        schema
    }
}

impl ToSchema for ImageItem {
    fn name() -> std::borrow::Cow<'static, str> {
        "ImageItem".into()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <ImageView as ToSchema>::schemas(schemas);
    }
}

/// A page of images. With `fields[image]`, each item has only the named
/// fields (and `id`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ImagePageView {
    #[schema(value_type = Vec<ImageItem>)]
    pub data: Vec<Value>,
    pub links: PageLinks,
    pub meta: PageMeta,
}

fn bad(detail: String) -> ApiError {
    ApiError::bad_request("invalid-parameter", detail)
}

/// The value is not echoed: it may be megabytes long.
fn too_long(name: &str, max: usize) -> ApiError {
    bad(format!("{name} is at most {max} characters"))
}

/// The parsed query string: each parameter's values, in order.
struct Params {
    pairs: Vec<(String, String)>,
    single: HashMap<String, String>,
    ids: Vec<String>,
}

impl Params {
    fn parse(raw: Option<&str>) -> Result<Params, ApiError> {
        let mut pairs = Vec::new();
        let mut single: HashMap<String, String> = HashMap::new();
        let mut ids = Vec::new();
        let query: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        // `filter[id][]=` is a common client spelling of a repeated key.
        let name_of = |key: &str| key.strip_suffix("[]").unwrap_or(key).to_string();
        let unknown: Vec<&str> = query
            .iter()
            .map(|(key, _)| key.as_str())
            .filter(|key| !PARAMETERS.contains(&name_of(key).as_str()))
            .collect();
        if !unknown.is_empty() {
            return Err(ApiError::unknown_parameters(&unknown, &PARAMETERS));
        }
        for (key, value) in query {
            let name = name_of(&key);
            let max = max_chars(&name);
            if value.chars().count() > max {
                return Err(too_long(&name, max));
            }
            if name == "filter[id]" {
                let before = ids.len();
                ids.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(str::to_string),
                );
                // Dropping an empty filter would list everything.
                if ids.len() == before {
                    return Err(bad(format!("{key} needs at least one id")));
                }
            } else if single.insert(name.clone(), value.clone()).is_some() {
                return Err(bad(format!("{name} is given more than once")));
            }
            pairs.push((name, value));
        }
        if ids.len() > MAX_IDS {
            return Err(bad(format!("filter[id] takes at most {MAX_IDS} ids")));
        }
        Ok(Params { pairs, single, ids })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.single.get(name).map(String::as_str)
    }

    fn number(&self, name: &str, min: u64) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| *n >= min)
                    .ok_or_else(|| bad(format!("{name} must be an integer >= {min}, got {v:?}")))
            })
            .transpose()
    }

    /// The query string of another page: every parameter kept but the page.
    fn with_page(&self, page: &[(&str, String)]) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.pairs {
            if !key.starts_with("page[") || key == "page[size]" {
                out.append_pair(key, value);
            }
        }
        for (key, value) in page {
            out.append_pair(key, value);
        }
        out.finish()
    }
}

struct Request {
    query: ImageQuery,
    fields: Option<Vec<String>>,
    include_assets: bool,
}

fn parse(params: &Params, bucket: &str, max_page_size: u64) -> Result<Request, ApiError> {
    let mut query = ImageQuery::new(bucket);
    if let Some(size) = params.number("page[size]", 1)? {
        if size > max_page_size {
            return Err(bad(format!(
                "page[size] is at most {max_page_size}, got {size}"
            )));
        }
        query.page_size = size;
    }
    let number = params.number("page[number]", 1)?;
    query.start = match (number, params.get("page[after]")) {
        (Some(_), Some(_)) => {
            return Err(bad("use page[number] or page[after], not both".into()));
        }
        (_, Some(after)) => PageStart::After(after.to_string()),
        (number, None) => PageStart::Number(number.unwrap_or(1)),
    };
    if params.ids.iter().any(|id| id.len() > MAX_ID_LEN) {
        return Err(too_long("each filter[id]", MAX_ID_LEN));
    }
    if let Some(id) = params.ids.iter().find(|id| !valid_id(id)) {
        return Err(bad(format!("filter[id] {id:?} is not a valid image id")));
    }
    query.ids = params.ids.clone();
    query.facet = params.get("filter[facet]").map(str::to_string);
    query.tag = params.get("filter[tag]").map(str::to_string);
    if let Some(status) = params.get("filter[status]") {
        query.status = Some(ImageStatus::parse(status).ok_or_else(|| {
            bad(format!(
                "filter[status] must be ingesting, finished or error, got {status:?}"
            ))
        })?);
    }
    if let Some(ready) = params.get("filter[feed_ready]") {
        query.feed_ready = Some(match ready {
            "true" | "1" => true,
            "false" | "0" => false,
            other => {
                return Err(bad(format!(
                    "filter[feed_ready] must be true or false, got {other:?}"
                )))
            }
        });
    }
    query.batch = params.get("filter[batch]").map(str::to_string);
    if let Some(trashed) = params.get("filter[trashed]") {
        query.trashed = match trashed {
            "with" => Trashed::With,
            "only" => Trashed::Only,
            "without" => Trashed::Without,
            other => {
                return Err(bad(format!(
                    "filter[trashed] must be with, only or without, got {other:?}"
                )))
            }
        };
    }
    if let Some(bucket_filter) = params.get("filter[bucket]") {
        if bucket_filter != bucket {
            return Err(bad(format!(
                "filter[bucket] can only be this key's bucket ({bucket:?})"
            )));
        }
    }
    if params.get("page[offset]").is_some() {
        return Err(bad(
            "page[offset] is not supported; use page[number] or page[after]".into(),
        ));
    }
    query.search = params
        .get("search")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if let Some(sort) = params.get("sort") {
        let (descending, key) = match sort.strip_prefix('-') {
            Some(key) => (true, key),
            None => (false, sort),
        };
        query.sort = match key {
            "created_at" => SortKey::CreatedAt,
            "updated_at" => SortKey::UpdatedAt,
            "name" => SortKey::Name,
            other => {
                return Err(bad(format!(
                    "cannot sort by {other:?}; use {} (with - for descending)",
                    SORTS.join(", ")
                )))
            }
        };
        query.descending = descending;
    }
    let fields = params
        .get("fields[image]")
        .map(|list| {
            let names: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect();
            let unknown: Vec<String> = names
                .iter()
                .filter(|n| !IMAGE_FIELDS.contains(&n.as_str()))
                .map(|n| format!("{n:?}"))
                .collect();
            if unknown.is_empty() {
                Ok(names)
            } else {
                Err(bad(format!(
                    "fields[image] names unknown field(s) {}; known: {}",
                    unknown.join(", "),
                    IMAGE_FIELDS.join(", ")
                )))
            }
        })
        .transpose()?;
    let include_assets = match params.get("include") {
        None | Some("") => false,
        Some("assets") => true,
        Some(other) => {
            return Err(bad(format!(
                "include can only be \"assets\", got {other:?}"
            )))
        }
    };
    Ok(Request {
        query,
        fields,
        include_assets,
    })
}

/// One page of the caller's bucket.
#[utoipa::path(
    get,
    path = "/v1/images",
    tag = "images",
    operation_id = "listImages",
    security(("bearer" = [])),
    params(
        ("page[size]" = Option<u64>, Query, minimum = 1, description = "Images per page (at most the server's maximum, 100 by default)"),
        ("page[number]" = Option<u64>, Query, minimum = 1, description = "1-based page number; not with `page[after]`"),
        ("page[after]" = Option<String>, Query, max_length = 128, description = "Cursor: the id of the last image of the previous page; not with `page[number]`"),
        ("filter[id]" = Option<Vec<String>>, Query, style = Form, explode, description = "Only these ids (repeatable, or comma-separated; at most 100)"),
        ("filter[facet]" = Option<String>, Query, max_length = 128, description = "Only images with this facet"),
        ("filter[tag]" = Option<String>, Query, max_length = 128, description = "Only images with this tag"),
        ("filter[status]" = Option<String>, Query, description = "`ingesting`, `finished` or `error`", example = "finished"),
        ("filter[feed_ready]" = Option<bool>, Query, description = "Only images whose feed file passes (true) or fails (false) the directory rules"),
        ("filter[batch]" = Option<String>, Query, max_length = 512, description = "Only images whose current files that batch rendered (its id)"),
        ("filter[trashed]" = Option<String>, Query, description = "`without` (default), `with` or `only` soft-deleted images", example = "with"),
        ("search" = Option<String>, Query, max_length = 1024, description = "Images whose name contains this text (at most 1024 characters)"),
        ("sort" = Option<String>, Query, description = "`created_at`, `updated_at` or `name`; prefix `-` for descending", example = "-created_at"),
        ("fields[image]" = Option<String>, Query, description = "Comma-separated fields to keep in each item (`id` is always kept)", example = "id,name,status"),
        ("include" = Option<String>, Query, description = "`assets` to embed each image's assets", example = "assets"),
    ),
    responses(
        (status = 200, description = "A page of images", body = ImagePageView,
            headers(("Link" = String, description = "RFC 8288 links to the first, previous, next and last pages"))),
        (status = 400, description = "Unknown parameter, or a bad value", body = crate::error::Problem, content_type = "application/problem+json"),
        crate::error::Unauthorized,
        crate::error::LacksRead,
        crate::error::Unavailable,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    key: RequireScope<scope::Read>,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    let request = parse(&params, &key.bucket, state.config.max_page_size)?;
    // One row more than a keyset page shows, to know whether a next exists.
    let keyset = matches!(request.query.start, PageStart::After(_));
    let mut query = request.query.clone();
    if keyset {
        query.page_size += 1;
    }
    let mut page = state.catalog.list_images(&query).await?;
    let has_more = keyset && page.images.len() as u64 > request.query.page_size;
    page.images
        .truncate(usize::try_from(request.query.page_size).unwrap_or(usize::MAX));

    let mut assets: HashMap<String, Vec<MediaAsset>> = HashMap::new();
    if request.include_assets {
        let ids: Vec<String> = page.images.iter().map(|i| i.id.clone()).collect();
        for asset in state.catalog.assets_of(&ids).await? {
            assets
                .entry(asset.image_id.clone())
                .or_default()
                .push(asset);
        }
    }
    let last_id = page.images.last().map(|i| i.id.clone());
    let data: Vec<Value> = page
        .images
        .into_iter()
        .map(|image| {
            let own = request
                .include_assets
                .then(|| assets.remove(&image.id).unwrap_or_default());
            let view = serde_json::to_value(image_view(&state, image, own)).unwrap_or(Value::Null);
            sparse(view, request.fields.as_deref())
        })
        .collect();

    let size = request.query.page_size;
    let total = page.total;
    let last_page = (u64::try_from(total).unwrap_or(0)).div_ceil(size).max(1);
    let link =
        |page: &[(&str, String)]| state.link(&format!("/v1/images?{}", params.with_page(page)));
    let first = Some(link(&[("page[number]", "1".into())]));
    let last = Some(link(&[("page[number]", last_page.to_string())]));
    let (current_page, prev, next) = match &request.query.start {
        PageStart::Number(n) => {
            let n = *n;
            let prev =
                (n > 1).then(|| link(&[("page[number]", (n - 1).min(last_page).to_string())]));
            let next = (n < last_page).then(|| link(&[("page[number]", (n + 1).to_string())]));
            (Some(n), prev, next)
        }
        PageStart::After(_) => {
            let next = match (&last_id, has_more) {
                (Some(id), true) => Some(link(&[("page[after]", id.clone())])),
                _ => None,
            };
            (None, None, next)
        }
    };
    let links = PageLinks {
        first,
        prev,
        next,
        last,
    };
    let link_header = link_header(&links);
    let body = ImagePageView {
        data,
        links,
        meta: PageMeta {
            current_page,
            per_page: size,
            total,
            last_page,
        },
    };
    let mut response = Json(body).into_response();
    if let Some(value) = link_header {
        response.headers_mut().insert(header::LINK, value);
    }
    Ok(response)
}

/// Keeps only the requested fields; `id` always stays.
fn sparse(view: Value, fields: Option<&[String]>) -> Value {
    match (view, fields) {
        (Value::Object(mut map), Some(fields)) => {
            map.retain(|k, _| k == "id" || fields.iter().any(|f| f == k));
            Value::Object(map)
        }
        (view, _) => view,
    }
}

fn link_header(links: &PageLinks) -> Option<HeaderValue> {
    let parts: Vec<String> = [
        ("first", &links.first),
        ("prev", &links.prev),
        ("next", &links.next),
        ("last", &links.last),
    ]
    .iter()
    .filter_map(|(rel, url)| url.as_ref().map(|u| format!("<{u}>; rel=\"{rel}\"")))
    .collect();
    HeaderValue::from_str(&parts.join(", ")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_may_be_percent_encoded_and_ids_repeat() {
        let params =
            Params::parse(Some("filter%5Bid%5D=a&filter[id]=b,c&page%5Bsize%5D=2")).unwrap();
        assert_eq!(params.ids, ["a", "b", "c"]);
        let request = parse(&params, "default", 100).unwrap();
        assert_eq!(request.query.page_size, 2);
        assert_eq!(request.query.ids, ["a", "b", "c"]);
    }

    #[test]
    fn unknown_and_over_limit_parameters_name_themselves() {
        let e = Params::parse(Some("filter[colour]=red")).err().unwrap();
        assert!(e.to_string().contains("filter[colour]"), "{e}");
        let e = Params::parse(Some("sort=name&colour=red&size=9&colour=blue"))
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("unknown parameters \"colour\", \"size\"; known: page[size]"),
            "{e}"
        );
        let params = Params::parse(Some("page[size]=101")).unwrap();
        let e = parse(&params, "b", 100).err().unwrap();
        assert!(e.to_string().contains("at most 100"), "{e}");
        let params = Params::parse(Some("sort=-colour")).unwrap();
        let e = parse(&params, "b", 100).err().unwrap();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = Params::parse(Some("sort=name&sort=-name")).err().unwrap();
        assert!(e.to_string().contains("more than once"), "{e}");
    }

    #[test]
    fn sparse_fields_are_exactly_the_image_resources_fields() {
        use utoipa::openapi::schema::Schema;
        use utoipa::openapi::RefOr;
        let RefOr::T(Schema::Object(object)) = <ImageView as utoipa::PartialSchema>::schema()
        else {
            panic!("ImageView is an object schema");
        };
        let mut resource: Vec<&str> = object.properties.keys().map(String::as_str).collect();
        resource.sort_unstable();
        let mut allowed = IMAGE_FIELDS.to_vec();
        allowed.sort_unstable();
        assert_eq!(allowed, resource);
    }

    #[test]
    fn every_parameter_has_a_length_cap_and_the_document_says_it() {
        use utoipa::OpenApi;
        let doc = serde_json::to_value(crate::openapi::ApiDoc::openapi()).unwrap();
        let documented = doc["paths"]["/v1/images"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let max = |name: &str| {
            let param = documented.iter().find(|p| p["name"] == name).unwrap();
            param["schema"]["maxLength"].as_u64().map(|n| n as usize)
        };
        assert_eq!(max("search"), Some(MAX_SEARCH));
        assert_eq!(max("filter[facet]"), Some(MAX_LABEL_FILTER));
        assert_eq!(max("filter[tag]"), Some(MAX_LABEL_FILTER));
        assert_eq!(max("page[after]"), Some(MAX_ID_LEN));
        // Every field, spelled out with spaces, still fits.
        assert!(IMAGE_FIELDS.join(", ").len() <= max_chars("fields[image]"));
        for name in PARAMETERS {
            let long = "x".repeat(max_chars(name) + 1);
            let e = Params::parse(Some(&format!("{name}={long}")))
                .err()
                .unwrap();
            assert!(e.to_string().contains("at most"), "{name}: {e}");
        }
    }

    #[test]
    fn other_page_links_keep_filters_and_replace_the_page() {
        let params = Params::parse(Some("filter[tag]=x&page[number]=3&page[size]=5")).unwrap();
        let q = params.with_page(&[("page[number]", "4".into())]);
        assert_eq!(q, "filter%5Btag%5D=x&page%5Bsize%5D=5&page%5Bnumber%5D=4");
    }
}
