//! What gangway knows about labelled containers, and the fragment of
//! routes that follows from it. Pure: the provider feeds it facts.

use crate::labels::{parse_labels, LabelError, RouteLabels};
use gangway_model::{
    Action, Balance, FieldMatch, Fragment, PathMatch, Pool, Rewrite, Route, Source, Target,
    TargetOrigin, Upstream,
};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

/// The facts about one container that routing depends on, as read from
/// `GET /containers/{id}/json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerFacts {
    /// The full container id.
    pub id: String,
    /// The name, without Docker's leading `/`.
    pub name: String,
    /// All labels.
    pub labels: HashMap<String, String>,
    /// Whether the process runs.
    pub running: bool,
    /// Whether the container is paused.
    pub paused: bool,
    /// Docker's health status (`starting`, `healthy`, `unhealthy`), if the
    /// image defines a health check.
    pub health: Option<String>,
    /// The networks the container is attached to, with its address on each
    /// (none while it is stopped).
    pub networks: HashMap<String, Option<IpAddr>>,
    /// When its process last started.
    pub started_at: Option<SystemTime>,
}

/// How a container relates to routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// It has no label under the prefix.
    NotLabelled,
    /// Its labels are wrong; it is skipped.
    BadLabels(LabelError),
    /// It is labelled but not attached to the proxy network.
    OffNetwork {
        /// The networks it is attached to.
        attached: Vec<String>,
    },
    /// It belongs in the routing table.
    Routed(Backend),
}

/// A labelled container on the proxy network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Container name.
    pub name: String,
    /// The routes its labels ask for.
    pub routes: Vec<RouteLabels>,
    /// Its address on the proxy network, while it has one.
    pub ip: Option<IpAddr>,
    /// Running, not paused, and healthy (or without a health check).
    pub serving: bool,
    /// Set between a terminating `kill` and the next `start`: the container
    /// is shutting down even though Docker still reports it running.
    pub stopping: bool,
    /// Routed while `starting` until this moment (`route-while-starting`):
    /// then it is inspected again.
    pub grace_until: Option<SystemTime>,
}

impl Backend {
    /// The address requests go to, if the container serves right now.
    pub fn serving_ip(&self) -> Option<IpAddr> {
        self.ip.filter(|_| self.serving && !self.stopping)
    }

    /// The addresses of its routes while it serves (one per distinct port).
    pub fn targets(&self) -> Vec<SocketAddr> {
        let Some(ip) = self.serving_ip() else {
            return Vec::new();
        };
        let mut out: Vec<SocketAddr> = self
            .routes
            .iter()
            .map(|r| SocketAddr::new(ip, r.port))
            .collect();
        out.dedup();
        out
    }

    /// Every host of every route, for logs.
    pub fn hosts(&self) -> Vec<&str> {
        let mut hosts: Vec<&str> = self
            .routes
            .iter()
            .flat_map(|r| r.hosts.iter().map(String::as_str))
            .collect();
        hosts.dedup();
        hosts
    }
}

/// Decides what a container means for routing.
pub fn classify(
    facts: &ContainerFacts,
    prefix: &str,
    network: &str,
    now: SystemTime,
) -> Classified {
    let routes = match parse_labels(&facts.labels, prefix) {
        Ok(routes) if routes.is_empty() => return Classified::NotLabelled,
        Ok(routes) => routes,
        Err(error) => return Classified::BadLabels(error),
    };
    let Some(ip) = facts.networks.get(network) else {
        let mut attached: Vec<String> = facts.networks.keys().cloned().collect();
        attached.sort();
        return Classified::OffNetwork { attached };
    };
    // A container whose health check still says `starting` is routed only
    // when its labels opt in, and only for the grace they give.
    let grace = routes.iter().filter_map(|r| r.starting_grace).max();
    let mut grace_until = None;
    let healthy = match facts.health.as_deref() {
        Some("unhealthy") => false,
        Some("starting") => match (grace, facts.started_at) {
            (Some(grace), Some(started)) if now < started + grace => {
                grace_until = Some(started + grace);
                true
            }
            _ => false,
        },
        _ => true,
    };
    Classified::Routed(Backend {
        name: facts.name.clone(),
        routes,
        ip: *ip,
        serving: facts.running && !facts.paused && healthy,
        stopping: false,
        grace_until,
    })
}

/// The routed containers, by id.
#[derive(Debug, Default)]
pub struct Backends {
    by_id: BTreeMap<String, Backend>,
}

impl Backends {
    /// The backend with this container id.
    pub fn get(&self, id: &str) -> Option<&Backend> {
        self.by_id.get(id)
    }

    /// Whether the container id is routed.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// Sets or replaces a backend; returns the previous one.
    pub fn insert(&mut self, id: String, backend: Backend) -> Option<Backend> {
        self.by_id.insert(id, backend)
    }

    /// Forgets a container; returns what was known of it.
    pub fn remove(&mut self, id: &str) -> Option<Backend> {
        self.by_id.remove(id)
    }

    /// Changes a backend in place; returns its state before and after.
    pub fn update(
        &mut self,
        id: &str,
        change: impl FnOnce(&mut Backend),
    ) -> Option<(Backend, Backend)> {
        let backend = self.by_id.get_mut(id)?;
        let before = backend.clone();
        change(backend);
        Some((before, backend.clone()))
    }

    /// The containers routed on a grace that has ended by `now`, and the
    /// end of the next grace still running.
    pub fn graces(&self, now: SystemTime) -> (Vec<String>, Option<SystemTime>) {
        let mut ended = Vec::new();
        let mut next = None;
        for (id, b) in &self.by_id {
            match b.grace_until {
                Some(t) if t <= now => ended.push(id.clone()),
                Some(t) => next = Some(next.map_or(t, |n: SystemTime| n.min(t))),
                None => {}
            }
        }
        (ended, next)
    }

    /// All container ids.
    pub fn ids(&self) -> Vec<String> {
        self.by_id.keys().cloned().collect()
    }

    /// The number of routed containers, and of those serving now.
    pub fn counts(&self) -> (usize, usize) {
        let serving = self
            .by_id
            .values()
            .filter(|b| b.serving_ip().is_some())
            .count();
        (self.by_id.len(), serving)
    }

    /// The routes and pools of all containers. Containers whose routes
    /// have the same conditions (host, path, methods, headers, priority)
    /// and the same settings share one route and pool: that is how several
    /// containers with one host share the load. A host whose containers
    /// are all stopped keeps its route with an empty pool, so clients get
    /// 503 ("unavailable") rather than 404 ("no such service"). Routes with
    /// the same conditions but different settings conflict: the first
    /// container (by name) keeps the route, the others are reported.
    pub fn fragment(&self, ports: ListenerPorts) -> (Fragment, Vec<Conflict>) {
        let mut by_name: Vec<(&String, &Backend)> = self.by_id.iter().collect();
        by_name.sort_by(|a, b| (&a.1.name, a.0).cmp(&(&b.1.name, b.0)));

        let mut units: BTreeMap<UnitKey, Unit> = BTreeMap::new();
        let mut conflicts = Vec::new();
        for (id, backend) in by_name {
            let ip = backend.serving_ip();
            for labels in &backend.routes {
                for host in &labels.hosts {
                    let key = UnitKey {
                        host: host.clone(),
                        path: labels.path.clone(),
                        methods: labels.methods.clone(),
                        headers: labels.headers.clone(),
                        priority: labels.priority,
                    };
                    let settings = UnitSettings {
                        strip_prefix: labels.strip_prefix.clone(),
                        redirect_to_https: labels.redirect_to_https,
                        balance: labels.balance.clone(),
                        max_body_size: labels.max_body_size,
                        upstream: labels.upstream.clone(),
                    };
                    let unit = units.entry(key.clone()).or_insert_with(|| Unit {
                        settings: settings.clone(),
                        owner: backend.name.clone(),
                        targets: Vec::new(),
                    });
                    if unit.settings != settings {
                        conflicts.push(Conflict {
                            host: host.clone(),
                            path: describe_path(labels.path.as_ref()),
                            kept: unit.owner.clone(),
                            skipped: backend.name.clone(),
                        });
                        continue;
                    }
                    if let Some(ip) = ip {
                        unit.targets.push(Target {
                            addr: SocketAddr::new(ip, labels.port),
                            origin: TargetOrigin {
                                name: backend.name.clone(),
                                id: id.clone(),
                            },
                            weight: labels.weight,
                        });
                    }
                }
            }
        }

        let mut fragment = Fragment::empty(Source::Docker);
        let mut used = std::collections::HashSet::new();
        for (key, mut unit) in units {
            let name = unique_name(&key, &mut used);
            unit.targets
                .sort_by(|a, b| (&a.origin.name, a.addr).cmp(&(&b.origin.name, b.addr)));
            unit.targets.dedup();
            let mut route = Route::forward(&name, vec![key.host.clone()], &name);
            route.priority = key.priority;
            route.matcher.path = key.path.clone();
            route.matcher.methods = key.methods.clone();
            route.matcher.headers = key.headers.clone();
            route.rewrite = unit.settings.strip_prefix.clone().map(Rewrite::StripPrefix);
            route.max_body_size = unit.settings.max_body_size;
            if unit.settings.redirect_to_https {
                let mut redirect = route.clone();
                redirect.name = format!("{name}.to-https");
                redirect.matcher.ports = vec![ports.http];
                redirect.rewrite = None;
                let port = match ports.https {
                    443 => String::new(),
                    p => format!(":{p}"),
                };
                redirect.action = Action::Redirect {
                    status: 308,
                    location: format!("https://$host{port}$request_uri"),
                };
                fragment.routes.push(redirect);
            }
            fragment.routes.push(route);
            fragment.pools.push(Pool {
                name,
                targets: unit.targets,
                failover: Default::default(),
                timeouts: Default::default(),
                balance: unit.settings.balance,
                health: None,
                upstream: unit.settings.upstream,
            });
        }
        (fragment, conflicts)
    }
}

/// The listener ports a redirect to HTTPS needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerPorts {
    /// Requests on this port are redirected (`HTTP_PORT`).
    pub http: u16,
    /// To this one (`HTTPS_PORT`).
    pub https: u16,
}

/// Two containers that claim the same route with different settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The host.
    pub host: String,
    /// The path condition, described.
    pub path: String,
    /// The container whose settings are used.
    pub kept: String,
    /// The container whose route was left out.
    pub skipped: String,
}

/// What makes two containers' routes one route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct UnitKey {
    host: String,
    path: Option<PathMatch>,
    methods: Vec<String>,
    headers: Vec<FieldMatch>,
    priority: i32,
}

/// What containers sharing a route must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UnitSettings {
    strip_prefix: Option<String>,
    redirect_to_https: bool,
    balance: Balance,
    max_body_size: Option<u64>,
    upstream: Upstream,
}

struct Unit {
    settings: UnitSettings,
    owner: String,
    targets: Vec<Target>,
}

fn describe_path(path: Option<&PathMatch>) -> String {
    match path {
        None => "any path".into(),
        Some(PathMatch::Prefix(p)) => format!("prefix {p}"),
        Some(PathMatch::Exact(p)) => format!("exactly {p}"),
        Some(PathMatch::Regex(r)) => format!("regex {r}"),
    }
}

/// A route name from the host and path (`web.test`, `web.test_api`),
/// made unique with a counter.
fn unique_name(key: &UnitKey, used: &mut std::collections::HashSet<String>) -> String {
    let mut base: String = key.host.replace('*', "_");
    if let Some(PathMatch::Prefix(p) | PathMatch::Exact(p)) = &key.path {
        base.push_str(&p.replace('/', "_"));
    } else if key.path.is_some() {
        base.push_str("_regex");
    }
    let base: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let mut name = base.clone();
    let mut n = 1;
    while !used.insert(name.clone()) {
        n += 1;
        name = format!("{base}-{n}");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "reverse-proxy.";
    const NET: &str = "proxy";
    const PORTS: ListenerPorts = ListenerPorts {
        http: 8080,
        https: 8443,
    };

    fn facts(name: &str, host: &str, ip: &str) -> ContainerFacts {
        ContainerFacts {
            id: format!("id-{name}"),
            name: name.into(),
            labels: HashMap::from([("reverse-proxy.host".into(), host.into())]),
            running: true,
            networks: HashMap::from([(NET.into(), Some(ip.parse().unwrap()))]),
            ..ContainerFacts::default()
        }
    }

    fn routed(facts: &ContainerFacts) -> Backend {
        match classify(facts, PREFIX, NET, SystemTime::now()) {
            Classified::Routed(backend) => backend,
            other => panic!("not routed: {other:?}"),
        }
    }

    #[test]
    fn containers_sharing_a_host_share_a_pool() {
        let mut backends = Backends::default();
        for (name, ip) in [("web-2", "10.0.0.3"), ("web-1", "10.0.0.2")] {
            let f = facts(name, "web.test", ip);
            backends.insert(f.id.clone(), routed(&f));
        }
        let (fragment, conflicts) = backends.fragment(PORTS);
        assert!(conflicts.is_empty());
        assert_eq!(fragment.routes.len(), 1);
        let names: Vec<&str> = fragment.pools[0]
            .targets
            .iter()
            .map(|t| t.origin.name.as_str())
            .collect();
        assert_eq!(names, ["web-1", "web-2"]);
        assert_eq!(
            fragment.pools[0].targets[0].addr,
            "10.0.0.2:80".parse().unwrap()
        );
    }

    #[test]
    fn stopped_paused_unhealthy_and_stopping_containers_do_not_serve() {
        let base = facts("web", "web.test", "10.0.0.2");
        assert!(routed(&base).serving_ip().is_some());
        let stopped = ContainerFacts {
            running: false,
            ..base.clone()
        };
        assert!(routed(&stopped).serving_ip().is_none());
        let paused = ContainerFacts {
            paused: true,
            ..base.clone()
        };
        assert!(routed(&paused).serving_ip().is_none());
        for health in ["starting", "unhealthy"] {
            let f = ContainerFacts {
                health: Some(health.into()),
                ..base.clone()
            };
            assert!(routed(&f).serving_ip().is_none(), "{health}");
        }
        let healthy = ContainerFacts {
            health: Some("healthy".into()),
            ..base.clone()
        };
        assert!(routed(&healthy).serving_ip().is_some());
        let mut stopping = routed(&base);
        stopping.stopping = true;
        assert!(stopping.serving_ip().is_none());
    }

    #[test]
    fn a_host_without_serving_containers_keeps_an_empty_pool() {
        let mut backends = Backends::default();
        let f = ContainerFacts {
            running: false,
            ..facts("web", "web.test", "10.0.0.2")
        };
        backends.insert(f.id.clone(), routed(&f));
        let (fragment, _) = backends.fragment(PORTS);
        assert_eq!(fragment.routes[0].matcher.hosts, ["web.test"]);
        assert!(fragment.pools[0].targets.is_empty());
    }

    #[test]
    fn off_network_and_bad_labels_are_classified() {
        let mut f = facts("web", "web.test", "10.0.0.2");
        f.networks = HashMap::from([("bridge".into(), None), ("other".into(), None)]);
        assert_eq!(
            classify(&f, PREFIX, NET, SystemTime::now()),
            Classified::OffNetwork {
                attached: vec!["bridge".into(), "other".into()]
            }
        );
        f.labels.insert("reverse-proxy.port".into(), "abc".into());
        assert!(matches!(
            classify(&f, PREFIX, NET, SystemTime::now()),
            Classified::BadLabels(_)
        ));
        f.labels.clear();
        assert_eq!(
            classify(&f, PREFIX, NET, SystemTime::now()),
            Classified::NotLabelled
        );
    }

    #[test]
    fn conflicting_settings_keep_the_first_container_and_report_the_other() {
        let mut backends = Backends::default();
        let mut a = facts("a-web", "web.test", "10.0.0.2");
        a.labels.insert("reverse-proxy.path".into(), "/api".into());
        let mut b = facts("b-web", "web.test", "10.0.0.3");
        b.labels.insert("reverse-proxy.path".into(), "/api".into());
        b.labels
            .insert("reverse-proxy.strip-prefix".into(), "true".into());
        for f in [&a, &b] {
            backends.insert(f.id.clone(), routed(f));
        }
        let (fragment, conflicts) = backends.fragment(PORTS);
        assert_eq!(
            conflicts,
            [Conflict {
                host: "web.test".into(),
                path: "prefix /api".into(),
                kept: "a-web".into(),
                skipped: "b-web".into(),
            }]
        );
        assert_eq!(fragment.pools[0].targets.len(), 1);
        assert_eq!(fragment.routes[0].name, "web.test_api");
        assert_eq!(fragment.routes[0].rewrite, None);
    }

    #[test]
    fn named_routes_and_redirect_to_https() {
        let mut backends = Backends::default();
        let mut f = facts("app", "app.test", "10.0.0.2");
        f.labels
            .insert("reverse-proxy.redirect-to-https".into(), "true".into());
        f.labels
            .insert("reverse-proxy.admin.host".into(), "admin.test".into());
        f.labels
            .insert("reverse-proxy.admin.port".into(), "9090".into());
        backends.insert(f.id.clone(), routed(&f));
        let (fragment, _) = backends.fragment(PORTS);
        let names: Vec<&str> = fragment.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["admin.test", "app.test.to-https", "app.test"]);
        assert_eq!(
            fragment.routes[1].action,
            Action::Redirect {
                status: 308,
                location: "https://$host:8443$request_uri".into()
            }
        );
        assert_eq!(fragment.routes[1].matcher.ports, [8080]);
        let admin = fragment
            .pools
            .iter()
            .find(|p| p.name == "admin.test")
            .unwrap();
        assert_eq!(admin.targets[0].addr, "10.0.0.2:9090".parse().unwrap());
    }

    #[test]
    fn a_starting_container_is_routed_only_within_its_opt_in_grace() {
        let started = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let mut f = facts("slow", "slow.test", "10.0.0.2");
        f.health = Some("starting".into());
        f.started_at = Some(started);
        let at = |secs| started + std::time::Duration::from_secs(secs);
        let serving = |f: &ContainerFacts, now| match classify(f, PREFIX, NET, now) {
            Classified::Routed(b) => b.serving_ip().is_some(),
            other => panic!("{other:?}"),
        };
        assert!(!serving(&f, at(5)), "no opt-in: not routed while starting");
        f.labels
            .insert("reverse-proxy.route-while-starting".into(), "30s".into());
        assert!(serving(&f, at(5)));
        assert!(!serving(&f, at(31)), "the grace is over");
        f.health = Some("healthy".into());
        assert!(serving(&f, at(31)));
    }
}
