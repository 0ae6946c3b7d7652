//! The route labels beyond host and port, on real containers: paths with
//! prefix stripping, priorities, methods, headers, named routes, redirects
//! to HTTPS, misspelled labels and conflicts.

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::*;
use gangway_testkit::{curl, ContainerSpec, Network};

#[test]
fn path_strip_prefix_methods_headers_and_priority() {
    let net = Network::create();
    let site = backend(&net, "shop.test").start();
    let api = backend(&net, "shop.test")
        .label("reverse-proxy.path", "/api")
        .label("reverse-proxy.strip-prefix", "true")
        .start();
    let beta = backend(&net, "shop.test")
        .label("reverse-proxy.header.X-Env", "beta")
        .start();
    let writer = backend(&net, "shop.test")
        .label("reverse-proxy.path", "/api")
        .label("reverse-proxy.methods", "POST,PUT")
        .start();
    let g = start(gangway(&net));

    let r = wait_for(&g, "shop.test", "/api/users?x=1", "api route", |r| {
        r.header("x-backend") == Some(api.name())
    });
    assert_eq!(r.json()["uri"], "/users?x=1", "prefix stripped, query kept");
    let r = g.get("shop.test", "/api");
    assert_eq!(r.json()["uri"], "/", "{r:#?}");
    // Not on a segment boundary: the site.
    let r = g.get("shop.test", "/apix");
    assert_eq!(r.header("x-backend"), Some(site.name()), "{r:#?}");
    assert_eq!(r.json()["uri"], "/apix");

    // More conditions win on the same path: POST goes to the writer.
    let url = format!("http://127.0.0.1:{}/api/orders", g.http_port);
    let r = curl(["-X", "POST", "-H", "Host: shop.test", &url]);
    assert_eq!(r.header("x-backend"), Some(writer.name()), "{r:#?}");
    assert_eq!(r.json()["uri"], "/api/orders", "the writer does not strip");
    let r = curl(["-H", "Host: shop.test", &url]);
    assert_eq!(r.header("x-backend"), Some(api.name()), "{r:#?}");

    // A header condition beats the plain route on the same host.
    let root = format!("http://127.0.0.1:{}/", g.http_port);
    let r = curl(["-H", "Host: shop.test", "-H", "X-Env: beta", &root]);
    assert_eq!(r.header("x-backend"), Some(beta.name()), "{r:#?}");
    let r = curl(["-H", "Host: shop.test", "-H", "X-Env: prod", &root]);
    assert_eq!(r.header("x-backend"), Some(site.name()), "{r:#?}");

    // A higher priority beats a more specific path.
    let boss = backend(&net, "shop.test")
        .label("reverse-proxy.priority", "10")
        .label("reverse-proxy.methods", "DELETE")
        .start();
    let r = wait_for(&g, "shop.test", "/", "priority route", |_| true);
    assert_eq!(r.header("x-backend"), Some(site.name()));
    let deleted = gangway_testkit::wait_until_some(WAIT, || {
        let r = curl(["-X", "DELETE", "-H", "Host: shop.test", &url]);
        (r.header("x-backend") == Some(boss.name())).then_some(r)
    });
    assert!(
        deleted.is_some(),
        "DELETE never reached {}:\n{}",
        boss.name(),
        g.output()
    );
}

#[test]
fn named_routes_serve_several_hosts_and_ports_of_one_container() {
    let net = Network::create();
    let app = backend(&net, "app.test")
        .label("reverse-proxy.admin.host", "admin.test")
        .label("reverse-proxy.admin.port", "80")
        .label("reverse-proxy.metrics.host", "app.test")
        .label("reverse-proxy.metrics.path", "/metrics")
        .label("reverse-proxy.metrics.port", "81")
        .start();
    let g = start(gangway(&net));
    wait_routed_to(&g, "app.test", app.name());
    wait_routed_to(&g, "admin.test", app.name());
    // Nothing listens on 81 in the container: the metrics route goes there.
    let r = g.get("app.test", "/metrics");
    assert_eq!(r.status, 502, "{r:#?}");
    let line = g
        .wait_for_message("request", |v| v["path"] == "/metrics", WAIT)
        .unwrap_or_else(|| panic!("no access line:\n{}", g.output()));
    assert_eq!(
        line["upstream"],
        format!("{}:81", app.ip_on(&net)),
        "{line}"
    );
}

#[test]
fn redirect_to_https_answers_plain_http_with_308() {
    let dir = gangway_testkit::TempDir::new();
    let (cert, key) = gangway_testkit::make_cert(dir.path(), "secure.test");
    let net = Network::create();
    let b = backend(&net, "secure.test")
        .label("reverse-proxy.redirect-to-https", "true")
        .start();
    let g = start(gangway(&net).https(&cert, &key));
    let r = wait_status(&g, "secure.test", 308);
    let _ = &b;
    assert_eq!(
        r.header("location").map(str::to_owned),
        Some(format!("https://secure.test:{}/", g.https_port)),
        "{r:#?}"
    );
    let r = g.get("secure.test", "/a/b?c=d");
    assert_eq!(
        r.header("location").map(str::to_owned),
        Some(format!("https://secure.test:{}/a/b?c=d", g.https_port))
    );
    // Over HTTPS the request is forwarded.
    let port = g.https_port;
    let r = curl([
        "--cacert",
        &cert.to_string_lossy(),
        "--resolve",
        &format!("secure.test:{port}:127.0.0.1"),
        &format!("https://secure.test:{port}/x"),
    ]);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("x-backend"), Some(b.name()));
}

#[test]
fn misspelled_labels_skip_the_container_with_a_suggestion() {
    let net = Network::create();
    let typo = backend(&net, "typo.test")
        .label("reverse-proxy.prot", "8080")
        .start();
    let good = backend(&net, "good.test").start();
    let g = start(gangway(&net));
    wait_routed_to(&g, "good.test", good.name());
    let line = g
        .wait_for_message("container skipped", |v| v["container"] == typo.name(), WAIT)
        .unwrap_or_else(|| panic!("no skip line:\n{}", g.output()));
    assert_eq!(line["label"], "reverse-proxy.prot", "{line}");
    assert!(
        line["reason"]
            .as_str()
            .is_some_and(|r| r.contains("did you mean reverse-proxy.port?")),
        "{line}"
    );
    assert_eq!(g.get("typo.test", "/").status, 404);

    // The admin API reports it too, next to the routed one.
    let report = g.admin_get("/api/v1/docker/containers");
    assert_eq!(report.status, 200, "{report:#?}");
    let report = report.json();
    assert_eq!(report["connected"], true);
    let containers = report["containers"].as_array().unwrap();
    let find = |name: &str| {
        containers
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {report:#}"))
    };
    let skipped = find(typo.name());
    assert_eq!(skipped["status"], "skipped");
    assert_eq!(skipped["label"], "reverse-proxy.prot");
    assert!(skipped["problem"]
        .as_str()
        .is_some_and(|p| p.contains("did you mean reverse-proxy.port?")));
    assert_eq!(find(good.name())["status"], "routed");
}

#[test]
fn conflicting_containers_are_reported_by_name() {
    let net = Network::create();
    let first = backend(&net, "clash.test")
        .name(format!("{}-a", gangway_testkit::unique_name("clash")))
        .label("reverse-proxy.path", "/api")
        .start();
    let second = backend(&net, "clash.test")
        .name(format!("{}-b", gangway_testkit::unique_name("clash")))
        .label("reverse-proxy.path", "/api")
        .label("reverse-proxy.strip-prefix", "true")
        .start();
    let g = start(gangway(&net));
    let line = g
        .wait_for_message(
            "route conflict: two containers claim the same route with different settings",
            |_| true,
            WAIT,
        )
        .unwrap_or_else(|| panic!("no conflict line:\n{}", g.output()));
    assert_eq!(line["kept"], first.name(), "{line}");
    assert_eq!(line["skipped"], second.name(), "{line}");
    assert_eq!(line["host"], "clash.test");
    let report = g.admin_get("/api/v1/docker/containers").json();
    assert_eq!(report["conflicts"][0]["kept"], first.name(), "{report:#}");
    assert_eq!(
        report["conflicts"][0]["skipped"],
        second.name(),
        "{report:#}"
    );
    for _ in 0..4 {
        let r = g.get("clash.test", "/api/x");
        assert_eq!(r.header("x-backend"), Some(first.name()), "{r:#?}");
        assert_eq!(r.json()["uri"], "/api/x");
    }
}

#[test]
fn weighted_containers_share_by_their_weight_label() {
    let net = Network::create();
    let heavy = backend(&net, "w.test")
        .label("reverse-proxy.balance", "weighted")
        .label("reverse-proxy.weight", "3")
        .start();
    let light = backend(&net, "w.test")
        .label("reverse-proxy.balance", "weighted")
        .start();
    let g = start(gangway(&net));
    wait_routed_to(&g, "w.test", heavy.name());
    wait_routed_to(&g, "w.test", light.name());
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..40 {
        let r = g.get("w.test", "/");
        *counts
            .entry(r.header("x-backend").unwrap_or("?").to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(counts.get(heavy.name()), Some(&30), "{counts:?}");
    assert_eq!(counts.get(light.name()), Some(&10), "{counts:?}");
}

/// Sets the Docker health a container's probe reports, by asking the
/// backend itself on the test network.
fn set_health(c: &gangway_testkit::Container, net: &Network, ok: bool) {
    let path = if ok { "/health/ok" } else { "/health/fail" };
    let r = curl([format!("http://{}:80{path}", c.ip_on(net))]);
    assert_eq!(r.status, 200, "{r:#?}");
}

#[test]
fn docker_health_states_decide_routing() {
    let net = Network::create();
    let c = ContainerSpec::backend_with_healthcheck()
        .network(&net)
        .label("reverse-proxy.host", "hc.test")
        .start();
    let g = start(gangway(&net));
    // Health check defined, not passed yet: `starting`, not routed.
    assert_eq!(c.inspect("{{.State.Health.Status}}"), "starting");
    assert_eq!(g.get("hc.test", "/").status, 503);

    set_health(&c, &net, true);
    wait_routed_to(&g, "hc.test", c.name());

    set_health(&c, &net, false);
    wait_status(&g, "hc.test", 503);
    assert_eq!(c.inspect("{{.State.Health.Status}}"), "unhealthy");

    set_health(&c, &net, true);
    wait_routed_to(&g, "hc.test", c.name());
}

#[test]
fn route_while_starting_routes_a_starting_container_for_its_grace() {
    let net = Network::create();
    let c = ContainerSpec::backend_with_healthcheck()
        .network(&net)
        .label("reverse-proxy.host", "slowstart.test")
        .label("reverse-proxy.route-while-starting", "4s")
        .start();
    let g = start(gangway(&net));
    assert_eq!(c.inspect("{{.State.Health.Status}}"), "starting");
    // Routed while starting, within 4 s of its start...
    let r = g.get("slowstart.test", "/");
    assert_eq!(r.status, 200, "{r:#?}\n{}", g.output());
    // ...and not after, while the health check still has not passed.
    wait_status(&g, "slowstart.test", 503);
    assert!(
        g.wait_for_message(
            "routing table updated",
            |v| v["cause"]
                .as_str()
                .is_some_and(|c| c.contains("starting grace over")),
            WAIT
        )
        .is_some(),
        "{}",
        g.output()
    );
    set_health(&c, &net, true);
    wait_routed_to(&g, "slowstart.test", c.name());
}
