//! The extra listeners of the configuration file (`[[listeners]]`), bound
//! and closed as the file changes, without restart.
//!
//! A change is all or nothing: every new port is bound and every new
//! certificate loaded before anything is switched, so a port that is taken
//! or a broken certificate leaves the running listeners as they were and
//! the file's change is refused.

use gangway_model::ListenerSpec;
use gangway_proxy::{Listener, Proxy, TlsAcceptor};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

/// How long a port closed by one listener may take to become free for the
/// listener that replaces it on the same port.
const REBIND_WAIT: Duration = Duration::from_secs(2);

struct Running {
    spec: ListenerSpec,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The file's listeners that are running.
pub struct FileListeners {
    proxy: Arc<Proxy>,
    /// Ports gangway's settings already use, with the setting's name.
    reserved: Vec<(u16, &'static str)>,
    running: Mutex<HashMap<u16, Running>>,
}

impl FileListeners {
    /// No listener yet; `reserved` are the ports of the settings.
    pub fn new(proxy: Arc<Proxy>, reserved: Vec<(u16, &'static str)>) -> Self {
        FileListeners {
            proxy,
            reserved,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the running listeners those of `specs`.
    pub async fn reconcile(&self, specs: &[ListenerSpec]) -> Result<(), String> {
        for spec in specs {
            if let Some((_, setting)) = self.reserved.iter().find(|(p, _)| *p == spec.port) {
                return Err(format!(
                    "listener {:?}: port {} is already {setting}'s; choose another port",
                    spec.name, spec.port
                ));
            }
        }
        let mut running = self.running.lock().await;
        // Everything that can fail, first.
        let mut prepared: Vec<(ListenerSpec, Option<TlsAcceptor>)> = Vec::new();
        for spec in specs {
            if running.get(&spec.port).is_some_and(|r| r.spec == *spec) {
                continue;
            }
            let tls = match &spec.tls {
                None => None,
                Some(tls) => {
                    let config = gangway_proxy::tls::load_server_config(
                        std::path::Path::new(&tls.cert),
                        std::path::Path::new(&tls.key),
                    )
                    .map_err(|e| format!("listener {:?}: {e}", spec.name))?;
                    Some(TlsAcceptor::from(config))
                }
            };
            prepared.push((spec.clone(), tls));
        }
        let mut bound = Vec::new();
        for (spec, tls) in prepared {
            // A port that one of ours holds is bound after that one stops.
            let socket = if running.contains_key(&spec.port) {
                None
            } else {
                Some(
                    gangway_proxy::listener::bind_dual_stack(spec.port).map_err(|e| {
                        format!(
                            "listener {:?}: cannot listen on port {}: {e}",
                            spec.name, spec.port
                        )
                    })?,
                )
            };
            bound.push((spec, tls, socket));
        }

        // Stop what is gone or changed.
        let keep: HashMap<u16, &ListenerSpec> = specs.iter().map(|s| (s.port, s)).collect();
        let stale: Vec<u16> = running
            .iter()
            .filter(|(port, r)| keep.get(port) != Some(&&r.spec))
            .map(|(port, _)| *port)
            .collect();
        for port in stale {
            if let Some(old) = running.remove(&port) {
                let _ = old.stop.send(true);
                // The accept loop drops its socket as soon as it sees the
                // stop; requests in flight finish on their own.
                let _ = tokio::time::timeout(REBIND_WAIT, async {
                    while !old.task.is_finished() && !port_is_free(port) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
                .await;
                tracing::info!(name = %old.spec.name, port, "listener closed");
            }
        }

        for (spec, tls, socket) in bound {
            let socket = match socket {
                Some(socket) => socket,
                None => rebind(spec.port).await.map_err(|e| {
                    format!(
                        "listener {:?}: cannot listen on port {}: {e}",
                        spec.name, spec.port
                    )
                })?,
            };
            let (stop, stopped) = watch::channel(false);
            let https = tls.is_some();
            let task = tokio::spawn(gangway_proxy::serve(
                Arc::clone(&self.proxy),
                Listener {
                    socket,
                    tls,
                    h2c: spec.h2c,
                },
                stopped,
            ));
            tracing::info!(name = %spec.name, port = spec.port, https, "listener started");
            running.insert(spec.port, Running { spec, stop, task });
        }
        Ok(())
    }

    /// Stops every listener and waits for requests in flight.
    pub async fn stop_all(&self) {
        let mut running = self.running.lock().await;
        for (_, r) in running.drain() {
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
    }
}

/// Binds a port that a stopping listener of ours is releasing.
async fn rebind(port: u16) -> std::io::Result<std::net::TcpListener> {
    let deadline = tokio::time::Instant::now() + REBIND_WAIT;
    loop {
        match gangway_proxy::listener::bind_dual_stack(port) {
            Ok(socket) => return Ok(socket),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn port_is_free(port: u16) -> bool {
    gangway_proxy::listener::bind_dual_stack(port).is_ok()
}
