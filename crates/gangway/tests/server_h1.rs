//! gangway's HTTP/1.1 server on a plain listener (no TLS, no h2c: the
//! default `HTTP_PORT`), as a client sees it on the wire, through the real
//! binary and a real backend:
//!
//! - persistent connections and pipelining (RFC 9112 §9.3, §9.3.2), and
//!   the association of each response with its request (§9.2);
//! - HTTP/1.0 clients, with and without `Connection: keep-alive` (§9.3,
//!   Appendix C.2.2), and `Connection: close` (§9.6);
//! - message body length (§6.3): a HEAD response has no body (rule 1);
//!   a response whose length the backend did not know reaches an
//!   HTTP/1.1 client chunked (rule 4, §7.1) and an HTTP/1.0 client
//!   delimited by the close of the connection (rule 8, §6.1);
//! - request bodies framed by `Content-Length` (§6.2) or chunked with
//!   a trailer section (§7.1, §7.1.2), each followed in the same write by
//!   another request;
//! - a response sent before the request body was read: the client gets
//!   all of it before the connection closes, never a reset (§9.6);
//! - `Expect: 100-continue` (RFC 9110 §10.1.1) and 413 over a route's
//!   `max_body_size` (RFC 9110 §15.5.14);
//! - `Date` on every response (RFC 9110 §6.6.1);
//! - the header timeout for idle and half-sent requests (§9.5) and the
//!   graceful stop on SIGTERM (§9.6).
//!
//! Clients are raw `TcpStream`s that write exact bytes and parse what
//! comes back (status line, fields, and a body framed by length, chunked
//! coding or close). The backend is a raw-socket server written here
//! that records every request it gets (body and trailers included) and
//! answers by path. Every read is bounded (nothing within [`STEP`] is
//! reported as a hang), every backend thread is stopped and joined when
//! the test ends, passed or failed, and gangway is killed by `Gangway`'s
//! `Drop`.
#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::wire::{decode_chunked, field, find, lock, split_head, Fields};
use common::{write_atomic, GANGWAY, NO_NETWORK, WAIT};
use gangway_testkit::{wait_until, Gangway, GangwayBuilder, TempDir};
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest a single step may take before the test calls it a hang.
const STEP: Duration = Duration::from_secs(10);
/// How often blocked backend threads look at their stop flag.
const POLL: Duration = Duration::from_millis(20);
/// The longest any backend thread lives, whatever happens.
const THREAD_LIFETIME: Duration = Duration::from_secs(120);
/// The host routed to the backend.
const HOST: &str = "t.test";
/// A host no route serves.
const NO_ROUTE_HOST: &str = "nowhere.test";
/// The pieces of every response of unknown length, sent apart.
const PIECES: [&str; 3] = ["one\n", "two\n", "three\n"];
/// The pause before each piece: gangway cannot know the length up front.
const PIECE_GAP: Duration = Duration::from_millis(50);
/// How long `/slow…` makes its answer wait.
const SLOW: Duration = Duration::from_millis(300);
/// The `Date` the backend sends on `/dated`.
const BACKEND_DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

/// Bytes for an assertion message: the first `max`, as text.
fn shown(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
    if bytes.len() > max {
        format!("{text:?}… ({} bytes in all)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

/// `len` bytes of a pattern that does not repeat every 256 bytes.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

// ---------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------

/// One request as the backend received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    /// Names in lower case.
    headers: Fields,
    /// The body, chunked coding removed.
    body: Vec<u8>,
    /// The trailer section of a chunked body, names in lower case.
    trailers: Fields,
}

#[derive(Default)]
struct BackendState {
    stop: AtomicBool,
    /// `/hold…` requests are answered once this is set.
    released: AtomicBool,
    seen: Mutex<Vec<Seen>>,
    /// A handle on every accepted connection, to unblock its thread at
    /// the end.
    streams: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A raw HTTP/1.1 backend on 127.0.0.1, one thread per connection,
/// answering by path:
///
/// - `HEAD` anything: the head a `GET` would get, without its body;
///   `Transfer-Encoding: chunked` for `/stream`, else `Content-Length`;
/// - `/stream`: [`PIECES`] as a chunked body, [`PIECE_GAP`] apart;
/// - `/until-close`: [`PIECES`] without framing, then it closes;
/// - `/hold…`: the echo below once [`Backend::release`] was called;
/// - `/slow…`: the echo below after [`SLOW`];
/// - `/dated`: the echo below with `Date:` [`BACKEND_DATE`];
/// - anything else: `200` with the body `<method> <target>` framed by
///   `Content-Length`, kept alive, and no `Date`.
///
/// Every request it reads whole is recorded. Dropping it stops and joins
/// every thread.
struct Backend {
    port: u16,
    state: Arc<BackendState>,
    acceptor: Option<JoinHandle<()>>,
}

impl Backend {
    fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(BackendState::default());
        let s = Arc::clone(&state);
        let acceptor = thread::spawn(move || {
            let end = Instant::now() + THREAD_LIFETIME;
            while !s.stop.load(Ordering::Relaxed) && Instant::now() < end {
                match listener.accept() {
                    Ok((stream, _)) => BackendConn::spawn(&s, stream, end),
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Backend {
            port,
            state,
            acceptor: Some(acceptor),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        lock(&self.state.seen).clone()
    }

    /// The targets of the requests received so far, in order.
    fn targets(&self) -> Vec<String> {
        self.seen().into_iter().map(|r| r.target).collect()
    }

    /// Waits (up to [`STEP`]) until a request for `target` has arrived.
    fn wait_for(&self, target: &str) -> Seen {
        let end = Instant::now() + STEP;
        loop {
            if let Some(r) = self.seen().into_iter().find(|r| r.target == target) {
                return r;
            }
            assert!(
                Instant::now() < end,
                "the backend got no request for {target} within {STEP:?}; it got {:?}",
                self.targets()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Lets the `/hold…` requests be answered.
    fn release(&self) {
        self.state.released.store(true, Ordering::SeqCst);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in lock(&self.state.streams).iter() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let threads = std::mem::take(&mut *lock(&self.state.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// One connection from gangway to the backend.
struct BackendConn {
    stream: TcpStream,
    /// Bytes received and not yet taken.
    buf: Vec<u8>,
    state: Arc<BackendState>,
    /// When the thread gives up, whatever happens.
    end: Instant,
}

impl BackendConn {
    fn spawn(state: &Arc<BackendState>, stream: TcpStream, end: Instant) {
        let ready = stream.set_nonblocking(false).is_ok()
            && stream.set_read_timeout(Some(POLL)).is_ok()
            && stream.set_write_timeout(Some(STEP)).is_ok();
        if !ready {
            return;
        }
        if let Ok(clone) = stream.try_clone() {
            lock(&state.streams).push(clone);
        }
        let mut conn = BackendConn {
            stream,
            buf: Vec::new(),
            state: Arc::clone(state),
            end,
        };
        let handle = thread::spawn(move || conn.serve());
        lock(&state.threads).push(handle);
    }

    fn stopped(&self) -> bool {
        self.state.stop.load(Ordering::Relaxed) || Instant::now() >= self.end
    }

    /// Reads more bytes; false once gangway closed the connection or the
    /// test is over.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        while !self.stopped() {
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// The next whole request; `None` when the connection ends first.
    fn request(&mut self) -> Option<Seen> {
        let end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at;
            }
            if !self.fill() {
                return None;
            }
        };
        let head: Vec<u8> = self.buf.drain(..end + 4).collect();
        let (line, headers) = split_head(&head[..end]);
        let mut words = line.split(' ');
        let mut seen = Seen {
            method: words.next().unwrap_or_default().to_owned(),
            target: words.next().unwrap_or_default().to_owned(),
            headers,
            body: Vec::new(),
            trailers: Vec::new(),
        };
        let chunked = field(&seen.headers, "transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let length = field(&seen.headers, "content-length").and_then(|v| v.parse().ok());
        if chunked {
            loop {
                match decode_chunked(&self.buf) {
                    Ok(Some(c)) => {
                        self.buf.drain(..c.used);
                        (seen.body, seen.trailers) = (c.data, c.trailers);
                        break;
                    }
                    Ok(None) if self.fill() => {}
                    Ok(None) | Err(_) => return None,
                }
            }
        } else if let Some(len) = length {
            while self.buf.len() < len {
                if !self.fill() {
                    return None;
                }
            }
            seen.body = self.buf.drain(..len).collect();
        }
        Some(seen)
    }

    fn serve(&mut self) {
        while let Some(request) = self.request() {
            lock(&self.state.seen).push(request.clone());
            if !self.answer(&request) {
                break;
            }
        }
        // Really closed, although the backend keeps a handle on it.
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Answers one request; false when the connection is to end.
    fn answer(&mut self, r: &Seen) -> bool {
        let path = r.target.split('?').next().unwrap_or_default().to_owned();
        let echo = format!("{} {}", r.method, r.target);
        if r.method == "HEAD" {
            let framing = if path == "/stream" {
                "Transfer-Encoding: chunked".to_owned()
            } else {
                format!("Content-Length: {}", format!("GET {}", r.target).len())
            };
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{framing}\r\n\r\n");
            return self.send(head.as_bytes());
        }
        match path.as_str() {
            "/stream" => self.send_pieces(true),
            "/until-close" => {
                self.send_pieces(false);
                false
            }
            "/dated" => self.send(&echo_response(&echo, &format!("Date: {BACKEND_DATE}\r\n"))),
            p if p.starts_with("/hold") => {
                while !self.state.released.load(Ordering::SeqCst) && !self.stopped() {
                    thread::sleep(POLL);
                }
                self.send(&echo_response(&echo, ""))
            }
            p if p.starts_with("/slow") => {
                self.pause(SLOW);
                self.send(&echo_response(&echo, ""))
            }
            _ => self.send(&echo_response(&echo, "")),
        }
    }

    /// A response of unknown length: chunked, or delimited by the close.
    fn send_pieces(&mut self, chunked: bool) -> bool {
        let head: &[u8] = if chunked {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
        };
        if !self.send(head) {
            return false;
        }
        for piece in PIECES {
            self.pause(PIECE_GAP);
            let bytes = if chunked {
                format!("{:x}\r\n{piece}\r\n", piece.len())
            } else {
                piece.to_owned()
            };
            if !self.send(bytes.as_bytes()) {
                return false;
            }
        }
        !chunked || self.send(b"0\r\n\r\n")
    }

    fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Sleeps `d`, or less when the test is over.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.stopped() {
            thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
        }
    }
}

fn echo_response(body: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------
// gangway in front of the backend
// ---------------------------------------------------------------------------

/// `HOST` goes to the backend; `/limited…` on it too, with a 1 KiB body
/// limit; `/fixed…` is answered by gangway itself.
fn config(backend_port: u16) -> String {
    format!(
        r#"[[pools]]
name = "p"
targets = ["127.0.0.1:{backend_port}"]

[[routes]]
name = "app"
hosts = ["{HOST}"]
pool = "p"

[[routes]]
name = "limited"
hosts = ["{HOST}"]
path = {{ prefix = "/limited" }}
pool = "p"
max_body_size = "1KiB"

[[routes]]
name = "fixed"
hosts = ["{HOST}"]
path = {{ prefix = "/fixed" }}
respond = {{ status = 200, body = "fixed answer\n" }}
"#
    )
}

/// Starts gangway with `file` as its configuration and `env`, and waits
/// until it is ready. Its ports were free a moment before; when a test
/// running beside this one took one meanwhile, gangway exits at once and
/// is started again on others.
fn spawn_gangway(file: &Path, env: &[(&str, &str)]) -> Gangway {
    let mut last = String::new();
    for _ in 0..5 {
        // One worker, as bench/ runs it: the runtime then runs on the main
        // thread (the other suites run one worker per CPU).
        let mut builder = GangwayBuilder::new(GANGWAY)
            .network(NO_NETWORK)
            .env("GANGWAY_WORKERS", "1")
            .env("GANGWAY_CONFIG", file.to_string_lossy());
        for (k, v) in env {
            builder = builder.env(*k, *v);
        }
        let mut g = builder.spawn();
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
        g.wait_exit(Duration::from_secs(1));
        last = g.output();
        if !last.contains("Address already in use") {
            break;
        }
    }
    panic!("gangway did not start:\n{last}");
}

/// gangway and its backend. (Fields drop in order: gangway first.)
struct Setup {
    g: Gangway,
    backend: Backend,
    _dir: TempDir,
}

impl Setup {
    fn start() -> Setup {
        Setup::start_with(&[])
    }

    fn start_with(env: &[(&str, &str)]) -> Setup {
        let backend = Backend::start();
        let dir = TempDir::new();
        let file = dir.join("gangway.toml");
        write_atomic(&file, &config(backend.port));
        let g = spawn_gangway(&file, env);
        Setup {
            g,
            backend,
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        Client::connect(self.g.http_port)
    }
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

/// How a response's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body: a response to HEAD, 1xx, 204, 304.
    None,
    Length(usize),
    Chunked,
    /// Until the connection closes.
    Close,
}

/// One final response as the client received it.
struct Response {
    status_line: String,
    status: u16,
    /// The status lines of the 1xx responses before it.
    interim: Vec<String>,
    /// Names in lower case.
    headers: Fields,
    framing: Framing,
    body: Vec<u8>,
    trailers: Fields,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        field(&self.headers, name)
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether a `Connection` field lists `option`.
    fn connection_has(&self, option: &str) -> bool {
        self.all("connection")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|o| o.trim().eq_ignore_ascii_case(option))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status_line)?;
        for line in &self.interim {
            write!(f, " (after {line})")?;
        }
        for (name, value) in &self.headers {
            write!(f, "\n  {name}: {value}")?;
        }
        write!(f, "\n  [{:?}] {}", self.framing, shown(&self.body, 300))?;
        if !self.trailers.is_empty() {
            write!(f, "\n  trailers {:?}", self.trailers)?;
        }
        Ok(())
    }
}

/// How a connection ended while the client waited.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// A clean close (FIN).
    Closed,
    /// A reset, or another error.
    Broken(String),
    /// Still open when the wait was over.
    Open,
}

enum Fill {
    Data,
    Eof,
    Broken(io::Error),
    Hung,
}

/// A client connection to gangway, kept across requests.
struct Client {
    stream: TcpStream,
    /// Bytes received and not yet taken.
    buf: Vec<u8>,
    /// Every byte received, for assertion messages.
    received: Vec<u8>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        stream.set_write_timeout(Some(STEP)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
            received: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            panic!(
                "sending {} failed: {e}; received so far: {}",
                shown(bytes, 200),
                shown(&self.received, 600)
            );
        }
    }

    fn fill(&mut self) -> Fill {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Fill::Eof,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.received.extend_from_slice(&chunk[..n]);
                Fill::Data
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Fill::Hung,
            Err(e) if e.kind() == ErrorKind::Interrupted => Fill::Data,
            Err(e) => Fill::Broken(e),
        }
    }

    /// Reads more; panics, saying what `what` was waiting for, when the
    /// connection ends or nothing comes within [`STEP`].
    fn more(&mut self, what: &str, waiting_for: &str) {
        let problem = match self.fill() {
            Fill::Data => return,
            Fill::Eof => "gangway closed the connection".to_owned(),
            Fill::Broken(e) => format!("the connection broke ({e})"),
            Fill::Hung => format!("nothing more arrived within {STEP:?} (a hang)"),
        };
        panic!(
            "{what}: {problem} while waiting for {waiting_for}; received on this connection: {}",
            shown(&self.received, 1200)
        );
    }

    /// One response head: the status line and the fields.
    fn head(&mut self, what: &str) -> (String, u16, Fields) {
        let end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at;
            }
            self.more(what, "a response head");
        };
        let head: Vec<u8> = self.buf.drain(..end + 4).collect();
        let (line, fields) = split_head(&head[..end]);
        // Stray bytes before a response (say, a body a HEAD response
        // should not have had) show up here.
        let status = line
            .strip_prefix("HTTP/1.")
            .filter(|rest| rest.starts_with(['0', '1']) && rest.as_bytes().get(1) == Some(&b' '))
            .and_then(|rest| rest.get(2..5))
            .filter(|code| code.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("{what}: expected a status line, got {}", shown(&head, 300)));
        (line, status, fields)
    }

    /// The next final response (1xx ones are collected on the way).
    fn response(&mut self, what: &str) -> Response {
        self.read_response(what, false)
    }

    /// The next final response, to a HEAD request.
    fn response_to_head(&mut self, what: &str) -> Response {
        self.read_response(what, true)
    }

    fn read_response(&mut self, what: &str, to_head: bool) -> Response {
        let mut interim = Vec::new();
        let (status_line, status, headers) = loop {
            let (line, status, fields) = self.head(what);
            if (100..200).contains(&status) && status != 101 {
                interim.push(line);
                continue;
            }
            break (line, status, fields);
        };
        let mut response = Response {
            status_line,
            status,
            interim,
            headers,
            framing: Framing::None,
            body: Vec::new(),
            trailers: Vec::new(),
        };
        response.framing = framing(&response, to_head, what);
        match response.framing {
            Framing::None => {}
            Framing::Length(len) => {
                while self.buf.len() < len {
                    self.more(what, &format!("a body of {len} bytes"));
                }
                response.body = self.buf.drain(..len).collect();
            }
            Framing::Chunked => loop {
                match decode_chunked(&self.buf) {
                    Ok(Some(c)) => {
                        self.buf.drain(..c.used);
                        (response.body, response.trailers) = (c.data, c.trailers);
                        break;
                    }
                    Ok(None) => self.more(what, "the rest of a chunked body"),
                    Err(e) => panic!(
                        "{what}: gangway sent a broken chunked body ({e}): {}",
                        shown(&self.received, 1200)
                    ),
                }
            },
            Framing::Close => loop {
                match self.fill() {
                    Fill::Data => {}
                    Fill::Eof => {
                        response.body = std::mem::take(&mut self.buf);
                        break;
                    }
                    Fill::Broken(e) => panic!(
                        "{what}: the connection broke ({e}) instead of closing at the end of a body delimited by the close; received: {}",
                        shown(&self.received, 1200)
                    ),
                    Fill::Hung => panic!(
                        "{what}: a body delimited by the close did not end within {STEP:?}; received: {}",
                        shown(&self.received, 1200)
                    ),
                }
            },
        }
        response
    }

    /// Waits up to `within` for the connection to end; returns the bytes
    /// that arrived meanwhile and how it ended.
    fn ending(&mut self, within: Duration) -> (Vec<u8>, Ending) {
        let deadline = Instant::now() + within;
        let ending = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ending::Open;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.fill() {
                Fill::Data | Fill::Hung => {}
                Fill::Eof => break Ending::Closed,
                Fill::Broken(e) => break Ending::Broken(e.to_string()),
            }
        };
        self.stream.set_read_timeout(Some(STEP)).unwrap();
        (std::mem::take(&mut self.buf), ending)
    }

    /// Asserts that gangway closes the connection cleanly within
    /// `within`, sending nothing more; returns how long it took.
    fn expect_closed(&mut self, within: Duration, what: &str) -> Duration {
        let start = Instant::now();
        let (bytes, ending) = self.ending(within);
        assert!(
            bytes.is_empty(),
            "{what}: expected the connection to close, but gangway sent {}",
            shown(&bytes, 600)
        );
        assert_eq!(
            ending,
            Ending::Closed,
            "{what}: expected a clean close (FIN) within {within:?}"
        );
        start.elapsed()
    }

    /// Asserts that nothing arrives for `d` and the connection stays open.
    fn expect_quiet(&mut self, d: Duration, what: &str) {
        let (bytes, ending) = self.ending(d);
        assert!(
            bytes.is_empty() && ending == Ending::Open,
            "{what}: expected silence on an open connection for {d:?}, got {} and {ending:?}",
            shown(&bytes, 600)
        );
    }
}

/// The framing of `r` (RFC 9112 §6.3); panics on a response no client
/// could delimit.
fn framing(r: &Response, to_head: bool, what: &str) -> Framing {
    if to_head || r.status < 200 || r.status == 204 || r.status == 304 {
        return Framing::None;
    }
    if let Some(te) = r.header("transfer-encoding") {
        assert!(
            r.header("content-length").is_none(),
            "{what}: a response with both Transfer-Encoding and Content-Length: {r:?}"
        );
        let last = te.rsplit(',').next().unwrap_or_default().trim();
        return if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::Close
        };
    }
    let lengths = r.all("content-length");
    match lengths.as_slice() {
        [] => Framing::Close,
        [one] => Framing::Length(
            one.parse()
                .unwrap_or_else(|_| panic!("{what}: invalid Content-Length in {r:?}")),
        ),
        _ => panic!("{what}: several Content-Length fields in {r:?}"),
    }
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------------------
// Persistence and pipelining
// ---------------------------------------------------------------------------

/// RFC 9112 §9.3 and §6.2: fifty requests one after another on one
/// connection are all answered on it, each body framed by
/// `Content-Length`, none closing the connection, which stays open
/// afterwards.
#[test]
fn fifty_requests_on_one_kept_alive_connection() {
    let s = Setup::start();
    let mut c = s.client();
    for i in 0..50 {
        let target = format!("/keep/{i}");
        let expected = format!("GET {target}");
        c.send(&get(&target));
        let r = c.response(&format!("request {} of 50", i + 1));
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(r.framing, Framing::Length(expected.len()), "{r:?}");
        assert_eq!(r.text(), expected, "{r:?}");
        assert!(!r.connection_has("close"), "request {i}: {r:?}");
    }
    c.expect_quiet(
        Duration::from_millis(300),
        "the connection after 50 responses",
    );
    let expected: Vec<String> = (0..50).map(|i| format!("/keep/{i}")).collect();
    assert_eq!(s.backend.targets(), expected);
}

/// RFC 9112 §9.3.2 and §9.2: three requests sent in one write are
/// answered in the order they were sent, each response belonging to its
/// request, although the first one is the slowest to answer.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = Setup::start();
    let mut c = s.client();
    let targets = ["/slow/1", "/pipe/2", "/pipe/3"];
    let requests: Vec<u8> = targets.iter().flat_map(|t| get(t)).collect();
    c.send(&requests);
    for (i, target) in targets.iter().enumerate() {
        let r = c.response(&format!("pipelined request {} ({target})", i + 1));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), format!("GET {target}"), "{r:?}");
    }
    c.expect_quiet(Duration::from_millis(200), "after three responses");
    assert_eq!(s.backend.targets(), targets);
}

// ---------------------------------------------------------------------------
// HTTP/1.0 and Connection: close
// ---------------------------------------------------------------------------

/// RFC 9112 §9.3: an HTTP/1.0 request without the `keep-alive`
/// connection option is answered, then the connection is closed; the
/// response does not offer to keep it.
#[test]
fn http10_without_keep_alive_is_closed_after_the_response() {
    let s = Setup::start();
    let mut c = s.client();
    c.send(format!("GET /old HTTP/1.0\r\nHost: {HOST}\r\n\r\n").as_bytes());
    let r = c.response("an HTTP/1.0 request");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "GET /old", "{r:?}");
    assert!(!r.connection_has("keep-alive"), "{r:?}");
    c.expect_closed(STEP, "after the response to an HTTP/1.0 request");
}

/// RFC 9112 Appendix C.2.2: an HTTP/1.0 client that sends
/// `Connection: keep-alive` gets `Connection: keep-alive` back with a
/// `Content-Length`, and its next requests on the same connection are
/// answered; a request without the option ends it.
#[test]
fn http10_keep_alive_is_honoured() {
    let s = Setup::start();
    let mut c = s.client();
    for i in 1..=2 {
        c.send(
            format!("GET /old/{i} HTTP/1.0\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\n")
                .as_bytes(),
        );
        let r = c.response(&format!("HTTP/1.0 keep-alive request {i}"));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), format!("GET /old/{i}"), "{r:?}");
        assert!(r.connection_has("keep-alive"), "{r:?}");
        assert!(matches!(r.framing, Framing::Length(_)), "{r:?}");
    }
    c.send(format!("GET /old/3 HTTP/1.0\r\nHost: {HOST}\r\n\r\n").as_bytes());
    let r = c.response("the HTTP/1.0 request without keep-alive");
    assert_eq!(r.text(), "GET /old/3", "{r:?}");
    c.expect_closed(STEP, "after an HTTP/1.0 request without keep-alive");
    assert_eq!(s.backend.targets(), ["/old/1", "/old/2", "/old/3"]);
}

/// RFC 9112 §9.6: after a request with `Connection: close` the response
/// says `close` and gangway closes the connection; a request pipelined
/// behind it is not processed.
#[test]
fn connection_close_from_the_client() {
    let s = Setup::start();
    let mut c = s.client();
    let close = format!("GET /last HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    c.send(&[close.into_bytes(), get("/never")].concat());
    let r = c.response("a request with Connection: close");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "GET /last", "{r:?}");
    assert!(r.connection_has("close"), "{r:?}");
    c.expect_closed(STEP, "after the response to Connection: close");
    assert_eq!(s.backend.targets(), ["/last"]);
}

// ---------------------------------------------------------------------------
// Response framing
// ---------------------------------------------------------------------------

/// RFC 9112 §6.3 (rule 1) and RFC 9110 §9.3.2, §8.6: a response to HEAD
/// ends with its head. It carries the length a GET would have, and no
/// body byte follows: not for a backend's `Content-Length`, not for its
/// chunked coding (no last chunk), not for gangway's own 404 (whose
/// `Content-Length`, if sent, is that of the GET's). The GET pipelined
/// behind them is answered right after.
#[test]
fn head_responses_have_no_body() {
    let s = Setup::start();
    let mut probe = s.client();
    probe.send(format!("GET / HTTP/1.1\r\nHost: {NO_ROUTE_HOST}\r\n\r\n").as_bytes());
    let not_found = probe.response("a GET to a host without a route");
    assert_eq!(not_found.status, 404, "{not_found:?}");

    let mut c = s.client();
    let heads = format!(
        "HEAD /h HTTP/1.1\r\nHost: {HOST}\r\n\r\nHEAD /stream HTTP/1.1\r\nHost: {HOST}\r\n\r\nHEAD / HTTP/1.1\r\nHost: {NO_ROUTE_HOST}\r\n\r\n"
    );
    c.send(&[heads.into_bytes(), get("/after-head")].concat());

    let r = c.response_to_head("HEAD /h");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-length"), Some("6"), "{r:?}");
    assert!(r.header("transfer-encoding").is_none(), "{r:?}");

    let r = c.response_to_head("HEAD /stream (chunked for a GET)");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("content-length").is_none(), "{r:?}");

    let r = c.response_to_head("HEAD to a host without a route");
    assert_eq!(r.status, 404, "{r:?}");
    if let Some(len) = r.header("content-length") {
        assert_eq!(len, not_found.body.len().to_string(), "{r:?}");
    }

    let r = c.response("the GET pipelined after three HEADs");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "GET /after-head", "{r:?}");
    c.expect_quiet(Duration::from_millis(200), "after the pipelined GET");
}

/// RFC 9112 §6.3 and §7.1: a response whose length the backend did not
/// know (chunked, or delimited by its close: rule 8) reaches an HTTP/1.1
/// client chunked (rule 4), whole, and the connection stays usable.
#[test]
fn unknown_length_reaches_http11_chunked() {
    let s = Setup::start();
    let mut c = s.client();
    for target in ["/stream", "/until-close"] {
        c.send(&get(target));
        let r = c.response(&format!("GET {target}"));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.framing, Framing::Chunked, "{r:?}");
        assert_eq!(r.text(), PIECES.concat(), "{r:?}");
        assert!(!r.connection_has("close"), "{r:?}");
    }
    c.send(&get("/after-stream"));
    let r = c.response("a GET after two chunked responses");
    assert_eq!(r.text(), "GET /after-stream", "{r:?}");
}

/// RFC 9112 §6.3 (rule 8) and §6.1 (no `Transfer-Encoding` in a response
/// to HTTP/1.0): the same responses reach an HTTP/1.0 client without
/// framing, delimited by the close of the connection, also when it asked
/// to keep the connection (which then cannot be kept).
#[test]
fn unknown_length_reaches_http10_delimited_by_close() {
    let s = Setup::start();
    for (target, option) in [
        ("/stream", ""),
        ("/stream", "Connection: keep-alive\r\n"),
        ("/until-close", ""),
    ] {
        let what = format!("HTTP/1.0 GET {target} {option:?}");
        let mut c = s.client();
        c.send(format!("GET {target} HTTP/1.0\r\nHost: {HOST}\r\n{option}\r\n").as_bytes());
        let r = c.response(&what);
        assert_eq!(r.status, 200, "{what}: {r:?}");
        assert_eq!(r.framing, Framing::Close, "{what}: {r:?}");
        assert_eq!(r.text(), PIECES.concat(), "{what}: {r:?}");
        assert!(!r.connection_has("keep-alive"), "{what}: {r:?}");
    }
}

// ---------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------

/// RFC 9112 §6.2 and §9.3.2: a body framed by `Content-Length`, followed
/// in the same write by a GET, reaches the backend byte for byte (bytes
/// that look like a request inside it stay body), and both requests are
/// answered in order.
#[test]
fn content_length_body_then_pipelined_get() {
    let s = Setup::start();
    let body: &[u8] = b"line one\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n\x00\xff";
    let post = format!(
        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut c = s.client();
    c.send(&[post.as_bytes(), body, &get("/next")].concat());
    let r = c.response("the POST");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "POST /upload"),
        "{r:?}"
    );
    let r = c.response("the GET behind the POST");
    assert_eq!((r.status, r.text().as_str()), (200, "GET /next"), "{r:?}");

    let seen = s.backend.seen();
    let targets: Vec<&str> = seen.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/upload", "/next"]);
    assert!(
        seen[0].body == body,
        "the backend got the body {}",
        shown(&seen[0].body, 200)
    );
    assert_eq!(seen[1].method, "GET");
    assert!(seen[1].body.is_empty(), "{:?}", seen[1]);
}

/// RFC 9112 §7.1, §7.1.1 and §7.1.2: a chunked body with a chunk
/// extension and a trailer section, followed in the same write by a GET:
/// the backend gets the data exactly (a chunk whose data looks like a
/// last chunk included) and the trailer field, and both requests are
/// answered in order.
#[test]
fn chunked_body_with_trailer_then_pipelined_get() {
    let s = Setup::start();
    let chunked: &[u8] =
        b"5\r\nhello\r\n5;note=tricky\r\n0\r\n\r\n\r\n6\r\n world\r\n0\r\nX-Checksum: 1a2b3c\r\n\r\n";
    let post =
        format!("POST /chunked HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut c = s.client();
    c.send(&[post.as_bytes(), chunked, &get("/next")].concat());
    let r = c.response("the chunked POST");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "POST /chunked"),
        "{r:?}"
    );
    let r = c.response("the GET behind the chunked POST");
    assert_eq!((r.status, r.text().as_str()), (200, "GET /next"), "{r:?}");

    let seen = s.backend.seen();
    let targets: Vec<&str> = seen.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/chunked", "/next"]);
    assert!(
        seen[0].body == b"hello0\r\n\r\n world",
        "the backend got the body {}",
        shown(&seen[0].body, 200)
    );
    assert_eq!(
        seen[0].trailers,
        [("x-checksum".to_owned(), "1a2b3c".to_owned())],
        "{:?}",
        seen[0]
    );
    assert!(seen[1].body.is_empty(), "{:?}", seen[1]);
}

/// Writes to a client connection from a thread of its own; the
/// connection is shut down and the thread joined when this is dropped
/// before [`Uploader::finish`] (a failed test).
struct Uploader {
    stream: TcpStream,
    handle: Option<JoinHandle<io::Result<()>>>,
}

impl Uploader {
    fn start(client: &Client, bytes: Vec<u8>) -> Uploader {
        let mut stream = client.stream.try_clone().unwrap();
        let handle = thread::spawn(move || {
            for piece in bytes.chunks(16 * 1024) {
                stream.write_all(piece)?;
            }
            Ok(())
        });
        Uploader {
            stream: client.stream.try_clone().unwrap(),
            handle: Some(handle),
        }
    }

    /// How the writing ended.
    fn finish(mut self) -> io::Result<()> {
        self.handle
            .take()
            .map_or(Ok(()), |h| h.join().unwrap_or(Ok(())))
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

/// RFC 9112 §9.6: a POST to a host without a route is answered 404
/// without its body being read. The client, still sending the body, gets
/// the whole 404, and then a clean close: gangway does not reset the
/// connection under a response the client has not read, and does not
/// forward anything.
#[test]
fn unread_body_gets_a_whole_404_then_a_clean_close() {
    let s = Setup::start();
    let body = pattern(256 * 1024);
    let mut c = s.client();
    c.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: {NO_ROUTE_HOST}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let upload = Uploader::start(&c, body);
    let r = c.response("a POST to a host without a route");
    assert_eq!(r.status, 404, "{r:?}");
    let uploaded = upload.finish();
    assert!(
        uploaded.is_ok(),
        "sending the body of the POST failed: {uploaded:?}"
    );
    c.expect_closed(STEP, "after the 404 to a POST whose body was not read");
    assert!(s.backend.seen().is_empty(), "{:?}", s.backend.targets());
}

// ---------------------------------------------------------------------------
// Expect: 100-continue
// ---------------------------------------------------------------------------

/// RFC 9110 §10.1.1 and §15.2.1: a client that sends only the head with
/// `Expect: 100-continue` gets `HTTP/1.1 100 Continue`, then sends the
/// body and gets the final response; the backend gets the body whole.
#[test]
fn expect_100_continue_before_the_body() {
    let s = Setup::start();
    let mut c = s.client();
    c.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    );
    let (line, status, fields) = c.head("a POST waiting for 100 Continue");
    assert_eq!(status, 100, "{line} {fields:?}");
    assert!(line.starts_with("HTTP/1.1 100 "), "{line}");
    c.send(b"hello world");
    let r = c.response("the POST after 100 Continue");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "POST /upload"),
        "{r:?}"
    );
    assert!(r.interim.is_empty(), "a second 1xx: {r:?}");
    assert_eq!(s.backend.wait_for("/upload").body, b"hello world");
}

/// RFC 9110 §10.1.1 and §15.5.14: when the declared `Content-Length` is
/// over the route's `max_body_size`, the client that expects 100-continue
/// gets 413 at once and no `100 Continue`; nothing is forwarded.
#[test]
fn expect_100_continue_over_the_limit_gets_413_without_100() {
    let s = Setup::start();
    let mut c = s.client();
    c.send(
        format!(
            "POST /limited/upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 2048\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.response("a POST over max_body_size expecting 100-continue");
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.interim.is_empty(), "1xx before the 413: {r:?}");
    assert!(s.backend.seen().is_empty(), "{:?}", s.backend.targets());
}

/// RFC 9110 §10.1.1 and §15.2: an HTTP/1.0 request's 100-continue
/// expectation is ignored; no 1xx goes to an HTTP/1.0 client. The body
/// sent after a pause is read and forwarded.
#[test]
fn expect_100_continue_from_http10_is_ignored() {
    let s = Setup::start();
    let mut c = s.client();
    c.send(
        format!(
            "POST /upload HTTP/1.0\r\nHost: {HOST}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    );
    c.expect_quiet(
        Duration::from_secs(1),
        "an HTTP/1.0 request head with Expect: 100-continue",
    );
    c.send(b"hello");
    let r = c.response("the HTTP/1.0 POST");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "POST /upload"),
        "{r:?}"
    );
    assert!(r.interim.is_empty(), "a 1xx to HTTP/1.0: {r:?}");
    assert_eq!(s.backend.wait_for("/upload").body, b"hello");
}

// ---------------------------------------------------------------------------
// Date
// ---------------------------------------------------------------------------

/// Seconds since 1970 of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37
/// GMT`, RFC 9110 §5.6.7), whose day name must match its date.
fn imf_fixdate(s: &str) -> Option<i64> {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = s.get(range)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    if s.len() != 29 || !s.is_ascii() {
        return None;
    }
    let shape = [
        (3, ", "),
        (7, " "),
        (11, " "),
        (16, " "),
        (19, ":"),
        (22, ":"),
    ];
    if shape
        .iter()
        .any(|(at, text)| &s[*at..*at + text.len()] != *text)
        || &s[25..] != " GMT"
    {
        return None;
    }
    let weekday = DAYS.iter().position(|d| *d == &s[..3])? as i64;
    let month = MONTHS.iter().position(|m| *m == &s[8..11])? as i64 + 1;
    let (day, year) = (number(5..7)?, number(12..16)?);
    let (hour, minute, second) = (number(17..19)?, number(20..22)?, number(23..25)?);
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (the civil
    // calendar algorithm: years start in March).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    // 1970-01-01 was a Thursday.
    if (days + 4).rem_euclid(7) != weekday {
        return None;
    }
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// RFC 9110 §6.6.1: every response carries one `Date`, an IMF-fixdate
/// close to now: proxied ones (the backend sent none), a HEAD's, a
/// chunked one, gangway's own (404, 413, a fixed answer, a 400 for a
/// request it could not take), and one to HTTP/1.0. A backend's own
/// `Date` is passed on, not doubled.
#[test]
fn every_response_has_a_date() {
    // The parser itself: RFC 9110's example, and a wrong day name.
    assert_eq!(imf_fixdate(BACKEND_DATE), Some(784_111_777));
    assert_eq!(imf_fixdate("Mon, 06 Nov 1994 08:49:37 GMT"), None);
    let s = Setup::start();
    let big = [b'a'; 2048];
    let over_limit = [
        format!("POST /limited/x HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 2048\r\n\r\n")
            .into_bytes(),
        big.to_vec(),
    ]
    .concat();
    let cases: [(&str, Vec<u8>, bool, u16); 8] = [
        ("a proxied 200", get("/plain"), false, 200),
        (
            "a HEAD",
            format!("HEAD /plain HTTP/1.1\r\nHost: {HOST}\r\n\r\n").into_bytes(),
            true,
            200,
        ),
        ("a chunked 200", get("/stream"), false, 200),
        (
            "gangway's 404",
            format!("GET / HTTP/1.1\r\nHost: {NO_ROUTE_HOST}\r\n\r\n").into_bytes(),
            false,
            404,
        ),
        ("gangway's 413", over_limit, false, 413),
        ("gangway's fixed answer", get("/fixed"), false, 200),
        (
            "gangway's 400 for a request without Host",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            false,
            400,
        ),
        (
            "a response to HTTP/1.0",
            format!("GET /plain HTTP/1.0\r\nHost: {HOST}\r\n\r\n").into_bytes(),
            false,
            200,
        ),
    ];
    for (what, request, is_head, status) in cases {
        let mut c = s.client();
        c.send(&request);
        let r = if is_head {
            c.response_to_head(what)
        } else {
            c.response(what)
        };
        assert_eq!(r.status, status, "{what}: {r:?}");
        let dates = r.all("date");
        assert_eq!(dates.len(), 1, "{what}: one Date expected: {r:?}");
        let at = imf_fixdate(dates[0])
            .unwrap_or_else(|| panic!("{what}: Date {:?} is not an IMF-fixdate", dates[0]));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (at - now).abs() <= 60,
            "{what}: Date {:?} is {} s from now",
            dates[0],
            at - now
        );
    }
    let mut c = s.client();
    c.send(&get("/dated"));
    let r = c.response("a response with the backend's own Date");
    assert_eq!(r.all("date"), [BACKEND_DATE], "{r:?}");
}

// ---------------------------------------------------------------------------
// Timeouts and stopping
// ---------------------------------------------------------------------------

/// The reason gangway logs when it closes a connection whose request head
/// did not arrive in time.
const HEADER_TIMEOUT_REASON: &str = "no complete request head within the header timeout";

/// RFC 9112 §9.5 (slowloris): with `GANGWAY_HEADER_TIMEOUT=1s`, a kept-
/// alive connection left idle after a response, and one that never sent
/// a byte, are closed within 5 s (not at once); a connection that sent
/// half a request head is closed too (at most with a 408), with a log
/// line saying why, and nothing of it reaches the backend.
#[test]
fn header_timeout_closes_idle_and_half_sent_connections() {
    let s = Setup::start_with(&[("GANGWAY_HEADER_TIMEOUT", "1s")]);
    let bound = Duration::from_secs(5);

    let mut silent = s.client();
    let mut idle = s.client();
    idle.send(&get("/before-idle"));
    let r = idle.response("the request before the idle time");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!r.connection_has("close"), "{r:?}");
    let took = idle.expect_closed(bound, "an idle kept-alive connection");
    assert!(
        took >= Duration::from_millis(300),
        "the idle connection was closed after {took:?}, well before the 1 s header timeout"
    );
    silent.expect_closed(bound, "a connection that never sent a byte");

    let mut half = s.client();
    half.send(format!("GET /half HTTP/1.1\r\nHost: {HOST}\r\n").as_bytes());
    let start = Instant::now();
    let (bytes, ending) = half.ending(bound);
    assert_ne!(
        ending,
        Ending::Open,
        "a half-sent head was still open after {bound:?}; gangway sent {}",
        shown(&bytes, 300)
    );
    assert!(
        bytes.is_empty() || bytes.starts_with(b"HTTP/1.1 408 "),
        "a half-sent head got {}",
        shown(&bytes, 300)
    );
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "a half-sent head was cut off after {:?}, before the header timeout",
        start.elapsed()
    );
    let logged = s.g.wait_for_json(
        |v| {
            v["reason"]
                .as_str()
                .is_some_and(|r| r.contains(HEADER_TIMEOUT_REASON))
        },
        WAIT,
    );
    assert!(
        logged.is_some(),
        "no log line with the reason {HEADER_TIMEOUT_REASON:?}:\n{}",
        s.g.output()
    );
    assert!(
        !s.backend.targets().iter().any(|t| t == "/half"),
        "{:?}",
        s.backend.targets()
    );
}

/// RFC 9112 §9.6 (a sender that intends to close the connection SHOULD
/// say `close`) and §9.5: on SIGTERM gangway closes its idle kept-alive
/// connections at once, lets the request in flight finish, sends its
/// response whole with `Connection: close` (so that the client sends
/// nothing more on a connection about to close) and closes that
/// connection, then exits with success.
#[test]
fn sigterm_finishes_the_request_in_flight() {
    let mut s = Setup::start();
    let mut idle = s.client();
    idle.send(&get("/before-stop"));
    let r = idle.response("a request before the stop");
    assert_eq!(r.status, 200, "{r:?}");

    let mut busy = s.client();
    busy.send(&get("/hold/in-flight"));
    s.backend.wait_for("/hold/in-flight");
    s.g.terminate();
    let stopping = s.g.wait_for_json(
        |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("shutting down"))
        },
        WAIT,
    );
    assert!(
        stopping.is_some(),
        "gangway did not log that it is shutting down:\n{}",
        s.g.output()
    );
    idle.expect_closed(STEP, "an idle kept-alive connection when gangway stops");

    s.backend.release();
    let r = busy.response("the request in flight when gangway was stopped");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "GET /hold/in-flight", "{r:?}");
    assert!(
        r.connection_has("close"),
        "the last response on a connection gangway closes because it stops should say Connection: close: {r:?}"
    );
    busy.expect_closed(STEP, "the connection whose request finished after SIGTERM");
    drop((idle, busy));

    let exit = s.g.wait_exit(WAIT);
    assert!(
        exit.is_some_and(|e| e.success()),
        "gangway did not exit with success within {WAIT:?} after its last request: {exit:?}\n{}",
        s.g.output()
    );
}

/// A kept-alive connection that stays idle for more than a second is
/// parked (its task ends; the watch keeps the socket, see
/// `h1/server/idle.rs`). From the client's side nothing changes: fifty
/// connections idle past that second are all served again, in order; a
/// parked connection still closes at the header timeout and not before;
/// and SIGTERM closes parked connections at once.
#[test]
fn connections_idle_past_a_second_are_still_served() {
    let mut s = Setup::start_with(&[("GANGWAY_HEADER_TIMEOUT", "4s")]);
    // Past the second, and a tick of the reaper.
    let parked = Duration::from_millis(1_600);
    let mut clients: Vec<Client> = (0..50).map(|_| s.client()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&get(&format!("/first/{i}")));
        let r = c.response("a request before the idle time");
        assert_eq!(r.status, 200, "{r:?}");
    }
    thread::sleep(parked);
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&get(&format!("/after-idle/{i}")));
        let r = c.response("a request on a connection idle past a second");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), format!("GET /after-idle/{i}"), "{r:?}");
    }

    let mut idle = s.client();
    idle.send(&get("/before-timeout"));
    let r = idle.response("a request before the header timeout");
    assert_eq!(r.status, 200, "{r:?}");
    let took = idle.expect_closed(STEP, "a parked connection at its header timeout");
    assert!(
        took >= Duration::from_millis(3_500),
        "a parked connection was closed after {took:?}, before the 4 s header timeout"
    );

    // The fifty are parked again: a stop closes them at once.
    thread::sleep(parked);
    let stopped = Instant::now();
    s.g.terminate();
    for c in &mut clients {
        c.expect_closed(STEP, "a parked connection when gangway stops");
    }
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "parked connections were closed {:?} after SIGTERM, not at once",
        stopped.elapsed()
    );
    let exit = s.g.wait_exit(WAIT);
    assert!(
        exit.is_some_and(|e| e.success()),
        "gangway did not exit with success: {exit:?}\n{}",
        s.g.output()
    );
}
