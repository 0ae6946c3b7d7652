//! gangway's own HTTP/1.1 server for plain listeners: one task per client
//! connection reads a request head, hands the request to the handler,
//! writes the response and waits for the next request. A connection that
//! waits longer than a second gives up its task until its client sends
//! something (`idle.rs`).
//!
//! Why not hyper's server (which gangway keeps for TLS and HTTP/2): an
//! idle keep-alive connection here holds no buffer at all (hyper keeps
//! its 8 KiB read buffer and connection state for every client), and a
//! request costs one parse straight into the `http` types with the field
//! values pointing into the bytes read (see bench/README.md for what that
//! saved).

mod body;
mod idle;
// Reached by the fuzz targets too (`crate::fuzzing`).
pub(crate) mod request;
mod response;

pub(crate) use body::H1RequestBody;
pub(crate) use idle::IdleWatch;
use idle::Parked;
pub(crate) use request::MAX_HEAD;

use crate::client_body::IncomingBody;
use crate::h1::conn::{poll_read_into, poll_write_pieces};
use crate::h1::Upgraded;
use crate::handler::{Connection, Proxy};
use crate::server::OpenConnection;
use crate::write_burst::{take_turn, Serving};
use bytes::{Bytes, BytesMut};
use http::{Method, Request};
use idle::{HeadWait, Ticket, WaitEnd};
use request::{parse_request, BodyFraming, Refusal, RequestHead};
use response::{encode_head, refusal, write_response, Answering};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};

/// Room made for a request head at a time; it grows up to the 64 KiB limit.
const HEAD_READ: usize = 4 * 1024;
/// How long a closing connection reads (and drops) what the client still
/// sends, so that the kernel does not reset the connection under the
/// response the client has not read yet (RFC 9112 §9.6).
const LINGER: Duration = Duration::from_secs(2);
/// The most bytes read while lingering.
const LINGER_BYTES: usize = 1024 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// How long a connection waits for a request head in its own task before
/// it is parked (see [`idle`]): long enough that a client between two
/// requests of one page does not pay for parking, short enough that idle
/// keep-alive connections hold almost nothing.
const PARK_AFTER: Duration = Duration::from_secs(1);

/// The client's side of a connection switched by a `101`, for the
/// handler that joins it with the target's side. (In a request's
/// extensions, which must be `Clone`; it is taken once.)
#[derive(Debug, Clone)]
pub(crate) struct PendingUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl PendingUpgrade {
    pub(crate) fn take(&self) -> Option<oneshot::Receiver<Upgraded>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// What waiting for a request head gave. (Returned once per request and
/// matched at once: boxing the head would cost an allocation for nothing.)
#[allow(clippy::large_enum_variant)]
enum Next {
    Head(RequestHead),
    Refused(Refusal),
    /// The client closed the connection (or broke it) between requests.
    Closed,
    /// The header timeout passed; `true` if part of a head had arrived.
    TimedOut(bool),
    /// gangway is shutting down and the connection was idle.
    Stopping,
    /// The connection has waited long enough to be parked.
    Park(Ticket),
}

/// Serves requests on one client connection until either side closes it.
/// The connection is counted by `open` and, for the shutdown's grace
/// period, by its reference to `watch` (its listener's header timeout and
/// stop signal).
///
/// (A function returning an `async move` block rather than an `async fn`:
/// the block uses what it captures in place, where an `async fn` would
/// keep a second copy of its arguments in every idle connection. For the
/// same reason it is spawned as it is, not inside another block, and
/// takes the stream already shared.)
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve_connection(
    open: OpenConnection,
    conn: Connection,
    io: Arc<TcpStream>,
    watch: Arc<IdleWatch>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    async move {
        let mut buf = BytesMut::new();
        let mut stopping = false;
        loop {
            // In a block, so that the waiting's result is gone (not kept
            // in the connection's state) while the request is answered.
            let head = {
                let hear_stop = !stopping && buf.is_empty();
                let reading = HeadRead {
                    parse: !buf.is_empty(),
                    wait: watch.wait(shard_of(&io), hear_stop),
                    io: &io,
                    buf: &mut buf,
                };
                match reading.await {
                    Next::Head(head) => head,
                    Next::Park(ticket) => {
                        // The watch keeps the socket, its client and its
                        // count; this task ends.
                        let parked = Arc::try_unwrap(io)
                            .ok()
                            .and_then(|io| io.into_std().ok())
                            .map(|stream| Parked {
                                stream,
                                client: conn.client,
                                open,
                            });
                        return watch.park(ticket, parked);
                    }
                    // Boxed, as is all the rest that is not waiting for a
                    // request, so that an idle connection keeps no room for it.
                    other => return Box::pin(end(other, &io, conn.client.ip)).await,
                }
            };
            // In a block too: what follows a request (its body's channel,
            // its upgrade) is gone before the connection waits again.
            let linger_now = {
                stopping |= watch.is_stopped();
                let (req, returned, continue_asked, upgrade, answering, keep_alive) =
                    into_request(head, &io, &mut buf, stopping);
                // The box allocated before the future is made, so that the
                // compiler builds the future in it: `Box::pin(future)` builds
                // it on the stack and copies it whole, several kilobytes (520
                // instructions a request, bench/README.md).
                let answered = Box::into_pin(Box::write(
                    Box::new_uninit(),
                    answer(
                        (open.proxy(), &conn, &io, &watch),
                        req,
                        continue_asked,
                        answering,
                        keep_alive,
                    ),
                ));
                let Some((switching, keep_alive)) = answered.await else {
                    return;
                };
                if switching {
                    // The handler only answers 101 to a request that asked for it.
                    if let (Some(upgrade), Ok(io)) = (upgrade, Arc::try_unwrap(io)) {
                        let _ = upgrade.send(Upgraded {
                            io,
                            read_ahead: buf.freeze(),
                        });
                    }
                    return;
                }
                match returned.map(|mut returned| returned.try_recv()) {
                    None => !keep_alive,
                    Some(Ok(rest)) => {
                        buf = rest;
                        !keep_alive
                    }
                    // Dropped before its end: what is left of it is unread.
                    Some(Err(oneshot::error::TryRecvError::Closed)) => true,
                    // Still held (by a target's connection): it reads on.
                    Some(Err(oneshot::error::TryRecvError::Empty)) => return,
                }
            };
            if linger_now {
                return Box::pin(linger(&io)).await;
            }
            if buf.is_empty() {
                // An idle connection keeps no buffer.
                buf = BytesMut::new();
            }
        }
    }
}

/// Reads a request head until the wait ends.
struct HeadRead<'a> {
    io: &'a TcpStream,
    buf: &'a mut BytesMut,
    wait: HeadWait<'a>,
    /// Whether the buffer may hold a whole head already.
    parse: bool,
}

impl Future for HeadRead<'_> {
    type Output = Next;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Next> {
        let this = &mut *self;
        if let Poll::Ready(next) = poll_head(this.io, this.buf, &mut this.parse, cx) {
            return Poll::Ready(next);
        }
        match ready!(Pin::new(&mut this.wait).poll(cx)) {
            WaitEnd::Expired => Poll::Ready(Next::TimedOut(!this.buf.is_empty())),
            WaitEnd::Stopping => Poll::Ready(Next::Stopping),
            WaitEnd::Park if this.buf.is_empty() => Poll::Ready(Next::Park(this.wait.hand_over())),
            // Part of a request came since the wait began: it is read on
            // here (the wait's waker and the socket's are in place).
            WaitEnd::Park => {
                this.wait.decline_park();
                Poll::Pending
            }
        }
    }
}

/// A watch for a listener's connections waiting for request heads, and
/// its reaper (to be spawned): waits end after `header_timeout`, and
/// connections waiting longer than [`PARK_AFTER`] are parked and served
/// again by a task of their own when their client sends something.
pub(crate) fn idle_watch(
    header_timeout: Duration,
) -> (Arc<IdleWatch>, impl Future<Output = ()> + Send) {
    IdleWatch::new(header_timeout, PARK_AFTER, resume)
}

/// Serves a parked connection whose client sent something.
fn resume(parked: Parked, watch: Arc<IdleWatch>) {
    let Parked {
        stream,
        client,
        open,
    } = parked;
    match TcpStream::from_std(stream) {
        Ok(io) => {
            tokio::spawn(serve_connection(
                open,
                Connection::new(client),
                Arc::new(io),
                watch,
            ));
        }
        Err(error) => {
            tracing::warn!(%error, "a parked connection could not be served again and is closed")
        }
    }
}

/// Ends a connection on which no request head came: answers a head that
/// cannot be served, and logs what the client did wrong.
async fn end(next: Next, io: &TcpStream, client: std::net::IpAddr) {
    match next {
        Next::Refused(Refusal { status, reason }) => {
            tracing::info!(target: "access", %client, status = status.as_u16(), reason, "request refused");
            let mut answer = VecDeque::from([refusal(status, reason)]);
            if poll_fn(|cx| poll_write_pieces(io, cx, &mut answer))
                .await
                .is_ok()
            {
                linger(io).await;
            }
        }
        Next::TimedOut(true) => tracing::info!(
            target: "access",
            %client,
            reason = "no complete request head within the header timeout (GANGWAY_HEADER_TIMEOUT)",
            "connection closed"
        ),
        Next::Head(_) | Next::Park(_) | Next::Closed | Next::TimedOut(false) | Next::Stopping => {}
    }
}

/// Has the handler answer `req` and writes the response: `None` if it
/// did not go out whole; else whether it switched protocols and whether
/// the connection may carry another request (`keep_alive`: whether the
/// client wants it to).
async fn answer(
    (proxy, conn, io, watch): (&Proxy, &Connection, &TcpStream, &IdleWatch),
    req: Request<IncomingBody>,
    continue_asked: Option<Arc<Notify>>,
    answering: Answering,
    keep_alive: bool,
) -> Option<(bool, bool)> {
    let _serving = Serving::begin();
    // In a block, so that the request path's future is gone before the
    // response is written: what the writing keeps then shares its room
    // instead of adding to it (the whole is boxed per request).
    let response = {
        // One pinned future for both ways of waiting (two would each take
        // room for the whole request path).
        let mut handling = std::pin::pin!(proxy.handle(req, conn));
        match continue_asked {
            None => handling.as_mut().await,
            Some(asked) => {
                let mut continued = false;
                loop {
                    tokio::select! {
                        biased;
                        response = &mut handling => break response,
                        _ = asked.notified(), if !continued => {
                            continued = true;
                            let mut line = VecDeque::from([Bytes::from_static(CONTINUE)]);
                            poll_fn(|cx| poll_write_pieces(io, cx, &mut line)).await.ok()?;
                        }
                    }
                }
            }
        }
    };
    // A stop that came while the request was handled: the response says
    // that the connection closes after it (RFC 9112 §9.6).
    let mut keep_alive = keep_alive && !watch.is_stopped();
    let (mut parts, mut body) = response.into_parts();
    let mut head = BytesMut::with_capacity(256);
    let delimit = encode_head(&mut head, &mut parts, &body, answering, &mut keep_alive);
    let switching = parts.status == http::StatusCode::SWITCHING_PROTOCOLS;
    drop(parts);
    take_turn().await;
    let whole = write_response(io, head.freeze(), delimit, &mut body).await;
    matches!(whole, Ok(true)).then_some((switching, keep_alive))
}

/// The request for the handler, with its body reading from the
/// connection; and what the connection keeps to follow it: the channel
/// the body's unread bytes come back on, the signal for `100 Continue`,
/// where to send the connection if it switches protocols, what the
/// response answers, and whether the connection may stay open.
#[allow(clippy::type_complexity)]
fn into_request(
    head: RequestHead,
    io: &Arc<TcpStream>,
    buf: &mut BytesMut,
    stopping: bool,
) -> (
    Request<IncomingBody>,
    Option<oneshot::Receiver<BytesMut>>,
    Option<Arc<Notify>>,
    Option<oneshot::Sender<Upgraded>>,
    Answering,
    bool,
) {
    let answering = Answering {
        head: head.method == Method::HEAD,
        version: head.version,
    };
    let keep_alive = head.keep_alive && !stopping;
    let length = match head.framing {
        BodyFraming::None => None,
        BodyFraming::Length(n) => Some(Some(n)),
        BodyFraming::Chunked => Some(None),
    };
    let mut continue_asked = None;
    let (body, returned) = match length {
        None => (IncomingBody::Empty, None),
        Some(length) => {
            let (back, returned) = oneshot::channel();
            continue_asked = head.expects_continue.then(|| Arc::new(Notify::new()));
            let body = H1RequestBody::new(
                Arc::clone(io),
                std::mem::take(buf),
                length,
                continue_asked.clone(),
                back,
            );
            (IncomingBody::H1(body), Some(returned))
        }
    };
    let mut req = Request::new(body);
    *req.method_mut() = head.method;
    *req.uri_mut() = head.uri;
    *req.version_mut() = head.version;
    *req.headers_mut() = head.headers;
    let upgrade = head.wants_upgrade.then(|| {
        let (send, receive) = oneshot::channel();
        req.extensions_mut()
            .insert(PendingUpgrade(Arc::new(Mutex::new(Some(receive)))));
        send
    });
    (
        req,
        returned,
        continue_asked,
        upgrade,
        answering,
        keep_alive,
    )
}

/// Reads until a whole request head is in `buf` (`parse`: whether what
/// is there may hold one already).
fn poll_head(
    io: &TcpStream,
    buf: &mut BytesMut,
    parse: &mut bool,
    cx: &mut std::task::Context<'_>,
) -> Poll<Next> {
    loop {
        if *parse {
            match parse_request(buf) {
                Ok(Some(head)) => return Poll::Ready(Next::Head(head)),
                Ok(None) => {}
                Err(refused) => return Poll::Ready(Next::Refused(refused)),
            }
        }
        // A connection waiting for a request holds no buffer: room is made
        // once the socket is readable, and let go if that was stale.
        if buf.capacity() - buf.len() < HEAD_READ / 4 {
            if ready!(io.poll_read_ready(cx)).is_err() {
                return Poll::Ready(Next::Closed);
            }
            buf.reserve(HEAD_READ);
        }
        let before = buf.len();
        let read = poll_read_into(io, buf, cx);
        if read.is_pending() && buf.is_empty() {
            *buf = BytesMut::new();
        }
        match ready!(read) {
            Ok(0) | Err(_) => return Poll::Ready(Next::Closed),
            // A head cannot end before its next line feed: a client
            // trickling bytes does not make gangway parse the head again
            // for each one.
            Ok(_) => *parse = buf[before..].contains(&b'\n'),
        }
    }
}

/// The shard of its listener's [`IdleWatch`] a connection waits in: by
/// where its socket is, so that connections spread over the shards.
fn shard_of(io: &Arc<TcpStream>) -> usize {
    (Arc::as_ptr(io) as usize).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58
}

/// Closes the connection gracefully: no more writes, then reads and drops
/// what the client still sends for a while, so that the response it has
/// not read yet is not lost to a reset.
async fn linger(io: &TcpStream) {
    let _ = socket2::SockRef::from(io).shutdown(std::net::Shutdown::Write);
    let mut read = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while read < LINGER_BYTES && io.readable().await.is_ok() {
            let mut sink = [0u8; 2048];
            match io.try_read(&mut sink) {
                Ok(0) => return,
                Ok(n) => read += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::ClientInfo;
    use arc_swap::ArcSwap;

    /// A proxy without routes, and a connection from `peer` it counts.
    fn routeless_connection(
        peer: std::net::SocketAddr,
    ) -> (Arc<Proxy>, crate::server::OpenConnection, Connection) {
        let proxy = Arc::new(Proxy::new(
            Arc::new(ArcSwap::from_pointee(Default::default())),
            Default::default(),
        ));
        let open = crate::server::OpenConnection::count(&proxy, 1).unwrap();
        let conn = Connection::new(ClientInfo {
            ip: peer.ip(),
            https: false,
            local_port: 0,
            trusted: false,
        });
        (proxy, open, conn)
    }

    /// What an idle keep-alive connection costs in gangway's own memory is
    /// mostly its task: the runtime's header and trailer (80 bytes) and
    /// this future, aligned to 128 bytes, which the allocator serves from
    /// blocks of a power of two. At 152 bytes or less the task takes 256;
    /// one byte more makes it 512.
    #[tokio::test]
    async fn an_idle_connection_fits_a_256_byte_task() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, client) = tokio::join!(listener.accept(), client);
        let (stream, peer) = accepted.unwrap();
        let (_proxy, open, conn) = routeless_connection(peer);
        let (watch, _) = idle_watch(Duration::from_secs(1));
        let served = serve_connection(open, conn, Arc::new(stream), watch);
        let size = std::mem::size_of_val(&served);
        assert!(size <= 152, "the connection's future is {size} bytes");
        drop((served, client));
    }

    /// Reads one response (its head and a body of `Content-Length`
    /// bytes) from a blocking socket whose reads are bounded; its head.
    fn read_response(client: &mut std::net::TcpStream) -> String {
        use std::io::Read;
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            assert_eq!(client.read(&mut byte).unwrap(), 1, "a whole head");
            got.push(byte[0]);
        }
        let head = String::from_utf8(got).unwrap();
        let length = head
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|n| n.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        client.read_exact(&mut vec![0u8; length]).unwrap();
        head
    }

    /// A keep-alive connection that waits for its next request longer
    /// than [`PARK_AFTER`] gives up its task, stays open and counted, and
    /// is served again when the request comes.
    #[tokio::test]
    async fn an_idle_connection_is_parked_and_served_again() {
        const BOUND: Duration = Duration::from_secs(10);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(BOUND)).unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (proxy, open, conn) = routeless_connection(peer);
        let (watch, reaper) = idle_watch(Duration::from_secs(30));
        tokio::spawn(reaper);
        let served = tokio::spawn(serve_connection(
            open,
            conn,
            Arc::new(stream),
            Arc::clone(&watch),
        ));
        let request = b"GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n";

        let ask = |mut client: std::net::TcpStream| {
            tokio::task::spawn_blocking(move || {
                std::io::Write::write_all(&mut client, request).unwrap();
                let head = read_response(&mut client);
                (client, head)
            })
        };
        let (client, first) = ask(client).await.unwrap();
        assert!(first.starts_with("HTTP/1.1 "), "{first}");
        let began = std::time::Instant::now();
        let ended = tokio::time::timeout(BOUND, served).await;
        assert!(matches!(ended, Ok(Ok(()))), "the task ended");
        assert!(began.elapsed() >= PARK_AFTER - Duration::from_millis(100));
        assert_eq!(watch.parked_now(), 1);
        assert_eq!(
            proxy
                .open_connections
                .load(std::sync::atomic::Ordering::SeqCst),
            1
        );

        let (client, second) = ask(client).await.unwrap();
        assert_eq!(first.lines().next(), second.lines().next());
        assert_eq!(watch.parked_now(), 0);
        drop(client);
        let uncounted = tokio::time::timeout(BOUND, async {
            while proxy
                .open_connections
                .load(std::sync::atomic::Ordering::SeqCst)
                > 0
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert!(
            uncounted.await.is_ok(),
            "the closed connection is uncounted"
        );
    }
}
