//! Bearer API keys: each bound to one bucket and a set of scopes.
//!
//! A key reads `easel_<id>_<secret>`. Only the SHA-256 of the whole key is
//! stored: the secret has 192 random bits, so a fast hash is as safe as a
//! slow one here and keeps every request to one indexed lookup. The `id`
//! part is public (it names the key in lists and logs).

use chrono::Utc;
use easel_catalog::{ApiKey, Catalog, CatalogError, NewApiKey};
use sha2::{Digest, Sha256};

pub const READ: &str = "image:read";
pub const WRITE: &str = "image:write";
pub const DELETE: &str = "image:delete";
pub const SCOPES: [&str; 3] = [READ, WRITE, DELETE];

/// How every key starts: a token without it is no key of ours.
pub const KEY_PREFIX: &str = "easel_";

/// The longest role URI a key or an image may carry.
pub const MAX_ROLE: usize = 1024;

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

/// What the catalogue stores of a key: the hash of the whole token.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
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
        if role.len() > MAX_ROLE
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
    let secret = format!("{KEY_PREFIX}{id}_{}", hex::encode(&random[8..]));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_are_short_and_of_the_id_alphabet() {
        for good in ["default", "a", "Podcasts.2024_main-feed", &"b".repeat(64)] {
            assert!(valid_bucket(good), "{good}");
        }
        for bad in ["", &"b".repeat(65), "with space", "slash/name", "ünï"] {
            assert!(!valid_bucket(bad), "{bad}");
        }
    }
}
