//! `gangway-test-backend`: a tiny HTTP/1.1 server that tells the client what
//! it received, so integration tests can check what a proxy forwards.
//!
//! - Listens on `[::]:$PORT` (dual-stack; falls back to `0.0.0.0`), `PORT`
//!   defaults to 80, `--port N` overrides it.
//! - Its name is `$BACKEND_NAME`, else the hostname from `/etc/hostname`,
//!   else `backend`; every response carries `x-backend: <name>`.
//! - Every request is answered with a JSON description of the request:
//!   `{"name", "method", "uri", "version", "headers": [[name, value], ...],
//!   "body_bytes"}`.
//! - `/status/NNN` answers with status NNN; `/hop` adds hop-by-hop response
//!   headers (`Connection: x-hop-secret`, `x-hop-secret: 1`,
//!   `Keep-Alive: timeout=5`) and an end-to-end one (`x-end-to-end: kept`);
//!   `/stream?chunks=N&delay_ms=M` streams N chunks `chunk i\n`, M ms apart.
//! - `/health/ok` and `/health/fail` create and remove `/healthy`;
//!   `gangway-test-backend --probe` exits 0 while it exists: a Docker
//!   HEALTHCHECK for an image without a shell.
//! - A request with `Upgrade` is answered with 101 and the same
//!   `Upgrade`, then every byte received is echoed back.
//! - `BACKEND_DELAY_MS=N` delays every response's headers by N ms (a slow
//!   backend).
//! - Exits promptly on SIGTERM and SIGINT (it runs as PID 1 in a container).

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

type RespBody = BoxBody<Bytes, Infallible>;

/// The file whose presence makes `--probe` (a Docker HEALTHCHECK) pass.
const HEALTH_FILE: &str = "/healthy";

fn main() {
    // `gangway-test-backend --probe`: a Docker HEALTHCHECK command, with no
    // shell in the image. Healthy while the health file exists.
    if std::env::args().nth(1).as_deref() == Some("--probe") {
        std::process::exit(if std::path::Path::new(HEALTH_FILE).exists() {
            0
        } else {
            1
        });
    }
    let port = match port_from_args_and_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("gangway-test-backend: {e}");
            std::process::exit(2);
        }
    };
    let name: Arc<str> = backend_name().into();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gangway-test-backend: cannot start runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(serve(port, name)) {
        eprintln!("gangway-test-backend: {e}");
        std::process::exit(1);
    }
}

fn port_from_args_and_env() -> Result<u16, String> {
    let mut port = match std::env::var("PORT") {
        Ok(v) => v
            .parse::<u16>()
            .map_err(|_| format!("PORT={v:?} is not a port number (0-65535)"))?,
        Err(_) => 80,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = if arg == "--port" {
            args.next().ok_or("--port needs a value")?
        } else if let Some(v) = arg.strip_prefix("--port=") {
            v.to_string()
        } else {
            return Err(format!("unknown argument {arg:?} (only --port N)"));
        };
        port = value
            .parse::<u16>()
            .map_err(|_| format!("--port {value:?} is not a port number (0-65535)"))?;
    }
    Ok(port)
}

fn backend_name() -> String {
    if let Ok(name) = std::env::var("BACKEND_NAME") {
        if !name.is_empty() {
            return name;
        }
    }
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "backend".to_string())
}

fn bind(port: u16) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let dual = || -> std::io::Result<Socket> {
        let s = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
        s.set_only_v6(false)?;
        s.set_reuse_address(true)?;
        s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
        Ok(s)
    };
    let socket = match dual() {
        Ok(s) => s,
        Err(_) => {
            let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            s.set_reuse_address(true)?;
            s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
            s
        }
    };
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

async fn serve(port: u16, name: Arc<str>) -> std::io::Result<()> {
    let listener = TcpListener::from_std(bind(port)?)?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", listener.local_addr()?)?;
        out.flush()?;
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let name = name.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, name.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        }
    }
}

async fn handle(
    mut req: Request<Incoming>,
    name: Arc<str>,
) -> Result<Response<RespBody>, Infallible> {
    // An `Upgrade` request: switch protocols and echo every byte back, so
    // a test sees exactly what crossed the proxy in each direction.
    if let Some(protocol) = req.headers().get(http::header::UPGRADE).cloned() {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            }
        });
        let mut response = Response::new(Full::new(Bytes::new()).boxed());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        response.headers_mut().insert(
            http::header::CONNECTION,
            HeaderValue::from_static("upgrade"),
        );
        response
            .headers_mut()
            .insert(http::header::UPGRADE, protocol);
        if let Ok(n) = HeaderValue::from_str(&name) {
            response.headers_mut().insert("x-backend", n);
        }
        return Ok(response);
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let version = format!("{:?}", req.version());
    let headers: Vec<serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| serde_json::json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect();

    // Count the whole request body without keeping it.
    let mut body = req.into_body();
    let mut body_bytes: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    body_bytes += d.len() as u64;
                }
            }
            Err(_) => break,
        }
    }

    // A slow backend: its response headers come after this delay.
    if let Some(ms) = std::env::var("BACKEND_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    let description = serde_json::json!({
        "name": &*name,
        "method": method,
        "uri": uri,
        "version": version,
        "headers": headers,
        "body_bytes": body_bytes,
    });
    let mut json = description.to_string();
    json.push('\n');

    let mut status = StatusCode::OK;
    let mut resp_body: RespBody = Full::new(Bytes::from(json)).boxed();
    let mut extra: Vec<(&'static str, &'static str)> = Vec::new();

    // The container's Docker health, as `--probe` reports it.
    if path == "/health/ok" {
        let _ = std::fs::write(HEALTH_FILE, b"ok");
    } else if path == "/health/fail" {
        let _ = std::fs::remove_file(HEALTH_FILE);
    }

    if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .parse::<u16>()
            .ok()
            .filter(|c| *c >= 200)
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        if status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::RESET_CONTENT
        {
            resp_body = Full::new(Bytes::new()).boxed();
        }
    } else if path == "/hop" {
        extra = vec![
            ("connection", "x-hop-secret"),
            ("x-hop-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("x-end-to-end", "kept"),
        ];
    } else if path == "/stream" {
        let chunks = query_param(&query, "chunks").unwrap_or(5);
        let delay = Duration::from_millis(query_param(&query, "delay_ms").unwrap_or(100));
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        tokio::spawn(async move {
            for i in 0..chunks {
                if i > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if tx.send(Bytes::from(format!("chunk {i}\n"))).await.is_err() {
                    return;
                }
            }
        });
        resp_body = ChannelBody(rx).boxed();
        extra = vec![("content-type", "text/plain")];
    }

    let mut resp = Response::new(resp_body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert("x-backend", v);
    }
    if extra.is_empty() || path == "/hop" {
        h.insert("content-type", HeaderValue::from_static("application/json"));
    }
    for (k, v) in extra {
        h.append(k, HeaderValue::from_static(v));
    }
    Ok(resp)
}

fn query_param(query: &str, key: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// A body whose data frames come from a channel, sent as they arrive (so the
/// response goes out chunked and unbuffered).
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}
