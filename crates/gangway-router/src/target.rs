//! What gangway knows about one target across requests and snapshots:
//! counts, requests in flight, and passive health (failures in a row,
//! ejection and its cooldown). All atomics: the request path never locks.

use crate::stats::{StatusClasses, StatusCounters};
use gangway_model::Failover;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Milliseconds since the process started: the clock of ejections.
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// `at` on the clock of [`now_ms`], for a caller that read the time
/// already (a clock read costs tens of nanoseconds in a virtual machine).
pub fn ms_at(at: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(*start).as_millis()).unwrap_or(u64::MAX)
}

/// Upper bounds (inclusive, milliseconds) of the latency histogram.
pub const LATENCY_BUCKETS_MS: [f64; 14] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Why a request to a target failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The connection could not be made (refused, unreachable, timed out).
    Connect,
    /// The connection broke before a response came.
    Reset,
    /// No response within the response timeout.
    Timeout,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailureKind::Connect => "connect",
            FailureKind::Reset => "reset",
            FailureKind::Timeout => "timeout",
        })
    }
}

/// What a failure did to the target's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Still in service.
    Kept,
    /// Taken out of service for this long.
    Ejected(Duration),
}

/// One target's state.
#[derive(Debug, Default)]
pub struct TargetState {
    requests: AtomicU64,
    /// Responses by status class.
    responses: StatusCounters,
    failures: [AtomicU64; 3],
    in_flight: AtomicU32,
    consecutive_failures: AtomicU32,
    /// `now_ms()` until which the target is out; 0: in service.
    ejected_until: AtomicU64,
    /// Ejections in a row, for the growing cooldown.
    ejections_in_a_row: AtomicU32,
    ejections: AtomicU64,
    /// Set while the one trial request after a cooldown is in flight.
    trial: AtomicBool,
    /// Moving average of the time to response headers, in microseconds.
    latency_us: AtomicU64,
    /// Times to response headers, by bucket of [`LATENCY_BUCKETS_MS`]
    /// (the last one: longer than all).
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    /// Sum of those times, in microseconds.
    latency_sum_us: AtomicU64,
    /// Out of service by the pool's active health check.
    checked_down: AtomicBool,
    /// Health checks in a row with the same result: positive for passes,
    /// negative for failures.
    check_streak: AtomicI64,
}

/// How a target may be used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// In service.
    Open,
    /// Its cooldown is over; this request is its one trial.
    Trial,
    /// Ejected (or its trial is under way).
    Closed,
}

impl TargetState {
    /// Whether a request may go to the target now; claims the trial when
    /// the cooldown is over.
    pub fn admit(&self, now: u64) -> Admission {
        if self.checked_down.load(Ordering::Acquire) {
            return Admission::Closed;
        }
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == 0 {
            return Admission::Open;
        }
        if now < until {
            return Admission::Closed;
        }
        match self
            .trial
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Admission::Trial,
            Err(_) => Admission::Closed,
        }
    }

    /// Whether a request could go to the target now (in service, or due for
    /// its trial), without claiming anything.
    pub fn available(&self, now: u64) -> bool {
        if self.checked_down.load(Ordering::Acquire) {
            return false;
        }
        let until = self.ejected_until.load(Ordering::Acquire);
        until == 0 || (now >= until && !self.trial.load(Ordering::Acquire))
    }

    /// Requests waiting for their response headers now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Folds one time-to-response-headers into the moving average (weight
    /// 1/5 for the new sample). Races between requests lose a sample at
    /// worst, which an average can afford.
    pub fn observe_latency(&self, latency: Duration) {
        let sample = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let ms = latency.as_secs_f64() * 1000.0;
        let bucket = LATENCY_BUCKETS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(sample, Ordering::Relaxed);
        let old = self.latency_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 4 + sample) / 5
        };
        self.latency_us.store(new, Ordering::Relaxed);
    }

    /// The latency histogram: counts per bucket of [`LATENCY_BUCKETS_MS`]
    /// (plus one for longer), and the sum in microseconds.
    pub fn latency_histogram(&self) -> (Vec<u64>, u64) {
        (
            self.latency_buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            self.latency_sum_us.load(Ordering::Relaxed),
        )
    }

    /// The moving average of the time to response headers (0: none yet).
    pub fn latency_us(&self) -> u64 {
        self.latency_us.load(Ordering::Relaxed)
    }

    /// Whether the target is out of service now: ejected, or down by its
    /// health check (for panic mode).
    pub fn is_out(&self, now: u64) -> bool {
        if self.checked_down.load(Ordering::Acquire) {
            return true;
        }
        let until = self.ejected_until.load(Ordering::Acquire);
        until != 0 && (now < until || self.trial.load(Ordering::Acquire))
    }

    /// Counts a request sent; pair with [`TargetState::finished`].
    pub fn started(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// The request's response headers came (or it failed).
    pub fn finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a response by its status class.
    pub fn responded(&self, status: u16) {
        self.responses.record(status);
    }

    /// A response came: the failure streak ends. Returns whether the target
    /// was ejected and is now restored.
    pub fn succeeded(&self) -> bool {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if self.ejected_until.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.ejected_until.store(0, Ordering::Release);
        self.ejections_in_a_row.store(0, Ordering::Relaxed);
        self.trial.store(false, Ordering::Release);
        true
    }

    /// A request failed. Ejects the target after `max_failures` in a row,
    /// or at once when its trial failed; the cooldown doubles with each
    /// ejection in a row, up to the maximum.
    pub fn failed(&self, kind: FailureKind, policy: &Failover, now: u64) -> Verdict {
        let index = match kind {
            FailureKind::Connect => 0,
            FailureKind::Reset => 1,
            FailureKind::Timeout => 2,
        };
        self.failures[index].fetch_add(1, Ordering::Relaxed);
        let streak = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        let on_trial = self.trial.load(Ordering::Acquire);
        if !on_trial
            && (streak < policy.max_failures || self.ejected_until.load(Ordering::Acquire) != 0)
        {
            return Verdict::Kept;
        }
        let in_a_row = self.ejections_in_a_row.fetch_add(1, Ordering::AcqRel);
        let factor = 1u32.checked_shl(in_a_row.min(20)).unwrap_or(u32::MAX);
        let cooldown = policy
            .cooldown
            .saturating_mul(factor)
            .min(policy.max_cooldown);
        let cooldown_ms = u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX);
        self.ejected_until
            .store(now.saturating_add(cooldown_ms).max(1), Ordering::Release);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        self.trial.store(false, Ordering::Release);
        Verdict::Ejected(cooldown)
    }

    /// The upper bound of the histogram bucket holding quantile `q`
    /// (the longest bucket's bound when it is in the overflow).
    fn latency_quantile(&self, q: f64) -> Option<f64> {
        let (counts, _) = self.latency_histogram();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(
                    LATENCY_BUCKETS_MS
                        .get(i)
                        .copied()
                        .unwrap_or(LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.len() - 1]),
                );
            }
        }
        None
    }

    /// Records one health check; returns `Some(up)` when the target goes
    /// down (`unhealthy` failures in a row) or comes back up (`healthy`
    /// passes in a row).
    pub fn record_check(&self, passed: bool, healthy: u32, unhealthy: u32) -> Option<bool> {
        let streak = if passed {
            self.check_streak
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| Some(s.max(0) + 1))
                .map_or(1, |s| s.max(0) + 1)
        } else {
            self.check_streak
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| Some(s.min(0) - 1))
                .map_or(-1, |s| s.min(0) - 1)
        };
        let down = self.checked_down.load(Ordering::Acquire);
        if !down && streak <= -i64::from(unhealthy) {
            self.checked_down.store(true, Ordering::Release);
            return Some(false);
        }
        if down && streak >= i64::from(healthy) {
            self.checked_down.store(false, Ordering::Release);
            // A target the check finds healthy again starts with a clean slate.
            self.succeeded();
            return Some(true);
        }
        None
    }

    /// The figures at this moment.
    pub fn report(&self, now: u64) -> TargetHealthReport {
        let until = self.ejected_until.load(Ordering::Acquire);
        let failures = |i: usize| self.failures[i].load(Ordering::Relaxed);
        TargetHealthReport {
            requests: self.requests.load(Ordering::Relaxed),
            responses: self.responses.snapshot(),
            failures: failures(0) + failures(1) + failures(2),
            connect_failures: failures(0),
            reset_failures: failures(1),
            timeout_failures: failures(2),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            ejections: self.ejections.load(Ordering::Relaxed),
            state: if self.checked_down.load(Ordering::Acquire) {
                "down"
            } else if until == 0 {
                "healthy"
            } else if now < until {
                "ejected"
            } else {
                "trial"
            },
            ejected_for_ms: until.saturating_sub(now),
            latency_ewma_ms: self.latency_us.load(Ordering::Relaxed) as f64 / 1000.0,
            latency_p50_ms: self.latency_quantile(0.5),
            latency_p99_ms: self.latency_quantile(0.99),
        }
    }
}

/// A target's figures, as the statistics show them.
#[derive(Debug, Clone, Serialize)]
pub struct TargetHealthReport {
    /// Requests sent.
    pub requests: u64,
    /// Its responses by status class (a backend's own 5xx; requests that
    /// got no response are `failures`).
    #[serde(flatten)]
    pub responses: StatusClasses,
    /// Requests that got no response, all kinds.
    pub failures: u64,
    /// Connection failures.
    pub connect_failures: u64,
    /// Connections broken before a response.
    pub reset_failures: u64,
    /// Responses that did not come in time.
    pub timeout_failures: u64,
    /// Requests waiting for their response headers now.
    pub in_flight: u32,
    /// Failures since the last response.
    pub consecutive_failures: u32,
    /// Times ejected.
    pub ejections: u64,
    /// `healthy`, `ejected`, `trial` (cooldown over, next request tests
    /// it), or `down` (by the active health check).
    pub state: &'static str,
    /// For `ejected`: how long until its trial.
    pub ejected_for_ms: u64,
    /// Moving average of the time to response headers.
    pub latency_ewma_ms: f64,
    /// Median time to response headers: the upper bound of the histogram
    /// bucket it falls in (null before the first response).
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile, the same way.
    pub latency_p99_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Failover {
        Failover {
            max_failures: 3,
            cooldown: Duration::from_secs(90),
            max_cooldown: Duration::from_secs(300),
            ..Failover::default()
        }
    }

    #[test]
    fn ejected_after_three_in_a_row_then_one_trial() {
        let t = TargetState::default();
        let p = policy();
        assert_eq!(t.failed(FailureKind::Connect, &p, 1_000), Verdict::Kept);
        assert!(!t.succeeded(), "a success resets the streak");
        assert_eq!(t.failed(FailureKind::Connect, &p, 1_000), Verdict::Kept);
        assert_eq!(t.failed(FailureKind::Reset, &p, 1_000), Verdict::Kept);
        assert_eq!(
            t.failed(FailureKind::Timeout, &p, 1_000),
            Verdict::Ejected(Duration::from_secs(90))
        );
        assert_eq!(t.admit(50_000), Admission::Closed);
        assert!(t.is_out(50_000));
        // Cooldown over: exactly one request gets the trial.
        assert_eq!(t.admit(91_000), Admission::Trial);
        assert_eq!(t.admit(91_000), Admission::Closed);
        // The trial fails: ejected again, for twice as long.
        assert_eq!(
            t.failed(FailureKind::Connect, &p, 91_000),
            Verdict::Ejected(Duration::from_secs(180))
        );
        assert_eq!(t.admit(91_000 + 179_000), Admission::Closed);
        assert_eq!(t.admit(91_000 + 181_000), Admission::Trial);
        // Capped at max_cooldown.
        assert_eq!(
            t.failed(FailureKind::Connect, &p, 300_000),
            Verdict::Ejected(Duration::from_secs(300))
        );
        assert_eq!(t.admit(601_000), Admission::Trial);
        // The trial succeeds: restored, and the next ejection starts at 90 s.
        assert!(t.succeeded());
        assert_eq!(t.admit(601_000), Admission::Open);
        let r = t.report(601_000);
        assert_eq!((r.state, r.ejections, r.failures), ("healthy", 3, 6));
        for _ in 0..2 {
            t.failed(FailureKind::Connect, &p, 700_000);
        }
        assert_eq!(
            t.failed(FailureKind::Connect, &p, 700_000),
            Verdict::Ejected(Duration::from_secs(90))
        );
    }

    #[test]
    fn health_checks_take_a_target_out_and_bring_it_back_with_thresholds() {
        let t = TargetState::default();
        assert_eq!(t.record_check(false, 2, 3), None);
        assert_eq!(t.record_check(false, 2, 3), None);
        assert_eq!(t.record_check(true, 2, 3), None, "a pass breaks the streak");
        assert_eq!(t.record_check(false, 2, 3), None);
        assert_eq!(t.record_check(false, 2, 3), None);
        assert_eq!(t.record_check(false, 2, 3), Some(false));
        assert_eq!(t.admit(0), Admission::Closed);
        assert!(t.is_out(0));
        assert_eq!(t.report(0).state, "down");
        assert_eq!(t.record_check(true, 2, 3), None);
        assert_eq!(t.record_check(true, 2, 3), Some(true));
        assert_eq!(t.admit(0), Admission::Open);
    }

    #[test]
    fn latency_quantiles_from_the_histogram() {
        let t = TargetState::default();
        assert_eq!(t.report(0).latency_p50_ms, None);
        for _ in 0..98 {
            t.observe_latency(Duration::from_micros(800));
        }
        t.observe_latency(Duration::from_millis(40));
        t.observe_latency(Duration::from_millis(400));
        let r = t.report(0);
        assert_eq!(r.latency_p50_ms, Some(1.0));
        assert_eq!(r.latency_p99_ms, Some(50.0));
        let (counts, sum) = t.latency_histogram();
        assert_eq!(counts.iter().sum::<u64>(), 100);
        assert_eq!(sum, 98 * 800 + 40_000 + 400_000);
    }
}
