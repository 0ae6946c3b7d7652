//! gangway's own HTTP/1.1 client towards plain-HTTP pools (`protocol =
//! "http"`, `crates/gangway-proxy/src/h1`), through the real binary:
//! keep-alive reuse, connections the backend closed while idle or under a
//! request (and what may be sent again), `Connection: close`, stray bytes
//! after a response, response framing (RFC 9112 §6.3), responses gangway
//! must refuse with 502 or cut off, and request bodies (chunked, with a
//! length, streamed both ways at once, answered early).
//!
//! Each backend is a raw-socket server written in the test: a script
//! decides, per connection, exactly which bytes it answers with, and every
//! request it reads is recorded with the connection it came on, so that
//! the tests can count backend connections and check what gangway wrote.
//! Every wait is bounded (a read that gets nothing within [`STEP`] is
//! reported as a hang), and the backend's threads stop when the test ends,
//! passed or failed; gangway is killed by `Gangway`'s `Drop`.
#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::wire::{decode_chunked, find, lock, Chunked, Fields};
use common::{write_atomic, GANGWAY, NO_NETWORK, WAIT};
use gangway_testkit::{wait_until, Gangway, GangwayBuilder, TempDir};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The longest a single step may take before the test calls it a hang.
const STEP: Duration = Duration::from_secs(10);
/// How often blocked backend threads look at their stop flag.
const POLL: Duration = Duration::from_millis(20);
/// The longest any backend thread lives, whatever happens.
const THREAD_LIFETIME: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// The scripted backend
// ---------------------------------------------------------------------------

/// One request as the backend received it.
#[derive(Debug, Clone)]
struct Received {
    /// The accepted connection it came on (0 for the first).
    conn: usize,
    line: String,
    /// Names in lower case, in the order received.
    headers: Vec<(String, String)>,
    /// The body, chunked coding removed.
    body: Vec<u8>,
    /// The trailer section of a chunked body, names in lower case.
    trailers: Vec<(String, String)>,
    /// Whether the whole body was read (a head-only read leaves it false).
    complete: bool,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    accepted: AtomicUsize,
    requests: Mutex<Vec<Received>>,
    /// Connections that are closed (their script returned), by index.
    closed: Mutex<Vec<usize>>,
    /// A handle on every open connection, to unblock its thread at the
    /// end. Removed when its script returns, so that dropping the script's
    /// stream really closes the socket.
    streams: Mutex<HashMap<usize, TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A raw TCP backend on 127.0.0.1 that hands each accepted connection to
/// its script in a thread of its own; the connection closes when the
/// script returns. Dropping it stops and joins every thread.
struct Backend {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Backend {
    /// A backend that answers each request, on any connection, with what
    /// `answer` makes of it, and keeps its connections open.
    fn answering(answer: impl Fn(&Received) -> Vec<u8> + Send + Sync + 'static) -> Backend {
        Backend::start(move |peer| {
            while let Some(r) = peer.request_within(THREAD_LIFETIME) {
                if !peer.send(&answer(&r)) {
                    return;
                }
            }
        })
    }

    fn start(script: impl Fn(&mut Peer) + Send + Sync + 'static) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let script = Arc::new(script);
        let s = Arc::clone(&shared);
        let acceptor = thread::spawn(move || {
            let end = Instant::now() + THREAD_LIFETIME;
            while !s.stop.load(Ordering::Relaxed) && Instant::now() < end {
                let Ok((stream, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let index = s.accepted.fetch_add(1, Ordering::SeqCst);
                let ready = stream.set_nonblocking(false).is_ok()
                    && stream.set_read_timeout(Some(POLL)).is_ok()
                    && stream.set_write_timeout(Some(STEP)).is_ok();
                if !ready {
                    continue;
                }
                if let Ok(clone) = stream.try_clone() {
                    lock(&s.streams).insert(index, clone);
                }
                let mut peer = Peer {
                    index,
                    stream,
                    buf: Vec::new(),
                    ended: false,
                    shared: Arc::clone(&s),
                    end,
                };
                let (script, s2) = (Arc::clone(&script), Arc::clone(&s));
                let handle = thread::spawn(move || {
                    script(&mut peer);
                    lock(&s2.streams).remove(&index);
                    drop(peer);
                    lock(&s2.closed).push(index);
                });
                lock(&s.threads).push(handle);
            }
        });
        Backend {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Received> {
        lock(&self.shared.requests).clone()
    }

    /// Waits (up to [`STEP`]) until connection `conn` is closed: its
    /// script returned, on its own or because gangway closed it.
    fn wait_closed(&self, conn: usize) -> bool {
        wait(|| lock(&self.shared.closed).contains(&conn))
    }

    /// Waits (up to [`STEP`]) until `n` requests have arrived.
    fn wait_requests(&self, n: usize) -> Vec<Received> {
        wait(|| lock(&self.shared.requests).len() >= n);
        self.requests()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in lock(&self.shared.streams).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// Polls `done` every few milliseconds for up to [`STEP`].
fn wait(mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + STEP;
    while Instant::now() < end {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    done()
}

/// One connection from gangway, as a backend script sees it.
struct Peer {
    index: usize,
    stream: TcpStream,
    /// Bytes received and not yet taken.
    buf: Vec<u8>,
    /// gangway closed the connection (or the test is over).
    ended: bool,
    shared: Arc<Shared>,
    end: Instant,
}

impl Peer {
    /// Reads more bytes; false once the connection has ended, the test is
    /// over or `until` has passed.
    fn fill(&mut self, until: Instant) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        while !self.ended {
            if self.shared.stop.load(Ordering::Relaxed) || Instant::now() >= until.min(self.end) {
                return false;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => self.ended = true,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => self.ended = true,
            }
        }
        false
    }

    /// The next request head, within `within`: the request line and the
    /// fields.
    fn head_within(&mut self, within: Duration) -> Option<Received> {
        let until = Instant::now() + within;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                let mut lines = head.split("\r\n");
                let line = lines.next().unwrap_or_default().to_owned();
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                return Some(Received {
                    conn: self.index,
                    line,
                    headers,
                    body: Vec::new(),
                    trailers: Vec::new(),
                    complete: false,
                });
            }
            if !self.fill(until) {
                return None;
            }
        }
    }

    /// The next request head alone (its body is left unread), recorded.
    fn request_head(&mut self) -> Option<Received> {
        let r = self.head_within(STEP)?;
        lock(&self.shared.requests).push(r.clone());
        Some(r)
    }

    /// The next whole request, recorded (also when its body stops short).
    /// `None` when gangway closed the connection, the test is over or no
    /// request came within `within`.
    fn request_within(&mut self, within: Duration) -> Option<Received> {
        let mut r = self.head_within(within)?;
        let until = Instant::now() + STEP;
        let chunked = r
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            loop {
                match decode_chunked(&self.buf) {
                    Ok(Some(Chunked {
                        data,
                        trailers,
                        used,
                    })) => {
                        (r.body, r.trailers, r.complete) = (data, trailers, true);
                        self.buf.drain(..used);
                        break;
                    }
                    Ok(None) if self.fill(until) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        } else if let Some(len) = r.header("content-length").and_then(|v| v.parse().ok()) {
            while self.buf.len() < len && self.fill(until) {}
            let take = self.buf.len().min(len);
            r.body = self.buf.drain(..take).collect();
            r.complete = take == len;
        } else {
            r.complete = true;
        }
        lock(&self.shared.requests).push(r.clone());
        Some(r)
    }

    fn request(&mut self) -> Option<Received> {
        self.request_within(STEP)
    }

    /// The next chunk of a chunked body whose head was read: its data,
    /// empty for the last chunk (whose empty trailer section is read too).
    fn chunk(&mut self) -> Option<Vec<u8>> {
        let until = Instant::now() + STEP;
        loop {
            if let Some(eol) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..eol]).into_owned();
                let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
                let need = eol + 2 + size + 2;
                if self.buf.len() >= need {
                    let data = self.buf[eol + 2..eol + 2 + size].to_vec();
                    self.buf.drain(..need);
                    return Some(data);
                }
            }
            if !self.fill(until) {
                return None;
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Answers every request on this connection with `200` and `ok`, kept
    /// alive, until gangway closes it.
    fn serve_ok(&mut self) {
        while self.request_within(THREAD_LIFETIME).is_some() {
            if !self.send(OK) {
                return;
            }
        }
    }

    /// Waits until gangway closes the connection (true) or `within` passes.
    fn closed_within(&mut self, within: Duration) -> bool {
        let until = Instant::now() + within;
        while self.fill(until) {}
        self.ended
    }

    /// Sleeps `d`, or less when the test is over.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.shared.stop.load(Ordering::Relaxed) {
            thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
        }
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

// ---------------------------------------------------------------------------
// The client side
// ---------------------------------------------------------------------------

/// How reading a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The whole message arrived.
    Complete,
    /// gangway closed (or reset) the connection before the message's end.
    Cut,
    /// Nothing more arrived within [`STEP`]: a hang.
    Hung,
}

/// One response as the client received it.
#[derive(Debug)]
struct Reply {
    /// 0 when the connection ended before a status line.
    status: u16,
    /// The 1xx responses received before it.
    interim: Vec<u16>,
    /// Names in lower case.
    headers: Fields,
    body: Vec<u8>,
    trailers: Fields,
    end: End,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection to gangway, kept across requests.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

enum Fill {
    Data,
    Closed,
    Hung,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        stream.set_write_timeout(Some(STEP)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads until `needle` has arrived and takes everything up to its
    /// end; panics (with what came) when it does not arrive in time.
    fn read_until(&mut self, needle: &[u8]) -> Vec<u8> {
        loop {
            if let Some(at) = find(&self.buf, needle) {
                return self.buf.drain(..at + needle.len()).collect();
            }
            if !matches!(self.fill(), Fill::Data) {
                panic!(
                    "{:?} never arrived; got {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// Sends a request and reads its response (`head`: it was a HEAD).
    fn exchange(&mut self, request: &[u8], head: bool) -> Reply {
        self.send(request);
        self.reply(head)
    }

    fn fill(&mut self) -> Fill {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Fill::Closed,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Fill::Data
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Fill::Hung,
            Err(_) => Fill::Closed,
        }
    }

    /// Reads one final response (1xx ones are collected on the way).
    fn reply(&mut self, head_request: bool) -> Reply {
        let mut reply = Reply {
            status: 0,
            interim: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            trailers: Vec::new(),
            end: End::Complete,
        };
        loop {
            let end = loop {
                if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                    break end;
                }
                match self.fill() {
                    Fill::Data => {}
                    Fill::Closed => {
                        return Reply {
                            end: End::Cut,
                            ..reply
                        }
                    }
                    Fill::Hung => {
                        return Reply {
                            end: End::Hung,
                            ..reply
                        }
                    }
                }
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            self.buf.drain(..end + 4);
            let mut lines = head.split("\r\n");
            let status = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            if (100..200).contains(&status) && status != 101 {
                reply.interim.push(status);
                continue;
            }
            reply.status = status;
            reply.headers = headers;
            break;
        }
        if head_request || matches!(reply.status, 204 | 304) {
            return reply;
        }
        let chunked = reply
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let length = reply
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        loop {
            let done = if chunked {
                match decode_chunked(&self.buf) {
                    Ok(Some(Chunked {
                        data,
                        trailers,
                        used,
                    })) => {
                        (reply.body, reply.trailers) = (data, trailers);
                        self.buf.drain(..used);
                        true
                    }
                    Ok(None) => false,
                    Err(e) => panic!("gangway sent a broken chunked body: {e}"),
                }
            } else if let Some(len) = length {
                if self.buf.len() >= len {
                    reply.body = self.buf.drain(..len).collect();
                    true
                } else {
                    false
                }
            } else {
                false
            };
            if done {
                return reply;
            }
            match self.fill() {
                Fill::Data => {}
                Fill::Closed => {
                    let until_close = !chunked && length.is_none();
                    if !chunked {
                        reply.body = std::mem::take(&mut self.buf);
                    }
                    reply.end = if until_close { End::Complete } else { End::Cut };
                    return reply;
                }
                Fill::Hung => {
                    reply.end = End::Hung;
                    return reply;
                }
            }
        }
    }
}

/// A thread writing `len` bytes of [`pattern`] to a client connection,
/// stopping at the first error; the connection is shut down and the
/// thread joined when this is dropped (also when the test fails).
struct Uploader {
    stream: TcpStream,
    handle: Option<JoinHandle<()>>,
}

impl Uploader {
    fn start(client: &Client, len: usize) -> Uploader {
        let mut stream = client.stream.try_clone().unwrap();
        let handle = thread::spawn(move || {
            for piece in pattern(len).chunks(64 * 1024) {
                if stream.write_all(piece).is_err() {
                    return;
                }
            }
        });
        Uploader {
            stream: client.stream.try_clone().unwrap(),
            handle: Some(handle),
        }
    }

    /// Waits for the writer to stop.
    fn finish(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = self.stream.shutdown(Shutdown::Both);
            let _ = h.join();
        }
    }
}

/// `len` bytes of a pattern that does not repeat every 256 bytes.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn config(port: u16) -> String {
    format!(
        "[[pools]]\nname = \"p\"\ntargets = [\"127.0.0.1:{port}\"]\n\n[[routes]]\nname = \"r\"\nhosts = [\"t.test\"]\npool = \"p\"\n"
    )
}

/// Starts gangway with `text` as its configuration file and waits until
/// it is ready. Its ports were free a moment before it starts; when a
/// test running beside this one took one of them meanwhile, gangway exits
/// at once and is started again on others (and a `/readyz` answered by
/// another test's gangway on a taken port is not taken for this one's).
fn start_config(dir: &TempDir, text: &str) -> Gangway {
    let file = dir.join("gangway.toml");
    write_atomic(&file, text);
    let mut last = String::new();
    for _ in 0..5 {
        let mut g = GangwayBuilder::new(GANGWAY)
            .network(NO_NETWORK)
            .env("GANGWAY_CONFIG", file.to_string_lossy())
            .spawn();
        // Logged once every port is bound.
        let started = |g: &Gangway| !g.messages("gangway started").is_empty();
        wait_until(WAIT, || g.try_exit().is_some() || started(&g));
        if g.try_exit().is_none() && started(&g) {
            assert!(
                g.wait_ready(WAIT),
                "gangway did not become ready within {WAIT:?}:\n{}",
                g.output()
            );
            return g;
        }
        // Let the output readers take the last lines.
        g.wait_exit(Duration::from_secs(1));
        last = g.output();
        if !last.contains("Address already in use") {
            break;
        }
    }
    panic!("gangway did not start:\n{last}");
}

/// gangway routing `t.test` to `backend`.
fn gangway_for(dir: &TempDir, backend: &Backend) -> Gangway {
    start_config(dir, &config(backend.port))
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t.test\r\n\r\n").into_bytes()
}

/// The `upstream request failed` and `target ejected` lines so far.
fn failures(g: &Gangway) -> Vec<serde_json::Value> {
    let mut lines = g.messages("upstream request failed");
    lines.extend(g.messages("target ejected"));
    lines
}

// ---------------------------------------------------------------------------
// Keep-alive
// ---------------------------------------------------------------------------

/// RFC 9112 §9.3 (persistence) and §3.2.1 (origin form): twenty requests
/// one after another, on one client connection and on twenty new ones,
/// all go over one backend connection, each as `GET /path?query
/// HTTP/1.1` with gangway's `Host` and forwarding headers and no framing
/// header for a request without a body.
#[test]
fn twenty_requests_share_one_backend_connection() {
    let backend = Backend::answering(|r| {
        let body = r.line.clone();
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        answer.into_bytes()
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let mut kept = Client::connect(g.http_port);
    for i in 0..20 {
        let path = format!("/items/{i}?q={i}&x=%20y");
        let reply = if i < 10 {
            kept.exchange(&get(&path), false)
        } else {
            Client::connect(g.http_port).exchange(&get(&path), false)
        };
        assert_eq!((reply.status, reply.end), (200, End::Complete), "{reply:?}");
        assert_eq!(reply.body_text(), format!("GET {path} HTTP/1.1"));
    }
    let requests = backend.requests();
    assert_eq!(requests.len(), 20);
    assert_eq!(
        backend.accepted(),
        1,
        "twenty requests should share one backend connection: {requests:#?}"
    );
    for r in &requests {
        assert_eq!(r.conn, 0);
        assert_eq!(r.all("host"), ["t.test"], "{r:#?}");
        assert_eq!(r.header("x-forwarded-for"), Some("127.0.0.1"), "{r:#?}");
        assert_eq!(r.header("x-real-ip"), Some("127.0.0.1"), "{r:#?}");
        assert_eq!(r.header("x-forwarded-host"), Some("t.test"), "{r:#?}");
        assert_eq!(r.header("x-forwarded-proto"), Some("http"), "{r:#?}");
        assert_eq!(r.header("via"), Some("1.1 gangway"), "{r:#?}");
        assert!(r.header("x-request-id").is_some(), "{r:#?}");
        assert!(r.header("content-length").is_none(), "{r:#?}");
        assert!(r.header("transfer-encoding").is_none(), "{r:#?}");
        assert!(r.header("connection").is_none(), "{r:#?}");
    }
    assert!(failures(&g).is_empty(), "{}", g.output());
}

/// RFC 9112 §9.3.1 and §9.6: a backend may close a connection while it
/// is idle. gangway notices before it uses one (the close already
/// arrived) and opens a new connection, for a GET and for a POST with a
/// small body or a streamed one alike: the client sees nothing of it,
/// and no failure is counted against the target.
#[test]
fn idle_connection_closed_by_the_backend_is_not_used() {
    // Every connection answers one request, kept alive, then closes after
    // 200 ms of idleness.
    let backend = Backend::start(|peer| {
        if let Some(r) = peer.request() {
            let body = format!("{} {}", r.line, String::from_utf8_lossy(&r.body));
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            peer.send(answer.as_bytes());
            peer.pause(Duration::from_millis(200));
        }
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let mut c = Client::connect(g.http_port);
    // A body over the pool's replay_limit (64 KiB) streams: it could not be
    // sent again, so the stale connection must be noticed before.
    let big = "x".repeat(100 * 1024);
    let steps: [(Vec<u8>, String); 4] = [
        (get("/first"), "GET /first HTTP/1.1 ".into()),
        (get("/second"), "GET /second HTTP/1.1 ".into()),
        (
            b"POST /third HTTP/1.1\r\nHost: t.test\r\nContent-Length: 11\r\n\r\nhello world"
                .to_vec(),
            "POST /third HTTP/1.1 hello world".into(),
        ),
        (
            format!(
                "POST /fourth HTTP/1.1\r\nHost: t.test\r\nContent-Length: {}\r\n\r\n{big}",
                big.len()
            )
            .into_bytes(),
            format!("POST /fourth HTTP/1.1 {big}"),
        ),
    ];
    for (i, (request, answer)) in steps.iter().enumerate() {
        let reply = c.exchange(request, false);
        assert_eq!(
            (reply.status, reply.end),
            (200, End::Complete),
            "{}",
            reply.status
        );
        assert!(reply.body_text() == *answer, "request {i}: wrong answer");
        // The backend closes the idle connection; its close has reached
        // gangway well before the next request.
        assert!(backend.wait_closed(i), "connection {i} never closed");
        thread::sleep(Duration::from_millis(300));
    }
    let requests = backend.requests();
    let conns: Vec<usize> = requests.iter().map(|r| r.conn).collect();
    assert_eq!(conns, [0, 1, 2, 3], "each request on a new connection");
    assert_eq!(requests[2].header("content-length"), Some("11"));
    assert_eq!(requests[3].header("content-length"), Some("102400"));
    assert!(failures(&g).is_empty(), "{}", g.output());
}

/// The wait for a response head (`timeouts.response_header`) is timed
/// from each request's own send, although the requests of one client
/// connection share one timer (moved to each request's deadline): a wait
/// right after two answered requests still gets its whole time before it
/// ends in 502, and the requests after it on the same connection, one
/// answered well within the limit, are not cut short by that timer.
#[test]
fn each_request_on_a_kept_connection_gets_its_whole_response_wait() {
    let backend = Backend::start(|peer| {
        while let Some(r) = peer.request_within(THREAD_LIFETIME) {
            let delay = match r.line.split(' ').nth(1) {
                Some("/slow") => 1_500,
                Some("/medium") => 150,
                _ => 0,
            };
            peer.pause(Duration::from_millis(delay));
            if !peer.send(OK) {
                return;
            }
        }
    });
    let dir = TempDir::new();
    let limit = Duration::from_millis(400);
    let g = start_config(
        &dir,
        &config(backend.port).replace(
            "targets = [",
            "timeouts = { response_header = \"400ms\" }\ntargets = [",
        ),
    );
    let mut c = Client::connect(g.http_port);
    for path in ["/fast", "/fast"] {
        let reply = c.exchange(&get(path), false);
        assert_eq!((reply.status, reply.end), (200, End::Complete), "{reply:?}");
    }
    let started = Instant::now();
    let reply = c.exchange(&get("/slow"), false);
    let waited = started.elapsed();
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(
        waited >= limit && waited < Duration::from_millis(1_400),
        "the wait ended after {waited:?}, its limit is {limit:?}"
    );
    for path in ["/medium", "/fast", "/medium"] {
        let reply = c.exchange(&get(path), false);
        assert_eq!((reply.status, reply.end), (200, End::Complete), "{reply:?}");
    }
    let timeouts: Vec<_> = failures(&g)
        .into_iter()
        .filter(|f| f["kind"] == "timeout")
        .collect();
    assert_eq!(timeouts.len(), 1, "{}", g.output());
}

/// RFC 9110 §15.2.2 and §7.8: a server switches protocols only when the
/// request asked for it with `Upgrade`; a `101` to a plain GET is a
/// broken response: the client gets `502`, not a connection switched to
/// nobody knows what.
#[test]
fn unsolicited_101_gives_502() {
    let backend = Backend::start(|peer| {
        if peer.request().is_some()
            && peer.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nhello from elsewhere")
        {
            peer.closed_within(THREAD_LIFETIME);
        }
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let mut c = Client::connect(g.http_port);
    let reply = c.exchange(&get("/plain"), false);
    assert_eq!((reply.status, reply.end), (502, End::Complete), "{reply:?}");
    assert!(backend.wait_closed(0), "gangway left the connection open");
}

/// RFC 9112 §9.3.1.1 (retrying requests): a backend may close a kept-alive
/// connection just as gangway sends the next request on it, before it can
/// be noticed. Such a request never got an answer: a GET (idempotent) is
/// sent once more on a new connection, and the client gets its answer. A
/// POST is not sent again (a proxy MUST NOT retry a non-idempotent
/// request; docs/config.md: `retry = "idempotent"`, the default), so the
/// client gets 502, unless the pool says `retry = "always"`.
#[test]
fn request_on_a_connection_closed_under_it() {
    // Every connection answers its first request and reads the second,
    // then closes without answering.
    let script = |peer: &mut Peer| {
        if peer.request().is_some() && peer.send(OK) {
            peer.request();
        }
    };
    let default = Backend::start(script);
    let always = Backend::start(script);
    let dir = TempDir::new();
    let g = start_config(
        &dir,
        &format!(
            "{}\n[[pools]]\nname = \"always\"\ntargets = [\"127.0.0.1:{}\"]\nfailover = {{ retry = \"always\" }}\n\n[[routes]]\nname = \"a\"\nhosts = [\"always.test\"]\npool = \"always\"\n",
            config(default.port),
            always.port
        ),
    );
    let mut c = Client::connect(g.http_port);
    let post = |host: &str| {
        format!("POST /post HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\nhello")
            .into_bytes()
    };

    // GET: conn 0 answers the first; the second breaks on conn 0 and is
    // answered on conn 1.
    for path in ["/a", "/b"] {
        let reply = c.exchange(&get(path), false);
        assert_eq!((reply.status, reply.end), (200, End::Complete), "{reply:?}");
    }
    let seen: Vec<(usize, String)> = default
        .wait_requests(3)
        .into_iter()
        .map(|r| (r.conn, r.line))
        .collect();
    assert_eq!(
        seen,
        [
            (0, "GET /a HTTP/1.1".to_string()),
            (0, "GET /b HTTP/1.1".to_string()),
            (1, "GET /b HTTP/1.1".to_string()),
        ]
    );
    assert!(failures(&g).is_empty(), "{}", g.output());

    // POST, default policy: conn 1 breaks under it; it is not sent again.
    let reply = c.exchange(&post("t.test"), false);
    assert_eq!(reply.status, 502, "{reply:?}");
    thread::sleep(Duration::from_millis(300));
    let posts: Vec<usize> = default
        .requests()
        .iter()
        .filter(|r| r.line.starts_with("POST"))
        .map(|r| r.conn)
        .collect();
    assert_eq!(posts, [1], "the POST must reach the backend once");
    assert_eq!(g.messages("upstream request failed").len(), 1);

    // POST, `retry = "always"`: sent again on a new connection.
    let mut c = Client::connect(g.http_port);
    let reply = c.exchange(b"GET / HTTP/1.1\r\nHost: always.test\r\n\r\n", false);
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = c.exchange(&post("always.test"), false);
    assert_eq!((reply.status, reply.end), (200, End::Complete), "{reply:?}");
    let posts: Vec<(usize, Vec<u8>)> = always
        .wait_requests(3)
        .iter()
        .filter(|r| r.line.starts_with("POST"))
        .map(|r| (r.conn, r.body.clone()))
        .collect();
    assert_eq!(posts, [(0, b"hello".to_vec()), (1, b"hello".to_vec())]);
    assert_eq!(g.messages("upstream request failed").len(), 1);
}

/// RFC 9112 §9.6: `Connection: close` in a response means the backend
/// closes after it, so gangway does not send another request on that
/// connection, even when the backend leaves it open; neither on an
/// HTTP/1.0 response without `keep-alive`, nor with both `close` and
/// `keep-alive` (`close` wins, RFC 9112 §9.3). The client's own
/// connection stays open (the field is hop-by-hop).
#[test]
fn connection_close_means_a_new_connection() {
    let backend = Backend::start(|peer| {
        let Some(r) = peer.request() else {
            return;
        };
        let answer: &[u8] = match r.line.as_str() {
            "GET /close HTTP/1.1" => {
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nclose"
            }
            "GET /old HTTP/1.1" => b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold",
            "GET /both HTTP/1.1" => {
                b"HTTP/1.0 200 OK\r\nConnection: close, keep-alive\r\nContent-Length: 4\r\n\r\nboth"
            }
            _ => OK,
        };
        if peer.send(answer) {
            // Left open: only gangway can close it.
            peer.serve_ok();
        }
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let mut c = Client::connect(g.http_port);
    let reply = c.exchange(&get("/close"), false);
    assert_eq!((reply.status, reply.body_text()), (200, "close".into()));
    assert!(reply.header("connection").is_none(), "{reply:?}");
    assert!(backend.wait_closed(0), "gangway kept connection 0 open");
    let reply = c.exchange(&get("/old"), false);
    assert_eq!((reply.status, reply.body_text()), (200, "old".into()));
    assert!(backend.wait_closed(1), "gangway kept connection 1 open");
    let reply = c.exchange(&get("/both"), false);
    assert_eq!((reply.status, reply.body_text()), (200, "both".into()));
    assert!(backend.wait_closed(2), "gangway kept connection 2 open");
    let reply = c.exchange(&get("/next"), false);
    assert_eq!((reply.status, reply.body_text()), (200, "ok".into()));
    let conns: Vec<usize> = backend.requests().iter().map(|r| r.conn).collect();
    assert_eq!(conns, [0, 1, 2, 3]);
}

/// RFC 9112 §11.2 (response splitting) and §6.3: bytes a backend sends
/// after the end of a response (a second response nobody asked for, a
/// body on a HEAD response, or bytes that come later while the
/// connection is idle) are never read as the answer to the next request:
/// that connection is not used again.
#[test]
fn bytes_after_a_response_are_not_taken_for_the_next_one() {
    const STRAY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled";
    let backend = Backend::start(|peer| {
        while let Some(r) = peer.request_within(THREAD_LIFETIME) {
            let sent = match r.line.as_str() {
                "GET /extra HTTP/1.1" => peer.send(&[OK, STRAY].concat()),
                "GET /late HTTP/1.1" => {
                    let sent = peer.send(OK);
                    peer.pause(Duration::from_millis(100));
                    sent && peer.send(STRAY)
                }
                "HEAD /head HTTP/1.1" => peer.send(STRAY),
                _ => peer.send(OK),
            };
            if !sent {
                return;
            }
        }
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let mut c = Client::connect(g.http_port);
    for (request, head) in [
        (get("/extra"), false),
        (get("/late"), false),
        (
            b"HEAD /head HTTP/1.1\r\nHost: t.test\r\n\r\n".to_vec(),
            true,
        ),
    ] {
        let reply = c.exchange(&request, head);
        assert_eq!((reply.status, reply.end), (200, End::Complete), "{reply:?}");
        if !head {
            assert_eq!(reply.body_text(), "ok");
        }
        thread::sleep(Duration::from_millis(300));
        let reply = c.exchange(&get("/next"), false);
        assert_eq!((reply.status, reply.body_text()), (200, "ok".into()));
    }
    let seen: Vec<(usize, String)> = backend
        .requests()
        .into_iter()
        .map(|r| (r.conn, r.line))
        .collect();
    let want = [
        (0, "GET /extra HTTP/1.1"),
        (1, "GET /next HTTP/1.1"),
        (1, "GET /late HTTP/1.1"),
        (2, "GET /next HTTP/1.1"),
        (2, "HEAD /head HTTP/1.1"),
        (3, "GET /next HTTP/1.1"),
    ];
    assert_eq!(
        seen,
        want.map(|(c, l)| (c, l.to_string())),
        "each stray answer must retire its connection"
    );
    for conn in 0..3 {
        assert!(
            backend.wait_closed(conn),
            "gangway kept connection {conn} open"
        );
    }
}

// ---------------------------------------------------------------------------
// Response framing (RFC 9112 §6.3)
// ---------------------------------------------------------------------------

/// RFC 9112 §7.1 and §7.1.2: a chunked response arrives whole, with its
/// trailer fields for a client that asked with `TE: trailers`; the
/// connection is reused afterwards (the body's end was read exactly).
#[test]
fn chunked_response_with_trailers() {
    let backend = Backend::answering(|r| {
        let answer: &[u8] = if r.line.starts_with("GET /chunked") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nX-Checksum: 5d41402a\r\n\r\n"
        } else {
            OK
        };
        answer.to_vec()
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let mut c = Client::connect(g.http_port);
    let reply = c.exchange(
        b"GET /chunked HTTP/1.1\r\nHost: t.test\r\nTE: trailers\r\n\r\n",
        false,
    );
    assert_eq!((reply.status, reply.end), (200, End::Complete), "{reply:?}");
    assert_eq!(reply.body_text(), "hello world!");
    assert_eq!(
        reply.trailers,
        [("x-checksum".to_string(), "5d41402a".to_string())]
    );
    let reply = c.exchange(&get("/after"), false);
    assert_eq!((reply.status, reply.body_text()), (200, "ok".into()));
    assert_eq!(backend.accepted(), 1);
    let te = backend.requests()[0].header("te").map(str::to_owned);
    assert_eq!(te.as_deref(), Some("trailers"));
}

/// RFC 9112 §6.3 point 8: a response with neither `Content-Length` nor
/// `Transfer-Encoding` runs until the backend closes; all of it reaches
/// the client (re-framed by gangway's server), and the next request
/// opens a new connection.
#[test]
fn close_delimited_response_arrives_whole() {
    const LEN: usize = 300 * 1024;
    let backend = Backend::start(|peer| {
        if let Some(r) = peer.request() {
            if r.line.starts_with("GET /until-close") {
                let mut answer =
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
                answer.extend_from_slice(&pattern(LEN));
                peer.send(&answer);
            } else {
                peer.send(OK);
                peer.serve_ok();
            }
        }
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let mut c = Client::connect(g.http_port);
    let reply = c.exchange(&get("/until-close"), false);
    assert_eq!(
        (reply.status, reply.end),
        (200, End::Complete),
        "{:?}",
        (reply.status, reply.end, reply.body.len())
    );
    assert_eq!(reply.body.len(), LEN);
    assert!(reply.body == pattern(LEN), "the body differs");
    let reply = c.exchange(&get("/next"), false);
    assert_eq!((reply.status, reply.body_text()), (200, "ok".into()));
    assert_eq!(backend.accepted(), 2);
}

/// RFC 9112 §6.3 point 3: a response with both `Content-Length` and
/// `Transfer-Encoding: chunked` is read as chunked (the length is
/// ignored and not passed on), and, as it may be an attempt at response
/// smuggling, its connection is closed rather than reused.
#[test]
fn length_and_chunked_together_read_as_chunked_and_not_reused() {
    let backend = Backend::start(|peer| {
        let Some(r) = peer.request() else {
            return;
        };
        let answer: &[u8] = if r.line.starts_with("GET /both") {
            // With Content-Length, a reader would stop after "5\r\nhe".
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        } else {
            OK
        };
        if peer.send(answer) {
            peer.serve_ok();
        }
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let mut c = Client::connect(g.http_port);
    let reply = c.exchange(&get("/both"), false);
    assert_eq!((reply.status, reply.end), (200, End::Complete), "{reply:?}");
    assert_eq!(reply.body_text(), "hello world");
    assert_ne!(reply.header("content-length"), Some("5"), "{reply:?}");
    assert!(backend.wait_closed(0), "gangway kept the connection open");
    let reply = c.exchange(&get("/next"), false);
    assert_eq!((reply.status, reply.body_text()), (200, "ok".into()));
    let conns: Vec<usize> = backend.requests().iter().map(|r| r.conn).collect();
    assert_eq!(
        conns,
        [0, 1],
        "the second request must use a new connection"
    );
}

/// RFC 9112 §6.3 point 1 and RFC 9110 §9.3.2: the response to HEAD has no
/// body, whatever its `Content-Length` says; gangway neither waits for
/// one nor takes the next response's bytes for it, so the connection
/// serves the next request.
#[test]
fn head_response_with_length_has_no_body() {
    let backend = Backend::answering(|r| {
        let answer: &[u8] = if r.line.starts_with("HEAD") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n"
        } else {
            OK
        };
        answer.to_vec()
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let mut c = Client::connect(g.http_port);
    let reply = c.exchange(b"HEAD /file HTTP/1.1\r\nHost: t.test\r\n\r\n", true);
    assert_eq!((reply.status, reply.end), (200, End::Complete), "{reply:?}");
    assert_eq!(reply.header("content-length"), Some("1234"), "{reply:?}");
    let reply = c.exchange(&get("/next"), false);
    assert_eq!((reply.status, reply.body_text()), (200, "ok".into()));
    assert_eq!(backend.accepted(), 1);
}

/// RFC 9112 §6.3 point 1, RFC 9110 §15.3.5 and §15.4.5: `204 No Content`
/// and `304 Not Modified` end at their head (a stray `Content-Length` on
/// the 204 included); the connection then serves the next request.
#[test]
fn no_content_and_not_modified_have_no_body() {
    let backend = Backend::answering(|r| {
        let answer: &[u8] = match r.line.split(' ').nth(1) {
            Some("/204") => b"HTTP/1.1 204 No Content\r\nX-Kind: empty\r\n\r\n",
            Some("/204-length") => b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            Some("/304") => {
                b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 99\r\n\r\n"
            }
            _ => OK,
        };
        answer.to_vec()
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let mut c = Client::connect(g.http_port);
    let reply = c.exchange(&get("/204"), false);
    assert_eq!((reply.status, reply.end), (204, End::Complete), "{reply:?}");
    assert_eq!(reply.header("x-kind"), Some("empty"));
    let reply = c.exchange(&get("/204-length"), false);
    assert_eq!((reply.status, reply.end), (204, End::Complete), "{reply:?}");
    let reply = c.exchange(
        b"GET /304 HTTP/1.1\r\nHost: t.test\r\nIf-None-Match: \"v1\"\r\n\r\n",
        false,
    );
    assert_eq!((reply.status, reply.end), (304, End::Complete), "{reply:?}");
    assert_eq!(reply.header("etag"), Some("\"v1\""));
    let reply = c.exchange(&get("/next"), false);
    assert_eq!((reply.status, reply.body_text()), (200, "ok".into()));
    assert_eq!(backend.accepted(), 1);
}

/// RFC 8297 and RFC 9110 §15.2: a `103 Early Hints` interim response
/// before the final one is read past; the client gets the final 200 and
/// its body (gangway does not pass interim responses on).
#[test]
fn early_hints_are_skipped() {
    let backend = Backend::answering(|r| {
        let answer: &[u8] = if r.line.starts_with("GET /hints") {
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        } else {
            OK
        };
        answer.to_vec()
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let mut c = Client::connect(g.http_port);
    let reply = c.exchange(&get("/hints"), false);
    assert_eq!((reply.status, reply.end), (200, End::Complete), "{reply:?}");
    assert_eq!(reply.body_text(), "hello");
    assert!(reply.interim.is_empty(), "{reply:?}");
    assert!(reply.header("link").is_none(), "{reply:?}");
    let reply = c.exchange(&get("/next"), false);
    assert_eq!((reply.status, reply.body_text()), (200, "ok".into()));
    assert_eq!(backend.accepted(), 1);
}

// ---------------------------------------------------------------------------
// Responses gangway must refuse
// ---------------------------------------------------------------------------

/// RFC 9112 §4 (status line), §6.3 point 5 (invalid `Content-Length`),
/// RFC 9110 §8.6 (differing lengths) and gangway's 64 KiB limit on a
/// response head: each is the backend's fault, so the client gets `502`
/// at once, whatever the backend does next (it leaves the connection
/// open), gangway closes that connection and logs the failure.
#[test]
fn bad_response_heads_give_502() {
    let big_head = format!("HTTP/1.1 200 OK\r\nX-Big: {}", "a".repeat(70 * 1024));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "bad-status",
            b"HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ),
        ("not-http", b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec()),
        (
            "status-1000",
            b"HTTP/1.1 1000 Big\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ),
        (
            "length-abc",
            b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok".to_vec(),
        ),
        (
            "two-lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(),
        ),
        (
            "length-list",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!".to_vec(),
        ),
        (
            "field-name",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ),
        ("head-over-64k", big_head.into_bytes()),
    ];
    let answers: Arc<Vec<(String, Vec<u8>)>> = Arc::new(
        cases
            .iter()
            .map(|(name, bytes)| (format!("/{name}"), bytes.clone()))
            .collect(),
    );
    let backend = Backend::start(move |peer| {
        let Some(r) = peer.request() else {
            return;
        };
        let path = r.line.split(' ').nth(1).unwrap_or_default();
        let answer = answers
            .iter()
            .find(|(p, _)| p == path)
            .map_or(OK, |(_, a)| a.as_slice());
        // gangway may close while the large head is still being written.
        peer.send(answer);
        peer.closed_within(THREAD_LIFETIME);
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    for (i, (name, _)) in cases.iter().enumerate() {
        let started = Instant::now();
        let reply = Client::connect(g.http_port).exchange(&get(&format!("/{name}")), false);
        assert_eq!(reply.status, 502, "{name}: {reply:?}\n{}", g.output());
        assert_eq!(reply.end, End::Complete, "{name}: {reply:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: took {:?}",
            started.elapsed()
        );
        assert!(
            backend.wait_closed(i),
            "{name}: gangway left the connection open"
        );
        assert!(
            wait(|| g.messages("upstream request failed").len() > i),
            "{name}: no failure logged\n{}",
            g.output()
        );
    }
    assert_eq!(backend.accepted(), cases.len());
}

/// RFC 9112 §7.1: a chunk size that is not hexadecimal breaks the body
/// after the head was passed on: the client's response is cut off (the
/// connection closes without the last chunk), promptly, not left hanging.
#[test]
fn invalid_chunk_size_cuts_the_response() {
    let backend = Backend::start(|peer| {
        if peer.request().is_some()
            && peer.send(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n",
            )
        {
            // Left open: gangway must not wait for more.
            peer.closed_within(THREAD_LIFETIME);
        }
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let started = Instant::now();
    let reply = Client::connect(g.http_port).exchange(&get("/broken"), false);
    assert_eq!(reply.end, End::Cut, "{reply:?}");
    // hyper's server aborts the connection when the body fails; the head
    // (and "hello") may still sit in its write buffer then, so the client
    // sees either nothing or a 200 whose body never ends.
    assert!(matches!(reply.status, 0 | 200), "{reply:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(backend.wait_closed(0), "gangway left the connection open");
}

/// RFC 9112 §8: a backend that closes before the `Content-Length` it
/// declared has sent an incomplete message; the client's response is
/// cut off in the same way (never completed with fewer bytes), promptly.
#[test]
fn backend_closing_before_the_declared_length_cuts_the_response() {
    let backend = Backend::start(|peer| {
        if peer.request().is_some() {
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nonly some of it");
        }
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let started = Instant::now();
    let reply = Client::connect(g.http_port).exchange(&get("/short"), false);
    assert_eq!(reply.end, End::Cut, "{reply:?}");
    assert!(matches!(reply.status, 0 | 200), "{reply:?}");
    assert!(reply.body.len() < 100_000);
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------

/// RFC 9112 §6.1 and §7.1: a body of unknown length (the client sends it
/// chunked, piece by piece) streams to the backend chunked, whole, with
/// no `Content-Length`, and with the client's trailer fields.
#[test]
fn chunked_upload_of_unknown_length() {
    let backend = Backend::answering(|r| {
        let answer = format!("{} bytes", r.body.len());
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        answer.into_bytes()
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let mut c = Client::connect(g.http_port);
    c.send(b"POST /upload HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\n\r\n");
    let data = pattern(150_000);
    let mut sent = 0;
    for size in [1, 1000, 70_000, 3, 78_996] {
        let piece = &data[sent..sent + size];
        c.send(format!("{size:x}\r\n").as_bytes());
        c.send(piece);
        c.send(b"\r\n");
        sent += size;
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sent, data.len());
    c.send(b"0\r\nX-Sum: 150000\r\n\r\n");
    let reply = c.reply(false);
    assert_eq!((reply.status, reply.end), (200, End::Complete), "{reply:?}");
    assert_eq!(reply.body_text(), "150000 bytes");
    let r = &backend.requests()[0];
    assert_eq!(r.line, "POST /upload HTTP/1.1");
    assert_eq!(r.all("transfer-encoding"), ["chunked"], "{:?}", r.headers);
    assert!(r.header("content-length").is_none(), "{:?}", r.headers);
    assert!(r.complete);
    assert!(r.body == data, "the body differs");
    // The client's trailer section goes on in the last chunk.
    assert_eq!(r.trailers, [("x-sum".to_string(), "150000".to_string())]);
}

/// RFC 9112 §6.2: a body with `Content-Length` arrives with that length,
/// not re-chunked: a small one (kept in memory for a retry) and one over
/// the pool's `replay_limit` (64 KiB, streamed).
#[test]
fn upload_with_content_length() {
    let backend = Backend::answering(|r| {
        let answer = format!("{} bytes", r.body.len());
        let answer = format!(
            "HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        answer.into_bytes()
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let mut c = Client::connect(g.http_port);
    for len in [1000, 200 * 1024] {
        let data = pattern(len);
        c.send(
            format!("PUT /up/{len} HTTP/1.1\r\nHost: t.test\r\nContent-Length: {len}\r\n\r\n")
                .as_bytes(),
        );
        c.send(&data);
        let reply = c.reply(false);
        assert_eq!((reply.status, reply.end), (201, End::Complete), "{reply:?}");
        assert_eq!(reply.body_text(), format!("{len} bytes"));
        let r = backend
            .requests()
            .into_iter()
            .find(|r| r.line == format!("PUT /up/{len} HTTP/1.1"))
            .unwrap();
        assert_eq!(
            r.all("content-length"),
            [len.to_string()],
            "{:?}",
            r.headers
        );
        assert!(r.header("transfer-encoding").is_none(), "{:?}", r.headers);
        assert!(
            r.complete && r.body == data,
            "the body of {len} bytes differs"
        );
    }
    // The streamed upload was written to its end: the connection is reused.
    let reply = c.exchange(&get("/next"), false);
    assert_eq!((reply.status, reply.body_text()), (201, "0 bytes".into()));
    assert_eq!(backend.accepted(), 1);
}

/// RFC 9112 §9.5: a backend may answer while the request body is still
/// arriving. Here it echoes each chunk of an upload as soon as it has it,
/// and the client sends the next chunk only once the echo of the one
/// before came back: gangway must move both bodies at once (a proxy that
/// waited for the whole upload, or for the whole answer, would stall).
#[test]
fn upload_and_answer_stream_at_the_same_time() {
    let backend = Backend::start(|peer| {
        if peer.request_head().is_none()
            || !peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        {
            return;
        }
        while let Some(data) = peer.chunk() {
            let mut echo = format!("{:x}\r\n", data.len()).into_bytes();
            echo.extend_from_slice(&data);
            echo.extend_from_slice(b"\r\n");
            if !peer.send(&echo) || data.is_empty() {
                return;
            }
        }
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let mut c = Client::connect(g.http_port);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\n\r\n");
    let head = c.read_until(b"\r\n\r\n");
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    for i in 0..5 {
        let piece = format!("piece {i};");
        c.send(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes());
        c.read_until(piece.as_bytes());
    }
    c.send(b"0\r\n\r\n");
    c.read_until(b"0\r\n\r\n");
    assert_eq!(backend.accepted(), 1);
}

/// RFC 9110 §15.5.14, RFC 9112 §9.5 and §9.6: a backend may answer `413` as
/// soon as it sees the head of a 10 MiB upload, and close. gangway stops
/// sending the body there, passes the 413 on to the client, and then
/// closes the client connection too: the rest of the client's body was
/// never read, so the connection cannot carry another request (hyper's
/// server does not drain an unread body).
#[test]
fn early_413_during_a_large_upload() {
    const LEN: usize = 10 * 1024 * 1024;
    let backend = Backend::start(|peer| {
        if peer.request_head().is_some() {
            peer.send(
                b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large",
            );
        }
        // Closes with the body unread (the kernel may reset the
        // connection).
    });
    let dir = TempDir::new();
    let g = gangway_for(&dir, &backend);
    let mut c = Client::connect(g.http_port);
    c.send(
        format!("POST /big HTTP/1.1\r\nHost: t.test\r\nContent-Length: {LEN}\r\n\r\n").as_bytes(),
    );
    let uploader = Uploader::start(&c, LEN);
    let started = Instant::now();
    let reply = c.reply(false);
    assert_eq!(
        (reply.status, reply.end),
        (413, End::Complete),
        "{reply:?}\n{}",
        g.output()
    );
    assert_eq!(reply.body_text(), "too large");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Then the client connection ends.
    let mut rest = [0u8; 1024];
    let after = c.stream.read(&mut rest);
    let closed = match &after {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    };
    assert!(
        closed,
        "the client connection should close after the 413: {after:?}"
    );
    // The writer stops: its writes fail on the closed connection (unless
    // the 10 MiB all fit in the sockets' buffers before it closed).
    uploader.finish();
    assert_eq!(backend.accepted(), 1);
}
