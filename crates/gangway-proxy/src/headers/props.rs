//! Property tests of the header rewriting: what reaches a backend, for any
//! headers a client (or a proxy in front) may send.

use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

/// The headers RFC 9110 §7.6.1 (and practice) call hop-by-hop. (`Trailer`
/// is not one: it declares the message's trailers.)
const FIXED: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// The headers gangway itself sets on a forwarded request.
const OURS: [&str; 6] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-request-id",
];

const END_TO_END: [&str; 7] = [
    "accept",
    "cookie",
    "authorization",
    "content-type",
    "via",
    "x-app",
    "x-trace",
];

/// A header name, in any case, from every group above or made up.
fn name() -> impl Strategy<Value = String> {
    let known = prop_oneof![
        proptest::sample::select(&FIXED[..]),
        proptest::sample::select(&OURS[..]),
        proptest::sample::select(&END_TO_END[..]),
    ]
    .prop_map(str::to_owned);
    let name = prop_oneof![3 => known, 1 => "[a-z][a-z0-9-]{0,8}"];
    (name, any::<u64>()).prop_map(|(n, case)| {
        n.chars()
            .enumerate()
            .map(|(i, c)| {
                if case >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    })
}

/// A valid header value: mostly visible ASCII, sometimes obs-text bytes.
fn value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        4 => "[ -~]{0,16}".prop_map(String::into_bytes),
        1 => vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..12),
    ]
    .prop_filter_map("not a header value", |b| HeaderValue::from_bytes(&b).ok())
}

/// A `Connection` value: names, junk tokens, empty elements, spaces.
fn connection_value() -> impl Strategy<Value = HeaderValue> {
    let element = prop_oneof![
        4 => name(),
        1 => "[ -+\\--~]{0,6}",
        1 => Just("caf\u{e9}".to_owned()),
    ];
    (vec((element, "[ \t]{0,2}", "[ \t]{0,2}"), 0..5)).prop_filter_map(
        "not a header value",
        |elements| {
            let text: Vec<String> = elements
                .into_iter()
                .map(|(e, l, r)| format!("{l}{e}{r}"))
                .collect();
            let text = text.join(",");
            // Latin-1 for the non-ASCII, as obs-text arrives on the wire.
            let bytes: Vec<u8> = text.chars().map(|c| c as u32 as u8).collect();
            HeaderValue::from_bytes(&bytes).ok()
        },
    )
}

/// Request headers in the order received.
fn fields() -> impl Strategy<Value = Vec<(HeaderName, HeaderValue)>> {
    let field = prop_oneof![
        5 => (name(), value()),
        1 => (Just("connection".to_owned()), connection_value()),
    ];
    vec(field, 0..16).prop_map(|fields| {
        fields
            .into_iter()
            .filter_map(|(n, v)| Some((HeaderName::from_bytes(n.as_bytes()).ok()?, v)))
            .collect()
    })
}

fn header_map(fields: &[(HeaderName, HeaderValue)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in fields {
        map.append(name.clone(), value.clone());
    }
    map
}

fn values<'a>(map: &'a HeaderMap, name: &str) -> Vec<&'a HeaderValue> {
    map.get_all(name).iter().collect()
}

/// The names `Connection` lines list, lower case, read from the raw bytes
/// (RFC 9110 §7.6.1: every listed option goes, whatever its neighbours).
fn named_by_connection(map: &HeaderMap) -> Vec<String> {
    map.get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|e| String::from_utf8_lossy(e.trim_ascii()).to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect()
}

fn client(ip: IpAddr, https: bool, trusted: bool) -> (ClientInfo, HeaderValue) {
    let info = ClientInfo {
        ip,
        https,
        local_port: 8080,
        trusted,
    };
    let value = HeaderValue::from_str(&ip.to_string()).expect("an address is a header value");
    (info, value)
}

proptest! {
    /// No hop-by-hop header and no header a `Connection` line names is
    /// left; every other header is kept, values untouched and in order.
    #[test]
    fn hop_by_hop_removal_keeps_exactly_the_end_to_end_headers(fields in fields()) {
        let before = header_map(&fields);
        let named = named_by_connection(&before);
        let mut after = before.clone();
        remove_hop_by_hop(&mut after);

        for name in before.keys() {
            let goes = FIXED.contains(&name.as_str()) || named.iter().any(|n| n == name.as_str());
            if goes {
                prop_assert!(!after.contains_key(name), "{} survived", name);
            } else {
                prop_assert_eq!(values(&after, name.as_str()), values(&before, name.as_str()));
            }
        }
        prop_assert!(after.keys().all(|n| before.contains_key(n)), "a header appeared");
        let mut twice = after.clone();
        remove_hop_by_hop(&mut twice);
        prop_assert_eq!(twice, after);
    }

    /// From a client that is not a trusted proxy, the forwarding headers
    /// are one line each, with what gangway saw: the client's own values
    /// never survive, whatever it sent or named in `Connection`. The
    /// `X-Request-Id` the handler settled on is there, as one line.
    #[test]
    fn an_untrusted_client_gets_gangways_view_only(
        fields in fields(),
        ip in any::<IpAddr>(),
        https in any::<bool>(),
        host in value(),
        request_id in value(),
    ) {
        let before = header_map(&fields);
        let (info, ip_value) = client(ip, https, false);
        let mut after = before.clone();
        prepare_request(&mut after, info, &ip_value, host.clone(), request_id.clone());

        let proto = HeaderValue::from_static(if https { "https" } else { "http" });
        prop_assert_eq!(values(&after, "x-forwarded-for"), vec![&ip_value]);
        prop_assert_eq!(values(&after, "x-real-ip"), vec![&ip_value]);
        prop_assert_eq!(values(&after, "x-forwarded-host"), vec![&host]);
        prop_assert_eq!(values(&after, "x-forwarded-proto"), vec![&proto]);
        prop_assert_eq!(values(&after, "host"), vec![&host]);
        prop_assert_eq!(values(&after, "x-request-id"), vec![&request_id]);
        let mut removed = before.clone();
        remove_hop_by_hop(&mut removed);
        for name in removed.keys().filter(|n| !OURS.contains(&n.as_str())) {
            prop_assert_eq!(values(&after, name.as_str()), values(&removed, name.as_str()));
        }
        prop_assert!(after.keys().all(|n| removed.contains_key(n) || OURS.contains(&n.as_str())));
    }

    /// From a trusted proxy, the chain it sent is kept in order (several
    /// lines folded into one) and the peer appended last; its view of the
    /// client, host and scheme stays, and gangway's fills in what it left
    /// out.
    #[test]
    fn a_trusted_proxys_chain_is_kept_and_the_peer_appended(
        fields in fields(),
        ip in any::<IpAddr>(),
        https in any::<bool>(),
        host in value(),
    ) {
        let before = header_map(&fields);
        let (info, ip_value) = client(ip, https, true);
        let mut removed = before.clone();
        remove_hop_by_hop(&mut removed);
        let mut after = before.clone();
        let request_id = HeaderValue::from_static("r1");
        prepare_request(&mut after, info, &ip_value, host.clone(), request_id);

        let mut chain: Vec<&[u8]> = removed
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .map(|v| v.as_bytes().trim_ascii())
            .filter(|v| !v.is_empty())
            .collect();
        chain.push(ip_value.as_bytes());
        let forwarded_for = values(&after, "x-forwarded-for");
        prop_assert_eq!(forwarded_for.len(), 1);
        let chain = chain.join(&b", "[..]);
        prop_assert_eq!(forwarded_for[0].as_bytes(), chain.as_slice());
        prop_assert!(forwarded_for[0].as_bytes().ends_with(ip_value.as_bytes()));

        let proto = HeaderValue::from_static(if https { "https" } else { "http" });
        for (name, ours) in [
            ("x-real-ip", &ip_value),
            ("x-forwarded-host", &host),
            ("x-forwarded-proto", &proto),
        ] {
            let sent = values(&removed, name);
            let want = if sent.is_empty() { vec![ours] } else { sent };
            prop_assert_eq!(values(&after, name), want, "{}", name);
        }
        for name in removed.keys().filter(|n| !OURS.contains(&n.as_str())) {
            prop_assert_eq!(values(&after, name.as_str()), values(&removed, name.as_str()));
        }
    }

    /// A list of blocks is accepted, and contains each address it names
    /// and every address sharing a block's prefix, but not the address
    /// that differs in the prefix's last bit. One bad item rejects it all.
    #[test]
    fn trusted_proxy_lists(
        blocks in vec((any::<IpAddr>(), any::<u8>(), any::<u128>()), 1..5),
        bad in prop_oneof![
            Just("10.0.0.0/33".to_owned()),
            Just("::/129".to_owned()),
            Just("10.0.0.1/".to_owned()),
            Just("10.0.0.1/-1".to_owned()),
            Just("localhost".to_owned()),
            Just("[::1]".to_owned()),
            Just("10.0.0.0/8/8".to_owned()),
            "[g-z]{1,6}",
        ],
        at in any::<prop::sample::Index>(),
    ) {
        let width = |ip: &IpAddr| if ip.is_ipv4() { 32u8 } else { 128 };
        let blocks: Vec<(IpAddr, u8, u128)> = blocks
            .into_iter()
            .map(|(ip, len, noise)| (ip, len % (width(&ip) + 1), noise))
            .collect();
        let items: Vec<String> = blocks.iter().map(|(ip, len, _)| format!("{ip}/{len}")).collect();
        let trusted = TrustedProxies::parse(&items.join(" , "));
        prop_assert!(trusted.is_ok(), "{:?}", items);
        let trusted = trusted.unwrap_or_default();

        for &(ip, len, noise) in &blocks {
            prop_assert!(trusted.contains(ip));
            let host_bits = u32::from(width(&ip) - len);
            let flip = |ip: IpAddr, mask: u128| match ip {
                IpAddr::V4(a) => IpAddr::V4((u32::from(a) ^ mask as u32).into()),
                IpAddr::V6(a) => IpAddr::V6((u128::from(a) ^ mask).into()),
            };
            let host_mask = if host_bits == 0 { 0 } else { u128::MAX >> (128 - host_bits) };
            prop_assert!(trusted.contains(flip(ip, noise & host_mask)));
            if len > 0 {
                let alone = TrustedProxies::parse(&format!("{ip}/{len}")).unwrap_or_default();
                prop_assert!(!alone.contains(flip(ip, 1u128 << host_bits)));
            }
        }

        let mut with_bad = items.clone();
        with_bad.insert(at.index(items.len() + 1), bad.clone());
        prop_assert!(TrustedProxies::parse(&with_bad.join(",")).is_err(), "{:?}", with_bad);
    }
}
