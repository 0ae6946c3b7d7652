//! `gangway-test-grpc`: a gRPC server for gangway's tests, serving the
//! service `test.Echo` (see `gangway_testkit::grpc` for its messages):
//!
//! - `Say(Msg) -> Msg`: echoes the text with the server's name in `from`;
//!   the text `missing` is answered with `NOT_FOUND` (a trailers-only
//!   response).
//! - `Count(CountReq) -> stream Msg`: `n` messages, `interval_ms` apart,
//!   each stamped with the time it was sent.
//! - `Sum(stream Num) -> Num`: the sum of the numbers received.
//! - `Chat(stream Msg) -> stream Msg`: echoes each message as it arrives.
//!
//! Every response carries the header `x-grpc-name: <name>`, and every
//! response that ends with trailers the trailer `x-grpc-trailer: <name>`.
//!
//! - Listens on `127.0.0.1:$PORT` (default 0: a port the system chooses)
//!   and prints `listening on 127.0.0.1:<port> (h2c|tls)` on stdout.
//! - Its name is `$GRPC_NAME` (default `grpc`).
//! - Cleartext HTTP/2 with prior knowledge (h2c), or TLS with ALPN `h2`
//!   when `GRPC_TLS_CERT` and `GRPC_TLS_KEY` name PEM files.
//! - Prints one line per call (`rpc <Method> ...`).
//! - Exits promptly on SIGTERM and SIGINT.
//!
//! Written without protoc or a build script: the service glue below is what
//! tonic-build would generate, by hand.

use gangway_testkit::grpc::{
    unix_micros_now, CountReq, Msg, Num, CHAT, COUNT, NAME_HEADER, NAME_TRAILER, SAY, SUM,
};
use http::{HeaderName, HeaderValue};
use http_body::{Body as HttpBody, Frame};
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tonic::body::Body;
use tonic::metadata::AsciiMetadataValue;
use tonic::server::{
    ClientStreamingService, ServerStreamingService, StreamingService, UnaryService,
};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Status>> + Send + 'static>>;
type BoxStream<T> = Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The most messages one `Count` sends, and one `Sum` or `Chat` reads.
const MAX_MESSAGES: u32 = 100_000;
/// The longest pause `Count` makes between two messages.
const MAX_INTERVAL_MS: u32 = 60_000;

struct Config {
    port: u16,
    name: String,
    tls: Option<(Vec<u8>, Vec<u8>)>,
}

fn config_from_env() -> Result<Config, String> {
    let port = match std::env::var("PORT") {
        Ok(v) => v
            .parse::<u16>()
            .map_err(|_| format!("PORT={v:?} is not a port number (0-65535)"))?,
        Err(_) => 0,
    };
    let name = std::env::var("GRPC_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "grpc".to_string());
    let read =
        |var: &str, path: String| std::fs::read(&path).map_err(|e| format!("{var}={path:?}: {e}"));
    let tls = match (
        std::env::var("GRPC_TLS_CERT"),
        std::env::var("GRPC_TLS_KEY"),
    ) {
        (Ok(cert), Ok(key)) => Some((read("GRPC_TLS_CERT", cert)?, read("GRPC_TLS_KEY", key)?)),
        (Err(_), Err(_)) => None,
        _ => return Err("GRPC_TLS_CERT and GRPC_TLS_KEY go together".to_string()),
    };
    Ok(Config { port, name, tls })
}

fn main() {
    if let Some(arg) = std::env::args().nth(1) {
        eprintln!("gangway-test-grpc: unknown argument {arg:?} (it takes none; see PORT, GRPC_NAME, GRPC_TLS_CERT, GRPC_TLS_KEY)");
        std::process::exit(2);
    }
    let config = match config_from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gangway-test-grpc: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gangway-test-grpc: cannot start runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(serve(config)) {
        eprintln!("gangway-test-grpc: {e}");
        std::process::exit(1);
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let echo = Echo::new(&config.name)?;
    let mut builder = Server::builder();
    let mode = match config.tls {
        Some((cert, key)) => {
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
                .map_err(|e| format!("TLS configuration: {e}"))?;
            "tls"
        }
        None => "h2c",
    };
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, config.port))).await?;
    let addr = listener.local_addr()?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr} ({mode})")?;
        out.flush()?;
    }
    tokio::select! {
        served = builder.serve_with_incoming(echo, incoming) => served?,
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// The `test.Echo` service: routes each call by its path.
#[derive(Clone)]
struct Echo {
    name: String,
    header: AsciiMetadataValue,
    trailer: HeaderValue,
}

impl Echo {
    fn new(name: &str) -> Result<Echo, String> {
        let invalid = || format!("GRPC_NAME={name:?} is not a valid header value");
        Ok(Echo {
            name: name.to_string(),
            header: name.parse().map_err(|_| invalid())?,
            trailer: HeaderValue::from_str(name).map_err(|_| invalid())?,
        })
    }

    fn msg(&self, text: String, seq: u32) -> Msg {
        Msg {
            text,
            from: self.name.clone(),
            seq,
            sent_unix_micros: unix_micros_now(),
        }
    }

    fn respond<T>(&self, message: T) -> Response<T> {
        let mut response = Response::new(message);
        response
            .metadata_mut()
            .insert(NAME_HEADER, self.header.clone());
        response
    }
}

impl tower_service::Service<http::Request<Body>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let echo = self.clone();
        let trailer = self.trailer.clone();
        let path = req.uri().path().to_string();
        Box::pin(async move {
            let response = match path.as_str() {
                SAY => grpc().unary(Say(echo), req).await,
                COUNT => grpc().server_streaming(Count(echo), req).await,
                SUM => grpc().client_streaming(Sum(echo), req).await,
                CHAT => grpc().streaming(Chat(echo), req).await,
                _ => {
                    println!("rpc unknown path {path:?}");
                    Status::unimplemented(format!("no method {path}")).into_http()
                }
            };
            Ok(response.map(|body| {
                Body::new(AddTrailer {
                    inner: body,
                    value: trailer,
                })
            }))
        })
    }
}

/// The server side of one call, with the prost codec for its messages.
fn grpc<Out, In>() -> tonic::server::Grpc<ProstCodec<Out, In>>
where
    Out: prost::Message + Send + 'static,
    In: prost::Message + Default + Send + 'static,
{
    tonic::server::Grpc::new(ProstCodec::default())
}

struct Say(Echo);

impl UnaryService<Msg> for Say {
    type Response = Msg;
    type Future = BoxFuture<Response<Msg>>;

    fn call(&mut self, request: Request<Msg>) -> Self::Future {
        let echo = self.0.clone();
        Box::pin(async move {
            let msg = request.into_inner();
            println!("rpc Say text={:?}", msg.text);
            if msg.text == "missing" {
                let mut status = Status::not_found("no such text: \"missing\"");
                status
                    .metadata_mut()
                    .insert(NAME_HEADER, echo.header.clone());
                return Err(status);
            }
            Ok(echo.respond(echo.msg(msg.text, msg.seq)))
        })
    }
}

struct Count(Echo);

impl ServerStreamingService<CountReq> for Count {
    type Response = Msg;
    type ResponseStream = BoxStream<Msg>;
    type Future = BoxFuture<Response<BoxStream<Msg>>>;

    fn call(&mut self, request: Request<CountReq>) -> Self::Future {
        let echo = self.0.clone();
        Box::pin(async move {
            let req = request.into_inner();
            println!("rpc Count n={} interval_ms={}", req.n, req.interval_ms);
            if req.n > MAX_MESSAGES || req.interval_ms > MAX_INTERVAL_MS {
                return Err(Status::invalid_argument(format!(
                    "n is at most {MAX_MESSAGES} and interval_ms at most {MAX_INTERVAL_MS}"
                )));
            }
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let producer = echo.clone();
            tokio::spawn(async move {
                for i in 0..req.n {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(req.interval_ms.into())).await;
                    }
                    let msg = producer.msg(format!("count {i}"), i);
                    if tx.send(Ok(msg)).await.is_err() {
                        println!("rpc Count: the client went away after {i} messages");
                        return;
                    }
                }
            });
            let stream: BoxStream<Msg> = Box::pin(gangway_testkit::grpc::receiver_stream(rx));
            Ok(echo.respond(stream))
        })
    }
}

struct Sum(Echo);

impl ClientStreamingService<Num> for Sum {
    type Response = Num;
    type Future = BoxFuture<Response<Num>>;

    fn call(&mut self, request: Request<Streaming<Num>>) -> Self::Future {
        let echo = self.0.clone();
        Box::pin(async move {
            let mut nums = request.into_inner();
            let mut sum: i64 = 0;
            let mut count: u32 = 0;
            while let Some(num) = nums.message().await? {
                count += 1;
                if count > MAX_MESSAGES {
                    return Err(Status::resource_exhausted(format!(
                        "more than {MAX_MESSAGES} numbers"
                    )));
                }
                sum = sum.wrapping_add(num.value);
            }
            println!("rpc Sum count={count} sum={sum}");
            Ok(echo.respond(Num { value: sum }))
        })
    }
}

struct Chat(Echo);

impl StreamingService<Msg> for Chat {
    type Response = Msg;
    type ResponseStream = BoxStream<Msg>;
    type Future = BoxFuture<Response<BoxStream<Msg>>>;

    fn call(&mut self, request: Request<Streaming<Msg>>) -> Self::Future {
        let echo = self.0.clone();
        Box::pin(async move {
            println!("rpc Chat");
            let inbound = request.into_inner();
            let producer = echo.clone();
            // State: the inbound stream (None after an error) and how many
            // messages were echoed.
            let echoes =
                futures_util::stream::unfold((Some(inbound), 0u32), move |(inbound, n)| {
                    let producer = producer.clone();
                    async move {
                        let mut inbound = inbound?;
                        if n >= MAX_MESSAGES {
                            let status = Status::resource_exhausted(format!(
                                "more than {MAX_MESSAGES} messages"
                            ));
                            return Some((Err(status), (None, n)));
                        }
                        match inbound.message().await {
                            Ok(Some(msg)) => {
                                println!("rpc Chat message seq={}", msg.seq);
                                let reply = producer.msg(msg.text, msg.seq);
                                Some((Ok(reply), (Some(inbound), n + 1)))
                            }
                            Ok(None) => None,
                            Err(status) => Some((Err(status), (None, n))),
                        }
                    }
                });
            let stream: BoxStream<Msg> = Box::pin(echoes);
            Ok(echo.respond(stream))
        })
    }
}

/// A response body that adds `x-grpc-trailer` to its trailers.
struct AddTrailer {
    inner: Body,
    value: HeaderValue,
}

impl HttpBody for AddTrailer {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, Status>>> {
        let value = self.value.clone();
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_trailers() {
                Ok(mut trailers) => {
                    trailers.insert(HeaderName::from_static(NAME_TRAILER), value);
                    Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                Err(data) => Poll::Ready(Some(Ok(data))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
