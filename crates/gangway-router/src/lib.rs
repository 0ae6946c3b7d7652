//! The routing table: a [`Snapshot`] compiled into the form the request path
//! reads. Compiling does every piece of work that does not depend on the
//! request (host keys, upstream authorities), so a lookup is one hash probe.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod pool;

pub use pool::{PoolEntry, TargetEntry};

use gangway_model::{normalize_host, Snapshot, MAX_HOST_LEN};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// What a lookup found for a request's host.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// No route serves this host.
    UnknownHost,
    /// A route serves this host; its pool may still have no targets.
    Pool(&'a Arc<PoolEntry>),
}

/// A compiled, immutable routing table.
#[derive(Debug, Default)]
pub struct RouteTable {
    hosts: FxHashMap<Box<str>, Arc<PoolEntry>>,
    snapshot_number: u64,
}

impl RouteTable {
    /// Compiles a snapshot. When two routes claim the same host, the first
    /// one in the snapshot wins.
    pub fn compile(snapshot: &Snapshot) -> RouteTable {
        let pools: FxHashMap<&str, Arc<PoolEntry>> = snapshot
            .pools
            .iter()
            .map(|p| (p.name.as_str(), Arc::new(PoolEntry::compile(p))))
            .collect();
        let mut hosts = FxHashMap::default();
        for route in &snapshot.routes {
            let Some(pool) = pools.get(route.pool.as_str()) else {
                continue;
            };
            for host in &route.hosts {
                hosts
                    .entry(host.as_str().into())
                    .or_insert_with(|| Arc::clone(pool));
            }
        }
        RouteTable {
            hosts,
            snapshot_number: snapshot.number,
        }
    }

    /// Finds the pool for a raw `Host` header or `:authority` value; case,
    /// port and a trailing dot do not matter.
    pub fn lookup(&self, raw_host: &str) -> Lookup<'_> {
        let mut buf = [0u8; MAX_HOST_LEN + 8];
        let Some(host) = normalize_host(raw_host, &mut buf) else {
            return Lookup::UnknownHost;
        };
        match self.hosts.get(host) {
            Some(pool) => Lookup::Pool(pool),
            None => Lookup::UnknownHost,
        }
    }

    /// The number of the snapshot this table was compiled from.
    pub fn snapshot_number(&self) -> u64 {
        self.snapshot_number
    }

    /// The number of distinct hosts routed.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_model::{Fragment, Pool, Route, Source, Target, TargetOrigin};

    fn snapshot(entries: &[(&str, &[&str])]) -> Snapshot {
        let mut fragment = Fragment::empty(Source::Docker);
        for (host, addrs) in entries {
            fragment.routes.push(Route {
                hosts: vec![(*host).into()],
                pool: (*host).into(),
            });
            fragment.pools.push(Pool {
                name: (*host).into(),
                targets: addrs
                    .iter()
                    .enumerate()
                    .map(|(i, a)| Target {
                        addr: a.parse().unwrap(),
                        origin: TargetOrigin {
                            name: format!("c{i}"),
                            id: format!("id{i}"),
                        },
                    })
                    .collect(),
            });
        }
        Snapshot::build(7, "test", &[fragment])
    }

    fn pool<'a>(table: &'a RouteTable, host: &str) -> &'a PoolEntry {
        match table.lookup(host) {
            Lookup::Pool(p) => p,
            Lookup::UnknownHost => panic!("{host} not found"),
        }
    }

    #[test]
    fn lookup_ignores_case_port_and_trailing_dot() {
        let table = RouteTable::compile(&snapshot(&[("api.example.com", &["10.0.0.1:80"])]));
        assert_eq!(table.snapshot_number(), 7);
        for raw in [
            "api.example.com",
            "API.Example.Com:8080",
            "api.example.com.",
        ] {
            assert_eq!(pool(&table, raw).targets().len(), 1, "{raw}");
        }
        assert!(matches!(
            table.lookup("other.example.com"),
            Lookup::UnknownHost
        ));
        assert!(matches!(table.lookup(""), Lookup::UnknownHost));
    }

    #[test]
    fn empty_pool_is_known_but_has_no_target() {
        let table = RouteTable::compile(&snapshot(&[("idle.test", &[])]));
        assert!(pool(&table, "idle.test").pick().is_none());
    }

    #[test]
    fn round_robin_is_exactly_even() {
        for n in [2usize, 3] {
            let addrs: Vec<String> = (1..=n).map(|i| format!("10.0.0.{i}:80")).collect();
            let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
            let table = RouteTable::compile(&snapshot(&[("rr.test", &refs)]));
            let pool = pool(&table, "rr.test");
            let mut counts = vec![0usize; n];
            for _ in 0..(n * 100) {
                let target = pool.pick().unwrap();
                let i = refs
                    .iter()
                    .position(|a| a.parse() == Ok(target.addr))
                    .unwrap();
                counts[i] += 1;
            }
            assert!(counts.iter().all(|c| *c == 100), "{counts:?}");
        }
    }
}
