//! gRPC end to end with real tonic clients and servers
//! (`gangway-test-grpc`, see `gangway_testkit::grpc`): unary calls with
//! their headers and trailers (and a trailers-only `NOT_FOUND`), server
//! streaming whose messages arrive one by one, client streaming,
//! bidirectional streaming that waits for each echo before sending the next
//! message, and calls spread over two servers of one pool.
//!
//! The same checks run first against the server directly (h2c and TLS), so
//! they are known to hold for the server itself, then through gangway:
//! client to gangway over h2c (prior knowledge, `h2c = true` on a listener
//! or `GANGWAY_H2C=true`) and over TLS (h2 by ALPN); gangway to the backends
//! over h2c (`protocol = "h2c"`) and TLS (`protocol = "h2"` or `"https"`).
//!
//! The through-gangway tests are ignored until gangway speaks HTTP/2 to

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::*;
use gangway_testkit::grpc::{
    unix_micros_now, Code, EchoClient, GrpcServer, MetadataMap, Msg, TestCert, NAME_HEADER,
    NAME_TRAILER,
};
use gangway_testkit::{free_port, Gangway, GangwayBuilder, TempDir};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tokio::time::timeout;

/// The bound for one whole scenario (connecting and every call).
const SCENARIO: Duration = Duration::from_secs(60);

/// The bound for one message or answer to arrive.
const STEP: Duration = Duration::from_secs(10);

/// Runs `f` on a fresh single-threaded runtime, within [`SCENARIO`].
fn block_on<F: Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        timeout(SCENARIO, f)
            .await
            .unwrap_or_else(|_| panic!("the scenario did not finish within {SCENARIO:?}"))
    })
}

/// The text of metadata `key`, if present.
fn meta(map: &MetadataMap, key: &str) -> Option<String> {
    map.get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn connect_h2c(addr: &str) -> EchoClient {
    timeout(STEP, EchoClient::connect_h2c(addr))
        .await
        .unwrap_or_else(|_| panic!("connect h2c {addr}: timed out"))
        .unwrap_or_else(|e| panic!("connect h2c {addr}: {e:?}"))
}

async fn connect_tls(addr: &str, cert: &TestCert, name: &str) -> EchoClient {
    timeout(STEP, EchoClient::connect_tls(addr, &cert.ca_pem, name))
        .await
        .unwrap_or_else(|_| panic!("connect TLS {addr}: timed out"))
        .unwrap_or_else(|e| panic!("connect TLS {addr} as {name}: {e:?}"))
}

/// `Say`: the echo, the server's header and trailer; `missing` comes back
/// as `NOT_FOUND` with its message and metadata (a trailers-only answer).
async fn check_unary(c: &mut EchoClient, server: &str) {
    let r = timeout(STEP, c.say("hello"))
        .await
        .expect("Say within the step")
        .unwrap_or_else(|s| panic!("Say: {s:?}"));
    let md = r.metadata().clone();
    let msg = r.into_inner();
    assert_eq!(msg.text, "hello", "{msg:?}");
    assert_eq!(msg.from, server, "{msg:?}");
    assert_eq!(meta(&md, NAME_HEADER).as_deref(), Some(server), "{md:?}");
    // A trailer: tonic merges the trailers into a unary answer's metadata.
    assert_eq!(meta(&md, NAME_TRAILER).as_deref(), Some(server), "{md:?}");

    let status = timeout(STEP, c.say("missing"))
        .await
        .expect("Say missing within the step")
        .expect_err("Say missing must fail");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("missing"), "{status:?}");
    assert_eq!(
        meta(status.metadata(), NAME_HEADER).as_deref(),
        Some(server),
        "{status:?}"
    );
}

/// `Count`: each message arrives before the server could have sent the one
/// two places after it (they are 300 ms apart), so the stream was not
/// buffered on the way; then the trailers arrive.
async fn check_server_streaming(c: &mut EchoClient, server: &str) {
    const N: u32 = 5;
    const INTERVAL_MS: u32 = 300;
    let r = timeout(STEP, c.count(N, INTERVAL_MS))
        .await
        .expect("Count answered within the step")
        .unwrap_or_else(|s| panic!("Count: {s:?}"));
    assert_eq!(
        meta(r.metadata(), NAME_HEADER).as_deref(),
        Some(server),
        "{:?}",
        r.metadata()
    );
    let mut stream = r.into_inner();
    // (message, when it was received)
    let mut got: Vec<(Msg, u64)> = Vec::new();
    for _ in 0..=N {
        let next = timeout(STEP, stream.message())
            .await
            .unwrap_or_else(|_| panic!("no message within {STEP:?} after {got:?}"))
            .unwrap_or_else(|s| panic!("Count stream failed after {got:?}: {s:?}"));
        match next {
            Some(m) => got.push((m, unix_micros_now())),
            None => break,
        }
    }
    let seqs: Vec<u32> = got.iter().map(|(m, _)| m.seq).collect();
    assert_eq!(seqs, (0..N).collect::<Vec<_>>(), "{got:?}");
    assert!(got.iter().all(|(m, _)| m.from == server), "{got:?}");
    for i in 0..got.len() - 2 {
        let received = got[i].1;
        let later_sent = got[i + 2].0.sent_unix_micros;
        assert!(
            received < later_sent,
            "message {i} was received at {received} µs, after message {} was sent at {later_sent} µs: \
             the stream was held back on its way ({got:?})",
            i + 2
        );
    }
    let trailers = timeout(STEP, stream.trailers())
        .await
        .expect("trailers within the step")
        .unwrap_or_else(|s| panic!("Count trailers: {s:?}"))
        .expect("Count ends with trailers");
    assert_eq!(
        meta(&trailers, NAME_TRAILER).as_deref(),
        Some(server),
        "{trailers:?}"
    );
}

/// `Sum`: ten numbers, 20 ms apart, summed by the server.
async fn check_client_streaming(c: &mut EchoClient, server: &str) {
    let r = timeout(STEP, c.sum((1..=10).collect(), Duration::from_millis(20)))
        .await
        .expect("Sum within the step")
        .unwrap_or_else(|s| panic!("Sum: {s:?}"));
    let md = r.metadata().clone();
    assert_eq!(r.into_inner().value, 55);
    assert_eq!(meta(&md, NAME_HEADER).as_deref(), Some(server), "{md:?}");
    assert_eq!(meta(&md, NAME_TRAILER).as_deref(), Some(server), "{md:?}");
}

/// `Chat`: sends a message, waits for its echo, then sends the next: each
/// message must cross alone, in both directions.
async fn check_bidi(c: &mut EchoClient, server: &str) {
    const N: u32 = 5;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    // The first message goes before the call waits for response headers.
    tx.send(Msg::new("chat 0", 0)).await.unwrap();
    let r = timeout(STEP, c.chat(rx))
        .await
        .expect("Chat answered within the step")
        .unwrap_or_else(|s| panic!("Chat: {s:?}"));
    let mut echoes = r.into_inner();
    for i in 0..N {
        if i > 0 {
            tx.send(Msg::new(format!("chat {i}"), i)).await.unwrap();
        }
        let echo = timeout(STEP, echoes.message())
            .await
            .unwrap_or_else(|_| {
                panic!("no echo of message {i} within {STEP:?}: the message was held back")
            })
            .unwrap_or_else(|s| panic!("Chat stream failed at {i}: {s:?}"))
            .unwrap_or_else(|| panic!("Chat ended before the echo of {i}"));
        assert_eq!(echo.seq, i, "{echo:?}");
        assert_eq!(echo.text, format!("chat {i}"), "{echo:?}");
        assert_eq!(echo.from, server, "{echo:?}");
    }
    drop(tx);
    let end = timeout(STEP, echoes.message())
        .await
        .expect("Chat ends within the step once the client is done")
        .unwrap_or_else(|s| panic!("Chat end: {s:?}"));
    assert!(end.is_none(), "{end:?}");
    let trailers = timeout(STEP, echoes.trailers())
        .await
        .expect("trailers within the step")
        .unwrap_or_else(|s| panic!("Chat trailers: {s:?}"))
        .expect("Chat ends with trailers");
    assert_eq!(
        meta(&trailers, NAME_TRAILER).as_deref(),
        Some(server),
        "{trailers:?}"
    );
}

/// All four kinds of call, one after the other, on one connection.
async fn check_all(c: &mut EchoClient, server: &str) {
    check_unary(c, server).await;
    check_server_streaming(c, server).await;
    check_client_streaming(c, server).await;
    check_bidi(c, server).await;
}

// ---------------------------------------------------------------------
// The test server itself, without gangway.

#[test]
fn direct_h2c_all_four_methods() {
    let server = GrpcServer::start("direct-h2c");
    block_on(async {
        let mut c = connect_h2c(&server.target()).await;
        check_all(&mut c, "direct-h2c").await;
    });
    for rpc in ["rpc Say", "rpc Count", "rpc Sum", "rpc Chat"] {
        assert!(
            server.wait_for_line(|l| l.starts_with(rpc), WAIT).is_some(),
            "no {rpc:?} line:\n{}",
            server.output()
        );
    }
}

#[test]
fn direct_tls_all_four_methods() {
    let dir = TempDir::new();
    // Trusted directly, and through a CA.
    for (name, cert) in [
        ("grpc.test", TestCert::self_signed(&dir, "grpc.test")),
        ("grpc-ca.test", TestCert::issued(&dir, "grpc-ca.test")),
    ] {
        let server = GrpcServer::start_tls("direct-tls", &cert.cert, &cert.key);
        block_on(async {
            let mut c = connect_tls(&server.target(), &cert, name).await;
            check_all(&mut c, "direct-tls").await;

            // The certificate is verified: another name fails.
            let wrong = timeout(
                STEP,
                EchoClient::connect_tls(&server.target(), &cert.ca_pem, "other.test"),
            )
            .await
            .expect("the handshake ends within the step");
            assert!(wrong.is_err(), "a wrong server name was accepted");
        });
    }
}

// ---------------------------------------------------------------------
// Through gangway.

/// A pool `grpc` of `servers` with extra keys (`protocol = ...`), and one
/// route to it on every host.
fn pool_config(servers: &[&GrpcServer], keys: &str) -> String {
    let targets: Vec<String> = servers
        .iter()
        .map(|s| format!("\"{}\"", s.target()))
        .collect();
    format!(
        r#"
[[pools]]
name = "grpc"
targets = [{}]
{keys}

[[routes]]
name = "grpc"
pool = "grpc"
"#,
        targets.join(", ")
    )
}

/// An extra plain listener on `port` that accepts HTTP/2 with prior
/// knowledge.
fn h2c_listener(port: u16) -> String {
    format!("[[listeners]]\nname = \"grpc-h2c\"\nport = {port}\nh2c = true\n")
}

/// gangway with `config` as its file, HTTPS on with `cert` (h2 by ALPN)
/// and extra environment.
fn start_gangway(dir: &TempDir, config: &str, cert: &TestCert, env: &[(&str, &str)]) -> Gangway {
    let file = dir.join("gangway.toml");
    write_atomic(&file, config);
    let mut builder = GangwayBuilder::new(GANGWAY)
        .network(NO_NETWORK)
        .env("GANGWAY_CONFIG", file.to_string_lossy())
        .https(&cert.cert, &cert.key);
    for (k, v) in env {
        builder = builder.env(*k, *v);
    }
    start(builder)
}

/// Runs the four checks through gangway, with gangway's output on failure.
fn check_all_through(g: &Gangway, connect: impl Future<Output = EchoClient>, server: &str) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(async {
            let mut c = connect.await;
            check_all(&mut c, server).await;
        })
    }));
    if let Err(e) = outcome {
        eprintln!("gangway output:\n{}", g.output());
        std::panic::resume_unwind(e);
    }
}

#[test]
fn h2c_listener_to_h2c_backend() {
    let dir = TempDir::new();
    let gw_cert = TestCert::self_signed(&dir, "gangway.test");
    let server = GrpcServer::start("b-h2c");
    let port = free_port();
    let config = h2c_listener(port) + &pool_config(&[&server], "protocol = \"h2c\"");
    let g = start_gangway(&dir, &config, &gw_cert, &[]);
    let addr = format!("127.0.0.1:{port}");
    check_all_through(&g, connect_h2c(&addr), "b-h2c");
}

#[test]
fn default_http_listener_with_gangway_h2c_env() {
    let dir = TempDir::new();
    let gw_cert = TestCert::self_signed(&dir, "gangway.test");
    let server = GrpcServer::start("b-env");
    let config = pool_config(&[&server], "protocol = \"h2c\"");
    let g = start_gangway(&dir, &config, &gw_cert, &[("GANGWAY_H2C", "true")]);
    let addr = format!("127.0.0.1:{}", g.http_port);
    check_all_through(&g, connect_h2c(&addr), "b-env");
}

#[test]
fn tls_listener_to_h2_backend_with_ca_and_server_name() {
    let dir = TempDir::new();
    let gw_cert = TestCert::self_signed(&dir, "gangway.test");
    let backend_cert = TestCert::issued(&dir, "grpc-backend.test");
    let server = GrpcServer::start_tls("b-h2", &backend_cert.cert, &backend_cert.key);
    let keys = format!(
        "protocol = \"h2\"\ntls_ca = \"{}\"\ntls_server_name = \"grpc-backend.test\"",
        backend_cert.ca.display()
    );
    let config = pool_config(&[&server], &keys);
    let g = start_gangway(&dir, &config, &gw_cert, &[]);
    let addr = format!("127.0.0.1:{}", g.https_port);
    check_all_through(&g, connect_tls(&addr, &gw_cert, "gangway.test"), "b-h2");
}

#[test]
fn h2c_listener_to_https_backend_without_verification() {
    let dir = TempDir::new();
    let gw_cert = TestCert::self_signed(&dir, "gangway.test");
    // A name that matches nothing: only an unverified connection works.
    let backend_cert = TestCert::self_signed(&dir, "unrelated.test");
    let server = GrpcServer::start_tls("b-https", &backend_cert.cert, &backend_cert.key);
    let port = free_port();
    let config =
        h2c_listener(port) + &pool_config(&[&server], "protocol = \"https\"\ntls_verify = false");
    let g = start_gangway(&dir, &config, &gw_cert, &[]);
    let addr = format!("127.0.0.1:{port}");
    check_all_through(&g, connect_h2c(&addr), "b-https");
}

#[test]
fn tls_listener_to_h2c_backend() {
    let dir = TempDir::new();
    let gw_cert = TestCert::self_signed(&dir, "gangway.test");
    let server = GrpcServer::start("b-mixed");
    let config = pool_config(&[&server], "protocol = \"h2c\"");
    let g = start_gangway(&dir, &config, &gw_cert, &[]);
    let addr = format!("127.0.0.1:{}", g.https_port);
    check_all_through(&g, connect_tls(&addr, &gw_cert, "gangway.test"), "b-mixed");
}

#[test]
fn tls_backend_with_an_untrusted_certificate_is_refused() {
    let dir = TempDir::new();
    let gw_cert = TestCert::self_signed(&dir, "gangway.test");
    let backend_cert = TestCert::issued(&dir, "grpc-backend.test");
    let server = GrpcServer::start_tls("b-untrusted", &backend_cert.cert, &backend_cert.key);
    let port = free_port();
    // Verification is on by default and nothing trusts the certificate.
    let config = h2c_listener(port) + &pool_config(&[&server], "protocol = \"h2\"");
    let g = start_gangway(&dir, &config, &gw_cert, &[]);
    let addr = format!("127.0.0.1:{port}");
    let status = block_on(async {
        let mut c = connect_h2c(&addr).await;
        timeout(STEP, c.say("hello"))
            .await
            .expect("an answer within the step")
            .expect_err("an untrusted backend must not be used")
    });
    assert_ne!(status.code(), Code::Ok, "{status:?}");
    assert!(
        !server.lines().iter().any(|l| l.starts_with("rpc ")),
        "the call reached the untrusted backend:\n{}\ngangway output:\n{}",
        server.output(),
        g.output()
    );
}

#[test]
fn calls_spread_over_two_servers_of_one_pool() {
    const CALLS: usize = 20;
    let dir = TempDir::new();
    let gw_cert = TestCert::self_signed(&dir, "gangway.test");
    let a = GrpcServer::start("spread-a");
    let b = GrpcServer::start("spread-b");
    let port = free_port();
    let config = h2c_listener(port) + &pool_config(&[&a, &b], "protocol = \"h2c\"");
    let g = start_gangway(&dir, &config, &gw_cert, &[]);
    let addr = format!("127.0.0.1:{port}");
    // One client connection to gangway: the calls are spread per call, not
    // per connection.
    let by_server: HashMap<String, usize> = block_on(async {
        let mut c = connect_h2c(&addr).await;
        let mut by_server = HashMap::new();
        for i in 0..CALLS {
            let r = timeout(STEP, c.say(&format!("call {i}")))
                .await
                .expect("Say within the step")
                .unwrap_or_else(|s| panic!("Say {i}: {s:?}\n{}", g.output()));
            *by_server.entry(r.into_inner().from).or_insert(0) += 1;
        }
        by_server
    });
    assert_eq!(by_server.values().sum::<usize>(), CALLS);
    for name in ["spread-a", "spread-b"] {
        let n = by_server.get(name).copied().unwrap_or(0);
        assert!(
            n >= CALLS / 4,
            "{name} got {n} of {CALLS} calls: {by_server:?}\n{}",
            g.output()
        );
    }
    // Streaming calls are spread too: each goes to one server whole.
    let streams: Vec<Vec<String>> = block_on(async {
        let mut c = connect_h2c(&addr).await;
        let mut streams = Vec::new();
        for i in 0..4 {
            let mut stream = timeout(STEP, c.count(3, 0))
                .await
                .expect("Count within the step")
                .unwrap_or_else(|s| panic!("Count {i}: {s:?}"))
                .into_inner();
            let mut from = Vec::new();
            for _ in 0..4 {
                match timeout(STEP, stream.message()).await.unwrap().unwrap() {
                    Some(m) => from.push(m.from),
                    None => break,
                }
            }
            streams.push(from);
        }
        streams
    });
    for from in &streams {
        assert_eq!(from.len(), 3, "{streams:?}");
        assert!(from.iter().all(|f| *f == from[0]), "{streams:?}");
    }
    for name in ["spread-a", "spread-b"] {
        assert!(
            streams.iter().any(|from| from[0] == name),
            "no stream went to {name}: {streams:?}\n{}",
            g.output()
        );
    }
}

/// A hundred server-streaming calls at once on one client connection (its
/// streams all run in that connection's task in gangway): every message of
/// every call arrives; and a stop (SIGTERM) while they are all in flight
/// lets each finish with its trailers before gangway exits.
#[test]
fn concurrent_calls_on_one_connection_finish_through_a_stop() {
    const CALLS: u32 = 100;
    const MESSAGES: u32 = 4;
    const INTERVAL_MS: u32 = 250;
    let dir = TempDir::new();
    let gw_cert = TestCert::self_signed(&dir, "gangway.test");
    let server = GrpcServer::start("many");
    let port = free_port();
    let config = h2c_listener(port) + &pool_config(&[&server], "protocol = \"h2c\"");
    let mut g = start_gangway(&dir, &config, &gw_cert, &[]);
    let addr = format!("127.0.0.1:{port}");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(async {
            let c = connect_h2c(&addr).await;
            let (first_tx, mut first_rx) = tokio::sync::mpsc::channel::<()>(CALLS as usize);
            let calls: Vec<_> = (0..CALLS)
                .map(|i| {
                    let mut c = c.clone();
                    let first = first_tx.clone();
                    tokio::spawn(async move {
                        let mut stream = timeout(STEP, c.count(MESSAGES, INTERVAL_MS))
                            .await
                            .unwrap_or_else(|_| panic!("call {i}: no answer within {STEP:?}"))
                            .unwrap_or_else(|s| panic!("call {i}: {s:?}"))
                            .into_inner();
                        let mut seqs = Vec::new();
                        while let Some(m) = timeout(STEP, stream.message())
                            .await
                            .unwrap_or_else(|_| panic!("call {i}: stalled after {seqs:?}"))
                            .unwrap_or_else(|s| panic!("call {i}: failed after {seqs:?}: {s:?}"))
                        {
                            if seqs.is_empty() {
                                let _ = first.send(()).await;
                            }
                            seqs.push(m.seq);
                        }
                        let trailers = timeout(STEP, stream.trailers())
                            .await
                            .unwrap_or_else(|_| panic!("call {i}: no trailers within {STEP:?}"))
                            .unwrap_or_else(|s| panic!("call {i}: trailers: {s:?}"));
                        assert!(trailers.is_some(), "call {i}: no trailers");
                        seqs
                    })
                })
                .collect();
            drop(first_tx);
            for _ in 0..CALLS {
                timeout(STEP, first_rx.recv())
                    .await
                    .expect("every call's first message within the step");
            }
            // All are streaming now, with messages still to come.
            g.terminate();
            for (i, call) in calls.into_iter().enumerate() {
                let seqs = call.await.unwrap_or_else(|e| panic!("call {i}: {e}"));
                assert_eq!(seqs, (0..MESSAGES).collect::<Vec<_>>(), "call {i}");
            }
        })
    }));
    if let Err(e) = outcome {
        eprintln!("gangway output:\n{}", g.output());
        std::panic::resume_unwind(e);
    }
    let status = g.wait_exit(STEP);
    assert!(
        status.is_some_and(|s| s.success()),
        "gangway did not stop cleanly after the calls finished: {status:?}\n{}",
        g.output()
    );
}
