//! The hand-written parsers of the data plane that take request input:
//! static files' path check (`safe_relative_path`), `Range` headers
//! (`parse_range`) and redirect templates (`expand_template`).
//!
//! Checked besides "no panic":
//! - a path accepted for static files is relative, made of normal
//!   segments only, and joined to a root stays below it; it equals what
//!   strict percent-decoding (exactly two hex digits after `%`) and
//!   splitting on `/` give; a `..` segment, encoded or not, is refused;
//!   any segments that are not `.`/`..`, percent-encoded, come back;
//! - a satisfiable range lies inside the file (`start <= end < len`),
//!   and well-formed single ranges give exactly the bytes they name;
//! - a template expands as an independent reference expansion does, text
//!   without `$` is kept as it is, and `$host` is the normalised host.

#![no_main]

use arbitrary::Arbitrary;
use gangway_model::{normalize_host, MAX_HOST_LEN};
use gangway_proxy::fuzzing::{expand_template, parse_range, safe_relative_path, RangeSpec};
use gangway_router::Captures;
use http::Uri;
use libfuzzer_sys::fuzz_target;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    Path(&'a str),
    Segments(Vec<String>),
    Range(&'a str, u64),
    BuiltRange {
        first: Option<u64>,
        last: Option<u64>,
        len: u64,
    },
    Template {
        template: &'a str,
        uri: &'a str,
        host: &'a str,
        https: bool,
    },
}

/// Strict RFC 3986 percent-decoding, then UTF-8.
fn strict_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (hi, lo) = (*b.get(i + 1)?, *b.get(i + 2)?);
            if !hi.is_ascii_hexdigit() || !lo.is_ascii_hexdigit() {
                return None;
            }
            let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
            out.push(hex(hi)? * 16 + hex(lo)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn reference_path(path: &str) -> Option<PathBuf> {
    let decoded = strict_decode(path)?;
    let mut out = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s if s.contains(['\0', '\\']) => return None,
            s => out.push(s),
        }
    }
    Some(out)
}

fn check_path(path: &str) {
    let got = safe_relative_path(path);
    assert_eq!(got, reference_path(path), "{path:?}");
    if let Some(p) = got {
        assert!(p.is_relative(), "{path:?} → {p:?}");
        assert!(
            p.components().all(|c| matches!(c, Component::Normal(_))),
            "{path:?} → {p:?}"
        );
        assert!(Path::new("/srv/www").join(&p).starts_with("/srv/www"));
    }
}

fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn check_range(value: &str, len: u64) {
    match parse_range(value, len) {
        RangeSpec::Satisfiable(start, end) => {
            assert!(
                start <= end && end < len,
                "{value:?} of {len}: {start}-{end}"
            )
        }
        RangeSpec::Ignored | RangeSpec::Unsatisfiable => {}
    }
}

/// `$name`, `${name}`; anything else after `$` leaves the `$` as it is.
fn reference_expand(template: &str, var: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let after = &template[i + 1..];
        if let Some(braced) = after.strip_prefix('{') {
            if let Some(end) = braced.find('}') {
                out.push_str(&var(&braced[..end]));
                let skip = braced[..end].chars().count() + 2;
                for _ in 0..skip {
                    chars.next();
                }
                continue;
            }
        }
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            out.push('$');
            continue;
        }
        out.push_str(&var(&name));
        for _ in 0..name.len() {
            chars.next();
        }
    }
    out
}

fuzz_target!(|input: Input<'_>| match input {
    Input::Path(path) => check_path(path),
    Input::Segments(segments) => {
        let wanted: Vec<&String> = segments
            .iter()
            .filter(|s| !matches!(s.as_str(), "" | "." | ".."))
            .filter(|s| !s.contains(['\0', '\\', '/']))
            .collect();
        let path: String = wanted
            .iter()
            .map(|s| format!("/{}", encode_segment(s)))
            .collect();
        check_path(&path);
        let expected: PathBuf = wanted.iter().map(|s| s.as_str()).collect();
        assert_eq!(safe_relative_path(&path), Some(expected), "{path:?}");
        let escaping = format!("{path}/%2e%2E/x");
        assert_eq!(safe_relative_path(&escaping), None, "{escaping:?}");
    }
    Input::Range(value, len) => check_range(value, len),
    Input::BuiltRange { first, last, len } => {
        let value = format!(
            "bytes={}-{}",
            first.map(|n| n.to_string()).unwrap_or_default(),
            last.map(|n| n.to_string()).unwrap_or_default()
        );
        check_range(&value, len);
        let got = parse_range(&value, len);
        let want = match (first, last) {
            (Some(f), _) if f >= len => RangeSpec::Unsatisfiable,
            (Some(f), Some(l)) if l < f => RangeSpec::Ignored,
            (Some(f), l) => RangeSpec::Satisfiable(f, l.unwrap_or(u64::MAX).min(len - 1)),
            (None, Some(0)) => RangeSpec::Unsatisfiable,
            (None, Some(_)) if len == 0 => RangeSpec::Unsatisfiable,
            (None, Some(n)) => RangeSpec::Satisfiable(len - n.min(len), len - 1),
            (None, None) => RangeSpec::Ignored,
        };
        assert_eq!(got, want, "{value:?} of {len}");
    }
    Input::Template {
        template,
        uri,
        host,
        https,
    } => {
        let Ok(uri) = uri.parse::<Uri>() else {
            return;
        };
        let scheme = if https { "https" } else { "http" };
        let got = expand_template(template, &uri, host, scheme, &Captures::default());
        if !template.contains('$') {
            assert_eq!(got, template);
        }
        let mut buf = [0u8; MAX_HOST_LEN + 8];
        let normal_host = normalize_host(host, &mut buf)
            .unwrap_or_default()
            .to_owned();
        let var = |name: &str| -> String {
            match name {
                "host" => normal_host.clone(),
                "path" => uri.path().to_owned(),
                "query" => uri.query().unwrap_or_default().to_owned(),
                "request_uri" => uri
                    .path_and_query()
                    .map_or("/".to_owned(), |p| p.as_str().to_owned()),
                "scheme" => scheme.to_owned(),
                _ => String::new(),
            }
        };
        assert_eq!(got, reference_expand(template, &var), "{template:?}");
    }
});
