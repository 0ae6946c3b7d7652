//! Host names: how a request's `Host` is reduced to the key routes are
//! registered under, and which host names a route may declare.

use thiserror::Error;

/// The longest host name DNS allows (RFC 1035 §2.3.4, without the root dot).
pub const MAX_HOST_LEN: usize = 253;

/// Why a host name given in configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HostError {
    /// The host is empty after trimming.
    #[error("the host is empty; give a name such as app.example.com")]
    Empty,
    /// The host is longer than DNS allows.
    #[error("the host is {0} characters long; a host name has at most 253")]
    TooLong(usize),
    /// The host contains a character that cannot appear in a host name.
    #[error("the host contains {0:?}, which is not allowed in a host name (use letters, digits, '-' and '.')")]
    BadChar(char),
    /// A label (the part between dots) is empty or too long.
    #[error("the host has an empty or over-long part between dots")]
    BadLabel,
}

/// Reduces a request's `Host` header (or HTTP/2 `:authority`) to its routing
/// key: lower case, without port and without a trailing dot.
///
/// Writes into `buf` only when the input needs changing, so the common case
/// (an already lower-case host without port) allocates nothing. Returns
/// `None` for a value that cannot be a host: one with a character that no
/// configured host can have (letters, digits, `-`, `_` and `.`; hex digits,
/// `:` and `.` inside the brackets of an IPv6 literal), an empty label, or
/// anything but a port after the name. Such a value could otherwise reach
/// a wildcard route (`evil.example/x.app.test` under `*.app.test`) while
/// the backend or a redirect reads it as another host.
pub fn normalize_host<'a>(raw: &'a str, buf: &'a mut [u8; MAX_HOST_LEN + 8]) -> Option<&'a str> {
    let raw = raw.trim();
    let is_port = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let (host, ipv6) = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: keep the brackets off, drop any port after them.
        let (inside, after) = rest.split_once(']')?;
        if !inside.contains(':') {
            return None;
        }
        match after.strip_prefix(':') {
            Some(port) if is_port(port) => {}
            None if after.is_empty() => {}
            _ => return None,
        }
        (inside, true)
    } else {
        match raw.split_once(':') {
            Some((name, port)) if is_port(port) => (name.strip_suffix('.').unwrap_or(name), false),
            Some(_) => return None,
            None => (raw.strip_suffix('.').unwrap_or(raw), false),
        }
    };
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return None;
    }
    let mut upper = false;
    let mut previous = b'.';
    for b in host.bytes() {
        let allowed = if ipv6 {
            b.is_ascii_hexdigit() || b == b':' || b == b'.'
        } else {
            b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && previous != b'.')
        };
        if !allowed {
            return None;
        }
        upper |= b.is_ascii_uppercase();
        previous = b;
    }
    if !ipv6 && previous == b'.' {
        return None;
    }
    if !upper {
        return Some(host);
    }
    let out = &mut buf[..host.len()];
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    // Lower-casing ASCII bytes of a valid UTF-8 string keeps it valid UTF-8.
    std::str::from_utf8(out).ok()
}

/// Whether a request's `Host` header (or HTTP/2 `:authority`) has the form
/// `uri-host [":" port]` (RFC 9112 §3.2, RFC 3986 §3.2.2) with a host gangway
/// can route: a name of letters, digits, `-`, `_` and `.`, or a bracketed
/// IPv6 literal, and a port of at most 65535. Lists, user information
/// (`user@host`), spaces and other characters make a request ambiguous
/// between gangway and the backend, so it is refused.
pub fn is_valid_authority(raw: &str) -> bool {
    let (host_ok, port) = match raw.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((literal, after)) => (
                literal.parse::<std::net::Ipv6Addr>().is_ok(),
                match after {
                    "" => None,
                    _ => match after.strip_prefix(':') {
                        Some(port) => Some(port),
                        None => return false,
                    },
                },
            ),
            None => return false,
        },
        None => {
            let (host, port) = match raw.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (raw, None),
            };
            let name_ok = !host.is_empty()
                && host.len() <= MAX_HOST_LEN + 1
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            (name_ok, port)
        }
    };
    // RFC 3986 allows an empty port; more than five digits cannot be one.
    let port_ok = port.is_none_or(|p| {
        p.is_empty()
            || (p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok())
    });
    host_ok && port_ok
}

/// Checks a host name given in configuration and returns its routing key.
///
/// Accepts DNS names (letters, digits, `-`, `_`, dots), IP addresses, and a
/// leading `*.` wildcard label; rejects everything else with an error a
/// user can act on.
pub fn validate_host_pattern(raw: &str) -> Result<String, HostError> {
    let trimmed = raw.trim();
    let host = trimmed.strip_suffix('.').unwrap_or(trimmed);
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    if host.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong(host.len()));
    }
    let lower = host.to_ascii_lowercase();
    if lower.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(lower);
    }
    let body = lower.strip_prefix("*.").unwrap_or(&lower);
    for label in body.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(HostError::BadLabel);
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(HostError::BadChar(bad));
        }
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        for good in [
            "a.test",
            "A.Test:8080",
            "a.test.",
            "10.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "a_b.test:",
        ] {
            assert!(is_valid_authority(good), "{good}");
        }
        for bad in [
            "",
            "a.test, evil.test",
            "a.test:abc",
            "evil.test@a.test",
            "a.test:99999",
            "a.test:123456",
            "[::1",
            "[zz]:80",
            "[::1]x",
            "a test",
            "a.test:80:80",
            ":80",
        ] {
            assert!(!is_valid_authority(bad), "{bad}");
        }
    }

    fn norm(raw: &str) -> Option<String> {
        let mut buf = [0u8; MAX_HOST_LEN + 8];
        normalize_host(raw, &mut buf).map(str::to_owned)
    }

    #[test]
    fn lower_case_port_and_trailing_dot_are_ignored() {
        assert_eq!(norm("app.example.com").as_deref(), Some("app.example.com"));
        assert_eq!(norm("App.Example.COM").as_deref(), Some("app.example.com"));
        assert_eq!(
            norm("app.example.com:8080").as_deref(),
            Some("app.example.com")
        );
        assert_eq!(norm("app.example.com.").as_deref(), Some("app.example.com"));
        assert_eq!(
            norm("APP.example.com.:443").as_deref(),
            Some("app.example.com")
        );
    }

    #[test]
    fn ipv6_literals_keep_their_address() {
        assert_eq!(norm("[::1]:8080").as_deref(), Some("::1"));
        assert_eq!(norm("[FE80::1]").as_deref(), Some("fe80::1"));
        assert_eq!(norm("[::1").as_deref(), None);
    }

    #[test]
    fn garbage_is_not_a_host() {
        assert_eq!(norm(""), None);
        assert_eq!(norm(":80"), None);
        assert_eq!(norm("a:b:c"), None);
        assert_eq!(norm(&"a".repeat(300)), None);
    }

    /// Found by the `host_normalize` fuzz target: keys that were not
    /// themselves again (`a..` → `a.` → `a`), and hosts that reached a
    /// wildcard route while naming another host.
    #[test]
    fn only_host_characters_make_a_key() {
        for bad in [
            "a..",
            "**..",
            "a :80",
            "a:b:80",
            "::1",
            "evil.example/x.app.test",
            "user@x.app.test",
            ".app.test",
            "a..b",
            "[::1]x",
            "[::1]:x",
            "[ ::1 ]",
            "[a.test]",
            "[.]",
            "[10.0.0.1]",
            "*.app.test",
        ] {
            assert_eq!(norm(bad), None, "{bad:?}");
        }
        assert_eq!(norm("A_B-9.test.:80").as_deref(), Some("a_b-9.test"));
        assert_eq!(
            norm("[::FFFF:10.0.0.1]:443").as_deref(),
            Some("::ffff:10.0.0.1")
        );
        assert_eq!(norm("10.0.0.1:").as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn configured_hosts_are_checked() {
        assert_eq!(
            validate_host_pattern(" API.example.com ").unwrap(),
            "api.example.com"
        );
        assert_eq!(
            validate_host_pattern("*.example.com").unwrap(),
            "*.example.com"
        );
        assert_eq!(validate_host_pattern("10.0.0.1").unwrap(), "10.0.0.1");
        assert_eq!(validate_host_pattern("::1").unwrap(), "::1");
        assert_eq!(validate_host_pattern(""), Err(HostError::Empty));
        assert_eq!(validate_host_pattern("a..b"), Err(HostError::BadLabel));
        assert_eq!(validate_host_pattern("a b"), Err(HostError::BadChar(' ')));
        assert_eq!(
            validate_host_pattern("http://x"),
            Err(HostError::BadChar(':'))
        );
    }
}
