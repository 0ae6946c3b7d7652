//! Header rewriting between client and backend: hop-by-hop removal (RFC 9110
//! §7.6.1) and the forwarding headers seed 001 sets with `proxy_set_header`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// `X-Real-IP`: the address of the client as gangway saw it.
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// `X-Forwarded-For`: the chain of client addresses.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Host`: the host the client asked for.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Forwarded-Proto`: `http` or `https`, as the client spoke to gangway.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// `X-Request-Id`: one id per request, passed to the backend, returned to
/// the client and logged.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, never the message, and so are
/// never forwarded (RFC 9110 §7.6.1). `Trailer` is not one of them: it
/// declares the message's trailer fields, and HTTP/1.1 sends only the
/// declared ones.
fn fixed_hop_by_hop() -> [&'static HeaderName; 8] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHORIZATION,
        &header::PROXY_AUTHENTICATE,
    ]
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    fixed_hop_by_hop().contains(&name)
}

/// Removes hop-by-hop headers, including every header that `Connection`
/// names. Must run before gangway adds its own headers, so that a client
/// sending `Connection: x-forwarded-for` cannot remove them.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names (compared as
    // the standard-header tags they mostly are) instead of a hash lookup
    // per hop-by-hop name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        // Read as bytes: one element that is not ASCII must not keep the
        // others in the same line from being removed.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in fixed_hop_by_hop() {
        headers.remove(name);
    }
}

/// A request's headers on their way to a backend: hop-by-hop headers
/// removed, then `Host`, the forwarding headers and the `X-Request-Id` the
/// handler settled on set. The id is set after the removal, as one line,
/// even when `Connection` names it: the backend must see the id that the
/// client gets back and the log records. `Host` likewise (and because
/// HTTP/2 requests carry the host in `:authority` only).
pub fn prepare_request(
    headers: &mut HeaderMap,
    client: ClientInfo,
    client_ip: &HeaderValue,
    host: HeaderValue,
    request_id: HeaderValue,
) {
    remove_hop_by_hop(headers);
    // Room for what is added below, so the map grows at most once.
    headers.reserve(8);
    headers.insert(header::HOST, host.clone());
    add_forwarding(headers, client, client_ip, host);
    headers.insert(X_REQUEST_ID.clone(), request_id);
}

/// What gangway knows about the client connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    /// The client's address (IPv4-mapped addresses already unmapped).
    pub ip: IpAddr,
    /// Whether the request came over TLS.
    pub https: bool,
    /// The port of the listener the connection arrived on.
    pub local_port: u16,
    /// Whether the client is a trusted proxy (`GANGWAY_TRUSTED_PROXIES`),
    /// whose forwarding headers are kept and extended.
    pub trusted: bool,
}

/// Sets the forwarding headers seed 001 sets with `proxy_set_header`.
///
/// From a trusted proxy (a load balancer in front of gangway) the headers
/// it sent are kept: the client is appended to `X-Forwarded-For` (nginx's
/// `$proxy_add_x_forwarded_for`), and its `X-Real-IP`, `X-Forwarded-Host`
/// and `X-Forwarded-Proto` stay. From anyone else they are overwritten
/// with what gangway saw: a client cannot claim another address or scheme.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    client: ClientInfo,
    client_ip: &HeaderValue,
    host: HeaderValue,
) {
    let proto = HeaderValue::from_static(if client.https { "https" } else { "http" });
    if !client.trusted {
        headers.insert(X_REAL_IP.clone(), client_ip.clone());
        headers.insert(X_FORWARDED_FOR.clone(), client_ip.clone());
        headers.insert(X_FORWARDED_HOST.clone(), host);
        headers.insert(X_FORWARDED_PROTO.clone(), proto);
        return;
    }
    if !headers.contains_key(&X_REAL_IP) {
        headers.insert(X_REAL_IP.clone(), client_ip.clone());
    }
    if !headers.contains_key(&X_FORWARDED_HOST) {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), proto);
    }
    let mut chain: Vec<u8> = Vec::new();
    for prior in headers.get_all(&X_FORWARDED_FOR) {
        let prior = prior.as_bytes().trim_ascii();
        if !prior.is_empty() {
            chain.extend_from_slice(prior);
            chain.extend_from_slice(b", ");
        }
    }
    let forwarded_for = if chain.is_empty() {
        client_ip.clone()
    } else {
        chain.extend_from_slice(client_ip.as_bytes());
        HeaderValue::from_bytes(&chain).unwrap_or_else(|_| client_ip.clone())
    };
    // Several X-Forwarded-For lines are folded into the one value above
    // (`insert` replaces them all).
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for);
}

/// Addresses whose forwarding headers are trusted: single addresses and
/// CIDR blocks, IPv4 and IPv6.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses `10.0.0.0/8, 192.168.1.7, fd00::/8`.
    pub fn parse(text: &str) -> Result<TrustedProxies, String> {
        let mut blocks = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (addr, len) = match item.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (item, None),
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("{item:?} is not an address or CIDR block"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len = match len {
                None => max,
                Some(l) => l
                    .parse::<u8>()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| format!("{item:?}: the prefix length must be 0 to {max}"))?,
            };
            blocks.push((addr, len));
        }
        Ok(TrustedProxies(blocks))
    }

    /// Whether `ip` is in one of the blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|&(block, len)| match (block, ip) {
            (IpAddr::V4(b), IpAddr::V4(a)) => prefix_eq(&b.octets(), &a.octets(), len),
            (IpAddr::V6(b), IpAddr::V6(a)) => prefix_eq(&b.octets(), &a.octets(), len),
            _ => false,
        })
    }

    /// Whether no address is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn prefix_eq(a: &[u8], b: &[u8], len: u8) -> bool {
    let full = usize::from(len / 8);
    let rest = len % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("te", "gzip"),
            ("proxy-authorization", "Basic abc"),
            ("upgrade", "h2c"),
            ("x-kept", "3"),
        ]);
        remove_hop_by_hop(&mut h);
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }

    /// Found by the property tests: a `Connection` line with a non-ASCII
    /// element was ignored whole, so the headers it named were forwarded.
    #[test]
    fn a_connection_line_with_obs_text_still_removes_what_it_names() {
        let mut h = HeaderMap::new();
        h.append("x-secret", HeaderValue::from_static("1"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_bytes(b"x-secret, caf\xe9").unwrap(),
        );
        remove_hop_by_hop(&mut h);
        assert!(h.is_empty(), "{h:?}");
    }

    /// Found writing the property tests: `Connection: x-request-id` dropped the
    /// id before forwarding, while the client got it back and the log had it.
    #[test]
    fn the_request_id_survives_connection_naming_it() {
        let client = ClientInfo {
            ip: "10.1.2.3".parse().unwrap(),
            https: false,
            local_port: 80,
            trusted: false,
        };
        let ip = HeaderValue::from_static("10.1.2.3");
        let mut h = map(&[("x-request-id", "abc"), ("connection", "x-request-id")]);
        let id = HeaderValue::from_static("abc");
        prepare_request(
            &mut h,
            client,
            &ip,
            HeaderValue::from_static("app.test"),
            id,
        );
        assert_eq!(h.get_all(&X_REQUEST_ID).iter().collect::<Vec<_>>(), ["abc"]);
    }

    #[test]
    fn a_trusted_proxys_headers_are_kept_and_extended() {
        let client = ClientInfo {
            ip: "127.0.0.1".parse().unwrap(),
            https: true,
            local_port: 443,
            trusted: true,
        };
        let ip = HeaderValue::from_static("127.0.0.1");
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
            ("x-real-ip", "5.6.7.8"),
            ("x-forwarded-proto", "http"),
        ]);
        add_forwarding(&mut h, client, &ip, HeaderValue::from_static("app.test"));
        assert_eq!(h["x-real-ip"], "5.6.7.8", "the proxy's view of the client");
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 5.6.7.8, 127.0.0.1");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-host"], "app.test");
        assert_eq!(
            h["x-forwarded-proto"], "http",
            "TLS ended at the proxy in front"
        );
    }

    #[test]
    fn a_client_cannot_strip_gangway_headers_through_connection() {
        let client = ClientInfo {
            ip: "10.1.2.3".parse().unwrap(),
            https: false,
            local_port: 80,
            trusted: false,
        };
        let ip = HeaderValue::from_static("10.1.2.3");
        let mut h = map(&[("connection", "x-forwarded-for, x-real-ip")]);
        remove_hop_by_hop(&mut h);
        add_forwarding(&mut h, client, &ip, HeaderValue::from_static("app.test"));
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-real-ip"], "10.1.2.3");
    }

    #[test]
    fn an_untrusted_client_cannot_claim_forwarding_headers() {
        let client = ClientInfo {
            ip: "203.0.113.9".parse().unwrap(),
            https: false,
            local_port: 80,
            trusted: false,
        };
        let ip = HeaderValue::from_static("203.0.113.9");
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-real-ip", "9.9.9.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "admin.internal"),
        ]);
        add_forwarding(&mut h, client, &ip, HeaderValue::from_static("app.test"));
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app.test");
    }

    #[test]
    fn trusted_proxy_blocks() {
        let t = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7, fd00::/8, 172.16.0.0/12").unwrap();
        for ip in ["10.1.2.3", "192.168.1.7", "fd12::1", "172.31.255.1"] {
            assert!(t.contains(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "11.0.0.1",
            "192.168.1.8",
            "fe80::1",
            "172.32.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!t.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("bogus").is_err());
    }
}
