//! Container labels → routes (`gangway_docker::labels::parse_labels`).
//!
//! Labels are built from the input with a bias towards real keys and
//! values so that the fuzzer reaches every key's parser, not only the
//! "unknown label" error. Checked besides "no panic":
//! - an error names a label that exists, with that label's value;
//! - no label under the prefix ⇔ `Ok(empty)`;
//! - every route has at least one host, each a valid, lower-case,
//!   normalised pattern, without duplicates; ports are 1..=65535, weights
//!   1..=1000, methods non-empty upper-case ASCII, path prefixes start
//!   with '/', header names lower case;
//! - one route per distinct route name, the plain route first, and no
//!   route name is empty (`<prefix>.port` is no second `<prefix>port`);
//! - the result does not depend on the map's iteration order.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use gangway_docker::labels::parse_labels;
use gangway_model::{validate_host_pattern, PathMatch};
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeSet, HashMap};

const PREFIX: &str = "reverse-proxy.";

const KEYS: &[&str] = &[
    "host",
    "route-while-starting",
    "weight",
    "balance",
    "hash-on",
    "port",
    "path",
    "path-regex",
    "strip-prefix",
    "priority",
    "methods",
    "redirect-to-https",
    "header.X-Env",
    "header.",
    "hots",
];

const VALUES: &[&str] = &[
    "a.test",
    "A.Test, b.test,,a.test.",
    "*.example.com",
    "::1",
    "80",
    "0",
    "65536",
    "/api/",
    "/",
    "^/v[0-9]+/",
    "(",
    "true",
    "false",
    "get, post",
    "hash",
    "round_robin",
    "least_conn",
    "header:x-user",
    "cookie:session",
    "30s",
    "1000",
    "-5",
    "",
];

#[derive(Debug)]
struct Label(String, String);

impl<'a> Arbitrary<'a> for Label {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut key = String::new();
        match u.int_in_range(0..=9)? {
            0 => {}
            1 => key.push_str("traefik."),
            _ => key.push_str(PREFIX),
        }
        if u.ratio(1, 3)? {
            let name: String = u.arbitrary()?;
            key.push_str(if name.is_empty() && u.ratio(3, 4)? {
                "admin"
            } else {
                &name
            });
            key.push('.');
        }
        if u.ratio(4, 5)? {
            key.push_str(u.choose(KEYS)?);
        } else {
            key.push_str(u.arbitrary()?);
        }
        let value = if u.ratio(2, 3)? {
            (*u.choose(VALUES)?).to_owned()
        } else {
            u.arbitrary()?
        };
        Ok(Label(key, value))
    }
}

fuzz_target!(|input: Vec<Label>| {
    let labels: HashMap<String, String> = input.into_iter().map(|l| (l.0, l.1)).collect();
    let result = parse_labels(&labels, PREFIX);

    // The same labels inserted in another order give the same answer.
    let mut reversed: Vec<(&String, &String)> = labels.iter().collect();
    reversed.reverse();
    let again: HashMap<String, String> = reversed
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(parse_labels(&again, PREFIX), result);

    let ours = labels.keys().any(|k| k.starts_with(PREFIX));
    match result {
        Err(e) => {
            assert!(ours, "an error for a container without our labels: {e}");
            assert_eq!(
                labels.get(e.label()),
                Some(&e.value),
                "the error names a label that is not there: {e}"
            );
        }
        Ok(routes) => {
            assert_eq!(routes.is_empty(), !ours);
            // `<prefix>.port` is no second spelling of `<prefix>port`.
            assert!(
                !labels.keys().any(|k| k.starts_with(&format!("{PREFIX}."))),
                "an empty route name was accepted"
            );
            let names: BTreeSet<Option<&str>> = routes.iter().map(|r| r.name.as_deref()).collect();
            assert_eq!(names.len(), routes.len(), "two routes share a name");
            if routes.iter().any(|r| r.name.is_none()) {
                assert_eq!(routes[0].name, None, "the plain route comes first");
            }
            for r in &routes {
                assert!(!r.hosts.is_empty());
                for (i, h) in r.hosts.iter().enumerate() {
                    assert_eq!(validate_host_pattern(h).as_deref(), Ok(h.as_str()));
                    assert!(!r.hosts[..i].contains(h), "duplicate host {h}");
                }
                if let Some(name) = &r.name {
                    assert!(!name.is_empty());
                    assert!(name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
                }
                assert!(r.port > 0);
                assert!((1..=1000).contains(&r.weight));
                for m in &r.methods {
                    assert!(!m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()));
                }
                match &r.path {
                    Some(PathMatch::Prefix(p) | PathMatch::Exact(p)) => {
                        assert!(p.starts_with('/'), "{p:?}")
                    }
                    // parse_labels compiled a regex already.
                    Some(PathMatch::Regex(_)) | None => {}
                }
                if let Some(p) = &r.strip_prefix {
                    // `strip-prefix=/` leaves "", which strips nothing.
                    assert!(
                        p.is_empty() || p == "/" || (p.starts_with('/') && !p.ends_with('/')),
                        "{p:?}"
                    );
                }
                for h in &r.headers {
                    assert!(!h.name.is_empty());
                    assert_eq!(h.name, h.name.to_ascii_lowercase());
                }
            }
        }
    }
});
