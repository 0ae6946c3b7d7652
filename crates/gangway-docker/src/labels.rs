//! Container labels to routes. Pure: no Docker calls here.
//!
//! Under the prefix (`reverse-proxy.`), a container declares one route with
//! plain keys (`host`, `port`, `path`, …) and any number of named routes
//! with `<name>.<key>` (`reverse-proxy.admin.host`), for a container that
//! serves several ports or sites. `docs/labels.md` lists every key.

use gangway_model::{
    parse_duration, parse_size, validate_host_pattern, Balance, FieldMatch, PathMatch, Protocol,
    Upstream, ValueMatch,
};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use thiserror::Error;

/// The port a container is reached on when `<prefix>port` is absent.
pub const DEFAULT_PORT: u16 = 80;

/// The keys a route's labels may use, besides `header.<Name>`.
const KEYS: [&str; 16] = [
    "host",
    "route-while-starting",
    "weight",
    "balance",
    "hash-on",
    "port",
    "path",
    "path-regex",
    "strip-prefix",
    "priority",
    "methods",
    "redirect-to-https",
    "max-body-size",
    "protocol",
    "tls-verify",
    "tls-server-name",
];

/// One route a container's labels ask for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteLabels {
    /// `None` for the route of the plain keys, else the `<name>` of
    /// `<prefix><name>.<key>`.
    pub name: Option<String>,
    /// Normalised host names, in the order given, without duplicates.
    pub hosts: Vec<String>,
    /// The port inside the container.
    pub port: u16,
    /// The path condition, if any.
    pub path: Option<PathMatch>,
    /// A prefix to remove before forwarding.
    pub strip_prefix: Option<String>,
    /// The route's priority.
    pub priority: i32,
    /// Allowed methods, upper case.
    pub methods: Vec<String>,
    /// Header conditions.
    pub headers: Vec<FieldMatch>,
    /// Whether plain HTTP requests are redirected to HTTPS.
    pub redirect_to_https: bool,
    /// The container's share under weighted balancing.
    pub weight: u32,
    /// How the route's pool spreads requests.
    pub balance: Balance,
    /// How long after its start a container whose Docker health check
    /// still says `starting` is routed anyway.
    pub starting_grace: Option<Duration>,
    /// The largest request body accepted, in bytes.
    pub max_body_size: Option<u64>,
    /// Protocol and TLS towards the container.
    pub upstream: Upstream,
}

/// Why a container's labels cannot be used; the message names the label,
/// its value and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("label {label}={value:?}: {problem}")]
pub struct LabelError {
    /// The full label name.
    pub label: String,
    /// Its value.
    pub value: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl LabelError {
    /// The full name of the label at fault.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// Whether any label is under `prefix`: the container asks to be routed.
pub fn is_labelled<'a>(mut keys: impl Iterator<Item = &'a String>, prefix: &str) -> bool {
    keys.any(|k| k.starts_with(prefix))
}

/// Reads every route under `prefix`. `Ok(empty)` for a container with no
/// label under the prefix. An unknown key is an error with a suggestion:
/// a misspelled label must not silently change what is routed.
pub fn parse_labels(
    labels: &HashMap<String, String>,
    prefix: &str,
) -> Result<Vec<RouteLabels>, LabelError> {
    // Group the keys by route: "" for the plain keys, else the route name.
    let mut groups: BTreeMap<&str, BTreeMap<&str, (&str, &str)>> = BTreeMap::new();
    let mut sorted: Vec<(&String, &String)> = labels.iter().collect();
    sorted.sort();
    for (label, value) in sorted {
        let Some(rest) = label.strip_prefix(prefix) else {
            continue;
        };
        let (route, key) = if is_key(rest) {
            ("", rest)
        } else {
            match rest.split_once('.') {
                // Never empty: `<prefix>.port` must not silently stand for
                // (or override) `<prefix>port`.
                Some((name, key)) if is_key(key) && !valid_route_name(name) => {
                    return Err(error(
                        label,
                        value,
                        "a route name may only use letters, digits, '-' and '_', at least one",
                    ));
                }
                Some((name, key)) if is_key(key) => (name, key),
                _ => return Err(unknown(label, value, rest, prefix)),
            }
        };
        groups
            .entry(route)
            .or_default()
            .insert(key, (label.as_str(), value.as_str()));
    }
    groups
        .into_iter()
        .map(|(name, keys)| parse_route(name, &keys, prefix))
        .collect()
}

fn is_key(key: &str) -> bool {
    KEYS.contains(&key) || key.strip_prefix("header.").is_some_and(|h| !h.is_empty())
}

fn valid_route_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn error(label: &str, value: &str, problem: impl Into<String>) -> LabelError {
    LabelError {
        label: label.to_owned(),
        value: value.to_owned(),
        problem: problem.into(),
    }
}

/// An unknown key, with the closest known label as a suggestion.
fn unknown(label: &str, value: &str, rest: &str, prefix: &str) -> LabelError {
    let (route, key) = match rest.rsplit_once('.') {
        Some((route, key)) => (Some(route), key),
        None => (None, rest),
    };
    let best = KEYS
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .min()
        .filter(|(d, _)| *d <= 2);
    let problem = match best {
        Some((_, k)) => {
            let suggestion = match route {
                Some(r) => format!("{prefix}{r}.{k}"),
                None => format!("{prefix}{k}"),
            };
            format!("unknown label; did you mean {suggestion}?")
        }
        None => format!(
            "unknown label; the keys under {prefix} are {}, header.<Name>, and <route>.<key> for further routes",
            KEYS.join(", ")
        ),
    };
    error(label, value, problem)
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

fn parse_route(
    name: &str,
    keys: &BTreeMap<&str, (&str, &str)>,
    prefix: &str,
) -> Result<RouteLabels, LabelError> {
    let Some(&(host_label, host_value)) = keys.get("host") else {
        let (label, value) = keys.values().next().copied().unwrap_or_default();
        let host_label = if name.is_empty() {
            format!("{prefix}host")
        } else {
            format!("{prefix}{name}.host")
        };
        return Err(error(
            label,
            value,
            format!("this route has no host; add the label {host_label}"),
        ));
    };
    let mut hosts: Vec<String> = Vec::new();
    for raw in host_value
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        let host = validate_host_pattern(raw).map_err(|reason| {
            error(
                host_label,
                host_value,
                format!("host {raw:?} is invalid: {reason}"),
            )
        })?;
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return Err(error(
            host_label,
            host_value,
            "names no host; set it to a host name such as app.example.com, or a comma-separated list of them",
        ));
    }

    let port = match keys.get("port") {
        None => DEFAULT_PORT,
        Some(&(label, value)) => match value.trim().parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                return Err(error(
                    label,
                    value,
                    "is not a port; set it to the port the service listens on inside the container, a number from 1 to 65535",
                ))
            }
        },
    };

    let path = match (keys.get("path"), keys.get("path-regex")) {
        (Some(_), Some(&(label, value))) => {
            return Err(error(
                label,
                value,
                "a route has either path or path-regex, not both",
            ))
        }
        (Some(&(label, value)), None) => {
            let value_t = value.trim();
            if !value_t.starts_with('/') {
                return Err(error(
                    label,
                    value,
                    "a path prefix must start with '/', such as /api",
                ));
            }
            Some(PathMatch::prefix(value_t))
        }
        (None, Some(&(label, value))) => {
            regex::Regex::new(value)
                .map_err(|e| error(label, value, format!("invalid regular expression: {e}")))?;
            Some(PathMatch::Regex(value.to_owned()))
        }
        (None, None) => None,
    };

    let strip_prefix = match keys.get("strip-prefix") {
        None => None,
        Some(&(label, value)) => match value.trim() {
            "false" => None,
            "true" => match &path {
                Some(PathMatch::Prefix(p)) => Some(p.clone()),
                _ => {
                    return Err(error(
                        label,
                        value,
                        "strip-prefix=true needs a path label to strip; or give the prefix itself, such as /api",
                    ))
                }
            },
            p if p.starts_with('/') => Some(p.trim_end_matches('/').to_owned()),
            _ => {
                return Err(error(
                    label,
                    value,
                    "expected true (strip the path label's prefix), false, or a prefix such as /api",
                ))
            }
        },
    };

    let priority = match keys.get("priority") {
        None => 0,
        Some(&(label, value)) => value
            .trim()
            .parse()
            .map_err(|_| error(label, value, "expected a whole number such as 10 or -5"))?,
    };

    let methods = match keys.get("methods") {
        None => Vec::new(),
        Some(&(label, value)) => {
            let methods: Vec<String> = value
                .split(',')
                .map(|m| m.trim().to_ascii_uppercase())
                .filter(|m| !m.is_empty())
                .collect();
            if methods.is_empty()
                || methods
                    .iter()
                    .any(|m| !m.bytes().all(|b| b.is_ascii_uppercase()))
            {
                return Err(error(
                    label,
                    value,
                    "expected a comma-separated list of methods such as GET,POST",
                ));
            }
            methods
        }
    };

    let mut headers = Vec::new();
    for (key, &(label, value)) in keys {
        if let Some(header) = key.strip_prefix("header.") {
            if !header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(error(
                    label,
                    value,
                    "the header name may only use letters, digits, '-' and '_'",
                ));
            }
            headers.push(FieldMatch {
                name: header.to_ascii_lowercase(),
                value: if value.is_empty() {
                    ValueMatch::Present
                } else {
                    ValueMatch::Exact(value.to_owned())
                },
            });
        }
    }

    let redirect_to_https = match keys.get("redirect-to-https") {
        None => false,
        Some(&(label, value)) => match value.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(error(label, value, "expected true or false")),
        },
    };

    let weight = match keys.get("weight") {
        None => 1,
        Some(&(label, value)) => match value.trim().parse::<u32>() {
            Ok(w) if (1..=1000).contains(&w) => w,
            _ => return Err(error(label, value, "expected a weight from 1 to 1000")),
        },
    };

    let balance = match keys.get("balance") {
        None => {
            if let Some(&(label, value)) = keys.get("hash-on") {
                return Err(error(label, value, "hash-on needs the label balance=hash"));
            }
            Balance::default()
        }
        Some(&(label, value)) => {
            let hash_on = keys.get("hash-on").map(|(_, v)| *v);
            Balance::parse(value.trim(), hash_on).map_err(|e| error(label, value, e))?
        }
    };

    let starting_grace = match keys.get("route-while-starting") {
        None => None,
        Some(&(label, value)) => Some(parse_duration(value).map_err(|e| {
            error(
                label,
                value,
                format!("{e}; it is how long a starting container is routed"),
            )
        })?),
    };

    let max_body_size = match keys.get("max-body-size") {
        None => None,
        Some(&(label, value)) => Some(parse_size(value).map_err(|e| error(label, value, e))?),
    };

    let mut upstream = Upstream::default();
    if let Some(&(label, value)) = keys.get("protocol") {
        upstream.protocol = Protocol::parse(value).map_err(|e| error(label, value, e))?;
    }
    if let Some(&(label, value)) = keys.get("tls-verify") {
        upstream.tls_verify = match value.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(error(label, value, "expected true or false")),
        };
    }
    if let Some(&(_, value)) = keys.get("tls-server-name") {
        upstream.tls_server_name = Some(value.trim().to_owned());
    }
    if !upstream.protocol.tls() {
        let tls_label = keys
            .get("tls-verify")
            .or_else(|| keys.get("tls-server-name"));
        if let Some(&(label, value)) = tls_label {
            return Err(error(
                label,
                value,
                "TLS settings need protocol=https or protocol=h2",
            ));
        }
    }

    Ok(RouteLabels {
        max_body_size,
        upstream,
        starting_grace,
        balance,
        weight,
        name: (!name.is_empty()).then(|| name.to_owned()),
        hosts,
        port,
        path,
        strip_prefix,
        priority,
        methods,
        headers,
        redirect_to_https,
    })
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

    fn parse(pairs: &[(&str, &str)]) -> Result<Vec<RouteLabels>, LabelError> {
        parse_labels(&labels(pairs), PREFIX)
    }

    #[test]
    fn protocol_tls_and_body_size() {
        let routes = parse(&[
            ("reverse-proxy.host", "grpc.test"),
            ("reverse-proxy.protocol", "h2"),
            ("reverse-proxy.tls-verify", "false"),
            ("reverse-proxy.tls-server-name", "orders.internal"),
            ("reverse-proxy.max-body-size", "10MiB"),
        ])
        .unwrap();
        assert_eq!(routes[0].upstream.protocol, Protocol::H2);
        assert!(!routes[0].upstream.tls_verify);
        assert_eq!(
            routes[0].upstream.tls_server_name.as_deref(),
            Some("orders.internal")
        );
        assert_eq!(routes[0].max_body_size, Some(10 << 20));

        let plain = parse(&[("reverse-proxy.host", "a.test")]).unwrap();
        assert_eq!(plain[0].upstream, Upstream::default());
        assert_eq!(plain[0].max_body_size, None);

        for (key, value, says) in [
            (
                "reverse-proxy.protocol",
                "grpc",
                "protocol \"grpc\" is not known",
            ),
            (
                "reverse-proxy.tls-verify",
                "false",
                "need protocol=https or protocol=h2",
            ),
            ("reverse-proxy.max-body-size", "lots", "is not a size"),
        ] {
            let error = parse(&[("reverse-proxy.host", "a.test"), (key, value)]).unwrap_err();
            assert_eq!(error.label, key);
            assert!(error.to_string().contains(says), "{error}");
        }
    }

    #[test]
    fn host_and_port_as_in_the_seed() {
        let routes = parse(&[
            ("reverse-proxy.host", "api.example.com"),
            ("reverse-proxy.port", "3000"),
        ])
        .unwrap();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].hosts, ["api.example.com"]);
        assert_eq!(routes[0].port, 3000);
        assert_eq!(routes[0].name, None);
    }

    #[test]
    fn port_defaults_to_80_and_hosts_may_be_a_list() {
        let routes = parse(&[("reverse-proxy.host", " A.test, b.test ,a.test,")]).unwrap();
        assert_eq!(routes[0].hosts, ["a.test", "b.test"]);
        assert_eq!(routes[0].port, 80);
    }

    #[test]
    fn containers_without_labels_under_the_prefix_are_not_ours() {
        assert_eq!(parse(&[("other", "x")]), Ok(vec![]));
        assert_eq!(
            parse_labels(&labels(&[("reverse-proxy.host", "a.test")]), "traefik."),
            Ok(vec![])
        );
    }

    #[test]
    fn every_key_of_a_route() {
        let routes = parse(&[
            ("reverse-proxy.host", "a.test"),
            ("reverse-proxy.path", "/api/"),
            ("reverse-proxy.strip-prefix", "true"),
            ("reverse-proxy.priority", "7"),
            ("reverse-proxy.methods", "get, post"),
            ("reverse-proxy.header.X-Env", "beta"),
            ("reverse-proxy.header.X-Trace", ""),
            ("reverse-proxy.redirect-to-https", "true"),
        ])
        .unwrap();
        let r = &routes[0];
        assert_eq!(r.path, Some(PathMatch::Prefix("/api".into())));
        assert_eq!(r.strip_prefix.as_deref(), Some("/api"));
        assert_eq!(r.priority, 7);
        assert_eq!(r.methods, ["GET", "POST"]);
        assert_eq!(r.headers[0].name, "x-env");
        assert_eq!(r.headers[0].value, ValueMatch::Exact("beta".into()));
        assert_eq!(r.headers[1].value, ValueMatch::Present);
        assert!(r.redirect_to_https);
    }

    #[test]
    fn named_routes_for_a_container_with_two_ports() {
        let routes = parse(&[
            ("reverse-proxy.host", "app.test"),
            ("reverse-proxy.port", "8080"),
            ("reverse-proxy.admin.host", "admin.app.test"),
            ("reverse-proxy.admin.port", "9090"),
            ("reverse-proxy.metrics.host", "app.test"),
            ("reverse-proxy.metrics.path", "/metrics"),
            ("reverse-proxy.metrics.port", "9100"),
        ])
        .unwrap();
        let by_name: Vec<(Option<&str>, u16)> =
            routes.iter().map(|r| (r.name.as_deref(), r.port)).collect();
        assert_eq!(
            by_name,
            [(None, 8080), (Some("admin"), 9090), (Some("metrics"), 9100)]
        );
    }

    #[test]
    fn misspelled_labels_get_a_suggestion() {
        let e = parse(&[
            ("reverse-proxy.host", "a.test"),
            ("reverse-proxy.prot", "81"),
        ])
        .unwrap_err();
        assert_eq!(e.label(), "reverse-proxy.prot");
        assert!(
            e.to_string().contains("did you mean reverse-proxy.port?"),
            "{e}"
        );
        let e = parse(&[("reverse-proxy.admin.hots", "a.test")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("did you mean reverse-proxy.admin.host?"),
            "{e}"
        );
        let e = parse(&[
            ("reverse-proxy.host", "a.test"),
            ("reverse-proxy.zzzzzzzz", "1"),
        ])
        .unwrap_err();
        assert!(
            e.to_string().contains("the keys under reverse-proxy. are"),
            "{e}"
        );
        let e = parse(&[("reverse-proxy.admin.port", "81")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("add the label reverse-proxy.admin.host"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_label_and_the_fix() {
        let empty = parse(&[("reverse-proxy.host", " , ")]).unwrap_err();
        assert_eq!(empty.label(), "reverse-proxy.host");
        assert!(empty.to_string().contains("host name such as"));

        for port in ["abc", "70000", "0", "-1", ""] {
            let err = parse(&[
                ("reverse-proxy.host", "a.test"),
                ("reverse-proxy.port", port),
            ])
            .unwrap_err();
            assert_eq!(err.label(), "reverse-proxy.port", "{port}");
            assert!(err.to_string().contains("from 1 to 65535"), "{err}");
        }
        let cases = [
            ("reverse-proxy.path", "api", "must start with '/'"),
            (
                "reverse-proxy.path-regex",
                "(",
                "invalid regular expression",
            ),
            ("reverse-proxy.priority", "high", "whole number"),
            ("reverse-proxy.methods", "GET,P0ST", "list of methods"),
            ("reverse-proxy.strip-prefix", "yes", "expected true"),
            (
                "reverse-proxy.redirect-to-https",
                "1",
                "expected true or false",
            ),
        ];
        for (label, value, want) in cases {
            let err = parse(&[("reverse-proxy.host", "a.test"), (label, value)]).unwrap_err();
            assert_eq!(err.label(), label);
            assert!(err.to_string().contains(want), "{err}");
        }
        let bad_host = parse(&[("reverse-proxy.host", "http://a.test")]).unwrap_err();
        assert!(bad_host.to_string().contains("is invalid"), "{bad_host}");
    }

    /// Found writing the `docker_labels` fuzz target: an empty route name
    /// made `reverse-proxy..port` a second spelling of `reverse-proxy.port`,
    /// silently used or overridden.
    #[test]
    fn an_empty_route_name_is_refused() {
        let e = parse(&[
            ("reverse-proxy.host", "a.test"),
            ("reverse-proxy..port", "8080"),
        ])
        .unwrap_err();
        assert_eq!(e.label(), "reverse-proxy..port");
        assert!(e.to_string().contains("route name"), "{e}");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("prot", "port"), 2);
        assert_eq!(edit_distance("host", "host"), 0);
        assert_eq!(edit_distance("hots", "host"), 2);
        assert_eq!(edit_distance("paht", "path"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
