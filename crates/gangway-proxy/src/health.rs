//! Active health checks (seed 003): for every target of every pool that
//! has a `health` check, a task that requests the check's path every
//! interval (with ±10 % jitter, so checks of many targets do not arrive
//! together) and takes the target out of service after the unhealthy
//! threshold, or brings it back after the healthy one. Off the request
//! path: requests only read the result.

use crate::body::RequestBody;
use crate::upstream::{Clients, UpstreamClient};
use arc_swap::ArcSwap;
use gangway_model::{HealthCheck, Timeouts, Upstream};
use gangway_router::{RouteTable, TargetState};
use http::{header, Request, Uri};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often the table is looked at for pools, targets or checks that
/// came or went.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

/// One check task's identity: the same target (by address and origin)
/// under the same check keeps its task, and its streak, across reloads.
type Key = (String, SocketAddr, String, HealthCheck, Upstream);

/// Runs the health checks of the current table until the process ends.
pub async fn run_health_checks(table: Arc<ArcSwap<RouteTable>>) {
    // Checks speak the pool's protocol. They are far apart; a fresh
    // connection each time also tests that the target still accepts
    // connections.
    let clients = Clients::default();
    let check_timeouts = Timeouts {
        max_idle_per_target: 0,
        ..Timeouts::default()
    };
    let mut running: HashMap<Key, JoinHandle<()>> = HashMap::new();
    let mut seen_snapshot = None;
    loop {
        let current = table.load_full();
        let number = current.snapshot().number;
        if seen_snapshot != Some(number) {
            seen_snapshot = Some(number);
            let mut wanted: HashMap<Key, (Arc<TargetState>, String)> = HashMap::new();
            for pool in current.pools() {
                let Some(check) = pool.health() else {
                    continue;
                };
                if clients.get(&check_timeouts, pool.upstream()).is_err() {
                    // Already logged; requests to the pool get 502.
                    continue;
                }
                for target in pool.targets() {
                    let key = (
                        pool.name().to_owned(),
                        target.addr,
                        target.id.to_string(),
                        check.clone(),
                        pool.upstream().clone(),
                    );
                    wanted.insert(key, (Arc::clone(&target.state), target.name.to_string()));
                }
            }
            running.retain(|key, task| {
                let keep = wanted.contains_key(key);
                if !keep {
                    task.abort();
                }
                keep
            });
            for (key, (state, name)) in wanted {
                if running.contains_key(&key) {
                    continue;
                }
                let Ok(client) = clients.get(&check_timeouts, &key.4) else {
                    continue;
                };
                let task = tokio::spawn(check_loop(client, key.clone(), state, name));
                running.insert(key, task);
            }
        }
        drop(current);
        tokio::time::sleep(RECONCILE_INTERVAL).await;
    }
}

async fn check_loop(
    client: Arc<UpstreamClient>,
    (pool, addr, _, check, upstream): Key,
    state: Arc<TargetState>,
    name: String,
) {
    let host = check.host.clone().unwrap_or_else(|| addr.to_string());
    let scheme = if upstream.protocol.tls() {
        "https"
    } else {
        "http"
    };
    let uri = format!("{scheme}://{addr}{}", check.path).parse::<Uri>();
    let Ok(uri) = uri else {
        tracing::warn!(pool, upstream = %addr, path = %check.path, "health check path is not a valid URI; not checking");
        return;
    };
    // Start at a random point of the interval: after a reload, the checks
    // of many targets spread out instead of firing together.
    tokio::time::sleep(jittered(check.interval).mul_f64(fraction())).await;
    loop {
        let mut request = Request::new(RequestBody::Replay(None));
        *request.uri_mut() = uri.clone();
        if let Ok(value) = header::HeaderValue::try_from(host.as_str()) {
            request.headers_mut().insert(header::HOST, value);
        }
        request.headers_mut().insert(
            header::USER_AGENT,
            header::HeaderValue::from_static("gangway-health-check"),
        );
        let outcome = match tokio::time::timeout(check.timeout, client.request(request)).await {
            Ok(Ok(response)) => {
                let status = response.status().as_u16();
                if (check.status.0..=check.status.1).contains(&status) {
                    Ok(())
                } else {
                    Err(format!("status {status}"))
                }
            }
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {:?}", check.timeout)),
        };
        let passed = outcome.is_ok();
        match state.record_check(passed, check.healthy_threshold, check.unhealthy_threshold) {
            Some(false) => tracing::warn!(
                pool,
                upstream = %addr,
                container = %name,
                path = %check.path,
                reason = %outcome.err().unwrap_or_default(),
                "health check: target down"
            ),
            Some(true) => {
                tracing::info!(pool, upstream = %addr, container = %name, "health check: target up")
            }
            None => {}
        }
        tokio::time::sleep(jittered(check.interval)).await;
    }
}

/// `interval` ± 10 %.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * fraction())
}

/// A random number in [0, 1).
fn fraction() -> f64 {
    (gangway_router::random_u64() >> 11) as f64 / (1u64 << 53) as f64
}
