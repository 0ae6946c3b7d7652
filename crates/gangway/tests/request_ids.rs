//! `X-Request-Id` (made up when absent, kept when usable, returned and
//! logged) and `Via` (RFC 9110 §7.6.3) on forwarded messages.

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::*;
use gangway_testkit::{curl, TempDir};

#[test]
fn request_ids_and_via() {
    let dir = TempDir::new();
    let b = Backend::start("b");
    let g = start_config(
        &dir,
        &format!(
            "[[pools]]\nname = \"p\"\ntargets = [\"{}\"]\n\n[[routes]]\nname = \"r\"\nhosts = [\"id.test\"]\npool = \"p\"\n",
            b.target()
        ),
    );
    let url = format!("http://127.0.0.1:{}/", g.http_port);

    // None sent: one is made up, reaches the backend, comes back, is logged.
    let r = curl(["-H", "Host: id.test", url.as_str()]);
    let id = r.header("x-request-id").unwrap().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
    assert_eq!(
        r.backend_header("x-request-id").as_deref(),
        Some(id.as_str())
    );
    assert!(
        g.wait_for_message("request", |v| v["request_id"] == id.as_str(), WAIT)
            .is_some(),
        "{}",
        g.output()
    );
    let other = curl(["-H", "Host: id.test", url.as_str()]);
    assert_ne!(
        other.header("x-request-id"),
        Some(id.as_str()),
        "ids repeat"
    );

    // One sent: kept.
    let r = curl([
        "-H",
        "Host: id.test",
        "-H",
        "X-Request-Id: order-42",
        url.as_str(),
    ]);
    assert_eq!(
        r.backend_header("x-request-id").as_deref(),
        Some("order-42")
    );
    assert_eq!(r.header("x-request-id"), Some("order-42"));

    // Kept as one line: a second, unchecked id does not ride along, and
    // naming it in Connection does not drop it on the way.
    let r = curl([
        "-H",
        "Host: id.test",
        "-H",
        "X-Request-Id: order-43",
        "-H",
        "X-Request-Id: not checked",
        "-H",
        "Connection: x-request-id",
        url.as_str(),
    ]);
    let ids: Vec<String> = r
        .backend_headers()
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("x-request-id"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(ids, ["order-43"]);
    assert_eq!(r.header("x-request-id"), Some("order-43"));

    // An unusable one (too long, or with spaces) is replaced.
    let long = format!("X-Request-Id: {}", "x".repeat(300));
    let r = curl(["-H", "Host: id.test", "-H", long.as_str(), url.as_str()]);
    assert_eq!(r.backend_header("x-request-id").unwrap().len(), 32);
    let r = curl([
        "-H",
        "Host: id.test",
        "-H",
        "X-Request-Id: a b",
        url.as_str(),
    ]);
    assert_eq!(r.backend_header("x-request-id").unwrap().len(), 32);

    // Via both ways; gangway's own answers carry an id too.
    let r = curl(["-H", "Host: id.test", url.as_str()]);
    assert_eq!(r.backend_header("via").as_deref(), Some("1.1 gangway"));
    assert_eq!(r.header("via"), Some("1.1 gangway"));
    let miss = g.get("nowhere.test", "/");
    assert_eq!(miss.status, 404);
    assert_eq!(miss.header("x-request-id").map(str::len), Some(32));
}
