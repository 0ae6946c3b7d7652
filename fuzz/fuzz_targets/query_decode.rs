//! `gangway_router::decode_query_component`: percent-decoding of a query
//! name or value, `+` as a space, invalid escapes kept as they are.
//!
//! Checked besides "no panic":
//! - text without `%` or `+` comes back borrowed and unchanged;
//! - any string, percent-encoded (spaces as `+` or `%20`, upper- or
//!   lower-case hex), decodes back to itself;
//! - the result equals an independent reference decoder's on any input.

#![no_main]

use arbitrary::Arbitrary;
use gangway_router::decode_query_component;
use libfuzzer_sys::fuzz_target;
use std::borrow::Cow;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    text: &'a str,
    plus_for_space: bool,
    lower_hex: bool,
}

fn encode(s: &str, plus_for_space: bool, lower_hex: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            b' ' if plus_for_space => out.push('+'),
            _ if lower_hex => out.push_str(&format!("%{b:02x}")),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Written from the documentation, not from the code.
fn reference(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
            out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fuzz_target!(|input: Input<'_>| {
    let decoded = decode_query_component(input.text);
    if !input.text.contains(['%', '+']) {
        assert!(matches!(decoded, Cow::Borrowed(_)));
        assert_eq!(decoded, input.text);
    }
    assert_eq!(decoded, reference(input.text), "{:?}", input.text);

    let encoded = encode(input.text, input.plus_for_space, input.lower_hex);
    assert_eq!(
        decode_query_component(&encoded),
        input.text,
        "{:?} encoded as {encoded:?}",
        input.text
    );
});
