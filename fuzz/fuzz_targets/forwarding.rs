//! The proxy's forwarding headers: trusted-proxy CIDR lists
//! (`TrustedProxies::parse`, `contains`), hop-by-hop removal and
//! `add_forwarding`, on headers built from the input.
//!
//! Checked besides "no panic":
//! - a parsed list contains each address it names, and `contains` agrees
//!   with a reference prefix match on 128-bit integers for any address;
//! - after `remove_hop_by_hop` no fixed hop-by-hop header and no header
//!   that a `Connection` line names is left, and every other header is
//!   kept with its values in order;
//! - after `add_forwarding` the forwarding headers each have one value;
//!   from an untrusted client they are exactly what gangway saw, from a
//!   trusted proxy the chain it sent is kept and the peer appended; every
//!   other header is left as it was;
//! - `prepare_request` keeps the first `X-Request-Id`, as one line, even
//!   when `Connection` names it.

#![no_main]

use arbitrary::Arbitrary;
use gangway_proxy::headers::{
    add_forwarding, prepare_request, remove_hop_by_hop, ClientInfo, TrustedProxies,
    X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP, X_REQUEST_ID,
};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    Trusted {
        list: &'a str,
        probe: IpAddr,
    },
    BuiltTrusted {
        blocks: Vec<(IpAddr, u8)>,
        probe: IpAddr,
    },
    Headers {
        headers: Vec<(Name<'a>, &'a str)>,
        client: IpAddr,
        trusted: bool,
        https: bool,
    },
}

#[derive(Debug, Arbitrary)]
enum Name<'a> {
    Known(u8),
    Other(&'a str),
}

const KNOWN: [&str; 17] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-request-id",
    "host",
    "cookie",
    "x-app",
];

/// RFC 9110 §7.6.1 (`Trailer` declares the message's trailers: not one).
const FIXED_HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

fn reference_contains(blocks: &[(IpAddr, u8)], ip: IpAddr) -> bool {
    blocks.iter().any(|&(block, len)| {
        let ((b, width), (a, other)) = (bits(block), bits(ip));
        if width != other {
            return false;
        }
        let shift = u32::from(width - len);
        len == 0 || (b >> shift) == (a >> shift)
    })
}

fn check_trusted(text: &str, probe: IpAddr) {
    let Ok(trusted) = TrustedProxies::parse(text) else {
        return;
    };
    let mut blocks = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (addr, len) = item.split_once('/').unwrap_or((item, ""));
        let addr: IpAddr = addr.parse().expect("accepted, so an address");
        let len = if len.is_empty() {
            bits(addr).1
        } else {
            len.parse().expect("accepted, so a length")
        };
        assert!(len <= bits(addr).1, "{item:?}");
        assert!(trusted.contains(addr), "{item:?} in {text:?}");
        blocks.push((addr, len));
    }
    assert_eq!(trusted.is_empty(), blocks.is_empty());
    assert_eq!(
        trusted.contains(probe),
        reference_contains(&blocks, probe),
        "{probe} in {text:?}"
    );
}

fuzz_target!(|input: Input<'_>| match input {
    Input::Trusted { list, probe } => check_trusted(list, probe),
    Input::BuiltTrusted { blocks, probe } => {
        let text: Vec<String> = blocks
            .iter()
            .map(|(ip, len)| format!("{ip}/{}", len % (bits(*ip).1 + 1)))
            .collect();
        let text = text.join(", ");
        assert!(TrustedProxies::parse(&text).is_ok(), "{text:?}");
        check_trusted(&text, probe);
    }
    Input::Headers {
        headers: pairs,
        client,
        trusted,
        https,
    } => {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            let name = match name {
                Name::Known(i) => HeaderName::from_static(KNOWN[usize::from(i) % KNOWN.len()]),
                Name::Other(n) => match HeaderName::from_bytes(n.as_bytes()) {
                    Ok(n) => n,
                    Err(_) => continue,
                },
            };
            if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                headers.append(name, value);
            }
        }
        let named: Vec<HeaderName> = headers
            .get_all("connection")
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .filter_map(|n| HeaderName::from_bytes(n.trim_ascii()).ok())
            .collect();
        let goes = |n: &HeaderName| FIXED_HOP_BY_HOP.contains(&n.as_str()) || named.contains(n);
        let before = headers.clone();
        remove_hop_by_hop(&mut headers);
        for name in before.keys() {
            let kept: Vec<&HeaderValue> = headers.get_all(name).iter().collect();
            if goes(name) {
                assert!(kept.is_empty(), "{name} survived");
            } else {
                let sent: Vec<&HeaderValue> = before.get_all(name).iter().collect();
                assert_eq!(kept, sent, "{name} changed");
            }
        }
        assert!(headers.keys().all(|n| before.contains_key(n)));

        let client_ip = HeaderValue::from_str(&client.to_string()).expect("an address");
        let host = HeaderValue::from_static("app.test");
        let info = ClientInfo {
            ip: client,
            https,
            local_port: 80,
            trusted,
        };
        let sent = headers.clone();
        add_forwarding(&mut headers, info, &client_ip, host.clone());

        // The whole way to a backend: the id stays, one line, even when
        // Connection names it.
        let mut whole = before.clone();
        prepare_request(&mut whole, info, &client_ip, host.clone());
        let ids: Vec<&HeaderValue> = whole.get_all(&X_REQUEST_ID).iter().collect();
        assert_eq!(
            ids,
            before.get(&X_REQUEST_ID).into_iter().collect::<Vec<_>>()
        );
        // Host is gangway's, one line, whatever Connection named.
        assert_eq!(whole.get_all(header::HOST).iter().collect::<Vec<_>>(), [&host]);
        let proto = if https { "https" } else { "http" };
        let one = |name: &HeaderName| -> HeaderValue {
            let all: Vec<&HeaderValue> = headers.get_all(name).iter().collect();
            assert_eq!(all.len(), 1, "{name}: {all:?}");
            all[0].clone()
        };
        let first_sent = |name: &HeaderName| sent.get(name).cloned();
        if trusted {
            // The proxy's own view is kept where it gave one.
            assert_eq!(
                headers.get_all(&X_REAL_IP).iter().collect::<Vec<_>>(),
                match sent.get_all(&X_REAL_IP).iter().count() {
                    0 => vec![&client_ip],
                    _ => sent.get_all(&X_REAL_IP).iter().collect(),
                }
            );
            assert_eq!(
                headers.get(&X_FORWARDED_HOST),
                Some(&first_sent(&X_FORWARDED_HOST).unwrap_or(host))
            );
            assert_eq!(
                headers.get(&X_FORWARDED_PROTO),
                Some(&first_sent(&X_FORWARDED_PROTO).unwrap_or(HeaderValue::from_static(proto)))
            );
            let mut chain: Vec<String> = sent
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes().trim_ascii()).into_owned())
                .filter(|v| !v.is_empty())
                .collect();
            chain.push(client.to_string());
            let got = one(&X_FORWARDED_FOR);
            assert_eq!(String::from_utf8_lossy(got.as_bytes()), chain.join(", "));
        } else {
            assert_eq!(one(&X_REAL_IP), client_ip);
            assert_eq!(one(&X_FORWARDED_FOR), client_ip);
            assert_eq!(one(&X_FORWARDED_HOST), host);
            assert_eq!(one(&X_FORWARDED_PROTO), proto);
        }
        // Nothing else changes.
        for (name, _) in sent.iter() {
            if ![
                &X_REAL_IP,
                &X_FORWARDED_FOR,
                &X_FORWARDED_HOST,
                &X_FORWARDED_PROTO,
            ]
            .contains(&name)
            {
                assert_eq!(
                    headers.get_all(name).iter().collect::<Vec<_>>(),
                    sent.get_all(name).iter().collect::<Vec<_>>()
                );
            }
        }
        assert!(headers.keys().all(|n| sent.contains_key(n)
            || [
                &X_REAL_IP,
                &X_FORWARDED_FOR,
                &X_FORWARDED_HOST,
                &X_FORWARDED_PROTO
            ]
            .contains(&n)));
    }
});
