//! gangway itself in a container (its own binary imported as an image), on
//! the test network, with the Docker socket mounted and its HTTP port
//! published on 127.0.0.1.

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::*;
use gangway_testkit::{get, image_from_binary, wait_until, ContainerSpec, Network};
use std::path::Path;

#[test]
fn gangway_in_a_container_routes_to_a_backend_container() {
    let image = image_from_binary(Path::new(GANGWAY), "gangway");
    let net = Network::create();
    let b = backend(&net, "h1.test").start();
    let gw = ContainerSpec::new(image)
        .network(&net)
        .env("PROXY_DOCKER_NETWORK", net.name())
        .env("HTTP_PORT", "8080")
        .env("CONTROL_PLANE_ADDR", "0.0.0.0:9000")
        .publish(8080)
        .publish(9000)
        .args(["-v", "/var/run/docker.sock:/var/run/docker.sock"])
        .start();
    let http = gw.published_port(8080);
    let admin = gw.published_port(9000);

    let ready = wait_until(WAIT, || {
        gangway_testkit::curl([format!("http://127.0.0.1:{admin}/readyz")]).status == 200
    });
    assert!(ready, "gangway container not ready; logs:\n{}", gw.logs());

    let mut last = None;
    let routed = wait_until(WAIT, || {
        let r = get(http, "h1.test", "/in-container");
        let ok = r.status == 200 && r.header("x-backend") == Some(b.name());
        last = Some(r);
        ok
    });
    assert!(routed, "not routed: {last:#?}\nlogs:\n{}", gw.logs());
    let r = last.unwrap();
    // The client is seen from inside the network: the gateway's address.
    assert_eq!(
        r.backend_header("x-real-ip").as_deref(),
        Some(net.gateway()),
        "{:?}",
        r.backend_headers()
    );
    assert_eq!(
        r.backend_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(get(http, "nobody.test", "/").status, 404);

    // Logs go to the container's stdout as JSON lines.
    let logs = gw.logs();
    let started = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "gangway started");
    let started = started.unwrap_or_else(|| panic!("no start line in:\n{logs}"));
    assert_eq!(started["docker_network"], net.name());

    // A backend started later is discovered from inside the container too.
    let late = backend(&net, "late.test").start();
    assert!(
        wait_until(WAIT, || get(http, "late.test", "/").header("x-backend")
            == Some(late.name())),
        "late backend not routed; logs:\n{}",
        gw.logs()
    );

    // docker stop: gangway, as PID 1, exits promptly and cleanly.
    let t = std::time::Instant::now();
    gw.stop();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(8),
        "docker stop took {:?}",
        t.elapsed()
    );
    assert_eq!(gw.inspect("{{.State.ExitCode}}"), "0", "{}", gw.logs());
}
