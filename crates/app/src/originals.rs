//! Accepting an original, from an upload or an origin URL: everything that
//! can refuse it (format, limits, crop) before anything is stored, then
//! its hash, a claim on its content-addressed key, and the put.
//!
//! The claim comes before the put: no deletion of an identical original
//! can remove the object before the row that commits with the claim (see
//! `easel_catalog`'s "Deleting objects"). Whoever then fails to commit
//! calls [`release`], so a refused write leaves nothing behind.

use std::sync::Arc;

use bytes::Bytes;
use easel_catalog::{now_ms, Catalog, CatalogError, OriginalFacts, Retention};
use easel_render::{Crop, RenderError, Settings};
use easel_storage::{original_key, BlobStore, StorageError};

/// Why an original was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum OriginalError {
    /// The bytes themselves: an unread format, a limit, a crop outside the
    /// image. The same bytes fail the same way.
    #[error(transparent)]
    Refused(#[from] RenderError),
    /// The inspection's thread panicked (the engine catches its own
    /// panics, so this is a bug or an abort).
    #[error("{0}")]
    Crashed(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What an original is checked against before anything is stored.
#[derive(Debug, Clone)]
pub struct Checks {
    pub settings: Arc<Settings>,
    /// Refuse an image whose render could never fit in this much memory
    /// (read from its header); `None` leaves that to the render.
    pub memory_budget: Option<u64>,
    /// A crop the image must contain.
    pub crop: Option<Crop>,
}

/// Reads the header (format, oriented size) against the limits, checks
/// the render's memory and the crop, and hashes the bytes: everything that
/// can refuse an original, before anything is stored. The facts carry no
/// claim yet.
pub async fn inspect(bytes: &Bytes, checks: Checks) -> Result<OriginalFacts, OriginalError> {
    let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    let bytes = bytes.clone();
    // Hashing 64 MB takes ~100 ms of CPU: keep it off the async threads.
    let (facts, sha256) = tokio::task::spawn_blocking(move || {
        let settings = &checks.settings;
        let facts = easel_render::inspect(&bytes, settings)?;
        if let Some(budget) = checks.memory_budget {
            easel_render::decode_cost(&bytes, &settings.limits)?.check(budget)?;
        }
        if let Some(crop) = checks.crop {
            crop.check_inside(facts.width, facts.height)?;
        }
        Ok::<_, RenderError>((facts, easel_render::sha256_hex(&bytes)))
    })
    .await
    .map_err(|e| OriginalError::Crashed(e.to_string()))??;
    Ok(OriginalFacts {
        width: i64::from(facts.width),
        height: i64::from(facts.height),
        size,
        mimetype: facts.mimetype.to_string(),
        original_key: original_key(&sha256),
        sha256,
        claim: None,
    })
}

/// Claims the original's key for `holder` and puts the bytes there (once:
/// identical originals share the object). The facts returned carry the
/// claim, which the write recording them ends; if the put fails, the claim
/// is released here.
pub async fn store(
    catalog: &dyn Catalog,
    store: &BlobStore,
    retention: &Retention,
    holder: String,
    facts: OriginalFacts,
    bytes: Bytes,
) -> Result<OriginalFacts, OriginalError> {
    catalog
        .claim_objects(&holder, std::slice::from_ref(&facts.original_key), now_ms())
        .await?;
    let facts = OriginalFacts {
        claim: Some(holder),
        ..facts
    };
    if let Err(e) = store.put_original(&facts.original_key, bytes).await {
        release(catalog, retention, &facts).await;
        return Err(e.into());
    }
    Ok(facts)
}

/// Ends the claim on a stored original whose row did not commit: the
/// object is scheduled for deletion unless something else refers to it.
pub async fn release(catalog: &dyn Catalog, retention: &Retention, facts: &OriginalFacts) {
    if let Some(holder) = &facts.claim {
        crate::release_claims(catalog, retention, holder).await;
    }
}
