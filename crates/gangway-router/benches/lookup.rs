//! Benchmarks of the routing table on a large deployment: 10,000 exact
//! hosts with 20 path routes each, a wildcard host per ten of them
//! (`*.tenantN.example.com`) and 100 regular-expression routes, some on
//! hosts of their own and some on `*.example.com`, which covers every
//! exact host.
//!
//! `lookup/*` measures one `RouteTable::lookup` per iteration, `compile/*`
//! one `RouteTable::compile` of the whole snapshot, and `lookup_scaling/*`
//! the same exact-host lookups (to 100 different hosts) on tables of 100,
//! 10,000 and 100,000 hosts, which should cost the same on all three.
//!
//! Run with `cargo bench -p gangway-router --bench lookup`.

// The allocator the gangway binary ships with: compiling a table is mostly
// allocation, so the figures depend on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use gangway_model::{Fragment, PathMatch, Pool, Route, Snapshot, Source, Target, TargetOrigin};
use gangway_router::{Lookup, RequestInfo, RouteTable};
use http::{HeaderMap, Method};
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The number of exact hosts of the main table.
const HOSTS: usize = 10_000;
/// How many requests a lookup benchmark cycles through: to as many
/// different hosts, so it does not measure one host whose entries stay in
/// the closest cache.
const ROTATION: usize = 1_024;
/// How many different hosts the scaling benchmarks cycle through: the same
/// on every table, so only the size of the table differs.
const SCALING_ACTIVE: usize = 100;

/// The 20 path conditions of every exact host: 4 exact paths and 16
/// prefixes of varying length. A tuple's third field lists the methods the
/// route is restricted to (empty: any).
const HOST_PATHS: [(&str, bool, &[&str]); 20] = [
    ("/", true, &[]),
    ("/healthz", true, &[]),
    ("/login", true, &["GET", "POST"]),
    ("/favicon.ico", true, &[]),
    ("/api", false, &[]),
    ("/api/v1", false, &[]),
    ("/api/v1/users", false, &[]),
    ("/api/v1/orders", false, &["GET", "POST"]),
    ("/api/v2", false, &[]),
    ("/api/v2/users", false, &[]),
    ("/static", false, &[]),
    ("/static/img", false, &[]),
    ("/assets", false, &[]),
    ("/users", false, &[]),
    ("/users/profile", false, &[]),
    ("/users/settings", false, &[]),
    ("/admin", false, &["GET", "POST", "PUT", "DELETE"]),
    ("/docs", false, &[]),
    ("/blog", false, &[]),
    ("/", false, &[]),
];

/// The path of the exact-host benchmarks and the route it must reach:
/// `/api/v1` is tried after the 4 exact paths and the 6 longer prefixes
/// (/users/settings, /api/v1/orders, /users/profile, /api/v1/users,
/// /api/v2/users, /static/img), so it is the 11th of the host's 30
/// candidates.
const EXACT_PATH: &str = "/api/v1/products/42";
const EXACT_ROUTE: usize = 5;

/// Regular expressions of the hosts `reK.example.com` (10 hosts, 9 each).
/// Each also has two prefix routes, tried after the expressions.
const REGEX_HOSTS: usize = 10;
const HOST_REGEXES: [&str; 9] = [
    r"^/(?P<lang>[a-z]{2})/products/(?P<id>[0-9]+)$",
    r"^/img/(?P<w>[0-9]+)x(?P<h>[0-9]+)/(?P<file>.+)\.(png|jpe?g|webp)$",
    r"^/users/(?P<id>[0-9]+)/avatar$",
    r"^/v(?P<major>[0-9]+)/(?P<rest>.*)$",
    r"^/blog/(?P<year>[0-9]{4})/(?P<month>[0-9]{2})/(?P<slug>[a-z0-9-]+)\.html$",
    r"^/download/(?P<name>[^/]+)-(?P<version>[0-9.]+)\.tar\.gz$",
    r"^/(?P<controller>[a-z0-9-]+)/(?P<module>[a-z0-9-]+)/(?P<site>[a-z0-9]+\.(htm|html))$",
    r"^/feeds/(?P<feed>[a-z]+)\.(rss|atom)$",
    r"^/k(?P<k>[0-9]+)/(?P<tail>.*)$",
];
/// Regular expressions on `*.example.com`, so they are candidates of every
/// exact host too (after its own routes).
const SHARED_REGEXES: [&str; 10] = [
    r"^/\.well-known/acme-challenge/(?P<token>[A-Za-z0-9_-]+)$",
    r"^/\.well-known/(?P<doc>security|change-password)(\.txt)?$",
    r"^/robots\.txt$",
    r"^/sitemap(?P<n>[0-9]*)\.xml$",
    r"^/share/(?P<code>[A-Za-z0-9]{8})$",
    r"^/p/(?P<id>[0-9a-f]{24})$",
    r"^/(?P<tenant>[a-z]+)/embed/(?P<widget>[a-z-]+)\.js$",
    r"^/cdn-cgi/(?P<rest>.*)$",
    r"^/_next/static/(?P<build>[A-Za-z0-9_-]+)/(?P<file>.+)$",
    r"^/ping/(?P<id>[0-9]+)$",
];
/// The regex benchmark's path: only `HOST_REGEXES[4]` matches it, after
/// the 4 expressions before it have been tried and failed.
const REGEX_PATH: &str = "/blog/2024/05/hello-world-again.html";
const REGEX_ROUTE: usize = 4;

/// The wildcard routes of `*.tenantN.example.com`, one host per ten exact
/// hosts.
const TENANT_PATHS: [(&str, bool); 5] = [
    ("/healthz", true),
    ("/api", false),
    ("/api/v1", false),
    ("/static", false),
    ("/", false),
];
const WILDCARD_HOST: &str = "a.b.tenant42.example.com";
const WILDCARD_PATH: &str = "/api/v1/items";

fn target(n: usize, port: u16) -> Target {
    let [_, a, b, c] = (n as u32).to_be_bytes();
    Target {
        addr: SocketAddr::from(([10, a, b, c], port)),
        origin: TargetOrigin {
            name: format!("web-{n}-{port}"),
            id: format!("{n:012x}{port:04x}"),
        },
        weight: 1,
    }
}

fn pool(name: String, n: usize) -> Pool {
    Pool {
        failover: Default::default(),
        timeouts: Default::default(),
        balance: Default::default(),
        health: None,
        upstream: Default::default(),
        name,
        targets: vec![target(n, 8080), target(n, 8081)],
    }
}

fn route(name: String, host: &str, pool: &str, path: PathMatch) -> Route {
    let mut route = Route::forward(name, vec![host.to_owned()], pool);
    route.matcher.path = Some(path);
    route
}

fn exact_host(i: usize) -> String {
    format!("svc{i}.example.com")
}

/// The name, in the snapshot, of the `j`th route of exact host `i`.
fn exact_route_name(i: usize, j: usize) -> String {
    format!("file/svc{i}-{j:02}")
}

/// A snapshot of `hosts` exact hosts with 20 routes each, `hosts / 10`
/// wildcard tenants with 5 routes each, and 100 regex routes.
fn snapshot(hosts: usize) -> Arc<Snapshot> {
    let tenants = (hosts / 10).max(1);
    let mut fragment = Fragment::empty(Source::File);
    fragment.routes.reserve(hosts * 20 + tenants * 5 + 200);
    for i in 0..hosts {
        let host = exact_host(i);
        let pool_name = format!("svc{i}");
        for (j, (path, exact, methods)) in HOST_PATHS.iter().enumerate() {
            let path = if *exact {
                PathMatch::Exact((*path).to_owned())
            } else {
                PathMatch::prefix(path)
            };
            let mut r = route(format!("svc{i}-{j:02}"), &host, &pool_name, path);
            r.matcher.methods = methods.iter().map(|m| (*m).to_owned()).collect();
            fragment.routes.push(r);
        }
        fragment.pools.push(pool(pool_name, i));
    }
    for t in 0..tenants {
        let host = format!("*.tenant{t}.example.com");
        let pool_name = format!("tenant{t}");
        for (j, (path, exact)) in TENANT_PATHS.iter().enumerate() {
            let path = if *exact {
                PathMatch::Exact((*path).to_owned())
            } else {
                PathMatch::prefix(path)
            };
            fragment
                .routes
                .push(route(format!("tenant{t}-{j}"), &host, &pool_name, path));
        }
        fragment.pools.push(pool(pool_name, hosts + t));
    }
    for k in 0..REGEX_HOSTS {
        let host = format!("re{k}.example.com");
        let pool_name = format!("re{k}");
        for (j, re) in HOST_REGEXES.iter().enumerate() {
            let path = PathMatch::Regex((*re).to_owned());
            fragment
                .routes
                .push(route(format!("re{k}-r{j}"), &host, &pool_name, path));
        }
        for (j, prefix) in ["/api", "/static"].iter().enumerate() {
            let path = PathMatch::prefix(prefix);
            fragment
                .routes
                .push(route(format!("re{k}-p{j}"), &host, &pool_name, path));
        }
        fragment.pools.push(pool(pool_name, hosts + tenants + k));
    }
    for (j, re) in SHARED_REGEXES.iter().enumerate() {
        let path = PathMatch::Regex((*re).to_owned());
        fragment.routes.push(route(
            format!("shared-r{j}"),
            "*.example.com",
            "shared",
            path,
        ));
    }
    fragment
        .pools
        .push(pool("shared".into(), hosts + tenants + REGEX_HOSTS));
    Arc::new(Snapshot::build(1, "bench", &[fragment]))
}

fn compile(snapshot: &Arc<Snapshot>) -> RouteTable {
    let (table, errors) = RouteTable::compile(Arc::clone(snapshot), &RouteTable::default());
    assert!(errors.is_empty(), "{errors:?}");
    table
}

fn request<'a>(
    host: &'a str,
    path: &'a str,
    method: &'a Method,
    headers: &'a HeaderMap,
) -> RequestInfo<'a> {
    RequestInfo {
        host,
        path,
        query: None,
        method,
        headers,
        port: 80,
        websocket: false,
    }
}

/// The name of the route a request reaches, for checking the set-up.
fn chosen(table: &RouteTable, host: &str, path: &str) -> Option<String> {
    let headers = HeaderMap::new();
    match table.lookup(&request(host, path, &Method::GET, &headers)) {
        Lookup::Route(route, _) => Some(route.name().to_owned()),
        Lookup::NoRoute => None,
    }
}

/// `ROTATION` requests to `active` different exact hosts spread evenly over
/// a table of `hosts` hosts, with their expected routes.
fn rotation(hosts: usize, active: usize) -> Vec<(String, String)> {
    let stride = (hosts / active).max(1);
    (0..ROTATION)
        .map(|n| {
            let i = (n % active * stride) % hosts;
            (exact_host(i), exact_route_name(i, EXACT_ROUTE))
        })
        .collect()
}

/// Measures exact host + prefix path lookups cycling through `hosts`.
fn bench_exact(b: &mut criterion::Bencher<'_>, table: &RouteTable, hosts: &[(String, String)]) {
    for (host, want) in hosts {
        assert_eq!(chosen(table, host, EXACT_PATH).as_ref(), Some(want));
    }
    let headers = HeaderMap::new();
    let hosts: Vec<&str> = hosts.iter().map(|(h, _)| h.as_str()).collect();
    let mut n = 0usize;
    b.iter(|| {
        let host = hosts[n % ROTATION];
        n = n.wrapping_add(1);
        let req = request(host, EXACT_PATH, &Method::GET, &headers);
        black_box(table.lookup(black_box(&req)))
    });
}

fn benches(c: &mut Criterion) {
    let snap = snapshot(HOSTS);
    let table = compile(&snap);
    eprintln!(
        "table: {} routes, {} host patterns",
        table.routes().len(),
        table.host_count()
    );
    let headers = HeaderMap::new();
    let exact_hosts = rotation(HOSTS, ROTATION);

    let mut group = c.benchmark_group("lookup");
    group.bench_function("exact_host_prefix_path", |b| {
        bench_exact(b, &table, &exact_hosts)
    });

    group.bench_function("wildcard_host", |b| {
        assert_eq!(
            chosen(&table, WILDCARD_HOST, WILDCARD_PATH).as_deref(),
            Some("file/tenant42-2")
        );
        b.iter(|| {
            let req = request(WILDCARD_HOST, WILDCARD_PATH, &Method::GET, &headers);
            black_box(table.lookup(black_box(&req)))
        });
    });

    group.bench_function("regex_route", |b| {
        let host = "re3.example.com";
        assert_eq!(
            chosen(&table, host, REGEX_PATH),
            Some(format!("file/re3-r{REGEX_ROUTE}"))
        );
        b.iter(|| {
            let req = request(host, REGEX_PATH, &Method::GET, &headers);
            black_box(table.lookup(black_box(&req)))
        });
    });

    group.bench_function("miss", |b| {
        let host = "unknown.example.org";
        assert_eq!(chosen(&table, host, EXACT_PATH), None);
        b.iter(|| {
            let req = request(host, EXACT_PATH, &Method::GET, &headers);
            black_box(table.lookup(black_box(&req)))
        });
    });
    group.finish();

    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    // A recompile, as on every configuration change: the counters of every
    // route and target are carried over from the table being replaced.
    let (previous, _) = RouteTable::compile(Arc::clone(&snap), &RouteTable::default());
    group.bench_function("10k_hosts", |b| {
        b.iter_batched(
            || Arc::clone(&snap),
            |snap| RouteTable::compile(black_box(snap), &previous),
            BatchSize::PerIteration,
        )
    });
    // The first compile after start: every counter is created.
    group.bench_function("10k_hosts_first", |b| {
        b.iter_batched(
            || Arc::clone(&snap),
            |snap| RouteTable::compile(black_box(snap), &RouteTable::default()),
            BatchSize::PerIteration,
        )
    });
    group.finish();
    drop(previous);
    drop(snap);

    // The same lookups (to the same number of different hosts) on tables of
    // 100, 10,000 and 100,000 hosts. The big table is built on first use,
    // once.
    let mut group = c.benchmark_group("lookup_scaling");
    let small = compile(&snapshot(100));
    group.bench_function(BenchmarkId::new("exact_host", 100), |b| {
        bench_exact(b, &small, &rotation(100, SCALING_ACTIVE))
    });
    group.bench_function(BenchmarkId::new("exact_host", HOSTS), |b| {
        bench_exact(b, &table, &rotation(HOSTS, SCALING_ACTIVE))
    });
    let mut big: Option<(RouteTable, Vec<(String, String)>)> = None;
    group.bench_function(BenchmarkId::new("exact_host", 100_000), |b| {
        let (table, hosts) = big.get_or_insert_with(|| {
            let table = compile(&snapshot(100_000));
            (table, rotation(100_000, SCALING_ACTIVE))
        });
        bench_exact(b, table, hosts)
    });
    group.finish();
}

criterion_group!(lookup, benches);
criterion_main!(lookup);
