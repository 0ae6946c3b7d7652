//! The admin listener: liveness, readiness, Prometheus `/metrics`,
//! `/api/v1/stats`, `/api/v1/explain` and `/api/v1/docker/containers` now,
//! the rest of the REST API later. It is a separate socket, so no proxied route
//! can ever reach it.

use arc_swap::ArcSwap;
use bytes::Bytes;
use gangway_router::{RequestInfo, RouteTable};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// What the admin endpoints read.
pub struct AdminState {
    /// Whether the first Docker sync is done.
    pub ready: Arc<AtomicBool>,
    /// The routing table the data plane uses.
    pub table: Arc<ArcSwap<RouteTable>>,
    /// The port `explain` assumes when the question names none.
    pub http_port: u16,
    /// What the Docker provider knows.
    pub docker: gangway_docker::DockerStatus,
}

/// Serves the admin endpoints on an already bound socket.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let state = Arc::clone(&state);
        let service = service_fn(move |req| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(respond(&req, &state)) }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(req: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/api/v1/explain" => return explain(req, state),
        "/metrics" => {
            let body = gangway_proxy::prometheus_metrics(&state.table.load());
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return response;
        }
        "/api/v1/stats" => {
            let body = gangway_proxy::statistics_json(&state.table.load());
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return response;
        }
        "/api/v1/docker/containers" => {
            return json(StatusCode::OK, "application/json", &state.docker.report())
        }
        _ => {}
    }
    let ready = state.ready.load(Ordering::Acquire);
    let (status, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n"),
        "/readyz" if ready => (StatusCode::OK, "ready\n"),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for the first Docker sync\n",
        ),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// `GET /api/v1/explain?host=H&path=P&method=M&header=K:V&port=N&websocket=true`
fn explain(req: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return problem(StatusCode::METHOD_NOT_ALLOWED, "use GET", "");
    }
    let mut host = None;
    let mut target = "/".to_owned();
    let mut method = Method::GET;
    let mut headers = HeaderMap::new();
    let mut port = state.http_port;
    let mut websocket = false;
    for (key, value) in form_pairs(req.uri().query().unwrap_or_default()) {
        match key.as_str() {
            "host" => host = Some(value),
            "path" => target = value,
            "method" => match Method::from_bytes(value.to_ascii_uppercase().as_bytes()) {
                Ok(m) => method = m,
                Err(_) => return problem(StatusCode::BAD_REQUEST, "invalid method", &value),
            },
            "header" => {
                let parsed = value.split_once(':').and_then(|(k, v)| {
                    Some((
                        HeaderName::from_bytes(k.trim().as_bytes()).ok()?,
                        HeaderValue::from_str(v.trim()).ok()?,
                    ))
                });
                match parsed {
                    Some((k, v)) => {
                        headers.append(k, v);
                    }
                    None => {
                        return problem(
                            StatusCode::BAD_REQUEST,
                            "invalid header; write it as Name: value",
                            &value,
                        )
                    }
                }
            }
            "port" => match value.parse() {
                Ok(p) => port = p,
                Err(_) => return problem(StatusCode::BAD_REQUEST, "invalid port", &value),
            },
            "websocket" => websocket = value == "true" || value == "1",
            _ => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "unknown parameter; use host, path, method, header, port or websocket",
                    &key,
                )
            }
        }
    }
    let Some(host) = host else {
        return problem(
            StatusCode::BAD_REQUEST,
            "the host parameter is required",
            "",
        );
    };
    if !target.starts_with('/') {
        return problem(
            StatusCode::BAD_REQUEST,
            "the path must start with /",
            &target,
        );
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target.as_str(), None),
    };
    let table = state.table.load();
    let explanation = table.explain(&RequestInfo {
        host: &host,
        path,
        query,
        method: &method,
        headers: &headers,
        port,
        websocket: websocket || gangway_router::is_websocket_upgrade(&headers),
    });
    json(StatusCode::OK, "application/json", &explanation)
}

/// An RFC 9457 problem document.
fn problem(status: StatusCode, title: &str, detail: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    json(status, "application/problem+json", &body)
}

fn json(
    status: StatusCode,
    content_type: &'static str,
    value: &impl serde::Serialize,
) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

/// `application/x-www-form-urlencoded` pairs of a query string.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn form_decode(s: &str) -> String {
    gangway_router::decode_query_component(s).into_owned()
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends one plain HTTP/1.0 GET to the admin listener; returns the status
/// and the body.
pub fn admin_get(addr: &str, path_and_query: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(5);
    let addr = addr
        .parse()
        .map_err(|_| std::io::Error::other("CONTROL_PLANE_ADDR is not an address"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path_and_query} HTTP/1.0\r\nHost: gangway\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.take(16 * 1024 * 1024).read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("the answer is not HTTP"))?;
    Ok((status, body.to_owned()))
}

/// Asks a running gangway's `/readyz`; exit code 0 when ready. Plain
/// HTTP/1.0 over a socket, so that an image needs no HTTP client.
pub fn healthcheck(addr: &str) -> std::process::ExitCode {
    use std::process::ExitCode;
    match admin_get(addr, "/readyz") {
        Ok((200, _)) => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("gangway at {addr} is not ready");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("cannot ask gangway at {addr}: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_round_trips() {
        for s in ["/a b?c=d&e", "X-Env: beta", "é%+"] {
            assert_eq!(form_decode(&form_encode(s)), s);
        }
        assert_eq!(
            form_pairs("host=a.test&path=%2Fx&flag"),
            [
                ("host".to_owned(), "a.test".to_owned()),
                ("path".to_owned(), "/x".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
    }
}
