//! Compiled upstream pools and their targets.

use crate::target::{Admission, TargetState};
use gangway_model::{Balance, Failover, HealthCheck, Pool, Target, Timeouts, Upstream};
use http::uri::Authority;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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
    /// Its share under weighted balancing.
    pub weight: i64,
}

/// A compiled pool with its round-robin position.
#[derive(Debug)]
pub struct PoolEntry {
    name: Box<str>,
    targets: Box<[TargetEntry]>,
    next: AtomicUsize,
    failover: Failover,
    timeouts: Timeouts,
    upstream: Upstream,
    balance: Balance,
    health: Option<HealthCheck>,
    /// Smooth weighted round robin's running weights (nginx's algorithm);
    /// locked only for the few additions of one pick.
    weighted: Mutex<Vec<i64>>,
    /// The hash ring: points and the target each belongs to, sorted.
    ring: Box<[(u64, u32)]>,
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
        let targets: Box<[TargetEntry]> = pool
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
                    weight: i64::from(t.weight.max(1)),
                })
            })
            .collect();
        let ring = match pool.balance {
            Balance::Hash(_) => hash_ring(&targets),
            _ => Box::default(),
        };
        PoolEntry {
            name: pool.name.as_str().into(),
            weighted: Mutex::new(vec![0; targets.len()]),
            targets,
            next: AtomicUsize::new(0),
            failover: pool.failover.clone(),
            timeouts: pool.timeouts,
            upstream: pool.upstream.clone(),
            balance: pool.balance.clone(),
            health: pool.health.clone(),
            ring,
            panic: AtomicBool::new(false),
        }
    }

    /// The pool's active health check, if any.
    pub fn health(&self) -> Option<&HealthCheck> {
        self.health.as_ref()
    }

    /// The pool's balancing policy.
    pub fn balance(&self) -> &Balance {
        &self.balance
    }

    /// The pool's failover settings.
    pub fn failover(&self) -> &Failover {
        &self.failover
    }

    /// The pool's time limits.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// The protocol and TLS settings towards the targets.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Whether the last selection found every target ejected.
    pub fn in_panic(&self) -> bool {
        self.panic.load(Ordering::Relaxed)
    }

    /// Chooses the target for an attempt, by the pool's policy, among the
    /// targets in service (or due for their trial) and not in `tried`.
    /// `key` is the request's hash for [`Balance::Hash`]. When every target
    /// of the pool is ejected, seed 002's last resort: try them anyway, in
    /// round-robin order ("panic"). `None` when the targets in service have
    /// all been tried.
    pub fn select(&self, tried: &[usize], now: u64, key: Option<u64>) -> Option<Selection> {
        let n = self.targets.len();
        if n == 0 || tried.len() >= n {
            return None;
        }
        let usable = |i: usize| !tried.contains(&i) && self.targets[i].state.available(now);
        let preferred = match &self.balance {
            Balance::RoundRobin => None,
            Balance::Weighted => self.pick_weighted(&usable),
            Balance::LeastInFlight => self.pick_least_in_flight(&usable),
            Balance::PowerOfTwo => self.pick_two_choices(&usable),
            Balance::Hash(_) => key.and_then(|k| self.pick_hashed(k, &usable)),
        };
        if let Some(index) = preferred {
            match self.targets[index].state.admit(now) {
                Admission::Open => return Some(self.chosen(index, false)),
                Admission::Trial => return Some(self.chosen(index, true)),
                // Taken by a concurrent request's trial: fall back below.
                Admission::Closed => {}
            }
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
        let all_ejected = self.targets.iter().all(|t| t.state.is_out(now));
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

    /// nginx's smooth weighted round robin over the usable targets.
    fn pick_weighted(&self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut current = self.weighted.lock().unwrap_or_else(PoisonError::into_inner);
        let mut total = 0;
        let mut best: Option<usize> = None;
        for (i, target) in self.targets.iter().enumerate() {
            if !usable(i) {
                continue;
            }
            current[i] += target.weight;
            total += target.weight;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        current[best] -= total;
        Some(best)
    }

    /// The usable target with the fewest requests in flight; ties go round.
    fn pick_least_in_flight(&self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|step| start.wrapping_add(step) % n)
            .filter(|&i| usable(i))
            .min_by_key(|&i| self.targets[i].state.in_flight())
    }

    /// Two different usable targets drawn at random; the one with the
    /// lower cost, (in flight + 1) x average latency, wins (a target
    /// without latency yet counts as fast).
    fn pick_two_choices(&self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.targets.len();
        let draw = |other: Option<usize>| {
            (0..8)
                .map(|_| random_below(n))
                .find(|&i| usable(i) && Some(i) != other)
        };
        let cost = |i: usize| {
            let s = &self.targets[i].state;
            (u64::from(s.in_flight()) + 1).saturating_mul(s.latency_us().max(1))
        };
        let first = draw(None).or_else(|| (0..n).find(|&i| usable(i)))?;
        match draw(Some(first)) {
            Some(second) if cost(second) < cost(first) => Some(second),
            _ => Some(first),
        }
    }

    /// The first usable target clockwise from the key's point on the ring.
    fn pick_hashed(&self, key: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        if self.ring.is_empty() {
            return None;
        }
        let start = self.ring.partition_point(|(point, _)| *point < key);
        let len = self.ring.len();
        (0..len)
            .map(|step| self.ring[(start + step) % len].1 as usize)
            .find(|&i| usable(i))
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

    /// The target the next request would go to, without moving on.
    pub fn peek(&self) -> Option<&TargetEntry> {
        if self.targets.is_empty() {
            return None;
        }
        self.targets
            .get(self.next.load(Ordering::Relaxed) % self.targets.len())
    }
}

/// Points per unit of weight on the hash ring: enough for an even spread
/// (the share of each of 3 targets within a few percent).
const POINTS_PER_WEIGHT: u32 = 160;

/// The consistent-hashing ring. A target's points depend only on its
/// identity (address and origin), so adding or removing a target moves
/// only the keys on that target's points.
fn hash_ring(targets: &[TargetEntry]) -> Box<[(u64, u32)]> {
    let mut ring = Vec::new();
    for (i, entry) in targets.iter().enumerate() {
        let weight = u32::try_from(entry.weight.clamp(1, 1000)).unwrap_or(1);
        let points = POINTS_PER_WEIGHT.saturating_mul(weight);
        for p in 0..points {
            let point = stable_hash(format!("{}|{}|{p}", entry.addr, entry.id).as_bytes());
            ring.push((point, i as u32));
        }
    }
    ring.sort_unstable();
    ring.into_boxed_slice()
}

/// FNV-1a followed by a final mix: stable across builds, so the same key
/// lands on the same target on every gangway node.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64's finaliser spreads FNV's low-entropy high bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A random number from a per-thread xorshift generator seeded from the
/// clock and the thread: for spreading choices, not for secrets.
pub fn random_u64() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            stable_hash(format!("{:?}{:?}", std::thread::current().id(), std::time::SystemTime::now()).as_bytes()) | 1
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

fn random_below(n: usize) -> usize {
    (random_u64() % n as u64) as usize
}
