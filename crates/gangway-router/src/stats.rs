//! Request counters for routes and targets. They live in a registry keyed
//! by name (routes) or address and origin (targets), outside snapshots, so
//! a configuration change does not reset them; compiled routes and pools
//! hold the counters themselves, so counting is a few atomic additions.

use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Responses of one route by status class.
#[derive(Debug, Default)]
pub struct RouteCounters {
    requests: AtomicU64,
    by_class: [AtomicU64; 5],
}

impl RouteCounters {
    /// Counts one answered request.
    pub fn record(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts at this moment.
    pub fn snapshot(&self) -> RouteStats {
        let get = |i: usize| self.by_class[i].load(Ordering::Relaxed);
        RouteStats {
            requests: self.requests.load(Ordering::Relaxed),
            status_1xx: get(0),
            status_2xx: get(1),
            status_3xx: get(2),
            status_4xx: get(3),
            status_5xx: get(4),
        }
    }
}

/// Requests sent to one target and how many failed.
#[derive(Debug, Default)]
pub struct TargetCounters {
    requests: AtomicU64,
    failures: AtomicU64,
}

impl TargetCounters {
    /// Counts one request sent.
    pub fn sent(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request that got no response.
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests sent and failures so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

/// A route's counters at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct RouteStats {
    /// Requests answered.
    pub requests: u64,
    /// Informational answers.
    pub status_1xx: u64,
    /// Successful answers.
    pub status_2xx: u64,
    /// Redirects.
    pub status_3xx: u64,
    /// Client errors.
    pub status_4xx: u64,
    /// Server errors.
    pub status_5xx: u64,
}

/// All counters, kept across snapshots.
#[derive(Debug, Default)]
pub struct Registry {
    routes: Mutex<HashMap<String, Arc<RouteCounters>>>,
    targets: Mutex<HashMap<String, Arc<TargetCounters>>>,
}

impl Registry {
    /// The counters of a route, created on first use. Only compiling calls
    /// this; the lock is never taken on the request path.
    pub fn route(&self, name: &str) -> Arc<RouteCounters> {
        let mut map = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(name.to_owned()).or_default())
    }

    /// The counters of a target, keyed by its address and origin id.
    pub fn target(&self, key: &str) -> Arc<TargetCounters> {
        let mut map = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(key.to_owned()).or_default())
    }

    /// Forgets counters of routes and targets that no longer exist.
    pub fn retain(&self, routes: &HashSet<&str>, targets: &HashSet<String>) {
        let mut map = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|name, _| routes.contains(name.as_str()));
        drop(map);
        let mut map = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|key, _| targets.contains(key));
    }
}
