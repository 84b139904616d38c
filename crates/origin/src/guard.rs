//! The SSRF guard: which addresses an origin may live at, checked where a
//! connection is really made.
//!
//! Two doors lead to an address and both are guarded:
//!
//! * host names go through [`GuardedResolver`], reqwest's only resolver, so
//!   the addresses checked are the addresses connected to (no window for DNS
//!   rebinding between a check and the connect);
//! * IP literals (`http://10.0.0.1/`, `http://[::1]/`, `http://2130706433/`)
//!   never reach a resolver, so [`check_url`] runs on the first URL and, from
//!   the redirect policy, on every hop.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Why an address is not a public origin, or `None` when it is one.
///
/// The reason is a short stable word (`"loopback"`, `"private"`,
/// `"link-local"`, ...) fit for an error message. IPv6 addresses that embed an
/// IPv4 address (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4
/// `2002::/16`) are judged by the IPv4 address they lead to.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let reason = match (a, b, c) {
        _ if ip.is_unspecified() => "unspecified",
        (0, ..) => "this-network",
        (10, ..) | (192, 168, _) | (172, 16..=31, _) => "private",
        (100, 64..=127, _) => "shared-cgnat",
        (127, ..) => "loopback",
        (169, 254, _) => "link-local",
        (192, 0, 0) => "protocol-assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4-relay",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, ..) => "multicast",
        _ if ip.is_broadcast() => "broadcast",
        (240..=255, ..) => "reserved",
        _ => return None,
    };
    Some(reason)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_reason(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return v4_reason(embedded_v4(s[1], s[2]));
    }
    let reason = match s[0] {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        0xfc00..=0xfdff => "unique-local",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local",
        0xff00..=0xffff => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x3fff if s[1] < 0x1000 => "documentation",
        // 2001::/23: Teredo, benchmarking, ORCHID and other IETF assignments.
        0x2001 if s[1] < 0x0200 => "protocol-assignment",
        // Everything outside global unicast 2000::/3: IPv4-compatible ::/96,
        // discard-only 100::/64, local-use NAT64 64:ff9b:1::/48, ...
        _ if s[0] & 0xe000 != 0x2000 => "reserved",
        _ => return None,
    };
    Some(reason)
}

/// Why a URL or an address was refused; carried through reqwest's error
/// chain (from the resolver or the redirect policy) and turned into an
/// [`OriginError`](crate::OriginError) by the fetcher.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("{reason}")]
    InvalidUrl { reason: String },
    #[error("{host} leads to a {reason} address")]
    Forbidden {
        host: String,
        addr: IpAddr,
        reason: &'static str,
    },
    #[error("more than {max} redirects")]
    TooManyRedirects { max: usize },
}

/// What the guard allows; shared by the resolver and the redirect policy.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    pub allow_private: bool,
    /// Lower-case host name → fixed addresses, neither resolved nor checked.
    pub pinned: Arc<HashMap<String, Vec<IpAddr>>>,
}

impl Guard {
    fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), Refusal> {
        if self.allow_private {
            return Ok(());
        }
        match forbidden_reason(addr) {
            None => Ok(()),
            Some(reason) => Err(Refusal::Forbidden {
                host: host.to_owned(),
                addr,
                reason,
            }),
        }
    }

    /// Scheme, userinfo and IP-literal checks for a URL about to be requested.
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        let invalid = |reason: &str| {
            Err(Refusal::InvalidUrl {
                reason: reason.to_owned(),
            })
        };
        if !matches!(url.scheme(), "http" | "https") {
            return invalid("only http and https URLs can be fetched");
        }
        if !url.username().is_empty() || url.password().is_some() {
            return invalid("URLs with a user name or password are not accepted");
        }
        match url.host() {
            None => invalid("the URL has no host"),
            Some(Host::Domain(_)) => Ok(()),
            Some(Host::Ipv4(v4)) => self.check_addr(&v4.to_string(), IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => self.check_addr(&v6.to_string(), IpAddr::V6(v6)),
        }
    }
}

/// reqwest's resolver: tokio's `lookup_host`, then the address check.
///
/// A host is refused as soon as one of its addresses is forbidden: an answer
/// that mixes public and private addresses is not one to trust.
pub(crate) struct GuardedResolver {
    pub guard: Guard,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            if let Some(ips) = guard.pinned.get(&host) {
                let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect();
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for addr in &addrs {
                guard.check_addr(&host, addr.ip())?;
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> Option<&'static str> {
        forbidden_reason(s.parse().unwrap())
    }

    #[test]
    fn ipv4_special_ranges_are_forbidden_with_their_reason() {
        let table = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "this-network"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared-cgnat"),
            ("100.127.255.255", "shared-cgnat"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.169.254", "link-local"),
            ("192.0.0.8", "protocol-assignment"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("192.88.99.1", "6to4-relay"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
        ];
        for (ip, want) in table {
            assert_eq!(reason(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn ipv4_public_addresses_and_range_edges_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv6_special_ranges_are_forbidden_with_their_reason() {
        let table = [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("febf:ffff::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("2001::1", "protocol-assignment"),
            ("2001:2::1", "protocol-assignment"),
            ("::7f00:1", "reserved"),
            ("100::1", "reserved"),
            ("64:ff9b:1::1", "reserved"),
        ];
        for (ip, want) in table {
            assert_eq!(reason(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn ipv6_addresses_embedding_ipv4_are_judged_by_the_ipv4_address() {
        let table = [
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.1.2.3", Some("private")),
            ("::ffff:169.254.169.254", Some("link-local")),
            ("::ffff:100.64.0.1", Some("shared-cgnat")),
            ("::ffff:0.0.0.0", Some("unspecified")),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::192.168.0.1", Some("private")),
            ("64:ff9b::127.0.0.1", Some("loopback")),
            ("64:ff9b::8.8.8.8", None),
            ("2002:7f00:1::1", Some("loopback")),
            ("2002:a9fe:a9fe::", Some("link-local")),
            ("2002:0808:0808::1", None),
        ];
        for (ip, want) in table {
            assert_eq!(reason(ip), want, "{ip}");
        }
    }

    #[test]
    fn ipv6_global_unicast_is_allowed() {
        for ip in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
            "2001:200::1",
            "3ffe::1",
            "3fff:1000::1",
        ] {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    fn guard(allow_private: bool) -> Guard {
        Guard {
            allow_private,
            pinned: Arc::default(),
        }
    }

    fn check(allow_private: bool, url: &str) -> Result<(), Refusal> {
        guard(allow_private).check_url(&Url::parse(url).unwrap())
    }

    #[test]
    fn urls_need_http_or_https_and_no_userinfo() {
        assert!(check(false, "https://example.com/a.jpg").is_ok());
        assert!(check(false, "http://example.com:8080/a.jpg").is_ok());
        for url in [
            "ftp://example.com/a.jpg",
            "file:///etc/passwd",
            "data:image/png;base64,AAAA",
            "https://user@example.com/a.jpg",
            "https://user:secret@example.com/a.jpg",
            "https://:secret@example.com/a.jpg",
        ] {
            assert!(
                matches!(check(true, url), Err(Refusal::InvalidUrl { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn ip_literal_hosts_are_checked_in_every_spelling() {
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0/",
        ] {
            assert!(
                matches!(check(false, url), Err(Refusal::Forbidden { .. })),
                "{url}"
            );
            assert!(check(true, url).is_ok(), "{url}");
        }
        assert!(check(false, "http://8.8.8.8/").is_ok());
        assert!(check(false, "http://[2606:4700:4700::1111]/").is_ok());
    }
}
