//! HTTP/1.1 `Upgrade` (WebSocket) through gangway: the handshake reaches
//! the backend with its `Upgrade` and `Connection` headers, the 101 comes
//! back, and then bytes flow both ways untouched until a side closes.

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::*;
use gangway_testkit::{make_cert, TempDir};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

/// Reads an HTTP response head (up to the blank line).
fn read_head(stream: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).unwrap();
        assert_eq!(
            n,
            1,
            "connection closed in the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

const HANDSHAKE: &[u8] =
    b"GET /socket HTTP/1.1\r\nHost: chat.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Frames are bytes to gangway: a masked text frame, a binary frame with
/// every byte value, a ping; each must come back exactly.
fn echo_frames(s: &mut (impl Read + Write)) {
    let text_frame: &[u8] = &[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let binary: Vec<u8> = (0..=255u8).collect();
    let ping: &[u8] = &[0x89, 0x80, 1, 2, 3, 4];
    for message in [text_frame, &binary, ping] {
        s.write_all(message).unwrap();
        s.flush().unwrap();
        let mut echoed = vec![0u8; message.len()];
        s.read_exact(&mut echoed).unwrap();
        assert_eq!(echoed, message);
    }
}

fn chat_config(b: &Backend) -> String {
    format!(
        r#"
[[pools]]
name = "ws"
targets = ["{}"]

[[routes]]
name = "chat"
hosts = ["chat.test"]
websocket = true
pool = "ws"

[[routes]]
name = "plain"
hosts = ["chat.test"]
respond = {{ body = "not a websocket\n" }}
"#,
        b.target()
    )
}

#[test]
fn a_websocket_crosses_the_https_listener_too() {
    let dir = TempDir::new();
    let (cert, key) = make_cert(dir.path(), "chat.test");
    let b = Backend::start("ws");
    let g = start_config_https(&dir, &chat_config(&b), &cert, &key);

    // A TLS client that trusts exactly the test certificate, HTTP/1.1 by
    // ALPN.
    let mut tls = common::tls::connect(&cert, &[], "chat.test", g.https_port);

    tls.write_all(HANDSHAKE).unwrap();
    let head = read_head(&mut tls);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    echo_frames(&mut tls);
}

#[test]
fn a_websocket_handshake_and_its_bytes_cross_the_proxy() {
    let dir = TempDir::new();
    let b = Backend::start("ws");
    let g = start_config(&dir, &chat_config(&b));

    let mut s = TcpStream::connect(("127.0.0.1", g.http_port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(HANDSHAKE).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(lower.contains("connection: upgrade"), "{head}");
    assert!(lower.contains("x-backend: ws"), "{head}");

    echo_frames(&mut s);
    // The client closes its side: the tunnel closes the backend's, whose
    // echo ends, and the connection ends.
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");

    // The same host without an upgrade takes the other route.
    let r = g.get("chat.test", "/socket");
    assert_eq!(r.body, "not a websocket\n");
}

#[test]
fn an_h2c_upgrade_is_not_tunnelled_past_routing() {
    let dir = TempDir::new();
    let b = Backend::start("ws");
    let g = start_config(
        &dir,
        &format!(
            "[[pools]]\nname = \"p\"\ntargets = [\"{}\"]\n\n[[routes]]\nname = \"r\"\nhosts = [\"chat.test\"]\npool = \"p\"\n",
            b.target()
        ),
    );
    let mut s = TcpStream::connect(("127.0.0.1", g.http_port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(
        b"GET /x HTTP/1.1\r\nHost: chat.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    let names: Vec<&str> = v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"upgrade"), "{names:?}");
    assert!(!names.contains(&"http2-settings"), "{names:?}");
}
