//! How a pool handles targets that fail (seed 002): the request goes on to
//! the next target, a target that fails several times in a row is ejected
//! for a cooldown, and when every target is ejected all are tried again.

use serde::Serialize;
use std::time::Duration;

/// Which requests may be sent again after their bytes reached a backend
/// that then failed. A request that never reached a backend (the
/// connection was refused) is always sent to the next target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// GET, HEAD, OPTIONS, PUT, DELETE (RFC 9110 §9.2.2), and TRACE.
    Idempotent,
    /// Every method: for backends known to handle duplicates.
    Always,
    /// Only requests that never reached a backend.
    Unsent,
}

/// A pool's failover settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Failover {
    /// Failures in a row that eject a target.
    pub max_failures: u32,
    /// How long an ejected target is left out before one trial request;
    /// doubled with each ejection in a row, up to `max_cooldown`.
    pub cooldown: Duration,
    /// The longest cooldown.
    pub max_cooldown: Duration,
    /// Attempts per request: every target once, at most this many.
    pub max_attempts: u32,
    /// Which requests are retried after reaching a backend.
    pub retry: Retry,
    /// Request bodies up to this many bytes are kept so that they can be
    /// sent again; larger ones stream and are not retried.
    pub replay_limit: u64,
}

impl Default for Failover {
    /// Seed 002's numbers: 3 failures, 90 s.
    fn default() -> Self {
        Failover {
            max_failures: 3,
            cooldown: Duration::from_secs(90),
            max_cooldown: Duration::from_secs(15 * 60),
            max_attempts: 5,
            retry: Retry::Idempotent,
            replay_limit: 64 * 1024,
        }
    }
}

/// A pool's time limits for talking to its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Timeouts {
    /// To establish a connection; a failure counts as a connect failure
    /// (always safe to send elsewhere).
    pub connect: Duration,
    /// From sending the request to the response's headers; a failure
    /// counts as a timeout (sent again only under the retry policy).
    pub response_header: Duration,
    /// How long an idle keep-alive connection to a target is kept.
    pub idle: Duration,
    /// The whole exchange, all attempts and the response body included;
    /// none by default (streams may last).
    pub request: Option<Duration>,
    /// Idle keep-alive connections kept per target, at most.
    pub max_idle_per_target: usize,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            response_header: Duration::from_secs(60),
            idle: Duration::from_secs(90),
            request: None,
            max_idle_per_target: 256,
        }
    }
}

/// An active HTTP health check of a pool's targets (seed 003): run off the
/// request path, every `interval` (jittered), each target on its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct HealthCheck {
    /// The path requested (GET), such as `/healthz`.
    pub path: String,
    /// The `Host` header sent; none: the target's address.
    pub host: Option<String>,
    /// Time between checks of one target.
    pub interval: Duration,
    /// Time for an answer.
    pub timeout: Duration,
    /// Statuses that count as healthy, inclusive.
    pub status: (u16, u16),
    /// Passed checks in a row that bring a target back.
    pub healthy_threshold: u32,
    /// Failed checks in a row that take a target out.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/".into(),
            host: None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            status: (200, 399),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

/// Parses `200-399` or `204`.
pub fn parse_status_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("status {text:?} is not a status or range; write 200-399 or 204");
    let (low, high) = match text.split_once('-') {
        Some((l, h)) => (l.trim(), h.trim()),
        None => (text.trim(), text.trim()),
    };
    let low: u16 = low.parse().map_err(|_| bad())?;
    let high: u16 = high.parse().map_err(|_| bad())?;
    if !(100..=599).contains(&low) || !(100..=599).contains(&high) || low > high {
        return Err(bad());
    }
    Ok((low, high))
}

/// Parses `250ms`, `90s`, `15m`, `1h` (a whole number and a unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit; write it as 250ms, 90s, 15m or 1h"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write it as 250ms, 90s, 15m or 1h"))?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?}; use ms, s, m or h"
            ))
        }
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Parses a size in bytes: `512`, `64KiB`, `10MiB`, `1GiB` (binary units),
/// `10MB` (decimal), or nginx's `64k`, `10m`, `1g` (binary).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size; write it as 512, 64KiB, 10MiB or 1GiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "KiB" => 1 << 10,
        "m" | "M" | "MiB" => 1 << 20,
        "g" | "G" | "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?}; use B, KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["90", "s", "1.5s", "10 s", "3d", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("10 MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        for bad in [
            "",
            "MiB",
            "1.5MiB",
            "-1",
            "3 TiB",
            "99999999999999999999GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
