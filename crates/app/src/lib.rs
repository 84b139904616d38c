//! Easel's application layer: the rules the edges (the HTTP API, the CLI)
//! and the worker share, between them and the ports (`easel-catalog`,
//! `easel-storage`) and the engine (`easel-render`).
//!
//! - [`originals`]: accepting an original, from an upload or an origin
//!   URL: inspect (format, limits, crop) → hash → claim → put → facts.
//! - [`keys`]: API keys, their scopes, and which bucket names are valid.
//! - [`batches`]: what a re-render covers, and opening or resuming a batch.
//! - [`feed`]: the feed readiness a render's outcome leaves on the image.
//! - [`iiif`]: the IIIF `info.json` document and the render cache policy
//!   (keys, touches, the LRU budget).
//!
//! Nothing here knows HTTP statuses: each module has its own error type,
//! which the API maps to problem+json and the CLI prints.

pub mod batches;
pub mod feed;
pub mod iiif;
pub mod keys;
pub mod originals;

use easel_catalog::{now_ms, Catalog, Retention};

/// The alias of the file a bucket's feed carries (`/styles/feed`): a style
/// name to clients, though no style of the engine.
pub const FEED_ALIAS: &str = "feed";

/// Every name a style may be asked for by, for messages: the original,
/// the rendered styles, and the feed alias.
pub fn style_names() -> String {
    let mut names: Vec<&str> = vec!["original"];
    names.extend(easel_render::Style::RENDERED.iter().map(|s| s.as_str()));
    names.push(FEED_ALIAS);
    names.join(", ")
}

/// Ends `holder`'s claims on stored objects, committing nothing (its
/// write failed, or was outrun): what nothing refers to is scheduled for
/// deletion after the delay. A failure only logs, as the claims lapse on
/// their own and the sweep finds what they held.
pub async fn release_claims(catalog: &dyn Catalog, retention: &Retention, holder: &str) {
    let now = now_ms();
    let delete_at = retention.delete_at(now);
    if let Err(e) = catalog.release_claims(holder, now, delete_at).await {
        tracing::warn!(holder = %holder, error = %e, "could not release a claim");
    }
}
