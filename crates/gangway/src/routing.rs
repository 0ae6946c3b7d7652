//! Turns provider fragments into snapshots and swaps the compiled routing
//! table that the data plane reads. Each provider (Docker, the config file)
//! owns one fragment; any change to one rebuilds the snapshot from all.

use arc_swap::ArcSwap;
use gangway_docker::{Publish, Update, UpdateKind};
use gangway_model::{Fragment, Snapshot, Source};
use gangway_router::RouteTable;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// The current routing table and the readiness it implies.
pub struct Routes {
    table: Arc<ArcSwap<RouteTable>>,
    ready: Arc<AtomicBool>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    number: u64,
    fragments: Vec<Fragment>,
}

/// One provider's new fragment and why it changed.
pub struct Change {
    /// The fragment, replacing the previous one of its source.
    pub fragment: Fragment,
    /// Why (`container web-2 start`, `config file changed`).
    pub cause: String,
    /// When the provider saw the change, to log how long it took to apply.
    pub event_time: Option<SystemTime>,
}

impl Routes {
    /// An empty table; `ready` turns true after the first Docker sync.
    pub fn new(ready: Arc<AtomicBool>) -> Arc<Self> {
        Arc::new(Routes {
            table: Arc::new(ArcSwap::from_pointee(RouteTable::default())),
            ready,
            state: Mutex::new(State::default()),
        })
    }

    /// The table the data plane reads.
    pub fn table(&self) -> Arc<ArcSwap<RouteTable>> {
        Arc::clone(&self.table)
    }

    /// Replaces one source's fragment and publishes the merged snapshot.
    pub fn apply(&self, change: Change) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let source = change.fragment.source;
        state.fragments.retain(|f| f.source != source);
        state.fragments.push(change.fragment);
        // The file's routes come first in the snapshot: the order only
        // matters for listing, never for matching (see gangway_model::rank).
        state.fragments.sort_by_key(|f| f.source != Source::File);
        state.number += 1;
        let snapshot = Arc::new(Snapshot::build(
            state.number,
            change.cause,
            &state.fragments,
        ));
        let previous = self.table.load();
        let (compiled, errors) = RouteTable::compile(Arc::clone(&snapshot), &previous);
        drop(previous);
        for error in errors {
            tracing::error!(route = %error.route, reason = %error.reason, "route left out of the routing table");
        }
        let hosts = compiled.host_count();
        self.table.store(Arc::new(compiled));
        drop(state);
        // How long from the provider's event to the new table being live.
        let latency_ms = change
            .event_time
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs_f64() * 1000.0);
        tracing::info!(
            snapshot = snapshot.number,
            checksum = %format!("{:016x}", snapshot.checksum),
            cause = %snapshot.cause,
            routes = snapshot.routes.len(),
            hosts,
            targets = snapshot.target_count(),
            event_to_table_ms = latency_ms,
            "routing table updated"
        );
    }

    /// The callback the Docker provider calls with each new fragment.
    pub fn docker_publisher(self: &Arc<Self>) -> Publish {
        let routes = Arc::clone(self);
        Arc::new(move |update: Update| {
            let sync = update.kind == UpdateKind::Sync;
            routes.apply(Change {
                fragment: update.fragment,
                cause: update.cause,
                event_time: update.event_time,
            });
            if sync {
                routes.ready.store(true, Ordering::Release);
            }
        })
    }
}
