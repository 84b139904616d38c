//! Who may see what of an image: the one rule every route asks.
//!
//! [`visible_image`] is the one lookup by id: a missing image, a trashed
//! one and another bucket's are the same 404, so ids never leak across
//! buckets. [`decide`] is a pure function of the image row, its bucket's settings
//! and the calling key, so a cached lookup can call it as well as a route
//! that just read the rows. The limit in force is the image's own
//! `max_unauthorised`, else its bucket's style visibility
//! ([`easel_catalog::Image::public_limit`]).

use easel_catalog::{ApiKey, BucketSettings, Image};

use crate::auth::READ;
use crate::{ApiError, AppState};

/// Whether a lookup by id finds trashed images too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trashed {
    /// Live images only: what reads, renders and edits see.
    Hidden,
    /// Trashed ones as well: what a delete or a restore acts on.
    Included,
}

/// The image `id` as `caller` may know it: live (unless `trashed` says
/// otherwise) and, when a key is sent, of the key's bucket. Anything else
/// is the 404 of a missing id. What the caller may see of it is then
/// [`decide`]d on the image's bucket settings
/// ([`visible_image_with_settings`]).
pub(crate) async fn visible_image(
    state: &AppState,
    caller: Option<&ApiKey>,
    id: &str,
    trashed: Trashed,
) -> Result<Image, ApiError> {
    match state.catalog.image(id).await? {
        Some(image) => {
            check_visible(&image, caller, trashed)?;
            Ok(image)
        }
        None => Err(ApiError::ImageNotFound(id.to_string())),
    }
}

/// As [`visible_image`] for a live image, with its bucket's settings: what
/// the file routes, the podcast tags and IIIF need to [`decide`].
pub(crate) async fn visible_image_with_settings(
    state: &AppState,
    caller: Option<&ApiKey>,
    id: &str,
) -> Result<(Image, BucketSettings), ApiError> {
    let image = visible_image(state, caller, id, Trashed::Hidden).await?;
    let settings = state.catalog.bucket_settings(&image.bucket).await?;
    Ok((image, settings))
}

/// [`visible_image`]'s rule on rows already read (the serve cache's, or a
/// PUT's that may create the image).
pub(crate) fn check_visible(
    image: &Image,
    caller: Option<&ApiKey>,
    trashed: Trashed,
) -> Result<(), ApiError> {
    let live = image.deleted_at.is_none() || trashed == Trashed::Included;
    // A key never sees another bucket, public files included.
    let own_bucket = caller.is_none_or(|key| key.bucket == image.bucket);
    if live && own_bucket {
        Ok(())
    } else {
        Err(ApiError::ImageNotFound(image.id.clone()))
    }
}

/// What a request would show of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// Pixels whose longest edge, at the scale they are returned, is this.
    Pixels(i64),
    /// Everything the image has, at any size (a file not rendered yet, a
    /// version that is gone: what a stranger must not learn about).
    Everything,
    /// The uploaded bytes: never public, and only `image:read` opens them
    /// (a role sees renditions, not the original with its metadata).
    Original,
}

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone may see it: shared caches may keep it.
    Public,
    /// This key may see it (its scope or one of its roles): private.
    Granted,
    /// Answer as for a missing id: a key of another bucket, or a caller
    /// without a key where not everything is public.
    Hidden,
    /// 401: a key is needed (only where everything else is public).
    NeedsKey,
    /// 403: a key of the bucket without `image:read` or a role of the image.
    NeedsScope,
}

/// Whether `caller` may have `wanted` of `image` in a bucket with `bucket`.
pub fn decide(
    image: &Image,
    bucket: &BucketSettings,
    caller: Option<&ApiKey>,
    wanted: Wanted,
) -> Access {
    // A key never sees another bucket, public files included.
    if caller.is_some_and(|key| key.bucket != image.bucket) {
        return Access::Hidden;
    }
    let limit = image.public_limit(bucket.public_max_side);
    let public = match (wanted, limit) {
        (Wanted::Original, _) => false,
        (_, None) => true,
        (Wanted::Pixels(edge), Some(max)) => edge <= max,
        (Wanted::Everything, Some(_)) => false,
    };
    if public {
        return Access::Public;
    }
    match caller {
        Some(key) if key.has_scope(READ) => Access::Granted,
        Some(key) if wanted != Wanted::Original && key.holds_any_role(&image.roles()) => {
            Access::Granted
        }
        Some(_) => Access::NeedsScope,
        None if limit.is_some() => Access::Hidden,
        None => Access::NeedsKey,
    }
}

impl Access {
    /// The route's answer: `Ok(true)` public, `Ok(false)` granted to this
    /// key, else the error a refused caller gets.
    pub fn check(self, id: &str) -> Result<bool, ApiError> {
        match self {
            Access::Public => Ok(true),
            Access::Granted => Ok(false),
            Access::Hidden => Err(ApiError::ImageNotFound(id.to_string())),
            Access::NeedsKey => Err(ApiError::Unauthenticated(
                "this file needs an API key: send Authorization: Bearer <key>",
            )),
            Access::NeedsScope => Err(ApiError::Forbidden(READ)),
        }
    }

    pub fn allowed(self) -> bool {
        matches!(self, Access::Public | Access::Granted)
    }
}

/// The longest edge of the whole image at the scale of a response: a
/// region counts at the scale it is returned at, so tiles cannot assemble
/// what a full view of that size may not show.
pub fn edge_at_scale(image: (u32, u32), region: (u32, u32), returned: (u32, u32)) -> i64 {
    let scale = |full: u32, part: u32, out: u32| -> i64 {
        if part == 0 {
            return 0;
        }
        (u64::from(full) * u64::from(out)).div_ceil(u64::from(part)) as i64
    };
    scale(image.0, region.0, returned.0).max(scale(image.1, region.1, returned.1))
}
