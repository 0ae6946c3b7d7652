//! The admin listener: liveness and readiness now, the REST API later. It is
//! a separate socket, so no proxied route can ever reach it.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serves the admin endpoints on an already bound socket.
pub async fn serve(listener: TcpListener, ready: Arc<AtomicBool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let ready = Arc::clone(&ready);
        let service = service_fn(move |req| {
            let ready = ready.load(Ordering::Acquire);
            async move { Ok::<_, Infallible>(respond(&req, ready)) }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(req: &Request<Incoming>, ready: bool) -> Response<Full<Bytes>> {
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

/// Asks a running gangway's `/readyz`; exit code 0 when ready. Plain
/// HTTP/1.0 over a socket, so that an image needs no HTTP client.
pub fn healthcheck(addr: &str) -> std::process::ExitCode {
    use std::io::{Read, Write};
    use std::process::ExitCode;
    let timeout = std::time::Duration::from_secs(3);
    let ready = (|| -> std::io::Result<bool> {
        let addr = addr
            .parse()
            .map_err(|_| std::io::Error::other("CONTROL_PLANE_ADDR is not an address"))?;
        let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"GET /readyz HTTP/1.0\r\nHost: gangway\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    })();
    match ready {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("gangway at {addr} is not ready");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("cannot ask gangway at {addr}: {error}");
            ExitCode::FAILURE
        }
    }
}
