//! gangway's own HTTP/1.1: the client towards plain-HTTP targets (here)
//! and the server for plain listeners (`server`).
//!
//! A request is written and its response read by the task that serves the
//! client, on a connection taken from a per-target idle list: no channel,
//! no second task, no hashing of URIs. A general-purpose client (hyper's,
//! which gangway keeps for HTTP/2 and TLS towards targets) pays for those
//! on every request; here they were two fifths of the instructions spent
//! per proxied request (see bench/README.md).

mod body;
// Reached by the fuzz targets too (`crate::fuzzing`).
pub(crate) mod chunked;
mod conn;
pub(crate) mod head;
pub(crate) mod server;

pub(crate) use body::OriginBody;

use crate::body::{BodyError, RequestBody};
use crate::handler::declared_length;
use body::{Pump, PumpError};
use bytes::Bytes;
use conn::Conn;
use gangway_model::Timeouts;
use head::{RequestFraming, ResponseHead};
use http::header;
use http::{Request, Response, StatusCode};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{ready, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Why an exchange with a target failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum H1Error {
    /// No connection: nothing was sent, so the request may go elsewhere.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("connect: no connection within {0:?}")]
    ConnectTimeout(Duration),
    /// The request was (at least partly) sent; then the exchange broke.
    #[error("{0}")]
    Exchange(String),
    /// The client's request body failed; not the target's fault.
    #[error("the client's request body failed: {0}")]
    ClientBody(BodyError),
}

impl H1Error {
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, H1Error::Connect(_) | H1Error::ConnectTimeout(_))
    }
}

/// A connection switched to another protocol after a 101.
#[derive(Debug)]
pub(crate) struct Upgraded {
    pub io: TcpStream,
    /// Bytes the target sent right after its head.
    pub read_ahead: Bytes,
}

/// An idle connection and when it stops being usable.
#[derive(Debug)]
struct Idle {
    conn: Conn,
    expires: Instant,
}

/// Idle keep-alive connections by target, newest last.
#[derive(Debug, Default)]
pub(crate) struct H1Client {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>, BuildHasherDefault<AddrHasher>>>,
    /// The idle reaper's period in milliseconds; 0 until it runs.
    reaper_every_ms: AtomicU64,
}

/// Hashes target addresses for the idle lists. The targets come from the
/// configuration and Docker, never from clients, so an unkeyed hash
/// cannot be steered into collisions; the default SipHash cost 240
/// instructions a request (a lookup at checkout and one at checkin).
#[derive(Debug, Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.add(u64::from(b)));
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl AddrHasher {
    /// One multiply-rotate step (as in Firefox's FxHash): the high bits,
    /// which the table's control bytes use, depend on every input.
    fn add(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// Where a connection goes when its response is done.
#[derive(Debug)]
pub(crate) struct Checkin {
    client: Weak<H1Client>,
    idle_for: Duration,
    max_idle: usize,
}

impl Checkin {
    pub(crate) fn put(self, mut conn: Conn) {
        let Some(client) = self.client.upgrade() else {
            return;
        };
        if self.max_idle == 0 {
            return;
        }
        conn.reused = true;
        let now = Instant::now();
        let mut idle = client.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(conn.addr).or_default();
        if list.len() >= self.max_idle {
            list.remove(0);
        }
        list.push(Idle {
            conn,
            expires: now + self.idle_for,
        });
    }
}

impl H1Client {
    /// Sends `req` to `addr` and returns the response once its head has
    /// arrived; the body is read as the caller polls it. `now`: the time
    /// the caller read as it sent the request (a clock read costs tens of
    /// nanoseconds in a virtual machine). `may_resend`: the pool's retry
    /// policy allows sending this request again after it has reached the
    /// target.
    ///
    /// (An `async move` block, not an `async fn`, so that its state keeps
    /// the request once, and what only makes the head is gone before the
    /// first wait: the request path's state is copied whole level by level.)
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn send<'a>(
        self: &'a Arc<Self>,
        addr: SocketAddr,
        timeouts: &'a Timeouts,
        req: Request<RequestBody>,
        now: Instant,
        may_resend: bool,
    ) -> impl std::future::Future<Output = Result<Response<OriginBody>, H1Error>> + Send + 'a {
        async move {
            self.start_reaper(timeouts.idle);
            let (method, upgrade, framing, head, replay) = {
                let (parts, body) = req.into_parts();
                let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let (framing, replay) = match body {
                    RequestBody::Replay(bytes) => {
                        let bytes = bytes.unwrap_or_default();
                        let framing = if bytes.is_empty()
                            && !parts.headers.contains_key(header::CONTENT_LENGTH)
                        {
                            RequestFraming::None
                        } else {
                            RequestFraming::Length(bytes.len() as u64)
                        };
                        (framing, Ok(bytes))
                    }
                    RequestBody::Stream(body) => match declared_length(&parts.headers) {
                        Some(n) => (RequestFraming::Length(n), Err(RequestBody::Stream(body))),
                        None => (RequestFraming::Chunked, Err(RequestBody::Stream(body))),
                    },
                };
                // Whether the request asks the target to switch protocols.
                let upgrade = parts.headers.contains_key(header::UPGRADE);
                let mut head = Vec::with_capacity(256 + parts.headers.len() * 48);
                head::encode_request(&mut head, &parts.method, target, &parts.headers, framing);
                // A body kept for replay goes out with the head, in one write.
                if let Ok(bytes) = &replay {
                    head.extend_from_slice(bytes);
                }
                (parts.method, upgrade, framing, head, replay.map(drop))
            };
            let checkin = || Checkin {
                client: Arc::downgrade(self),
                idle_for: timeouts.idle,
                max_idle: timeouts.max_idle_per_target,
            };
            match replay {
                Ok(()) => {
                    // A reused connection may have been closed by the target
                    // just as it was taken: if it broke before any byte of a
                    // response came back, the request goes once more on a new
                    // connection (what it carried can be sent again). Only
                    // where the pool's retry policy allows it: the request was
                    // written, and the target may have acted on it before it
                    // closed, so a POST must not be sent twice (RFC 9112
                    // §9.3.1.1; `retry = "idempotent"` by default).
                    let conn = self.checkout(addr, now);
                    let reused = conn.is_some();
                    let conn = match conn {
                        Some(conn) => conn,
                        None => connect(addr, timeouts.connect).await?,
                    };
                    match exchange(conn, &head, None, &method, upgrade).await {
                        Ok((head, conn, pump)) => Ok(respond(head, conn, pump, checkin())),
                        Err(Failure {
                            answered: false, ..
                        }) if reused && may_resend => {
                            let conn = connect(addr, timeouts.connect).await?;
                            let (head, conn, pump) = exchange(conn, &head, None, &method, upgrade)
                                .await
                                .map_err(|f| f.error)?;
                            Ok(respond(head, conn, pump, checkin()))
                        }
                        Err(failure) => Err(failure.error),
                    }
                }
                Err(body) => {
                    let conn = match self.checkout(addr, now) {
                        Some(conn) => conn,
                        None => connect(addr, timeouts.connect).await?,
                    };
                    let pump = Box::new(Pump::new(body, framing == RequestFraming::Chunked));
                    let (head, conn, pump) = exchange(conn, &head, Some(pump), &method, upgrade)
                        .await
                        .map_err(|f| f.error)?;
                    Ok(respond(head, conn, pump, checkin()))
                }
            }
        }
    }

    /// The newest idle connection to `addr` that is still open at `now`.
    fn checkout(&self, addr: SocketAddr, now: Instant) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&addr)?;
        while let Some(entry) = list.pop() {
            if entry.expires > now && entry.conn.still_open() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Closes idle connections whose time is up or whose target closed
    /// them, so none lingers after traffic stops.
    fn start_reaper(self: &Arc<Self>, idle_for: Duration) {
        // Half the shortest idle time of the pools that used it: a pool
        // with a shorter one than the first must not wait for the first's
        // period.
        let every = (idle_for / 2)
            .clamp(Duration::from_secs(1), Duration::from_secs(30))
            .as_millis() as u64;
        // A plain load first: this runs on every request, and an update
        // would write the shared value each time.
        let current = self.reaper_every_ms.load(Ordering::Relaxed);
        if current != 0 && current <= every {
            return;
        }
        let updated =
            self.reaper_every_ms
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
                    (current == 0 || every < current).then_some(every)
                });
        if updated != Ok(0) {
            // Running already; it takes the new period after its next tick.
            return;
        }
        let client = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let every = match client.upgrade() {
                    Some(client) => client.reaper_every_ms.load(Ordering::Relaxed),
                    None => return,
                };
                tokio::time::sleep(Duration::from_millis(every)).await;
                let Some(client) = client.upgrade() else {
                    return;
                };
                let now = Instant::now();
                let mut idle = client.idle.lock().unwrap_or_else(PoisonError::into_inner);
                idle.retain(|_, list| {
                    list.retain(|e| e.expires > now && e.conn.still_open());
                    !list.is_empty()
                });
            }
        });
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, H1Error> {
    let io = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(io)) => io,
        Ok(Err(e)) => return Err(H1Error::Connect(e)),
        Err(_) => return Err(H1Error::ConnectTimeout(timeout)),
    };
    // Heads and small bodies go out at once.
    io.set_nodelay(true).map_err(H1Error::Connect)?;
    Ok(Conn::new(io, addr))
}

/// A failed exchange, and whether any of a response had arrived.
struct Failure {
    error: H1Error,
    answered: bool,
}

/// Writes the head (and a kept body), then reads the response head while
/// the rest of a streamed body is sent. 1xx responses other than 101 are
/// skipped (`100 Continue` was already given to the client by gangway).
/// `upgrade`: the request asked to switch protocols.
async fn exchange(
    mut conn: Conn,
    head: &[u8],
    mut pump: Option<Box<Pump>>,
    method: &http::Method,
    upgrade: bool,
) -> Result<(ResponseHead, Conn, Option<Box<Pump>>), Failure> {
    let mut written = 0;
    crate::write_burst::take_turn().await;
    std::future::poll_fn(|cx| conn.poll_write_from(cx, head, &mut written))
        .await
        .map_err(|e| broke(e, false))?;
    let mut pump_done = pump.is_none();
    let mut write_failed = false;
    let head = std::future::poll_fn(|cx| {
        if let Some(p) = pump.as_mut().filter(|_| !pump_done) {
            match p.poll(cx, &mut conn) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => pump_done = true,
                Poll::Ready(Err(PumpError::Client(e))) => {
                    return Poll::Ready(Err(Failure {
                        error: H1Error::ClientBody(e),
                        answered: false,
                    }))
                }
                // The target may have answered early and closed; its
                // response, if any, is still read.
                Poll::Ready(Err(PumpError::Write(error))) => {
                    tracing::debug!(upstream = %conn.addr, %error, "the target stopped reading the request body");
                    pump_done = true;
                    write_failed = true;
                }
            }
        }
        poll_head(&mut conn, cx, method)
    })
    .await;
    let mut head = head?;
    // A 101 answers only a request that asked to switch (RFC 9110
    // §15.2.2). Passed on to a client that did not ask, it would leave the
    // client's connection switched to nothing (and without `Upgrade`,
    // which is hop-by-hop): a broken response like any other.
    if head.status == StatusCode::SWITCHING_PROTOCOLS && !upgrade {
        return Err(Failure {
            error: H1Error::Exchange(
                "the target switched protocols, but the request did not ask it to".into(),
            ),
            answered: true,
        });
    }
    if write_failed {
        // Part of the request body never reached the target.
        head.keep_alive = false;
        pump = None;
    }
    Ok((head, conn, pump))
}

/// Reads until a final response head (not 1xx, except 101) is complete.
fn poll_head(
    conn: &mut Conn,
    cx: &mut std::task::Context<'_>,
    method: &http::Method,
) -> Poll<Result<ResponseHead, Failure>> {
    loop {
        if !conn.buf.is_empty() {
            match head::parse_response(&mut conn.buf, method) {
                Ok(Some(head)) => {
                    let interim = head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS;
                    if !interim {
                        return Poll::Ready(Ok(head));
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    return Poll::Ready(Err(Failure {
                        error: H1Error::Exchange(e.to_string()),
                        answered: true,
                    }))
                }
            }
        }
        let answered = !conn.buf.is_empty();
        match ready!(conn.poll_fill(cx)) {
            Ok(0) => {
                return Poll::Ready(Err(Failure {
                    error: H1Error::Exchange(if answered {
                        "the target closed the connection inside its response head".into()
                    } else {
                        "the target closed the connection without a response".into()
                    }),
                    answered,
                }))
            }
            Ok(_) => {}
            Err(e) => return Poll::Ready(Err(broke(e, answered))),
        }
    }
}

fn broke(e: std::io::Error, answered: bool) -> Failure {
    Failure {
        error: H1Error::Exchange(format!("connection to the target broke: {e}")),
        answered,
    }
}

fn respond(
    head: ResponseHead,
    conn: Conn,
    pump: Option<Box<Pump>>,
    checkin: Checkin,
) -> Response<OriginBody> {
    let body = if head.status == StatusCode::SWITCHING_PROTOCOLS {
        OriginBody::switched(conn)
    } else {
        OriginBody::new(conn, head.framing, pump, head.keep_alive, checkin)
    };
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    *response.headers_mut() = head.headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[tokio::test]
    async fn the_idle_reaper_runs_at_half_the_shortest_idle_time() {
        let client = Arc::new(H1Client::default());
        client.start_reaper(Duration::from_secs(60));
        assert_eq!(client.reaper_every_ms.load(Ordering::Relaxed), 30_000);
        client.start_reaper(Duration::from_secs(4));
        assert_eq!(client.reaper_every_ms.load(Ordering::Relaxed), 2_000);
        client.start_reaper(Duration::from_secs(90));
        assert_eq!(client.reaper_every_ms.load(Ordering::Relaxed), 2_000);
        // At least a second, however short the idle time.
        client.start_reaper(Duration::from_millis(10));
        assert_eq!(client.reaper_every_ms.load(Ordering::Relaxed), 1_000);
    }

    /// Neighbouring targets (ports of one host, hosts of one subnet, IPv4
    /// and IPv6) hash apart, in the high bits too (where the table's
    /// control bytes come from).
    #[test]
    fn target_addresses_spread() {
        let hasher = BuildHasherDefault::<AddrHasher>::default();
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for host in 0..32u8 {
            for port in 8000..8032u16 {
                addrs.push(SocketAddr::from(([10, 0, 0, host], port)));
                addrs.push(SocketAddr::from((
                    [0xfd00, 0, 0, 0, 0, 0, 0, u16::from(host)],
                    port,
                )));
            }
        }
        let hashes: std::collections::HashSet<u64> =
            addrs.iter().map(|a| hasher.hash_one(a)).collect();
        assert_eq!(hashes.len(), addrs.len());
        let top: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(top.len() > 100, "{} of 128 top-7-bit values", top.len());
    }
}
