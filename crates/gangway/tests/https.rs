//! HTTPS with a certificate made at test time: HTTP/2 and HTTP/1.1 over
//! TLS, X-Forwarded-Proto, a failed handshake logged, and the post-quantum
//! hybrid key exchange.

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::*;
use gangway_testkit::{curl, make_cert, Network, TempDir};
use rustls::crypto::aws_lc_rs::kx_group::{X25519, X25519MLKEM768};
use rustls::NamedGroup;
use std::io::{Read, Write};

#[test]
fn https_serves_http2_and_http1_with_the_configured_certificate() {
    let dir = TempDir::new();
    let (cert, key) = make_cert(dir.path(), "h1.test");
    let net = Network::create();
    let b = backend(&net, "h1.test").start();
    let g = start(gangway(&net).https(&cert, &key));
    wait_routed_to(&g, "h1.test", b.name());

    let started = g
        .wait_for_message("gangway started", |_| true, WAIT)
        .unwrap_or_else(|| panic!("no start line:\n{}", g.output()));
    assert_eq!(started["https_enabled"], true, "{started}");

    let port = g.https_port;
    let resolve = format!("h1.test:{port}:127.0.0.1");
    let url = format!("https://h1.test:{port}/tls?x=1");
    let cacert = cert.to_string_lossy().into_owned();

    let r = curl(["--http2", "--cacert", &cacert, "--resolve", &resolve, &url]);
    assert_eq!(r.exit_code, 0, "{r:#?}\n{}", g.output());
    assert_eq!(r.version, "HTTP/2", "{r:#?}");
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("x-backend"), Some(b.name()));
    assert_eq!(r.json()["uri"], "/tls?x=1");
    assert_eq!(
        r.backend_header("x-forwarded-proto").as_deref(),
        Some("https"),
        "{:?}",
        r.backend_headers()
    );
    assert_eq!(r.backend_header("x-real-ip").as_deref(), Some("127.0.0.1"));
    let fwd_host = r.backend_header("x-forwarded-host").unwrap_or_default();
    assert!(
        fwd_host == "h1.test" || fwd_host == format!("h1.test:{port}"),
        "x-forwarded-host {fwd_host:?}"
    );

    let r = curl([
        "--http1.1",
        "--cacert",
        &cacert,
        "--resolve",
        &resolve,
        &url,
    ]);
    assert_eq!(r.exit_code, 0, "{r:#?}");
    assert_eq!(r.version, "HTTP/1.1", "{r:#?}");
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("x-backend"), Some(b.name()));
    assert_eq!(
        r.backend_header("x-forwarded-proto").as_deref(),
        Some("https")
    );

    // Unknown host over TLS: still answered (404) by the proxy.
    let other = format!("other.test:{port}:127.0.0.1");
    let r = curl([
        "--http2",
        "-k",
        "--resolve",
        &other,
        &format!("https://other.test:{port}/"),
    ]);
    assert_eq!(r.status, 404, "{r:#?}");

    // The HTTP port still serves plain HTTP, with X-Forwarded-Proto http.
    let r = g.get("h1.test", "/");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.backend_header("x-forwarded-proto").as_deref(),
        Some("http")
    );

    // The access log line of an HTTPS request.
    assert!(
        g.wait_for_message(
            "request",
            |v| v["path"].as_str().is_some_and(|p| p.starts_with("/tls")),
            WAIT
        )
        .is_some(),
        "no access log line for the HTTPS request:\n{}",
        g.output()
    );
}

#[test]
fn plain_http_to_the_https_port_fails_the_handshake_and_is_logged() {
    let dir = TempDir::new();
    let (cert, key) = make_cert(dir.path(), "h1.test");
    let net = Network::create();
    let _b = backend(&net, "h1.test").start();
    let g = start(gangway(&net).https(&cert, &key));

    let r = curl([
        "-H",
        "Host: h1.test",
        &format!("http://127.0.0.1:{}/", g.https_port),
    ]);
    assert_ne!(
        r.status, 200,
        "plain HTTP was served on the HTTPS port: {r:#?}"
    );
    assert!(r.header("x-backend").is_none(), "{r:#?}");

    let line = g
        .wait_for_json(
            |v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("tls handshake failed"))
            },
            WAIT,
        )
        .unwrap_or_else(|| panic!("no \"tls handshake failed\" line:\n{}", g.output()));
    assert!(line["level"].is_string(), "{line}");

    // A client that does not trust the certificate fails too.
    let r = curl([
        "--resolve",
        &format!("h1.test:{}:127.0.0.1", g.https_port),
        &format!("https://h1.test:{}/", g.https_port),
    ]);
    assert_ne!(
        r.exit_code, 0,
        "an untrusted certificate was accepted: {r:#?}"
    );
    // gangway keeps serving after failed handshakes.
    assert_eq!(g.get("h1.test", "/").status, 200);
}

#[test]
fn the_key_exchange_is_the_post_quantum_hybrid_when_the_client_offers_it() {
    let dir = TempDir::new();
    let (cert, key) = make_cert(dir.path(), "pq.test");
    let g = start_config_https(
        &dir,
        "[[routes]]\nname = \"hello\"\nhosts = [\"pq.test\"]\nrespond = { body = \"hello\\n\" }\n",
        &cert,
        &key,
    );

    // Offered first, as current browsers offer it, X25519MLKEM768 is
    // chosen; a client that has only X25519 (OpenSSL 3.0's clients) still
    // gets its answer.
    for (offered, chosen) in [
        (&[X25519MLKEM768, X25519][..], NamedGroup::X25519MLKEM768),
        (&[X25519][..], NamedGroup::X25519),
    ] {
        let mut tls = common::tls::connect(&cert, offered, "pq.test", g.https_port);
        tls.write_all(b"GET / HTTP/1.1\r\nHost: pq.test\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        while !answer.ends_with(b"hello\n") {
            let n = tls.read(&mut chunk).unwrap();
            assert_ne!(n, 0, "closed early: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        let group = tls.conn.negotiated_key_exchange_group().map(|g| g.name());
        assert_eq!(group, Some(chosen), "offered {offered:?}");
    }
}
