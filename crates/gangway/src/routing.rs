//! Turns provider updates into snapshots and swaps the compiled routing
//! table that the data plane reads.

use arc_swap::ArcSwap;
use gangway_docker::{Publish, Update, UpdateKind};
use gangway_model::Snapshot;
use gangway_router::RouteTable;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// The current routing table and the readiness it implies.
pub struct Routes {
    table: Arc<ArcSwap<RouteTable>>,
    ready: Arc<AtomicBool>,
    number: Arc<AtomicU64>,
}

impl Routes {
    /// An empty table; `ready` turns true after the first full sync.
    pub fn new(ready: Arc<AtomicBool>) -> Self {
        Routes {
            table: Arc::new(ArcSwap::from_pointee(RouteTable::default())),
            ready,
            number: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The table the data plane reads.
    pub fn table(&self) -> Arc<ArcSwap<RouteTable>> {
        Arc::clone(&self.table)
    }

    /// The callback the Docker provider calls with each new fragment.
    pub fn publisher(&self) -> Publish {
        let table = Arc::clone(&self.table);
        let ready = Arc::clone(&self.ready);
        let number = Arc::clone(&self.number);
        Arc::new(move |update: Update| {
            let n = number.fetch_add(1, Ordering::Relaxed) + 1;
            let snapshot = Snapshot::build(n, update.cause, &[update.fragment]);
            let compiled = RouteTable::compile(&snapshot);
            let hosts = compiled.host_count();
            table.store(Arc::new(compiled));
            // How long from Docker's event to the new table being live.
            let latency_ms = update
                .event_time
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(|d| d.as_secs_f64() * 1000.0);
            tracing::info!(
                snapshot = n,
                checksum = %format!("{:016x}", snapshot.checksum),
                cause = %snapshot.cause,
                hosts,
                targets = snapshot.target_count(),
                event_to_table_ms = latency_ms,
                "routing table updated"
            );
            if update.kind == UpdateKind::Sync {
                ready.store(true, Ordering::Release);
            }
        })
    }
}
