//! The team's hostile-input suite, raw bytes against the real gangway
//! binary.
//!
//! Each case sends hand-built bytes over a plain TCP socket (HTTP/1.x, or
//! HTTP/2 frames with prior knowledge) and checks that:
//!
//! 1. gangway answers with the expected 4xx status, or closes the
//!    connection;
//! 2. where gangway's own code made the answer, it logged a JSON line with
//!    the reason;
//! 3. nothing ambiguous reached the backend: a recording backend keeps
//!    every byte it received, and the case asserts on those bytes (no
//!    smuggled request, exactly one framing header, gangway's own
//!    forwarding headers present, …);
//! 4. afterwards a normal request on another connection still works.
//!
//! Cases: 110 in all (`CASES`; `suite_has_at_least_40_cases` counts the
//! tables):
//!
//! | family | cases |
//! |---|---|
//! | request smuggling and message framing (HTTP/1.1) | 29 |
//! | request line and header syntax | 16 |
//! | Host attacks | 11 |
//! | limits | 4 |
//! | hop-by-hop abuse | 6 |
//! | h2c upgrade | 2 |
//! | path tricks | 7 |
//! | HTTP/2 malformed requests (downgrade smuggling) | 17 |
//! | HTTP/2 denial of service | 9 |
//! | client errors as operators see them | 2 |
//! | timeouts, connection cap, body size, upgrades, h2c | 7 |
//!
//! Where gangway's HTTP parser (hyper), not gangway's own code, refuses a
//! request, no log line is expected per case; `parser_refusals_are_logged`
//! checks that such refusals are logged at all.

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::{start, GANGWAY, NO_NETWORK, WAIT};
use gangway_testkit::{Gangway, GangwayBuilder, TempDir};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// The recording backend
// ---------------------------------------------------------------------------

/// The longest any helper thread lives, whatever happens.
const THREAD_LIFETIME: Duration = Duration::from_secs(300);
/// How often blocked helper threads look at their stop flag.
const POLL: Duration = Duration::from_millis(50);
/// The backend's one answer.
const BACKEND_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const BACKEND_BAD: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// A raw TCP backend that keeps every byte each connection sent it and
/// answers every complete request with `200 ok` (keep-alive). Its threads
/// stop when it is dropped, and after [`THREAD_LIFETIME`] in any case.
struct Recorder {
    port: u16,
    conns: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

type Conns = Arc<Mutex<Vec<Vec<u8>>>>;

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns = Conns::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (Arc::clone(&conns), Arc::clone(&stop));
        thread::spawn(move || accept_loop(&listener, &c, &s));
        Recorder { port, conns, stop }
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many bytes each connection has sent so far.
    fn mark(&self) -> Vec<usize> {
        self.lock().iter().map(Vec::len).collect()
    }

    /// The bytes received since `mark`, one entry per connection that sent
    /// any.
    fn since(&self, mark: &[usize]) -> Vec<Vec<u8>> {
        self.lock()
            .iter()
            .enumerate()
            .map(|(i, bytes)| bytes[mark.get(i).copied().unwrap_or(0)..].to_vec())
            .filter(|b| !b.is_empty())
            .collect()
    }

    /// The requests received since `mark`, complete or not.
    fn requests_since(&self, mark: &[usize]) -> Vec<Recorded> {
        self.since(mark)
            .iter()
            .flat_map(|b| parse_requests(b))
            .collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn accept_loop(listener: &TcpListener, conns: &Conns, stop: &Arc<AtomicBool>) {
    let end = Instant::now() + THREAD_LIFETIME;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        match listener.accept() {
            Ok((stream, _)) => {
                let index = {
                    let mut all = conns.lock().unwrap_or_else(|e| e.into_inner());
                    all.push(Vec::new());
                    all.len() - 1
                };
                let (c, s) = (Arc::clone(conns), Arc::clone(stop));
                thread::spawn(move || serve_recorded(stream, index, &c, &s));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve_recorded(mut stream: TcpStream, index: usize, conns: &Conns, stop: &AtomicBool) {
    let end = Instant::now() + THREAD_LIFETIME;
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                conns.lock().unwrap_or_else(|e| e.into_inner())[index].extend_from_slice(&buf[..n]);
                pending.extend_from_slice(&buf[..n]);
                loop {
                    match parse_request(&pending) {
                        Parsed::Complete(_, used) => {
                            if stream.write_all(BACKEND_OK).is_err() {
                                return;
                            }
                            pending.drain(..used);
                        }
                        Parsed::Partial(_) => break,
                        Parsed::Invalid => {
                            let _ = stream.write_all(BACKEND_BAD);
                            return;
                        }
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// One request as the backend received it.
#[derive(Debug, Clone)]
struct Recorded {
    request_line: String,
    /// Names in lower case, values as received (lossy UTF-8).
    headers: Vec<(String, String)>,
    /// The head exactly as received.
    raw_head: Vec<u8>,
    /// The body, chunked coding removed.
    body: Vec<u8>,
    /// Whether the whole message arrived.
    complete: bool,
}

impl Recorded {
    fn target(&self) -> &str {
        self.request_line.split(' ').nth(1).unwrap_or("")
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, name: &str) -> Option<&str> {
        match self.all(name).as_slice() {
            [v] => Some(v),
            _ => None,
        }
    }
}

enum Parsed {
    Complete(Recorded, usize),
    Partial(Option<Recorded>),
    Invalid,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// Parses one HTTP/1.1 message head and body from the start of `buf`
/// (requests and responses alike: the first line is kept as it is).
fn parse_request(buf: &[u8]) -> Parsed {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Parsed::Partial(None);
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Parsed::Invalid;
        };
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut recorded = Recorded {
        request_line,
        headers,
        raw_head: buf[..end + 4].to_vec(),
        body: Vec::new(),
        complete: false,
    };
    let rest = &buf[end + 4..];
    let chunked = recorded
        .all("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return match decode_chunked(rest) {
            Err(()) => Parsed::Invalid,
            Ok(None) => Parsed::Partial(Some(recorded)),
            Ok(Some((body, used))) => {
                recorded.body = body;
                recorded.complete = true;
                Parsed::Complete(recorded, end + 4 + used)
            }
        };
    }
    let length = match recorded.all("content-length").first() {
        None => 0,
        Some(v) => match v.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return Parsed::Invalid,
        },
    };
    if rest.len() < length {
        recorded.body = rest.to_vec();
        return Parsed::Partial(Some(recorded));
    }
    recorded.body = rest[..length].to_vec();
    recorded.complete = true;
    Parsed::Complete(recorded, end + 4 + length)
}

/// Decodes a chunked body: `Ok(None)` while incomplete.
#[allow(clippy::type_complexity)]
fn decode_chunked(data: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ()> {
    let mut pos = 0;
    let mut body = Vec::new();
    for _ in 0..100_000 {
        let Some(line_end) = find(&data[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&data[pos..pos + line_end]).into_owned();
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| ())?;
        pos += line_end + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            for _ in 0..1000 {
                let Some(line_end) = find(&data[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += line_end + 2;
                if line_end == 0 {
                    return Ok(Some((body, pos)));
                }
            }
            return Err(());
        }
        if data.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[pos..pos + size]);
        if &data[pos + size..pos + size + 2] != b"\r\n" {
            return Err(());
        }
        pos += size + 2;
    }
    Err(())
}

/// Every request in one connection's bytes, the last one possibly
/// incomplete.
fn parse_requests(mut bytes: &[u8]) -> Vec<Recorded> {
    let mut out = Vec::new();
    while !bytes.is_empty() && out.len() < 10_000 {
        match parse_request(bytes) {
            Parsed::Complete(r, used) => {
                out.push(r);
                bytes = &bytes[used..];
            }
            Parsed::Partial(r) => {
                out.push(r.unwrap_or_else(|| {
                    Recorded {
                        request_line: String::from_utf8_lossy(
                            bytes.split(|b| *b == b'\n').next().unwrap_or_default(),
                        )
                        .into_owned(),
                        headers: Vec::new(),
                        raw_head: bytes.to_vec(),
                        body: Vec::new(),
                        complete: false,
                    }
                }));
                break;
            }
            Parsed::Invalid => {
                out.push(Recorded {
                    request_line: format!("<unparsable: {}>", lossy(bytes, 300)),
                    headers: Vec::new(),
                    raw_head: bytes.to_vec(),
                    body: Vec::new(),
                    complete: true,
                });
                break;
            }
        }
    }
    out
}

fn lossy(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
    if bytes.len() > max {
        format!("{text:?}… ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

// ---------------------------------------------------------------------------
// gangway with the recording backend behind it
// ---------------------------------------------------------------------------

/// gangway routing `a.test` to a [`Recorder`], and `a.test/admin` to a
/// fixed 403 (the "protected" part that path tricks try to reach).
struct Suite {
    g: Gangway,
    rec: Recorder,
    _dir: TempDir,
}

impl Suite {
    fn start() -> Suite {
        Suite::start_with(&[], "")
    }

    fn start_with(env: &[(&str, &str)], extra_toml: &str) -> Suite {
        let dir = TempDir::new();
        let rec = Recorder::start();
        let file = dir.join("gangway.toml");
        std::fs::write(
            &file,
            format!(
                r#"[[pools]]
name = "p"
targets = ["{}"]

[[routes]]
name = "app"
hosts = ["a.test"]
pool = "p"

[[routes]]
name = "admin"
hosts = ["a.test"]
path = {{ prefix = "/admin" }}
respond = {{ status = 403, body = "admin is not reachable from outside\n" }}
{extra_toml}"#,
                rec.target()
            ),
        )
        .unwrap();
        let mut builder = GangwayBuilder::new(GANGWAY)
            .network(NO_NETWORK)
            .env("GANGWAY_CONFIG", file.to_string_lossy());
        for (k, v) in env {
            builder = builder.env(*k, *v);
        }
        let g = start(builder);
        Suite { g, rec, _dir: dir }
    }

    fn port(&self) -> u16 {
        self.g.http_port
    }

    /// A normal request on a new connection: must get the backend's `ok`,
    /// and the backend must see it.
    fn probe(&self, tag: &str) -> Result<(), String> {
        let mark = self.rec.mark();
        let path = format!("/probe/{tag}");
        let reply = exchange(
            self.port(),
            format!("GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let ok = reply.status() == Some(200)
            && reply.responses[0].body == b"ok"
            && self
                .rec
                .requests_since(&mark)
                .iter()
                .any(|r| r.target() == path && r.complete);
        if ok {
            Ok(())
        } else {
            Err(format!(
                "gangway stopped serving: a normal request afterwards got {}",
                reply.describe()
            ))
        }
    }

    /// Waits for a JSON log line with this message whose fields pass
    /// `pred`.
    fn logged(
        &self,
        message: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<(), String> {
        match self.g.wait_for_message(message, pred, WAIT) {
            Some(_) => Ok(()),
            None => Err(format!(
                "no {message:?} log line {what}; log lines:\n{}",
                self.g.lines().join("\n")
            )),
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.x client side
// ---------------------------------------------------------------------------

/// One response as the client received it.
#[derive(Debug, Clone)]
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// What came back on one connection.
#[derive(Debug)]
struct Reply {
    raw: Vec<u8>,
    responses: Vec<Response>,
    /// The server closed (or reset) the connection.
    closed: bool,
}

impl Reply {
    fn status(&self) -> Option<u16> {
        self.responses.first().map(|r| r.status)
    }

    fn describe(&self) -> String {
        format!(
            "{} (connection {}): {}",
            self.status()
                .map_or_else(|| "no response".to_string(), |s| format!("status {s}")),
            if self.closed { "closed" } else { "left open" },
            lossy(&self.raw, 400)
        )
    }
}

fn parse_responses(raw: &[u8], closed: bool) -> Vec<Response> {
    let mut out = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() && out.len() < 100 {
        let (recorded, used) = match parse_request(rest) {
            Parsed::Complete(r, used) => (r, used),
            // A response without framing runs to the end of the connection.
            Parsed::Partial(Some(r)) if closed && r.all("content-length").is_empty() => {
                let head_len = r.raw_head.len();
                let mut r = r;
                r.body = rest[head_len..].to_vec();
                (r, rest.len())
            }
            _ => break,
        };
        let Some(status) = recorded
            .request_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
        else {
            break;
        };
        out.push(Response {
            status,
            head: String::from_utf8_lossy(&recorded.raw_head).into_owned(),
            body: recorded.body,
        });
        rest = &rest[used..];
    }
    out
}

/// Connects to gangway, sends `request` and reads what comes back: until
/// the connection closes, or a quiet moment after a complete response, or
/// 5 seconds.
fn exchange(port: u16, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // gangway may refuse and close before it has read everything.
    let _ = s.write_all(request);
    read_reply(&mut s, Duration::from_secs(5))
}

fn read_reply(s: &mut TcpStream, patience: Duration) -> Reply {
    s.set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let deadline = Instant::now() + patience;
    let mut raw = Vec::new();
    let mut closed = false;
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // Answered, and quiet since: a kept-alive connection.
                if !parse_responses(&raw, false).is_empty() {
                    break;
                }
            }
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    Reply {
        responses: parse_responses(&raw, closed),
        raw,
        closed,
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.x cases
// ---------------------------------------------------------------------------

/// Checks a request that gangway forwarded.
type Check = fn(&Reply, &Recorded) -> Result<(), String>;

#[derive(Clone, Copy)]
enum Expect {
    /// gangway refuses with one of `statuses` (or, if `may_close`, closes
    /// without an answer); nothing at all reaches the backend. `log`: the
    /// reason gangway logs in its `request refused` line, where gangway's
    /// own code (not the HTTP parser) refuses.
    Refused {
        statuses: &'static [u16],
        may_close: bool,
        log: Option<&'static str>,
    },
    /// The body turns out to be malformed after the head was read: gangway
    /// answers one of `statuses` or closes; the backend may have seen the
    /// head, but never a complete request.
    RefusedMidBody { statuses: &'static [u16] },
    /// A valid (if unusual) request: the client gets the backend's 200 and
    /// the backend exactly one complete request, which passes the check.
    Forwarded(Check),
    /// Either refused with one of the statuses (nothing reaches the
    /// backend), or forwarded as exactly one complete request that passes
    /// the check.
    RefusedOrForwarded(&'static [u16], Check),
    /// gangway answers this status itself (no refusal log line: an access
    /// line with the status) and nothing reaches the backend.
    Answered(u16),
}

struct Case {
    name: &'static str,
    /// The RFC section or advisory the expectation comes from.
    cite: &'static str,
    send: Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, cite: &'static str, send: impl AsRef<[u8]>, expect: Expect) -> Case {
    Case {
        name,
        cite,
        send: send.as_ref().to_vec(),
        expect,
    }
}

const fn refused(statuses: &'static [u16]) -> Expect {
    Expect::Refused {
        statuses,
        may_close: true,
        log: None,
    }
}

const fn refused_logged(status: &'static [u16], reason: &'static str) -> Expect {
    Expect::Refused {
        statuses: status,
        may_close: false,
        log: Some(reason),
    }
}

const BAD: &[u16] = &[400];

/// Runs every case on one gangway; panics listing every case that failed.
fn run(cases: &[Case]) {
    run_on(&Suite::start(), cases);
}

fn run_on(suite: &Suite, cases: &[Case]) {
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        if let Err(problem) = run_one(suite, c, i) {
            failures.push(format!(
                "case {:?} ({}):\n  sent {}\n  {problem}",
                c.name,
                c.cite,
                lossy(&c.send, 300)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

fn run_one(suite: &Suite, c: &Case, index: usize) -> Result<(), String> {
    let mark = suite.rec.mark();
    let reply = exchange(suite.port(), &c.send);
    eprintln!("case {:?}: {}", c.name, reply.describe());
    suite.probe(&format!("{index}"))?;
    let received: Vec<Recorded> = suite
        .rec
        .requests_since(&mark)
        .into_iter()
        .filter(|r| !r.target().starts_with("/probe/"))
        .collect();
    check_case(suite, c, &reply, &received).map_err(|problem| {
        let shown: Vec<String> = received
            .iter()
            .map(|r| {
                format!(
                    "{} (complete: {}, body {})",
                    lossy(&r.raw_head, 600),
                    r.complete,
                    lossy(&r.body, 100)
                )
            })
            .collect();
        format!(
            "{problem}\n  gangway answered: {}\n  the backend received: {}",
            reply.describe(),
            if shown.is_empty() {
                "nothing".to_string()
            } else {
                shown.join("\n    ")
            }
        )
    })
}

fn check_case(suite: &Suite, c: &Case, reply: &Reply, received: &[Recorded]) -> Result<(), String> {
    // Whatever the case, a smuggled request never reaches the backend.
    if received.iter().any(|r| {
        contains(&r.raw_head, b"smuggled")
            || contains(&r.body, b"smuggled")
            || contains(&r.raw_head, b"SMUGGLED")
    }) {
        return Err("the smuggled request reached the backend".into());
    }
    let status_ok = |statuses: &[u16], may_close: bool| match reply.status() {
        Some(s) if statuses.contains(&s) => Ok(()),
        None if may_close && reply.closed => Ok(()),
        _ => Err(format!(
            "expected {statuses:?}{}",
            if may_close {
                " or a closed connection"
            } else {
                ""
            },
        )),
    };
    let nothing_forwarded = || {
        if received.is_empty() {
            Ok(())
        } else {
            Err("refused, yet the backend received a request".to_string())
        }
    };
    let one_forwarded = |check: Check| match received {
        [one] if one.complete => check(reply, one),
        _ => Err("expected exactly one complete request at the backend".to_string()),
    };
    match c.expect {
        Expect::Refused {
            statuses,
            may_close,
            log,
        } => {
            status_ok(statuses, may_close)?;
            nothing_forwarded()?;
            if let Some(reason) = log {
                suite.logged("request refused", &format!("with reason {reason:?}"), |v| {
                    v["reason"].as_str().is_some_and(|r| r.contains(reason))
                })?;
            }
            Ok(())
        }
        Expect::RefusedMidBody { statuses } => {
            status_ok(statuses, true)?;
            if received.iter().any(|r| r.complete) {
                return Err("a malformed body was forwarded as a complete request".into());
            }
            Ok(())
        }
        Expect::Forwarded(check) => {
            status_ok(&[200], false)?;
            one_forwarded(check)
        }
        Expect::RefusedOrForwarded(statuses, check) => {
            if reply.status() == Some(200) {
                one_forwarded(check)
            } else {
                status_ok(statuses, true)?;
                nothing_forwarded()
            }
        }
        Expect::Answered(status) => {
            status_ok(&[status], false)?;
            nothing_forwarded()?;
            suite.logged("request", &format!("with status {status}"), |v| {
                v["status"] == status
            })
        }
    }
}

/// `POST <path>` to a.test with these extra header lines and body.
fn post(path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("POST {path} HTTP/1.1\r\nHost: a.test\r\n{headers}\r\n").into_bytes();
    out.extend_from_slice(body);
    out
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n";

fn no_framing_conflict(reply: &Reply, r: &Recorded) -> Result<(), String> {
    let cl = r.all("content-length");
    let te = r.all("transfer-encoding");
    if !cl.is_empty() && !te.is_empty() {
        return Err("the backend got both Content-Length and Transfer-Encoding".into());
    }
    if cl.len() > 1 || te.len() > 1 || te.iter().any(|v| !v.eq_ignore_ascii_case("chunked")) {
        return Err(format!(
            "the framing forwarded is not one plain header: CL {cl:?}, TE {te:?}"
        ));
    }
    // RFC 9112 §6.1: after a request with both, the server MUST close.
    if !reply.closed {
        return Err("gangway kept the client connection open after CL+TE".into());
    }
    Ok(())
}

fn body_is_hello(_: &Reply, r: &Recorded) -> Result<(), String> {
    let cl = r.all("content-length");
    let te = r.all("transfer-encoding");
    if r.body != b"hello" {
        return Err(format!("body {:?}, expected \"hello\"", lossy(&r.body, 50)));
    }
    match (cl.as_slice(), te.as_slice()) {
        (["5"], []) | ([], ["chunked"]) => Ok(()),
        _ => Err(format!(
            "framing must be one Content-Length: 5 or Transfer-Encoding: chunked; got CL {cl:?}, TE {te:?}"
        )),
    }
}

/// RFC 9112 §6 and §7, RFC 9110 §8.6, RFC 7230 §3.3.3, and PortSwigger's
/// request-smuggling research (CL.TE, TE.CL, TE.TE obfuscation) and
/// "funky chunks" (chunk-line terminators and extensions): every framing
/// that two parsers could read differently is refused, or normalised to one
/// unambiguous framing before it reaches the backend.
///
/// A body found malformed mid-stream (RFC 9112 §7.1) is the client's error:
/// 400, not a bad gateway (502), and never a complete request at the
/// backend.
#[test]
fn smuggling_and_framing() {
    run(&smuggling_cases());
}

fn smuggling_cases() -> Vec<Case> {
    let chunked = "Transfer-Encoding: chunked\r\n";
    vec![
        case(
            "CL.TE: Content-Length and Transfer-Encoding",
            "RFC 9112 §6.1 (MUST close after), §6.3 item 3; PortSwigger CL.TE",
            [
                post("/cl-te", "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
                SMUGGLED.into(),
            ]
            .concat(),
            Expect::RefusedOrForwarded(BAD, no_framing_conflict),
        ),
        case(
            "TE.CL: Transfer-Encoding then Content-Length",
            "RFC 9112 §6.1, §6.3 item 3; PortSwigger TE.CL",
            post(
                "/te-cl",
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                b"8\r\nSMUGGLED\r\n0\r\n\r\n",
            ),
            Expect::RefusedOrForwarded(BAD, |reply, r| {
                no_framing_conflict(reply, r)?;
                if r.body != b"SMUGGLED" {
                    return Err("the chunked body was not forwarded as chunked".into());
                }
                Ok(())
            }),
        ),
        case(
            "duplicate Content-Length, same value",
            "RFC 9110 §8.6 (reject, or forward one value); RFC 9112 §6.3 item 5",
            post("/cl-dup", "Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
            Expect::RefusedOrForwarded(BAD, body_is_hello),
        ),
        case(
            "conflicting Content-Length",
            "RFC 9112 §6.3 item 5 (MUST 400 and close)",
            [
                post("/cl-conflict", "Content-Length: 3\r\nContent-Length: 41\r\n", b"abc"),
                SMUGGLED.into(),
            ]
            .concat(),
            refused(BAD),
        ),
        case(
            "Content-Length list of different values",
            "RFC 9110 §8.6; RFC 9112 §6.3 item 5",
            post("/cl-list", "Content-Length: 5, 41\r\n", b"hello"),
            refused(BAD),
        ),
        case(
            "Content-Length with a plus sign",
            "RFC 9110 §8.6 (Content-Length = 1*DIGIT)",
            post("/cl-plus", "Content-Length: +5\r\n", b"hello"),
            refused(BAD),
        ),
        case(
            "negative Content-Length",
            "RFC 9110 §8.6",
            post("/cl-negative", "Content-Length: -5\r\n", b"hello"),
            refused(BAD),
        ),
        case(
            "hexadecimal Content-Length",
            "RFC 9110 §8.6",
            post("/cl-hex", "Content-Length: 0x5\r\n", b"hello"),
            refused(BAD),
        ),
        case(
            "Content-Length past u64",
            "RFC 9110 §8.6 (a recipient MUST anticipate large numerals and prevent overflow)",
            post("/cl-overflow", "Content-Length: 18446744073709551616\r\n", b"hello"),
            refused(&[400, 413]),
        ),
        case(
            "Content-Length with a space inside",
            "RFC 9110 §8.6; RFC 9112 §6.3 item 5",
            post("/cl-space", "Content-Length: 1 5\r\n", b"hello"),
            refused(BAD),
        ),
        case(
            "empty Content-Length",
            "RFC 9110 §8.6; RFC 9112 §6.3 item 5",
            post("/cl-empty", "Content-Length:\r\n", b"hello"),
            refused(BAD),
        ),
        case(
            "Transfer-Encoding: xchunked",
            "RFC 9112 §6.1 (unknown coding: 501; chunked not final: 400); PortSwigger TE.TE",
            [
                post("/te-x", "Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
                SMUGGLED.into(),
            ]
            .concat(),
            refused(&[400, 501]),
        ),
        case(
            "Transfer-Encoding: chunked, identity",
            "RFC 9112 §6.1 (chunked not the final coding: MUST 400 and close)",
            [post("/te-list", "Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"), SMUGGLED.into()]
                .concat(),
            refused(BAD),
        ),
        case(
            "two Transfer-Encoding lines, chunked first",
            "RFC 9112 §6.1; PortSwigger TE.TE",
            [
                post("/te-two", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", b"0\r\n\r\n"),
                SMUGGLED.into(),
            ]
            .concat(),
            refused(BAD),
        ),
        case(
            "quoted \"chunked\"",
            "RFC 9112 §6.1, §7; PortSwigger TE.TE",
            [
                post("/te-quoted", "Content-Length: 5\r\nTransfer-Encoding: \"chunked\"\r\n", b"0\r\n\r\n"),
                SMUGGLED.into(),
            ]
            .concat(),
            refused(&[400, 501]),
        ),
        case(
            "tab before chunked (valid OWS)",
            "RFC 9110 §5.6.3 (OWS includes HTAB); RFC 9112 §5.1",
            post("/te-tab", "Transfer-Encoding:\tchunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
            Expect::Forwarded(body_is_hello),
        ),
        case(
            "vertical tab before chunked",
            "RFC 9110 §5.5 (VT is not a field-value character); PortSwigger TE.TE",
            [
                post("/te-vtab", "Content-Length: 5\r\nTransfer-Encoding:\x0bchunked\r\n", b"0\r\n\r\n"),
                SMUGGLED.into(),
            ]
            .concat(),
            refused(&[400, 501]),
        ),
        case(
            "whitespace-preceded Transfer-Encoding right after the request line",
            "RFC 9112 §2.2 (MUST reject, or ignore the line)",
            b"POST /te-indent HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a.test\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            Expect::RefusedOrForwarded(BAD, |_, r| {
                if !r.all("transfer-encoding").is_empty() || r.body != b"0\r\n\r\n" {
                    return Err("the indented line was taken as framing".into());
                }
                Ok(())
            }),
        ),
        case(
            "Transfer-Encoding on HTTP/1.0",
            "RFC 9112 §6.1 (HTTP/1.0 with Transfer-Encoding: framing is faulty, close)",
            [
                b"POST /te-http10 HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
                SMUGGLED.into(),
            ]
            .concat(),
            refused(BAD),
        ),
        case(
            "chunk size not hex",
            "RFC 9112 §7.1 (chunk-size = 1*HEXDIG)",
            post("/chunk-zz", chunked, b"zz\r\nhello\r\n0\r\n\r\n"),
            Expect::RefusedMidBody { statuses: BAD },
        ),
        case(
            "chunk size of 17 hex digits",
            "RFC 9112 §7.1 (MUST anticipate large numerals and prevent overflow)",
            post("/chunk-overflow", chunked, b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
            Expect::RefusedMidBody { statuses: BAD },
        ),
        case(
            "chunk size 0x5",
            "RFC 9112 §7.1",
            post("/chunk-0x", chunked, b"0x5\r\nhello\r\n0\r\n\r\n"),
            Expect::RefusedMidBody { statuses: BAD },
        ),
        case(
            "20 KiB of chunk extensions",
            "RFC 9112 §7.1.1 (servers ought to limit extensions); CVE-2023-39326 / hyper's 16 KiB bound",
            post(
                "/chunk-ext",
                chunked,
                &[b"5;".as_slice(), &[b'x'; 20 * 1024], b"\r\nhello\r\n0\r\n\r\n"].concat(),
            ),
            Expect::RefusedMidBody { statuses: BAD },
        ),
        case(
            "bare LF ends a chunk extension",
            "RFC 9112 §7.1; \"funky chunks\" (2025) line-terminator smuggling",
            [post("/chunk-ext-lf", chunked, b"5;a\nxx\r\nhello\r\n0\r\n\r\n"), SMUGGLED.into()].concat(),
            Expect::RefusedMidBody { statuses: BAD },
        ),
        case(
            "missing final CRLF, next request in the trailer section",
            "RFC 9112 §7.1 (last-chunk trailer-section CRLF), §7.1.2",
            [post("/chunk-no-final-crlf", chunked, b"5\r\nhello\r\n0\r\n"), SMUGGLED.into()].concat(),
            Expect::RefusedMidBody { statuses: BAD },
        ),
        case(
            "bare LF after the chunk size",
            "RFC 9112 §7.1, §2.2; \"funky chunks\" (2025)",
            [post("/chunk-lf", chunked, b"5\nhello\r\n0\r\n\r\n"), SMUGGLED.into()].concat(),
            Expect::RefusedMidBody { statuses: BAD },
        ),
        case(
            "bare CR after the chunk size",
            "RFC 9112 §7.1, §2.2 (bare CR is invalid)",
            [post("/chunk-cr", chunked, b"5\rhello\r\n0\r\n\r\n"), SMUGGLED.into()].concat(),
            Expect::RefusedMidBody { statuses: BAD },
        ),
        case(
            "chunk data longer than its size",
            "RFC 9112 §7.1 (chunk-data CRLF); PortSwigger TE.CL variants",
            [post("/chunk-overrun", chunked, b"3\r\nhello\r\n0\r\n\r\n"), SMUGGLED.into()].concat(),
            Expect::RefusedMidBody { statuses: BAD },
        ),
        case(
            "bare LF after chunk data",
            "RFC 9112 §7.1; \"funky chunks\" (2025)",
            [post("/chunk-data-lf", chunked, b"5\r\nhello\n0\r\n\r\n"), SMUGGLED.into()].concat(),
            Expect::RefusedMidBody { statuses: BAD },
        ),
    ]
}

/// RFC 9112 §2.2, §3, §5, RFC 9110 §5.5, §5.6.2, §9.1: malformed request
/// lines and field lines are refused (400) and never forwarded.
#[test]
fn request_line_and_header_syntax() {
    run(&syntax_cases());
}

fn syntax_cases() -> Vec<Case> {
    vec![
        case(
            "bare CR in a header value",
            "RFC 9112 §2.2 (MUST reject or replace bare CR with SP)",
            b"GET /bare-cr HTTP/1.1\r\nHost: a.test\r\nX-A: a\rb\r\n\r\n",
            Expect::RefusedOrForwarded(BAD, |_, r| {
                if contains(&r.raw_head, b"a\rb") {
                    return Err("the bare CR was forwarded".into());
                }
                Ok(())
            }),
        ),
        case(
            "NUL in a header value",
            "RFC 9110 §5.5 (MUST reject or replace NUL with SP)",
            b"GET /nul HTTP/1.1\r\nHost: a.test\r\nX-A: a\0b\r\n\r\n",
            Expect::RefusedOrForwarded(BAD, |_, r| {
                if contains(&r.raw_head, b"\0") {
                    return Err("the NUL was forwarded".into());
                }
                Ok(())
            }),
        ),
        case(
            "obs-fold in a header value",
            "RFC 9112 §5.2 (MUST reject with 400 or replace with SP)",
            b"GET /obs-fold HTTP/1.1\r\nHost: a.test\r\nX-A: a\r\n b\r\n\r\n",
            Expect::RefusedOrForwarded(BAD, |_, r| {
                if contains(&r.raw_head, b"\r\n b") {
                    return Err("the obs-fold was forwarded".into());
                }
                Ok(())
            }),
        ),
        case(
            "obs-fold carrying Transfer-Encoding",
            "RFC 9112 §5.2; PortSwigger TE.TE (line folding)",
            [
                post(
                    "/obs-fold-te",
                    "Content-Length: 5\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n",
                    b"0\r\n\r\n",
                ),
                SMUGGLED.into(),
            ]
            .concat(),
            Expect::RefusedOrForwarded(BAD, |_, r| {
                if !r.all("transfer-encoding").is_empty() || r.body != b"0\r\n\r\n" {
                    return Err("the folded line was taken as framing".into());
                }
                Ok(())
            }),
        ),
        case(
            "whitespace between field name and colon",
            "RFC 9112 §5.1 (MUST reject with 400); PortSwigger CL.TE \"Transfer-Encoding :\"",
            [
                post(
                    "/ws-colon",
                    "Content-Length: 5\r\nTransfer-Encoding : chunked\r\n",
                    b"0\r\n\r\n",
                ),
                SMUGGLED.into(),
            ]
            .concat(),
            refused(BAD),
        ),
        case(
            "invalid character in a field name",
            "RFC 9110 §5.1 (field-name = token), §5.6.2",
            b"GET /bad-name HTTP/1.1\r\nHost: a.test\r\nX(A): b\r\n\r\n",
            refused(BAD),
        ),
        case(
            "field line without a colon",
            "RFC 9112 §5 (field-line = field-name \":\" OWS field-value OWS)",
            b"GET /no-colon HTTP/1.1\r\nHost: a.test\r\nNoColonHere\r\n\r\n",
            refused(BAD),
        ),
        case(
            "invalid method token",
            "RFC 9110 §9.1 (method = token); RFC 9112 §3",
            b"G(ET /bad-method HTTP/1.1\r\nHost: a.test\r\n\r\n",
            refused(BAD),
        ),
        case(
            "two spaces in the request line",
            "RFC 9112 §3 (SHOULD NOT autocorrect an invalid request-line)",
            b"GET  /double-space HTTP/1.1\r\nHost: a.test\r\n\r\n",
            refused(BAD),
        ),
        case(
            "lower-case HTTP-name",
            "RFC 9112 §2.3 (HTTP-name is case-sensitive)",
            b"GET /lower-version http/1.1\r\nHost: a.test\r\n\r\n",
            refused(BAD),
        ),
        case(
            "request-line garbage (a TLS ClientHello on the plain port)",
            "RFC 9112 §3; RFC 9110 §15.5.1",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage-garbage-garbage\r\n\r\n",
            refused(BAD),
        ),
        case(
            "HTTP/0.9 simple request",
            "RFC 9112 Appendix C.1 (HTTP/0.9 is not supported); RFC 9110 §15.6.6",
            b"GET /http09\r\n\r\n",
            refused(&[400, 505]),
        ),
        case(
            "absurd version HTTP/9.9",
            "RFC 9110 §15.6.6 (505); RFC 9112 §2.3",
            b"GET /http99 HTTP/9.9\r\nHost: a.test\r\n\r\n",
            refused(&[400, 505]),
        ),
        case(
            "raw NUL in the request target",
            "RFC 9112 §3.2; RFC 3986 §2",
            b"GET /a\0b HTTP/1.1\r\nHost: a.test\r\n\r\n",
            refused(BAD),
        ),
        case(
            "bare LF line endings",
            "RFC 9112 §2.2 (a recipient MAY accept bare LF; what it forwards must be CRLF)",
            b"GET /bare-lf HTTP/1.1\nHost: a.test\nX-A: b\n\n",
            Expect::RefusedOrForwarded(BAD, |_, r| {
                if r.one("x-a") != Some("b") || r.one("host") != Some("a.test") {
                    return Err("the LF-terminated fields were not forwarded as sent".into());
                }
                Ok(())
            }),
        ),
        case(
            "header value with a CRLF injection attempt via obs-text",
            "RFC 9110 §5.5 (obs-text is opaque); forwarded bytes stay one field",
            b"GET /obs-text HTTP/1.1\r\nHost: a.test\r\nX-A: \xc4\x8d\xc4\x8aSet-Cookie: x\r\n\r\n",
            Expect::RefusedOrForwarded(BAD, |_, r| {
                if !r.all("set-cookie").is_empty() {
                    return Err("an injected field appeared at the backend".into());
                }
                Ok(())
            }),
        ),
    ]
}

/// RFC 9112 §3.2 and §3.2.2, RFC 9110 §7.2 and §4.2.4: the host a request
/// is routed by is the host the backend sees, and invalid or ambiguous
/// hosts are refused with 400.
#[test]
fn host_attacks() {
    run(&host_cases());
}

fn host_cases() -> Vec<Case> {
    vec![
        case(
            "HTTP/1.1 without Host",
            "RFC 9112 §3.2 (MUST 400)",
            b"GET /no-host HTTP/1.1\r\n\r\n",
            refused_logged(BAD, "names no host"),
        ),
        case(
            "two Host lines",
            "RFC 9112 §3.2 (MUST 400)",
            b"GET /two-hosts HTTP/1.1\r\nHost: a.test\r\nHost: evil.test\r\n\r\n",
            refused_logged(BAD, "more than one Host header"),
        ),
        case(
            "Host disagrees with the absolute-form target",
            "RFC 9112 §3.2.2; PortSwigger \"HTTP Host header attacks\"",
            b"GET http://a.test/abs HTTP/1.1\r\nHost: evil.test\r\n\r\n",
            refused_logged(BAD, "disagrees"),
        ),
        case(
            "empty Host",
            "RFC 9112 §3.2; RFC 9110 §7.2",
            b"GET /host-empty HTTP/1.1\r\nHost:\r\n\r\n",
            refused(BAD),
        ),
    ]
}

/// RFC 9112 §3.2 ("A server MUST respond with a 400 (Bad Request) status
/// code to any request message that contains ... a Host header field with
/// an invalid field value"), RFC 9110 §7.2 (Host = uri-host [":" port]) and
/// §4.2.4 (no userinfo).
#[test]
fn invalid_host_values_get_400() {
    run(&invalid_host_cases());
}

fn invalid_host_cases() -> Vec<Case> {
    vec![
        case(
            "Host with a comma list",
            "RFC 9112 §3.2 (a Host with an invalid value: MUST 400)",
            b"GET /host-list HTTP/1.1\r\nHost: a.test, evil.test\r\n\r\n",
            refused(BAD),
        ),
        case(
            "Host with a non-numeric port",
            "RFC 9110 §7.2 (Host = uri-host [\":\" port]); RFC 9112 §3.2",
            b"GET /host-port HTTP/1.1\r\nHost: a.test:abc\r\n\r\n",
            refused(BAD),
        ),
        case(
            "Host with a port past 65535",
            "RFC 9110 §7.2, §4.1; RFC 9112 §3.2",
            b"GET /host-port-big HTTP/1.1\r\nHost: a.test:99999\r\n\r\n",
            refused(BAD),
        ),
        case(
            "Host with userinfo",
            "RFC 9110 §7.2, §4.2.4; RFC 9112 §3.2 (MUST 400)",
            b"GET /host-userinfo HTTP/1.1\r\nHost: evil.test@a.test\r\n\r\n",
            refused(BAD),
        ),
    ]
}

/// RFC 9110 §4.2.4: userinfo in an http URI is to be treated as an error;
/// `GET http://evil.test@a.test/` must not be routed to a.test.
#[test]
fn absolute_form_with_userinfo() {
    run(&absolute_userinfo_cases());
}

fn absolute_userinfo_cases() -> Vec<Case> {
    vec![case(
        "absolute-form target with userinfo",
        "RFC 9110 §4.2.4 (SHOULD treat userinfo as an error); RFC 9112 §3.2.2",
        b"GET http://evil.test@a.test/abs-userinfo HTTP/1.1\r\nHost: a.test\r\n\r\n",
        refused(BAD),
    )]
}

/// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
/// code to any HTTP/1.1 request message that lacks a Host header field",
/// absolute-form or not.
#[test]
fn absolute_form_without_host() {
    run(&absolute_no_host_cases());
}

fn absolute_no_host_cases() -> Vec<Case> {
    vec![case(
        "HTTP/1.1 absolute-form without Host",
        "RFC 9112 §3.2 (MUST 400)",
        b"GET http://a.test/abs-no-host HTTP/1.1\r\n\r\n",
        refused(BAD),
    )]
}

/// RFC 9112 §2.3 and §3.2.2: an absolute-form request for a host gangway
/// does not serve is gangway's 404, never forwarded anywhere (gangway is
/// not an open forward proxy).
#[test]
fn absolute_form_to_unconfigured_host() {
    run(&[case(
        "absolute-form target for an unconfigured host",
        "RFC 9112 §3.2.2; RFC 9110 §7.4",
        b"GET http://other.test/open-proxy HTTP/1.1\r\nHost: other.test\r\n\r\n",
        Expect::Answered(404),
    )]);
}

/// hyper's 64 KiB bound on the request head (RFC 9110 §15.5.15 414,
/// RFC 6585 §5 431, RFC 9112 §3 "servers ought to be prepared for long
/// request-targets" but MAY refuse): heads past the bound are refused
/// and never forwarded.
#[test]
fn limits() {
    run(&limit_cases());
}

fn limit_cases() -> Vec<Case> {
    let long_uri = [
        b"GET /".as_slice(),
        &[b'a'; 70 * 1024],
        b" HTTP/1.1\r\nHost: a.test\r\n\r\n",
    ]
    .concat();
    let long_header = [
        b"GET /long-header HTTP/1.1\r\nHost: a.test\r\nX-Big: ".as_slice(),
        &[b'a'; 70 * 1024],
        b"\r\n\r\n",
    ]
    .concat();
    let mut many = b"GET /many-headers HTTP/1.1\r\nHost: a.test\r\n".to_vec();
    for i in 0..5000 {
        many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let mut many_cookies = b"GET /many-cookies HTTP/1.1\r\nHost: a.test\r\n".to_vec();
    for _ in 0..2000 {
        many_cookies.extend_from_slice(b"Cookie: a=b\r\n");
    }
    many_cookies.extend_from_slice(b"\r\n");
    vec![
        case(
            "request target over 64 KiB",
            "RFC 9112 §3 (414); RFC 9110 §15.5.15",
            long_uri,
            refused(&[400, 414, 431]),
        ),
        case(
            "one header field over 64 KiB",
            "RFC 6585 §5 (431); RFC 9110 §5.4",
            long_header,
            refused(&[400, 431]),
        ),
        case(
            "5,000 small header fields",
            "RFC 6585 §5 (431); RFC 9110 §5.4 (a server MAY refuse)",
            many,
            refused(&[400, 431]),
        ),
        case(
            "2,000 Cookie lines",
            "RFC 6585 §5; RFC 6265 §5.4",
            many_cookies,
            refused(&[400, 431]),
        ),
    ]
}

fn forwarding_headers_present(_: &Reply, r: &Recorded) -> Result<(), String> {
    let expect = [
        ("x-forwarded-for", "127.0.0.1"),
        ("x-real-ip", "127.0.0.1"),
        ("x-forwarded-host", "a.test"),
        ("x-forwarded-proto", "http"),
    ];
    for (name, value) in expect {
        if r.one(name) != Some(value) {
            return Err(format!(
                "{name} should be exactly {value:?}, got {:?}",
                r.all(name)
            ));
        }
    }
    if !r.all("via").iter().any(|v| v.contains("gangway")) {
        return Err("Via: 1.1 gangway is missing".into());
    }
    Ok(())
}

/// RFC 9110 §7.6.1: a client names headers in `Connection` to make proxies
/// drop them; that must never remove the headers gangway itself adds, nor
/// Host or the message framing. RFC 7239 §8.1: forwarding headers from an
/// untrusted client are replaced, not believed.
#[test]
fn hop_by_hop_abuse() {
    run(&hop_cases());
}

fn hop_cases() -> Vec<Case> {
    vec![
        case(
            "Connection names gangway's forwarding headers",
            "RFC 9110 §7.6.1; \"hop-by-hop header abuse\" (N. Davis, 2019)",
            b"GET /hop-forwarded HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Forwarded-For, X-Real-IP, X-Forwarded-Host, X-Forwarded-Proto, Via\r\n\r\n",
            Expect::Forwarded(forwarding_headers_present),
        ),
        case(
            "Connection names Content-Length",
            "RFC 9110 §7.6.1, §8.6; RFC 9112 §6.3",
            post("/hop-cl", "Content-Length: 5\r\nConnection: Content-Length\r\n", b"hello"),
            Expect::Forwarded(body_is_hello),
        ),
        case(
            "spoofed X-Forwarded-For and X-Real-IP from an untrusted client",
            "RFC 7239 §8.1 (header validity and integrity)",
            b"GET /spoof HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n\r\n",
            Expect::Forwarded(forwarding_headers_present),
        ),
        case(
            "hop-by-hop fields are not forwarded",
            "RFC 9110 §7.6.1 (Keep-Alive, Proxy-Connection, TE, Upgrade), §10.1.4 (TE)",
            b"GET /hop-fixed HTTP/1.1\r\nHost: a.test\r\nKeep-Alive: timeout=999\r\nProxy-Connection: keep-alive\r\nTE: gzip;q=0.5, trailers\r\nTrailer: X-T\r\nUpgrade: foo/1\r\nX-Named: 1\r\nConnection: X-Named\r\n\r\n",
            Expect::Forwarded(|_, r| {
                for name in ["keep-alive", "proxy-connection", "upgrade", "x-named", "connection"] {
                    if !r.all(name).is_empty() {
                        return Err(format!("hop-by-hop {name} was forwarded"));
                    }
                }
                // gangway passes trailers through, so it may say so on
                // its own hop (gRPC needs `te: trailers`); any other TE
                // coding is the client's hop only.
                if r.all("te") != ["trailers"] {
                    return Err(format!("te forwarded as {:?}, expected only \"trailers\"", r.all("te")));
                }
                Ok(())
            }),
        ),
    ]
}

/// RFC 9110 §7.6.1 with gangway's X-Request-Id (docs/logs.md): the id
/// gangway logs is the id the backend gets, even if the client names
/// X-Request-Id in Connection.
#[test]
fn connection_cannot_strip_request_id() {
    run(&[case(
        "Connection names X-Request-Id",
        "RFC 9110 §7.6.1; \"hop-by-hop header abuse\" (N. Davis, 2019)",
        b"GET /hop-request-id HTTP/1.1\r\nHost: a.test\r\nConnection: X-Request-Id\r\n\r\n",
        Expect::Forwarded(|reply, r| {
            let sent = reply.responses[0]
                .head
                .lines()
                .find_map(|l| l.strip_prefix("x-request-id: ").map(str::to_string));
            match (r.one("x-request-id"), sent) {
                (Some(got), Some(sent)) if got == sent => Ok(()),
                (got, sent) => Err(format!(
                    "backend got X-Request-Id {got:?}, client was told {sent:?}"
                )),
            }
        }),
    )]);
}

/// RFC 9112 §3.2 (a client — gangway, towards the backend — MUST send Host
/// in every HTTP/1.1 request) and RFC 9110 §7.6.1: `Connection: close,
/// Host` must not make gangway forward a request without Host.
#[test]
fn connection_cannot_strip_host() {
    run(&[case(
        "Connection: close, Host",
        "RFC 9112 §3.2; RFC 9110 §7.6.1",
        b"GET /hop-host HTTP/1.1\r\nHost: a.test\r\nConnection: close, Host\r\n\r\n",
        Expect::Forwarded(|_, r| match r.one("host") {
            Some("a.test") => Ok(()),
            _ => Err(format!("Host at the backend: {:?}", r.all("host"))),
        }),
    )]);
}

/// RFC 9113 §3.1 (the h2c upgrade is obsolete), RFC 7540 §3.2 and the
/// h2c-smuggling research (BishopFox, 2020): an `Upgrade: h2c` request is
/// answered as plain HTTP/1.1; no tunnel is set up past routing.
#[test]
fn h2c_upgrade_is_not_tunnelled() {
    run(&h2c_cases());
}

fn h2c_cases() -> Vec<Case> {
    let upgrade = "GET /h2c HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let plain = |reply: &Reply, r: &Recorded| -> Result<(), String> {
        if !reply.responses[0].head.starts_with("HTTP/1.1 200") {
            return Err("the client did not get a plain HTTP/1.1 200".into());
        }
        for name in ["upgrade", "http2-settings", "connection"] {
            if !r.all(name).is_empty() {
                return Err(format!("{name} reached the backend"));
            }
        }
        if !r.request_line.ends_with(" HTTP/1.1") {
            return Err(format!("request line {:?}", r.request_line));
        }
        Ok(())
    };
    vec![
        case(
            "Upgrade: h2c with HTTP2-Settings",
            "RFC 9113 §3.1; RFC 7540 §3.2; BishopFox h2c smuggling (2020)",
            upgrade,
            Expect::Forwarded(plain),
        ),
        case(
            "Upgrade: h2c followed at once by the HTTP/2 preface",
            "RFC 9113 §3.1, §3.4; BishopFox h2c smuggling (2020)",
            [
                upgrade.as_bytes(),
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
            ]
            .concat(),
            Expect::Forwarded(plain),
        ),
    ]
}

/// RFC 9112 §3.2 (origin-form starts with "/"; asterisk-form is only for
/// OPTIONS), RFC 9110 §9.3.6 (gangway is no CONNECT proxy), RFC 3986 §2.1:
/// odd targets are refused or forwarded byte for byte, never decoded.
#[test]
fn path_tricks() {
    run(&path_cases());
}

fn path_cases() -> Vec<Case> {
    vec![
        case(
            "relative target ../../etc/passwd",
            "RFC 9112 §3.2.1 (origin-form = absolute-path)",
            b"GET ../../etc/passwd HTTP/1.1\r\nHost: a.test\r\n\r\n",
            refused(BAD),
        ),
        case(
            "%00 in the path",
            "RFC 3986 §2.1; RFC 9110 §4.2.3 (forward as received, never decoded)",
            b"GET /a%00b HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Expect::RefusedOrForwarded(BAD, |_, r| {
                if r.target() != "/a%00b" {
                    return Err(format!("the target was changed to {:?}", r.target()));
                }
                Ok(())
            }),
        ),
    ]
}

/// RFC 9110 §9.3.6: gangway is not a tunnel; a CONNECT request is refused
/// (4xx or 501) and never reaches a backend.
#[test]
fn connect_is_refused() {
    run(&connect_cases());
}

fn connect_cases() -> Vec<Case> {
    vec![case(
        "CONNECT to a routed host",
        "RFC 9110 §9.3.6 (gangway is not a tunnel; 4xx/501, never forwarded)",
        b"CONNECT a.test:80 HTTP/1.1\r\nHost: a.test:80\r\n\r\n",
        refused(&[400, 403, 405, 501]),
    )]
}

/// RFC 9112 §3.2.3 and §3.2.4: authority-form is only for CONNECT and
/// asterisk-form only for OPTIONS; other methods with them are invalid
/// (400), not forwarded with a made-up path.
#[test]
fn target_form_must_match_method() {
    run(&target_form_cases());
}

fn target_form_cases() -> Vec<Case> {
    vec![
        case(
            "asterisk-form with GET",
            "RFC 9112 §3.2.4 (asterisk-form only for OPTIONS)",
            b"GET * HTTP/1.1\r\nHost: a.test\r\n\r\n",
            refused(BAD),
        ),
        case(
            "authority-form with GET",
            "RFC 9112 §3.2.3 (authority-form only for CONNECT)",
            b"GET a.test:80 HTTP/1.1\r\nHost: a.test\r\n\r\n",
            refused(BAD),
        ),
    ]
}

/// RFC 3986 §5.2.4 and §6.2.2 (dot segments and percent-encoded
/// unreserved characters are equivalent to their normal form), RFC 9110
/// §4.2.3; Orange Tsai, "Breaking Parser Logic" (Black Hat 2018): a route
/// must not be chosen by one reading of the path while the backend acts on
/// another. `/x/../admin` is `/admin`, which gangway answers with 403 and
/// never forwards.
#[test]
fn dot_segments_cannot_bypass_routes() {
    run(&dot_segment_cases());
}

fn dot_segment_cases() -> Vec<Case> {
    vec![
        case(
            "dot-segments out of a routed prefix",
            "RFC 3986 §5.2.4; RFC 9110 §4.2.3; Orange Tsai, Black Hat 2018",
            b"GET /x/../admin HTTP/1.1\r\nHost: a.test\r\n\r\n",
            refused(&[400, 403]),
        ),
        case(
            "percent-encoded dot-segments",
            "RFC 3986 §6.2.2.2, §5.2.4; Orange Tsai, Black Hat 2018",
            b"GET /x/%2e%2e/admin HTTP/1.1\r\nHost: a.test\r\n\r\n",
            refused(&[400, 403]),
        ),
    ]
}

/// The number of distinct cases, as the file's header says.
const CASES: usize = 110;

/// The suite's size: every table row and every single-case test, once.
#[test]
fn suite_has_at_least_40_cases() {
    let counts = [
        smuggling_cases().len(),
        syntax_cases().len(),
        host_cases().len(),
        invalid_host_cases().len(),
        absolute_userinfo_cases().len(),
        absolute_no_host_cases().len(),
        1, // absolute_form_to_unconfigured_host
        limit_cases().len(),
        hop_cases().len(),
        2, // connection_cannot_strip_request_id, connection_cannot_strip_host
        h2c_cases().len(),
        path_cases().len(),
        connect_cases().len(),
        target_form_cases().len(),
        dot_segment_cases().len(),
        h2_malformed_cases().len(),
        // h2_rapid_reset, h2_continuation_flood, h2_empty_continuation_flood,
        // h2_hpack_bomb, h2_too_many_concurrent_streams, h2_ping_flood,
        // h2_settings_flood, h2_empty_data_frames, h2_reset_flood
        9,
        // client_errors_do_not_eject_backends, parser_refusals_are_logged
        2,
        // slowloris_head_is_cut_off, connections_over_the_cap_are_closed,
        // stalled_body_gets_408, body_over_max_body_size_gets_413 (2),
        // upgrade_refused_where_not_allowed, h2c_listener_key
        7,
    ];
    let total: usize = counts.iter().sum();
    assert_eq!(
        total, CASES,
        "update CASES and the table in the file's header"
    );
    assert!(total >= 40, "{total} cases");
}

// ---------------------------------------------------------------------------
// HTTP/2 with prior knowledge, frame by frame
// ---------------------------------------------------------------------------

/// Hand-built HTTP/2 frames (RFC 9113 §4, §6) and HPACK (RFC 7541).
mod h2 {
    use super::{ErrorKind, Instant, Read, TcpStream, Write};
    use std::time::Duration;

    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const CONTINUATION: u8 = 9;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const ACK: u8 = 0x1;
    pub const NO_ERROR: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const CANCEL: u32 = 0x8;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
    /// The largest frame payload before SETTINGS_MAX_FRAME_SIZE is raised.
    pub const MAX_FRAME: usize = 16_384;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        assert!(len < 1 << 24);
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1).
    pub fn int(value: usize, prefix: u8, first: u8) -> Vec<u8> {
        let max = (1usize << prefix) - 1;
        if value < max {
            return vec![first | value as u8];
        }
        let mut out = vec![first | max as u8];
        let mut rest = value - max;
        while rest >= 128 {
            out.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        out.push(rest as u8);
        out
    }

    fn string(s: &[u8]) -> Vec<u8> {
        [int(s.len(), 7, 0), s.to_vec()].concat()
    }

    /// A literal field without indexing, new name (RFC 7541 §6.2.2).
    pub fn field(name: &[u8], value: &[u8]) -> Vec<u8> {
        [vec![0x00], string(name), string(value)].concat()
    }

    /// A literal field with incremental indexing, new name (§6.2.1).
    pub fn indexed_field(name: &[u8], value: &[u8]) -> Vec<u8> {
        [vec![0x40], string(name), string(value)].concat()
    }

    /// The field block of a request to a.test, plus `extra` fields.
    pub fn request(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut block = [
            field(b":method", method.as_bytes()),
            field(b":scheme", b"http"),
            field(b":authority", b"a.test"),
            field(b":path", path.as_bytes()),
        ]
        .concat();
        for (name, value) in extra {
            block.extend(field(name.as_bytes(), value.as_bytes()));
        }
        block
    }

    /// HEADERS and as many CONTINUATION frames as `block` needs.
    pub fn headers(stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
        let pieces: Vec<&[u8]> = if block.is_empty() {
            vec![&[]]
        } else {
            block.chunks(MAX_FRAME).collect()
        };
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let mut flags = 0;
            if i == 0 && end_stream {
                flags |= END_STREAM;
            }
            if i == pieces.len() - 1 {
                flags |= END_HEADERS;
            }
            let kind = if i == 0 { HEADERS } else { CONTINUATION };
            out.extend(frame(kind, flags, stream, piece));
        }
        out
    }

    pub fn rst(stream: u32, code: u32) -> Vec<u8> {
        frame(RST_STREAM, 0, stream, &code.to_be_bytes())
    }

    #[derive(Debug)]
    pub struct Frame {
        pub kind: u8,
        pub flags: u8,
        pub stream: u32,
        pub payload: Vec<u8>,
    }

    /// What the server did, as the client saw it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Event {
        /// A response (or a response's first HEADERS) on a stream.
        Status(u32, u16),
        Reset(u32, u32),
        GoAway(u32),
        Closed,
    }

    pub struct Conn {
        s: TcpStream,
        buf: Vec<u8>,
        pub closed: bool,
        /// A write timed out: the server stopped reading.
        pub stalled: bool,
    }

    impl Conn {
        /// Connects, sends the preface and SETTINGS (no dynamic table for
        /// the server's responses, so that `:status` can be read without
        /// keeping one; no push), and acknowledges the server's SETTINGS.
        pub fn open(port: u16) -> Conn {
            let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut conn = Conn {
                s,
                buf: Vec::new(),
                closed: false,
                stalled: false,
            };
            let settings = [
                0u8, 1, 0, 0, 0, 0, // HEADER_TABLE_SIZE 0
                0, 2, 0, 0, 0, 0, // ENABLE_PUSH 0
            ];
            assert!(conn.send(&[PREFACE, &frame(SETTINGS, 0, 0, &settings)].concat()));
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match conn.read_frame(deadline) {
                    Some(f) if f.kind == SETTINGS && f.flags & ACK == 0 => break,
                    Some(_) => {}
                    None => panic!(
                        "no HTTP/2 SETTINGS from gangway (does the listener speak h2c?); got {:?}",
                        String::from_utf8_lossy(&conn.buf)
                    ),
                }
            }
            assert!(conn.send(&frame(SETTINGS, ACK, 0, &[])));
            conn
        }

        /// Writes `bytes`; false if the server closed the connection or
        /// stopped reading for 5 seconds (then nothing more is sent: the
        /// framing may be cut).
        pub fn send(&mut self, bytes: &[u8]) -> bool {
            if self.closed || self.stalled {
                return false;
            }
            match self.s.write_all(bytes) {
                Ok(()) => true,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.stalled = true;
                    false
                }
                Err(_) => {
                    self.closed = true;
                    false
                }
            }
        }

        /// The next frame, or `None` at `deadline` or when the connection
        /// closes (then `closed` is set).
        pub fn read_frame(&mut self, deadline: Instant) -> Option<Frame> {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                if self.buf.len() >= 9 {
                    let len = usize::from(self.buf[0]) << 16
                        | usize::from(self.buf[1]) << 8
                        | usize::from(self.buf[2]);
                    if self.buf.len() >= 9 + len {
                        let f = Frame {
                            kind: self.buf[3],
                            flags: self.buf[4],
                            stream: u32::from_be_bytes([
                                self.buf[5],
                                self.buf[6],
                                self.buf[7],
                                self.buf[8],
                            ]) & 0x7fff_ffff,
                            payload: self.buf[9..9 + len].to_vec(),
                        };
                        self.buf.drain(..9 + len);
                        return Some(f);
                    }
                }
                if self.closed || Instant::now() >= deadline {
                    return None;
                }
                match self.s.read(&mut chunk) {
                    Ok(0) => self.closed = true,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => self.closed = true,
                }
            }
        }

        /// Reads frames for up to `patience`: stops at GOAWAY or close, or
        /// once `done` holds for the events so far and the connection has
        /// then been quiet for a moment.
        pub fn events_until(
            &mut self,
            patience: Duration,
            done: impl Fn(&[Event]) -> bool,
        ) -> Vec<Event> {
            let deadline = Instant::now() + patience;
            let mut events = Vec::new();
            while Instant::now() < deadline {
                let slice = (Instant::now() + Duration::from_millis(300)).min(deadline);
                match self.read_frame(slice) {
                    Some(f) => match f.kind {
                        HEADERS => {
                            if let Some(status) = status_of(&f) {
                                events.push(Event::Status(f.stream, status));
                            }
                        }
                        RST_STREAM if f.payload.len() == 4 => {
                            let code = u32::from_be_bytes(f.payload[..4].try_into().unwrap());
                            events.push(Event::Reset(f.stream, code));
                        }
                        GOAWAY if f.payload.len() >= 8 => {
                            let code = u32::from_be_bytes(f.payload[4..8].try_into().unwrap());
                            events.push(Event::GoAway(code));
                        }
                        PING if f.flags & ACK == 0 => {
                            self.send(&frame(PING, ACK, 0, &f.payload));
                        }
                        _ => {}
                    },
                    None if self.closed => {
                        events.push(Event::Closed);
                        break;
                    }
                    // Quiet for a moment.
                    None => {
                        if done(&events) || events.iter().any(|e| matches!(e, Event::GoAway(_))) {
                            break;
                        }
                    }
                }
            }
            events
        }

        /// Events until stream `stream` has an answer (a status or a
        /// reset), or the connection ends.
        pub fn events_for(&mut self, stream: u32, patience: Duration) -> Vec<Event> {
            self.events_until(patience, |events| {
                events.iter().any(|e| match e {
                    Event::Status(s, _) | Event::Reset(s, _) => *s == stream,
                    _ => false,
                })
            })
        }
    }

    /// The `:status` of a HEADERS frame. The client's SETTINGS give the
    /// server's encoder no dynamic table, so the status is a static index
    /// or a literal with the static name (RFC 7541 §6.1, §6.2, Appendix A).
    fn status_of(f: &Frame) -> Option<u16> {
        let mut block = &f.payload[..];
        if f.flags & 0x8 != 0 {
            // PADDED
            let pad = usize::from(*block.first()?);
            block = block.get(1..block.len().checked_sub(pad)?)?;
        }
        if f.flags & 0x20 != 0 {
            // PRIORITY
            block = block.get(5..)?;
        }
        let mut i = 0;
        // Dynamic table size updates (001xxxxx, a 5-bit prefix integer).
        while let Some(&b) = block.get(i) {
            if b & 0xe0 != 0x20 {
                break;
            }
            i += 1;
            if b & 0x1f == 0x1f {
                while block.get(i).is_some_and(|c| c & 0x80 != 0) {
                    i += 1;
                }
                i += 1;
            }
        }
        let first = *block.get(i)?;
        if first & 0x80 != 0 {
            return match first & 0x7f {
                8 => Some(200),
                9 => Some(204),
                10 => Some(206),
                11 => Some(304),
                12 => Some(400),
                13 => Some(404),
                14 => Some(500),
                _ => None,
            };
        }
        let name = if first & 0xc0 == 0x40 {
            first & 0x3f
        } else {
            first & 0x0f
        };
        if !(8..=14).contains(&name) {
            return None;
        }
        let len_byte = *block.get(i + 1)?;
        let value = block.get(i + 2..i + 2 + usize::from(len_byte & 0x7f))?;
        let text = if len_byte & 0x80 != 0 {
            huffman_digits(value)?
        } else {
            String::from_utf8(value.to_vec()).ok()?
        };
        text.parse().ok()
    }

    /// Decodes a Huffman-coded string of digits (RFC 7541 Appendix B:
    /// '0'-'2' are 5 bits 00000-00010, '3'-'9' 6 bits 011001-011111).
    fn huffman_digits(bytes: &[u8]) -> Option<String> {
        let bits: Vec<u8> = bytes
            .iter()
            .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
            .collect();
        let mut out = String::new();
        let mut pos = 0;
        while pos + 5 <= bits.len() {
            let five = bits[pos..pos + 5].iter().fold(0u8, |a, b| a << 1 | b);
            if five == 0x1f {
                break; // padding (all ones)
            }
            if five <= 2 {
                out.push(char::from(b'0' + five));
                pos += 5;
            } else {
                let six = five << 1 | *bits.get(pos + 5)?;
                if !(0x19..=0x1f).contains(&six) {
                    return None;
                }
                out.push(char::from(b'3' + six - 0x19));
                pos += 6;
            }
        }
        Some(out)
    }

    /// RFC 7541 §6.3 (size update), §6.1 (indexed static `:status 200`)
    /// and Appendix B (Huffman digits): the suite's own `:status` decoder,
    /// which every HTTP/2 case relies on.
    #[test]
    fn status_decoding() {
        // "403" Huffman-coded: 011010 00000 011001, padded with ones.
        assert_eq!(huffman_digits(&[0x68, 0x0c, 0xff]).as_deref(), Some("403"));
        let f = Frame {
            kind: HEADERS,
            flags: END_HEADERS,
            stream: 1,
            payload: vec![0x3f, 0xe1, 0x1f, 0x88],
        };
        assert_eq!(status_of(&f), Some(200));
    }
}

use h2::Event;

/// gangway with h2c on its HTTP port. `GANGWAY_H2C=true` is the switch the
/// lead is adding; today plain listeners sniff the HTTP/2 preface anyway,
/// and unknown variables are ignored.
///
/// Before any attack, a control: a valid request over the same hand-built
/// framing gets 200 from the backend, so that a refusal below means the
/// attack was refused, not that the framing is broken.
fn h2_suite() -> Suite {
    let suite = Suite::start_with(&[("GANGWAY_H2C", "true")], "");
    let mark = suite.rec.mark();
    let mut conn = h2::Conn::open(suite.port());
    let block = h2::request("GET", "/h2-control", &[("x-control", "1")]);
    conn.send(&h2::headers(1, &block, true));
    let events = conn.events_for(1, Duration::from_secs(5));
    let reached = suite.rec.requests_since(&mark);
    assert!(
        events.contains(&Event::Status(1, 200))
            && matches!(reached.as_slice(), [r] if r.target() == "/h2-control" && r.one("x-control") == Some("1")),
        "control: a valid HTTP/2 request did not get through: {events:?}, backend: {reached:?}\n{}",
        suite.g.output()
    );
    suite
}

#[derive(Clone, Copy)]
enum H2Expect {
    /// RFC 9113 §8.1.1: a malformed request is a stream error of type
    /// PROTOCOL_ERROR (RST_STREAM), or a connection error (GOAWAY), or
    /// answered with 400 first; nothing reaches the backend.
    Malformed,
    /// Malformed only once its DATA arrives (content-length against DATA,
    /// RFC 9113 §8.1.1): the stream is reset or the connection closed, and
    /// the DATA never reaches the backend.
    MalformedLate,
    /// gangway's own refusal, with its `request refused` reason.
    Refused(u16, &'static str),
}

struct H2Case {
    name: &'static str,
    cite: &'static str,
    /// Frames sent on stream 1 after the connection preface.
    send: Vec<u8>,
    expect: H2Expect,
}

fn h2case(name: &'static str, cite: &'static str, send: Vec<u8>, expect: H2Expect) -> H2Case {
    H2Case {
        name,
        cite,
        send,
        expect,
    }
}

/// A request on stream 1 with these extra fields, ended.
fn h2_get(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    h2::headers(1, &h2::request("GET", path, extra), true)
}

fn h2_fields(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let block: Vec<u8> = fields.iter().flat_map(|(n, v)| h2::field(n, v)).collect();
    h2::headers(1, &block, true)
}

/// RFC 9113 §8.1.1, §8.2, §8.3 and PortSwigger's HTTP/2 downgrade research
/// (J. Kettle, "HTTP/2: The Sequel is Always Worse", 2021: H2.CL, H2.TE,
/// CRLF and request-line injection): gangway forwards HTTP/2 as HTTP/1.1,
/// so every HTTP/2 request that would turn into something else in
/// HTTP/1.1 must be refused as malformed and never reach the backend.
#[test]
fn h2_malformed_requests() {
    run_h2(&h2_malformed_cases());
}

fn h2_malformed_cases() -> Vec<H2Case> {
    let smuggle = format!("0\r\n\r\n{SMUGGLED}");
    vec![
        h2case(
            "te: gzip",
            "RFC 9113 §8.2.2 (TE other than \"trailers\" is malformed)",
            h2_get("/h2-te", &[("te", "gzip")]),
            H2Expect::Malformed,
        ),
        h2case(
            "H2.TE: transfer-encoding: chunked with a smuggled request in DATA",
            "RFC 9113 §8.2.2; Kettle 2021 (H2.TE)",
            [
                h2::headers(
                    1,
                    &h2::request(
                        "POST",
                        "/h2-te-chunked",
                        &[("transfer-encoding", "chunked")],
                    ),
                    false,
                ),
                h2::frame(h2::DATA, h2::END_STREAM, 1, smuggle.as_bytes()),
            ]
            .concat(),
            H2Expect::Malformed,
        ),
        h2case(
            "connection: keep-alive",
            "RFC 9113 §8.2.2 (connection-specific fields are malformed)",
            h2_get("/h2-connection", &[("connection", "keep-alive")]),
            H2Expect::Malformed,
        ),
        h2case(
            "upgrade: websocket",
            "RFC 9113 §8.2.2; RFC 8441 (WebSockets over HTTP/2 use extended CONNECT, not Upgrade)",
            h2_get("/h2-upgrade", &[("upgrade", "websocket")]),
            H2Expect::Malformed,
        ),
        h2case(
            "H2.CL: content-length 0 with a smuggled request in DATA",
            "RFC 9113 §8.1.1 (content-length must equal the DATA length); Kettle 2021 (H2.CL)",
            [
                h2::headers(
                    1,
                    &h2::request("POST", "/h2-cl", &[("content-length", "0")]),
                    false,
                ),
                h2::frame(h2::DATA, h2::END_STREAM, 1, SMUGGLED.as_bytes()),
            ]
            .concat(),
            H2Expect::MalformedLate,
        ),
        h2case(
            "CRLF in a field value",
            "RFC 9113 §8.2.1 (CR, LF, NUL in a value are malformed); Kettle 2021 (H2.CRLF)",
            h2_get(
                "/h2-crlf",
                &[("x-inject", "a\r\nTransfer-Encoding: chunked")],
            ),
            H2Expect::Malformed,
        ),
        h2case(
            "NUL in a field value",
            "RFC 9113 §8.2.1",
            h2_get("/h2-nul", &[("x-nul", "a\0b")]),
            H2Expect::Malformed,
        ),
        h2case(
            "request-line injection through :path",
            "RFC 9113 §8.3.1; Kettle 2021 (request line injection)",
            h2_get(
                "/h2-path HTTP/1.1\r\nHost: a.test\r\n\r\nGET /smuggled",
                &[],
            ),
            H2Expect::Malformed,
        ),
        h2case(
            "request-line injection through :method",
            "RFC 9113 §8.3.1; RFC 9110 §9.1 (method = token); Kettle 2021",
            h2::headers(
                1,
                &h2::request(
                    "GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\nGET",
                    "/h2-method",
                    &[],
                ),
                true,
            ),
            H2Expect::Malformed,
        ),
        h2case(
            "upper-case field name",
            "RFC 9113 §8.2.1 (upper-case field names are malformed)",
            h2_get("/h2-upper", &[("X-Upper", "1")]),
            H2Expect::Malformed,
        ),
        h2case(
            "space in a field name",
            "RFC 9113 §8.2.1; RFC 9110 §5.1 (field-name = token); Kettle 2021",
            h2_get("/h2-name-space", &[("transfer-encoding chunked", "1")]),
            H2Expect::Malformed,
        ),
        h2case(
            "zero-length field name",
            "CVE-2019-9516 (0-length headers leak); RFC 9113 §8.2.1",
            h2_get("/h2-empty-name", &[("", "x")]),
            H2Expect::Malformed,
        ),
        h2case(
            "pseudo-header after a regular field",
            "RFC 9113 §8.3 (pseudo-header fields come first)",
            h2_fields(&[
                (b":method", b"GET"),
                (b"x-a", b"1"),
                (b":scheme", b"http"),
                (b":authority", b"a.test"),
                (b":path", b"/h2-order"),
            ]),
            H2Expect::Malformed,
        ),
        h2case(
            "missing :path",
            "RFC 9113 §8.3.1 (:method, :scheme, :path are required)",
            h2_fields(&[
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"a.test"),
            ]),
            H2Expect::Malformed,
        ),
        h2case(
            "empty :path",
            "RFC 9113 §8.3.1 (:path must not be empty for http)",
            h2_get("", &[]),
            H2Expect::Malformed,
        ),
        h2case(
            "unknown pseudo-header",
            "RFC 9113 §8.3 (undefined pseudo-header fields are malformed)",
            h2_get("/h2-pseudo", &[(":smuggle", "1")]),
            H2Expect::Malformed,
        ),
        h2case(
            ":authority disagrees with host",
            "RFC 9113 §8.3.1 (host and :authority must agree); PortSwigger Host header attacks",
            h2_get("/h2-authority", &[("host", "evil.test")]),
            H2Expect::Refused(400, "disagrees"),
        ),
    ]
}

fn run_h2(cases: &[H2Case]) {
    let suite = h2_suite();
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let mark = suite.rec.mark();
        let mut conn = h2::Conn::open(suite.port());
        conn.send(&c.send);
        let events = match c.expect {
            H2Expect::MalformedLate => conn.events_until(Duration::from_secs(5), |ev| {
                ev.iter().any(|e| matches!(e, Event::Reset(1, _)))
            }),
            _ => conn.events_for(1, Duration::from_secs(5)),
        };
        drop(conn);
        eprintln!("h2 case {:?}: {events:?}", c.name);
        let result = suite.probe(&format!("h2-{i}")).and_then(|()| {
            let received: Vec<Recorded> = suite
                .rec
                .requests_since(&mark)
                .into_iter()
                .filter(|r| !r.target().starts_with("/probe/"))
                .collect();
            check_h2(&suite, c, &events, &received).map_err(|problem| {
                let shown: Vec<String> = received
                    .iter()
                    .map(|r| lossy(&[r.raw_head.as_slice(), &r.body].concat(), 500))
                    .collect();
                format!("{problem}\n  gangway sent: {events:?}\n  the backend received: {shown:?}")
            })
        });
        if let Err(problem) = result {
            failures.push(format!("case {:?} ({}):\n  {problem}", c.name, c.cite));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// Whether the events refuse stream 1 as malformed.
fn refused_as_malformed(events: &[Event]) -> bool {
    events.iter().any(|e| {
        matches!(
            e,
            Event::Reset(1, h2::PROTOCOL_ERROR) | Event::Status(1, 400) | Event::Closed
        ) || matches!(e, Event::GoAway(code) if *code != h2::NO_ERROR)
    })
}

fn check_h2(
    suite: &Suite,
    c: &H2Case,
    events: &[Event],
    received: &[Recorded],
) -> Result<(), String> {
    if received
        .iter()
        .any(|r| contains(&r.raw_head, b"smuggled") || contains(&r.body, b"smuggled"))
    {
        return Err("the smuggled request reached the backend".into());
    }
    match c.expect {
        H2Expect::Malformed => {
            if !refused_as_malformed(events) {
                return Err(
                    "expected RST_STREAM(PROTOCOL_ERROR), GOAWAY or 400 on stream 1".into(),
                );
            }
            if events
                .iter()
                .any(|e| matches!(e, Event::Status(1, s) if *s != 400))
            {
                return Err("a malformed request got a response other than 400".into());
            }
            if !received.is_empty() {
                return Err("a malformed request reached the backend".into());
            }
        }
        H2Expect::MalformedLate => {
            if !refused_as_malformed(events) {
                return Err("expected RST_STREAM(PROTOCOL_ERROR) or GOAWAY on stream 1".into());
            }
            if received.iter().any(|r| !r.body.is_empty()) {
                return Err("the DATA of a malformed request reached the backend".into());
            }
        }
        H2Expect::Refused(status, reason) => {
            if !events.contains(&Event::Status(1, status)) {
                return Err(format!("expected status {status} on stream 1"));
            }
            if !received.is_empty() {
                return Err("a refused request reached the backend".into());
            }
            suite.logged("request refused", &format!("with reason {reason:?}"), |v| {
                v["reason"].as_str().is_some_and(|r| r.contains(reason))
            })?;
        }
    }
    Ok(())
}

/// After an HTTP/2 attack: gangway still serves a normal HTTP/1.1 request
/// on another connection.
fn assert_still_serving(suite: &Suite, tag: &str) {
    if let Err(problem) = suite.probe(tag) {
        panic!("{problem}\n{}", suite.g.output());
    }
}

/// A one-line account of what gangway sent, for the test's output.
fn summary(tag: &str, events: &[Event]) -> String {
    let statuses = events
        .iter()
        .filter(|e| matches!(e, Event::Status(..)))
        .count();
    let resets = events
        .iter()
        .filter(|e| matches!(e, Event::Reset(..)))
        .count();
    let end: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::GoAway(_) | Event::Closed))
        .collect();
    let text = format!("{tag}: {statuses} responses, {resets} RST_STREAMs, then {end:?}");
    eprintln!("{text}");
    text
}

/// GOAWAY with ENHANCE_YOUR_CALM (RFC 9113 §5.4.1, §7), or the connection
/// closed without any other GOAWAY.
fn calmed_or_closed(events: &[Event]) -> bool {
    let goaways: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::GoAway(code) => Some(*code),
            _ => None,
        })
        .collect();
    goaways.contains(&h2::ENHANCE_YOUR_CALM)
        || (goaways.is_empty() && events.contains(&Event::Closed))
}

fn goaway_or_closed(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::Closed) || matches!(e, Event::GoAway(c) if *c != h2::NO_ERROR))
}

/// CVE-2023-44487 ("HTTP/2 Rapid Reset"), RFC 9113 §6.4 and §10.5: a client
/// that opens and at once cancels thousands of streams is cut off
/// (GOAWAY ENHANCE_YOUR_CALM, or the connection closed) rather than
/// costing a backend request per stream.
#[test]
fn h2_rapid_reset() {
    let suite = h2_suite();
    let mark = suite.rec.mark();
    let mut conn = h2::Conn::open(suite.port());
    let pairs = 5_000;
    let mut burst = Vec::new();
    for i in 0..pairs {
        let id = 1 + 2 * i;
        burst.extend(h2::headers(
            id,
            &h2::request("GET", &format!("/rapid/{i}"), &[]),
            true,
        ));
        burst.extend(h2::rst(id, h2::CANCEL));
    }
    conn.send(&burst);
    let events = conn.events_until(Duration::from_secs(10), |_| false);
    drop(conn);
    summary("rapid reset", &events);
    let reached = suite.rec.requests_since(&mark).len();
    assert!(
        calmed_or_closed(&events),
        "{pairs} HEADERS+RST_STREAM pairs: no GOAWAY(ENHANCE_YOUR_CALM) and the connection stayed open; {reached} requests reached the backend; last events {:?}",
        &events[events.len().saturating_sub(5)..]
    );
    assert!(
        reached < pairs as usize,
        "every one of the {pairs} reset streams reached the backend"
    );
    assert_still_serving(&suite, "rapid-reset");
}

/// CVE-2024-27316 / VU#421644 (HTTP/2 CONTINUATION flood), RFC 9113 §6.10
/// and §10.5.1: a header block that never ends (CONTINUATION frames
/// without END_HEADERS) is cut off — the connection is closed, with
/// GOAWAY — instead of being buffered or decoded without bound; the
/// request never reaches the backend.
#[test]
fn h2_continuation_flood() {
    let suite = h2_suite();
    let mark = suite.rec.mark();
    let mut conn = h2::Conn::open(suite.port());
    conn.send(&h2::frame(
        h2::HEADERS,
        h2::END_STREAM,
        1,
        &h2::request("GET", "/continuation", &[]),
    ));
    let piece = h2::field(b"x-flood", &[b'a'; 16_000]);
    let mut sent = 0;
    // Up to 32 MB; gangway should give up long before.
    while sent < 2_000 && conn.send(&h2::frame(h2::CONTINUATION, 0, 1, &piece)) {
        sent += 1;
    }
    let events = conn.events_until(Duration::from_secs(10), |_| false);
    summary(&format!("continuation flood ({sent} frames sent)"), &events);
    assert!(
        goaway_or_closed(&events),
        "after {sent} CONTINUATION frames of 16 kB (stalled: {}), gangway neither sent GOAWAY nor closed: {events:?}",
        conn.stalled
    );
    drop(conn);
    assert!(
        suite.rec.requests_since(&mark).is_empty(),
        "the request reached the backend"
    );
    assert_still_serving(&suite, "continuation-flood");
}

/// VU#421644 (the empty-frame variant, e.g. CVE-2024-27983), RFC 9113
/// §6.10: an endless run of empty CONTINUATION frames costs CPU without
/// growing the header block; it must be cut off too.
#[test]
fn h2_empty_continuation_flood() {
    let suite = h2_suite();
    let mark = suite.rec.mark();
    let mut conn = h2::Conn::open(suite.port());
    conn.send(&h2::frame(
        h2::HEADERS,
        h2::END_STREAM,
        1,
        &h2::request("GET", "/continuation-empty", &[]),
    ));
    let empty = h2::frame(h2::CONTINUATION, 0, 1, &[]);
    let burst: Vec<u8> = empty
        .iter()
        .copied()
        .cycle()
        .take(empty.len() * 10_000)
        .collect();
    let mut sent = 0;
    while sent < 20 && conn.send(&burst) {
        sent += 1;
    }
    let events = conn.events_until(Duration::from_secs(10), |_| false);
    summary(
        &format!("empty continuation flood ({sent}0000 frames sent)"),
        &events,
    );
    assert!(
        goaway_or_closed(&events),
        "after {} empty CONTINUATION frames (stalled: {}), gangway neither sent GOAWAY nor closed: {events:?}",
        sent * 10_000,
        conn.stalled
    );
    drop(conn);
    assert!(
        suite.rec.requests_since(&mark).is_empty(),
        "the request reached the backend"
    );
    assert_still_serving(&suite, "empty-continuation-flood");
}

/// CVE-2016-6581 (HPACK bomb), RFC 7541 §7.3 and RFC 9113 §10.5.1: one
/// 4 kB dynamic-table entry referenced 30,000 times (30 kB on the wire,
/// 120 MB decoded) goes past SETTINGS_MAX_HEADER_LIST_SIZE; the request is
/// refused (431, RST_STREAM or GOAWAY) and never forwarded.
#[test]
fn h2_hpack_bomb() {
    let suite = h2_suite();
    let mark = suite.rec.mark();
    let mut conn = h2::Conn::open(suite.port());
    let mut block = h2::request("GET", "/hpack-bomb", &[]);
    block.extend(h2::indexed_field(b"x-bomb", &[b'a'; 4_000]));
    // Index 62: the newest entry of the dynamic table (0x80 | 62).
    block.extend(std::iter::repeat_n(0xbe, 30_000));
    conn.send(&h2::headers(1, &block, true));
    let events = conn.events_for(1, Duration::from_secs(10));
    drop(conn);
    summary("hpack bomb", &events);
    let refused = events.iter().any(|e| {
        matches!(
            e,
            Event::Status(1, 431) | Event::Reset(1, _) | Event::Closed
        ) || matches!(e, Event::GoAway(c) if *c != h2::NO_ERROR)
    });
    assert!(refused, "the HPACK bomb was not refused: {events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Status(1, s) if *s < 400)),
        "the HPACK bomb got a success: {events:?}"
    );
    assert!(
        suite.rec.requests_since(&mark).is_empty(),
        "the bomb reached the backend"
    );
    assert_still_serving(&suite, "hpack-bomb");
}

/// RFC 9113 §5.1.2 and CVE-2019-9511..9518's resource family: gangway
/// advertises SETTINGS_MAX_CONCURRENT_STREAMS 250; the streams a client
/// opens past it are refused (RST_STREAM REFUSED_STREAM or PROTOCOL_ERROR,
/// or GOAWAY).
#[test]
fn h2_too_many_concurrent_streams() {
    let suite = h2_suite();
    let mark = suite.rec.mark();
    let mut conn = h2::Conn::open(suite.port());
    let streams = 300u32;
    let mut burst = Vec::new();
    for i in 0..streams {
        // A body is announced and never sent: each stream stays open.
        let block = h2::request("POST", &format!("/streams/{i}"), &[("content-length", "1")]);
        burst.extend(h2::headers(1 + 2 * i, &block, false));
    }
    conn.send(&burst);
    let refused = |events: &[Event]| {
        events
            .iter()
            .filter(|e| matches!(e, Event::Reset(_, h2::REFUSED_STREAM | h2::PROTOCOL_ERROR)))
            .count()
    };
    let events = conn.events_until(Duration::from_secs(10), |ev| refused(ev) >= 50);
    drop(conn);
    summary("too many streams", &events);
    assert!(
        refused(&events) >= 50
            || events
                .iter()
                .any(|e| matches!(e, Event::GoAway(c) if *c != h2::NO_ERROR)),
        "{streams} concurrent streams: only {} refused and no GOAWAY: {:?}",
        refused(&events),
        &events[..events.len().min(20)]
    );
    assert!(
        suite.rec.requests_since(&mark).is_empty(),
        "streams whose bodies never came reached the backend"
    );
    assert_still_serving(&suite, "too-many-streams");
}

/// A flood of control frames that each ask for an answer, sent without
/// reading the answers: gangway must bound what it queues (drop or stop
/// reading, or GOAWAY) and keep serving. The connection either still
/// answers a request or was closed.
fn control_frame_flood(frame: &[u8], count: usize, tag: &str) {
    let suite = h2_suite();
    let mark = suite.rec.mark();
    let mut conn = h2::Conn::open(suite.port());
    let burst: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * count)
        .collect();
    conn.send(&burst);
    conn.send(&h2_get(&format!("/{tag}"), &[]));
    let events = conn.events_for(1, Duration::from_secs(15));
    drop(conn);
    summary(tag, &events);
    let answered = events.contains(&Event::Status(1, 200));
    let cut_off = goaway_or_closed(&events);
    assert!(
        answered || cut_off,
        "after {count} frames: neither an answer on stream 1 nor GOAWAY/close: {events:?}"
    );
    let reached = suite.rec.requests_since(&mark);
    assert!(reached.len() <= 1, "{reached:?}");
    assert_still_serving(&suite, tag);
}

/// CVE-2019-9512 (ping flood), RFC 9113 §6.7 and §10.5.
#[test]
fn h2_ping_flood() {
    control_frame_flood(
        &h2::frame(h2::PING, 0, 0, b"12345678"),
        100_000,
        "ping-flood",
    );
}

/// CVE-2019-9515 (settings flood), RFC 9113 §6.5.3 and §10.5.
#[test]
fn h2_settings_flood() {
    control_frame_flood(
        &h2::frame(h2::SETTINGS, 0, 0, &[]),
        100_000,
        "settings-flood",
    );
}

/// CVE-2019-9518 (empty frames flood), RFC 9113 §6.1 and RFC 9112 §7.1.
/// First 50 empty DATA frames, which a client may legitimately send: they
/// must not turn into a zero-length chunk (the chunked body's end) on the
/// HTTP/1.1 side, so the backend gets exactly one request with the whole
/// body. Then 20,000 of them: bounded work — answered the same way, or cut
/// off with GOAWAY / close, never a truncated request at the backend.
#[test]
fn h2_empty_data_frames() {
    let suite = h2_suite();
    for (count, may_cut_off) in [(50, false), (20_000, true)] {
        let mark = suite.rec.mark();
        let mut conn = h2::Conn::open(suite.port());
        let path = format!("/empty-data/{count}");
        let mut burst = h2::headers(1, &h2::request("POST", &path, &[]), false);
        let empty = h2::frame(h2::DATA, 0, 1, &[]);
        burst.extend(empty.iter().copied().cycle().take(empty.len() * count));
        burst.extend(h2::frame(h2::DATA, h2::END_STREAM, 1, b"x"));
        conn.send(&burst);
        let events = conn.events_for(1, Duration::from_secs(10));
        drop(conn);
        summary(&format!("{count} empty DATA frames"), &events);
        let reached = suite.rec.requests_since(&mark);
        if events.contains(&Event::Status(1, 200)) {
            assert!(
                matches!(reached.as_slice(), [one] if one.complete && one.body == b"x"),
                "{count} empty DATA frames: the backend should get one request with body \"x\": {reached:?}"
            );
        } else {
            assert!(
                may_cut_off && goaway_or_closed(&events),
                "{count} empty DATA frames: neither answered nor cut off: {events:?}"
            );
            assert!(reached.iter().all(|r| !r.complete), "{reached:?}");
        }
    }
    assert_still_serving(&suite, "empty-data");
}

/// CVE-2019-9514 (reset flood): 2,000 malformed streams make gangway send
/// 2,000 RST_STREAMs unless it bounds them; it must end the connection
/// (GOAWAY ENHANCE_YOUR_CALM, or close) instead.
#[test]
fn h2_reset_flood() {
    let suite = h2_suite();
    let mark = suite.rec.mark();
    let mut conn = h2::Conn::open(suite.port());
    let streams = 2_000u32;
    let mut burst = Vec::new();
    for i in 0..streams {
        let block = h2::request("GET", &format!("/reset-flood/{i}"), &[("te", "gzip")]);
        burst.extend(h2::headers(1 + 2 * i, &block, true));
    }
    conn.send(&burst);
    let events = conn.events_until(Duration::from_secs(10), |_| false);
    drop(conn);
    summary("reset flood", &events);
    let resets = events
        .iter()
        .filter(|e| matches!(e, Event::Reset(..)))
        .count();
    assert!(
        calmed_or_closed(&events),
        "{streams} malformed streams: {resets} RST_STREAMs and no GOAWAY(ENHANCE_YOUR_CALM)/close"
    );
    assert!(
        suite.rec.requests_since(&mark).is_empty(),
        "a malformed stream reached the backend"
    );
    assert_still_serving(&suite, "reset-flood");
}

// ---------------------------------------------------------------------------
// Client errors, as gangway's operators see them
// ---------------------------------------------------------------------------

/// RFC 9110 §15.5.1 and §15.6.3, and docs/config.md "Failover": a
/// malformed request body is the client's fault. It must not count as the
/// target failing — or any client can eject healthy backends at will,
/// three bad requests per target — and it is not logged as an upstream
/// failure.
#[test]
fn client_errors_do_not_eject_backends() {
    let suite = Suite::start();
    for i in 0..4 {
        let reply = exchange(
            suite.port(),
            &post(
                &format!("/eject/{i}"),
                "Transfer-Encoding: chunked\r\n",
                b"zz\r\n",
            ),
        );
        eprintln!("malformed body {i}: {}", reply.describe());
    }
    assert_still_serving(&suite, "after-malformed-bodies");
    let blamed = suite.g.messages("upstream request failed");
    let ejected = suite.g.messages("target ejected");
    assert!(
        blamed.is_empty() && ejected.is_empty(),
        "client errors were blamed on the backend: {} \"upstream request failed\", {} \"target ejected\":\n{}",
        blamed.len(),
        ejected.len(),
        suite.g.output()
    );
}

/// docs/logs.md (`request refused`: client, method, path, status,
/// reason) and OWASP's Logging Cheat Sheet (log input validation
/// failures): requests that gangway's HTTP/1 parser refuses (400, 431)
/// are refused by gangway all the same, and an operator needs a line for
/// each to see an attack.
#[test]
fn parser_refusals_are_logged() {
    let suite = Suite::start();
    let big = [
        b"GET /long HTTP/1.1\r\nHost: a.test\r\nX-Big: ".as_slice(),
        &[b'a'; 70 * 1024],
        b"\r\n\r\n",
    ]
    .concat();
    let requests: [&[u8]; 3] = [
        b"POST /cl HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabc",
        b"GET /ws HTTP/1.1\r\nHost: a.test\r\nX-A : b\r\n\r\n",
        &big,
    ];
    for request in requests {
        let reply = exchange(suite.port(), request);
        assert!(
            matches!(reply.status(), Some(400 | 431)),
            "{}",
            reply.describe()
        );
    }
    let logged = |v: &serde_json::Value| {
        matches!(v["status"].as_u64(), Some(400 | 431)) && v["client"] == "127.0.0.1"
    };
    let found = gangway_testkit::wait_until(WAIT, || {
        suite.g.json_lines().iter().filter(|v| logged(v)).count() >= requests.len()
    });
    assert!(
        found,
        "expected a log line (client, status, reason) for each of the {} refused requests:\n{}",
        requests.len(),
        suite.g.output()
    );
}

// ---------------------------------------------------------------------------
// Settings the lead is adding (ignored until they exist)
// ---------------------------------------------------------------------------

/// Slowloris (R. Hansen, 2009; CVE-2007-6750) and RFC 9110 §15.5.9 (408):
/// with `GANGWAY_HEADER_TIMEOUT=1s`, a client that sends its request head
/// one line at a time is cut off (408 or a closed connection) well before
/// ten times that; nothing reaches the backend.
#[test]
fn slowloris_head_is_cut_off() {
    let suite = Suite::start_with(&[("GANGWAY_HEADER_TIMEOUT", "1s")], "");
    let mark = suite.rec.mark();
    let mut s = TcpStream::connect(("127.0.0.1", suite.port())).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(b"GET /slowloris HTTP/1.1\r\nHost: a.test\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let mut cut = false;
    // One more field line every 200 ms, for at most 10 s (10x the limit).
    for i in 0..50 {
        match s.read(&mut buf) {
            Ok(0) => cut = true,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => cut = true,
        }
        if cut || s.write_all(format!("X-{i}: a\r\n").as_bytes()).is_err() {
            cut = true;
            break;
        }
    }
    assert!(cut, "a slowloris head was still accepted after 10 s");
    let responses = parse_responses(&raw, true);
    assert!(
        responses.iter().all(|r| r.status == 408),
        "{}",
        lossy(&raw, 300)
    );
    assert!(suite.rec.requests_since(&mark).is_empty());
    assert_still_serving(&suite, "slowloris");
}

/// CWE-770 and the connection-exhaustion family (slowloris, CVE-2019-9511
/// resource loops): with `GANGWAY_MAX_CONNECTIONS=4`, a fifth connection
/// is accepted and closed at once without an answer, logged as
/// `connection limit reached`; once the others close, new connections are
/// served again.
#[test]
fn connections_over_the_cap_are_closed() {
    let suite = Suite::start_with(&[("GANGWAY_MAX_CONNECTIONS", "4")], "");
    let mark = suite.rec.mark();
    // Four kept-alive connections, each known to be accepted.
    let held: Vec<TcpStream> = (0..4)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", suite.port())).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(format!("GET /held/{i} HTTP/1.1\r\nHost: a.test\r\n\r\n").as_bytes())
                .unwrap();
            let reply = read_reply(&mut s, Duration::from_secs(5));
            assert_eq!(reply.status(), Some(200), "{}", reply.describe());
            s
        })
        .collect();
    let fifth = exchange(suite.port(), b"GET /fifth HTTP/1.1\r\nHost: a.test\r\n\r\n");
    assert!(
        fifth.responses.is_empty() && fifth.closed,
        "the fifth connection: {}",
        fifth.describe()
    );
    suite
        .logged("connection limit reached", "", |_| true)
        .unwrap();
    assert!(
        !suite
            .rec
            .requests_since(&mark)
            .iter()
            .any(|r| r.target() == "/fifth"),
        "the connection over the cap was served"
    );
    drop(held);
    assert!(
        gangway_testkit::wait_until(WAIT, || suite.probe("after-cap").is_ok()),
        "new connections are not served after the held ones closed"
    );
}

/// RFC 9110 §15.5.9 (408) and the slow-POST attack (OWASP "Slow HTTP
/// POST", CVE-2007-6750 family): with `GANGWAY_BODY_TIMEOUT=1s`, a body
/// that stops half-way gets 408, with a log line, and the backend never
/// gets a complete request.
#[test]
fn stalled_body_gets_408() {
    let suite = Suite::start_with(&[("GANGWAY_BODY_TIMEOUT", "1s")], "");
    let mark = suite.rec.mark();
    let mut s = TcpStream::connect(("127.0.0.1", suite.port())).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&post("/slow-body", "Content-Length: 10\r\n", b"hello"))
        .unwrap();
    let reply = read_reply(&mut s, Duration::from_secs(10));
    assert_eq!(reply.status(), Some(408), "{}", reply.describe());
    assert!(
        suite.rec.requests_since(&mark).iter().all(|r| !r.complete),
        "a stalled body reached the backend as a complete request"
    );
    suite
        .logged("request refused", "with status 408", |v| v["status"] == 408)
        .or_else(|_| suite.logged("request", "with status 408", |v| v["status"] == 408))
        .unwrap();
    assert_still_serving(&suite, "slow-body");
}

const LIMITED_ROUTE: &str = r#"
[[routes]]
name = "limited"
hosts = ["a.test"]
path = { prefix = "/limited" }
pool = "p"
max_body_size = "1KiB"
"#;

/// RFC 9110 §15.5.14 (413) and CWE-770: a route with
/// `max_body_size = "1KiB"` refuses larger bodies with 413 — up front by
/// Content-Length, or as soon as a chunked body passes the limit — and
/// the backend never gets a request whose body exceeds it.
#[test]
fn body_over_max_body_size_gets_413() {
    let suite = Suite::start_with(&[], LIMITED_ROUTE);
    let chunk = [b"200\r\n".as_slice(), &[b'b'; 512], b"\r\n"].concat();
    let chunked_body = [chunk.repeat(4), b"0\r\n\r\n".to_vec()].concat();
    run_on(
        &suite,
        &[
            case(
                "control: a body under the limit",
                "RFC 9110 §15.5.14",
                post("/limited/small", "Content-Length: 5\r\n", b"hello"),
                Expect::Forwarded(body_is_hello),
            ),
            case(
                "Content-Length over max_body_size",
                "RFC 9110 §15.5.14 (413); CWE-770",
                post("/limited/cl", "Content-Length: 2048\r\n", &[b'a'; 2048]),
                Expect::Answered(413),
            ),
            case(
                "chunked body growing past max_body_size",
                "RFC 9110 §15.5.14 (413); RFC 9112 §7.1; CWE-770",
                post(
                    "/limited/chunked",
                    "Transfer-Encoding: chunked\r\n",
                    &chunked_body,
                ),
                Expect::RefusedMidBody { statuses: &[413] },
            ),
        ],
    );
    assert!(
        suite
            .g
            .json_lines()
            .iter()
            .filter(|v| v["status"] == 413)
            .count()
            >= 2,
        "the 413s are not logged:\n{}",
        suite.g.output()
    );
}

/// RFC 6455 §4.2.2 (a server may refuse the handshake) and RFC 9110
/// §7.8: on a route with `allow_upgrade = false`, a WebSocket upgrade
/// request gets 403 and never reaches the backend.
#[test]
fn upgrade_refused_where_not_allowed() {
    let suite = Suite::start_with(
        &[],
        r#"
[[routes]]
name = "no-upgrade"
hosts = ["a.test"]
path = { prefix = "/no-upgrade" }
pool = "p"
allow_upgrade = false
"#,
    );
    run_on(
        &suite,
        &[case(
            "WebSocket upgrade to a route with allow_upgrade = false",
            "RFC 6455 §4.2.2; RFC 9110 §7.8",
            b"GET /no-upgrade/ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            Expect::Answered(403),
        )],
    );
}

/// RFC 9113 §3.3 (prior knowledge): a `[[listeners]]` entry with
/// `h2c = true` speaks HTTP/2 without TLS, and the requests on it are
/// routed (and checked) like any other.
#[test]
fn h2c_listener_key() {
    let port = gangway_testkit::free_port();
    let suite = Suite::start_with(
        &[],
        &format!("\n[[listeners]]\nname = \"h2c\"\nport = {port}\nh2c = true\n"),
    );
    let mark = suite.rec.mark();
    let mut conn = h2::Conn::open(port);
    conn.send(&h2_get("/h2c-listener", &[]));
    let events = conn.events_for(1, Duration::from_secs(5));
    assert!(events.contains(&Event::Status(1, 200)), "{events:?}");
    assert!(suite
        .rec
        .requests_since(&mark)
        .iter()
        .any(|r| r.target() == "/h2c-listener"));
}

/// RFC 9113 §3.3: HTTP/2 with prior knowledge is opt-in. A plain listener
/// without `h2c = true` speaks HTTP/1.1 only, so the HTTP/2 preface is
/// refused (closed, logged) and nothing reaches the backend.
#[test]
fn h2c_is_off_unless_enabled() {
    let port = gangway_testkit::free_port();
    let suite = Suite::start_with(
        &[],
        &format!("\n[[listeners]]\nname = \"plain\"\nport = {port}\n"),
    );
    let mark = suite.rec.mark();
    let reply = exchange(port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert!(
        reply.responses.iter().all(|r| r.status >= 400) && reply.closed,
        "{}",
        reply.describe()
    );
    suite
        .logged("request refused", "for the HTTP/2 preface", |v| {
            v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("HTTP2 preface"))
        })
        .unwrap();
    assert!(suite.rec.requests_since(&mark).is_empty());
}
