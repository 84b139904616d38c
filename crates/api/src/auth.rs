//! Bearer API keys: each bound to one bucket and a set of scopes.
//!
//! A key reads `easel_<id>_<secret>`. Only the SHA-256 of the whole key is
//! stored: the secret has 192 random bits, so a fast hash is as safe as a
//! slow one here and keeps every request to one indexed lookup. The `id`
//! part is public (it names the key in lists and logs).

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use chrono::{DateTime, Utc};
use easel_catalog::{ApiKey, Catalog, CatalogError, NewApiKey};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::{ApiError, AppState};

pub const READ: &str = "image:read";
pub const WRITE: &str = "image:write";
pub const DELETE: &str = "image:delete";
pub const SCOPES: [&str; 3] = [READ, WRITE, DELETE];

const PREFIX: &str = "easel_";

/// Who is calling: a key, or nobody.
#[derive(Debug, Clone)]
pub struct Caller(pub Option<ApiKey>);

impl Caller {
    /// Reads the `Authorization` header. A header that is present but
    /// wrong is refused at once; no header gives an anonymous caller, which
    /// only public style files accept.
    pub async fn from_headers(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Caller(None));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(ApiError::Unauthenticated(
                "the Authorization header must be \"Bearer <API key>\"",
            ))?;
        if !token.starts_with(PREFIX) {
            return Err(ApiError::InvalidToken("unknown or revoked API key"));
        }
        match state.catalog.api_key_by_hash(&hash_key(token)).await? {
            Some(key) => Ok(Caller(Some(key))),
            None => Err(ApiError::InvalidToken("unknown or revoked API key")),
        }
    }

    /// The key, if it carries `scope`: 401 without a key, 403 without the
    /// scope.
    pub fn require(&self, scope: &'static str) -> Result<&ApiKey, ApiError> {
        let key = self.0.as_ref().ok_or(ApiError::Unauthenticated(
            "this endpoint needs an API key: send Authorization: Bearer <key>",
        ))?;
        if key.has_scope(scope) {
            Ok(key)
        } else {
            Err(ApiError::Forbidden(scope))
        }
    }

    pub fn key(&self) -> Option<&ApiKey> {
        self.0.as_ref()
    }
}

/// The calling key, without its secret: what a client (the console) needs
/// to know what it may do.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// The key's public id (the part between `easel_` and the secret).
    #[schema(example = "3f2a9c0d1e4b5a69")]
    pub id: String,
    pub name: Option<String>,
    /// The only bucket this key sees.
    #[schema(example = "default")]
    pub bucket: String,
    /// Among `image:read`, `image:write`, `image:delete`.
    #[schema(example = json!(["image:read", "image:write"]))]
    pub scopes: Vec<String>,
    /// Role URIs: open images carrying one of them above their limit.
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// Which bucket and scopes the caller's key has. Any valid key may ask.
#[utoipa::path(
    get,
    path = "/v1/key",
    tag = "keys",
    operation_id = "showKey",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The calling key", body = KeyView),
        crate::error::Unauthorized,
        crate::error::Unavailable,
    ),
)]
pub async fn show_key(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<KeyView>, ApiError> {
    let caller = Caller::from_headers(&state, &headers).await?;
    let key = caller.0.ok_or(ApiError::Unauthenticated(
        "this endpoint needs an API key: send Authorization: Bearer <key>",
    ))?;
    Ok(Json(KeyView {
        scopes: key.scopes(),
        roles: key.roles(),
        id: key.id,
        name: key.name,
        bucket: key.bucket,
        created_at: key.created_at,
    }))
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// What can go wrong creating a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("unknown scope {0:?}: expected image:read, image:write or image:delete")]
    UnknownScope(String),
    #[error("give at least one scope or role")]
    NoScopes,
    #[error("role {0:?} is not an absolute URI without spaces")]
    InvalidRole(String),
    #[error("bucket names are 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    InvalidBucket,
    #[error("no randomness available: {0}")]
    Random(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Bucket names follow image ids' alphabet, shorter.
pub fn valid_bucket(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Creates a key and returns the secret (shown once) with its stored row.
pub async fn create_key(
    catalog: &dyn Catalog,
    bucket: &str,
    scopes: &[String],
    roles: &[String],
    name: Option<String>,
) -> Result<(String, ApiKey), KeyError> {
    if !valid_bucket(bucket) {
        return Err(KeyError::InvalidBucket);
    }
    // A key with roles only sees the files of images carrying them.
    if scopes.is_empty() && roles.is_empty() {
        return Err(KeyError::NoScopes);
    }
    let mut clean_roles: Vec<String> = Vec::new();
    for role in roles {
        let role = role.trim();
        if role.len() > crate::fields::MAX_ROLE
            || role.contains(char::is_whitespace)
            || url::Url::parse(role).is_err()
        {
            return Err(KeyError::InvalidRole(role.to_string()));
        }
        if !clean_roles.iter().any(|r| r == role) {
            clean_roles.push(role.to_string());
        }
    }
    let mut clean: Vec<String> = Vec::new();
    for scope in scopes {
        let scope = scope.trim();
        if !SCOPES.contains(&scope) {
            return Err(KeyError::UnknownScope(scope.to_string()));
        }
        if !clean.iter().any(|s| s == scope) {
            clean.push(scope.to_string());
        }
    }
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| KeyError::Random(e.to_string()))?;
    let id = hex::encode(&random[..8]);
    let secret = format!("{PREFIX}{id}_{}", hex::encode(&random[8..]));
    let row = catalog
        .create_api_key(
            &NewApiKey {
                id,
                key_hash: hash_key(&secret),
                bucket: bucket.to_string(),
                scopes: clean,
                name,
                roles: clean_roles,
            },
            Utc::now(),
        )
        .await?;
    Ok((secret, row))
}
