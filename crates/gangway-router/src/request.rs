//! The parts of a request that routing looks at.

use http::{HeaderMap, Method};
use std::borrow::Cow;

/// What the router needs to know about a request; borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// The `Host` header or `:authority`, as received.
    pub host: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The method.
    pub method: &'a Method,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The port of the listener the request arrived on.
    pub port: u16,
    /// Whether it asks for a WebSocket upgrade.
    pub websocket: bool,
}

impl<'a> RequestInfo<'a> {
    /// Whether some `name=value` pair of the query (percent-decoded, `+`
    /// as space) has a value that `accepts` takes.
    pub(crate) fn query_accepts(&self, name: &str, accepts: impl Fn(&str) -> bool) -> bool {
        let Some(query) = self.query else {
            return false;
        };
        query.split('&').any(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            decode_query_component(k) == name && accepts(&decode_query_component(v))
        })
    }
}

/// Whether a request's headers ask for a WebSocket upgrade (RFC 6455 §4.1):
/// `Upgrade: websocket` with `Connection: upgrade`.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name: http::header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has_token(http::header::UPGRADE, "websocket") && has_token(http::header::CONNECTION, "upgrade")
}

/// Percent-decodes a query component (`+` is a space); invalid escapes are
/// kept as they are.
pub fn decode_query_component(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_and_plus() {
        assert_eq!(decode_query_component("a%20b+c"), "a b c");
        assert_eq!(decode_query_component("100%"), "100%");
        assert_eq!(decode_query_component("%zz"), "%zz");
        assert_eq!(decode_query_component("plain"), "plain");
    }

    #[test]
    fn recognises_websocket_upgrades() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", "WebSocket".parse().unwrap());
        assert!(!is_websocket_upgrade(&h));
        h.insert("connection", "keep-alive, Upgrade".parse().unwrap());
        assert!(is_websocket_upgrade(&h));
    }
}
