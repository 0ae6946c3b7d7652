//! Bodies through gangway as they really flow: Server-Sent Events event by
//! event, trailers, `Expect: 100-continue`, the RFC 7239 `Forwarded`
//! header, and 1 GiB each way with gangway's peak memory bounded.
//!
//! The backends here are small raw-socket servers in the test, so that
//! each one controls exactly when it sends what.
#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::{start, start_config, GANGWAY, NO_NETWORK};
use gangway_testkit::{GangwayBuilder, TempDir};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

const STEP: Duration = Duration::from_secs(10);

/// A backend that hands its first connection to `serve` in a thread.
fn backend_once(serve: impl FnOnce(TcpStream) + Send + 'static) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        stream.set_write_timeout(Some(STEP)).unwrap();
        serve(stream);
    });
    (port, handle)
}

fn config(port: u16) -> String {
    format!(
        "[[pools]]\nname = \"p\"\ntargets = [\"127.0.0.1:{port}\"]\n\n[[routes]]\nname = \"r\"\nhosts = [\"t.test\"]\npool = \"p\"\n"
    )
}

/// Reads a request head (up to the blank line) and returns it.
fn read_head(reader: &mut impl BufRead) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    head
}

fn client(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    s.set_write_timeout(Some(STEP)).unwrap();
    s
}

/// Reads until `needle` has arrived; panics (with what came) on timeout.
fn read_until(reader: &mut impl Read, seen: &mut Vec<u8>, needle: &[u8]) {
    let mut buf = [0u8; 4096];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => panic!(
                "{:?} never arrived; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(seen)
            ),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Server-Sent Events (seed 001's `proxy_buffering off`): the backend sends
/// each event only after the client has received the one before, so a
/// proxy that held back any part of the stream would stall this test
/// instead of passing it.
#[test]
fn server_sent_events_arrive_one_by_one() {
    const EVENTS: usize = 5;
    let (received_tx, received_rx) = mpsc::channel::<usize>();
    let (port, backend) = backend_once(move |stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let head = read_head(&mut reader);
        assert!(head.starts_with("GET /events"), "{head}");
        let mut out = stream;
        out.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
        for i in 0..EVENTS {
            let event = format!("id: {i}\ndata: event {i}\n\n");
            out.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes())
                .unwrap();
            out.flush().unwrap();
            // Lock step: the next event waits for the client's word.
            assert_eq!(
                received_rx.recv_timeout(STEP),
                Ok(i),
                "event {i} did not get through"
            );
        }
        out.write_all(b"0\r\n\r\n").unwrap();
    });
    let dir = TempDir::new();
    let g = start_config(&dir, &config(port));
    let mut c = client(g.http_port);
    c.write_all(b"GET /events HTTP/1.1\r\nHost: t.test\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    for i in 0..EVENTS {
        read_until(&mut c, &mut seen, format!("data: event {i}\n\n").as_bytes());
        received_tx.send(i).unwrap();
    }
    read_until(&mut c, &mut seen, b"0\r\n\r\n");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{text}"
    );
    backend.join().unwrap();
}

/// RFC 9112 §7.1.2 and RFC 9110 §6.5: trailer fields a backend sends after
/// a chunked body reach a client that asked for them with `TE: trailers`.
#[test]
fn trailers_are_forwarded() {
    let (port, backend) = backend_once(|stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let head = read_head(&mut reader).to_ascii_lowercase();
        // gangway says it takes trailers on its hop because its client did.
        assert!(head.contains("\r\nte: trailers\r\n"), "{head}");
        let mut out = stream;
        out.write_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: 5d41402a\r\n\r\n",
        )
        .unwrap();
    });
    let dir = TempDir::new();
    let g = start_config(&dir, &config(port));
    let mut c = client(g.http_port);
    c.write_all(b"GET /t HTTP/1.1\r\nHost: t.test\r\nTE: trailers\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    read_until(&mut c, &mut seen, b"\r\n\r\n");
    read_until(&mut c, &mut seen, b"x-checksum: 5d41402a\r\n");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("hello"), "{text}");
    backend.join().unwrap();
}

/// RFC 9110 §10.1.1: a client that sends `Expect: 100-continue` gets
/// `100 Continue` before it sends its body, and the body then reaches the
/// backend whole. gangway meets the expectation itself, so the backend is
/// not asked again.
#[test]
fn expect_100_continue_works() {
    let (port, backend) = backend_once(|stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let head = read_head(&mut reader).to_ascii_lowercase();
        assert!(!head.contains("expect:"), "{head}");
        let mut body = [0u8; 11];
        reader.read_exact(&mut body).unwrap();
        assert_eq!(&body, b"hello world");
        let mut out = stream;
        out.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
    });
    let dir = TempDir::new();
    let g = start_config(&dir, &config(port));
    let mut c = client(g.http_port);
    c.write_all(
        b"POST /upload HTTP/1.1\r\nHost: t.test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut seen = Vec::new();
    read_until(&mut c, &mut seen, b"\r\n\r\n");
    let interim = String::from_utf8_lossy(&seen).into_owned();
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    c.write_all(b"hello world").unwrap();
    read_until(&mut c, &mut seen, b"ok");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("HTTP/1.1 201"), "{text}");
    backend.join().unwrap();
}

/// RFC 7239 §4 and §6, when GANGWAY_FORWARDED_HEADER=true: the backend gets
/// one `Forwarded` element for this hop, and a client's own is not kept.
#[test]
fn forwarded_header_when_enabled() {
    let (port, backend) = backend_once(|stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let head = read_head(&mut reader).to_ascii_lowercase();
        let forwarded: Vec<&str> = head
            .lines()
            .filter_map(|l| l.strip_prefix("forwarded: "))
            .collect();
        assert_eq!(
            forwarded,
            ["for=127.0.0.1;host=\"t.test\";proto=http"],
            "{head}"
        );
        let mut out = stream;
        out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
    });
    let dir = TempDir::new();
    let file = dir.join("gangway.toml");
    common::write_atomic(&file, &config(port));
    let g = start(
        GangwayBuilder::new(GANGWAY)
            .network(NO_NETWORK)
            .env("GANGWAY_CONFIG", file.to_string_lossy())
            .env("GANGWAY_FORWARDED_HEADER", "true"),
    );
    let mut c = client(g.http_port);
    c.write_all(b"GET / HTTP/1.1\r\nHost: t.test\r\nForwarded: for=6.6.6.6\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    read_until(&mut c, &mut seen, b"ok");
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    backend.join().unwrap();
}

const GIB: u64 = 1 << 30;
/// Peak resident memory allowed to gangway while 1 GiB passes through it:
/// far below the body, well above its own baseline (about 10 MiB).
const PEAK_RSS_LIMIT_KIB: u64 = 96 * 1024;

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Writes `len` bytes of a repeating pattern.
fn write_pattern(out: &mut impl Write, len: u64) {
    let block: Vec<u8> = (0..=255u8).cycle().take(1 << 16).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
}

/// Reads exactly `len` bytes, checking the pattern as it goes.
fn read_pattern(input: &mut impl Read, len: u64) {
    let mut buf = vec![0u8; 1 << 16];
    // The pattern from any offset modulo 256 on, for one memcmp per read.
    let pattern: Vec<u8> = (0..=255u8).cycle().take((1 << 16) + 256).collect();
    let mut offset: u64 = 0;
    while offset < len {
        let want = (len - offset).min(buf.len() as u64) as usize;
        let n = input.read(&mut buf[..want]).unwrap();
        assert!(n > 0, "the body ended after {offset} of {len} bytes");
        let start = (offset % 256) as usize;
        assert!(
            buf[..n] == pattern[start..start + n],
            "the body differs somewhere in bytes {offset}..{}",
            offset + n as u64
        );
        offset += n as u64;
    }
}

/// Issue 5: a 1 GiB upload and a 1 GiB download pass through whole, and
/// gangway's peak memory stays flat (it streams, it does not buffer).
#[test]
fn one_gib_each_way_with_flat_memory() {
    let (port, backend) = backend_once(|stream| {
        let mut reader = BufReader::with_capacity(1 << 16, stream.try_clone().unwrap());
        let mut out = stream;
        // Upload: read and check it all, then answer.
        let head = read_head(&mut reader);
        assert!(head.starts_with("PUT /up"), "{head}");
        read_pattern(&mut reader, GIB);
        out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nreceived")
            .unwrap();
        // Download, on the same kept-alive connection.
        let head = read_head(&mut reader);
        assert!(head.starts_with("GET /down"), "{head}");
        out.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {GIB}\r\n\r\n").as_bytes())
            .unwrap();
        write_pattern(&mut out, GIB);
    });
    let dir = TempDir::new();
    let g = start_config(&dir, &config(port));
    let baseline = peak_rss_kib(g.pid());

    let mut c = client(g.http_port);
    c.write_all(
        format!("PUT /up HTTP/1.1\r\nHost: t.test\r\nContent-Length: {GIB}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    write_pattern(&mut c, GIB);
    let mut reader = BufReader::with_capacity(1 << 16, c.try_clone().unwrap());
    let head = read_head(&mut reader);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut answer = [0u8; 8];
    reader.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"received");

    c.write_all(b"GET /down HTTP/1.1\r\nHost: t.test\r\n\r\n")
        .unwrap();
    let head = read_head(&mut reader);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    read_pattern(&mut reader, GIB);
    backend.join().unwrap();

    let peak = peak_rss_kib(g.pid());
    println!("gangway peak RSS: {baseline} KiB at start, {peak} KiB after 1 GiB each way");
    assert!(
        peak < PEAK_RSS_LIMIT_KIB,
        "gangway's peak RSS reached {peak} KiB moving 1 GiB each way (from {baseline} KiB)"
    );
}
