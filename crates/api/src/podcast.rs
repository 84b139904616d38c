//! `GET /v1/images/{id}/podcast`: the artwork tags a feed generator writes
//! for an image, with absolute, versioned URLs that end in `.jpg`.
//!
//! `<itunes:image href>` carries the feed file (Apple wants 1400 to 3000
//! px, and the URL to end in `.jpg` or `.png`; feed libraries such as
//! feedgen drop it otherwise). Podcasting 2.0's `<podcast:image>` (see
//! podcastindex.org/namespace/1.0, `image`) lists sizes for apps to choose
//! from: the feed file, `itunes`, and two small squares for lists.

use axum::extract::{Path, State};
use axum::Json;
use easel_catalog::MediaAsset;
use easel_render::Style;
use serde::Serialize;
use utoipa::ToSchema;

use crate::access::{decide, visible_image_with_settings, Wanted};
use crate::auth::Caller;
use crate::images::feed_asset;
use crate::view::{image_path, version_path, FeedReadyView};
use crate::{ApiError, AppState};

/// The XML namespaces the tags belong to, for the feed's `<rss>` element.
pub const ITUNES_NAMESPACE: &str = "http://www.itunes.com/dtds/podcast-1.0.dtd";
pub const PODCAST_NAMESPACE: &str = "https://podcastindex.org/namespace/1.0";

/// Squares listed after the feed file and `itunes`: small sizes for lists
/// and grids.
const SMALL_SQUARES: [Style; 2] = [Style::Square640, Style::Square400];

/// What a feed generator writes for an image's artwork.
#[derive(Debug, Serialize, ToSchema)]
pub struct PodcastView {
    /// The image's id.
    pub id: String,
    /// `<itunes:image>`: the feed file.
    pub itunes_image: ItunesImage,
    /// Podcasting 2.0 `<podcast:image>`, one per useful square size,
    /// largest first; the first is the feed file.
    pub podcast_images: Vec<PodcastImage>,
    /// Both, as elements ready to paste into a `<channel>` or an `<item>`.
    pub xml: String,
    /// The prefixes `xml` uses, with their namespace URIs, to declare on
    /// the feed's `<rss>` element.
    pub namespaces: Namespaces,
    /// Whether directories will take the feed file, and why not.
    pub feed_ready: FeedReadyView,
    /// Advice about the URLs themselves (e.g. `http:` where directories
    /// want `https:`).
    pub warnings: Vec<String>,
    pub links: PodcastLinks,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItunesImage {
    /// The feed file's versioned URL: immutable, ends in `.jpg`.
    pub href: String,
}

/// A `<podcast:image>` element's attributes.
#[derive(Debug, Serialize, ToSchema)]
pub struct PodcastImage {
    pub href: String,
    pub width: i64,
    pub height: i64,
    /// The file's media type (`image/jpeg`).
    #[serde(rename = "type")]
    pub mimetype: String,
    /// Always `1/1`: every listed file is a square.
    pub aspect_ratio: &'static str,
    /// Always `artwork`.
    pub purpose: &'static str,
    /// The image's name, as accessible alternative text; absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alt: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Namespaces {
    /// `http://www.itunes.com/dtds/podcast-1.0.dtd`
    pub itunes: &'static str,
    /// `https://podcastindex.org/namespace/1.0`
    pub podcast: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PodcastLinks {
    #[serde(rename = "self")]
    pub this: String,
    pub image: String,
    /// The feed file's stable alias.
    pub feed: String,
}

/// The artwork tags of an image, with absolute URLs (from `--public-url`,
/// else the request's host). Public like the feed file itself: a bucket
/// that keeps it private asks for an `image:read` key.
#[utoipa::path(
    get,
    path = "/v1/images/{id}/podcast",
    tag = "styles",
    operation_id = "getPodcastTags",
    security((), ("bearer" = [])),
    params(("id" = String, Path, description = "The image's id")),
    responses(
        (status = 200, description = "The tags", body = PodcastView),
        (status = 401, description = "An unknown key", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks image:read, which this bucket's feed file needs", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image (a private bucket answers so to callers without its key), or no feed file yet", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds, while the image is still rendering"))),
        crate::error::Unavailable,
    ),
)]
pub async fn podcast(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<PodcastView>, ApiError> {
    let (image, settings) = visible_image_with_settings(&state, caller.key(), &id).await?;
    let feed = feed_asset(&state, &image).await?;
    // Public when the feed file is: the tags name nothing else a stranger
    // could not fetch.
    let wanted = match &feed {
        Some(feed) => Wanted::Pixels(feed.width.max(feed.height)),
        None => Wanted::Everything,
    };
    decide(&image, &settings, caller.key(), wanted).check(&id)?;
    let Some(feed) = feed else {
        return Err(crate::images::missing_style(&image, Style::Itunes));
    };
    let mut files: Vec<MediaAsset> = vec![feed.clone()];
    let others = std::iter::once(Style::Itunes).chain(SMALL_SQUARES);
    for style in others {
        if files.iter().any(|f| f.style == style.as_str()) {
            continue;
        }
        if let Some(asset) = state.catalog.asset(&id, style.as_str()).await? {
            files.push(asset);
        }
    }
    let url = |asset: &MediaAsset| {
        state.link(&version_path(
            &id,
            &asset.style,
            &asset.sha256,
            &asset.mimetype,
        ))
    };
    let alt = image.name.clone().filter(|n| !n.trim().is_empty());
    let itunes_image = ItunesImage { href: url(&feed) };
    let podcast_images: Vec<PodcastImage> = files
        .iter()
        .map(|asset| PodcastImage {
            href: url(asset),
            width: asset.width,
            height: asset.height,
            mimetype: asset.mimetype.clone(),
            aspect_ratio: "1/1",
            purpose: "artwork",
            alt: alt.clone(),
        })
        .collect();
    let xml = xml(&itunes_image, &podcast_images);
    let mut warnings = Vec::new();
    if itunes_image.href.starts_with("http:") {
        warnings.push(
            "the URLs are http: directories and Podcasting 2.0 want https: \
             (serve behind TLS and set --public-url https://...)"
                .to_string(),
        );
    }
    let readiness = image.feed_readiness();
    let path = image_path(&id);
    Ok(Json(PodcastView {
        links: PodcastLinks {
            this: state.link(&format!("{path}/podcast")),
            image: state.link(&path),
            feed: state.link(&format!("{path}/styles/feed.jpg")),
        },
        id,
        itunes_image,
        podcast_images,
        xml,
        namespaces: Namespaces {
            itunes: ITUNES_NAMESPACE,
            podcast: PODCAST_NAMESPACE,
        },
        feed_ready: FeedReadyView {
            ok: readiness.ok,
            reasons: readiness.reasons,
            warnings: readiness.warnings,
        },
        warnings,
    }))
}

/// The elements, one per line, attribute values escaped.
fn xml(itunes: &ItunesImage, images: &[PodcastImage]) -> String {
    let mut out = format!("<itunes:image href=\"{}\"/>\n", escape(&itunes.href));
    for image in images {
        out.push_str(&format!("<podcast:image href=\"{}\"", escape(&image.href)));
        if let Some(alt) = &image.alt {
            out.push_str(&format!(" alt=\"{}\"", escape(alt)));
        }
        out.push_str(&format!(
            " aspect-ratio=\"{}\" width=\"{}\" height=\"{}\" type=\"{}\" purpose=\"{}\"/>\n",
            image.aspect_ratio,
            image.width,
            image.height,
            escape(&image.mimetype),
            image.purpose
        ));
    }
    out
}

/// Escapes text for a double-quoted XML attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Tabs and newlines would be normalised to spaces by parsers.
            '\t' | '\n' | '\r' => out.push_str(&format!("&#{};", c as u32)),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_values_are_escaped_and_control_characters_dropped() {
        assert_eq!(
            escape("Tom & Jerry's \"<show>\"\u{1}\n"),
            "Tom &amp; Jerry&apos;s &quot;&lt;show&gt;&quot;&#10;"
        );
    }
}
