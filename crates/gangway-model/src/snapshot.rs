//! Routes, pools and targets, and the immutable snapshot built from the
//! fragments that providers produce.

use crate::balance::Balance;
use crate::failover::{Failover, HealthCheck, Timeouts};
use crate::route::{Action, Route};
use crate::upstream::Upstream;
use serde::Serialize;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

/// Where a piece of configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Labels of Docker containers.
    Docker,
    /// The configuration file (`GANGWAY_CONFIG`).
    File,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Docker => "docker",
            Source::File => "file",
        })
    }
}

/// What a target stands for, so logs and statistics can name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TargetOrigin {
    /// A human name, such as the container's name.
    pub name: String,
    /// A stable identifier, such as the container's id.
    pub id: String,
}

/// One address that serves an upstream pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Target {
    /// Where connections go.
    pub addr: SocketAddr,
    /// What the address belongs to.
    pub origin: TargetOrigin,
    /// Its share under [`Balance::Weighted`] (and of the hash ring);
    /// at least 1.
    pub weight: u32,
}

/// A set of interchangeable targets that share a route's load.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Pool {
    /// Unique within a snapshot; routes refer to pools by this name.
    pub name: String,
    /// The targets; may be empty when every backend is stopped or paused.
    pub targets: Vec<Target>,
    /// What happens when targets fail.
    pub failover: Failover,
    /// Time limits for talking to the targets.
    pub timeouts: Timeouts,
    /// How requests are spread over the targets.
    pub balance: Balance,
    /// The active health check, if any.
    pub health: Option<HealthCheck>,
    /// Protocol and TLS towards the targets.
    pub upstream: Upstream,
}

/// An extra port to serve, declared in the configuration file (the ports
/// of `HTTP_PORT` and `HTTPS_PORT` always exist).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ListenerSpec {
    /// Unique within the file.
    pub name: String,
    /// The port, bound on every IPv4 and IPv6 address.
    pub port: u16,
    /// Certificate and key for HTTPS; `None` for plain HTTP.
    pub tls: Option<ListenerTls>,
    /// Whether a plain listener also takes HTTP/2 with prior knowledge.
    pub h2c: bool,
}

/// The certificate of an HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ListenerTls {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

/// Which responses an error page replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusSet {
    /// One status code, such as 502.
    Code(u16),
    /// A class: 4 for 4xx, 5 for 5xx.
    Class(u8),
}

impl StatusSet {
    /// Whether `status` belongs to the set.
    pub fn contains(self, status: u16) -> bool {
        match self {
            StatusSet::Code(code) => code == status,
            StatusSet::Class(class) => status / 100 == u16::from(class),
        }
    }
}

/// A page served instead of an error response (seed 001's `error_page 500
/// 502 503 504 /50x.html`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ErrorPage {
    /// The statuses it replaces.
    pub statuses: Vec<StatusSet>,
    /// The page, read when the configuration was loaded.
    pub body: String,
    /// Its `Content-Type`.
    pub content_type: String,
}

/// The part of the configuration that one provider owns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Fragment {
    /// The provider that produced this fragment.
    pub source: Source,
    /// Its routes.
    pub routes: Vec<Route>,
    /// The pools its routes refer to.
    pub pools: Vec<Pool>,
    /// Pages for gangway's own errors (and backends' where a route asks).
    pub error_pages: Vec<ErrorPage>,
    /// Extra listeners (only the configuration file declares them).
    pub listeners: Vec<ListenerSpec>,
}

impl Fragment {
    /// An empty fragment of the given source.
    pub fn empty(source: Source) -> Self {
        Fragment {
            source,
            routes: Vec::new(),
            pools: Vec::new(),
            error_pages: Vec::new(),
            listeners: Vec::new(),
        }
    }
}

/// The whole configuration at one moment: immutable, numbered, and tagged
/// with its cause and a checksum of its content.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// Increases by one with every snapshot built by this process.
    pub number: u64,
    /// Why this snapshot exists ("container web-2 started").
    pub cause: String,
    /// A stable hash of the routes and pools, to tell whether two snapshots differ.
    pub checksum: u64,
    /// All routes, in the order of the fragments they came from.
    pub routes: Vec<Route>,
    /// All pools.
    pub pools: Vec<Pool>,
    /// All error pages; for a status, the first page that lists it wins.
    pub error_pages: Vec<ErrorPage>,
}

impl Snapshot {
    /// Merges fragments into a snapshot. Route and pool names are prefixed
    /// with their source (`docker/…`, `file/…`) so two providers never
    /// collide; a route's pool reference without a `/` names a pool of its
    /// own fragment, one with a `/` names a pool of any source.
    pub fn build(number: u64, cause: impl Into<String>, fragments: &[Fragment]) -> Snapshot {
        let mut routes = Vec::new();
        let mut pools = Vec::new();
        let mut error_pages = Vec::new();
        for fragment in fragments {
            let source = fragment.source;
            routes.extend(fragment.routes.iter().map(|r| {
                let mut route = r.clone();
                route.name = format!("{source}/{}", r.name);
                if let Action::Forward { pool } = &mut route.action {
                    *pool = qualified_pool_name(source, pool);
                }
                route
            }));
            pools.extend(fragment.pools.iter().map(|p| Pool {
                name: format!("{source}/{}", p.name),
                ..p.clone()
            }));
            error_pages.extend(fragment.error_pages.iter().cloned());
        }
        let mut hasher = Fnv1a::default();
        routes.hash(&mut hasher);
        pools.hash(&mut hasher);
        error_pages.hash(&mut hasher);
        Snapshot {
            number,
            cause: cause.into(),
            checksum: hasher.finish(),
            routes,
            pools,
            error_pages,
        }
    }

    /// The number of targets over all pools.
    pub fn target_count(&self) -> usize {
        self.pools.iter().map(|p| p.targets.len()).sum()
    }
}

/// The snapshot-wide name of a pool that a route of `source` refers to.
pub fn qualified_pool_name(source: Source, pool: &str) -> String {
    if pool.contains('/') {
        pool.to_owned()
    } else {
        format!("{source}/{pool}")
    }
}

/// FNV-1a: a hash whose output does not change between Rust releases, so a
/// checksum means the same thing in every build.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(host: &str, addr: &str) -> Fragment {
        Fragment {
            source: Source::Docker,
            routes: vec![Route::forward(host, vec![host.into()], host)],
            pools: vec![Pool {
                name: host.into(),
                targets: vec![Target {
                    addr: addr.parse().unwrap(),
                    origin: TargetOrigin {
                        name: "web".into(),
                        id: "abc".into(),
                    },
                    weight: 1,
                }],
                failover: Failover::default(),
                timeouts: Timeouts::default(),
                balance: Balance::default(),
                health: None,
                upstream: Default::default(),
            }],
            error_pages: Vec::new(),
            listeners: Vec::new(),
        }
    }

    #[test]
    fn pools_are_namespaced_by_source() {
        let snap = Snapshot::build(1, "test", &[fragment("a.test", "10.0.0.1:80")]);
        assert_eq!(snap.routes[0].name, "docker/a.test");
        assert_eq!(
            snap.routes[0].action,
            Action::Forward {
                pool: "docker/a.test".into()
            }
        );
        assert_eq!(snap.pools[0].name, "docker/a.test");
        assert_eq!(snap.target_count(), 1);
    }

    #[test]
    fn checksum_follows_content_not_number() {
        let a = Snapshot::build(1, "x", &[fragment("a.test", "10.0.0.1:80")]);
        let b = Snapshot::build(2, "y", &[fragment("a.test", "10.0.0.1:80")]);
        let c = Snapshot::build(3, "z", &[fragment("a.test", "10.0.0.2:80")]);
        assert_eq!(a.checksum, b.checksum);
        assert_ne!(a.checksum, c.checksum);
    }
}
