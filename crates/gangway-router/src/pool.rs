//! Compiled upstream pools and their targets.

use crate::stats::TargetCounters;
use gangway_model::{Pool, Target};
use http::uri::Authority;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A target as the request path needs it.
#[derive(Debug)]
pub struct TargetEntry {
    /// The address connections go to.
    pub addr: SocketAddr,
    /// `addr` as a URI authority, built once at compile time.
    pub authority: Authority,
    /// The container (or other origin) name, for logs.
    pub name: Box<str>,
    /// The container (or other origin) id, for logs.
    pub id: Box<str>,
    /// Requests and failures, kept across snapshots.
    pub counters: Arc<TargetCounters>,
}

/// A compiled pool with its round-robin position.
#[derive(Debug)]
pub struct PoolEntry {
    name: Box<str>,
    targets: Box<[TargetEntry]>,
    next: AtomicUsize,
}

impl PoolEntry {
    pub(crate) fn compile(
        pool: &Pool,
        mut counters: impl FnMut(usize, &Target) -> Arc<TargetCounters>,
    ) -> PoolEntry {
        let targets = pool
            .targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                // A socket address always renders as a valid authority.
                let authority = Authority::try_from(t.addr.to_string()).ok()?;
                Some(TargetEntry {
                    addr: t.addr,
                    authority,
                    name: t.origin.name.as_str().into(),
                    id: t.origin.id.as_str().into(),
                    counters: counters(i, t),
                })
            })
            .collect();
        PoolEntry {
            name: pool.name.as_str().into(),
            targets,
            next: AtomicUsize::new(0),
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// All targets of the pool.
    pub fn targets(&self) -> &[TargetEntry] {
        &self.targets
    }

    /// The next target in round-robin order, or `None` if the pool is empty.
    pub fn pick(&self) -> Option<&TargetEntry> {
        self.pick_index().and_then(|i| self.targets.get(i))
    }

    /// The target the next request would go to, without moving on.
    pub fn peek(&self) -> Option<&TargetEntry> {
        if self.targets.is_empty() {
            return None;
        }
        self.targets
            .get(self.next.load(Ordering::Relaxed) % self.targets.len())
    }

    /// The index in [`PoolEntry::targets`] of the next target in round-robin
    /// order, or `None` if the pool is empty.
    pub fn pick_index(&self) -> Option<usize> {
        if self.targets.is_empty() {
            return None;
        }
        Some(self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len())
    }
}
