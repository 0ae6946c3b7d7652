//! The configuration model of gangway: what routes exist, which upstream
//! pools they forward to, and which targets serve each pool.
//!
//! Providers (Docker, later a file and the control-plane store) each produce
//! a [`Fragment`]; [`Snapshot::build`] merges fragments into one immutable,
//! numbered snapshot that the data plane compiles. Nothing here does I/O.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod host;
mod snapshot;

pub use host::{normalize_host, validate_host_pattern, HostError, MAX_HOST_LEN};
pub use snapshot::{Fragment, Pool, Route, Snapshot, Source, Target, TargetOrigin};
