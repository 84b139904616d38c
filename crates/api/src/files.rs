//! Serving stored files: validators, caching and byte ranges.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;

use crate::serve_cache::WarmFile;
use crate::{ApiError, AppState};

/// What a response needs to know about a stored object.
pub struct StoredFile<'a> {
    pub key: &'a str,
    pub sha256: &'a str,
    pub mimetype: &'a str,
    pub size: u64,
    /// Served without a key. When only a key unlocked it, shared caches must
    /// not keep it and hand it to the next client without one.
    pub public: bool,
    pub caching: Caching,
    /// The versioned URL of what a stable alias serves now.
    pub content_location: Option<String>,
}

/// How long a response may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// A versioned URL: its bytes never change, so a year, `immutable`.
    Immutable,
    /// A stable alias: its bytes change with a re-render, so caches keep it
    /// this long and then revalidate (a 304 while the ETag still matches).
    Revalidate(Duration),
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const PRIVATE_IMMUTABLE: &str = "private, max-age=31536000, immutable";

impl Caching {
    fn header(self, public: bool) -> String {
        match (self, public) {
            (Caching::Immutable, true) => IMMUTABLE.into(),
            (Caching::Immutable, false) => PRIVATE_IMMUTABLE.into(),
            (Caching::Revalidate(age), true) => format!("public, max-age={}", age.as_secs()),
            (Caching::Revalidate(age), false) => format!("private, max-age={}", age.as_secs()),
        }
    }
}

/// Serves a stored file: ETag (its sha256), 304, `Range`, and `HEAD`
/// without reading the object (its size is in the row). The bytes come
/// from the process's file cache when it holds them under this sha256.
pub async fn serve(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    file: StoredFile<'_>,
) -> Result<Response, ApiError> {
    let etag = format!("\"{}\"", file.sha256);
    let cache_control = file.caching.header(file.public);
    let base = |status: StatusCode| {
        let mut builder = Response::builder()
            .status(status)
            .header(header::ETAG, &etag)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
            .header(header::CACHE_CONTROL, &cache_control);
        if !file.public {
            builder = builder.header(header::VARY, "Authorization");
        }
        if let Some(location) = &file.content_location {
            builder = builder.header(header::CONTENT_LOCATION, location);
        }
        if status != StatusCode::NOT_MODIFIED {
            builder = builder.header(header::CONTENT_TYPE, file.mimetype);
        }
        builder
    };
    let head = method == Method::HEAD;

    if none_match(headers, file.sha256) {
        let mut response = base(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let cache = &state.config.serve_cache;
        if cache.keeps_warm() && cache.cached(file.key, file.sha256).is_some() {
            if let Some(warm) = WarmFile::of(&file) {
                response.extensions_mut().insert(warm);
            }
        }
        return Ok(response);
    }

    // If-Range: only honour the range if the client's copy is this one.
    let range_allowed = match headers.get(header::IF_RANGE) {
        Some(v) => etag_matches(v, file.sha256),
        None => true,
    };
    let range = match headers.get(header::RANGE).filter(|_| range_allowed) {
        Some(value) => parse_range(value, file.size)?,
        None => None,
    };

    let cache = &state.config.serve_cache;
    let cached = cache.cached(file.key, file.sha256);
    if head && cached.is_none() {
        // Apple's crawler checks cover art with a HEAD: the store is asked
        // whether the object is there, but it is not read.
        state.store.size(file.key).await?;
    }
    let response = match range {
        Some((start, end)) if head => base(StatusCode::PARTIAL_CONTENT)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{}", file.size),
            )
            .header(header::CONTENT_LENGTH, end + 1 - start)
            .body(Body::empty()),
        Some((start, end)) => {
            let bytes = match &cached {
                Some(all) if all.len() as u64 > end => all.slice(start as usize..end as usize + 1),
                _ => state.store.get_range(file.key, start..end + 1).await?,
            };
            base(StatusCode::PARTIAL_CONTENT)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{end}/{}", file.size),
                )
                .header(header::CONTENT_LENGTH, bytes.len())
                .body(Body::from(bytes))
        }
        None if head => base(StatusCode::OK)
            .header(header::CONTENT_LENGTH, file.size)
            .body(Body::empty()),
        None => {
            // Bytes the file cache holds under this sha256, of a file
            // anyone may have: the next GET of this URL can be answered
            // ahead of the router (crate::warm).
            let warm = cached.is_some().then(|| WarmFile::of(&file)).flatten();
            let bytes = match cached {
                Some(bytes) => bytes,
                None => {
                    cache
                        .bytes(file.key, file.sha256, file.size, || async {
                            Ok(state.store.get(file.key).await?)
                        })
                        .await?
                }
            };
            let mut response = base(StatusCode::OK)
                .header(header::CONTENT_LENGTH, bytes.len())
                .body(Body::from(bytes));
            if let (Ok(response), Some(warm)) = (&mut response, warm) {
                response.extensions_mut().insert(warm);
            }
            response
        }
    };
    response.map_err(|e| ApiError::Internal(e.to_string()))
}

impl WarmFile {
    /// A file anyone may have, whose bytes the file cache holds: the next
    /// GET of its URL can be answered ahead of the router (crate::warm).
    fn of(file: &StoredFile<'_>) -> Option<WarmFile> {
        file.public.then(|| WarmFile {
            key: Arc::from(file.key),
            sha256: Arc::from(file.sha256),
            mimetype: HeaderValue::from_str(file.mimetype).ok(),
        })
    }
}

/// Whether any `If-None-Match` header names `sha256`: a client may send
/// the list in several headers (RFC 9110 5.3), not only comma-separated.
pub(crate) fn none_match(headers: &HeaderMap, sha256: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .any(|value| etag_matches(value, sha256))
}

/// `If-None-Match` / `If-Range` against our strong ETag. Weak validators
/// compare equal for If-None-Match (RFC 9110 weak comparison).
pub(crate) fn etag_matches(value: &HeaderValue, sha256: &str) -> bool {
    let Ok(text) = value.to_str() else {
        return false;
    };
    text.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == sha256)
}

/// Parses a single `bytes=` range into inclusive `(start, end)`. Returns
/// `None` (serve the whole file, which RFC 9110 allows) for forms we do not
/// serve partially: other units, several ranges, or malformed values.
pub(crate) fn parse_range(value: &HeaderValue, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(spec) = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let unsatisfiable = || ApiError::RangeNotSatisfiable(spec.to_string(), size);
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // Suffix: the last N bytes.
        let Ok(n) = last.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return Err(unsatisfiable());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let Ok(start) = first.parse::<u64>() else {
            return Ok(None);
        };
        let end = if last.is_empty() {
            size.saturating_sub(1)
        } else {
            match last.parse::<u64>() {
                Ok(end) if end >= start => end.min(size.saturating_sub(1)),
                _ => return Ok(None),
            }
        };
        if start >= size {
            return Err(unsatisfiable());
        }
        (start, end)
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
        parse_range(&HeaderValue::from_str(v).unwrap(), size)
    }

    #[test]
    fn byte_ranges_parse_like_rfc_9110_says() {
        assert_eq!(range("bytes=0-99", 1000).unwrap(), Some((0, 99)));
        assert_eq!(range("bytes=900-", 1000).unwrap(), Some((900, 999)));
        assert_eq!(range("bytes=-100", 1000).unwrap(), Some((900, 999)));
        assert_eq!(range("bytes=-5000", 1000).unwrap(), Some((0, 999)));
        assert_eq!(range("bytes=990-5000", 1000).unwrap(), Some((990, 999)));
        assert!(range("bytes=1000-", 1000).is_err());
        assert!(range("bytes=-0", 1000).is_err());
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=x-y",
            "bytes=5-1",
            "bytes=5",
        ] {
            assert_eq!(range(ignored, 1000).unwrap(), None, "{ignored}");
        }
    }

    #[test]
    fn etags_match_strong_weak_lists_and_star() {
        let m = |v: &str| etag_matches(&HeaderValue::from_str(v).unwrap(), "abc");
        assert!(m("\"abc\""));
        assert!(m("W/\"abc\""));
        assert!(m("\"x\", \"abc\""));
        assert!(m("*"));
        assert!(!m("\"abd\""));
    }

    #[test]
    fn if_none_match_is_read_from_every_header_sent() {
        let mut headers = HeaderMap::new();
        for tag in ["\"x\", \"y\"", "W/\"abc\""] {
            headers.append(header::IF_NONE_MATCH, HeaderValue::from_static(tag));
        }
        assert!(none_match(&headers, "abc"));
        assert!(!none_match(&headers, "ab"));
        assert!(!none_match(&HeaderMap::new(), "abc"));
    }
}
