//! HTTP/1.1 `Upgrade` (WebSocket) through gangway: the handshake reaches
//! the backend with its `Upgrade` and `Connection` headers, the 101 comes
//! back, and then bytes flow both ways untouched until a side closes.

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::*;
use gangway_testkit::TempDir;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

/// Reads an HTTP response head (up to the blank line).
fn read_head(stream: &mut TcpStream) -> String {
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

#[test]
fn a_websocket_handshake_and_its_bytes_cross_the_proxy() {
    let dir = TempDir::new();
    let b = Backend::start("ws");
    let g = start_config(
        &dir,
        &format!(
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
        ),
    );

    let mut s = TcpStream::connect(("127.0.0.1", g.http_port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(
        b"GET /socket HTTP/1.1\r\nHost: chat.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(lower.contains("connection: upgrade"), "{head}");
    assert!(lower.contains("x-backend: ws"), "{head}");

    // Frames are bytes to gangway: a masked text frame, a binary frame with
    // every byte value, a ping; each comes back exactly.
    let text_frame: &[u8] = &[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let binary: Vec<u8> = (0..=255u8).collect();
    let ping: &[u8] = &[0x89, 0x80, 1, 2, 3, 4];
    for message in [text_frame, &binary, ping] {
        s.write_all(message).unwrap();
        let mut echoed = vec![0u8; message.len()];
        s.read_exact(&mut echoed).unwrap();
        assert_eq!(echoed, message);
    }
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
