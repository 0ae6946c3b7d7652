//! The routing table: a [`Snapshot`] compiled into the form the request path
//! reads, and `explain`, which says why each route did or did not match.
//!
//! Compiling does every piece of work that does not depend on the request.
//! Each exact host gets its own candidate list (its routes, the wildcard
//! routes that cover it and the routes without hosts), sorted in the order
//! of [`gangway_model::rank`]; so does each wildcard suffix. A lookup is one
//! hash probe for an exact host, or one per label for a wildcard, followed
//! by a scan of a short list where cheap conditions are tested before
//! regular expressions. The cost does not grow with the number of hosts.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod explain;
mod pool;
mod request;
mod route;
mod stats;

pub use explain::{CandidateReport, Explanation, TargetReport};
pub use pool::{PoolEntry, TargetEntry};
pub use request::{is_websocket_upgrade, RequestInfo};
pub use route::{
    Captures, CompiledAction, CompiledHeaderOps, CompiledRewrite, CompiledRoute, Rejection,
};
pub use stats::{Registry, RouteCounters, RouteStats, TargetCounters};

use gangway_model::{normalize_host, rank, ErrorPage, Snapshot, MAX_HOST_LEN};
use rustc_hash::FxHashMap;
use std::collections::HashSet;
use std::sync::Arc;

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// No route matches.
    NoRoute,
    /// This route matched, with the captures of its path regex.
    Route(&'a CompiledRoute, Captures),
}

/// A route that could not be compiled; it is left out of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// The route's name.
    pub route: String,
    /// Why.
    pub reason: String,
}

/// A compiled, immutable routing table.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<CompiledRoute>,
    exact: FxHashMap<Box<str>, Box<[u32]>>,
    wildcard: FxHashMap<Box<str>, Box<[u32]>>,
    any_host: Box<[u32]>,
    pools: Vec<Arc<PoolEntry>>,
    error_pages: Vec<ErrorPage>,
    snapshot_number: u64,
    snapshot_checksum: u64,
}

impl RouteTable {
    /// Compiles a snapshot. Counters come from `registry` so they survive
    /// the swap. Routes that fail to compile (which validation prevents)
    /// are left out and reported.
    pub fn compile(snapshot: &Snapshot, registry: &Registry) -> (RouteTable, Vec<CompileError>) {
        let pools: Vec<Arc<PoolEntry>> = snapshot
            .pools
            .iter()
            .map(|p| Arc::new(PoolEntry::compile(p, registry)))
            .collect();
        let by_name: FxHashMap<&str, &Arc<PoolEntry>> =
            pools.iter().map(|p| (p.name(), p)).collect();

        let mut errors = Vec::new();
        let mut routes = Vec::new();
        let mut models = Vec::new();
        for route in &snapshot.routes {
            let pool = match &route.action {
                gangway_model::Action::Forward { pool } => {
                    by_name.get(pool.as_str()).map(|p| Arc::clone(p))
                }
                _ => None,
            };
            match CompiledRoute::compile(route, pool, registry.route(&route.name)) {
                Ok(compiled) => {
                    routes.push(compiled);
                    models.push(route);
                }
                Err(reason) => errors.push(CompileError {
                    route: route.name.clone(),
                    reason,
                }),
            }
        }

        // Which routes each host pattern registers.
        let mut exact: FxHashMap<&str, Vec<(u32, Option<&str>)>> = FxHashMap::default();
        let mut wildcard: FxHashMap<&str, Vec<(u32, Option<&str>)>> = FxHashMap::default();
        let mut any_host = Vec::new();
        for (i, route) in models.iter().enumerate() {
            let i = i as u32;
            if route.matcher.hosts.is_empty() {
                any_host.push((i, None));
            }
            for host in &route.matcher.hosts {
                match host.strip_prefix("*.") {
                    Some(suffix) => wildcard
                        .entry(suffix)
                        .or_default()
                        .push((i, Some(host.as_str()))),
                    None => exact
                        .entry(host.as_str())
                        .or_default()
                        .push((i, Some(host.as_str()))),
                }
            }
        }
        let sorted = |mut list: Vec<(u32, Option<&str>)>| -> Box<[u32]> {
            list.sort_by(|a, b| rank((models[a.0 as usize], a.1), (models[b.0 as usize], b.1)));
            list.dedup_by_key(|e| e.0);
            list.into_iter().map(|(i, _)| i).collect()
        };
        // A wildcard suffix's list holds its own routes, those of every
        // shorter suffix that covers it, and the routes without hosts.
        let wildcard_chain = |name: &str, skip_self: bool| -> Vec<(u32, Option<&str>)> {
            let mut out = Vec::new();
            let mut rest = Some(name);
            let mut first = true;
            while let Some(suffix) = rest {
                if !(first && skip_self) {
                    if let Some(list) = wildcard.get(suffix) {
                        out.extend(list.iter().copied());
                    }
                }
                first = false;
                rest = suffix.split_once('.').map(|(_, r)| r);
            }
            out
        };
        let compiled_wildcard = wildcard
            .keys()
            .map(|suffix| {
                let mut list = wildcard_chain(suffix, false);
                list.extend(any_host.iter().copied());
                (Box::<str>::from(*suffix), sorted(list))
            })
            .collect();
        let compiled_exact = exact
            .iter()
            .map(|(host, own)| {
                let mut list = own.clone();
                list.extend(wildcard_chain(host, true));
                list.extend(any_host.iter().copied());
                (Box::<str>::from(*host), sorted(list))
            })
            .collect();
        let table = RouteTable {
            exact: compiled_exact,
            wildcard: compiled_wildcard,
            any_host: sorted(any_host),
            routes,
            pools,
            error_pages: snapshot.error_pages.clone(),
            snapshot_number: snapshot.number,
            snapshot_checksum: snapshot.checksum,
        };

        let route_names: HashSet<&str> = snapshot.routes.iter().map(|r| r.name.as_str()).collect();
        let target_keys: HashSet<String> = snapshot
            .pools
            .iter()
            .flat_map(|p| &p.targets)
            .map(pool::target_key)
            .collect();
        registry.retain(&route_names, &target_keys);
        (table, errors)
    }

    /// The candidate routes for a raw `Host` value, best first.
    fn candidates(&self, raw_host: &str) -> &[u32] {
        let mut buf = [0u8; MAX_HOST_LEN + 8];
        let Some(host) = normalize_host(raw_host, &mut buf) else {
            return &self.any_host;
        };
        if let Some(list) = self.exact.get(host) {
            return list;
        }
        if !self.wildcard.is_empty() {
            let mut rest = host;
            while let Some((_, suffix)) = rest.split_once('.') {
                if let Some(list) = self.wildcard.get(suffix) {
                    return list;
                }
                rest = suffix;
            }
        }
        &self.any_host
    }

    /// Finds the route for a request: the first candidate, in rank order,
    /// whose conditions all hold.
    pub fn lookup(&self, req: &RequestInfo<'_>) -> Lookup<'_> {
        for &i in self.candidates(req.host) {
            let route = &self.routes[i as usize];
            if let Some(captures) = route.matches(req) {
                return Lookup::Route(route, captures);
            }
        }
        Lookup::NoRoute
    }

    /// The error page for a status, if one is configured.
    pub fn error_page(&self, status: u16) -> Option<&ErrorPage> {
        self.error_pages
            .iter()
            .find(|p| p.statuses.iter().any(|s| s.contains(status)))
    }

    /// All compiled routes, in snapshot order.
    pub fn routes(&self) -> &[CompiledRoute] {
        &self.routes
    }

    /// All pools.
    pub fn pools(&self) -> &[Arc<PoolEntry>] {
        &self.pools
    }

    /// The number of the snapshot this table was compiled from.
    pub fn snapshot_number(&self) -> u64 {
        self.snapshot_number
    }

    /// The checksum of the snapshot this table was compiled from.
    pub fn snapshot_checksum(&self) -> u64 {
        self.snapshot_checksum
    }

    /// The number of distinct exact and wildcard host patterns routed.
    pub fn host_count(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }
}

#[cfg(test)]
mod tests;
