//! The request path, top to bottom: find the route, then do what it says:
//! forward (pick a target, rewrite path and headers, stream the answer
//! back), redirect, serve files, or answer directly.

use crate::body::{AccessRecord, BodyError, RequestBody, ResponseBody, UpstreamBody};
use crate::client_body::{BodyFault, ClientBody, FaultCell, IncomingBody};
use crate::forwarded::add_forwarded;
use crate::h1::server::PendingUpgrade;
use crate::h1::H1Client;
use crate::headers::{
    prepare_request, remove_hop_by_hop, ClientInfo, TrustedProxies, X_REQUEST_ID,
};
use crate::response_timer::ResponseTimer;
use crate::static_files::{self, Served};
use crate::statistics;
use crate::upstream::Clients;
use arc_swap::ArcSwap;
use bytes::Bytes;
use gangway_model::{
    is_valid_authority, normalize_host, Balance, ErrorPage, HashKey, Protocol, Retry, MAX_HOST_LEN,
};
use gangway_router::{
    is_websocket_upgrade, ms_at, random_u64, remove_dot_segments, stable_hash, Captures,
    CompiledAction, CompiledRoute, FailureKind, Lookup, PoolEntry, RequestInfo, RouteTable,
    Verdict,
};
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::Method;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use smallvec::SmallVec;
use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt as _;

/// Per-connection facts, computed once when the connection is accepted,
/// and the timer its requests' waits on targets share.
#[derive(Debug)]
pub struct Connection {
    /// Who is connected and how.
    pub client: ClientInfo,
    response_timer: ResponseTimer,
}

/// Room for the longest text of an address (IPv6 with an embedded IPv4).
pub(crate) const IP_TEXT: usize = 45;
/// Room for the longest text of a socket address (`[IPv6%scope]:port`).
pub(crate) const SOCKET_TEXT: usize = IP_TEXT + 19;

impl Connection {
    /// Describes a newly accepted connection.
    pub fn new(client: ClientInfo) -> Self {
        Connection {
            client,
            response_timer: ResponseTimer::default(),
        }
    }

    /// The client's address as a header value. Rendered for each request
    /// rather than kept with the connection: every idle keep-alive
    /// connection would hold it (40 bytes and an allocation), and it
    /// costs less than a microsecond.
    fn client_ip(&self) -> HeaderValue {
        let mut text = [0u8; IP_TEXT];
        let len = ip_text(self.client.ip, &mut text).len();
        counted_value(text, len).unwrap_or_else(|| HeaderValue::from_static("unknown"))
    }
}

/// The first `len` bytes of `text` as a header value in a counted box
/// (`None` if they are not a valid value). Cheaper than a value copied
/// from a slice when it goes into more than one header (the client's
/// address, the request id): such a value allocates once more when it is
/// first cloned.
fn counted_value<const N: usize>(text: [u8; N], len: usize) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from_owner(text).slice(..len.min(N))).ok()
}

/// `ip` in its usual text form, written into `text`. IPv4 without the
/// formatting machinery, which costs ten times as much.
pub(crate) fn ip_text(ip: std::net::IpAddr, text: &mut [u8; IP_TEXT]) -> &[u8] {
    let written = match ip {
        std::net::IpAddr::V4(v4) => {
            let mut at = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[at] = b'.';
                    at += 1;
                }
                if octet >= 100 {
                    text[at] = b'0' + octet / 100;
                    at += 1;
                }
                if octet >= 10 {
                    text[at] = b'0' + octet / 10 % 10;
                    at += 1;
                }
                text[at] = b'0' + octet % 10;
                at += 1;
            }
            at
        }
        std::net::IpAddr::V6(v6) => write_display(text, v6),
    };
    &text[..written]
}

/// `addr` as std writes it, into `text`: an IPv4 one without the
/// formatting machinery (for the access log's `upstream`).
pub(crate) fn socket_text(addr: std::net::SocketAddr, text: &mut [u8; SOCKET_TEXT]) -> &[u8] {
    let written = match addr {
        std::net::SocketAddr::V4(v4) => {
            let mut ip = [0u8; IP_TEXT];
            let ip = ip_text(std::net::IpAddr::V4(*v4.ip()), &mut ip);
            text[..ip.len()].copy_from_slice(ip);
            text[ip.len()] = b':';
            let mut at = ip.len() + 1;
            let port = v4.port();
            let digits = port.checked_ilog10().unwrap_or(0) as usize + 1;
            let mut rest = port;
            for i in (0..digits).rev() {
                text[at + i] = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            at += digits;
            at
        }
        std::net::SocketAddr::V6(v6) => write_display(text, v6),
    };
    &text[..written]
}

/// Writes `value` (an address, which fits) into `text` with `core::fmt`;
/// the bytes written.
fn write_display(text: &mut [u8], value: impl std::fmt::Display) -> usize {
    use std::io::Write as _;
    let room = text.len();
    let mut rest = text;
    let _ = write!(rest, "{value}");
    room - rest.len()
}

/// What the operator decides about clients (the `GANGWAY_*` settings).
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Proxies in front of gangway whose forwarding headers are kept.
    pub trusted: TrustedProxies,
    /// How long a client may take to send a request head (slowloris).
    pub header_timeout: Duration,
    /// The longest pause allowed within a request body.
    pub body_timeout: Duration,
    /// Client connections open at once, over all listeners; more are
    /// closed as soon as they are accepted.
    pub max_connections: usize,
    /// Whether to send the standard `Forwarded` header (RFC 7239) too.
    pub forwarded_header: bool,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            trusted: TrustedProxies::default(),
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            max_connections: 20_000,
            forwarded_header: false,
        }
    }
}

/// The forwarding proxy: the current routing table and the upstream
/// connection pool.
#[derive(Debug)]
pub struct Proxy {
    routes: Arc<ArcSwap<RouteTable>>,
    pub(crate) settings: ProxySettings,
    /// HTTP/2 and TLS towards targets.
    clients: Clients,
    /// Plain HTTP/1.1 towards targets.
    h1: Arc<H1Client>,
    /// Client connections open now, for `max_connections`.
    pub(crate) open_connections: AtomicUsize,
}

impl Proxy {
    /// A proxy reading routes from `routes`, which providers swap as the
    /// configuration changes.
    pub fn new(routes: Arc<ArcSwap<RouteTable>>, settings: ProxySettings) -> Self {
        Proxy {
            routes,
            settings,
            clients: Clients::default(),
            h1: Arc::default(),
            open_connections: AtomicUsize::new(0),
        }
    }

    /// Whether forwarding headers from `ip` are trusted.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.settings.trusted.contains(ip)
    }

    /// Handles one request from a client.
    ///
    /// (This, `route` and `forward` return `async move` blocks rather than being
    /// `async fn`s: an `async fn` keeps its arguments twice in its state,
    /// and every level of the request path is copied whole when the level
    /// above stores it.)
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn handle<'a>(
        &'a self,
        mut req: Request<IncomingBody>,
        conn: &'a Connection,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'a {
        async move {
            // Read only for the access log: a clock read is not free.
            let start =
                tracing::enabled!(target: "access", tracing::Level::INFO).then(Instant::now);
            if let Err((status, reason)) = check_target(&req) {
                return refuse(&req, conn, status, reason);
            }
            if req.method() == Method::OPTIONS && req.uri().path() == "*" {
                // A question about gangway itself (RFC 9110 §9.3.7).
                let mut response = Response::new(ResponseBody::empty());
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(ALLOWED));
                return response;
            }
            let host = match request_host(&req) {
                Ok(host) => host,
                Err(problem) => {
                    return refuse(&req, conn, StatusCode::BAD_REQUEST, problem.message())
                }
            };
            if let Some(path) = remove_dot_segments(req.uri().path()) {
                match with_path(req.uri(), &path) {
                    Some(uri) => *req.uri_mut() = uri,
                    None => return refuse(&req, conn, StatusCode::BAD_REQUEST, BAD_TARGET),
                }
            }
            // Kept when the client (or a proxy in front) sent a usable one, so
            // one id follows a request across hops; made up otherwise.
            let request_id = match req.headers().get(&X_REQUEST_ID) {
                Some(id) if usable_request_id(id) => id.clone(),
                _ => new_request_id(),
            };
            let mut record = start.map(|start| {
                Box::new(AccessRecord {
                    start,
                    client: conn.client.ip,
                    method: req.method().clone(),
                    host: host.clone(),
                    uri: req.uri().clone(),
                    request_id: request_id.clone(),
                    status: 0,
                    bytes: 0,
                    upstream: None,
                })
            });
            let mut response = self.route(req, conn, host, &request_id, &mut record).await;
            if let Some(record) = &mut record {
                record.status = response.status().as_u16();
            }
            // Edited in place: taking a response apart and making it
            // again moves it twice.
            response
                .headers_mut()
                .insert(X_REQUEST_ID.clone(), request_id);
            response.body_mut().set_log(record);
            response
        }
    }

    #[allow(clippy::manual_async_fn)]
    fn route<'a>(
        &'a self,
        req: Request<IncomingBody>,
        conn: &'a Connection,
        host: HeaderValue,
        request_id: &'a HeaderValue,
        record: &'a mut Option<Box<AccessRecord>>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'a {
        async move {
            let table = self.routes.load_full();
            // request_host only returns visible ASCII, so this never falls back.
            let host_name = host.to_str().unwrap_or_default();
            let info = RequestInfo {
                host: host_name,
                path: req.uri().path(),
                query: req.uri().query(),
                method: req.method(),
                headers: req.headers(),
                port: conn.client.local_port,
                websocket: is_websocket_upgrade(req.headers()),
            };
            // Asked once: routing, the route's `allow_upgrade` and the tunnel
            // all go by it.
            let websocket = info.websocket;
            let (route, captures) = match table.lookup(&info) {
                Lookup::Route(route, captures) => (route, captures),
                Lookup::NoRoute => {
                    tracing::debug!(target: "routing", host = host_name, path = info.path, "no route matches");
                    return own_error(&table, StatusCode::NOT_FOUND, NOT_FOUND);
                }
            };
            tracing::debug!(target: "routing", host = host_name, path = info.path, route = route.name(), "route chosen");

            let mut response = match &route.action {
                CompiledAction::Forward(Some(pool)) => {
                    let request = (req, websocket, conn, host, request_id);
                    self.forward(request, (&table, route, pool), record).await
                }
                CompiledAction::Forward(None) => {
                    own_error(&table, StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
                }
                CompiledAction::Redirect { status, location } => {
                    let scheme = if conn.client.https { "https" } else { "http" };
                    let target = expand_template(location, req.uri(), host_name, scheme, &captures);
                    redirect(*status, &target)
                }
                CompiledAction::Static(files) => {
                    let rewritten = route
                        .rewrite
                        .as_ref()
                        .and_then(|r| r.apply(req.uri().path()));
                    let path = rewritten.as_deref().unwrap_or(req.uri().path());
                    match static_files::serve(files, path, req.method(), req.headers()).await {
                        Served::Response(response) => *response,
                        Served::NotFound => {
                            own_error(&table, StatusCode::NOT_FOUND, FILE_NOT_FOUND)
                        }
                        Served::BadPath => own_error(&table, StatusCode::BAD_REQUEST, BAD_PATH),
                    }
                }
                CompiledAction::Respond(fixed) => {
                    let mut response = Response::new(ResponseBody::full(fixed.body.clone()));
                    *response.status_mut() = fixed.status;
                    response
                        .headers_mut()
                        .insert(header::CONTENT_TYPE, fixed.content_type.clone());
                    response
                }
                CompiledAction::Statistics => statistics::response(&table),
            };
            let status = response.status();
            if route.intercept_errors && (status.is_client_error() || status.is_server_error()) {
                if let Some(page) = table.error_page(status.as_u16()) {
                    response = page_response(status, page);
                }
            }
            if let Some(ops) = &route.response_headers {
                ops.apply(response.headers_mut());
            }
            route.counters.record(response.status().as_u16());
            response
        }
    }

    #[allow(clippy::manual_async_fn)]
    fn forward<'a>(
        &'a self,
        (mut req, websocket, conn, host, request_id): (
            Request<IncomingBody>,
            bool,
            &'a Connection,
            HeaderValue,
            &'a HeaderValue,
        ),
        (table, route, pool): (&'a RouteTable, &'a CompiledRoute, &'a Arc<PoolEntry>),
        record: &'a mut Option<Box<AccessRecord>>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'a {
        async move {
            if websocket && !route.allow_upgrade {
                return refuse(&req, conn, StatusCode::FORBIDDEN, UPGRADE_FORBIDDEN);
            }
            if let Some(max) = route.max_body_size {
                if declared_length(req.headers()).is_some_and(|len| len > max) {
                    let fault = BodyFault::TooLarge;
                    return refuse(&req, conn, fault.status(), fault.reason());
                }
            }
            if pool.targets().is_empty() {
                tracing::debug!(target: "routing", route = route.name(), pool = pool.name(), "pool has no target");
                return own_error(table, StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE);
            }
            // An HTTP/1.1 `Upgrade` (WebSocket and the like): the headers that
            // ask for it are hop-by-hop, so they are carried over explicitly, and
            // after a 101 the two connections are joined byte for byte.
            let upgrade =
                upgrade_protocol(&req, websocket).map(|p| (p, ClientUpgrade::of(&mut req)));
            let wants_trailers = accepts_trailers(req.headers());
            let (mut parts, body) = req.into_parts();
            let path = match route
                .rewrite
                .as_ref()
                .and_then(|r| r.apply(parts.uri.path()))
            {
                None => parts
                    .uri
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/")),
                Some(mut rewritten) => {
                    if let Some(query) = parts.uri.query() {
                        rewritten.push('?');
                        rewritten.push_str(query);
                    }
                    match PathAndQuery::try_from(rewritten) {
                        Ok(p) => p,
                        Err(_) => return own_error(table, StatusCode::BAD_REQUEST, BAD_TARGET),
                    }
                }
            };
            let forwarded_host = self.settings.forwarded_header.then(|| host.clone());
            prepare_request(
                &mut parts.headers,
                conn.client,
                &conn.client_ip(),
                host,
                request_id.clone(),
            );
            if let Some(host) = forwarded_host {
                add_forwarded(&mut parts.headers, conn.client, &host);
            }
            // The server answers `100 Continue` itself when the body is first read;
            // the backend is not asked again (RFC 9110 §10.1.1).
            parts.headers.remove(header::EXPECT);
            if wants_trailers {
                // The one TE value that is end to end in effect: gRPC needs it.
                parts
                    .headers
                    .insert(header::TE, HeaderValue::from_static("trailers"));
            }
            if let Some(ops) = &route.request_headers {
                ops.apply(&mut parts.headers);
            }
            parts.headers.append(
                header::VIA,
                HeaderValue::from_static(match parts.version {
                    Version::HTTP_2 => "2.0 gangway",
                    Version::HTTP_10 => "1.0 gangway",
                    _ => "1.1 gangway",
                }),
            );
            if let Some((protocol, _)) = &upgrade {
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                parts.headers.insert(header::UPGRADE, protocol.clone());
            }
            let mut upgrade = upgrade.map(|(_, on_client)| on_client);

            let policy = pool.failover();
            // A request without a body (most are) needs no watch over it and
            // no cell for its faults.
            let (replay, mut stream, fault) = if body.is_end_stream() {
                (Some(Bytes::new()), None, None)
            } else {
                let fault = Arc::new(FaultCell::default());
                let body = ClientBody::new(
                    body,
                    self.settings.body_timeout,
                    route.max_body_size,
                    Arc::clone(&fault),
                );
                match replayable(body, &parts.headers, policy.replay_limit).await {
                    Ok(Kept::Replay(bytes)) => (Some(bytes), None, Some(fault)),
                    Ok(Kept::Stream(body)) => (None, Some(body), Some(fault)),
                    Err(_) => {
                        let fault = fault.get().unwrap_or(BodyFault::Malformed);
                        return refuse_parts(&parts, conn, fault.status(), fault.reason());
                    }
                }
            };
            let may_resend = match policy.retry {
                Retry::Always => true,
                Retry::Idempotent => is_idempotent(&parts.method),
                Retry::Unsent => false,
            };
            let max_attempts = (policy.max_attempts as usize).min(pool.targets().len());
            let timeouts = pool.timeouts();
            let client = match pool.upstream().protocol {
                Protocol::Http => None,
                _ => match self.clients.get(timeouts, pool.upstream()) {
                    Ok(client) => Some(client),
                    Err(_) => return own_error(table, StatusCode::BAD_GATEWAY, BAD_GATEWAY),
                },
            };
            let scheme = if pool.upstream().protocol.tls() {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            };
            // One clock read per attempt: the time the target is chosen at,
            // the request sent at, and its wait counted from.
            let mut sent_at = tokio::time::Instant::now();
            let deadline = timeouts.request.map(|d| sent_at + d);
            // Inline: a request that tries no more than four targets
            // allocates nothing for the list.
            let mut tried: SmallVec<[usize; 4]> = SmallVec::new();

            let key = match pool.balance() {
                Balance::Hash(on) => hash_key(on, &parts.headers, conn),
                _ => None,
            };
            while let Some(chosen) = pool.select(&tried, ms_at(sent_at.into_std()), key) {
                tried.push(chosen.index);
                let target = &pool.targets()[chosen.index];
                let body = match (&replay, stream.take()) {
                    (Some(bytes), _) => RequestBody::Replay(Some(bytes.clone())),
                    (None, Some(body)) => RequestBody::Stream(body),
                    // A streamed body is gone after one attempt.
                    (None, None) => break,
                };
                // gangway's own client sends the origin form; hyper's wants
                // the absolute URI to pick a connection.
                let uri = match client {
                    None => Ok(Uri::from(path.clone())),
                    Some(_) => Uri::builder()
                        .scheme(scheme.clone())
                        .authority(target.authority.clone())
                        .path_and_query(path.clone())
                        .build(),
                };
                let Ok(uri) = uri else {
                    return own_error(table, StatusCode::BAD_REQUEST, BAD_TARGET);
                };
                let headers = if replay.is_some() && tried.len() < max_attempts {
                    parts.headers.clone()
                } else {
                    std::mem::take(&mut parts.headers)
                };
                tracing::debug!(target: "routing", pool = pool.name(), upstream = %target.addr, container = &*target.name, attempt = tried.len(), trial = chosen.trial, panic = chosen.panic, "target chosen");
                if let Some(record) = record {
                    record.upstream = Some((Arc::clone(pool), chosen.index));
                }

                target.state.started();
                let mut wait = timeouts.response_header;
                if let Some(deadline) = deadline {
                    wait = wait.min(deadline.saturating_duration_since(sent_at));
                }
                let wait_until = sent_at + wait;
                // The request made in the call, not kept in a local: a local
                // would keep its room in this future while the target answers.
                let request = || upstream_request(body, parts.method.clone(), uri, headers);
                let mut timer = conn.response_timer.start(wait_until);
                let result = match &client {
                    None => tokio::select! {
                        biased;
                        r = self.h1.send(
                            target.addr,
                            timeouts,
                            request(),
                            sent_at.into_std(),
                            may_resend,
                        ) => Ok(r
                            .map(|r| r.map(UpstreamBody::Own))
                            .map_err(|e| (e.is_connect(), e.to_string()))),
                        () = timer.expired() => Err(()),
                    },
                    Some(client) => tokio::select! {
                        biased;
                        r = client.request(request()) => Ok(r
                            .map(|r| r.map(UpstreamBody::Hyper))
                            .map_err(|e| (e.is_connect(), error_chain(&e)))),
                        () = timer.expired() => Err(()),
                    },
                };
                // Back to the connection as soon as the wait is over, not
                // at the end of the attempt.
                drop(timer);
                target.state.finished();
                if let Some(fault) = fault.as_ref().and_then(|fault| fault.get()) {
                    // The client broke off its own request: not the backend's
                    // failure, and nothing to try again.
                    return refuse_parts(&parts, conn, fault.status(), fault.reason());
                }
                let (kind, error) = match result {
                    Ok(Ok(mut response)) => {
                        target.state.observe_latency(sent_at.elapsed());
                        target.state.responded(response.status().as_u16());
                        if target.state.succeeded() {
                            tracing::info!(pool = pool.name(), upstream = %target.addr, container = &*target.name, "target restored");
                        }
                        let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
                        let tunnel = match (switched, upgrade.take()) {
                            (true, Some(on_client)) => Some(on_client),
                            _ => None,
                        };
                        let on_backend = match response.body() {
                            UpstreamBody::Hyper(_) if tunnel.is_some() => {
                                Some(BackendUpgrade::Hyper(hyper::upgrade::on(&mut response)))
                            }
                            _ => None,
                        };
                        let (mut parts, body) = response.into_parts();
                        let (on_backend, body) = match (tunnel.is_some(), body) {
                            (true, UpstreamBody::Own(own)) => (
                                own.into_upgraded().map(BackendUpgrade::Own),
                                UpstreamBody::Empty,
                            ),
                            (_, body) => (on_backend, body),
                        };
                        // Looked up only for a switch: a lookup is not free.
                        let protocol = tunnel
                            .as_ref()
                            .and_then(|_| parts.headers.get(header::UPGRADE).cloned());
                        remove_hop_by_hop(&mut parts.headers);
                        parts
                            .headers
                            .append(header::VIA, HeaderValue::from_static("1.1 gangway"));
                        if let (Some(on_client), Some(on_backend), Some(protocol)) =
                            (tunnel, on_backend, protocol)
                        {
                            parts
                                .headers
                                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                            parts.headers.insert(header::UPGRADE, protocol);
                            tokio::spawn(join_upgraded(on_client, on_backend, target.addr));
                        }
                        return Response::from_parts(parts, ResponseBody::upstream(body, deadline));
                    }
                    Ok(Err((true, error))) => (FailureKind::Connect, error),
                    Ok(Err((false, error))) => (FailureKind::Reset, error),
                    Err(_) => (
                        FailureKind::Timeout,
                        format!("no response headers within {wait:?}"),
                    ),
                };
                sent_at = tokio::time::Instant::now();
                let verdict = target.state.failed(kind, policy, ms_at(sent_at.into_std()));
                tracing::warn!(
                    pool = pool.name(),
                    upstream = %target.addr,
                    container = &*target.name,
                    attempt = tried.len(),
                    %kind,
                    %error,
                    "upstream request failed"
                );
                if let Verdict::Ejected(cooldown) = verdict {
                    tracing::warn!(
                        pool = pool.name(),
                        upstream = %target.addr,
                        container = &*target.name,
                        cooldown_s = cooldown.as_secs_f64(),
                        "target ejected"
                    );
                }
                // Bytes that never left cannot have done anything: always safe
                // to send elsewhere. Otherwise the pool's retry policy decides.
                let reached_backend = kind != FailureKind::Connect;
                if deadline.is_some_and(|d| sent_at >= d) {
                    return own_error(table, StatusCode::GATEWAY_TIMEOUT, GATEWAY_TIMEOUT);
                }
                if tried.len() >= max_attempts || (reached_backend && !may_resend) {
                    break;
                }
            }
            own_error(table, StatusCode::BAD_GATEWAY, BAD_GATEWAY)
        }
    }
}

/// The request to a target.
fn upstream_request(
    body: RequestBody,
    method: Method,
    uri: Uri,
    headers: http::HeaderMap,
) -> Request<RequestBody> {
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    request
}

/// A request body, read into memory when small enough to be sent again.
enum Kept {
    Replay(Bytes),
    Stream(ClientBody),
}

/// Keeps a body whose declared length is at most `limit` (to be sent
/// again on a retry); longer or unknown-length ones stream.
async fn replayable(
    body: ClientBody,
    headers: &http::HeaderMap,
    limit: u64,
) -> Result<Kept, BodyError> {
    match declared_length(headers) {
        Some(len) if len <= limit => Ok(Kept::Replay(body.collect().await?.to_bytes())),
        _ => Ok(Kept::Stream(body)),
    }
}

/// The body length a request declares (the server has already refused requests
/// whose `Content-Length` is invalid or conflicting).
pub(crate) fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Whether the client accepts trailers (`TE: trailers`, RFC 9110 §10.1.4).
fn accepts_trailers(headers: &http::HeaderMap) -> bool {
    headers.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|t| {
                t.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .eq_ignore_ascii_case("trailers")
            })
        })
    })
}

/// Refuses a request as the client's fault: gangway's own short answer and
/// a `request refused` log line with the reason.
fn refuse<B>(
    req: &Request<B>,
    conn: &Connection,
    status: StatusCode,
    reason: &'static str,
) -> Response<ResponseBody> {
    refused(req.method(), req.uri(), conn, status, reason)
}

fn refuse_parts(
    parts: &http::request::Parts,
    conn: &Connection,
    status: StatusCode,
    reason: &'static str,
) -> Response<ResponseBody> {
    refused(&parts.method, &parts.uri, conn, status, reason)
}

fn refused(
    method: &Method,
    uri: &Uri,
    conn: &Connection,
    status: StatusCode,
    reason: &'static str,
) -> Response<ResponseBody> {
    tracing::info!(
        target: "access",
        client = %conn.client.ip,
        %method,
        path = uri.path(),
        status = status.as_u16(),
        reason = reason.trim_end(),
        "request refused"
    );
    let mut response = error_response(status, reason);
    if status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::REQUEST_TIMEOUT {
        // The rest of the body may still be on its way; do not read it.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Refuses request targets that do not fit the method (RFC 9112 §3.2):
/// CONNECT (gangway tunnels nothing but WebSockets), the authority form
/// for any other method, and `*` for anything but OPTIONS.
fn check_target<B>(req: &Request<B>) -> Result<(), (StatusCode, &'static str)> {
    if req.method() == Method::CONNECT {
        return Err((StatusCode::METHOD_NOT_ALLOWED, NO_CONNECT));
    }
    let uri = req.uri();
    let path = uri.path();
    let authority_form = uri.scheme().is_none() && uri.authority().is_some();
    let asterisk_ok = path != "*" || req.method() == Method::OPTIONS;
    if authority_form || !asterisk_ok || !(path.starts_with('/') || path == "*") {
        return Err((StatusCode::BAD_REQUEST, BAD_TARGET));
    }
    Ok(())
}

/// `uri` with its path replaced, query kept.
fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let path_and_query = match uri.query() {
        Some(query) => PathAndQuery::try_from(format!("{path}?{query}")),
        None => PathAndQuery::try_from(path),
    }
    .ok()?;
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).ok()
}

/// A client's id is kept if it is short visible ASCII (a log field and a
/// header value, never a vehicle for anything else).
fn usable_request_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// 32 hex digits: unique enough to find one request in the logs, not a
/// secret.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 32];
    let random = [random_u64().to_be_bytes(), random_u64().to_be_bytes()];
    for (i, byte) in random.iter().flatten().enumerate() {
        text[2 * i] = HEX[usize::from(byte >> 4)];
        text[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    counted_value(text, text.len()).unwrap_or_else(|| HeaderValue::from_static("0"))
}

/// The protocol an HTTP/1.1 request asks to switch to (`Upgrade` with
/// `Connection: upgrade`), if gangway tunnels it: WebSocket only. Any
/// other upgrade is forwarded as a plain request (its `Upgrade` dropped as
/// hop-by-hop): an `h2c` tunnel, say, would carry requests past routing.
/// `websocket`: what `is_websocket_upgrade` said of the request.
fn upgrade_protocol<B>(req: &Request<B>, websocket: bool) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 || !websocket {
        return None;
    }
    req.headers().get(header::UPGRADE).cloned()
}

/// Joins the client's and the backend's connections after a 101, until
/// either side closes. No idle timeout: WebSockets may stay quiet for long.
async fn join_upgraded(
    on_client: ClientUpgrade,
    on_backend: BackendUpgrade,
    upstream: std::net::SocketAddr,
) {
    let sides = async {
        let client: (Box<dyn TunnelIo>, Bytes) = match on_client {
            ClientUpgrade::Hyper(on) => (Box::new(TokioIo::new(on.await?)), Bytes::new()),
            ClientUpgrade::Own(on) => {
                let own = on
                    .await
                    .map_err(|_| "the client connection was not handed over")?;
                (Box::new(own.io), own.read_ahead)
            }
        };
        let backend: (Box<dyn TunnelIo>, Bytes) = match on_backend {
            BackendUpgrade::Hyper(on) => (Box::new(TokioIo::new(on.await?)), Bytes::new()),
            BackendUpgrade::Own(own) => (Box::new(own.io), own.read_ahead),
        };
        Ok::<_, BodyError>((client, backend))
    };
    let ((mut client, client_ahead), (mut backend, backend_ahead)) = match sides.await {
        Ok(sides) => sides,
        Err(error) => {
            tracing::debug!(%upstream, %error, "upgrade did not complete");
            return;
        }
    };
    // What either side sent right after the switch goes first.
    let joined = async {
        backend.write_all(&client_ahead).await?;
        client.write_all(&backend_ahead).await?;
        tokio::io::copy_bidirectional(&mut client, &mut backend).await
    };
    match joined.await {
        Ok((up, down)) => {
            tracing::debug!(%upstream, bytes_to_backend = up, bytes_to_client = down, "upgraded connection closed")
        }
        Err(error) => tracing::debug!(%upstream, %error, "upgraded connection broken"),
    }
}

/// Either side of a tunnel: a TCP stream or a connection hyper let go.
trait TunnelIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> TunnelIo for T {}

/// The client's side of a switched connection.
enum ClientUpgrade {
    Hyper(hyper::upgrade::OnUpgrade),
    /// From gangway's own HTTP/1.1 server, once it has written the 101.
    Own(tokio::sync::oneshot::Receiver<crate::h1::Upgraded>),
}

impl ClientUpgrade {
    fn of(req: &mut Request<IncomingBody>) -> Self {
        match req
            .extensions_mut()
            .remove::<PendingUpgrade>()
            .and_then(|pending| pending.take())
        {
            Some(own) => ClientUpgrade::Own(own),
            None => ClientUpgrade::Hyper(hyper::upgrade::on(req)),
        }
    }
}

/// The target's side of a switched connection.
enum BackendUpgrade {
    Hyper(hyper::upgrade::OnUpgrade),
    Own(crate::h1::Upgraded),
}

/// The hash of what a hashing pool balances on; `None` (round robin) for
/// a request without it.
fn hash_key(on: &HashKey, headers: &http::HeaderMap, conn: &Connection) -> Option<u64> {
    match on {
        HashKey::ClientIp => Some(stable_hash(ip_text(conn.client.ip, &mut [0; IP_TEXT]))),
        HashKey::Header(name) => headers
            .get(name.as_str())
            .map(|v| stable_hash(v.as_bytes())),
        HashKey::Cookie(name) => headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| stable_hash(v.as_bytes())),
    }
}

/// RFC 9110 §9.2.2.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

const NOT_FOUND: &str = "no service is configured for this host\n";
const UNAVAILABLE: &str = "no backend is available for this host right now\n";
const BAD_GATEWAY: &str = "the backend for this host did not answer\n";
const BAD_TARGET: &str = "the request target is invalid\n";
const GATEWAY_TIMEOUT: &str = "the backend for this host did not answer in time\n";
const NO_CONNECT: &str = "gangway does not tunnel CONNECT requests\n";
const UPGRADE_FORBIDDEN: &str = "this route does not allow WebSocket upgrades\n";
/// What `OPTIONS *` answers.
const ALLOWED: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
const FILE_NOT_FOUND: &str = "no such file\n";
const BAD_PATH: &str = "the path is not valid\n";

/// One of gangway's own errors: the configured error page for the status,
/// else a short text that names nothing internal.
fn own_error(
    table: &RouteTable,
    status: StatusCode,
    message: &'static str,
) -> Response<ResponseBody> {
    match table.error_page(status.as_u16()) {
        Some(page) => page_response(status, page),
        None => error_response(status, message),
    }
}

fn page_response(status: StatusCode, page: &ErrorPage) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(page.body.clone()));
    *response.status_mut() = status;
    if let Ok(content_type) = HeaderValue::try_from(page.content_type.as_str()) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
}

fn redirect(status: StatusCode, location: &str) -> Response<ResponseBody> {
    match HeaderValue::try_from(location) {
        Ok(value) => {
            let mut response = Response::new(ResponseBody::empty());
            *response.status_mut() = status;
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(_) => error_response(
            StatusCode::BAD_REQUEST,
            "the redirect target built from this request is invalid\n",
        ),
    }
}

/// Expands a redirect template: `$host`, `$path`, `$query`, `$request_uri`,
/// `$scheme`, and the path regex's groups (`$1`, `${name}`). An unknown
/// name expands to nothing, as in nginx.
pub fn expand_template(
    template: &str,
    uri: &Uri,
    host: &str,
    scheme: &str,
    captures: &Captures,
) -> String {
    let mut buf = [0u8; MAX_HOST_LEN + 8];
    let host = normalize_host(host, &mut buf).unwrap_or_default();
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let (name, consumed) = match after.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        if consumed == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        match name {
            "host" => out.push_str(host),
            "path" => out.push_str(uri.path()),
            "query" => out.push_str(uri.query().unwrap_or_default()),
            "request_uri" => out.push_str(uri.path_and_query().map_or("/", PathAndQuery::as_str)),
            "scheme" => out.push_str(scheme),
            other => out.push_str(captures.get(other).unwrap_or_default()),
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

/// Why a request's host cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostProblem {
    Missing,
    Several,
    Conflicting,
    Invalid,
}

impl HostProblem {
    fn message(self) -> &'static str {
        match self {
            HostProblem::Missing => "the request names no host\n",
            HostProblem::Several => "the request has more than one Host header\n",
            HostProblem::Conflicting => "the Host header disagrees with the request target\n",
            HostProblem::Invalid => "the Host header is not valid\n",
        }
    }
}

/// The host a request is for: the authority of an absolute-form or HTTP/2
/// request (RFC 9112 §3.2.2), else the `Host` header. The received header
/// value is reused as it is, so that HTTP/1.1 requests cost no copy.
///
/// Refused (400, RFC 9112 §3.2): no host (an HTTP/1.1 request must send
/// `Host` even with an absolute URI), more than one `Host` line, a value
/// that is not `host[:port]`, and a `Host` that names another host than
/// the authority (which RFC 9113 §8.3.1 calls malformed for HTTP/2):
/// gangway must never route by one name while the backend sees another.
fn request_host<B>(req: &Request<B>) -> Result<HeaderValue, HostProblem> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err(HostProblem::Several);
    }
    if header.is_none() && req.version() == Version::HTTP_11 {
        return Err(HostProblem::Missing);
    }
    if header.is_some_and(|h| !h.to_str().is_ok_and(is_valid_authority)) {
        return Err(HostProblem::Invalid);
    }
    match (req.uri().authority(), header) {
        (Some(authority), header) => {
            let from_uri =
                HeaderValue::from_str(authority.as_str()).map_err(|_| HostProblem::Invalid)?;
            if !from_uri.to_str().is_ok_and(is_valid_authority) {
                return Err(HostProblem::Invalid);
            }
            if let Some(header) = header {
                if !same_host(header.as_bytes(), from_uri.as_bytes()) {
                    return Err(HostProblem::Conflicting);
                }
            }
            Ok(from_uri)
        }
        // Checked above.
        (None, Some(header)) => Ok(header.clone()),
        (None, None) => Err(HostProblem::Missing),
    }
}

/// Whether two host values name the same host (case, port and a trailing
/// dot aside, as routing sees them).
fn same_host(a: &[u8], b: &[u8]) -> bool {
    let (Ok(a), Ok(b)) = (std::str::from_utf8(a), std::str::from_utf8(b)) else {
        return false;
    };
    let mut buf_a = [0u8; MAX_HOST_LEN + 8];
    let mut buf_b = [0u8; MAX_HOST_LEN + 8];
    match (normalize_host(a, &mut buf_a), normalize_host(b, &mut buf_b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// One of gangway's own short error responses; it names nothing internal.
pub(crate) fn error_response(status: StatusCode, message: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(message));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Renders an error with its causes, which hyper keeps in `source()`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_values_hold_their_text_and_refuse_invalid_bytes() {
        let ip = std::net::IpAddr::from([10, 0, 0, 7]);
        let conn = Connection::new(ClientInfo {
            ip,
            https: false,
            local_port: 80,
            trusted: false,
        });
        let value = conn.client_ip();
        assert_eq!(value.as_bytes(), b"10.0.0.7");
        assert_eq!(value.clone(), value);
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit), "{id:?}");
        assert_ne!(id, new_request_id());
        assert_eq!(counted_value(*b"abc", 9).map(|v| v.len()), Some(3));
        assert_eq!(counted_value(*b"a\nb", 3), None);
    }

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        let mut text = [0; IP_TEXT];
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "192.168.100.255",
            "255.255.255.255",
            "9.99.100.199",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.128",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip, &mut text), ip.to_string().as_bytes(), "{ip}");
        }
        for octet in 0..=255u8 {
            let ip = std::net::IpAddr::from([octet, octet, 0, 255]);
            assert_eq!(ip_text(ip, &mut text), ip.to_string().as_bytes(), "{ip}");
        }
        let mut text = [0; SOCKET_TEXT];
        for addr in [
            "0.0.0.0:0",
            "127.0.0.1:9",
            "10.20.30.40:80",
            "192.168.100.255:8080",
            "255.255.255.255:65535",
            "9.99.100.199:10000",
            "[::1]:443",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535",
        ] {
            let addr: std::net::SocketAddr = addr.parse().unwrap();
            let written = socket_text(addr, &mut text);
            assert_eq!(written, addr.to_string().as_bytes(), "{addr}");
        }
    }

    #[test]
    fn templates_expand_variables_and_captures() {
        let uri: Uri = "/old/page?x=1".parse().unwrap();
        let caps = Captures::default();
        assert_eq!(
            expand_template(
                "https://$host$request_uri",
                &uri,
                "Example.com:8080",
                "http",
                &caps
            ),
            "https://example.com/old/page?x=1"
        );
        assert_eq!(
            expand_template("${scheme}://x$path?$query&y=$", &uri, "a", "http", &caps),
            "http://x/old/page?x=1&y=$"
        );
        assert_eq!(
            expand_template("/a/$nothing/b", &uri, "a", "http", &caps),
            "/a//b"
        );
    }
}
