//! Bearer API keys over HTTP: who is calling, and `GET /v1/key`. The keys'
//! rules (scopes, hashing, creation, bucket names) are `easel_app::keys`.

use std::marker::PhantomData;
use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::Json;
use chrono::{DateTime, Utc};
use easel_app::keys::KEY_PREFIX;
use easel_catalog::ApiKey;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{ApiError, AppState};

pub use easel_app::keys::{hash_key, DELETE, READ, WRITE};

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
        if !token.starts_with(KEY_PREFIX) {
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

/// The caller of a route, from its `Authorization` header (see
/// [`Caller::from_headers`]): for routes that serve some files to anyone.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Caller::from_headers(state, &parts.headers).await
    }
}

/// The scopes a route can require, as types for [`RequireScope`].
pub mod scope {
    /// A scope a key may carry.
    pub trait Scope: Send + Sync + 'static {
        const NAME: &'static str;
    }

    /// `image:read`.
    pub enum Read {}
    /// `image:write`.
    pub enum Write {}
    /// `image:delete`.
    pub enum Delete {}

    impl Scope for Read {
        const NAME: &'static str = super::READ;
    }
    impl Scope for Write {
        const NAME: &'static str = super::WRITE;
    }
    impl Scope for Delete {
        const NAME: &'static str = super::DELETE;
    }
}

/// The calling key, which carries scope `S`: a route that takes one
/// answers 401 without a key (or with a wrong one) and 403 without the
/// scope before its handler runs. It reads as the [`ApiKey`].
pub struct RequireScope<S: scope::Scope> {
    key: ApiKey,
    scope: PhantomData<S>,
}

impl<S: scope::Scope> Deref for RequireScope<S> {
    type Target = ApiKey;

    fn deref(&self) -> &ApiKey {
        &self.key
    }
}

impl<S: scope::Scope> FromRequestParts<AppState> for RequireScope<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_headers(state, &parts.headers).await?;
        let key = caller.require(S::NAME)?.clone();
        Ok(RequireScope {
            key,
            scope: PhantomData,
        })
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
pub async fn show_key(caller: Caller) -> Result<Json<KeyView>, ApiError> {
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
