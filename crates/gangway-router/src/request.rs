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

/// The path with its dot segments resolved (RFC 3986 §5.2.4), or `None`
/// when it has none, the common case, which costs one scan. A segment of
/// `%2e` counts as a dot: routes and backends must see one and the same
/// path, so `/x/../admin` and `/x/%2e%2e/admin` are routed, and forwarded,
/// as `/admin`. A `..` at the root stays at the root.
pub fn remove_dot_segments(path: &str) -> Option<String> {
    // Most paths have no dot or percent sign at all: one byte scan.
    if !path.bytes().any(|b| b == b'.' || b == b'%')
        || !path.split('/').any(|s| dot_segment(s).is_some())
    {
        return None;
    }
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.into_iter().enumerate() {
        match dot_segment(segment) {
            None => out.push(segment),
            Some(dots) => {
                if dots == 2 {
                    out.pop();
                }
                // `/a/b/..` ends in a directory: `/a/`.
                if i == last {
                    out.push("");
                }
            }
        }
    }
    Some(format!("/{}", out.join("/")))
}

/// 1 for `.`, 2 for `..` (either dot may be written `%2e`), else `None`.
fn dot_segment(segment: &str) -> Option<u8> {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return None,
        };
        dots += 1;
    }
    (1..=2).contains(&dots).then_some(dots)
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
    fn removes_dot_segments() {
        for (path, expected) in [
            ("/a/b", None),
            ("/a/.hidden/b..c", None),
            ("/x/../admin", Some("/admin")),
            ("/x/%2e%2E/admin", Some("/admin")),
            ("/x/.%2e/admin", Some("/admin")),
            ("/../../etc/passwd", Some("/etc/passwd")),
            ("/a/./b/.", Some("/a/b/")),
            ("/a/b/..", Some("/a/")),
            ("/..", Some("/")),
            ("/a//../b", Some("/a/b")),
        ] {
            assert_eq!(remove_dot_segments(path).as_deref(), expected, "{path}");
        }
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
