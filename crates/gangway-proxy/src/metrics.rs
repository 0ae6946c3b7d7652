//! The statistics as Prometheus metrics (text exposition format 0.0.4),
//! for `GET /metrics` on the admin listener.

use gangway_router::{now_ms, RouteTable, LATENCY_BUCKETS_MS};
use std::fmt::Write;

/// Every route's and target's figures in Prometheus' text format.
pub fn prometheus_metrics(table: &RouteTable) -> String {
    let mut out = String::with_capacity(4096);
    let now = now_ms();
    let snapshot = table.snapshot();
    metric(
        &mut out,
        "gangway_snapshot",
        "gauge",
        "Number of the configuration snapshot in use.",
    );
    let _ = writeln!(out, "gangway_snapshot {}", snapshot.number);

    metric(
        &mut out,
        "gangway_route_requests_total",
        "counter",
        "Requests answered, by route and status class.",
    );
    for route in table.routes() {
        let s = route.counters.snapshot().responses;
        for (class, n) in [
            ("1xx", s.status_1xx),
            ("2xx", s.status_2xx),
            ("3xx", s.status_3xx),
            ("4xx", s.status_4xx),
            ("5xx", s.status_5xx),
        ] {
            let _ = writeln!(
                out,
                "gangway_route_requests_total{{route=\"{}\",class=\"{class}\"}} {n}",
                escape(route.name())
            );
        }
    }

    metric(
        &mut out,
        "gangway_pool_panic",
        "gauge",
        "1 while every target of the pool is out of service and all are tried anyway.",
    );
    for pool in table.pools() {
        let _ = writeln!(
            out,
            "gangway_pool_panic{{pool=\"{}\"}} {}",
            escape(pool.name()),
            u8::from(pool.in_panic())
        );
    }

    let targets: Vec<_> = table
        .pools()
        .iter()
        .flat_map(|p| p.targets().iter().map(move |t| (p, t)))
        .collect();
    let labels = |pool: &str, t: &gangway_router::TargetEntry| {
        format!(
            "pool=\"{}\",target=\"{}\",container=\"{}\"",
            escape(pool),
            t.addr,
            escape(&t.name)
        )
    };

    metric(
        &mut out,
        "gangway_target_requests_total",
        "counter",
        "Requests sent to the target.",
    );
    for (p, t) in &targets {
        let r = t.state.report(now);
        let _ = writeln!(
            out,
            "gangway_target_requests_total{{{}}} {}",
            labels(p.name(), t),
            r.requests
        );
    }
    metric(
        &mut out,
        "gangway_target_failures_total",
        "counter",
        "Requests to the target that got no response, by kind.",
    );
    for (p, t) in &targets {
        let r = t.state.report(now);
        for (kind, n) in [
            ("connect", r.connect_failures),
            ("reset", r.reset_failures),
            ("timeout", r.timeout_failures),
        ] {
            let _ = writeln!(
                out,
                "gangway_target_failures_total{{{},kind=\"{kind}\"}} {n}",
                labels(p.name(), t)
            );
        }
    }
    metric(
        &mut out,
        "gangway_target_ejections_total",
        "counter",
        "Times the target was ejected after failures in a row.",
    );
    for (p, t) in &targets {
        let _ = writeln!(
            out,
            "gangway_target_ejections_total{{{}}} {}",
            labels(p.name(), t),
            t.state.report(now).ejections
        );
    }
    metric(
        &mut out,
        "gangway_target_in_flight",
        "gauge",
        "Requests waiting for the target's response headers.",
    );
    for (p, t) in &targets {
        let _ = writeln!(
            out,
            "gangway_target_in_flight{{{}}} {}",
            labels(p.name(), t),
            t.state.in_flight()
        );
    }
    metric(
        &mut out,
        "gangway_target_up",
        "gauge",
        "1 when the target is in service, 0 when ejected or down by its health check.",
    );
    for (p, t) in &targets {
        let _ = writeln!(
            out,
            "gangway_target_up{{{}}} {}",
            labels(p.name(), t),
            u8::from(!t.state.is_out(now))
        );
    }
    metric(
        &mut out,
        "gangway_target_response_seconds",
        "histogram",
        "Time from sending a request to the target's response headers.",
    );
    for (p, t) in &targets {
        let l = labels(p.name(), t);
        let (counts, sum_us) = t.state.latency_histogram();
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS_MS.iter().zip(&counts) {
            cumulative += count;
            let _ = writeln!(
                out,
                "gangway_target_response_seconds_bucket{{{l},le=\"{}\"}} {cumulative}",
                bound / 1000.0
            );
        }
        let total: u64 = counts.iter().sum();
        let _ = writeln!(
            out,
            "gangway_target_response_seconds_bucket{{{l},le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(
            out,
            "gangway_target_response_seconds_sum{{{l}}} {}",
            sum_us as f64 / 1e6
        );
        let _ = writeln!(out, "gangway_target_response_seconds_count{{{l}}} {total}");
    }
    out
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
    }
}
