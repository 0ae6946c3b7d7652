//! Upstream HTTP clients, one per distinct set of connection settings
//! (connect timeout, idle timeout, idle connections kept), shared by every
//! pool with those settings. Looking one up is a lock-free read; only a
//! new combination, met once per configuration, takes a lock.

use crate::body::RequestBody;
use arc_swap::ArcSwap;
use gangway_model::Timeouts;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A pooled keep-alive HTTP/1.1 client.
pub(crate) type UpstreamClient = Client<HttpConnector, RequestBody>;

type Key = (Duration, Duration, usize);

/// The clients by settings.
#[derive(Default)]
pub(crate) struct Clients {
    by_key: ArcSwap<HashMap<Key, UpstreamClient>>,
    adding: Mutex<()>,
}

impl Clients {
    /// The client for a pool's timeouts.
    pub(crate) fn get(&self, t: &Timeouts) -> UpstreamClient {
        let key = (t.connect, t.idle, t.max_idle_per_target);
        if let Some(client) = self.by_key.load().get(&key) {
            return client.clone();
        }
        let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.by_key.load_full();
        if let Some(client) = current.get(&key) {
            return client.clone();
        }
        let client = build(t);
        let mut next = (*current).clone();
        next.insert(key, client.clone());
        self.by_key.store(Arc::new(next));
        client
    }
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("settings", &self.by_key.load().len())
            .finish()
    }
}

fn build(t: &Timeouts) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(t.connect));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(t.idle)
        .pool_max_idle_per_host(t.max_idle_per_target)
        // The Host header is set from the client's request, not from the target.
        .set_host(false)
        .build(connector)
}
