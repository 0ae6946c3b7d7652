//! gangway behind a read-only Docker socket proxy reached over
//! `DOCKER_HOST=tcp://…`. The proxy in this test allows exactly the Engine
//! API calls that docs/docker.md lists, refuses everything else with 403, and
//! records every call, so the documented list is checked against what
//! gangway really does.
#![allow(clippy::unwrap_used)]

use gangway_testkit::{wait_until, ContainerSpec, GangwayBuilder, Network};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// The calls docs/docker.md documents, as (method, path pattern) with `*`
/// standing for one path segment.
const DOCUMENTED: &[(&str, &str)] = &[
    ("GET", "/version"),
    ("GET", "/containers/json"),
    ("GET", "/containers/*/json"),
    ("GET", "/events"),
    ("GET", "/networks/*"),
];

/// The documented pattern a request matches, if any.
fn documented_call(method: &str, target: &str) -> Option<&'static str> {
    let path = target.split('?').next().unwrap_or_default();
    // Versioned paths (/v1.41/...) are the same calls.
    let path = match path.strip_prefix("/v") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
            rest.find('/').map_or(path, |i| &rest[i..])
        }
        _ => path,
    };
    let segments: Vec<&str> = path.split('/').collect();
    DOCUMENTED.iter().find_map(|(m, pattern)| {
        let pattern_segments: Vec<&str> = pattern.split('/').collect();
        let matches = *m == method
            && pattern_segments.len() == segments.len()
            && pattern_segments
                .iter()
                .zip(&segments)
                .all(|(p, s)| (*p == "*" && !s.is_empty()) || p == s);
        matches.then_some(*pattern)
    })
}

type Calls = Arc<Mutex<Vec<(String, String, bool)>>>;

/// A minimal read-only Docker socket proxy: one request per connection.
struct AllowlistProxy {
    port: u16,
    calls: Calls,
}

impl AllowlistProxy {
    fn start() -> AllowlistProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = Calls::default();
        let recorded = Arc::clone(&calls);
        // The accept thread ends with the test process.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let recorded = Arc::clone(&recorded);
                std::thread::spawn(move || relay_one(client, &recorded));
            }
        });
        AllowlistProxy { port, calls }
    }

    fn calls(&self) -> Vec<(String, String, bool)> {
        self.calls.lock().unwrap().clone()
    }
}

fn relay_one(mut client: TcpStream, recorded: &Mutex<Vec<(String, String, bool)>>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push_str(&line);
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let allowed = documented_call(&method, &target).is_some();
    recorded.lock().unwrap().push((method, target, allowed));
    if !allowed {
        let _ = client
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let Ok(mut engine) = UnixStream::connect(DOCKER_SOCKET) else {
        return;
    };
    // One request per connection keeps every call visible to this proxy.
    let forwarded = format!("{request_line}{head}Connection: close\r\n\r\n");
    if engine.write_all(forwarded.as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        match engine.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if client.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

#[test]
fn routes_through_a_read_only_socket_proxy_using_only_documented_calls() {
    let network = Network::create();
    let _first = ContainerSpec::backend()
        .network(network.name())
        .label("reverse-proxy.host", "first.test")
        .start();
    let proxy = AllowlistProxy::start();
    let gangway = GangwayBuilder::new(env!("CARGO_BIN_EXE_gangway"))
        .network(network.name())
        .env("DOCKER_HOST", format!("tcp://127.0.0.1:{}", proxy.port))
        .spawn();
    assert!(
        gangway.wait_ready(Duration::from_secs(20)),
        "gangway did not become ready:\n{}",
        gangway.output()
    );
    assert_eq!(gangway.get("first.test", "/").status, 200);

    // Events flow through the proxy too: a container started now is routed.
    let _second = ContainerSpec::backend()
        .network(network.name())
        .label("reverse-proxy.host", "second.test")
        .start();
    assert!(
        wait_until(Duration::from_secs(10), || gangway
            .get("second.test", "/")
            .status
            == 200),
        "a container started after gangway was not routed through the socket proxy:\n{}",
        gangway.output()
    );

    let calls = proxy.calls();
    let refused: Vec<_> = calls.iter().filter(|(_, _, allowed)| !allowed).collect();
    assert!(
        refused.is_empty(),
        "gangway made undocumented Engine API calls: {refused:?}"
    );
    let used: std::collections::BTreeSet<&str> = calls
        .iter()
        .filter_map(|(m, t, _)| documented_call(m, t))
        .collect();
    for (_, pattern) in DOCUMENTED {
        assert!(
            used.contains(pattern),
            "documented call {pattern} was never made; calls: {calls:?}"
        );
    }
}

#[test]
fn the_allowlist_matches_what_it_should() {
    assert_eq!(
        documented_call("GET", "/v1.41/containers/abc/json"),
        Some("/containers/*/json")
    );
    assert_eq!(
        documented_call("GET", "/v1.41/events?since=1"),
        Some("/events")
    );
    assert_eq!(documented_call("GET", "/version"), Some("/version"));
    assert_eq!(documented_call("POST", "/v1.41/containers/abc/kill"), None);
    assert_eq!(documented_call("GET", "/v1.41/containers/abc/logs"), None);
    assert_eq!(documented_call("DELETE", "/v1.41/networks/x"), None);
}
