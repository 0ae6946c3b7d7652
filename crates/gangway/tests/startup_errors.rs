//! Bad settings stop start-up with exit code 2 and one message naming the
//! variable, the value and what is expected, before any port is bound.

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::*;
use gangway_testkit::{make_cert, Gangway, GangwayBuilder, TempDir};
use std::net::TcpListener;
use std::time::Duration;

/// Runs gangway with `env` while the test itself holds its HTTP and HTTPS
/// ports: if gangway bound a port before checking its settings, it would
/// fail on the taken port instead of the bad setting.
fn run_bad(builder: GangwayBuilder) -> (Gangway, std::process::ExitStatus) {
    let _http = TcpListener::bind(("127.0.0.1", builder.http_port())).unwrap();
    let _https = TcpListener::bind(("127.0.0.1", builder.https_port())).unwrap();
    let _admin = TcpListener::bind(("127.0.0.1", builder.control_port())).unwrap();
    let mut g = builder.spawn();
    let status = g
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("gangway did not exit on a bad setting:\n{}", g.output()));
    (g, status)
}

fn assert_rejected(builder: GangwayBuilder, variable: &str, value: &str) {
    let (g, status) = run_bad(builder);
    let stderr = g.stderr_lines().join("\n");
    assert_eq!(
        status.code(),
        Some(2),
        "{variable}={value:?}: exit status {status:?}\n{}",
        g.output()
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{variable}={value:?}: expected one message on stderr, got:\n{stderr}"
    );
    let msg = lines[0];
    assert!(
        msg.contains(variable),
        "message does not name {variable}: {msg}"
    );
    assert!(
        msg.contains(value),
        "message does not show the value {value:?}: {msg}"
    );
    assert!(
        ["expected", "must", "required", "does not match"]
            .iter()
            .any(|w| msg.contains(w)),
        "message does not say what is expected: {msg}"
    );
    assert!(
        !msg.contains("in use"),
        "a port was bound before the setting was checked: {msg}"
    );
    assert!(
        g.messages("gangway started").is_empty(),
        "it started: {}",
        g.output()
    );
}

fn builder() -> GangwayBuilder {
    GangwayBuilder::new(GANGWAY).network("gwtest-unused")
}

#[test]
fn bad_ports_and_flags() {
    assert_rejected(builder().env("HTTP_PORT", "abc"), "HTTP_PORT", "abc");
    assert_rejected(builder().env("HTTP_PORT", "70000"), "HTTP_PORT", "70000");
    assert_rejected(
        builder()
            .env("HTTPS_ENABLED", "true")
            .env("HTTPS_PORT", "-1"),
        "HTTPS_PORT",
        "-1",
    );
    assert_rejected(
        builder().env("HTTPS_ENABLED", "maybe"),
        "HTTPS_ENABLED",
        "maybe",
    );
    assert_rejected(builder().env("LOG_FORMAT", "xml"), "LOG_FORMAT", "xml");
    assert_rejected(
        builder().env("CONTROL_PLANE_ADDR", "not-an-address"),
        "CONTROL_PLANE_ADDR",
        "not-an-address",
    );
    // Flags are checked the same way.
    assert_rejected(builder().arg("--http-port=abc"), "HTTP_PORT", "abc");
}

#[test]
fn https_without_cert_path() {
    assert_rejected(
        builder()
            .env("HTTPS_ENABLED", "true")
            .env_remove("TLS_CERT_PATH"),
        "TLS_CERT_PATH",
        "",
    );
}

#[test]
fn https_without_key_path() {
    let dir = TempDir::new();
    let (cert, key) = make_cert(dir.path(), "h1.test");
    assert_rejected(
        builder().https(&cert, &key).env_remove("TLS_KEY_PATH"),
        "TLS_KEY_PATH",
        "",
    );
}

#[test]
fn https_cert_file_missing() {
    let dir = TempDir::new();
    let (_, key) = make_cert(dir.path(), "h1.test");
    let missing = dir.join("missing.pem");
    let missing = missing.to_string_lossy();
    assert_rejected(builder().https(&*missing, &key), "TLS_CERT_PATH", &missing);
}

#[test]
fn https_cert_not_pem() {
    let dir = TempDir::new();
    let (_, key) = make_cert(dir.path(), "h1.test");
    let not_pem = dir.join("not-pem.pem");
    std::fs::write(&not_pem, "hello, not a certificate\n").unwrap();
    assert_rejected(
        builder().https(&not_pem, &key),
        "TLS_CERT_PATH",
        &not_pem.to_string_lossy(),
    );
    // A key file where the certificate should be.
    assert_rejected(
        builder().https(&key, &key),
        "TLS_CERT_PATH",
        &key.to_string_lossy(),
    );
}

#[test]
fn https_key_not_pem() {
    let dir = TempDir::new();
    let (cert, _) = make_cert(dir.path(), "h1.test");
    let not_pem = dir.join("not-pem.pem");
    std::fs::write(&not_pem, "hello, not a key\n").unwrap();
    assert_rejected(
        builder().https(&cert, &not_pem),
        "TLS_KEY_PATH",
        &not_pem.to_string_lossy(),
    );
}

#[test]
fn https_key_does_not_match_cert() {
    let dir = TempDir::new();
    let (cert, _) = make_cert(dir.path(), "h1.test");
    let other_dir = TempDir::new();
    let (_, other_key) = make_cert(other_dir.path(), "h1.test");
    assert_rejected(
        builder().https(&cert, &other_key),
        "TLS_KEY_PATH",
        &other_key.to_string_lossy(),
    );
}

#[test]
fn a_taken_port_is_reported_by_name() {
    // The control for run_bad: with good settings and the port taken,
    // gangway fails on the port (not with exit code 2).
    let b = builder();
    let (g, status) = run_bad(b.clone());
    assert!(!status.success(), "{}", g.output());
    assert_ne!(status.code(), Some(2), "{}", g.output());
    let stderr = g.stderr_lines().join("\n");
    assert!(
        stderr.contains("HTTP_PORT"),
        "the error does not name HTTP_PORT:\n{}",
        g.output()
    );
    // And with the ports free, the same settings start.
    let mut ok = b.spawn();
    assert!(
        ok.wait_for_message("gangway started", |_| true, WAIT)
            .is_some(),
        "{}",
        ok.output()
    );
    assert!(ok.wait_exit(Duration::from_millis(200)).is_none());
}
