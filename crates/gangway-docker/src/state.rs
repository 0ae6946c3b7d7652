//! What gangway knows about labelled containers, and the fragment of
//! routes that follows from it. Pure: the provider feeds it facts.

use crate::labels::{parse_labels, LabelError, RoutingLabels};
use gangway_model::{Fragment, Pool, Route, Source, Target, TargetOrigin};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

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
}

/// How a container relates to routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// It has no `<prefix>host` label.
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
    /// What its labels ask for.
    pub routing: RoutingLabels,
    /// Its address on the proxy network, while it has one.
    pub ip: Option<IpAddr>,
    /// Running, not paused, and healthy (or without a health check).
    pub serving: bool,
    /// Set between a terminating `kill` and the next `start`: the container
    /// is shutting down even though Docker still reports it running.
    pub stopping: bool,
}

impl Backend {
    /// The address requests go to, if the container serves right now.
    pub fn target(&self) -> Option<SocketAddr> {
        match (self.serving && !self.stopping, self.ip) {
            (true, Some(ip)) => Some(SocketAddr::new(ip, self.routing.port)),
            _ => None,
        }
    }
}

/// Decides what a container means for routing.
pub fn classify(facts: &ContainerFacts, prefix: &str, network: &str) -> Classified {
    let routing = match parse_labels(&facts.labels, prefix) {
        Ok(Some(routing)) => routing,
        Ok(None) => return Classified::NotLabelled,
        Err(error) => return Classified::BadLabels(error),
    };
    let Some(ip) = facts.networks.get(network) else {
        let mut attached: Vec<String> = facts.networks.keys().cloned().collect();
        attached.sort();
        return Classified::OffNetwork { attached };
    };
    let healthy = !matches!(facts.health.as_deref(), Some("starting" | "unhealthy"));
    Classified::Routed(Backend {
        name: facts.name.clone(),
        routing,
        ip: *ip,
        serving: facts.running && !facts.paused && healthy,
        stopping: false,
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

    /// All container ids.
    pub fn ids(&self) -> Vec<String> {
        self.by_id.keys().cloned().collect()
    }

    /// The number of routed containers, and of those serving now.
    pub fn counts(&self) -> (usize, usize) {
        let serving = self.by_id.values().filter(|b| b.target().is_some()).count();
        (self.by_id.len(), serving)
    }

    /// One route and one pool per host. A host whose containers are all
    /// stopped keeps its route with an empty pool, so clients get 503
    /// ("unavailable") rather than 404 ("no such service").
    pub fn fragment(&self) -> Fragment {
        let mut pools: BTreeMap<&str, Vec<Target>> = BTreeMap::new();
        for (id, backend) in &self.by_id {
            for host in &backend.routing.hosts {
                let targets = pools.entry(host.as_str()).or_default();
                if let Some(addr) = backend.target() {
                    targets.push(Target {
                        addr,
                        origin: TargetOrigin {
                            name: backend.name.clone(),
                            id: id.clone(),
                        },
                    });
                }
            }
        }
        let mut fragment = Fragment::empty(Source::Docker);
        for (host, mut targets) in pools {
            targets.sort_by(|a, b| (&a.origin.name, a.addr).cmp(&(&b.origin.name, b.addr)));
            fragment
                .routes
                .push(Route::forward(host, vec![host.to_owned()], host));
            fragment.pools.push(Pool {
                name: host.to_owned(),
                targets,
            });
        }
        fragment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "reverse-proxy.";
    const NET: &str = "proxy";

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
        match classify(facts, PREFIX, NET) {
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
        let fragment = backends.fragment();
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
        assert!(routed(&base).target().is_some());
        let stopped = ContainerFacts {
            running: false,
            ..base.clone()
        };
        assert!(routed(&stopped).target().is_none());
        let paused = ContainerFacts {
            paused: true,
            ..base.clone()
        };
        assert!(routed(&paused).target().is_none());
        for health in ["starting", "unhealthy"] {
            let f = ContainerFacts {
                health: Some(health.into()),
                ..base.clone()
            };
            assert!(routed(&f).target().is_none(), "{health}");
        }
        let healthy = ContainerFacts {
            health: Some("healthy".into()),
            ..base.clone()
        };
        assert!(routed(&healthy).target().is_some());
        let mut stopping = routed(&base);
        stopping.stopping = true;
        assert!(stopping.target().is_none());
    }

    #[test]
    fn a_host_without_serving_containers_keeps_an_empty_pool() {
        let mut backends = Backends::default();
        let f = ContainerFacts {
            running: false,
            ..facts("web", "web.test", "10.0.0.2")
        };
        backends.insert(f.id.clone(), routed(&f));
        let fragment = backends.fragment();
        assert_eq!(fragment.routes[0].matcher.hosts, ["web.test"]);
        assert!(fragment.pools[0].targets.is_empty());
    }

    #[test]
    fn off_network_and_bad_labels_are_classified() {
        let mut f = facts("web", "web.test", "10.0.0.2");
        f.networks = HashMap::from([("bridge".into(), None), ("other".into(), None)]);
        assert_eq!(
            classify(&f, PREFIX, NET),
            Classified::OffNetwork {
                attached: vec!["bridge".into(), "other".into()]
            }
        );
        f.labels.insert("reverse-proxy.port".into(), "abc".into());
        assert!(matches!(
            classify(&f, PREFIX, NET),
            Classified::BadLabels(_)
        ));
        f.labels.clear();
        assert_eq!(classify(&f, PREFIX, NET), Classified::NotLabelled);
    }
}
