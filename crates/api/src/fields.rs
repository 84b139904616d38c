//! The client-settable fields of an image, validated the same way whether
//! they arrive as query parameters, multipart fields, a PUT body or a PATCH.

use easel_catalog::{ImageFields, ImagePatch};
use easel_render::Crop;
use serde_json::{Map, Value};

use crate::view::CropView;
use crate::ApiError;

pub const MAX_NAME: usize = 1024;
pub const MAX_LABEL: usize = 128;
pub const MAX_STRING: usize = 4096;
pub const MAX_TAGS: usize = 64;
pub const MAX_ROLES: usize = 32;
pub use easel_app::keys::MAX_ROLE;

/// Every field a PUT or PATCH body may carry besides `origin` and
/// `initial_origin`.
pub const FIELD_NAMES: [&str; 12] = [
    "name",
    "facet",
    "crop",
    "tags",
    "string1",
    "string2",
    "string3",
    "number1",
    "number2",
    "number3",
    "max_unauthorised",
    "roles",
];

fn invalid(detail: String) -> ApiError {
    ApiError::bad_request("invalid-field", detail)
}

pub fn text(field: &str, value: &str, max: usize) -> Result<Option<String>, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > max {
        return Err(invalid(format!("{field} is longer than {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{field} contains control characters")));
    }
    Ok(Some(value.to_string()))
}

fn max_for(field: &str) -> usize {
    match field {
        "name" => MAX_NAME,
        "facet" => MAX_LABEL,
        _ => MAX_STRING,
    }
}

pub fn tags(list: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut clean: Vec<String> = Vec::new();
    for tag in list {
        if let Some(tag) = text("tag", &tag, MAX_LABEL)? {
            if !clean.contains(&tag) {
                clean.push(tag);
            }
        }
    }
    if clean.len() > MAX_TAGS {
        return Err(invalid(format!("at most {MAX_TAGS} tags")));
    }
    Ok(clean)
}

/// `max_unauthorised`: -1 (open), 0 (nothing without a key) or the
/// longest public edge in pixels.
pub fn max_unauthorised(value: i64) -> Result<i64, ApiError> {
    if value >= -1 {
        Ok(value)
    } else {
        Err(invalid(format!(
            "max_unauthorised must be -1 (open to everyone), 0 (nothing without a key) \
             or the longest public edge in pixels, got {value}"
        )))
    }
}

/// Role URIs: absolute URIs, kept opaque; repeats dropped.
pub fn roles(list: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut clean: Vec<String> = Vec::new();
    for role in list {
        let role = role.trim();
        if role.is_empty() {
            continue;
        }
        if role.len() > MAX_ROLE
            || url::Url::parse(role).is_err()
            || role.contains(char::is_whitespace)
        {
            return Err(invalid(format!(
                "role {role:?} is not an absolute URI of at most {MAX_ROLE} bytes"
            )));
        }
        if !clean.iter().any(|r| r == role) {
            clean.push(role.to_string());
        }
    }
    if clean.len() > MAX_ROLES {
        return Err(invalid(format!("at most {MAX_ROLES} roles")));
    }
    Ok(clean)
}

/// `cover,season-2`: the form used in query strings and multipart fields.
pub fn tags_csv(value: &str) -> Result<Vec<String>, ApiError> {
    tags(value.split(',').map(str::to_string).collect())
}

pub fn number(field: &str, value: f64) -> Result<f64, ApiError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(invalid(format!("{field} must be a finite number")))
    }
}

/// A crop as JSON (`{x, y, width, height}`) or `"x,y,width,height"`.
pub fn crop_json(value: &Value) -> Result<Crop, ApiError> {
    match value {
        Value::String(s) => Ok(s.parse::<Crop>()?),
        Value::Object(_) => {
            let c: CropView = serde_json::from_value(value.clone()).map_err(|e| {
                invalid(format!(
                    "crop must be {{\"x\", \"y\", \"width\", \"height\"}} in pixels: {e}"
                ))
            })?;
            Ok(format!("{},{},{},{}", c.x, c.y, c.width, c.height).parse::<Crop>()?)
        }
        _ => Err(invalid(
            "crop must be an object {x, y, width, height} or null".into(),
        )),
    }
}

fn json_text(field: &str, value: &Value) -> Result<Option<String>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => text(field, s, max_for(field)),
        _ => Err(invalid(format!("{field} must be a string or null"))),
    }
}

fn json_number(field: &str, value: &Value) -> Result<Option<f64>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_f64()
            .map(|v| number(field, v))
            .transpose()?
            .map(Some)
            .ok_or_else(|| invalid(format!("{field} must be a number"))),
        _ => Err(invalid(format!("{field} must be a number or null"))),
    }
}

fn json_tags(value: &Value) -> Result<Vec<String>, ApiError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => tags(
            items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| invalid("tags must be an array of strings".into()))
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => Err(invalid("tags must be an array of strings".into())),
    }
}

fn json_max_unauthorised(value: &Value) -> Result<Option<i64>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_i64() {
            Some(v) => max_unauthorised(v).map(Some),
            None => Err(invalid("max_unauthorised must be an integer".into())),
        },
        _ => Err(invalid(
            "max_unauthorised must be an integer or null (the bucket's setting)".into(),
        )),
    }
}

fn json_roles(value: &Value) -> Result<Vec<String>, ApiError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => roles(
            items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| invalid("roles must be an array of URI strings".into()))
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => Err(invalid("roles must be an array of URI strings".into())),
    }
}

/// Refuses keys outside `allowed`, naming them.
pub fn reject_unknown(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    let unknown: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "unknown-field",
            format!(
                "unknown field(s) {}; allowed: {}",
                unknown.join(", "),
                allowed.join(", ")
            ),
        ))
    }
}

pub fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "invalid-json",
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(
            "invalid-json",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// All fields of a PUT body (absent means empty: PUT replaces).
pub fn fields_from_json(body: &Map<String, Value>) -> Result<ImageFields, ApiError> {
    let get = |k: &str| body.get(k).unwrap_or(&Value::Null);
    let crop = match get("crop") {
        Value::Null => None,
        v => Some(crop_json(v)?),
    };
    Ok(ImageFields {
        name: json_text("name", get("name"))?,
        facet: json_text("facet", get("facet"))?,
        crop,
        tags: json_tags(get("tags"))?,
        string1: json_text("string1", get("string1"))?,
        string2: json_text("string2", get("string2"))?,
        string3: json_text("string3", get("string3"))?,
        number1: json_number("number1", get("number1"))?,
        number2: json_number("number2", get("number2"))?,
        number3: json_number("number3", get("number3"))?,
        max_unauthorised: json_max_unauthorised(get("max_unauthorised"))?,
        roles: json_roles(get("roles"))?,
    })
}

/// A PATCH body: present keys change (null clears), absent ones stay.
pub fn patch_from_json(body: &Map<String, Value>) -> Result<ImagePatch, ApiError> {
    reject_unknown(body, &FIELD_NAMES)?;
    let text_field = |k: &str| body.get(k).map(|v| json_text(k, v)).transpose();
    let number_field = |k: &str| body.get(k).map(|v| json_number(k, v)).transpose();
    let crop = body
        .get("crop")
        .map(|v| match v {
            Value::Null => Ok(None),
            v => crop_json(v).map(Some),
        })
        .transpose()?;
    Ok(ImagePatch {
        name: text_field("name")?,
        facet: text_field("facet")?,
        crop,
        tags: body.get("tags").map(json_tags).transpose()?,
        string1: text_field("string1")?,
        string2: text_field("string2")?,
        string3: text_field("string3")?,
        number1: number_field("number1")?,
        number2: number_field("number2")?,
        number3: number_field("number3")?,
        max_unauthorised: body
            .get("max_unauthorised")
            .map(json_max_unauthorised)
            .transpose()?,
        roles: body.get("roles").map(json_roles).transpose()?,
    })
}
