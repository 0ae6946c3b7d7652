//! The backend that `bench/run.sh` puts behind every proxy: as little work
//! per request as hyper allows, so that the proxies, not the backend, are
//! what the benchmark measures.
//!
//! - `GET /` (and `HEAD /`): a small fixed body.
//! - `GET /1m`: 1 MiB (1,048,576 bytes), from one shared buffer.
//! - anything else: 404.
//!
//! HTTP/1.1 with keep-alive, and HTTP/2 with prior knowledge (h2c), on one
//! port. One tokio worker thread per CPU of the process's affinity mask
//! (`taskset -c 1 gangway-bench-backend` runs on CPU 1 only).
//!
//! Usage: `gangway-bench-backend [--listen 127.0.0.1:8000]`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

/// The answer to `GET /`.
const SMALL_BODY: &[u8] = b"hello from the gangway bench backend\n";
/// The size of the answer to `GET /1m`.
const LARGE_LEN: usize = 1 << 20;
/// Streams one HTTP/2 connection may carry at once (h2load uses 100).
const MAX_CONCURRENT_STREAMS: u32 = 1000;

fn main() -> ExitCode {
    let addr = match parse_args(std::env::args().skip(1)) {
        Ok(addr) => addr,
        Err(message) => {
            eprintln!("gangway-bench-backend: {message}");
            eprintln!("usage: gangway-bench-backend [--listen IP:PORT]");
            return ExitCode::from(2);
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gangway-bench-backend: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(addr, threads)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gangway-bench-backend: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<SocketAddr, String> {
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 8000));
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args.next().ok_or("--listen needs a value")?;
                addr = value
                    .parse()
                    .map_err(|e| format!("invalid --listen {value:?}: {e}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(addr)
}

async fn serve(addr: SocketAddr, threads: usize) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!(
        "gangway-bench-backend listening on {}, {threads} worker thread(s)",
        listener.local_addr()?
    );
    let large = Bytes::from(vec![b'x'; LARGE_LEN]);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    builder
        .http2()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait, then go on.
                eprintln!("gangway-bench-backend: accept: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let large = large.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let large = large.clone();
                async move { Ok::<_, Infallible>(answer(&req, large)) }
            });
            // Clients closing their connections is the normal end here.
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(req: &Request<Incoming>, large: Bytes) -> Response<Full<Bytes>> {
    let body = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/") => Bytes::from_static(SMALL_BODY),
        (&Method::GET | &Method::HEAD, "/1m") => large,
        _ => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
            *response.status_mut() = StatusCode::NOT_FOUND;
            return response;
        }
    };
    let mut response = Response::new(Full::new(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

#[cfg(test)]
mod tests {
    use super::parse_args;

    #[test]
    fn parses_listen() {
        let args = ["--listen", "127.0.0.1:9999"].map(String::from).into_iter();
        assert_eq!(parse_args(args), Ok(([127, 0, 0, 1], 9999).into()));
        assert!(parse_args(["--listen"].map(String::from).into_iter()).is_err());
        assert!(parse_args(["-x"].map(String::from).into_iter()).is_err());
    }
}
