//! Container labels to routing settings. Pure: no Docker calls here.

use gangway_model::{validate_host_pattern, HostError};
use std::collections::HashMap;
use thiserror::Error;

/// The port a container is reached on when `<prefix>port` is absent.
pub const DEFAULT_PORT: u16 = 80;

/// What a container's labels ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingLabels {
    /// Normalised host names, in the order given, without duplicates.
    pub hosts: Vec<String>,
    /// The port inside the container.
    pub port: u16,
}

/// Why a container's labels cannot be used; the message names the label,
/// its value and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LabelError {
    /// `<prefix>host` is present but names no host.
    #[error("label {label}={value:?} names no host; set it to a host name such as app.example.com, or a comma-separated list of them")]
    EmptyHost {
        /// The full label name.
        label: String,
        /// Its value.
        value: String,
    },
    /// One of the hosts is not a valid host name.
    #[error("label {label}={value:?}: host {host:?} is invalid: {reason}")]
    BadHost {
        /// The full label name.
        label: String,
        /// Its value.
        value: String,
        /// The offending host.
        host: String,
        /// Why it is invalid.
        reason: HostError,
    },
    /// `<prefix>port` is not a TCP port number.
    #[error("label {label}={value:?} is not a port; set it to the port the service listens on inside the container, a number from 1 to 65535")]
    BadPort {
        /// The full label name.
        label: String,
        /// Its value.
        value: String,
    },
}

impl LabelError {
    /// The full name of the label at fault.
    pub fn label(&self) -> &str {
        match self {
            LabelError::EmptyHost { label, .. }
            | LabelError::BadHost { label, .. }
            | LabelError::BadPort { label, .. } => label,
        }
    }
}

/// Reads the routing labels under `prefix`. Returns `Ok(None)` for a
/// container without `<prefix>host`: it does not ask to be routed.
pub fn parse_labels(
    labels: &HashMap<String, String>,
    prefix: &str,
) -> Result<Option<RoutingLabels>, LabelError> {
    let host_label = format!("{prefix}host");
    let Some(host_value) = labels.get(&host_label) else {
        return Ok(None);
    };
    let mut hosts: Vec<String> = Vec::new();
    for raw in host_value
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        let host = validate_host_pattern(raw).map_err(|reason| LabelError::BadHost {
            label: host_label.clone(),
            value: host_value.clone(),
            host: raw.to_owned(),
            reason,
        })?;
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return Err(LabelError::EmptyHost {
            label: host_label,
            value: host_value.clone(),
        });
    }

    let port_label = format!("{prefix}port");
    let port = match labels.get(&port_label) {
        None => DEFAULT_PORT,
        Some(value) => match value.trim().parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                return Err(LabelError::BadPort {
                    label: port_label,
                    value: value.clone(),
                })
            }
        },
    };
    Ok(Some(RoutingLabels { hosts, port }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "reverse-proxy.";

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn host_and_port_as_in_the_seed() {
        let parsed = parse_labels(
            &labels(&[
                ("reverse-proxy.host", "api.example.com"),
                ("reverse-proxy.port", "3000"),
            ]),
            PREFIX,
        );
        assert_eq!(
            parsed,
            Ok(Some(RoutingLabels {
                hosts: vec!["api.example.com".into()],
                port: 3000
            }))
        );
    }

    #[test]
    fn port_defaults_to_80_and_hosts_may_be_a_list() {
        let parsed = parse_labels(
            &labels(&[("reverse-proxy.host", " A.test, b.test ,a.test,")]),
            PREFIX,
        )
        .unwrap()
        .unwrap();
        assert_eq!(parsed.hosts, ["a.test", "b.test"]);
        assert_eq!(parsed.port, 80);
    }

    #[test]
    fn containers_without_host_label_are_not_ours() {
        assert_eq!(parse_labels(&labels(&[("other", "x")]), PREFIX), Ok(None));
        // The prefix is configurable: another prefix's labels are ignored.
        assert_eq!(
            parse_labels(&labels(&[("reverse-proxy.host", "a.test")]), "traefik."),
            Ok(None)
        );
    }

    #[test]
    fn bad_labels_name_the_label_and_the_fix() {
        let empty = parse_labels(&labels(&[("reverse-proxy.host", " , ")]), PREFIX).unwrap_err();
        assert_eq!(empty.label(), "reverse-proxy.host");
        assert!(empty.to_string().contains("host name such as"));

        for port in ["abc", "70000", "0", "-1", ""] {
            let err = parse_labels(
                &labels(&[
                    ("reverse-proxy.host", "a.test"),
                    ("reverse-proxy.port", port),
                ]),
                PREFIX,
            )
            .unwrap_err();
            assert_eq!(err.label(), "reverse-proxy.port", "{port}");
            assert!(err.to_string().contains("from 1 to 65535"), "{err}");
        }

        let bad_host =
            parse_labels(&labels(&[("reverse-proxy.host", "http://a.test")]), PREFIX).unwrap_err();
        assert!(matches!(bad_host, LabelError::BadHost { .. }), "{bad_host}");
    }
}
