//! Docker going away and coming back, through a unix socket relay in front
//! of the real Docker socket (`DOCKER_HOST=unix://<relay>`).

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::*;
use gangway_testkit::{Network, SocketRelay, TempDir};
use std::time::{Duration, Instant};

const DOCKER_SOCKET: &str = "/var/run/docker.sock";

#[test]
fn routes_survive_a_docker_outage_and_resync_after_it() {
    let dir = TempDir::new();
    let mut relay = SocketRelay::start(dir.join("docker.sock"), DOCKER_SOCKET);
    let net = Network::create();
    let kept = backend(&net, "kept.test").start();
    let doomed = backend(&net, "doomed.test").start();
    let mut g = start(gangway(&net).env("DOCKER_HOST", relay.docker_host()));
    wait_routed_to(&g, "kept.test", kept.name());
    wait_routed_to(&g, "doomed.test", doomed.name());

    // Docker goes away: the event stream breaks, routes stay.
    relay.stop();
    let outage = Instant::now();
    let mut served = 0;
    while outage.elapsed() < Duration::from_millis(1500) {
        let r = g.get("kept.test", "/");
        assert_eq!(
            r.status,
            200,
            "a route was lost while Docker was unreachable: {r:#?}\n{}",
            g.output()
        );
        served += 1;
    }
    assert!(served > 0);
    assert_eq!(g.get("doomed.test", "/").status, 200);

    // Changes while gangway cannot see them.
    let late = backend(&net, "late.test").start();
    doomed.stop();
    assert_eq!(g.get("late.test", "/").status, 404);

    // Docker is back: gangway reconnects (backoff at most 5 s) and resyncs.
    relay.start_again();
    wait_routed_to(&g, "late.test", late.name());
    wait_status(&g, "doomed.test", 503);
    wait_routed_to(&g, "kept.test", kept.name());

    // And follows events again.
    let later = backend(&net, "later.test").start();
    wait_routed_to(&g, "later.test", later.name());
    assert!(g.try_exit().is_none(), "gangway exited:\n{}", g.output());
}

#[test]
fn starts_while_docker_is_down_and_becomes_ready_when_it_is_up() {
    let dir = TempDir::new();
    let mut relay = SocketRelay::stopped(dir.join("docker.sock"), DOCKER_SOCKET);
    let net = Network::create();
    let b = backend(&net, "early.test").start();
    let mut g = gangway(&net)
        .env("DOCKER_HOST", relay.docker_host())
        .spawn();

    let line = g
        .wait_for_json(
            |v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("docker unavailable"))
            },
            WAIT,
        )
        .unwrap_or_else(|| panic!("no \"docker unavailable\" line:\n{}", g.output()));
    assert!(line["level"].is_string(), "{line}");
    assert!(g.try_exit().is_none(), "gangway exited:\n{}", g.output());
    assert_eq!(g.admin_get("/healthz").status, 200, "{}", g.output());
    assert_eq!(g.admin_get("/readyz").status, 503, "{}", g.output());
    // Nothing is routed yet.
    let r = g.get("early.test", "/");
    assert!(r.status == 404 || r.status == 503, "{r:#?}");

    relay.start_again();
    assert!(
        g.wait_ready(WAIT),
        "not ready after Docker came back:\n{}",
        g.output()
    );
    wait_routed_to(&g, "early.test", b.name());
    assert_eq!(g.admin_get("/healthz").status, 200);
}
