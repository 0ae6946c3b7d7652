//! `gangway_model::normalize_host`: a request's `Host` / `:authority` to
//! the routing key. Checked besides "no panic":
//! - a key is non-empty, at most 253 bytes, and has no upper-case letter;
//! - idempotence: the key, given again as a host (an IPv6 address in its
//!   brackets), is its own key;
//! - a port makes no difference: `key:8080` (`[key]:8080`) gives the key;
//! - case makes no difference: upper- and lower-cased inputs agree;
//! - outside brackets a key never holds a ':' (that would be a port);
//! - routes and requests agree: a host that configuration accepts
//!   (`validate_host_pattern`) is, as a request's host, routed under the
//!   very key the route was registered with.

#![no_main]

use gangway_model::{normalize_host, validate_host_pattern, MAX_HOST_LEN};
use libfuzzer_sys::fuzz_target;

fn norm(raw: &str) -> Option<String> {
    let mut buf = [0u8; MAX_HOST_LEN + 8];
    normalize_host(raw, &mut buf).map(str::to_owned)
}

/// The key written back as a host value.
fn as_host(key: &str, port: &str) -> String {
    if key.contains(':') {
        format!("[{key}]{port}")
    } else {
        format!("{key}{port}")
    }
}

fuzz_target!(|raw: &str| {
    let key = norm(raw);
    if let Some(k) = &key {
        assert!(!k.is_empty() && k.len() <= MAX_HOST_LEN, "{raw:?} → {k:?}");
        assert!(
            !k.bytes().any(|b| b.is_ascii_uppercase()),
            "{raw:?} → {k:?}"
        );
        assert_eq!(
            norm(&as_host(k, "")).as_ref(),
            Some(k),
            "not idempotent: {raw:?}"
        );
        assert_eq!(
            norm(&as_host(k, ":8080")).as_ref(),
            Some(k),
            "port: {raw:?}"
        );
        if !raw.trim_start().starts_with('[') {
            assert!(!k.contains(':'), "{raw:?} → {k:?}");
        }
    }
    assert_eq!(
        norm(&raw.to_ascii_uppercase()),
        norm(&raw.to_ascii_lowercase()),
        "case: {raw:?}"
    );

    if let Ok(pattern) = validate_host_pattern(raw) {
        if !pattern.starts_with("*.") {
            if !pattern.contains(':') {
                assert_eq!(norm(raw).as_ref(), Some(&pattern), "configured {raw:?}");
            }
            assert_eq!(
                norm(&as_host(&pattern, "")).as_deref(),
                Some(pattern.as_str()),
                "configured {raw:?} is registered as {pattern:?}"
            );
        }
    }
});
