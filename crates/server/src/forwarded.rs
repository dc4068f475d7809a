//! The client's address behind trusted proxies (`docs/operating.md#trusted-proxies`).
//!
//! Behind a load balancer every connection comes from the balancer, and the client's address
//! travels in `X-Forwarded-For`, a list each proxy appends the address it saw to. Anyone can
//! send that header, so it is read only when the connection comes from a proxy the operator
//! listed ([`TrustedProxies`], `cascade server --trusted-proxy CIDR`; empty by default), and
//! only from the right: the client is the rightmost entry that is not itself a trusted proxy.
//! What a client wrote further left is never read. A walked entry that is not an IP address
//! makes the whole header ignored (the connection's own address is used), never trusted.
//!
//! [`resolve`] is one layer around the whole router: it replaces the request's
//! [`ConnectInfo`] with the client's address, so everything that reads the peer address
//! (lockouts, console logins included, the audit log, enrollment, the check-in's fallback
//! address) sees the client, not the balancer. The proxy's own address stays in [`ProxyPeer`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
pub use ipnet::IpNet;

/// The header proxies record the addresses they saw in.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The most entries read from the right: a chain of trusted proxies is never this long, and a
/// long header costs a bounded amount of work.
const MAX_HOPS: usize = 32;

/// A `--trusted-proxy` value that is not an address or a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an IP address or a network in CIDR notation (e.g. 10.0.0.0/8, 192.0.2.7, \
     fd00::/8)"
)]
pub struct BadTrustedProxy(pub String);

impl BadTrustedProxy {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        "server.trusted_proxy"
    }
}

/// Parses one trusted proxy: a network (`10.0.0.0/8`, `fd00::/8`) or one address
/// (`192.0.2.7`, `::1`, taken as `/32` or `/128`).
///
/// # Errors
/// [`BadTrustedProxy`] naming the text.
pub fn parse_trusted_proxy(text: &str) -> Result<IpNet, BadTrustedProxy> {
    let t = text.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(canonical_net(net.trunc()));
    }
    t.parse::<IpAddr>()
        .map(|ip| IpNet::from(ip.to_canonical()))
        .map_err(|_| BadTrustedProxy(cascade_proto::limits::cut(text)))
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network it maps.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// The proxies whose `X-Forwarded-For` is believed; empty (the default): none, the header is
/// never read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// These networks (see [`parse_trusted_proxy`]).
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        TrustedProxies {
            nets: nets.into_iter().map(|n| canonical_net(n.trunc())).collect(),
        }
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The networks.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a connection from `peer` with these request headers: `peer`
    /// itself unless it is a trusted proxy; then the rightmost `X-Forwarded-For` entry that is
    /// not a trusted proxy (the leftmost entry when all are), or `peer` when there is no such
    /// header or an entry read is not an IP address.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        let mut hops = 0;
        // Several header lines are one list, in order (RFC 9110, section 5.3).
        for line in headers.get_all(X_FORWARDED_FOR).iter().rev() {
            let Ok(text) = line.to_str() else {
                tracing::debug!(%peer, "X-Forwarded-For is not text: ignored");
                return peer;
            };
            for entry in text.rsplit(',') {
                hops += 1;
                let Some(ip) = parse_hop(entry).filter(|_| hops <= MAX_HOPS) else {
                    tracing::debug!(%peer, entry = %cascade_proto::limits::cut(entry),
                        "X-Forwarded-For entry is not an address (or too many hops): ignored");
                    return peer;
                };
                if !self.contains(ip) {
                    return ip;
                }
                client = ip;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an IPv4 or IPv6 address, IPv6 optionally in brackets; nothing
/// else (no port, no `unknown`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let t = entry.trim_matches([' ', '\t']);
    let t = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(t);
    t.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The address of the trusted proxy a request came through, kept when [`resolve`] replaced
/// the request's [`ConnectInfo`] with the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyPeer(pub SocketAddr);

/// The layer: replaces the request's [`ConnectInfo`] with the client's address (port 0, which
/// no proxy tells) when the connection comes from a trusted proxy that named another.
pub async fn resolve(
    State(proxies): State<Arc<TrustedProxies>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let client = proxies.client_address(peer.ip(), req.headers());
        if client != peer.ip() {
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(client, 0)));
            req.extensions_mut().insert(ProxyPeer(peer));
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::http::HeaderValue;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|t| parse_trusted_proxy(t).unwrap()))
    }

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(X_FORWARDED_FOR, HeaderValue::from_str(l).unwrap());
        }
        h
    }

    fn ip(t: &str) -> IpAddr {
        t.parse().unwrap()
    }

    fn client(p: &TrustedProxies, peer: &str, lines: &[&str]) -> IpAddr {
        p.client_address(ip(peer), &headers(lines))
    }

    #[test]
    fn no_trusted_proxies_never_read_the_header() {
        let p = TrustedProxies::default();
        assert!(p.is_empty());
        assert_eq!(client(&p, "10.0.0.1", &["192.0.2.7"]), ip("10.0.0.1"));
    }

    #[test]
    fn a_spoofed_header_from_an_untrusted_peer_is_ignored() {
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            client(&p, "198.51.100.4", &["192.0.2.7"]),
            ip("198.51.100.4")
        );
        assert_eq!(
            client(&p, "198.51.100.4", &["10.0.0.9, 192.0.2.7"]),
            ip("198.51.100.4")
        );
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "172.16.0.1"]);
        // One proxy: it appended what it saw.
        assert_eq!(client(&p, "10.0.0.1", &["192.0.2.7"]), ip("192.0.2.7"));
        // What the client wrote itself (left) is not read.
        assert_eq!(
            client(&p, "10.0.0.1", &["203.0.113.9, 192.0.2.7"]),
            ip("192.0.2.7")
        );
        // Two proxies in a chain: both skipped.
        assert_eq!(
            client(&p, "10.0.0.1", &["203.0.113.9, 192.0.2.7, 172.16.0.1"]),
            ip("192.0.2.7")
        );
        // Several header lines are one list.
        assert_eq!(
            client(&p, "10.0.0.1", &["203.0.113.9", "192.0.2.7, 10.1.2.3"]),
            ip("192.0.2.7")
        );
        // Spaces and tabs around entries.
        assert_eq!(
            client(&p, "10.0.0.1", &["203.0.113.9 ,\t192.0.2.7\t"]),
            ip("192.0.2.7")
        );
    }

    #[test]
    fn all_trusted_or_no_header_falls_back_sensibly() {
        let p = proxies(&["10.0.0.0/8"]);
        // A trusted host itself through the proxy: the farthest hop.
        assert_eq!(
            client(&p, "10.0.0.1", &["10.0.0.7, 10.0.0.2"]),
            ip("10.0.0.7")
        );
        // No header: the peer.
        assert_eq!(client(&p, "10.0.0.1", &[]), ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_and_ipv4_mapped_addresses() {
        let p = proxies(&["fd00::/8", "127.0.0.1"]);
        assert_eq!(
            client(&p, "fd00::1", &["2001:db8::7, fd00::2"]),
            ip("2001:db8::7")
        );
        assert_eq!(client(&p, "fd00::1", &["[2001:db8::7]"]), ip("2001:db8::7"));
        // A dual-stack listener sees IPv4 peers mapped into IPv6.
        assert_eq!(
            client(&p, "::ffff:127.0.0.1", &["192.0.2.7"]),
            ip("192.0.2.7")
        );
        assert_eq!(
            client(&p, "127.0.0.1", &["::ffff:192.0.2.7"]),
            ip("192.0.2.7")
        );
        let mapped = proxies(&["::ffff:10.0.0.0/104"]);
        assert!(mapped.contains(ip("10.200.0.1")));
        assert!(!mapped.contains(ip("11.0.0.1")));
    }

    #[test]
    fn garbage_is_ignored_never_trusted() {
        let p = proxies(&["10.0.0.0/8"]);
        for bad in [
            "",
            "not-an-address",
            "192.0.2.7:4711",
            "unknown",
            "192.0.2.7,",
            "192.0.2.7, , 10.0.0.2",
            "fe80::1%eth0",
            "[2001:db8::7",
            "300.1.2.3",
        ] {
            assert_eq!(client(&p, "10.0.0.1", &[bad]), ip("10.0.0.1"), "{bad:?}");
        }
        // Garbage the client wrote left of what the proxy appended is never read.
        assert_eq!(
            client(&p, "10.0.0.1", &["garbage, 192.0.2.7"]),
            ip("192.0.2.7")
        );
        // Not text at all.
        let mut h = HeaderMap::new();
        h.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"192.0.2.\xff").unwrap(),
        );
        assert_eq!(p.client_address(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        // A chain longer than any real one.
        let long = vec!["10.0.0.3"; MAX_HOPS + 1].join(", ");
        assert_eq!(
            client(&p, "10.0.0.1", &[&format!("192.0.2.7, {long}")]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn trusted_proxy_values() {
        assert_eq!(
            parse_trusted_proxy("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_trusted_proxy(" 192.0.2.7 ").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(parse_trusted_proxy("::1").unwrap().to_string(), "::1/128");
        let e = parse_trusted_proxy("10.0.0.0/33").unwrap_err();
        assert_eq!(e.code(), "server.trusted_proxy");
        assert!(e.to_string().starts_with("`10.0.0.0/33` is not"), "{e}");
        for bad in ["", "example.com", "10.0.0.0/", "10.0.0"] {
            assert!(parse_trusted_proxy(bad).is_err(), "{bad:?}");
        }
    }
}
