//! The test backend, run as a process on the host.

#![allow(clippy::unwrap_used)]

use gangway_testkit::{curl, free_port, get, Gangway};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

const BACKEND: &str = env!("CARGO_BIN_EXE_gangway-test-backend");

fn start(name: &str) -> (Gangway, u16) {
    let port = free_port();
    let p = Gangway::spawn_with_args(
        BACKEND,
        &["--port", &port.to_string()],
        &[("BACKEND_NAME", name)],
    );
    p.wait_for_line(|l| l.starts_with("listening on"), Duration::from_secs(10))
        .unwrap_or_else(|| panic!("backend did not start: {}", p.output()));
    (p, port)
}

#[test]
fn describes_the_request() {
    let (_b, port) = start("b1");
    let r = curl([
        "-H".to_string(),
        "Host: h1.test".into(),
        "-H".into(),
        "X-A: 1".into(),
        "-H".into(),
        "X-A: 2".into(),
        "--data-binary".into(),
        "hello".into(),
        format!("http://127.0.0.1:{port}/p?q=1"),
    ]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-backend"), Some("b1"));
    let v = r.json();
    assert_eq!(v["name"], "b1");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["uri"], "/p?q=1");
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["body_bytes"], 5);
    let h = r.backend_headers();
    assert_eq!(h[0], ("host".to_string(), "h1.test".to_string()));
    let xa: Vec<_> = h
        .iter()
        .filter(|(k, _)| k == "x-a")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(xa, ["1", "2"]);
}

#[test]
fn answers_on_ipv6_too() {
    let (_b, port) = start("b6");
    let r = curl([format!("http://[::1]:{port}/")]);
    // Skip quietly on a host without IPv6 loopback.
    if r.exit_code == 0 {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-backend"), Some("b6"));
    }
}

#[test]
fn status_and_hop_paths() {
    let (_b, port) = start("b1");
    assert_eq!(get(port, "x", "/status/503").status, 503);
    assert_eq!(get(port, "x", "/status/418").status, 418);
    assert_eq!(get(port, "x", "/status/204").status, 204);
    assert_eq!(get(port, "x", "/status/abc").status, 400);
    let r = get(port, "x", "/hop");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("x-hop-secret"));
    assert_eq!(r.header("x-hop-secret"), Some("1"));
    assert_eq!(r.header("keep-alive"), Some("timeout=5"));
    assert_eq!(r.header("x-end-to-end"), Some("kept"));
}

#[test]
fn streams_without_buffering() {
    let (_b, port) = start("b1");
    // The second chunk comes a minute after the first: reading the first
    // within the time-out proves the response is not buffered.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /stream?chunks=2&delay_ms=60000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let mut size = String::new();
    r.read_line(&mut size).unwrap();
    let mut chunk = String::new();
    r.read_line(&mut chunk).unwrap();
    assert_eq!(chunk, "chunk 0\n");

    let r = get(port, "x", "/stream?chunks=3&delay_ms=10");
    assert_eq!(r.body, "chunk 0\nchunk 1\nchunk 2\n");
}

#[test]
fn exits_on_sigterm_and_sigint() {
    for sig in ["-TERM", "-INT"] {
        let (mut b, _) = start("b1");
        std::process::Command::new("kill")
            .args([sig, &b.pid().to_string()])
            .status()
            .unwrap();
        let st = b
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("backend ignored {sig}"));
        assert!(st.success(), "{sig}: {st:?}");
    }
}

#[test]
fn rejects_bad_port() {
    let mut b = Gangway::spawn_with_args(BACKEND, &["--port", "abc"], &[] as &[(&str, &str)]);
    let st = b.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(st.code(), Some(2));
}
