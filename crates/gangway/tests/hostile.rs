//! Hostile and malformed requests over raw sockets: each gets a clear 4xx
//! (or a closed connection), and gangway keeps serving everyone else.

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::*;
use gangway_testkit::{Gangway, TempDir};
use std::io::{Read, Write};
use std::net::TcpStream;

fn start_app(dir: &TempDir, b: &Backend) -> Gangway {
    start_config(
        dir,
        &format!(
            "[[pools]]\nname = \"p\"\ntargets = [\"{}\"]\n\n[[routes]]\nname = \"r\"\nhosts = [\"a.test\"]\npool = \"p\"\n",
            b.target()
        ),
    )
}

/// Sends raw bytes and returns everything read until the server closes or
/// goes quiet.
fn raw(g: &Gangway, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", g.http_port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && !request.starts_with(b"POST") {
                    // One response head (and short body) is enough.
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    if let Ok(n) = s.read(&mut buf) {
                        out.extend_from_slice(&buf[..n]);
                    }
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status(response: &str) -> &str {
    response.split_whitespace().nth(1).unwrap_or("none")
}

#[test]
fn host_attacks_are_refused() {
    let dir = TempDir::new();
    let b = Backend::start("b");
    let g = start_app(&dir, &b);

    // RFC 9112 §3.2: more than one Host line.
    let r = raw(
        &g,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&r), "400", "{r}");
    assert!(r.contains("more than one Host header"), "{r}");

    // RFC 9112 §3.2: HTTP/1.1 without Host.
    let r = raw(&g, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(status(&r), "400", "{r}");

    // RFC 9112 §3.2.2: an absolute-form target decides; a Host naming
    // another host is refused rather than routed by one name and seen by
    // the backend under another.
    let r = raw(
        &g,
        b"GET http://a.test/x HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&r), "400", "{r}");
    assert!(r.contains("disagrees"), "{r}");
    let r = raw(
        &g,
        b"GET http://a.test/x HTTP/1.1\r\nHost: A.test:80\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&r), "200", "{r}");

    // An invalid Host value.
    let r = raw(
        &g,
        b"GET / HTTP/1.1\r\nHost: a.test\xff\r\nConnection: close\r\n\r\n",
    );
    assert!(status(&r).starts_with('4') || r.is_empty(), "{r}");

    // The refusals are logged with their reason.
    assert!(g
        .wait_for_message(
            "request refused",
            |v| v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("more than one Host")),
            WAIT
        )
        .is_some());
    // And everyone else is still served.
    assert_eq!(g.get("a.test", "/").status, 200);
}

#[test]
fn oversized_and_ambiguous_requests_are_refused() {
    let dir = TempDir::new();
    let b = Backend::start("b");
    let g = start_app(&dir, &b);

    // A request head over 64 KiB: 431, or the connection is closed.
    let mut big = b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 70 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let r = raw(&g, &big);
    assert!(
        r.is_empty() || status(&r) == "431",
        "{}",
        &r[..r.len().min(200)]
    );

    // RFC 9112 §6.3: Content-Length with Transfer-Encoding is ambiguous;
    // whatever gangway does, the backend never sees both.
    let r = raw(
        &g,
        b"POST /smuggle HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a.test\r\n\r\n",
    );
    assert!(
        !r.contains("\"/admin\""),
        "a smuggled request reached the backend: {r}"
    );
    if status(&r) == "200" {
        let json_start = r.find('{').unwrap();
        let v: serde_json::Value =
            serde_json::from_str(r[json_start..].lines().next().unwrap()).unwrap();
        let names: Vec<&str> = v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h[0].as_str().unwrap())
            .collect();
        assert!(
            !(names.contains(&"content-length") && names.contains(&"transfer-encoding")),
            "{names:?}"
        );
    } else {
        assert!(status(&r).starts_with('4') || r.is_empty(), "{r}");
    }

    // Conflicting Content-Length values (RFC 9112 §6.3 item 5).
    let r = raw(
        &g,
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
    );
    assert!(status(&r).starts_with('4') || r.is_empty(), "{r}");

    assert_eq!(g.get("a.test", "/").status, 200, "still serving");
}
