//! Accepting client connections and serving HTTP/1.1 and HTTP/2 on them,
//! in plain text or over TLS.

use crate::client_body::IncomingBody;
use crate::h1::server::{idle_watch, serve_connection};
use crate::h2_streams::{serve_with_streams, StreamExecutor};
use crate::handler::{Connection, Proxy};
use crate::headers::ClientInfo;
use crate::write_burst::Serving;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (request line and headers), both protocols.
const MAX_HEADER_BYTES: usize = crate::h1::server::MAX_HEAD;
/// HTTP/2 streams one client connection may have open at once.
const MAX_CONCURRENT_STREAMS: u32 = 250;
/// HTTP/2 streams reset by the client but not yet seen by gangway.
const MAX_PENDING_RESETS: usize = 50;
/// How long requests in flight may run on after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// One listening socket and how to speak on it.
pub struct Listener {
    /// The bound socket.
    pub socket: std::net::TcpListener,
    /// `Some` for HTTPS.
    pub tls: Option<TlsAcceptor>,
    /// Whether a plain listener also takes HTTP/2 with prior knowledge
    /// (h2c); HTTPS listeners offer HTTP/2 by ALPN.
    pub h2c: bool,
}

/// Serves clients on `listener` until `shutdown` turns true, then lets
/// requests in flight finish for a grace period.
pub async fn serve(proxy: Arc<Proxy>, listener: Listener, mut shutdown: watch::Receiver<bool>) {
    let socket = match TcpListener::from_std(listener.socket) {
        Ok(socket) => socket,
        Err(error) => {
            tracing::error!(%error, "cannot register listener with the runtime");
            return;
        }
    };
    let local_port = socket.local_addr().map_or(0, |a| a.port());
    // A plain listener without h2c speaks HTTP/1.1 only, on gangway's
    // own server (h1::server). Its connections wait for request heads
    // under `http1_watch` (the header timeout, the stop signal), and are
    // counted by their references to it for the shutdown grace period,
    // since `GracefulShutdown` cannot watch them.
    let http1_watch = (listener.tls.is_none() && !listener.h2c).then(|| {
        let (watch, reaper) = idle_watch(proxy.settings.header_timeout);
        tokio::spawn(reaper);
        watch
    });
    let max_connections = proxy.settings.max_connections;
    let header_timeout = proxy.settings.header_timeout;
    let mut last_limit_warning: Option<std::time::Instant> = None;
    let graceful = GracefulShutdown::new();

    loop {
        let (stream, peer) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(open) = OpenConnection::count(&proxy, max_connections) else {
            // Closing at once tells the client more than a full backlog.
            drop(stream);
            if last_limit_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_limit_warning = Some(std::time::Instant::now());
                tracing::warn!(limit = max_connections, setting = "GANGWAY_MAX_CONNECTIONS", client = %peer.ip().to_canonical(), "connection limit reached");
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let ip = peer.ip().to_canonical();
        let conn = Connection::new(ClientInfo {
            ip,
            https: listener.tls.is_some(),
            local_port,
            trusted: proxy.trusts(ip),
        });
        if let Some(watch) = &http1_watch {
            let watch = Arc::clone(watch);
            tokio::spawn(serve_connection(open, conn, Arc::new(stream), watch));
            continue;
        }
        let proxy = Arc::clone(&proxy);
        let conn = Arc::new(conn);
        let service = service_fn(move |req| {
            let proxy = Arc::clone(&proxy);
            let conn = Arc::clone(&conn);
            // Boxed: hyper keeps room for the service's future in every
            // connection for its whole life, and the request path's future
            // is large. A box costs one allocation per request and leaves
            // an idle keep-alive connection a pointer instead. Allocated
            // before the future is made, so that it is built in the box, not
            // built on the stack and copied.
            Box::into_pin(Box::write(Box::new_uninit(), async move {
                let _serving = Serving::begin();
                Ok::<_, Infallible>(proxy.handle(req.map(IncomingBody::Hyper), &conn).await)
            }))
        });
        let watcher = graceful.watcher();
        match listener.tls.clone() {
            None => {
                tokio::spawn(async move {
                    let streams = StreamExecutor::default();
                    let served = hyper_builder(header_timeout, streams.clone())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let ended = serve_with_streams(watcher.watch(served), streams).await;
                    log_connection_end(ended, ip);
                    drop(open);
                });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let Some(tls) = handshake(&acceptor, stream, peer).await else {
                        return;
                    };
                    let streams = StreamExecutor::default();
                    let served = hyper_builder(header_timeout, streams.clone())
                        .serve_connection_with_upgrades(TokioIo::new(tls), service)
                        .into_owned();
                    let ended = serve_with_streams(watcher.watch(served), streams).await;
                    log_connection_end(ended, ip);
                    drop(open);
                });
            }
        }
    }
    drop(socket);
    if let Some(watch) = &http1_watch {
        watch.stop();
    }
    let drained = async {
        graceful.shutdown().await;
        while http1_watch
            .as_ref()
            .is_some_and(|w| Arc::strong_count(w) > 1)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        tracing::warn!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "requests still in flight after the grace period were cut off"
        );
    }
}

/// hyper's server for one connection (HTTP/1.1 over TLS or HTTP/2), its
/// HTTP/2 streams run by `streams` in the connection's task.
fn hyper_builder(
    header_timeout: Duration,
    streams: StreamExecutor,
) -> auto::Builder<StreamExecutor> {
    let mut builder = auto::Builder::new(streams);
    builder
        .http1()
        .timer(TokioTimer::new())
        // From the connection's start and again after each response, so
        // it also closes idle keep-alive connections (slowloris, RFC 9112
        // §9.8 idle connections).
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        // Request line and headers together: nginx's large buffers are
        // 4 x 8 KiB; 64 KiB leaves room and still bounds memory per client.
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        // Bounds the resets a client may cause without reading (the
        // "rapid reset" attack, CVE-2023-44487).
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS);
    builder
}

/// One counted client connection; uncounted when dropped.
pub(crate) struct OpenConnection(Arc<Proxy>);

impl OpenConnection {
    /// The proxy the connection is counted by.
    pub(crate) fn proxy(&self) -> &Proxy {
        &self.0
    }

    /// Counts a new connection, unless `max` are open already.
    pub(crate) fn count(proxy: &Arc<Proxy>, max: usize) -> Option<OpenConnection> {
        let open = &proxy.open_connections;
        if open.fetch_add(1, Ordering::AcqRel) >= max {
            open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(OpenConnection(Arc::clone(proxy)))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Logs why a connection ended when the client was at fault: a request
/// that hyper's parser refused (it answers 400, 414 or 431 itself, before
/// gangway sees a request) or a head that did not arrive in time.
fn log_connection_end(ended: Result<(), Box<dyn std::error::Error + Send + Sync>>, client: IpAddr) {
    let Err(error) = ended else {
        return;
    };
    match error.downcast_ref::<hyper::Error>() {
        Some(e) if e.is_parse_too_large() => {
            let status = if e.to_string().contains("URI") {
                414
            } else {
                431
            };
            tracing::info!(target: "access", %client, status, reason = %e, "request refused")
        }
        Some(e) if e.is_parse() => {
            tracing::info!(target: "access", %client, status = 400, reason = %e, "request refused")
        }
        Some(e) if e.is_timeout() => tracing::info!(
            target: "access",
            %client,
            reason = "no complete request head within the header timeout (GANGWAY_HEADER_TIMEOUT)",
            "connection closed"
        ),
        _ => tracing::debug!(%client, %error, "connection ended with an error"),
    }
}

async fn handshake<S>(
    acceptor: &TlsAcceptor,
    stream: S,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let client = peer.ip().to_canonical();
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::warn!(%client, %error, "tls handshake failed");
            None
        }
        Err(_) => {
            tracing::warn!(%client, timeout_s = TLS_HANDSHAKE_TIMEOUT.as_secs(), "tls handshake failed: timed out");
            None
        }
    }
}
