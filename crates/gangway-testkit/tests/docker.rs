//! The harness against the real Docker engine: images from our binaries,
//! networks, containers.

#![allow(clippy::unwrap_used)]

use gangway_testkit::{
    backend_image, curl, docker, docker_try, get, wait_until, ContainerSpec, Network,
};
use std::time::{Duration, Instant};

#[test]
fn backend_container_on_a_network() {
    let image = backend_image();
    assert!(image.starts_with("gangway-test-backend:"), "{image}");
    // Built once: asking again is free and gives the same tag.
    assert_eq!(backend_image(), image);

    let net = Network::create();
    assert!(net.name().starts_with("gwtest-"));
    assert!(net.subnet().contains('/'), "{net:?}");
    assert!(!net.gateway().is_empty(), "{net:?}");
    let other = Network::create();

    let c = ContainerSpec::backend()
        .network(&net)
        .network(&other)
        .label("reverse-proxy.host", "h1.test")
        .publish(80)
        .start();
    let ip = c.ip_on(&net);
    assert!(ip.contains('.'), "{ip}");
    assert_ne!(c.ip_on(&other), ip);
    assert_eq!(c.inspect("{{index .Config.Labels \"gangway-test\"}}"), "1");
    assert_eq!(
        c.inspect("{{index .Config.Labels \"reverse-proxy.host\"}}"),
        "h1.test"
    );

    let port = c.published_port(80);
    assert!(
        wait_until(Duration::from_secs(10), || get(port, "h1.test", "/").status
            == 200),
        "backend never answered; logs: {}",
        c.logs()
    );
    let r = get(port, "h1.test", "/x");
    assert_eq!(r.header("x-backend"), Some(c.name()));
    assert_eq!(r.json()["uri"], "/x");
    assert!(c.logs().contains("listening on"), "{}", c.logs());

    c.pause();
    assert_ne!(
        curl(["--max-time", "1", &format!("http://127.0.0.1:{port}/")]).status,
        200
    );
    c.unpause();
    assert!(wait_until(Duration::from_secs(10), || get(port, "h", "/")
        .status
        == 200));

    // PID 1 must handle SIGTERM itself: a prompt, clean exit (not a kill
    // after the stop time-out, which gives 137).
    let start = Instant::now();
    c.stop();
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "stop took {:?}",
        start.elapsed()
    );
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0");
    assert!(!c.is_running());
    c.start();
    assert!(c.is_running());
    c.kill();
    assert!(!c.is_running());

    let id = c.id().to_string();
    drop(c);
    assert!(
        docker_try(["inspect", &id]).is_err(),
        "container not removed"
    );
    let name = net.name().to_string();
    drop(net);
    assert!(
        docker_try(["network", "inspect", &name]).is_err(),
        "network not removed"
    );
}

#[test]
fn no_network_container_and_cleanup_on_panic() {
    let net_name;
    let c_id;
    {
        let net = Network::create();
        net_name = net.name().to_string();
        let c = ContainerSpec::backend().no_network().start();
        c_id = c.id().to_string();
        assert_eq!(c.inspect("{{.HostConfig.NetworkMode}}"), "none");
        // A container left attached when the network is dropped first.
        let attached = ContainerSpec::backend().network(&net).start();
        std::mem::forget(attached);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _c = c;
            panic!("test failure");
        }));
        assert!(r.is_err());
        drop(net);
    }
    assert!(docker_try(["inspect", &c_id]).is_err());
    assert!(docker_try(["network", "inspect", &net_name]).is_err());
    assert!(docker(["ps", "-aq", "--filter", &format!("network={net_name}")]).is_empty());
}
