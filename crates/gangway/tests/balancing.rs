//! The load-balancing policies through the binary, with real backend
//! processes on loopback: weights, least in flight and two random choices
//! with a slow backend, and sticky hashing on a header, a cookie and the
//! client address.

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::*;
use gangway_testkit::{curl, Gangway, TempDir};
use std::collections::BTreeMap;

fn start_pool(dir: &TempDir, targets: &str, pool_keys: &str) -> Gangway {
    start_config(
        dir,
        &format!(
            r#"
[[pools]]
name = "app"
targets = [{targets}]
{pool_keys}

[[routes]]
name = "app"
hosts = ["app.test"]
pool = "app"
"#
        ),
    )
}

fn backend_of(g: &Gangway, extra: &[&str]) -> String {
    let url = format!("http://127.0.0.1:{}/", g.http_port);
    let mut args: Vec<&str> = vec!["-H", "Host: app.test"];
    args.extend_from_slice(extra);
    args.push(&url);
    let r = curl(args);
    assert_eq!(r.status, 200, "{r:#?}");
    r.header("x-backend").unwrap().to_owned()
}

/// `n` requests from `threads` concurrent clients; which backend answered.
fn concurrent_tally(g: &Gangway, threads: usize, n: usize) -> BTreeMap<String, usize> {
    let port = g.http_port;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                (0..n / threads)
                    .map(|_| {
                        let r = gangway_testkit::get(port, "app.test", "/");
                        r.header("x-backend").unwrap_or("error").to_owned()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut counts = BTreeMap::new();
    for h in handles {
        for name in h.join().unwrap() {
            *counts.entry(name).or_default() += 1;
        }
    }
    counts
}

#[test]
fn weights_split_the_load_exactly() {
    let dir = TempDir::new();
    let (a, b) = (Backend::start("heavy"), Backend::start("light"));
    let g = start_pool(
        &dir,
        &format!(
            r#"{{ addr = "{}", weight = 3 }}, "{}""#,
            a.target(),
            b.target()
        ),
        r#"balance = "weighted""#,
    );
    let mut counts = BTreeMap::new();
    for _ in 0..40 {
        *counts.entry(backend_of(&g, &[])).or_insert(0) += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([("heavy".to_owned(), 30), ("light".to_owned(), 10)])
    );
}

#[test]
fn a_slow_backend_under_each_policy() {
    let slow = Backend::start_with("slow", &[("BACKEND_DELAY_MS", "200")]);
    let fast1 = Backend::start("fast1");
    let fast2 = Backend::start("fast2");
    let targets = format!(
        "{:?}, {:?}, {:?}",
        slow.target(),
        fast1.target(),
        fast2.target()
    );
    for (policy, latency_aware) in [
        ("balance = \"round_robin\"", false),
        ("balance = \"weighted\"", false),
        ("balance = \"hash\"\nhash_on = \"header:X-User\"", false),
        ("balance = \"least_in_flight\"", true),
        ("balance = \"p2c\"", true),
    ] {
        let dir = TempDir::new();
        let g = start_pool(&dir, &targets, policy);
        let counts = concurrent_tally(&g, 6, 120);
        let total: usize = counts.values().sum();
        // Every request is answered, slow or not.
        assert_eq!(total, 120, "{policy}: {counts:?}");
        assert!(!counts.contains_key("error"), "{policy}: {counts:?}");
        let to_slow = counts.get("slow").copied().unwrap_or(0);
        if latency_aware {
            // Round robin would send it a third (40).
            assert!(
                to_slow < 20,
                "{policy}: {to_slow} of 120 went to the slow backend: {counts:?}"
            );
        } else {
            assert!(
                to_slow > 0,
                "{policy}: the slow backend got nothing: {counts:?}"
            );
        }
    }
}

#[test]
fn hashing_keeps_a_key_on_one_backend() {
    let backends: Vec<Backend> = (0..3).map(|i| Backend::start(&format!("h{i}"))).collect();
    let targets: Vec<String> = backends
        .iter()
        .map(|b| format!("{:?}", b.target()))
        .collect();
    let targets = targets.join(", ");

    let dir = TempDir::new();
    let g = start_pool(
        &dir,
        &targets,
        "balance = \"hash\"\nhash_on = \"header:X-User\"",
    );
    let mut owners = std::collections::BTreeSet::new();
    for user in ["ana", "bo", "chen", "dora", "eli", "fay", "gus", "hal"] {
        let header = format!("X-User: {user}");
        let first = backend_of(&g, &["-H", &header]);
        for _ in 0..5 {
            assert_eq!(backend_of(&g, &["-H", &header]), first, "user {user} moved");
        }
        owners.insert(first);
    }
    assert!(owners.len() > 1, "every user on one backend: {owners:?}");
    // Without the header: round robin over all.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        seen.insert(backend_of(&g, &[]));
    }
    assert_eq!(seen.len(), 3);

    let dir = TempDir::new();
    let g = start_pool(
        &dir,
        &targets,
        "balance = \"hash\"\nhash_on = \"cookie:session\"",
    );
    let first = backend_of(&g, &["-H", "Cookie: theme=dark; session=abc123"]);
    for _ in 0..5 {
        assert_eq!(backend_of(&g, &["-H", "Cookie: session=abc123"]), first);
    }

    let dir = TempDir::new();
    let g = start_pool(
        &dir,
        &targets,
        "balance = \"hash\"\nhash_on = \"client_ip\"",
    );
    let first = backend_of(&g, &[]);
    for _ in 0..5 {
        assert_eq!(backend_of(&g, &[]), first, "same client, same backend");
    }
}
