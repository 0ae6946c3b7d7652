//! Compiled upstream pools and their targets.

use crate::target::{Admission, TargetState};
use gangway_model::{Failover, Pool, Target, Timeouts};
use http::uri::Authority;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// Counts and health, kept across snapshots.
    pub state: Arc<TargetState>,
}

/// A compiled pool with its round-robin position.
#[derive(Debug)]
pub struct PoolEntry {
    name: Box<str>,
    targets: Box<[TargetEntry]>,
    next: AtomicUsize,
    failover: Failover,
    timeouts: Timeouts,
    /// Whether the last selection found every target ejected.
    panic: AtomicBool,
}

/// The target chosen for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// Its index in [`PoolEntry::targets`].
    pub index: usize,
    /// Its cooldown is over and this request tests it.
    pub trial: bool,
    /// Every target was ejected: this one is tried anyway.
    pub panic: bool,
}

impl PoolEntry {
    pub(crate) fn compile(
        pool: &Pool,
        mut state: impl FnMut(usize, &Target) -> Arc<TargetState>,
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
                    state: state(i, t),
                })
            })
            .collect();
        PoolEntry {
            name: pool.name.as_str().into(),
            targets,
            next: AtomicUsize::new(0),
            failover: pool.failover.clone(),
            timeouts: pool.timeouts,
            panic: AtomicBool::new(false),
        }
    }

    /// The pool's failover settings.
    pub fn failover(&self) -> &Failover {
        &self.failover
    }

    /// The pool's time limits.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Whether the last selection found every target ejected.
    pub fn in_panic(&self) -> bool {
        self.panic.load(Ordering::Relaxed)
    }

    /// Chooses the target for an attempt: the next in round-robin order
    /// that is in service (or due for its trial) and not in `tried`. When
    /// every target of the pool is ejected, seed 002's last resort: try
    /// them anyway, in round-robin order ("panic"). `None` when the targets
    /// in service have all been tried.
    pub fn select(&self, tried: &[usize], now: u64) -> Option<Selection> {
        let n = self.targets.len();
        if n == 0 || tried.len() >= n {
            return None;
        }
        let mut fallback = None;
        // A fresh position for each candidate rather than the next index:
        // the share of a target that is out spreads over all the others
        // instead of doubling its successor's. Then, since other requests
        // move the position meanwhile, one plain sweep so that no target
        // is missed.
        let fresh = (0..n).map(|_| self.next.fetch_add(1, Ordering::Relaxed) % n);
        for index in fresh.chain(0..n) {
            if tried.contains(&index) {
                continue;
            }
            match self.targets[index].state.admit(now) {
                Admission::Open => return Some(self.chosen(index, false)),
                Admission::Trial => return Some(self.chosen(index, true)),
                Admission::Closed => {
                    fallback.get_or_insert(index);
                }
            }
        }
        let all_ejected = self.targets.iter().all(|t| t.state.is_ejected(now));
        if !all_ejected {
            return None;
        }
        let index = fallback?;
        if !self.panic.swap(true, Ordering::Relaxed) {
            tracing::warn!(pool = %self.name, targets = n, "pool in panic: every target is ejected; trying them anyway");
        }
        Some(Selection {
            index,
            trial: false,
            panic: true,
        })
    }

    fn chosen(&self, index: usize, trial: bool) -> Selection {
        if self.panic.swap(false, Ordering::Relaxed) {
            tracing::info!(pool = %self.name, "pool out of panic: a target is in service again");
        }
        Selection {
            index,
            trial,
            panic: false,
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
