//! Batch re-renders: what a re-render covers, opening (or resuming) its
//! batch, and how far along it is. `POST /v1/rerender` and
//! `easel rerender` share all of it.

use chrono::{DateTime, Utc};
use easel_catalog::{Batch, BatchCounts, Catalog, CatalogError, RerenderFilter};
use easel_render::Style;

/// Jobs queued per transaction: small enough that uploads never wait long
/// on SQLite's single writer.
pub const ENQUEUE_CHUNK: i64 = 500;

/// Why a re-render cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("unknown style {0:?}: expected one of {styles}", styles = crate::style_names())]
    UnknownStyle(String),
    #[error("the original is never re-rendered")]
    OriginalNotRendered,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// What a re-render covers: parses the style (never `original`, which is
/// not rendered).
pub fn rerender_filter(
    bucket: Option<String>,
    style: Option<String>,
    since: Option<DateTime<Utc>>,
    all: bool,
) -> Result<RerenderFilter, BatchError> {
    let style_min_crop_side = match &style {
        None => None,
        Some(name) => {
            let parsed: Style = name
                .parse()
                .map_err(|_| BatchError::UnknownStyle(name.clone()))?;
            if parsed == Style::Original {
                return Err(BatchError::OriginalNotRendered);
            }
            parsed.min_crop_side().map(i64::from)
        }
    };
    Ok(RerenderFilter {
        bucket,
        style,
        since,
        all,
        style_min_crop_side,
    })
}

/// The open batch with this filter and fingerprint, or a new one: running
/// the same re-render again resumes it instead of starting over. `true`
/// when it resumed.
pub async fn open_or_create(
    catalog: &dyn Catalog,
    filter: &RerenderFilter,
    fingerprint: &str,
) -> Result<(Batch, bool), BatchError> {
    if let Some(batch) = catalog.open_batch(filter, fingerprint).await? {
        return Ok((batch, true));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let batch = catalog
        .create_batch(&id, filter, fingerprint, Utc::now())
        .await?;
    Ok((batch, false))
}

/// How far a batch is, beyond its job counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Matching images not queued yet.
    pub pending: i64,
    /// Every image is done (rendered with the batch's settings) or failed.
    pub complete: bool,
}

/// A batch's progress from its row, its job counts and how many of its
/// done images were rendered since with other settings (`stale`).
pub fn progress(batch: &Batch, counts: &BatchCounts, stale: i64) -> Progress {
    let queued_total = counts.queued + counts.running + counts.done + counts.failed;
    let pending = if batch.queued_all {
        0
    } else {
        (batch.total - queued_total).max(0)
    };
    Progress {
        pending,
        complete: batch.queued_all && counts.queued == 0 && counts.running == 0 && stale == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_style_filter_names_a_rendered_style() {
        let filter = rerender_filter(None, Some("square-3000".into()), None, false).unwrap();
        assert_eq!(filter.style.as_deref(), Some("square-3000"));
        assert_eq!(filter.style_min_crop_side, Some(3000));
        assert!(matches!(
            rerender_filter(None, Some("original".into()), None, false),
            Err(BatchError::OriginalNotRendered)
        ));
        assert!(matches!(
            rerender_filter(None, Some("huge".into()), None, false),
            Err(BatchError::UnknownStyle(name)) if name == "huge"
        ));
    }
}
