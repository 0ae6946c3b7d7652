//! gangway on the host, routing to backend containers on a test network by
//! their labels: host matching, balancing, error statuses, discovery,
//! forwarded headers, streaming and logs.

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::*;
use gangway_testkit::{curl, wait_until, ContainerSpec, Network};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn ipv4_detection_helper() {
    assert!(contains_ipv4("bad gateway 172.18.0.2:81"));
    assert!(contains_ipv4("10.0.0.1"));
    assert!(!contains_ipv4("no route for host h1.test"));
    assert!(!contains_ipv4("HTTP/1.1 version 1.2.3"));
    assert!(!contains_ipv4("999.1.1.1"));
}

#[test]
fn routes_by_host_ignoring_case_port_and_trailing_dot() {
    let net = Network::create();
    // Started before gangway: found by the initial sync.
    let b = backend(&net, "h1.test,h2.test").start();
    let g = start(gangway(&net));

    for host in [
        "h1.test",
        "H1.Test",
        "h1.test:8080",
        "h1.test.",
        "h2.test",
        "H2.TEST.:80",
    ] {
        let r = g.get(host, "/some/path?x=1");
        assert_eq!(r.status, 200, "Host: {host}: {r:#?}\n{}", g.output());
        assert_eq!(r.header("x-backend"), Some(b.name()), "Host: {host}");
        let v = r.json();
        assert_eq!(v["uri"], "/some/path?x=1", "Host: {host}");
        // The Host header reaches the backend as the client sent it.
        assert_eq!(r.backend_header("host").as_deref(), Some(host));
    }

    let r = g.get("unknown.test", "/");
    assert_eq!(r.status, 404, "{r:#?}");
    assert!(r.body.len() < 200, "error body is not short: {:?}", r.body);
    assert!(
        !contains_ipv4(&r.body),
        "error body leaks an address: {:?}",
        r.body
    );
    assert_eq!(r.header("x-backend"), None);
}

#[test]
fn round_robin_is_exactly_even() {
    let net = Network::create();
    let g = start(gangway(&net));
    let backends: Vec<_> = (0..3).map(|_| backend(&net, "rr.test").start()).collect();
    let names: Vec<&str> = backends.iter().map(|b| b.name()).collect();

    // Wait until gangway has seen every container's start event, so the
    // pool does not change while counting.
    for name in &names {
        assert!(
            g.wait_for_message(
                "docker event",
                |v| v["container"] == *name && v["action"] == "start",
                WAIT
            )
            .is_some(),
            "no start event for {name}:\n{}",
            g.output()
        );
    }

    // Wait until all three are in the pool.
    let mut seen = std::collections::BTreeSet::new();
    let all_seen = wait_until(WAIT, || {
        if let Some(n) = g.get("rr.test", "/").header("x-backend") {
            seen.insert(n.to_string());
        }
        seen.len() == 3
    });
    assert!(all_seen, "saw only {seen:?} of {names:?}:\n{}", g.output());

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..90 {
        let r = g.get("rr.test", "/");
        assert_eq!(r.status, 200, "{r:#?}");
        *counts
            .entry(r.header("x-backend").unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = names.iter().map(|n| (n.to_string(), 30)).collect();
    assert_eq!(counts, expected, "90 requests over 3 backends");
}

#[test]
fn error_statuses_404_502_503() {
    let net = Network::create();
    let up = backend(&net, "up.test").start();
    // Nothing listens on 81 in the backend: connections are refused.
    let _refusing = backend(&net, "refused.test")
        .label("reverse-proxy.port", "81")
        .start();
    let g = start(gangway(&net));

    wait_routed_to(&g, "up.test", up.name());
    let r = wait_status(&g, "refused.test", 502);
    assert!(r.body.len() < 200, "error body is not short: {:?}", r.body);
    assert!(
        !contains_ipv4(&r.body),
        "502 body leaks an address: {:?}",
        r.body
    );

    // Stopped but still existing: the host is known, nothing serves it.
    up.stop();
    let r = wait_status(&g, "up.test", 503);
    assert!(r.body.len() < 200, "error body is not short: {:?}", r.body);
    assert!(
        !contains_ipv4(&r.body),
        "503 body leaks an address: {:?}",
        r.body
    );

    let r = g.get("nobody.test", "/");
    assert_eq!(r.status, 404);
    assert!(
        !contains_ipv4(&r.body),
        "404 body leaks an address: {:?}",
        r.body
    );
}

#[test]
fn discovers_started_paused_and_stopped_containers() {
    let net = Network::create();
    let g = start(gangway(&net));
    assert_eq!(g.get("late.test", "/").status, 404);

    // Started after gangway: routed via the event stream.
    let b = backend(&net, "late.test").start();
    wait_routed_to(&g, "late.test", b.name());
    let ip = b.ip_on(&net);
    let added = g
        .wait_for_message("backend added", |v| v["container"] == b.name(), WAIT)
        .unwrap_or_else(|| {
            panic!(
                "no \"backend added\" line for {}:\n{}",
                b.name(),
                g.output()
            )
        });
    assert!(
        same_container_id(&added["container_id"], b.id()),
        "container_id {} is not {}",
        added["container_id"],
        b.id()
    );
    assert_eq!(added["addr"], format!("{ip}:80"), "{added}");
    assert!(
        g.wait_for_message(
            "docker event",
            |v| v["container"] == b.name() && v["action"] == "start",
            WAIT
        )
        .is_some(),
        "no \"docker event\" line with action start for {}:\n{}",
        b.name(),
        g.output()
    );

    // Paused: out of the pool; unpaused: back.
    b.pause();
    wait_for(
        &g,
        "late.test",
        "/",
        "paused container leaves the pool",
        |r| r.status == 503,
    );
    assert!(
        g.wait_for_message("backend removed", |v| v["container"] == b.name(), WAIT)
            .is_some(),
        "no \"backend removed\" line after pause:\n{}",
        g.output()
    );
    b.unpause();
    wait_routed_to(&g, "late.test", b.name());

    // Stopped: out of the pool (the only one, so 503); started: back.
    b.stop();
    wait_status(&g, "late.test", 503);
    b.start();
    wait_routed_to(&g, "late.test", b.name());

    // Removed: the host is gone.
    b.rm();
    wait_status(&g, "late.test", 404);

    let removed = g.messages("backend removed");
    assert!(!removed.is_empty());
    for line in &removed {
        assert_eq!(line["container"], b.name(), "{line}");
        assert!(same_container_id(&line["container_id"], b.id()), "{line}");
        assert_eq!(line["addr"], format!("{ip}:80"), "{line}");
    }
    // Every Docker event about the container names it by its name.
    let events: Vec<_> = g
        .messages("docker event")
        .into_iter()
        .filter(|v| same_container_id(&v["container_id"], b.id()))
        .collect();
    assert!(!events.is_empty());
    let unnamed: Vec<_> = events
        .iter()
        .filter(|v| v["container"] != b.name())
        .collect();
    assert!(
        unnamed.is_empty(),
        "\"docker event\" lines whose container field is not the name {}: {unnamed:#?}",
        b.name()
    );
}

#[test]
fn container_on_another_network_only_is_not_routed() {
    let net = Network::create();
    let other = Network::create();
    let elsewhere = backend(&other, "elsewhere.test").start();
    // On both networks: routed through its address on the proxy network.
    let both = ContainerSpec::backend()
        .network(&other)
        .network(&net)
        .label("reverse-proxy.host", "both.test")
        .start();
    let g = start(gangway(&net));

    let r = wait_routed_to(&g, "both.test", both.name());
    assert_eq!(r.status, 200);
    let ip = both.ip_on(&net);
    let access = g
        .wait_for_message(
            "request",
            |v| v["host"] == "both.test" && v["status"] == 200,
            WAIT,
        )
        .unwrap_or_else(|| panic!("no access log line:\n{}", g.output()));
    assert_eq!(access["upstream"], format!("{ip}:80"), "{access}");

    assert_eq!(g.get("elsewhere.test", "/").status, 404);
    let line = g
        .wait_for_message(
            "container not on proxy network",
            |v| v["container"] == elsewhere.name(),
            WAIT,
        )
        .unwrap_or_else(|| {
            panic!(
                "no \"container not on proxy network\" line for {}:\n{}",
                elsewhere.name(),
                g.output()
            )
        });
    assert_eq!(line["network"], net.name(), "{line}");
}

#[test]
fn containers_with_bad_labels_are_skipped_and_the_rest_works() {
    let net = Network::create();
    let bad_port = backend(&net, "badport.test")
        .label("reverse-proxy.port", "abc")
        .start();
    let big_port = backend(&net, "bigport.test")
        .label("reverse-proxy.port", "70000")
        .start();
    let empty_host = backend(&net, "").start();
    let good = backend(&net, "good.test").start();
    let g = start(gangway(&net));

    wait_routed_to(&g, "good.test", good.name());
    for (c, label) in [
        (&bad_port, "reverse-proxy.port"),
        (&big_port, "reverse-proxy.port"),
        (&empty_host, "reverse-proxy.host"),
    ] {
        let line = g
            .wait_for_message("container skipped", |v| v["container"] == c.name(), WAIT)
            .unwrap_or_else(|| {
                panic!(
                    "no \"container skipped\" line for {} ({label}):\n{}",
                    c.name(),
                    g.output()
                )
            });
        assert_eq!(line["label"], label, "{line}");
        assert!(
            line["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "no reason: {line}"
        );
    }
    assert_eq!(g.get("badport.test", "/").status, 404);
    assert_eq!(g.get("bigport.test", "/").status, 404);

    // A bad container started later is skipped too; the good one keeps
    // working.
    let late_bad = backend(&net, "latebad.test")
        .label("reverse-proxy.port", "abc")
        .start();
    assert!(
        g.wait_for_message(
            "container skipped",
            |v| v["container"] == late_bad.name(),
            WAIT
        )
        .is_some(),
        "no \"container skipped\" line for {}:\n{}",
        late_bad.name(),
        g.output()
    );
    wait_routed_to(&g, "good.test", good.name());
}

#[test]
fn custom_label_prefix() {
    let net = Network::create();
    let custom = ContainerSpec::backend()
        .network(&net)
        .label("acme.host", "custom.test")
        .label("acme.port", "80")
        .start();
    let _default = backend(&net, "default.test").start();
    let g = start(gangway(&net).env("PROXY_LABEL_PREFIX", "acme."));
    wait_routed_to(&g, "custom.test", custom.name());
    assert_eq!(g.get("default.test", "/").status, 404);
}

#[test]
fn forwarding_headers() {
    let net = Network::create();
    let b = backend(&net, "fwd.test").start();
    let g = start(gangway(&net));
    wait_routed_to(&g, "fwd.test", b.name());

    let url = format!("http://127.0.0.1:{}/headers", g.http_port);
    let r = curl(["-H", "Host: fwd.test", &url]);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.backend_header("host").as_deref(), Some("fwd.test"));
    assert_eq!(r.backend_header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        r.backend_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        r.backend_header("x-forwarded-host").as_deref(),
        Some("fwd.test")
    );
    assert_eq!(
        r.backend_header("x-forwarded-proto").as_deref(),
        Some("http")
    );

    // A client that is not a trusted proxy cannot claim forwarding headers:
    // they are overwritten with what gangway saw.
    let spoofed = [
        "-H",
        "Host: fwd.test",
        "-H",
        "X-Forwarded-For: 1.2.3.4",
        "-H",
        "X-Real-IP: 6.6.6.6",
        "-H",
        "X-Forwarded-Proto: https",
        "-H",
        "X-Forwarded-Host: admin.internal",
        &url,
    ];
    let r = curl(spoofed);
    assert_eq!(
        r.backend_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1"),
        "{:?}",
        r.backend_headers()
    );
    assert_eq!(r.backend_header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        r.backend_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        r.backend_header("x-forwarded-host").as_deref(),
        Some("fwd.test")
    );
    let real_ips = r
        .backend_headers()
        .into_iter()
        .filter(|(k, _)| k == "x-real-ip")
        .count();
    assert_eq!(real_ips, 1, "{:?}", r.backend_headers());

    // From a trusted proxy (a load balancer in front), they are kept and the
    // proxy's address is appended, as nginx's $proxy_add_x_forwarded_for.
    let trusting = start(gangway(&net).env("GANGWAY_TRUSTED_PROXIES", "127.0.0.0/8, ::1"));
    wait_routed_to(&trusting, "fwd.test", b.name());
    let url = format!("http://127.0.0.1:{}/headers", trusting.http_port);
    let r = curl([
        "-H",
        "Host: fwd.test",
        "-H",
        "X-Forwarded-For: 1.2.3.4",
        "-H",
        "X-Real-IP: 1.2.3.4",
        "-H",
        "X-Forwarded-Proto: https",
        &url,
    ]);
    assert_eq!(
        r.backend_header("x-forwarded-for").as_deref(),
        Some("1.2.3.4, 127.0.0.1")
    );
    assert_eq!(r.backend_header("x-real-ip").as_deref(), Some("1.2.3.4"));
    assert_eq!(
        r.backend_header("x-forwarded-proto").as_deref(),
        Some("https")
    );

    // Method, body and path pass through.
    let r = curl([
        "-H",
        "Host: fwd.test",
        "-X",
        "PUT",
        "--data-binary",
        "0123456789",
        &format!("http://127.0.0.1:{}/a/b?c=d&e", g.http_port),
    ]);
    let v = r.json();
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["uri"], "/a/b?c=d&e");
    assert_eq!(v["body_bytes"], 10);
}

#[test]
fn hop_by_hop_headers_do_not_cross_the_proxy() {
    let net = Network::create();
    let b = backend(&net, "hop.test").start();
    let g = start(gangway(&net));
    wait_routed_to(&g, "hop.test", b.name());

    let r = curl([
        "-H",
        "Host: hop.test",
        "-H",
        "Connection: keep-alive, x-secret",
        "-H",
        "x-secret: 1",
        "-H",
        "Keep-Alive: timeout=5",
        "-H",
        "TE: gzip",
        "-H",
        "Trailer: x-trailer",
        "-H",
        "Proxy-Authorization: Basic Zm9vOmJhcg==",
        "-H",
        "Upgrade: foo/1",
        "-H",
        "x-end-to-end: yes",
        &format!("http://127.0.0.1:{}/", g.http_port),
    ]);
    assert_eq!(r.status, 200, "{r:#?}");
    let received = r.backend_headers();
    for hop in [
        "connection",
        "x-secret",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            !received.iter().any(|(k, _)| k == hop),
            "hop-by-hop header {hop} reached the backend: {received:?}"
        );
    }
    assert_eq!(r.backend_header("x-end-to-end").as_deref(), Some("yes"));

    // On the way back.
    let r = g.get("hop.test", "/hop");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hop-secret"), None, "{:?}", r.headers);
    assert_eq!(r.header("keep-alive"), None, "{:?}", r.headers);
    assert_ne!(
        r.header("connection"),
        Some("x-hop-secret"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("x-end-to-end"), Some("kept"), "{:?}", r.headers);
}

#[test]
fn responses_stream_through_unbuffered() {
    let net = Network::create();
    let b = backend(&net, "stream.test").start();
    let g = start(gangway(&net));
    wait_routed_to(&g, "stream.test", b.name());

    // Whole stream through curl.
    let r = g.get("stream.test", "/stream?chunks=4&delay_ms=10");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "chunk 0\nchunk 1\nchunk 2\nchunk 3\n");

    // The second chunk comes a minute after the first: reading the first
    // within the 10 s read time-out shows the proxy does not buffer.
    let mut s = TcpStream::connect(("127.0.0.1", g.http_port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /stream?chunks=2&delay_ms=60000 HTTP/1.1\r\nHost: stream.test\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(s);
    let mut got = String::new();
    let mut line = String::new();
    while !got.contains("chunk 0\n") {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => panic!("connection closed; got {got:?}"),
            Ok(_) => got.push_str(&line),
            Err(e) => panic!("first chunk not forwarded within {WAIT:?} ({e}); got {got:?}"),
        }
    }
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
}

#[test]
fn json_logs_start_and_access_lines() {
    let net = Network::create();
    let b = backend(&net, "log.test").start();
    let g = start(gangway(&net));
    wait_routed_to(&g, "log.test", b.name());

    let started = g
        .wait_for_message("gangway started", |_| true, WAIT)
        .unwrap_or_else(|| panic!("no \"gangway started\" line:\n{}", g.output()));
    assert_eq!(started["http_port"], g.http_port, "{started}");
    assert_eq!(started["https_enabled"], false, "{started}");
    assert_eq!(started["docker_network"], net.name(), "{started}");
    assert_eq!(started["label_prefix"], "reverse-proxy.", "{started}");

    let r = g.get("log.test", "/access-log-probe?q=1");
    assert_eq!(r.status, 200);
    let body_len = r.body.len() as u64;
    let line = g
        .wait_for_message(
            "request",
            |v| {
                v["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/access-log-probe"))
            },
            WAIT,
        )
        .unwrap_or_else(|| panic!("no access log line:\n{}", g.output()));
    assert!(
        line["client"]
            .as_str()
            .is_some_and(|c| c.contains("127.0.0.1")),
        "{line}"
    );
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["host"], "log.test", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["bytes"], body_len, "{line}");
    assert!(line["duration_ms"].is_number(), "{line}");
    assert_eq!(line["upstream"], format!("{}:80", b.ip_on(&net)), "{line}");
    assert_eq!(line["container"], b.name(), "{line}");

    // A 404 is logged too.
    assert_eq!(g.get("nobody.test", "/missing-probe").status, 404);
    let miss = g
        .wait_for_message("request", |v| v["path"] == "/missing-probe", WAIT)
        .unwrap_or_else(|| panic!("no access log line for a 404:\n{}", g.output()));
    assert_eq!(miss["status"], 404, "{miss}");

    // Every stdout line is a JSON object with timestamp, level, message.
    let lines = g.lines();
    assert!(!lines.is_empty());
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"));
        for key in ["timestamp", "level", "message"] {
            assert!(v.get(key).is_some(), "no {key:?} in {l}");
        }
    }
}

#[test]
fn text_log_format() {
    let net = Network::create();
    let g = start(gangway(&net).env("LOG_FORMAT", "text"));
    let line = g
        .wait_for_line(|l| l.contains("gangway started"), WAIT)
        .unwrap_or_else(|| panic!("no start line:\n{}", g.output()));
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_err(),
        "LOG_FORMAT=text printed JSON: {line}"
    );
    // Access lines too (JSON ones are made apart from the other events).
    assert_eq!(g.get("nobody.test", "/text-probe").status, 404);
    let access = g
        .wait_for_line(|l| l.contains("/text-probe"), WAIT)
        .unwrap_or_else(|| panic!("no access line:\n{}", g.output()));
    for part in ["access", "request", "status=404", "host=\"nobody.test\""] {
        assert!(access.contains(part), "no {part} in {access}");
    }
    // Not a terminal: no colours.
    assert!(!g.output().contains('\x1b'), "{}", g.output());
    assert!(g.json_lines().is_empty(), "{:?}", g.json_lines());
}

#[test]
fn health_endpoints() {
    let net = Network::create();
    let g = start(gangway(&net));
    let h = g.admin_get("/healthz");
    assert_eq!(h.status, 200, "{h:#?}");
    assert_eq!(g.admin_get("/readyz").status, 200);
    // The admin listener is not the proxy: no routing there.
    assert!(wait_until(Duration::from_secs(1), || g
        .admin_get("/healthz")
        .status
        == 200));
}

#[test]
fn a_container_replaced_under_load_costs_no_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let net = Network::create();
    let old = backend(&net, "deploy.test").start();
    let g = start(gangway(&net));
    wait_routed_to(&g, "deploy.test", old.name());

    // Steady load from two clients until told to stop (bounded).
    let stop = Arc::new(AtomicBool::new(false));
    let port = g.http_port;
    let _stop_on_failure = StopOnDrop(Arc::clone(&stop));
    let clients = steady_load(port, "deploy.test", 2, &stop);

    // The deploy: the new container starts, the old one is stopped.
    let new = backend(&net, "deploy.test").start();
    wait_routed_to(&g, "deploy.test", new.name());
    old.stop();
    wait_for(
        &g,
        "deploy.test",
        "/",
        "only the new container serves",
        |r| r.header("x-backend") == Some(new.name()),
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);

    let total = finish_load(clients, &g);
    assert!(total > 20, "too little load to mean anything: {total}");
}
