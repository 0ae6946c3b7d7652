//! Request counters for routes, and carrying them and the targets' state
//! over from one table to the next. Compiled routes and pools hold
//! them, so counting is a few atomic additions; each compile carries them
//! over from the previous table by identity (a route's name, a target's
//! address and origin), so a configuration change does not reset them.

use crate::target::TargetState;
use crate::RouteTable;
use gangway_model::Target;
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::cell::OnceCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Responses counted by status class, 1xx to 5xx.
#[derive(Debug, Default)]
pub struct StatusCounters([AtomicU64; 5]);

impl StatusCounters {
    /// Counts one response.
    pub fn record(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.0[class].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts at this moment.
    pub fn snapshot(&self) -> StatusClasses {
        let get = |i: usize| self.0[i].load(Ordering::Relaxed);
        StatusClasses {
            status_1xx: get(0),
            status_2xx: get(1),
            status_3xx: get(2),
            status_4xx: get(3),
            status_5xx: get(4),
        }
    }
}

/// Responses by status class at one moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StatusClasses {
    /// Informational.
    pub status_1xx: u64,
    /// Successful.
    pub status_2xx: u64,
    /// Redirects.
    pub status_3xx: u64,
    /// Client errors.
    pub status_4xx: u64,
    /// Server errors.
    pub status_5xx: u64,
}

/// Requests of one route, by status class of their answers.
#[derive(Debug, Default)]
pub struct RouteCounters {
    requests: AtomicU64,
    by_class: StatusCounters,
}

impl RouteCounters {
    /// Counts one answered request.
    pub fn record(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.by_class.record(status);
    }

    /// The counts at this moment.
    pub fn snapshot(&self) -> RouteStats {
        RouteStats {
            requests: self.requests.load(Ordering::Relaxed),
            responses: self.by_class.snapshot(),
        }
    }
}

/// A route's counters at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct RouteStats {
    /// Requests answered.
    pub requests: u64,
    /// Their answers by status class.
    #[serde(flatten)]
    pub responses: StatusClasses,
}

/// Carries counters from the previous table into the one being compiled,
/// so a configuration change does not reset them: by position when the
/// route or target is where it was (the usual case: a reload changes a few
/// routes), else by name or by address and origin. Counters of routes and
/// targets that are gone are dropped with the previous table.
pub(crate) struct Carry<'a> {
    previous: &'a RouteTable,
    routes_by_name: OnceCell<FxHashMap<&'a str, &'a Arc<RouteCounters>>>,
    targets_by_key: OnceCell<FxHashMap<(SocketAddr, &'a str), &'a Arc<TargetState>>>,
}

impl<'a> Carry<'a> {
    pub(crate) fn from(previous: &'a RouteTable) -> Self {
        Carry {
            previous,
            routes_by_name: OnceCell::new(),
            targets_by_key: OnceCell::new(),
        }
    }

    /// The counters of the snapshot's route number `index`, named `name`.
    pub(crate) fn route(&self, index: usize, name: &str) -> Arc<RouteCounters> {
        let routes = self.previous.routes();
        if let Some(r) = routes.get(index).filter(|r| r.name() == name) {
            return Arc::clone(&r.counters);
        }
        self.routes_by_name
            .get_or_init(|| routes.iter().map(|r| (r.name(), &r.counters)).collect())
            .get(name)
            .map_or_else(Arc::default, |c| Arc::clone(c))
    }

    /// The counters of target `target` of the snapshot's pool `pool`.
    pub(crate) fn target(&self, pool: usize, target: usize, t: &Target) -> Arc<TargetState> {
        let pools = self.previous.pools();
        let same_place = pools
            .get(pool)
            .and_then(|p| p.targets().get(target))
            .filter(|e| e.addr == t.addr && *e.id == *t.origin.id);
        if let Some(e) = same_place {
            return Arc::clone(&e.state);
        }
        self.targets_by_key
            .get_or_init(|| {
                pools
                    .iter()
                    .flat_map(|p| p.targets())
                    .map(|e| ((e.addr, &*e.id), &e.state))
                    .collect()
            })
            .get(&(t.addr, t.origin.id.as_str()))
            .map_or_else(Arc::default, |c| Arc::clone(c))
    }
}
