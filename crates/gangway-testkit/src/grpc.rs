//! gRPC for tests: the messages and a client of the `test.Echo` service that
//! `gangway-test-grpc` serves, and [`GrpcServer`], which runs that server
//! as a child process.
//!
//! There is no `.proto` file, no `protoc` and no build script: the messages
//! are hand-written prost messages, and the client is `tonic::client::Grpc`
//! with tonic-prost's codec, as tonic-build would generate them. In proto
//! terms:
//!
//! ```proto
//! syntax = "proto3";
//! package test;
//! service Echo {
//!   rpc Say(Msg) returns (Msg);              // echo, with the server's name
//!   rpc Count(CountReq) returns (stream Msg); // n messages, interval_ms apart
//!   rpc Sum(stream Num) returns (Num);       // the sum of the numbers
//!   rpc Chat(stream Msg) returns (stream Msg); // echo each message
//! }
//! message Msg { string text = 1; string from = 2; uint32 seq = 3; uint64 sent_unix_micros = 4; }
//! message CountReq { uint32 n = 1; uint32 interval_ms = 2; }
//! message Num { int64 value = 1; }
//! ```
//!
//! Every response of the server carries the header `x-grpc-name: <name>`;
//! every response that ends with trailers (not a trailers-only error) carries
//! the trailer `x-grpc-trailer: <name>`. `Say` with the text `missing`
//! answers `NOT_FOUND` (trailers-only).

use crate::process::Gangway;
use crate::util::TempDir;
use futures_util::Stream;
use http::uri::PathAndQuery;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_prost::ProstCodec;

pub use tonic;
pub use tonic::metadata::MetadataMap;
pub use tonic::{Code, Response, Status, Streaming};

/// `/test.Echo/Say`: unary.
pub const SAY: &str = "/test.Echo/Say";
/// `/test.Echo/Count`: server streaming.
pub const COUNT: &str = "/test.Echo/Count";
/// `/test.Echo/Sum`: client streaming.
pub const SUM: &str = "/test.Echo/Sum";
/// `/test.Echo/Chat`: bidirectional streaming.
pub const CHAT: &str = "/test.Echo/Chat";

/// The header every response of the server carries (its name).
pub const NAME_HEADER: &str = "x-grpc-name";
/// The trailer every response that ends with trailers carries (its name).
pub const NAME_TRAILER: &str = "x-grpc-trailer";

/// A text message; the server fills in `from` (its name) and
/// `sent_unix_micros` (when it sent the message).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(string, tag = "2")]
    pub from: String,
    #[prost(uint32, tag = "3")]
    pub seq: u32,
    #[prost(uint64, tag = "4")]
    pub sent_unix_micros: u64,
}

impl Msg {
    /// A message with this text and sequence number.
    pub fn new(text: impl Into<String>, seq: u32) -> Msg {
        Msg {
            text: text.into(),
            seq,
            ..Msg::default()
        }
    }
}

/// `Count`'s request: `n` messages, `interval_ms` apart.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CountReq {
    #[prost(uint32, tag = "1")]
    pub n: u32,
    #[prost(uint32, tag = "2")]
    pub interval_ms: u32,
}

/// A number, for `Sum`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Num {
    #[prost(int64, tag = "1")]
    pub value: i64,
}

/// Microseconds since the Unix epoch, by the system clock (the clock the
/// server stamps `sent_unix_micros` with, on the same machine).
pub fn unix_micros_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A stream of what arrives on `rx`, until every sender is dropped.
pub fn receiver_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item, rx))
    })
}

/// A client of `test.Echo` over one HTTP/2 connection (a tonic channel).
#[derive(Debug, Clone)]
pub struct EchoClient {
    inner: tonic::client::Grpc<Channel>,
}

impl EchoClient {
    /// Connects to `addr` (`host:port`) in cleartext HTTP/2 with prior
    /// knowledge (h2c).
    pub async fn connect_h2c(addr: &str) -> Result<EchoClient, tonic::transport::Error> {
        EchoClient::connect(Endpoint::from_shared(format!("http://{addr}"))?).await
    }

    /// Connects to `addr` over TLS, trusting `ca_pem` (a CA or the server's
    /// self-signed certificate) and verifying `server_name` (also the SNI).
    /// HTTP/2 must be chosen by ALPN, or the connection fails.
    pub async fn connect_tls(
        addr: &str,
        ca_pem: &[u8],
        server_name: &str,
    ) -> Result<EchoClient, tonic::transport::Error> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .domain_name(server_name)
            .timeout(Duration::from_secs(10));
        let endpoint = Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls)?;
        EchoClient::connect(endpoint).await
    }

    async fn connect(endpoint: Endpoint) -> Result<EchoClient, tonic::transport::Error> {
        let channel = endpoint
            .connect_timeout(Duration::from_secs(10))
            // Until the response headers of each call.
            .timeout(Duration::from_secs(30))
            .connect()
            .await?;
        Ok(EchoClient {
            inner: tonic::client::Grpc::new(channel),
        })
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("the channel is not ready: {e}")))
    }

    /// `Say`: the echo, with the server's name in `from`.
    pub async fn say(&mut self, text: &str) -> Result<Response<Msg>, Status> {
        self.ready().await?;
        self.inner
            .unary(
                tonic::Request::new(Msg::new(text, 0)),
                PathAndQuery::from_static(SAY),
                ProstCodec::default(),
            )
            .await
    }

    /// `Count`: `n` messages, `interval_ms` apart.
    pub async fn count(
        &mut self,
        n: u32,
        interval_ms: u32,
    ) -> Result<Response<Streaming<Msg>>, Status> {
        self.ready().await?;
        self.inner
            .server_streaming(
                tonic::Request::new(CountReq { n, interval_ms }),
                PathAndQuery::from_static(COUNT),
                ProstCodec::default(),
            )
            .await
    }

    /// `Sum`: sends `values`, `pause` apart, and returns their sum.
    pub async fn sum(
        &mut self,
        values: Vec<i64>,
        pause: Duration,
    ) -> Result<Response<Num>, Status> {
        self.ready().await?;
        let nums = futures_util::stream::unfold(values.into_iter(), move |mut rest| async move {
            let value = rest.next()?;
            tokio::time::sleep(pause).await;
            Some((Num { value }, rest))
        });
        self.inner
            .client_streaming(
                tonic::Request::new(nums),
                PathAndQuery::from_static(SUM),
                ProstCodec::default(),
            )
            .await
    }

    /// `Chat`: sends what arrives on `outbound` (the call ends when every
    /// sender is dropped) and returns the stream of echoes. It waits for the
    /// response headers, so send the first message before calling this.
    pub async fn chat(
        &mut self,
        outbound: tokio::sync::mpsc::Receiver<Msg>,
    ) -> Result<Response<Streaming<Msg>>, Status> {
        self.ready().await?;
        self.inner
            .streaming(
                tonic::Request::new(receiver_stream(outbound)),
                PathAndQuery::from_static(CHAT),
                ProstCodec::default(),
            )
            .await
    }
}

/// Where `gangway-test-grpc` is (built by `cargo build --workspace --bins`).
pub fn grpc_binary() -> PathBuf {
    crate::image::workspace_binary("gangway-test-grpc")
}

/// A `gangway-test-grpc` process on `127.0.0.1` and a port it chose itself;
/// killed and reaped when dropped (also when the test panics).
#[derive(Debug)]
pub struct GrpcServer {
    process: Gangway,
    /// The port it listens on.
    pub port: u16,
    /// Its name (`GRPC_NAME`), which it puts in every answer.
    pub name: String,
}

impl GrpcServer {
    /// Starts a server named `name` in cleartext HTTP/2 (h2c).
    pub fn start(name: &str) -> GrpcServer {
        GrpcServer::spawn(name, &[])
    }

    /// Starts a server named `name` over TLS (h2 by ALPN) with this PEM
    /// certificate chain and key.
    pub fn start_tls(name: &str, cert: &Path, key: &Path) -> GrpcServer {
        let cert = cert.to_string_lossy().into_owned();
        let key = key.to_string_lossy().into_owned();
        GrpcServer::spawn(name, &[("GRPC_TLS_CERT", cert), ("GRPC_TLS_KEY", key)])
    }

    fn spawn(name: &str, env: &[(&str, String)]) -> GrpcServer {
        let mut vars = vec![("GRPC_NAME", name.to_string()), ("PORT", "0".to_string())];
        vars.extend(env.iter().cloned());
        let mut process = Gangway::spawn(grpc_binary(), &vars);
        let line = crate::util::wait_until_some(Duration::from_secs(10), || {
            if let Some(l) = process
                .lines()
                .into_iter()
                .find(|l| l.starts_with("listening on "))
            {
                return Some(Some(l));
            }
            process.try_exit().map(|_| None)
        })
        .flatten();
        let Some(line) = line else {
            let output = process.output();
            process.kill();
            panic!("gangway-test-grpc {name} did not start:\n{output}");
        };
        let port = parse_listening_port(&line)
            .unwrap_or_else(|| panic!("gangway-test-grpc {name}: no port in {line:?}"));
        GrpcServer {
            process,
            port,
            name: name.to_string(),
        }
    }

    /// `127.0.0.1:<port>`: a pool target, or the address to connect to.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its stdout and stderr so far (it logs one line per call).
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// Its stdout lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.process.lines()
    }

    /// Waits up to `timeout` for a stdout line that `pred` accepts (the
    /// server writes a call's line as the call ends, which may be after
    /// the client has seen its end).
    pub fn wait_for_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        self.process.wait_for_line(pred, timeout)
    }
}

/// The port in `listening on 127.0.0.1:PORT (...)`.
fn parse_listening_port(line: &str) -> Option<u16> {
    let addr = line
        .strip_prefix("listening on ")?
        .split_whitespace()
        .next()?;
    addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
}

/// A certificate and key for a TLS server named `name`, and the PEM that
/// clients trust for it (`ca`, `ca_pem`), made with the real `openssl`,
/// valid one day. rustls verifies them as a client of the real world would:
/// the server certificate is an end entity (`CA:FALSE`, with the name as a
/// DNS SAN and `serverAuth`).
#[derive(Debug)]
pub struct TestCert {
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// What a client trusts: the certificate itself, or its CA.
    pub ca: PathBuf,
    /// The text of `ca`.
    pub ca_pem: Vec<u8>,
}

impl TestCert {
    /// A self-signed certificate for `name`: clients trust it directly.
    pub fn self_signed(dir: &TempDir, name: &str) -> TestCert {
        let cert = dir.join(format!("{name}.cert.pem"));
        let key = dir.join(format!("{name}.key.pem"));
        self_signed_ec(
            &format!("/CN={name}"),
            &[
                &format!("subjectAltName=DNS:{name}"),
                "basicConstraints=critical,CA:FALSE",
                "extendedKeyUsage=serverAuth",
            ],
            &key,
            &cert,
        );
        TestCert::with_ca(cert.clone(), key, cert)
    }

    /// A certificate for `name` issued by a fresh CA of its own: clients
    /// trust the CA.
    pub fn issued(dir: &TempDir, name: &str) -> TestCert {
        let ca = dir.join(format!("{name}.ca.pem"));
        let ca_key = dir.join(format!("{name}.ca-key.pem"));
        self_signed_ec(
            &format!("/CN=gangway test CA for {name}"),
            &[
                "basicConstraints=critical,CA:TRUE",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            &ca_key,
            &ca,
        );
        let cert = dir.join(format!("{name}.cert.pem"));
        let key = dir.join(format!("{name}.key.pem"));
        let csr = dir.join(format!("{name}.csr"));
        let subject = format!("/CN={name}");
        let (key_path, csr_path) = (path_str(&key), path_str(&csr));
        let mut args = vec!["req", "-new"];
        args.extend(NEW_P256_KEY);
        args.extend(["-subj", &subject, "-keyout", &key_path, "-out", &csr_path]);
        openssl(&args);
        let ext = dir.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{name}\n"
            ),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", ext.display()));
        openssl(&[
            "x509",
            "-req",
            "-in",
            &path_str(&csr),
            "-CA",
            &path_str(&ca),
            "-CAkey",
            &path_str(&ca_key),
            "-set_serial",
            &format!("{}", crate::util::random_u32()),
            "-days",
            "1",
            "-extfile",
            &path_str(&ext),
            "-out",
            &path_str(&cert),
        ]);
        TestCert::with_ca(cert, key, ca)
    }

    fn with_ca(cert: PathBuf, key: PathBuf, ca: PathBuf) -> TestCert {
        let ca_pem = std::fs::read(&ca).unwrap_or_else(|e| panic!("read {}: {e}", ca.display()));
        TestCert {
            cert,
            key,
            ca,
            ca_pem,
        }
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// openssl's arguments for a fresh, unencrypted P-256 key.
const NEW_P256_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A self-signed certificate for a fresh P-256 key, valid for a day, with
/// `subject` and `extensions` (each one `-addext` value).
fn self_signed_ec(subject: &str, extensions: &[&str], key: &Path, cert: &Path) {
    let (key, cert) = (path_str(key), path_str(cert));
    let mut args = vec!["req", "-x509"];
    args.extend(NEW_P256_KEY);
    args.extend(["-subj", subject]);
    for extension in extensions {
        args.extend(["-addext", extension]);
    }
    args.extend(["-days", "1", "-keyout", &key, "-out", &cert]);
    openssl(&args);
}

fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn parses_the_listening_line() {
        assert_eq!(
            parse_listening_port("listening on 127.0.0.1:4321 (h2c)"),
            Some(4321)
        );
        assert_eq!(parse_listening_port("listening on 127.0.0.1:80"), Some(80));
        assert_eq!(parse_listening_port("listening on nowhere"), None);
        assert_eq!(parse_listening_port("started"), None);
    }

    #[test]
    fn messages_encode_as_protobuf() {
        // Field 1 (text), length 2, "hi"; field 3 (seq) varint 7.
        let bytes = Msg::new("hi", 7).encode_to_vec();
        assert_eq!(bytes, [0x0a, 2, b'h', b'i', 0x18, 7]);
        assert_eq!(Msg::decode(bytes.as_slice()).unwrap(), Msg::new("hi", 7));
        let n = Num { value: -1 }.encode_to_vec();
        assert_eq!(Num::decode(n.as_slice()).unwrap().value, -1);
    }
}
