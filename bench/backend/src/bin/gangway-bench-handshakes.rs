//! The load of `bench/run.sh`'s handshake case: new TLS 1.3 connections as
//! fast as the proxy takes them. Each of `--connections` loops opens a TCP
//! connection, makes a full handshake (no session resumption), sends one
//! `GET` with `Connection: close`, reads the whole answer, closes, and
//! starts again, until `--seconds` have passed.
//!
//! Why not wrk, which does the same with `-H "Connection: close"`: wrk's
//! OpenSSL 3.0 client spends 330 to 380 us of CPU per connection on this
//! machine, more than the proxies spend on their side of the handshake, so
//! on its one core wrk was the ceiling and the figure compared wrk's runs
//! more than the proxies. And wrk resumes TLS sessions: its connections
//! after the first skip the server's signature, the costly part of a new
//! client's handshake. This tool makes every connection a full handshake
//! (X25519, the server's RSA-PSS signature checked, the certificate
//! pinned) with rustls' client, for less CPU than wrk's, so that the
//! proxy's core is the limit.
//!
//! One thread (pin it with `taskset`). Prints one `name value` line each:
//! `connections` (completed, each one handshake and one `2xx` answer),
//! `seconds`, `per_second`, `p50_ms` and `p99_ms` (from the start of the
//! TCP connect to the answer's last byte), `errors`, and `first_error`
//! when there was one.
//!
//! Usage: `gangway-bench-handshakes --connect IP:PORT --cert PEM
//! [--server-name localhost] [--host HOST] [--connections 64] [--seconds 3]`.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

/// A connection that takes longer than this counts as an error (wrk's
/// default timeout is 2 s; a handshake here takes milliseconds).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of an answer kept: the bench's answers are tens of bytes.
const MAX_ANSWER: usize = 64 * 1024;

struct Options {
    connect: SocketAddr,
    cert: String,
    server_name: String,
    host: String,
    connections: usize,
    seconds: f64,
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("gangway-bench-handshakes: {message}");
            eprintln!(
                "usage: gangway-bench-handshakes --connect IP:PORT --cert PEM \
                 [--server-name NAME] [--host HOST] [--connections N] [--seconds S]"
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gangway-bench-handshakes: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gangway-bench-handshakes: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut connect = None;
    let mut cert = None;
    let mut options = Options {
        connect: SocketAddr::from(([127, 0, 0, 1], 443)),
        cert: String::new(),
        server_name: "localhost".to_owned(),
        host: "localhost".to_owned(),
        connections: 64,
        seconds: 3.0,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--connect" => {
                let v = value()?;
                connect = Some(
                    v.parse()
                        .map_err(|e| format!("invalid --connect {v:?}: {e}"))?,
                );
            }
            "--cert" => cert = Some(value()?),
            "--server-name" => options.server_name = value()?,
            "--host" => options.host = value()?,
            "--connections" => {
                let v = value()?;
                options.connections = match v.parse() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("invalid --connections {v:?}: a count above 0")),
                };
            }
            "--seconds" => {
                let v = value()?;
                options.seconds = match v.parse::<f64>() {
                    Ok(s) if s > 0.0 && s.is_finite() => s,
                    _ => return Err(format!("invalid --seconds {v:?}: a duration above 0")),
                };
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    options.connect = connect.ok_or("--connect is required")?;
    options.cert = cert.ok_or("--cert is required")?;
    Ok(options)
}

/// What one loop of connections measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

async fn run(options: Options) -> Result<(), String> {
    let connector = TlsConnector::from(Arc::new(client_config(&options.cert)?));
    let server_name = ServerName::try_from(options.server_name.clone())
        .map_err(|e| format!("invalid --server-name {:?}: {e}", options.server_name))?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        options.host
    );
    let target = Arc::new(Target {
        addr: options.connect,
        connector,
        server_name,
        request: request.into_bytes(),
    });

    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(options.seconds);
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..options.connections {
        loops.spawn(connection_loop(target.clone(), deadline));
    }
    let mut all = Tally::default();
    while let Some(joined) = loops.join_next().await {
        let tally = joined.map_err(|e| format!("a connection loop failed: {e}"))?;
        all.latencies_us.extend(tally.latencies_us);
        all.errors += tally.errors;
        if all.first_error.is_none() {
            all.first_error = tally.first_error;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let count = all.latencies_us.len();
    println!("connections {count}");
    println!("seconds {seconds:.3}");
    println!("per_second {:.1}", count as f64 / seconds);
    println!("p50_ms {:.3}", percentile_ms(&all.latencies_us, 0.50));
    println!("p99_ms {:.3}", percentile_ms(&all.latencies_us, 0.99));
    println!("errors {}", all.errors);
    if let Some(error) = all.first_error {
        println!("first_error {error}");
    }
    Ok(())
}

fn percentile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let index = ((sorted_us.len() as f64 * q) as usize).min(sorted_us.len() - 1);
    f64::from(sorted_us[index]) / 1000.0
}

struct Target {
    addr: SocketAddr,
    connector: TlsConnector,
    server_name: ServerName<'static>,
    request: Vec<u8>,
}

async fn connection_loop(target: Arc<Target>, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    loop {
        let start = Instant::now();
        if start >= deadline {
            return tally;
        }
        let limit = deadline.min(start + CONNECTION_TIMEOUT);
        match tokio::time::timeout_at(limit, one_connection(&target)).await {
            Ok(Ok(())) => {
                let us = start.elapsed().as_micros();
                tally
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Ok(Err(error)) => tally.error(error),
            // Cut by the end of the run: neither done nor failed.
            Err(_) if limit == deadline => return tally,
            Err(_) => tally.error(format!("no answer within {CONNECTION_TIMEOUT:?}")),
        }
    }
}

impl Tally {
    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message);
        }
    }
}

/// One connection: connect, handshake, request, the whole answer.
async fn one_connection(target: &Target) -> Result<(), String> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let mut tls = target
        .connector
        .connect(target.server_name.clone(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(&target.request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        // A whole answer ends the connection: dropped without close_notify,
        // as wrk closes (the server has sent all it will).
        if let Some(result) = complete_answer(&answer) {
            return result;
        }
        if answer.len() > MAX_ANSWER {
            return Err(format!("answer over {MAX_ANSWER} bytes"));
        }
        match tls.read(&mut chunk).await {
            Ok(0) => return Err("the connection closed before the whole answer".to_owned()),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// `Some` once `bytes` hold a whole answer (head and `Content-Length`
/// body): `Ok` for a 2xx status, else the status line as the error.
fn complete_answer(bytes: &[u8]) -> Option<Result<(), String>> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let status_line = head.lines().next().unwrap_or_default();
    let length = head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let Some(length) = length else {
        return Some(Err(format!(
            "no Content-Length in the answer: {status_line}"
        )));
    };
    if bytes.len() < head_end + length {
        return None;
    }
    if status_line.starts_with("HTTP/1.1 2") || status_line.starts_with("HTTP/1.0 2") {
        Some(Ok(()))
    } else {
        Some(Err(format!("answer: {status_line}")))
    }
}

/// TLS 1.3 only, no session resumption (every connection a full
/// handshake), ALPN `http/1.1`, the one certificate in `cert_path` pinned.
fn client_config(cert_path: &str) -> Result<rustls::ClientConfig, String> {
    let pem = std::fs::read(cert_path).map_err(|e| format!("cannot read {cert_path}: {e}"))?;
    let cert = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .ok_or(format!("no certificate in {cert_path}"))?
        .map_err(|e| format!("cannot parse {cert_path}: {e}"))?;
    let provider = Arc::new(handshake_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS set-up: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { cert, provider }))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The handshake every peer is measured with: X25519 alone (what wrk's
/// OpenSSL 3.0 offers, and all that nginx 1.22 takes; not the post-quantum
/// hybrid, which only some peers have), and AES-128-GCM with SHA-256 first,
/// as browsers order the TLS 1.3 suites.
fn handshake_provider() -> CryptoProvider {
    use rustls::crypto::aws_lc_rs::{cipher_suite, default_provider, kx_group};
    CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![kx_group::X25519],
        ..default_provider()
    }
}

/// Accepts the one certificate given (the bench's is self-signed, so
/// pinned rather than chained), with the handshake's signature checked as
/// any client checks it.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate is not the one given by --cert".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::{complete_answer, parse_args, percentile_ms};

    #[test]
    fn an_answer_is_complete_with_its_whole_body() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(complete_answer(&head[..20]), None);
        let mut answer = head.to_vec();
        answer.extend_from_slice(b"hel");
        assert_eq!(complete_answer(&answer), None);
        answer.extend_from_slice(b"lo");
        assert_eq!(complete_answer(&answer), Some(Ok(())));
    }

    #[test]
    fn a_non_2xx_answer_or_one_without_length_is_an_error() {
        let answer = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            complete_answer(answer),
            Some(Err("answer: HTTP/1.1 404 Not Found".to_owned()))
        );
        let answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc";
        assert!(matches!(complete_answer(answer), Some(Err(e)) if e.contains("Content-Length")));
    }

    #[test]
    fn percentiles_come_from_the_sorted_latencies() {
        let sorted: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&sorted, 0.50), 51.0);
        assert_eq!(percentile_ms(&sorted, 0.99), 100.0);
        assert_eq!(percentile_ms(&[], 0.99), 0.0);
    }

    #[test]
    fn arguments_are_checked() {
        let args = |a: &[&str]| parse_args(a.iter().map(|s| s.to_string()));
        let options = args(&[
            "--connect",
            "127.0.0.1:8443",
            "--cert",
            "c.pem",
            "--seconds",
            "2",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(options.connect, ([127, 0, 0, 1], 8443).into());
        assert_eq!((options.connections, options.seconds), (64, 2.0));
        assert!(args(&["--cert", "c.pem"]).is_err());
        assert!(args(&["--connect", "x", "--cert", "c.pem"]).is_err());
        assert!(args(&[
            "--connect",
            "127.0.0.1:1",
            "--cert",
            "c",
            "--connections",
            "0"
        ])
        .is_err());
        assert!(args(&["--connect"]).is_err());
    }
}
