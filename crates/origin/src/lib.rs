//! Easel's origin fetcher: download an original from a URL a client gave
//! (`PUT /v1/images/{id}` with `{"origin": "https://..."}`).
//!
//! One [`OriginFetcher`] holds one reqwest client (rustls, no system proxy)
//! and enforces, per fetch:
//!
//! * only `http`/`https` URLs without user name or password;
//! * a connect timeout and a total deadline covering DNS, redirects, headers
//!   and the whole body;
//! * a byte limit, checked against `Content-Length` up front and again while
//!   the body streams, so an endless body is cut off at the limit;
//! * at most [`OriginConfig::max_redirects`] redirects, each hop checked like
//!   the first URL;
//! * unless [`OriginConfig::allow_private`], no loopback, private, link-local,
//!   CGNAT, multicast, documentation or otherwise special address (see
//!   [`forbidden_reason`]), whether reached by a name or an IP literal.
//!
//! Every failure is an [`OriginError`] with a stable [`code`](OriginError::code)
//! and an [`is_transient`](OriginError::is_transient) verdict for retries.

mod guard;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::redirect::{Attempt, Policy};
use url::Url;

pub use guard::forbidden_reason;
use guard::{Guard, GuardedResolver, Refusal};

/// How origins are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginConfig {
    /// Time allowed to open the TCP (and TLS) connection, per hop.
    pub connect_timeout: Duration,
    /// Deadline for the whole fetch: DNS, every redirect, headers and body.
    pub total_timeout: Duration,
    /// Largest body accepted, in bytes.
    pub max_bytes: u64,
    /// Redirects followed before giving up; 0 refuses any redirect.
    pub max_redirects: usize,
    /// Skip the address guard: allow loopback, private, link-local and the
    /// other special ranges. For development and closed networks only.
    pub allow_private: bool,
    /// The `User-Agent` header sent to origins.
    pub user_agent: String,
    /// Host names resolved to fixed addresses instead of DNS, and exempt from
    /// the address guard even when `allow_private` is false: an operator's
    /// explicit "this internal origin is fine" (and the tests' way to have an
    /// allowed first hop on 127.0.0.1). IP literals cannot be pinned. Matched
    /// case-insensitively; the port still comes from the URL.
    pub pinned_hosts: Vec<(String, IpAddr)>,
}

/// The default [`OriginConfig::total_timeout`].
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(60);
/// The default [`OriginConfig::max_redirects`].
pub const DEFAULT_MAX_REDIRECTS: usize = 5;

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            max_bytes: 64 * 1024 * 1024,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            allow_private: false,
            user_agent: concat!("easel/", env!("CARGO_PKG_VERSION")).to_owned(),
            pinned_hosts: Vec::new(),
        }
    }
}

/// A fetched original.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Bytes,
    /// The `Content-Type` the origin sent, as sent (not trusted: the render
    /// engine sniffs magic bytes).
    pub content_type: Option<String>,
    /// The URL the bytes came from, after redirects.
    pub final_url: String,
}

/// Why an origin could not be fetched. `Display` is fit for the client;
/// [`code`](Self::code) is stable.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("invalid origin URL: {reason}")]
    InvalidUrl { reason: String },
    /// `addr` stays out of the message, which reaches clients: where a
    /// name resolves inside our network is not theirs to learn. It is
    /// logged when the fetch is refused.
    #[error("origin {host} leads to a {reason} address, which is not allowed")]
    ForbiddenAddress {
        host: String,
        addr: IpAddr,
        reason: &'static str,
    },
    #[error("origin redirected more than {max} times")]
    TooManyRedirects { max: usize },
    #[error("origin body is larger than the limit of {max_bytes} bytes")]
    TooLarge { max_bytes: u64 },
    #[error("origin did not answer within {}s", .after.as_secs_f64())]
    Timeout { after: Duration },
    #[error("origin answered HTTP {status}")]
    HttpStatus { status: u16 },
    /// `detail` is the innermost cause (`Connection refused (os error 111)`,
    /// a DNS failure, a TLS error); the full chain is in `source`.
    #[error("origin could not be reached: {detail}")]
    Unreachable {
        detail: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("origin fetcher configuration is invalid: {source}")]
    Config {
        #[source]
        source: reqwest::Error,
    },
}

impl OriginError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUrl { .. } => "origin-invalid-url",
            Self::ForbiddenAddress { .. } => "origin-forbidden-address",
            Self::TooManyRedirects { .. } => "origin-too-many-redirects",
            Self::TooLarge { .. } => "origin-too-large",
            Self::Timeout { .. } => "origin-timeout",
            Self::HttpStatus { .. } => "origin-http-status",
            Self::Unreachable { .. } => "origin-unreachable",
            Self::Config { .. } => "origin-config",
        }
    }

    /// Whether trying again later may succeed: timeouts, connection failures,
    /// 5xx, 408 and 429. Refusals, other 4xx and oversize bodies are final.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Unreachable { .. } => true,
            Self::HttpStatus { status } => *status >= 500 || matches!(*status, 408 | 429),
            Self::InvalidUrl { .. }
            | Self::ForbiddenAddress { .. }
            | Self::TooManyRedirects { .. }
            | Self::TooLarge { .. }
            | Self::Config { .. } => false,
        }
    }
}

impl From<Refusal> for OriginError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::InvalidUrl { reason } => Self::InvalidUrl { reason },
            Refusal::Forbidden { host, addr, reason } => {
                Self::ForbiddenAddress { host, addr, reason }
            }
            Refusal::TooManyRedirects { max } => Self::TooManyRedirects { max },
        }
    }
}

/// Fetches origins; cheap to clone (one shared connection pool).
#[derive(Debug, Clone)]
pub struct OriginFetcher {
    client: reqwest::Client,
    guard: Guard,
    config: Arc<OriginConfig>,
}

impl OriginFetcher {
    pub fn new(config: OriginConfig) -> Result<Self, OriginError> {
        let mut pinned: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (host, ip) in &config.pinned_hosts {
            if host.parse::<IpAddr>().is_ok()
                || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok()
            {
                return Err(OriginError::InvalidUrl {
                    reason: format!("pinned host {host:?} is an IP literal, not a name"),
                });
            }
            pinned
                .entry(host.to_ascii_lowercase())
                .or_default()
                .push(*ip);
        }
        let guard = Guard {
            allow_private: config.allow_private,
            pinned: Arc::new(pinned),
        };
        let policy_guard = guard.clone();
        let max_redirects = config.max_redirects;
        let policy = Policy::custom(move |attempt: Attempt| {
            // `previous` starts with the first URL, so it holds one more URL
            // than redirects followed so far.
            if attempt.previous().len() > max_redirects {
                return attempt.error(Refusal::TooManyRedirects { max: max_redirects });
            }
            match policy_guard.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refusal) => attempt.error(refusal),
            }
        });
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            // A proxy would resolve names itself, behind the guard's back.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                guard: guard.clone(),
            }))
            .redirect(policy)
            .referer(false)
            .connect_timeout(config.connect_timeout)
            .timeout(config.total_timeout)
            .user_agent(config.user_agent.as_str())
            .build()
            .map_err(|source| OriginError::Config { source })?;
        Ok(Self {
            client,
            guard,
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> &OriginConfig {
        &self.config
    }

    /// Fetch `url`, following redirects, within the configured limits.
    pub async fn fetch(&self, url: &str) -> Result<Fetched, OriginError> {
        let url = Url::parse(url).map_err(|e| OriginError::InvalidUrl {
            reason: e.to_string(),
        })?;
        self.guard.check_url(&url)?;
        let after = self.config.total_timeout;
        // reqwest's own timeout covers the same span; this one also bounds
        // DNS and makes the deadline independent of reqwest's internals.
        let result = tokio::time::timeout(after, self.fetch_checked(url.clone())).await;
        let result = result.unwrap_or(Err(OriginError::Timeout { after }));
        match &result {
            Ok(fetched) => tracing::debug!(
                origin = %url, final_url = %fetched.final_url, bytes = fetched.bytes.len(),
                "origin fetched"
            ),
            Err(OriginError::ForbiddenAddress { host, addr, reason }) => {
                tracing::warn!(origin = %url, %host, %addr, reason, "origin refused: not a public address")
            }
            Err(err) => {
                tracing::debug!(origin = %url, code = err.code(), error = %err, "origin fetch failed")
            }
        }
        result
    }

    async fn fetch_checked(&self, url: Url) -> Result<Fetched, OriginError> {
        let max_bytes = self.config.max_bytes;
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| self.map_reqwest(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(OriginError::HttpStatus {
                status: status.as_u16(),
            });
        }
        let declared = response.content_length();
        if declared.is_some_and(|len| len > max_bytes) {
            return Err(OriginError::TooLarge { max_bytes });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let final_url = response.url().to_string();
        // `declared <= max_bytes` here, so the capacity is bounded.
        let mut body = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(chunk) = response.chunk().await.map_err(|e| self.map_reqwest(e))? {
            if body.len() as u64 + chunk.len() as u64 > max_bytes {
                return Err(OriginError::TooLarge { max_bytes });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            bytes: body.freeze(),
            content_type,
            final_url,
        })
    }

    fn map_reqwest(&self, err: reqwest::Error) -> OriginError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        while let Some(e) = source {
            if let Some(refusal) = e.downcast_ref::<Refusal>() {
                return refusal.clone().into();
            }
            source = e.source();
        }
        if err.is_timeout() {
            let after = if err.is_connect() {
                self.config.connect_timeout
            } else {
                self.config.total_timeout
            };
            return OriginError::Timeout { after };
        }
        if let Some(status) = err.status() {
            return OriginError::HttpStatus {
                status: status.as_u16(),
            };
        }
        let mut detail = err.to_string();
        let mut cause = std::error::Error::source(&err);
        while let Some(e) = cause {
            detail = e.to_string();
            cause = e.source();
        }
        OriginError::Unreachable {
            detail,
            source: err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_matches_the_documented_limits() {
        let c = OriginConfig::default();
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.total_timeout, Duration::from_secs(60));
        assert_eq!(c.max_bytes, 64 << 20);
        assert_eq!(c.max_redirects, 5);
        assert!(!c.allow_private);
        assert_eq!(c.user_agent, format!("easel/{}", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn http_statuses_are_transient_only_for_5xx_408_and_429() {
        let transient = |status| OriginError::HttpStatus { status }.is_transient();
        for status in [500, 502, 503, 504, 408, 429] {
            assert!(transient(status), "{status}");
        }
        for status in [400, 401, 403, 404, 410, 451] {
            assert!(!transient(status), "{status}");
        }
    }

    #[test]
    fn pinning_an_ip_literal_is_refused() {
        let config = OriginConfig {
            pinned_hosts: vec![("127.0.0.1".into(), IpAddr::from([127, 0, 0, 1]))],
            ..OriginConfig::default()
        };
        assert_eq!(
            OriginFetcher::new(config).unwrap_err().code(),
            "origin-invalid-url"
        );
    }
}
