//! The standard `Forwarded` header (RFC 7239), sent when the operator turns
//! it on (`GANGWAY_FORWARDED_HEADER=true`), next to the `X-Forwarded-*`
//! headers most backends read.

use crate::headers::ClientInfo;
use http::header::{self, HeaderMap, HeaderValue};
use std::net::IpAddr;

/// Adds this hop's element: `for=<client>;host="<host>";proto=<scheme>`.
/// From a trusted proxy the elements it sent are kept and this one is
/// appended (RFC 7239 §4); from anyone else they are dropped, as with the
/// `X-Forwarded-*` headers.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, client: ClientInfo, host: &HeaderValue) {
    let mut value: Vec<u8> = Vec::with_capacity(96);
    if client.trusted {
        for prior in headers.get_all(header::FORWARDED) {
            let prior = prior.as_bytes().trim_ascii();
            if !prior.is_empty() {
                value.extend_from_slice(prior);
                value.extend_from_slice(b", ");
            }
        }
    }
    // An IPv6 address has colons, which a token cannot hold (§6).
    match client.ip {
        IpAddr::V4(ip) => value.extend_from_slice(format!("for={ip}").as_bytes()),
        IpAddr::V6(ip) => value.extend_from_slice(format!("for=\"[{ip}]\"").as_bytes()),
    }
    // The host was checked to be a plain authority (no quote or backslash),
    // so it can be quoted as it is.
    value.extend_from_slice(b";host=\"");
    value.extend_from_slice(host.as_bytes());
    value.extend_from_slice(if client.https {
        b"\";proto=https"
    } else {
        b"\";proto=http"
    });
    headers.remove(header::FORWARDED);
    if let Ok(value) = HeaderValue::from_bytes(&value) {
        headers.insert(header::FORWARDED, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(ip: &str, trusted: bool) -> ClientInfo {
        ClientInfo {
            ip: ip.parse().unwrap(),
            https: true,
            local_port: 443,
            trusted,
        }
    }

    #[test]
    fn replaces_what_an_untrusted_client_sent() {
        let mut h = HeaderMap::new();
        h.insert(header::FORWARDED, "for=1.2.3.4".parse().unwrap());
        add_forwarded(
            &mut h,
            client("10.0.0.9", false),
            &"a.test:8443".parse().unwrap(),
        );
        assert_eq!(
            h.get(header::FORWARDED).unwrap(),
            "for=10.0.0.9;host=\"a.test:8443\";proto=https"
        );
    }

    #[test]
    fn appends_to_a_trusted_proxy_and_quotes_ipv6() {
        let mut h = HeaderMap::new();
        h.append(header::FORWARDED, "for=1.2.3.4".parse().unwrap());
        h.append(header::FORWARDED, "for=5.6.7.8".parse().unwrap());
        add_forwarded(
            &mut h,
            client("2001:db8::1", true),
            &"a.test".parse().unwrap(),
        );
        assert_eq!(
            h.get_all(header::FORWARDED).iter().collect::<Vec<_>>(),
            ["for=1.2.3.4, for=5.6.7.8, for=\"[2001:db8::1]\";host=\"a.test\";proto=https"]
        );
    }
}
