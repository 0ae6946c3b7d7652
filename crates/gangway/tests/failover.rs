//! Seed 002's failover, situation by situation, with real backend processes
//! on loopback: even round robin; a failing backend absorbed by the next
//! one; ejection after failures in a row and one trial after the cooldown;
//! every backend ejected ("panic"); attempts exhausted; and which requests
//! may be sent again after reaching a backend.

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::*;
use gangway_testkit::{curl, wait_until, Gangway, RefusedPort, TempDir};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A pool of `targets` with extra pool keys (`failover = {…}`), routed
/// for app.test, and a 5xx error page.
fn config(targets: &[String], pool_keys: &str) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("{t:?}")).collect();
    format!(
        r#"
[[pools]]
name = "app"
targets = [{}]
{pool_keys}

[[routes]]
name = "app"
hosts = ["app.test"]
pool = "app"

[[error_pages]]
status = ["5xx"]
file = "50x.html"
"#,
        targets.join(", ")
    )
}

fn start_pool(dir: &TempDir, targets: &[String], pool_keys: &str) -> Gangway {
    std::fs::write(dir.join("50x.html"), "<h1>all backends failed</h1>").unwrap();
    start_config(dir, &config(targets, pool_keys))
}

/// Which backend answered each of `n` GETs (`x-backend`, or the status).
fn tally(g: &Gangway, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let r = g.get("app.test", "/");
        let key = match r.header("x-backend") {
            Some(name) if r.status == 200 => name.to_owned(),
            _ => format!("status {}", r.status),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// The statistics entry of the target at `addr`.
fn target_stats(g: &Gangway, addr: &str) -> serde_json::Value {
    let stats = g.admin_get("/api/v1/stats").json();
    stats["pools"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .find(|t| t["addr"] == addr)
        .unwrap_or_else(|| panic!("{addr} not in {stats:#}"))
}

/// A backend that accepts connections, reads the request, and after
/// `hold` closes without answering: the request reached it, then failed.
struct Hangup {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Hangup {
    fn start(hold: Duration) -> Hangup {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, done) = (Arc::clone(&accepted), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        std::thread::spawn(move || {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                            let mut buf = [0u8; 4096];
                            let _ = stream.read(&mut buf);
                            std::thread::sleep(hold);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Hangup {
            port,
            accepted,
            stop,
        }
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Hangup {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn all_healthy_round_robin_calls_each_equally() {
    let dir = TempDir::new();
    let backends: Vec<Backend> = (0..3).map(|i| Backend::start(&format!("b{i}"))).collect();
    let targets: Vec<String> = backends.iter().map(Backend::target).collect();
    let g = start_pool(&dir, &targets, "");
    let counts = tally(&g, 90);
    let expected: BTreeMap<String, usize> = (0..3).map(|i| (format!("b{i}"), 30)).collect();
    assert_eq!(counts, expected);

    // The same figures for Prometheus, and the latency percentiles.
    let metrics = g.admin_get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{metrics:#?}"
    );
    for line in metrics.body.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
        assert!(series.starts_with("gangway_"), "{line:?}");
    }
    for t in &targets {
        let sent = format!(
            "gangway_target_requests_total{{pool=\"file/app\",target=\"{t}\",container=\"{t}\"}} 30"
        );
        assert!(
            metrics.body.contains(&sent),
            "no {sent:?} in\n{}",
            metrics.body
        );
        let count = format!(
            "gangway_target_response_seconds_count{{pool=\"file/app\",target=\"{t}\",container=\"{t}\"}} 30"
        );
        assert!(metrics.body.contains(&count), "no {count:?}");
        let up =
            format!("gangway_target_up{{pool=\"file/app\",target=\"{t}\",container=\"{t}\"}} 1");
        assert!(metrics.body.contains(&up), "no {up:?}");
    }
    assert!(metrics
        .body
        .contains("gangway_route_requests_total{route=\"file/app\",class=\"2xx\"} 90"));
    let stats = target_stats(&g, &targets[0]);
    assert!(stats["latency_p50_ms"].as_f64().is_some(), "{stats}");
    assert!(stats["latency_p99_ms"].as_f64().is_some(), "{stats}");
}

#[test]
fn a_failing_backend_is_absorbed_ejected_and_tried_again_after_its_cooldown() {
    let dir = TempDir::new();
    let good = Backend::start("good");
    let refusing = RefusedPort::new();
    let dead = refusing.target();
    let g = start_pool(
        &dir,
        &[good.target(), dead.clone()],
        r#"failover = { failures = 3, cooldown = "2s" }"#,
    );

    // Every request succeeds: the refused connection goes on to the next target.
    assert_eq!(tally(&g, 20), BTreeMap::from([("good".to_owned(), 20)]));
    let line = g
        .wait_for_message("target ejected", |v| v["upstream"] == dead, WAIT)
        .unwrap_or_else(|| panic!("not ejected:\n{}", g.output()));
    assert_eq!(line["cooldown_s"], 2.0, "{line}");
    let stats = target_stats(&g, &dead);
    assert_eq!(stats["state"], "ejected", "{stats}");
    assert_eq!(stats["ejections"], 1);
    assert_eq!(
        stats["connect_failures"], 3,
        "three failures eject, no more attempts"
    );

    // While ejected, no request reaches it.
    tally(&g, 20);
    assert_eq!(target_stats(&g, &dead)["requests"], 3);

    // After the cooldown one trial goes to it; it fails again, so it is
    // ejected again for twice as long.
    assert!(
        wait_until(Duration::from_secs(5), || {
            tally(&g, 1);
            target_stats(&g, &dead)["ejections"] == 2
        }),
        "no second ejection:\n{}",
        g.output()
    );
    let stats = target_stats(&g, &dead);
    assert_eq!(stats["requests"], 4, "exactly one trial: {stats}");
    let second = g
        .messages("target ejected")
        .into_iter()
        .filter(|v| v["upstream"] == dead)
        .nth(1)
        .unwrap();
    assert_eq!(second["cooldown_s"], 4.0, "{second}");
}

#[test]
fn a_trial_that_succeeds_restores_the_target() {
    let dir = TempDir::new();
    let good = Backend::start("good");
    // A backend on a known port, stopped: refused until started again.
    let comeback = Backend::start("comeback");
    let port = comeback.port;
    drop(comeback);
    let g = start_pool(
        &dir,
        &[good.target(), format!("127.0.0.1:{port}")],
        r#"failover = { failures = 1, cooldown = "1s" }"#,
    );
    tally(&g, 4);
    assert!(g
        .wait_for_message("target ejected", |_| true, WAIT)
        .is_some());

    let _back = Backend::start_on("comeback", port);
    assert!(
        wait_until(WAIT, || tally(&g, 2).contains_key("comeback")),
        "not restored:\n{}",
        g.output()
    );
    assert!(g
        .wait_for_message(
            "target restored",
            |v| v["upstream"] == format!("127.0.0.1:{port}"),
            WAIT
        )
        .is_some());
    assert_eq!(
        target_stats(&g, &format!("127.0.0.1:{port}"))["state"],
        "healthy"
    );
    let counts = tally(&g, 10);
    assert_eq!(counts.get("comeback"), Some(&5), "{counts:?}");
}

#[test]
fn every_backend_ejected_means_all_are_tried_again() {
    let dir = TempDir::new();
    let a = Backend::start("a");
    let b = Backend::start("b");
    let (pa, pb) = (a.port, b.port);
    let g = start_pool(
        &dir,
        &[a.target(), b.target()],
        r#"failover = { failures = 1, cooldown = "60s" }"#,
    );
    assert_eq!(tally(&g, 2).len(), 2);
    drop(a);
    drop(b);
    // Both fail and are ejected; the client gets the error page.
    let r = g.get("app.test", "/");
    assert_eq!(r.status, 502, "{r:#?}");
    assert_eq!(r.body, "<h1>all backends failed</h1>");

    // Both ejected for a minute: the next request is in panic and tries them
    // anyway, so a backend that is back answers at once.
    let _a = Backend::start_on("a", pa);
    let r = g.get("app.test", "/");
    assert_eq!(r.status, 200, "{r:#?}\n{}", g.output());
    assert_eq!(r.header("x-backend"), Some("a"));
    assert!(g
        .wait_for_message(
            "pool in panic: every target is ejected; trying them anyway",
            |_| true,
            WAIT
        )
        .is_some());
    let _ = pb;
}

#[test]
fn attempts_are_capped_and_exhaustion_is_a_502_with_the_error_page() {
    let dir = TempDir::new();
    let refusing: Vec<RefusedPort> = (0..4).map(|_| RefusedPort::new()).collect();
    let dead: Vec<String> = refusing.iter().map(RefusedPort::target).collect();
    let g = start_pool(
        &dir,
        &dead,
        r#"failover = { attempts = 2, failures = 100 }"#,
    );
    let r = g.get("app.test", "/");
    assert_eq!(r.status, 502);
    assert_eq!(r.body, "<h1>all backends failed</h1>");
    let attempts: u64 = dead
        .iter()
        .map(|t| target_stats(&g, t)["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(attempts, 2, "attempts = 2 caps the tries of one request");
}

#[test]
fn only_idempotent_requests_are_sent_again_after_reaching_a_backend() {
    let dir = TempDir::new();
    let hangup = Hangup::start(Duration::ZERO);
    let good = Backend::start("good");
    let g = start_pool(
        &dir,
        &[hangup.target(), good.target()],
        r#"failover = { failures = 100 }"#,
    );
    let url = format!("http://127.0.0.1:{}/", g.http_port);
    // Round robin starts where it is; send enough that each method meets
    // the hanging backend first at least once.
    let mut get_failures = 0;
    let mut post_failures = 0;
    for _ in 0..6 {
        let get = curl(["-H", "Host: app.test", url.as_str()]);
        get_failures += usize::from(get.status != 200);
        let post = curl([
            "-H",
            "Host: app.test",
            "-X",
            "POST",
            "--data",
            "order=1",
            url.as_str(),
        ]);
        post_failures += usize::from(post.status != 200);
        if post.status != 200 {
            assert_eq!(post.status, 502, "{post:#?}");
        }
    }
    assert_eq!(get_failures, 0, "GET is idempotent: sent again");
    assert!(
        post_failures > 0,
        "a POST that reached a backend is not sent again"
    );
    assert!(hangup.accepted.load(Ordering::Relaxed) > 0);

    // retry = "always": the pool's backends tolerate duplicates.
    let dir = TempDir::new();
    let g = start_pool(
        &dir,
        &[hangup.target(), good.target()],
        r#"failover = { failures = 100, retry = "always" }"#,
    );
    let url = format!("http://127.0.0.1:{}/", g.http_port);
    for _ in 0..6 {
        let post = curl([
            "-H",
            "Host: app.test",
            "-X",
            "POST",
            "--data",
            "order=1",
            url.as_str(),
        ]);
        assert_eq!(post.status, 200, "{post:#?}");
        assert_eq!(post.json()["body_bytes"], 7, "the body is sent again whole");
    }
}

#[test]
fn a_backend_that_never_answers_times_out_and_the_next_one_answers() {
    let dir = TempDir::new();
    let silent = Hangup::start(Duration::from_secs(5));
    let good = Backend::start("good");
    let g = start_pool(
        &dir,
        &[silent.target(), good.target()],
        "failover = { failures = 100 }\ntimeouts = { response_header = \"300ms\" }",
    );
    for _ in 0..4 {
        let r = g.get("app.test", "/");
        assert_eq!(r.status, 200, "{r:#?}");
        assert_eq!(r.header("x-backend"), Some("good"));
    }
    let stats = target_stats(&g, &silent.target());
    assert!(stats["timeout_failures"].as_u64().unwrap() >= 1, "{stats}");
    assert!(g
        .wait_for_message("upstream request failed", |v| v["kind"] == "timeout", WAIT)
        .is_some());

    // A POST that timed out is not sent again: 502 after the timeout.
    let url = format!("http://127.0.0.1:{}/", g.http_port);
    let mut saw_502 = false;
    for _ in 0..4 {
        let started = std::time::Instant::now();
        let r = curl([
            "-H",
            "Host: app.test",
            "-X",
            "POST",
            "--data",
            "x",
            url.as_str(),
        ]);
        if r.status == 502 {
            saw_502 = true;
            assert!(started.elapsed() >= Duration::from_millis(300));
        } else {
            assert_eq!(r.header("x-backend"), Some("good"));
        }
    }
    assert!(saw_502, "a POST met the silent backend and was not retried");
}

const FAST_CHECK: &str = r#"health = { path = "/status/200", interval = "150ms", timeout = "300ms", healthy = 2, unhealthy = 2 }"#;

#[test]
fn an_active_health_check_takes_a_silent_backend_out_before_any_request() {
    let dir = TempDir::new();
    let silent = Hangup::start(Duration::from_secs(2));
    let good = Backend::start("good");
    let g = start_pool(&dir, &[silent.target(), good.target()], FAST_CHECK);
    let down = g
        .wait_for_message(
            "health check: target down",
            |v| v["upstream"] == silent.target(),
            WAIT,
        )
        .unwrap_or_else(|| panic!("no down line:\n{}", g.output()));
    assert!(
        down["reason"].as_str().unwrap().contains("no answer"),
        "{down}"
    );
    assert_eq!(
        tally(&g, 20),
        BTreeMap::from([("good".to_owned(), 20)]),
        "no request waits on the silent backend"
    );
    let stats = target_stats(&g, &silent.target());
    assert_eq!(stats["state"], "down", "{stats}");
    assert_eq!(
        stats["requests"], 0,
        "health checks are not requests: {stats}"
    );
}

#[test]
fn a_backend_that_comes_back_passes_its_checks_and_is_used_again() {
    let dir = TempDir::new();
    let good = Backend::start("good");
    let flaky = Backend::start("flaky");
    let port = flaky.port;
    let g = start_pool(&dir, &[good.target(), flaky.target()], FAST_CHECK);
    assert!(wait_until(WAIT, || tally(&g, 2).contains_key("flaky")));
    drop(flaky);
    assert!(
        g.wait_for_message(
            "health check: target down",
            |v| v["upstream"] == format!("127.0.0.1:{port}"),
            WAIT
        )
        .is_some(),
        "{}",
        g.output()
    );
    let _back = Backend::start_on("flaky", port);
    assert!(
        g.wait_for_message(
            "health check: target up",
            |v| v["upstream"] == format!("127.0.0.1:{port}"),
            WAIT
        )
        .is_some(),
        "{}",
        g.output()
    );
    let counts = tally(&g, 10);
    assert_eq!(counts.get("flaky"), Some(&5), "{counts:?}");
}

#[test]
fn a_status_outside_the_expected_range_fails_the_check() {
    let dir = TempDir::new();
    let b = Backend::start("b");
    let g = start_pool(
        &dir,
        &[b.target()],
        r#"health = { path = "/status/503", interval = "150ms", status = "200-299", unhealthy = 1 }"#,
    );
    let down = g
        .wait_for_message("health check: target down", |_| true, WAIT)
        .unwrap_or_else(|| panic!("{}", g.output()));
    assert_eq!(down["reason"], "status 503", "{down}");
    // The only target is down: panic mode still sends requests to it.
    assert_eq!(g.get("app.test", "/").status, 200);
}

#[test]
fn sigterm_lets_requests_in_flight_finish_and_exits_0() {
    let dir = TempDir::new();
    let slow = Backend::start_with("slow", &[("BACKEND_DELAY_MS", "1000")]);
    let mut g = start_pool(&dir, &[slow.target()], "");
    let port = g.http_port;
    let in_flight = std::thread::spawn(move || gangway_testkit::get(port, "app.test", "/"));
    // The request reaches the backend, which answers a second later.
    assert!(wait_until(WAIT, || target_stats(&g, &slow.target())
        ["in_flight"]
        == 1));
    g.terminate();
    // No new connections once shutdown has begun.
    assert!(
        wait_until(WAIT, || gangway_testkit::get(port, "app.test", "/").status
            == 0),
        "still accepting after SIGTERM"
    );
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200, "the request in flight was cut off: {r:#?}");
    assert_eq!(r.header("x-backend"), Some("slow"));
    let status = g
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("gangway did not exit:\n{}", g.output()));
    assert_eq!(status.code(), Some(0), "{}", g.output());
}

#[test]
fn the_request_timeout_bounds_attempts_and_the_streamed_body() {
    let dir = TempDir::new();
    let slow = Backend::start_with("slow", &[("BACKEND_DELAY_MS", "1500")]);
    let slow2 = Backend::start_with("slow2", &[("BACKEND_DELAY_MS", "1500")]);
    let g = start_pool(
        &dir,
        &[slow.target(), slow2.target()],
        r#"timeouts = { request = "400ms" }"#,
    );
    let started = std::time::Instant::now();
    let r = g.get("app.test", "/");
    assert_eq!(r.status, 504, "{r:#?}");
    assert_eq!(r.body, "<h1>all backends failed</h1>");
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );

    // A body still streaming at the deadline is cut off.
    let dir = TempDir::new();
    let streamer = Backend::start("streamer");
    let g = start_pool(
        &dir,
        &[streamer.target()],
        r#"timeouts = { request = "700ms" }"#,
    );
    let r = g.get("app.test", "/stream?chunks=6&delay_ms=300");
    assert_ne!(r.exit_code, 0, "the stream was not cut off: {r:#?}");
    assert!(r.body.starts_with("chunk 0\n"), "{r:#?}");
    assert!(!r.body.contains("chunk 5"), "{r:#?}");
    // A short exchange is not affected.
    let r = g.get("app.test", "/stream?chunks=2&delay_ms=10");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "chunk 0\nchunk 1\n");
}

#[test]
fn a_backend_killed_during_load_costs_no_client_request() {
    use std::sync::atomic::AtomicBool;
    let dir = TempDir::new();
    let victim = Backend::start("victim");
    let others: Vec<Backend> = (0..2).map(|i| Backend::start(&format!("b{i}"))).collect();
    let victim_addr = victim.target();
    let mut targets = vec![victim.target()];
    targets.extend(others.iter().map(Backend::target));
    let g = start_pool(&dir, &targets, "");

    let stop = Arc::new(AtomicBool::new(false));
    let port = g.http_port;
    let _stop_on_failure = StopOnDrop(Arc::clone(&stop));
    let clients = steady_load(port, "app.test", 3, &stop);
    assert!(wait_until(WAIT, || target_stats(&g, &victim_addr)
        ["requests"]
        .as_u64()
        .unwrap()
        > 10));
    drop(victim);
    assert!(g
        .wait_for_message("target ejected", |v| v["upstream"] == victim_addr, WAIT)
        .is_some());
    // Attempts chosen just before the ejection settle first.
    std::thread::sleep(Duration::from_millis(100));
    let after_ejection = target_stats(&g, &victim_addr)["requests"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let total = finish_load(clients, &g);
    assert!(total > 30, "too little load: {total}");
    assert_eq!(
        target_stats(&g, &victim_addr)["requests"].as_u64().unwrap(),
        after_ejection,
        "requests reached the killed backend after its ejection"
    );
}
