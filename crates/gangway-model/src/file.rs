//! The configuration file (TOML): parsed into a [`Fragment`] of source
//! `file`, with every error located by line and column.
//!
//! The file maps one-to-one onto the model: `[[listeners]]`, `[[routes]]`,
//! `[[pools]]` (with their targets) and `[[error_pages]]`; `docs/config.md`
//! documents every key.

use crate::balance::Balance;
use crate::failover::{
    parse_duration, parse_size, parse_status_range, Failover, HealthCheck, Retry, Timeouts,
};
use crate::route::{
    Action, FieldMatch, HeaderOps, Matcher, PathMatch, Rewrite, Route, StaticFiles, ValueMatch,
};
use crate::snapshot::{
    ErrorPage, Fragment, ListenerSpec, ListenerTls, Pool, Source, StatusSet, Target, TargetOrigin,
};
use crate::upstream::{Protocol, Upstream};
use crate::validate::{validate, Problem, Severity};
use crate::validate_host_pattern;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// A problem in the file, at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    /// Error or warning.
    pub severity: Severity,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.line, self.column, self.severity, self.message
        )
    }
}

/// What reading a configuration file gave.
#[derive(Debug, Clone)]
pub struct ParsedFile {
    /// The fragment, usable when `problems` holds no error.
    pub fragment: Fragment,
    /// Errors and warnings, errors first.
    pub problems: Vec<FileProblem>,
}

impl ParsedFile {
    /// Whether the file can be used.
    pub fn is_valid(&self) -> bool {
        !self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

/// Parses and validates a configuration file's text.
///
/// `base_dir` resolves relative paths (static roots, error pages);
/// `read_page` reads an error page file (the model itself does no I/O).
pub fn parse_file(
    text: &str,
    base_dir: &Path,
    read_page: &mut dyn FnMut(&Path) -> Result<String, String>,
) -> ParsedFile {
    let mut out = ParsedFile {
        fragment: Fragment::empty(Source::File),
        problems: Vec::new(),
    };
    let spec: FileSpec = match toml::from_str(text) {
        Ok(spec) => spec,
        Err(e) => {
            let at = e.span().unwrap_or(0..0);
            out.problems
                .push(problem(text, &at, Severity::Error, e.message().to_owned()));
            return out;
        }
    };
    let mut spans: BTreeMap<String, Range<usize>> = BTreeMap::new();

    for pool in &spec.pools {
        let span = pool.span();
        let pool = pool.get_ref();
        let mut targets = Vec::new();
        for t in &pool.targets {
            let (text_addr, weight) = match t.get_ref() {
                TargetSpec::Addr(a) => (a, 1),
                TargetSpec::Weighted { addr, weight } => (addr, *weight),
            };
            match text_addr.parse::<SocketAddr>() {
                Ok(addr) => targets.push(Target {
                    addr,
                    origin: TargetOrigin {
                        name: text_addr.clone(),
                        id: format!("file/{}/{}", pool.name, text_addr),
                    },
                    weight,
                }),
                Err(_) => out.problems.push(problem(
                    text,
                    &t.span(),
                    Severity::Error,
                    format!(
                        "target {text_addr:?} is not an address; write IP:port such as \"10.0.0.5:8080\" or \"[::1]:8080\""
                    ),
                )),
            }
        }
        // A bad part is reported at the pool and replaced by its default, so
        // that the rest of the file is still checked.
        let mut part = |result: Result<(), String>| {
            if let Err(message) = result {
                out.problems.push(problem(
                    text,
                    &span,
                    Severity::Error,
                    format!("pool {:?}: {message}", pool.name),
                ));
            }
        };
        let mut failover = None;
        let mut timeouts = None;
        let mut balance = None;
        let mut health = None;
        let mut upstream = Upstream::default();
        part(Protocol::parse(&pool.protocol).map(|p| upstream.protocol = p));
        if !upstream.protocol.tls()
            && (pool.tls_ca.is_some() || pool.tls_server_name.is_some() || !pool.tls_verify)
        {
            part(Err(
                "tls_verify, tls_ca and tls_server_name belong to protocol = \"https\" or \"h2\" pools".into(),
            ));
        }
        upstream.tls_verify = pool.tls_verify;
        upstream.tls_ca = pool
            .tls_ca
            .as_ref()
            .map(|ca| base_dir.join(ca).to_string_lossy().into_owned());
        upstream.tls_server_name = pool.tls_server_name.clone();
        part(
            pool.failover
                .as_ref()
                .map(FailoverSpec::to_model)
                .transpose()
                .map(|f| failover = f),
        );
        part(
            pool.timeouts
                .as_ref()
                .map(TimeoutsSpec::to_model)
                .transpose()
                .map(|t| timeouts = t),
        );
        part(Balance::parse(&pool.balance, pool.hash_on.as_deref()).map(|b| balance = Some(b)));
        part(
            pool.health
                .as_ref()
                .map(HealthSpec::to_model)
                .transpose()
                .map(|h| health = h),
        );
        let (failover, timeouts, balance) = (
            failover.unwrap_or_default(),
            timeouts.unwrap_or_default(),
            balance.unwrap_or_default(),
        );
        spans.insert(format!("pool {:?}", pool.name), span);
        out.fragment.pools.push(Pool {
            health,
            name: pool.name.clone(),
            targets,
            failover,
            timeouts,
            balance,
            upstream,
        });
    }

    for listener in &spec.listeners {
        let span = listener.span();
        let l = listener.get_ref();
        spans.insert(format!("listener {:?}", l.name), span.clone());
        let mut fail = |message: String| {
            out.problems.push(problem(
                text,
                &span,
                Severity::Error,
                format!("listener {:?}: {message}", l.name),
            ))
        };
        if l.h2c && l.protocol != "http" {
            fail("h2c applies to http listeners; https listeners offer HTTP/2 by ALPN".into());
            continue;
        }
        let tls = match (l.protocol.as_str(), &l.cert, &l.key) {
            ("http", None, None) => None,
            ("http", _, _) => {
                fail("cert and key belong to protocol = \"https\" listeners".into());
                continue;
            }
            ("https", Some(cert), Some(key)) => Some(ListenerTls {
                cert: base_dir.join(cert).to_string_lossy().into_owned(),
                key: base_dir.join(key).to_string_lossy().into_owned(),
            }),
            ("https", _, _) => {
                fail("an https listener needs cert and key (PEM files)".into());
                continue;
            }
            (other, _, _) => {
                fail(format!(
                    "protocol {other:?} is not known; use \"http\" or \"https\""
                ));
                continue;
            }
        };
        out.fragment.listeners.push(ListenerSpec {
            name: l.name.clone(),
            port: l.port,
            tls,
            h2c: l.h2c,
        });
    }

    for route in &spec.routes {
        let span = route.span();
        let mut errors = Vec::new();
        let converted = convert_route(route.get_ref(), base_dir, &mut errors);
        for message in errors {
            out.problems.push(problem(
                text,
                &span,
                Severity::Error,
                format!("route {:?}: {message}", route.get_ref().name),
            ));
        }
        spans.insert(format!("route {:?}", route.get_ref().name), span);
        if let Some(r) = converted {
            out.fragment.routes.push(r);
        }
    }

    for (i, page) in spec.error_pages.iter().enumerate() {
        let span = page.span();
        let spec = page.get_ref();
        spans.insert(format!("error page {}", i + 1), span.clone());
        let mut statuses = Vec::new();
        for s in &spec.status {
            match parse_status_set(&s.to_string()) {
                Some(set) => statuses.push(set),
                None => out.problems.push(problem(
                    text,
                    &span,
                    Severity::Error,
                    format!("error page {}: status {s} is not a code such as 502 or a class such as 5xx", i + 1),
                )),
            }
        }
        let path = base_dir.join(&spec.file);
        match read_page(&path) {
            Ok(body) => out.fragment.error_pages.push(ErrorPage {
                statuses,
                content_type: spec
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "text/html; charset=utf-8".into()),
                body,
            }),
            Err(e) => out.problems.push(problem(
                text,
                &span,
                Severity::Error,
                format!("error page {}: cannot read {}: {e}", i + 1, path.display()),
            )),
        }
    }

    for p in validate(&out.fragment) {
        let at = spans.get(&p.subject).cloned().unwrap_or(0..0);
        out.problems
            .push(problem(text, &at, p.severity, located(&p)));
    }
    out.problems
        .sort_by_key(|p| (p.severity == Severity::Warning, p.line, p.column));
    out
}

fn located(p: &Problem) -> String {
    format!("{}: {}", p.subject, p.message)
}

fn problem(text: &str, at: &Range<usize>, severity: Severity, message: String) -> FileProblem {
    let (line, column) = line_column(text, at.start);
    FileProblem {
        severity,
        line,
        column,
        message,
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn parse_status_set(s: &str) -> Option<StatusSet> {
    let s = s.trim().to_ascii_lowercase();
    if let Some(class) = s.strip_suffix("xx") {
        return class
            .parse::<u8>()
            .ok()
            .filter(|c| (1..=5).contains(c))
            .map(StatusSet::Class);
    }
    s.parse::<u16>().ok().map(StatusSet::Code)
}

fn convert_route(spec: &RouteSpec, base_dir: &Path, errors: &mut Vec<String>) -> Option<Route> {
    let mut hosts = Vec::new();
    for h in &spec.hosts {
        match validate_host_pattern(h) {
            Ok(host) => hosts.push(host),
            Err(e) => errors.push(format!("host {h:?}: {e}")),
        }
    }
    let path = spec
        .path
        .as_ref()
        .and_then(|p| match (&p.exact, &p.prefix, &p.regex) {
            (Some(e), None, None) => Some(PathMatch::Exact(e.clone())),
            (None, Some(pre), None) => Some(PathMatch::prefix(pre)),
            (None, None, Some(r)) => Some(PathMatch::Regex(r.clone())),
            _ => {
                errors.push("path needs exactly one of exact, prefix or regex".into());
                None
            }
        });
    let fields = |specs: &[FieldSpec], lower: bool, errors: &mut Vec<String>| -> Vec<FieldMatch> {
        specs
            .iter()
            .filter_map(|f| {
                let value = match (&f.exact, &f.regex) {
                    (None, None) => ValueMatch::Present,
                    (Some(e), None) => ValueMatch::Exact(e.clone()),
                    (None, Some(r)) => ValueMatch::Regex(r.clone()),
                    (Some(_), Some(_)) => {
                        errors.push(format!(
                            "condition on {:?} has both exact and regex; keep one",
                            f.name
                        ));
                        return None;
                    }
                };
                let name = if lower {
                    f.name.to_ascii_lowercase()
                } else {
                    f.name.clone()
                };
                Some(FieldMatch { name, value })
            })
            .collect()
    };
    let matcher = Matcher {
        hosts,
        path,
        methods: spec
            .methods
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect(),
        headers: fields(&spec.headers, true, errors),
        query: fields(&spec.query, false, errors),
        websocket: spec.websocket,
        ports: spec.ports.clone(),
    };

    let mut actions = Vec::new();
    if let Some(pool) = &spec.pool {
        actions.push(Action::Forward { pool: pool.clone() });
    }
    if let Some(r) = &spec.redirect {
        actions.push(Action::Redirect {
            status: r.status,
            location: r.to.clone(),
        });
    }
    if let Some(s) = &spec.static_files {
        actions.push(Action::Static(StaticFiles {
            root: base_dir.join(&s.root).to_string_lossy().into_owned(),
            index: s.index.clone(),
            fallback: s.fallback.clone(),
        }));
    }
    if let Some(r) = &spec.respond {
        actions.push(Action::Respond {
            status: r.status,
            body: r.body.clone(),
            content_type: r.content_type.clone(),
        });
    }
    if spec.statistics {
        actions.push(Action::Statistics);
    }
    if actions.len() != 1 {
        errors.push(format!(
            "a route needs exactly one action (pool, redirect, static, respond or statistics = true); it has {}",
            actions.len()
        ));
        return None;
    }
    let rewrite = match (&spec.strip_prefix, &spec.rewrite) {
        (None, None) => None,
        (Some(p), None) => Some(Rewrite::StripPrefix(p.trim_end_matches('/').to_owned())),
        (None, Some(r)) => Some(Rewrite::Regex {
            pattern: r.regex.clone(),
            replacement: r.replacement.clone(),
        }),
        (Some(_), Some(_)) => {
            errors.push("strip_prefix and rewrite cannot be combined; keep one".into());
            None
        }
    };
    let max_body_size = match spec.max_body_size.as_deref().map(parse_size) {
        None => None,
        Some(Ok(size)) => Some(size),
        Some(Err(error)) => {
            errors.push(format!("max_body_size: {error}"));
            return None;
        }
    };
    Some(Route {
        name: spec.name.clone(),
        priority: spec.priority,
        matcher,
        action: actions.remove(0),
        rewrite,
        request_headers: spec.request_headers.to_ops(),
        response_headers: spec.response_headers.to_ops(),
        intercept_errors: spec.intercept_errors,
        max_body_size,
        allow_upgrade: spec.allow_upgrade,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    routes: Vec<Spanned<RouteSpec>>,
    #[serde(default)]
    pools: Vec<Spanned<PoolSpec>>,
    #[serde(default)]
    error_pages: Vec<Spanned<ErrorPageSpec>>,
    #[serde(default)]
    listeners: Vec<Spanned<ListenerFileSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerFileSpec {
    name: String,
    port: u16,
    #[serde(default = "default_protocol")]
    protocol: String,
    cert: Option<String>,
    key: Option<String>,
    #[serde(default)]
    h2c: bool,
}

fn default_protocol() -> String {
    "http".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolSpec {
    name: String,
    #[serde(default)]
    targets: Vec<Spanned<TargetSpec>>,
    #[serde(default = "default_balance")]
    balance: String,
    hash_on: Option<String>,
    failover: Option<FailoverSpec>,
    timeouts: Option<TimeoutsSpec>,
    health: Option<HealthSpec>,
    #[serde(default = "default_protocol")]
    protocol: String,
    #[serde(default = "yes")]
    tls_verify: bool,
    tls_ca: Option<String>,
    tls_server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthSpec {
    path: String,
    host: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    status: Option<String>,
    healthy: Option<u32>,
    unhealthy: Option<u32>,
}

impl HealthSpec {
    fn to_model(&self) -> Result<HealthCheck, String> {
        let d = HealthCheck::default();
        let duration = |key: &str, v: &Option<String>, default| match v {
            None => Ok(default),
            Some(text) => parse_duration(text).map_err(|e| format!("health.{key}: {e}")),
        };
        Ok(HealthCheck {
            path: self.path.clone(),
            host: self.host.clone(),
            interval: duration("interval", &self.interval, d.interval)?,
            timeout: duration("timeout", &self.timeout, d.timeout)?,
            status: match &self.status {
                None => d.status,
                Some(s) => parse_status_range(s).map_err(|e| format!("health.{e}"))?,
            },
            healthy_threshold: self.healthy.unwrap_or(d.healthy_threshold),
            unhealthy_threshold: self.unhealthy.unwrap_or(d.unhealthy_threshold),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsSpec {
    connect: Option<String>,
    response_header: Option<String>,
    idle: Option<String>,
    request: Option<String>,
    max_idle_per_target: Option<usize>,
}

impl TimeoutsSpec {
    fn to_model(&self) -> Result<Timeouts, String> {
        let d = Timeouts::default();
        let duration = |key: &str, v: &Option<String>, default| match v {
            None => Ok(default),
            Some(text) => parse_duration(text).map_err(|e| format!("timeouts.{key}: {e}")),
        };
        Ok(Timeouts {
            connect: duration("connect", &self.connect, d.connect)?,
            response_header: duration("response_header", &self.response_header, d.response_header)?,
            idle: duration("idle", &self.idle, d.idle)?,
            request: match &self.request {
                None => None,
                Some(text) => {
                    Some(parse_duration(text).map_err(|e| format!("timeouts.request: {e}"))?)
                }
            },
            max_idle_per_target: self.max_idle_per_target.unwrap_or(d.max_idle_per_target),
        })
    }
}

fn default_balance() -> String {
    "round_robin".into()
}

/// `"10.0.0.5:8080"` or `{ addr = "10.0.0.5:8080", weight = 3 }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TargetSpec {
    Addr(String),
    Weighted {
        addr: String,
        #[serde(default = "default_weight")]
        weight: u32,
    },
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverSpec {
    failures: Option<u32>,
    cooldown: Option<String>,
    max_cooldown: Option<String>,
    attempts: Option<u32>,
    retry: Option<String>,
    replay_limit: Option<u64>,
}

impl FailoverSpec {
    fn to_model(&self) -> Result<Failover, String> {
        let d = Failover::default();
        let duration = |key: &str, v: &Option<String>, default| match v {
            None => Ok(default),
            Some(text) => parse_duration(text).map_err(|e| format!("failover.{key}: {e}")),
        };
        Ok(Failover {
            max_failures: self.failures.unwrap_or(d.max_failures),
            cooldown: duration("cooldown", &self.cooldown, d.cooldown)?,
            max_cooldown: duration("max_cooldown", &self.max_cooldown, d.max_cooldown)?,
            max_attempts: self.attempts.unwrap_or(d.max_attempts),
            retry: match self.retry.as_deref() {
                None => d.retry,
                Some("idempotent") => Retry::Idempotent,
                Some("always") => Retry::Always,
                Some("unsent") => Retry::Unsent,
                Some(other) => {
                    return Err(format!(
                        "failover.retry {other:?} is not known; use \"idempotent\", \"always\" or \"unsent\""
                    ))
                }
            },
            replay_limit: self.replay_limit.unwrap_or(d.replay_limit),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSpec {
    name: String,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    hosts: Vec<String>,
    path: Option<PathSpec>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    headers: Vec<FieldSpec>,
    #[serde(default)]
    query: Vec<FieldSpec>,
    #[serde(default)]
    websocket: bool,
    #[serde(default)]
    ports: Vec<u16>,
    pool: Option<String>,
    redirect: Option<RedirectSpec>,
    #[serde(rename = "static")]
    static_files: Option<StaticSpec>,
    respond: Option<RespondSpec>,
    #[serde(default)]
    statistics: bool,
    strip_prefix: Option<String>,
    rewrite: Option<RewriteSpec>,
    #[serde(default)]
    request_headers: HeaderOpsSpec,
    #[serde(default)]
    response_headers: HeaderOpsSpec,
    #[serde(default)]
    intercept_errors: bool,
    max_body_size: Option<String>,
    #[serde(default = "yes")]
    allow_upgrade: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathSpec {
    exact: Option<String>,
    prefix: Option<String>,
    regex: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldSpec {
    name: String,
    exact: Option<String>,
    regex: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedirectSpec {
    to: String,
    #[serde(default = "default_redirect_status")]
    status: u16,
}

fn default_redirect_status() -> u16 {
    302
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticSpec {
    root: String,
    #[serde(default = "default_index")]
    index: String,
    fallback: Option<String>,
}

fn default_index() -> String {
    "index.html".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RespondSpec {
    #[serde(default = "default_respond_status")]
    status: u16,
    #[serde(default)]
    body: String,
    #[serde(default = "default_content_type")]
    content_type: String,
}

fn default_respond_status() -> u16 {
    200
}

fn default_content_type() -> String {
    "text/plain; charset=utf-8".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RewriteSpec {
    regex: String,
    replacement: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderOpsSpec {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    add: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

impl HeaderOpsSpec {
    fn to_ops(&self) -> HeaderOps {
        let pairs = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        };
        HeaderOps {
            set: pairs(&self.set),
            add: pairs(&self.add),
            remove: self.remove.iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorPageSpec {
    status: Vec<StatusSpec>,
    file: String,
    content_type: Option<String>,
}

/// `502` or `"5xx"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StatusSpec {
    Code(u16),
    Text(String),
}

impl fmt::Display for StatusSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusSpec::Code(c) => write!(f, "{c}"),
            StatusSpec::Text(t) => f.write_str(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ParsedFile {
        parse_file(text, Path::new("/etc/gangway"), &mut |p| {
            if p.ends_with("50x.html") {
                Ok("<h1>down</h1>".into())
            } else {
                Err("No such file or directory".into())
            }
        })
    }

    #[test]
    fn protocols_tls_body_limits_and_h2c() {
        let parsed = parse(
            r#"
[[listeners]]
name = "grpc"
port = 9090
h2c = true

[[pools]]
name = "orders"
protocol = "h2"
tls_ca = "certs/ca.pem"
tls_server_name = "orders.internal"
targets = ["10.0.0.21:50051"]

[[routes]]
name = "orders"
pool = "orders"
max_body_size = "4MiB"
allow_upgrade = false
"#,
        );
        assert!(parsed.is_valid(), "{:?}", parsed.problems);
        let f = &parsed.fragment;
        assert!(f.listeners[0].h2c);
        let upstream = &f.pools[0].upstream;
        assert_eq!(upstream.protocol, crate::Protocol::H2);
        assert!(upstream.tls_verify);
        assert_eq!(
            upstream.tls_ca.as_deref(),
            Some("/etc/gangway/certs/ca.pem")
        );
        assert_eq!(upstream.tls_server_name.as_deref(), Some("orders.internal"));
        assert_eq!(f.routes[0].max_body_size, Some(4 << 20));
        assert!(!f.routes[0].allow_upgrade);

        for (text, says) in [
            ("[[pools]]\nname = \"p\"\nprotocol = \"h3\"\n", "protocol \"h3\" is not known"),
            ("[[pools]]\nname = \"p\"\ntls_verify = false\n", "belong to protocol = \"https\" or \"h2\" pools"),
            ("[[listeners]]\nname = \"l\"\nport = 9443\nprotocol = \"https\"\ncert = \"c\"\nkey = \"k\"\nh2c = true\n", "h2c applies to http listeners"),
            ("[[routes]]\nname = \"r\"\nrespond = { body = \"x\" }\nmax_body_size = \"big\"\n", "max_body_size"),
        ] {
            let parsed = parse(text);
            assert!(
                parsed.problems.iter().any(|p| p.message.contains(says)),
                "{text}: {:?}",
                parsed.problems
            );
        }
    }

    #[test]
    fn a_full_file_maps_onto_the_model() {
        let parsed = parse(
            r#"
[[pools]]
name = "api"
targets = ["10.0.0.5:8080", { addr = "[::1]:9000", weight = 3 }]
balance = "hash"
hash_on = "cookie:session"

[[routes]]
name = "api"
hosts = ["Example.com", "*.example.com"]
path = { prefix = "/api/" }
methods = ["get", "POST"]
headers = [{ name = "X-Env", exact = "beta" }, { name = "x-trace" }]
query = [{ name = "v", regex = "^[0-9]+$" }]
priority = 5
pool = "api"
strip_prefix = "/api"
request_headers = { set = { "X-From" = "gangway" }, remove = ["Cookie"] }

[[routes]]
name = "to-https"
hosts = ["example.com"]
ports = [8080]
redirect = { to = "https://$host$request_uri", status = 308 }

[[routes]]
name = "site"
hosts = ["www.example.com"]
static = { root = "www", fallback = "/index.html" }

[[error_pages]]
status = [502, "5xx"]
file = "50x.html"

[[listeners]]
name = "admin"
port = 9443
protocol = "https"
cert = "certs/admin.pem"
key = "certs/admin-key.pem"

[[listeners]]
name = "alt"
port = 8081
"#,
        );
        assert!(parsed.is_valid(), "{:#?}", parsed.problems);
        let f = &parsed.fragment;
        assert_eq!(f.pools[0].targets.len(), 2);
        assert_eq!(f.pools[0].targets[1].weight, 3);
        assert_eq!(
            f.pools[0].balance,
            Balance::Hash(crate::HashKey::Cookie("session".into()))
        );
        let api = &f.routes[0];
        assert_eq!(api.matcher.hosts, ["example.com", "*.example.com"]);
        assert_eq!(api.matcher.path, Some(PathMatch::Prefix("/api".into())));
        assert_eq!(api.matcher.methods, ["GET", "POST"]);
        assert_eq!(api.matcher.headers[0].name, "x-env");
        assert_eq!(api.matcher.headers[1].value, ValueMatch::Present);
        assert_eq!(api.rewrite, Some(Rewrite::StripPrefix("/api".into())));
        assert_eq!(
            api.request_headers.set,
            [("x-from".into(), "gangway".into())]
        );
        assert_eq!(
            f.routes[1].action,
            Action::Redirect {
                status: 308,
                location: "https://$host$request_uri".into()
            }
        );
        match &f.routes[2].action {
            Action::Static(s) => {
                assert_eq!(s.root, "/etc/gangway/www");
                assert_eq!(s.index, "index.html");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            f.error_pages[0].statuses,
            [StatusSet::Code(502), StatusSet::Class(5)]
        );
        assert_eq!(f.error_pages[0].body, "<h1>down</h1>");
        assert_eq!(f.listeners[0].port, 9443);
        assert_eq!(
            f.listeners[0].tls.as_ref().map(|t| t.cert.as_str()),
            Some("/etc/gangway/certs/admin.pem")
        );
        assert_eq!(f.listeners[1].tls, None);
    }

    #[test]
    fn listeners_are_checked() {
        let parsed = parse(
            "[[listeners]]\nname = \"a\"\nport = 8081\nprotocol = \"https\"\n\n[[listeners]]\nname = \"b\"\nport = 8082\nprotocol = \"gopher\"\n\n[[listeners]]\nname = \"c\"\nport = 8083\n\n[[listeners]]\nname = \"d\"\nport = 8083\n",
        );
        let text: Vec<String> = parsed.problems.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|e| e.starts_with("1:1") && e.contains("needs cert and key")),
            "{text:#?}"
        );
        assert!(
            text.iter().any(|e| e.contains("\"gopher\" is not known")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains("listener \"d\"") && e.contains("already uses port 8083")),
            "{text:#?}"
        );
    }

    #[test]
    fn syntax_errors_and_unknown_keys_have_a_position() {
        let parsed = parse("[[routes]]\nname = \"a\"\npool = \"x\"\nhots = [\"a.test\"]\n");
        assert!(!parsed.is_valid());
        let p = &parsed.problems[0];
        assert_eq!((p.line, p.column), (4, 1), "{p}");
        assert!(p.message.contains("hots"), "{p}");

        let parsed = parse("[[routes]]\nname = = \"a\"\n");
        assert_eq!(parsed.problems[0].line, 2, "{}", parsed.problems[0]);
    }

    #[test]
    fn semantic_errors_point_at_their_route() {
        let parsed = parse(
            "[[pools]]\nname = \"p\"\n\n[[routes]]\nname = \"ok\"\npool = \"p\"\n\n[[routes]]\nname = \"bad\"\npath = { regex = \"(\" }\npool = \"missing\"\n",
        );
        let errors: Vec<String> = parsed.problems.iter().map(ToString::to_string).collect();
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("8:") && e.contains("pool \"missing\" does not exist")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("8:") && e.contains("path regex")),
            "{errors:#?}"
        );
    }

    #[test]
    fn a_route_needs_exactly_one_action_and_pages_must_exist() {
        let parsed = parse(
            "[[routes]]\nname = \"none\"\n\n[[routes]]\nname = \"two\"\npool = \"p\"\nstatistics = true\n\n[[error_pages]]\nstatus = [\"6xx\"]\nfile = \"gone.html\"\n",
        );
        let text: Vec<String> = parsed.problems.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|e| e.contains("\"none\"") && e.contains("it has 0")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains("\"two\"") && e.contains("it has 2")),
            "{text:#?}"
        );
        assert!(text.iter().any(|e| e.contains("6xx")), "{text:#?}");
        assert!(
            text.iter()
                .any(|e| e.contains("cannot read /etc/gangway/gone.html")),
            "{text:#?}"
        );
    }
}
