//! What the Docker provider knows, for the admin API: every labelled
//! container with what became of it (routed, skipped and why, off the proxy
//! network), and the route conflicts between containers.

use crate::state::Conflict;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// One labelled container as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerReport {
    /// The container's name.
    pub name: String,
    /// Its short id.
    pub id: String,
    /// `routed`, `skipped` or `not on proxy network`.
    pub status: &'static str,
    /// The label at fault, for `skipped`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// What is wrong and how to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A conflict, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConflictReport {
    /// The host both claim.
    pub host: String,
    /// The path condition both claim.
    pub path: String,
    /// The container whose route is used.
    pub kept: String,
    /// The container whose route was left out.
    pub skipped: String,
}

impl From<&Conflict> for ConflictReport {
    fn from(c: &Conflict) -> Self {
        ConflictReport {
            host: c.host.clone(),
            path: c.path.clone(),
            kept: c.kept.clone(),
            skipped: c.skipped.clone(),
        }
    }
}

/// The provider's report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DockerReport {
    /// Whether the provider is connected to the engine now.
    pub connected: bool,
    /// Labelled containers, by name.
    pub containers: Vec<ContainerReport>,
    /// Route conflicts.
    pub conflicts: Vec<ConflictReport>,
}

/// The report, shared between the provider (which writes it) and the
/// admin API (which reads it).
#[derive(Debug, Clone, Default)]
pub struct DockerStatus(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    connected: bool,
    containers: BTreeMap<String, ContainerReport>,
    conflicts: Vec<ConflictReport>,
}

impl DockerStatus {
    /// The report at this moment.
    pub fn report(&self) -> DockerReport {
        let inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut containers: Vec<ContainerReport> = inner.containers.values().cloned().collect();
        containers.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        DockerReport {
            connected: inner.connected,
            containers,
            conflicts: inner.conflicts.clone(),
        }
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connected = connected;
    }

    pub(crate) fn set(&self, id: &str, report: ContainerReport) {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        inner.containers.insert(id.to_owned(), report);
    }

    pub(crate) fn remove(&self, id: &str) {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        inner.containers.remove(id);
    }

    /// Keeps only the containers a full sync saw.
    pub(crate) fn retain(&self, ids: &[String]) {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        inner.containers.retain(|id, _| ids.contains(id));
    }

    pub(crate) fn set_conflicts(&self, conflicts: &[Conflict]) {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        inner.conflicts = conflicts.iter().map(ConflictReport::from).collect();
    }
}
