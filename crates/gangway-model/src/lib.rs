//! The configuration model of gangway: routes (conditions and actions),
//! upstream pools and their targets, error pages.
//!
//! Providers (Docker labels, the configuration file, later the control-plane
//! store) each produce a [`Fragment`]; [`validate`] checks one with precise
//! errors, and [`Snapshot::build`] merges fragments into one immutable,
//! numbered snapshot that the data plane compiles. Nothing here does I/O.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod balance;
mod failover;
mod file;
mod host;
mod route;
mod snapshot;
mod upstream;
mod validate;

pub use balance::{Balance, HashKey};
pub use failover::{
    parse_duration, parse_size, parse_status_range, Failover, HealthCheck, Retry, Timeouts,
};
pub use file::{parse_file, FileProblem, ParsedFile};
pub use host::{
    is_valid_authority, normalize_host, validate_host_pattern, HostError, MAX_HOST_LEN,
};
pub use route::{
    host_specificity, path_has_prefix, path_specificity, rank, rank_key, Action, FieldMatch,
    HeaderOps, Matcher, PathMatch, Rewrite, Route, StaticFiles, ValueMatch,
};
pub use snapshot::{
    qualified_pool_name, ErrorPage, Fragment, ListenerSpec, ListenerTls, Pool, Snapshot, Source,
    StatusSet, Target, TargetOrigin,
};
pub use upstream::{Protocol, Upstream};
pub use validate::{covers, validate, Problem, Severity};
