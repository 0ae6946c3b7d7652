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
mod target;

pub use explain::{CandidateReport, Explanation, TargetReport};
pub use pool::{random_u64, stable_hash, PoolEntry, Selection, TargetEntry};
pub use request::{decode_query_component, is_websocket_upgrade, remove_dot_segments, RequestInfo};
pub use route::{
    Captures, CompiledAction, CompiledHeaderOps, CompiledRewrite, CompiledRoute, FixedResponse,
    Rejection,
};
pub use stats::{RouteCounters, RouteStats, StatusClasses, StatusCounters};
pub use target::{
    ms_at, now_ms, Admission, FailureKind, TargetHealthReport, TargetState, Verdict,
    LATENCY_BUCKETS_MS,
};

use gangway_model::{normalize_host, rank_key, ErrorPage, Snapshot, MAX_HOST_LEN};
use rustc_hash::FxHashMap;
use stats::Carry;
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
    snapshot: Arc<Snapshot>,
}

impl RouteTable {
    /// Compiles a snapshot. Counters are carried over from `previous` (the
    /// table being replaced) so they survive the swap. Routes that fail to
    /// compile (which validation prevents) are left out and reported.
    pub fn compile(
        snapshot: Arc<Snapshot>,
        previous: &RouteTable,
    ) -> (RouteTable, Vec<CompileError>) {
        let carry = Carry::from(previous);
        let pools: Vec<Arc<PoolEntry>> = snapshot
            .pools
            .iter()
            .enumerate()
            .map(|(pi, p)| Arc::new(PoolEntry::compile(p, |ti, t| carry.target(pi, ti, t))))
            .collect();
        let by_name: FxHashMap<&str, &Arc<PoolEntry>> =
            pools.iter().map(|p| (p.name(), p)).collect();

        let mut errors = Vec::new();
        let mut routes = Vec::with_capacity(snapshot.routes.len());
        let mut models = Vec::with_capacity(snapshot.routes.len());
        for (index, route) in snapshot.routes.iter().enumerate() {
            let pool = match &route.action {
                gangway_model::Action::Forward { pool } => {
                    by_name.get(pool.as_str()).map(|p| Arc::clone(p))
                }
                _ => None,
            };
            let counters = carry.route(index, &route.name);
            match CompiledRoute::compile(route, index, pool, counters) {
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
            list.sort_by_cached_key(|&(i, host)| rank_key(models[i as usize], host));
            // A route listed under two of its patterns (a.test, *.test)
            // stays at its better place only.
            let mut seen = rustc_hash::FxHashSet::default();
            list.retain(|e| seen.insert(e.0));
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
        let any_host = sorted(any_host);
        drop(carry);
        let table = RouteTable {
            exact: compiled_exact,
            wildcard: compiled_wildcard,
            any_host,
            routes,
            pools,
            snapshot,
        };
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
        self.snapshot
            .error_pages
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

    /// The snapshot this table was compiled from.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The configuration a compiled route was compiled from.
    pub fn model(&self, route: &CompiledRoute) -> Option<&gangway_model::Route> {
        self.snapshot.routes.get(route.model_index())
    }

    /// The number of distinct exact and wildcard host patterns routed.
    pub fn host_count(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }
}

#[cfg(test)]
mod tests;
