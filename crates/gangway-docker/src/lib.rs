//! The Docker provider: turns labelled containers on the proxy network into
//! a [`gangway_model::Fragment`] of routes, and keeps it current from the
//! Engine's event stream.
//!
//! The Engine API calls it makes (and nothing else) are listed in
//! `docs/docker.md`, so a socket proxy can grant exactly those.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod labels;
mod provider;
pub mod state;
mod status;

pub use provider::{run, DockerSettings, Publish, Update, UpdateKind};
pub use state::ListenerPorts;
pub use status::{ConflictReport, ContainerReport, DockerReport, DockerStatus};
