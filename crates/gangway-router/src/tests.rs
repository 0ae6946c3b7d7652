//! Table-driven tests of every matcher, the priority order and explain.

use super::*;
use gangway_model::{
    Action, FieldMatch, Fragment, PathMatch, Pool, Rewrite, Route, Source, Target, TargetOrigin,
    ValueMatch,
};
use http::{HeaderMap, Method};
use std::sync::Arc;

fn pool(name: &str, addrs: &[&str]) -> Pool {
    Pool {
        failover: Default::default(),
        timeouts: Default::default(),
        balance: Default::default(),
        health: None,
        upstream: Default::default(),
        name: name.into(),
        targets: addrs
            .iter()
            .enumerate()
            .map(|(i, a)| Target {
                addr: a.parse().unwrap(),
                origin: TargetOrigin {
                    name: format!("c{i}"),
                    id: format!("id{i}"),
                },
                weight: 1,
            })
            .collect(),
    }
}

fn forward(name: &str, hosts: &[&str]) -> Route {
    Route::forward(name, hosts.iter().map(|h| (*h).into()).collect(), "p")
}

fn table(routes: Vec<Route>) -> RouteTable {
    let fragment = Fragment {
        source: Source::File,
        routes,
        pools: vec![pool("p", &["10.0.0.1:80"])],
        error_pages: Vec::new(),
        listeners: Vec::new(),
    };
    let (table, errors) = RouteTable::compile(
        Arc::new(Snapshot::build(7, "test", &[fragment])),
        &RouteTable::default(),
    );
    assert!(errors.is_empty(), "{errors:?}");
    table
}

/// A request: `host`, `path?query`, method, headers, port 80.
struct Req {
    host: &'static str,
    target: &'static str,
    method: Method,
    headers: HeaderMap,
    port: u16,
}

fn req(host: &'static str, target: &'static str) -> Req {
    Req {
        host,
        target,
        method: Method::GET,
        headers: HeaderMap::new(),
        port: 80,
    }
}

impl Req {
    fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }
    fn header(mut self, k: &'static str, v: &'static str) -> Self {
        self.headers.append(k, v.parse().unwrap());
        self
    }
    fn port(mut self, p: u16) -> Self {
        self.port = p;
        self
    }
    fn info(&self) -> RequestInfo<'_> {
        let (path, query) = match self.target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.target, None),
        };
        RequestInfo {
            host: self.host,
            path,
            query,
            method: &self.method,
            headers: &self.headers,
            port: self.port,
            websocket: is_websocket_upgrade(&self.headers),
        }
    }
}

fn chosen(table: &RouteTable, r: &Req) -> Option<String> {
    match table.lookup(&r.info()) {
        Lookup::Route(route, _) => Some(route.name().trim_start_matches("file/").to_owned()),
        Lookup::NoRoute => None,
    }
}

#[test]
fn hosts_exact_wildcard_and_any() {
    let t = table(vec![
        forward("exact", &["api.example.com"]),
        forward("wild", &["*.example.com"]),
        forward("deeper", &["*.eu.example.com"]),
        forward("fallback", &[]),
    ]);
    let cases = [
        ("api.example.com", "exact"),
        ("API.Example.com.:8080", "exact"),
        ("www.example.com", "wild"),
        ("a.b.example.com", "wild"),
        ("x.eu.example.com", "deeper"),
        ("example.com", "fallback"),
        ("other.test", "fallback"),
        ("", "fallback"),
    ];
    for (host, want) in cases {
        assert_eq!(chosen(&t, &req(host, "/")).as_deref(), Some(want), "{host}");
    }
    let t = table(vec![forward("only", &["a.test"])]);
    assert_eq!(chosen(&t, &req("b.test", "/")), None);
}

#[test]
fn paths_exact_prefix_on_segments_and_regex() {
    let mut exact = forward("exact", &["a.test"]);
    exact.matcher.path = Some(PathMatch::Exact("/login".into()));
    let mut api = forward("api", &["a.test"]);
    api.matcher.path = Some(PathMatch::prefix("/api"));
    let mut api_v2 = forward("api-v2", &["a.test"]);
    api_v2.matcher.path = Some(PathMatch::prefix("/api/v2/"));
    let mut regex = forward("regex", &["a.test"]);
    regex.matcher.path = Some(PathMatch::Regex(
        r"^/(?P<controller>[a-z0-9-]+)/(?P<module>[a-z0-9-]+)/(?P<site>[a-z0-9]+\.(htm|html))$"
            .into(),
    ));
    let t = table(vec![exact, api, api_v2, regex]);
    let cases = [
        ("/login", Some("exact")),
        ("/login/x", None),
        ("/api", Some("api")),
        ("/api/", Some("api")),
        ("/api/users", Some("api")),
        ("/apix", None),
        ("/api/v2", Some("api-v2")),
        ("/api/v2/x", Some("api-v2")),
        ("/api/v20", Some("api")),
        ("/blog/news/index.html", Some("regex")),
        ("/blog/news/index.php", None),
    ];
    for (path, want) in cases {
        assert_eq!(chosen(&t, &req("a.test", path)).as_deref(), want, "{path}");
    }
    match t.lookup(&req("a.test", "/blog/news/index.html").info()) {
        Lookup::Route(_, caps) => {
            assert_eq!(caps.get("controller"), Some("blog"));
            assert_eq!(caps.get("module"), Some("news"));
            assert_eq!(caps.get("site"), Some("index.html"));
            assert_eq!(caps.get("4"), Some("html"));
        }
        Lookup::NoRoute => panic!("no route"),
    }
}

#[test]
fn method_header_query_websocket_and_port() {
    let mut post = forward("post", &["a.test"]);
    post.matcher.methods = vec!["POST".into(), "PUT".into()];
    let mut beta = forward("beta", &["a.test"]);
    beta.matcher.headers = vec![FieldMatch {
        name: "x-env".into(),
        value: ValueMatch::Exact("beta".into()),
    }];
    let mut traced = forward("traced", &["a.test"]);
    traced.matcher.headers = vec![FieldMatch {
        name: "x-trace".into(),
        value: ValueMatch::Present,
    }];
    let mut mobile = forward("mobile", &["a.test"]);
    mobile.matcher.headers = vec![FieldMatch {
        name: "user-agent".into(),
        value: ValueMatch::Regex("(?i)android|iphone".into()),
    }];
    let mut debug = forward("debug", &["a.test"]);
    debug.matcher.query = vec![FieldMatch {
        name: "debug".into(),
        value: ValueMatch::Present,
    }];
    let mut version = forward("version", &["a.test"]);
    version.matcher.query = vec![FieldMatch {
        name: "v".into(),
        value: ValueMatch::Regex("^[0-9]+$".into()),
    }];
    let mut lang = forward("lang", &["a.test"]);
    lang.matcher.query = vec![FieldMatch {
        name: "lang".into(),
        value: ValueMatch::Exact("pt br".into()),
    }];
    let mut ws = forward("ws", &["a.test"]);
    ws.matcher.websocket = true;
    let mut admin_port = forward("admin-port", &["a.test"]);
    admin_port.matcher.ports = vec![9443];
    let t = table(vec![
        post,
        beta,
        traced,
        mobile,
        debug,
        version,
        lang,
        ws,
        admin_port,
        forward("rest", &["a.test"]),
    ]);
    let cases = [
        (req("a.test", "/").method(Method::POST), "post"),
        (req("a.test", "/").method(Method::DELETE), "rest"),
        (req("a.test", "/").header("x-env", "beta"), "beta"),
        (req("a.test", "/").header("x-env", "prod"), "rest"),
        (req("a.test", "/").header("x-trace", ""), "traced"),
        (
            req("a.test", "/").header("user-agent", "Mozilla (iPhone)"),
            "mobile",
        ),
        (req("a.test", "/?debug"), "debug"),
        (req("a.test", "/?a=1&v=42"), "version"),
        (req("a.test", "/?v=x"), "rest"),
        (req("a.test", "/?lang=pt+br"), "lang"),
        (req("a.test", "/?lang=pt%20br"), "lang"),
        (
            req("a.test", "/chat")
                .header("upgrade", "websocket")
                .header("connection", "Upgrade"),
            "ws",
        ),
        (
            req("a.test", "/chat").header("upgrade", "websocket"),
            "rest",
        ),
        (req("a.test", "/").port(9443), "admin-port"),
    ];
    for (r, want) in &cases {
        assert_eq!(
            chosen(&t, r).as_deref(),
            Some(*want),
            "{} {:?}",
            r.target,
            r.headers
        );
    }
}

#[test]
fn priority_then_specificity_then_conditions_then_name() {
    let mut high = forward("high", &["*.test"]);
    high.priority = 10;
    high.matcher.path = Some(PathMatch::prefix("/"));
    let mut exact_host = forward("exact-host", &["a.test"]);
    exact_host.matcher.path = Some(PathMatch::prefix("/"));
    let mut wild_long_path = forward("wild-long", &["*.test"]);
    wild_long_path.matcher.path = Some(PathMatch::prefix("/a/b/c"));
    let t = table(vec![
        high.clone(),
        exact_host.clone(),
        wild_long_path.clone(),
    ]);
    assert_eq!(
        chosen(&t, &req("a.test", "/a/b/c")).as_deref(),
        Some("high")
    );

    // Without the high priority: exact host beats a wildcard with a longer path.
    let t = table(vec![exact_host, wild_long_path]);
    assert_eq!(
        chosen(&t, &req("a.test", "/a/b/c")).as_deref(),
        Some("exact-host")
    );
    assert_eq!(
        chosen(&t, &req("b.test", "/a/b/c")).as_deref(),
        Some("wild-long")
    );

    // Same host and path: more conditions first; then by name.
    let mut with_method = forward("zz-method", &["a.test"]);
    with_method.matcher.methods = vec!["GET".into()];
    let t = table(vec![forward("aa-plain", &["a.test"]), with_method]);
    assert_eq!(
        chosen(&t, &req("a.test", "/")).as_deref(),
        Some("zz-method")
    );
    let mut head = req("a.test", "/");
    head.method = Method::HEAD;
    assert_eq!(
        chosen(&t, &head).as_deref(),
        Some("zz-method"),
        "GET allows HEAD"
    );
    let mut post = req("a.test", "/");
    post.method = Method::POST;
    assert_eq!(chosen(&t, &post).as_deref(), Some("aa-plain"));

    // The order is documented as nginx's: exact, regex, longest prefix.
    let mut regex = forward("regex", &["a.test"]);
    regex.matcher.path = Some(PathMatch::Regex("^/img/.*\\.png$".into()));
    let mut prefix = forward("prefix", &["a.test"]);
    prefix.matcher.path = Some(PathMatch::prefix("/img"));
    let mut exact = forward("exact", &["a.test"]);
    exact.matcher.path = Some(PathMatch::Exact("/img/logo.png".into()));
    let t = table(vec![prefix, regex, exact]);
    assert_eq!(
        chosen(&t, &req("a.test", "/img/logo.png")).as_deref(),
        Some("exact")
    );
    assert_eq!(
        chosen(&t, &req("a.test", "/img/cat.png")).as_deref(),
        Some("regex")
    );
    assert_eq!(
        chosen(&t, &req("a.test", "/img/cat.jpg")).as_deref(),
        Some("prefix")
    );
}

#[test]
fn rewrites_strip_prefix_and_regex() {
    let strip = route::CompiledRewrite::StripPrefix("/api".into());
    assert_eq!(strip.apply("/api/users").as_deref(), Some("/users"));
    assert_eq!(strip.apply("/api").as_deref(), Some("/"));
    assert_eq!(strip.apply("/apix"), None);
    let mut r = forward("r", &["a.test"]);
    r.rewrite = Some(Rewrite::Regex {
        pattern: "^/api(/.*)$".into(),
        replacement: "$1".into(),
    });
    let t = table(vec![r]);
    let rewrite = t.routes()[0].rewrite.as_ref().unwrap();
    assert_eq!(rewrite.apply("/api/x/y").as_deref(), Some("/x/y"));
    assert_eq!(rewrite.apply("/other"), None);
}

#[test]
fn explain_names_the_chosen_route_and_each_rejection() {
    let mut api = forward("api", &["a.test"]);
    api.matcher.path = Some(PathMatch::prefix("/api"));
    let mut admin = forward("admin", &["a.test"]);
    admin.matcher.path = Some(PathMatch::prefix("/admin"));
    admin.matcher.methods = vec!["POST".into()];
    let other = forward("other-host", &["b.test"]);
    let mut redirect = forward("old", &["a.test"]);
    redirect.action = Action::Redirect {
        status: 301,
        location: "https://$host$request_uri".into(),
    };
    let t = table(vec![api, admin, other, redirect]);
    let e = t.explain(&req("a.test", "/admin/x").info());
    assert_eq!(e.route.as_deref(), Some("file/old"));
    assert_eq!(
        e.action.as_deref(),
        Some("redirect 301 to https://$host$request_uri")
    );
    let find = |name: &str| e.candidates.iter().find(|c| c.route == name).unwrap();
    assert_eq!(find("file/admin").rejected_by.as_deref(), Some("method"));
    assert_eq!(find("file/api").rejected_by.as_deref(), Some("path"));
    assert_eq!(find("file/api").wanted.as_deref(), Some("prefix /api"));
    assert_eq!(find("file/other-host").rejected_by.as_deref(), Some("host"));
    assert_eq!(find("file/old").outcome, "chosen");

    let e = t.explain(&req("a.test", "/api/v1").info());
    assert_eq!(e.route.as_deref(), Some("file/api"));
    assert_eq!(e.pool.as_deref(), Some("file/p"));
    assert_eq!(
        e.target.as_ref().map(|t| t.addr.as_str()),
        Some("10.0.0.1:80")
    );
    assert_eq!(find_outcome(&e, "file/old"), "matched");
}

fn find_outcome(e: &Explanation, name: &str) -> &'static str {
    e.candidates
        .iter()
        .find(|c| c.route == name)
        .unwrap()
        .outcome
}

#[test]
fn round_robin_is_exactly_even() {
    for n in [2usize, 3] {
        let addrs: Vec<String> = (1..=n).map(|i| format!("10.0.0.{i}:80")).collect();
        let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let entry = PoolEntry::compile(&pool("rr", &refs), |_, _| Arc::default());
        let mut counts = vec![0usize; n];
        for _ in 0..(n * 100) {
            let target = &entry.targets()[entry.select(&[], 0, None).unwrap().index];
            let i = refs
                .iter()
                .position(|a| a.parse() == Ok(target.addr))
                .unwrap();
            counts[i] += 1;
        }
        assert!(counts.iter().all(|c| *c == 100), "{counts:?}");
    }
    assert!(
        PoolEntry::compile(&pool("empty", &[]), |_, _| Arc::default())
            .select(&[], 0, None)
            .is_none()
    );
}

#[test]
fn counters_survive_a_recompile_and_vanish_with_their_route() {
    let fragment = |routes| Fragment {
        source: Source::File,
        routes,
        pools: vec![pool("p", &["10.0.0.1:80"])],
        error_pages: Vec::new(),
        listeners: Vec::new(),
    };
    let snap = Arc::new(Snapshot::build(
        1,
        "t",
        &[fragment(vec![forward("a", &["a.test"])])],
    ));
    let (t1, _) = RouteTable::compile(Arc::clone(&snap), &RouteTable::default());
    t1.routes()[0].counters.record(200);
    t1.pools()[0].targets()[0].state.started();
    let (t2, _) = RouteTable::compile(Arc::clone(&snap), &t1);
    assert_eq!(t2.routes()[0].counters.snapshot().requests, 1);
    assert_eq!(t2.pools()[0].targets()[0].state.report(0).requests, 1);

    // Moved to another position: found by name.
    let moved = Arc::new(Snapshot::build(
        2,
        "t",
        &[fragment(vec![
            forward("b", &["b.test"]),
            forward("a", &["a.test"]),
        ])],
    ));
    let (t3, _) = RouteTable::compile(moved, &t2);
    let a = t3.routes().iter().find(|r| r.name() == "file/a").unwrap();
    assert_eq!(a.counters.snapshot().requests, 1);

    // Gone, then back: counted from zero.
    let other = Arc::new(Snapshot::build(
        3,
        "t",
        &[fragment(vec![forward("b", &["a.test"])])],
    ));
    let (t4, _) = RouteTable::compile(other, &t3);
    let (t5, _) = RouteTable::compile(snap, &t4);
    assert_eq!(t5.routes()[0].counters.snapshot().requests, 0);
}

#[test]
fn selection_skips_ejected_and_tried_targets_and_panics_when_all_are_ejected() {
    let mut p = pool("p", &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
    p.failover.max_failures = 1;
    let entry = PoolEntry::compile(&p, |_, _| Arc::default());
    let policy = entry.failover().clone();
    let now = 1_000;
    // Everything healthy: even round robin.
    let mut counts = [0; 3];
    for _ in 0..30 {
        counts[entry.select(&[], now, None).unwrap().index] += 1;
    }
    assert_eq!(counts, [10, 10, 10]);

    // Target 1 ejected: never chosen; the others share its load.
    entry.targets()[1]
        .state
        .failed(FailureKind::Connect, &policy, now);
    let mut counts = [0; 3];
    for _ in 0..30 {
        let s = entry.select(&[], now, None).unwrap();
        assert!(!s.panic && !s.trial);
        counts[s.index] += 1;
    }
    assert_eq!(counts, [15, 0, 15], "its share spreads evenly");

    // A request that already tried 0 and 2 has nothing left in service.
    assert_eq!(entry.select(&[0, 2], now, None), None);

    // All ejected: panic, every untried target is tried anyway.
    for i in [0, 2] {
        entry.targets()[i]
            .state
            .failed(FailureKind::Connect, &policy, now);
    }
    let s = entry.select(&[], now, None).unwrap();
    assert!(s.panic);
    assert!(entry.in_panic());
    let mut tried = vec![s.index];
    while let Some(s) = entry.select(&tried, now, None) {
        tried.push(s.index);
    }
    tried.sort_unstable();
    assert_eq!(tried, [0, 1, 2]);

    // After the cooldown, one trial; its success ends the panic.
    let later = now + 90_001;
    let s = entry.select(&[], later, None).unwrap();
    assert!(s.trial && !s.panic);
    assert!(!entry.in_panic());
    assert!(entry.targets()[s.index].state.succeeded());
}

fn pool_with(balance: gangway_model::Balance, weights: &[u32]) -> Pool {
    let addrs: Vec<String> = (1..=weights.len())
        .map(|i| format!("10.0.0.{i}:80"))
        .collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let mut p = pool("p", &refs);
    for (t, w) in p.targets.iter_mut().zip(weights) {
        t.weight = *w;
    }
    p.balance = balance;
    p
}

fn picks(entry: &PoolEntry, n: usize, key: Option<u64>) -> Vec<usize> {
    (0..n)
        .map(|_| entry.select(&[], 0, key).unwrap().index)
        .collect()
}

#[test]
fn weighted_round_robin_is_smooth_and_exact() {
    let p = pool_with(gangway_model::Balance::Weighted, &[5, 1, 1]);
    let entry = PoolEntry::compile(&p, |_, _| Arc::default());
    let order = picks(&entry, 7, None);
    // nginx's example: a a b a c a a, never the heavy one 7 times in a row.
    assert_eq!(order, [0, 0, 1, 0, 2, 0, 0]);
    let mut counts = [0; 3];
    for i in picks(&entry, 70, None) {
        counts[i] += 1;
    }
    assert_eq!(counts, [50, 10, 10]);
}

#[test]
fn least_in_flight_prefers_the_idle_target() {
    let p = pool_with(gangway_model::Balance::LeastInFlight, &[1, 1, 1]);
    let entry = PoolEntry::compile(&p, |_, _| Arc::default());
    entry.targets()[0].state.started();
    entry.targets()[0].state.started();
    entry.targets()[1].state.started();
    assert!(picks(&entry, 10, None).iter().all(|&i| i == 2));
    // Equal load: they take turns.
    entry.targets()[2].state.started();
    entry.targets()[2].state.started();
    entry.targets()[1].state.started();
    let mut seen = picks(&entry, 6, None);
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, [0, 1, 2]);
}

#[test]
fn two_choices_avoid_the_slow_busy_target() {
    let p = pool_with(gangway_model::Balance::PowerOfTwo, &[1, 1, 1]);
    let entry = PoolEntry::compile(&p, |_, _| Arc::default());
    entry.targets()[0]
        .state
        .observe_latency(std::time::Duration::from_millis(500));
    entry.targets()[0].state.started();
    for i in [1, 2] {
        entry.targets()[i]
            .state
            .observe_latency(std::time::Duration::from_millis(5));
    }
    let slow = picks(&entry, 3000, None)
        .iter()
        .filter(|&&i| i == 0)
        .count();
    // The two draws differ, and the slow target loses every comparison
    // (it is chosen only when the second draw finds no other usable one).
    assert!(slow < 30, "{slow} of 3000 went to the slow target");
}

#[test]
fn consistent_hashing_is_sticky_and_moves_only_the_keys_of_a_removed_target() {
    let p = pool_with(
        gangway_model::Balance::Hash(gangway_model::HashKey::ClientIp),
        &[1, 1, 1],
    );
    let entry = PoolEntry::compile(&p, |_, _| Arc::default());
    let keys: Vec<u64> = (0..3000u32)
        .map(|k| stable_hash(&k.to_le_bytes()))
        .collect();
    let before: Vec<usize> = keys
        .iter()
        .map(|&k| entry.select(&[], 0, Some(k)).unwrap().index)
        .collect();
    // Sticky.
    for (k, t) in keys.iter().zip(&before) {
        assert_eq!(entry.select(&[], 0, Some(*k)).unwrap().index, *t);
    }
    // Spread: each target holds a fair share.
    for t in 0..3 {
        let share = before.iter().filter(|&&i| i == t).count();
        assert!((700..1300).contains(&share), "target {t}: {share} of 3000");
    }
    // Target 10.0.0.2 removed: only its keys move.
    let mut smaller = p.clone();
    smaller.targets.remove(1);
    let entry2 = PoolEntry::compile(&smaller, |_, _| Arc::default());
    let addr = |e: &PoolEntry, i: usize| e.targets()[i].addr;
    for (k, t) in keys.iter().zip(&before) {
        let now_at = addr(&entry2, entry2.select(&[], 0, Some(*k)).unwrap().index);
        if *t != 1 {
            assert_eq!(now_at, addr(&entry, *t), "a key of a kept target moved");
        }
    }
    // An ejected target's keys go elsewhere; the others stay.
    let policy = entry.failover().clone();
    for _ in 0..policy.max_failures {
        entry.targets()[0]
            .state
            .failed(FailureKind::Connect, &policy, 0);
    }
    for (k, t) in keys.iter().zip(&before) {
        let i = entry.select(&[], 0, Some(*k)).unwrap().index;
        if *t == 0 {
            assert_ne!(i, 0);
        } else {
            assert_eq!(i, *t);
        }
    }
}
