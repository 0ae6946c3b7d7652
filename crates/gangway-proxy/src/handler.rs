//! The request path, top to bottom: find the host, pick a target, rewrite
//! headers, forward, and hand the streamed response back.

use crate::body::{AccessRecord, ResponseBody};
use crate::headers::{add_forwarding, remove_hop_by_hop, ClientInfo};
use arc_swap::ArcSwap;
use gangway_router::{Lookup, RouteTable};
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long gangway waits for a backend to accept a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle upstream keep-alive connection is kept for reuse.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Per-connection facts, computed once when the connection is accepted.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Who is connected and how.
    pub client: ClientInfo,
    /// `client.ip` rendered as a header value, reused by every request.
    pub client_ip: HeaderValue,
}

impl Connection {
    /// Describes a newly accepted connection.
    pub fn new(client: ClientInfo) -> Self {
        let client_ip = HeaderValue::from_str(&client.ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Connection { client, client_ip }
    }
}

/// The forwarding proxy: the current routing table and the upstream
/// connection pool.
#[derive(Debug)]
pub struct Proxy {
    routes: Arc<ArcSwap<RouteTable>>,
    client: Client<HttpConnector, Incoming>,
}

impl Proxy {
    /// A proxy reading routes from `routes`, which providers swap as the
    /// configuration changes.
    pub fn new(routes: Arc<ArcSwap<RouteTable>>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(UPSTREAM_IDLE_TIMEOUT)
            // The Host header is set from the client's request, not from the target.
            .set_host(false)
            .build(connector);
        Proxy { routes, client }
    }

    /// Handles one request from a client.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        conn: &Connection,
    ) -> Response<ResponseBody> {
        let start = Instant::now();
        let Some(host) = request_host(&req) else {
            return error_response(StatusCode::BAD_REQUEST, "the request names no host\n");
        };
        let mut record =
            tracing::enabled!(target: "access", tracing::Level::INFO).then(|| AccessRecord {
                start,
                client: conn.client.ip,
                method: req.method().clone(),
                host: host.to_str().unwrap_or_default().into(),
                uri: req.uri().clone(),
                status: 0,
                bytes: 0,
                upstream: None,
            });
        let response = self.route(req, conn, host, &mut record).await;
        if let Some(record) = &mut record {
            record.status = response.status().as_u16();
        }
        let (parts, body) = response.into_parts();
        Response::from_parts(parts, body.with_log(record))
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        conn: &Connection,
        host: HeaderValue,
        record: &mut Option<AccessRecord>,
    ) -> Response<ResponseBody> {
        let table = self.routes.load_full();
        // request_host only returns visible ASCII, so this never falls back.
        let host_name = host.to_str().unwrap_or_default();
        let pool = match table.lookup(host_name) {
            Lookup::Pool(pool) => Arc::clone(pool),
            Lookup::UnknownHost => {
                tracing::debug!(target: "routing", host = host_name, "no route for host");
                return error_response(
                    StatusCode::NOT_FOUND,
                    "no service is configured for this host\n",
                );
            }
        };
        let Some(index) = pool.pick_index() else {
            tracing::debug!(target: "routing", host = host_name, pool = pool.name(), "pool has no target");
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "no backend is available for this host right now\n",
            );
        };
        let target = &pool.targets()[index];
        tracing::debug!(target: "routing", host = host_name, pool = pool.name(), upstream = %target.addr, container = &*target.name, "route chosen");

        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        if !parts.headers.contains_key(header::HOST) {
            // HTTP/2 carries the host in :authority; HTTP/1.1 backends need Host.
            parts.headers.insert(header::HOST, host.clone());
        }
        remove_hop_by_hop(&mut parts.headers);
        add_forwarding(&mut parts.headers, conn.client, &conn.client_ip, host);
        let mut uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(target.authority.clone());
        uri = uri.path_and_query(path);
        parts.uri = match uri.build() {
            Ok(uri) => uri,
            Err(_) => {
                return error_response(StatusCode::BAD_REQUEST, "the request target is invalid\n")
            }
        };
        parts.version = Version::HTTP_11;
        if let Some(record) = record {
            record.upstream = Some((Arc::clone(&pool), index));
        }

        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, ResponseBody::upstream(body))
            }
            Err(error) => {
                tracing::warn!(
                    upstream = %target.addr,
                    container = &*target.name,
                    error = %error_chain(&error),
                    "upstream request failed"
                );
                error_response(
                    StatusCode::BAD_GATEWAY,
                    "the backend for this host did not answer\n",
                )
            }
        }
    }
}

/// The host a request is for: the authority of an absolute-form or HTTP/2
/// request (RFC 9112 §3.2.2), else the `Host` header. The received header
/// value is reused as it is, so that HTTP/1.1 requests cost no copy.
fn request_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    let value = match req.uri().authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok()?,
        None => req.headers().get(header::HOST)?.clone(),
    };
    value.to_str().is_ok().then_some(value)
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
