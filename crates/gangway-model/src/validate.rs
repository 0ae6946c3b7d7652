//! Checks a fragment before it is published. Every problem names the route
//! (or pool, or error page) and says what is wrong and how to fix it.

use crate::route::{Action, FieldMatch, HeaderOps, PathMatch, Rewrite, Route, ValueMatch};
use crate::snapshot::{ErrorPage, Fragment, StatusSet};
use crate::validate_host_pattern;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// The configuration works, but probably not as meant.
    Warning,
}

/// One finding of [`validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// What it concerns: `route "api"`, `pool "web"`, `error page 1`.
    pub subject: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.severity, self.subject, self.message)
    }
}

/// Checks everything about a fragment that can be checked without I/O.
/// Returns errors first, then warnings; an empty list means all is well.
pub fn validate(fragment: &Fragment) -> Vec<Problem> {
    let mut problems = Vec::new();
    let pools: HashSet<&str> = fragment.pools.iter().map(|p| p.name.as_str()).collect();

    let mut pool_names = HashSet::new();
    for pool in &fragment.pools {
        let subject = format!("pool {:?}", pool.name);
        if !valid_name(&pool.name) {
            problems.push(error(&subject, NAME_RULE));
        }
        if !pool_names.insert(pool.name.as_str()) {
            problems.push(error(&subject, "two pools have this name; rename one"));
        }
        let f = &pool.failover;
        if f.max_failures == 0 {
            problems.push(error(&subject, "failover.failures must be at least 1"));
        }
        if f.max_attempts == 0 {
            problems.push(error(&subject, "failover.attempts must be at least 1"));
        }
        if pool.targets.iter().any(|t| t.weight == 0) {
            problems.push(error(&subject, "a target's weight must be at least 1"));
        }
        if let Some(h) = &pool.health {
            if !h.path.starts_with('/') {
                problems.push(error(
                    &subject,
                    format!("health.path {:?} must start with '/'", h.path),
                ));
            }
            if h.interval.is_zero() || h.timeout.is_zero() {
                problems.push(error(
                    &subject,
                    "health.interval and health.timeout must be longer than 0",
                ));
            }
            if h.healthy_threshold == 0 || h.unhealthy_threshold == 0 {
                problems.push(error(&subject, "health thresholds must be at least 1"));
            }
        }
        let t = &pool.timeouts;
        if t.connect.is_zero() || t.response_header.is_zero() {
            problems.push(error(&subject, "timeouts must be longer than 0"));
        }
        if f.cooldown > f.max_cooldown {
            problems.push(error(
                &subject,
                "failover.cooldown is longer than failover.max_cooldown; raise max_cooldown",
            ));
        }
    }

    let mut route_names = HashSet::new();
    let mut by_conditions: HashMap<(&crate::Matcher, i32), &str> = HashMap::new();
    for route in &fragment.routes {
        let subject = format!("route {:?}", route.name);
        if !valid_name(&route.name) {
            problems.push(error(&subject, NAME_RULE));
        }
        if !route_names.insert(route.name.as_str()) {
            problems.push(error(&subject, "two routes have this name; rename one"));
        }
        check_route(route, &pools, &mut |m| problems.push(error(&subject, m)));
        if let Some(other) = by_conditions.insert((&route.matcher, route.priority), &route.name) {
            problems.push(error(
                &subject,
                format!(
                    "it has the same conditions and priority as route {other:?}, so only one of them \
                     could ever be used; change a condition or the priority of one"
                ),
            ));
        }
    }

    let mut listener_names = HashSet::new();
    let mut listener_ports = HashSet::new();
    for listener in &fragment.listeners {
        let subject = format!("listener {:?}", listener.name);
        if !valid_name(&listener.name) {
            problems.push(error(&subject, NAME_RULE));
        }
        if !listener_names.insert(listener.name.as_str()) {
            problems.push(error(&subject, "two listeners have this name; rename one"));
        }
        if listener.port == 0 {
            problems.push(error(
                &subject,
                "port 0 cannot be listened on; use 1 to 65535",
            ));
        } else if !listener_ports.insert(listener.port) {
            problems.push(error(
                &subject,
                format!("another listener already uses port {}", listener.port),
            ));
        }
    }

    for (i, page) in fragment.error_pages.iter().enumerate() {
        check_error_page(page, &mut |m| {
            problems.push(error(&format!("error page {}", i + 1), m))
        });
    }

    for (i, later) in fragment.routes.iter().enumerate() {
        let shadowing = fragment.routes.iter().enumerate().find(|(j, earlier)| {
            *j != i && earlier.priority > later.priority && covers(earlier, later)
        });
        if let Some((_, winner)) = shadowing {
            problems.push(Problem {
                severity: Severity::Warning,
                subject: format!("route {:?}", later.name),
                message: format!(
                    "it can never match: route {:?} has a higher priority and matches every request \
                     it would; raise its priority or narrow the other route",
                    winner.name
                ),
            });
        }
    }
    problems.sort_by_key(|p| p.severity == Severity::Warning);
    problems
}

const NAME_RULE: &str = "a name must be 1 to 128 letters, digits, '-', '_' or '.'";

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn error(subject: &str, message: impl Into<String>) -> Problem {
    Problem {
        severity: Severity::Error,
        subject: subject.to_owned(),
        message: message.into(),
    }
}

fn check_route(route: &Route, pools: &HashSet<&str>, report: &mut dyn FnMut(String)) {
    let m = &route.matcher;
    for host in &m.hosts {
        if let Err(e) = validate_host_pattern(host) {
            report(format!("host {host:?}: {e}"));
        }
    }
    match &m.path {
        Some(PathMatch::Exact(p) | PathMatch::Prefix(p)) if !p.starts_with('/') => {
            report(format!("path {p:?} must start with '/'"));
        }
        Some(PathMatch::Regex(r)) => check_regex("path regex", r, report),
        _ => {}
    }
    for method in &m.methods {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            report(format!(
                "method {method:?} is not valid; use upper-case names such as GET or POST"
            ));
        }
    }
    for field in &m.headers {
        if !is_token(&field.name) {
            report(format!(
                "header name {:?} is not a valid header name",
                field.name
            ));
        }
        check_field_value("header", field, report);
    }
    for field in &m.query {
        if field.name.is_empty() {
            report("a query condition has an empty parameter name".into());
        }
        check_field_value("query parameter", field, report);
    }
    if m.ports.contains(&0) {
        report("port 0 is not a listener port; use 1 to 65535".into());
    }

    match &route.action {
        Action::Forward { pool } => {
            if pool.is_empty() {
                report("the pool name is empty".into());
            } else if !pool.contains('/') && !pools.contains(pool.as_str()) {
                report(format!(
                    "pool {pool:?} does not exist; define it under [[pools]] or refer to another \
                     source's pool as docker/<name>"
                ));
            }
        }
        Action::Redirect { status, location } => {
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                report(format!(
                    "redirect status {status} is not a redirect; use 301, 302, 303, 307 or 308"
                ));
            }
            if location.is_empty() {
                report("the redirect location is empty".into());
            }
        }
        Action::Static(files) => {
            if files.root.is_empty() {
                report("the static root directory is empty".into());
            }
            if files.index.is_empty() || files.index.contains('/') {
                report(format!(
                    "index {:?} must be a file name such as index.html",
                    files.index
                ));
            }
            if let Some(f) = &files.fallback {
                if !f.starts_with('/') {
                    report(format!(
                        "fallback {f:?} must be a path in the root starting with '/', such as /index.html"
                    ));
                }
            }
        }
        Action::Respond {
            status,
            content_type,
            ..
        } => {
            if !(200..=599).contains(status) {
                report(format!("response status {status} must be from 200 to 599"));
            }
            // As for header values: the router could not compile it.
            if content_type.chars().any(|c| c.is_control() && c != '\t') {
                report(format!(
                    "content_type {content_type:?} contains control characters"
                ));
            }
        }
        Action::Statistics => {}
    }

    match &route.rewrite {
        Some(Rewrite::StripPrefix(p)) if !p.starts_with('/') => {
            report(format!("strip_prefix {p:?} must start with '/'"));
        }
        Some(Rewrite::Regex { pattern, .. }) => check_regex("rewrite regex", pattern, report),
        _ => {}
    }
    if route.rewrite.is_some()
        && !matches!(route.action, Action::Forward { .. } | Action::Static(_))
    {
        report("a path rewrite only applies to routes that forward or serve files".into());
    }
    check_header_ops("request_headers", &route.request_headers, report);
    check_header_ops("response_headers", &route.response_headers, report);
}

fn check_field_value(what: &str, field: &FieldMatch, report: &mut dyn FnMut(String)) {
    match &field.value {
        ValueMatch::Regex(r) => check_regex(&format!("{what} {:?} regex", field.name), r, report),
        ValueMatch::Exact(v) if v.chars().any(char::is_control) => {
            report(format!(
                "{what} {:?}: the value contains control characters",
                field.name
            ));
        }
        _ => {}
    }
}

fn check_header_ops(what: &str, ops: &HeaderOps, report: &mut dyn FnMut(String)) {
    let names = ops
        .set
        .iter()
        .chain(&ops.add)
        .map(|(name, _)| name)
        .chain(&ops.remove);
    for name in names {
        if !is_token(name) {
            report(format!("{what}: {name:?} is not a valid header name"));
        }
    }
    for (name, value) in ops.set.iter().chain(&ops.add) {
        if value.chars().any(|c| c.is_control() && c != '\t') {
            report(format!(
                "{what}: the value of {name:?} contains control characters"
            ));
        }
    }
}

fn check_regex(what: &str, pattern: &str, report: &mut dyn FnMut(String)) {
    if let Err(e) = regex::Regex::new(pattern) {
        report(format!(
            "{what} {pattern:?} is invalid: {}",
            one_line(&e.to_string())
        ));
    }
}

/// The regex crate draws the position with a caret on separate lines; keep
/// the position and the reason on one line for logs.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message.lines().map(str::trim_end).collect();
    let caret = lines.iter().find_map(|l| {
        let marks = l.trim();
        (!marks.is_empty() && marks.bytes().all(|b| b == b'^'))
            .then(|| l.find('^'))
            .flatten()
    });
    let reason = lines
        .iter()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or(message);
    match caret {
        // The pattern line is indented by 4 spaces in the crate's message.
        Some(col) => format!("{reason} (at character {})", col.saturating_sub(4) + 1),
        None => reason.to_owned(),
    }
}

fn check_error_page(page: &ErrorPage, report: &mut dyn FnMut(String)) {
    if page.statuses.is_empty() {
        report("it lists no status; give codes such as 502 or classes such as 5xx".into());
    }
    for status in &page.statuses {
        let ok = match status {
            StatusSet::Code(c) => (400..=599).contains(c),
            StatusSet::Class(c) => matches!(c, 4 | 5),
        };
        if !ok {
            report(format!(
                "status {status:?} is not an error; use 400 to 599, 4xx or 5xx"
            ));
        }
    }
}

/// RFC 9110 `token`: what header names are made of.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether every request that `b` matches is also matched by `a`. Errs on
/// the side of `false`: regular expressions are only compared as text.
pub fn covers(a: &Route, b: &Route) -> bool {
    let (ma, mb) = (&a.matcher, &b.matcher);
    let hosts = ma.hosts.is_empty()
        || (!mb.hosts.is_empty()
            && mb
                .hosts
                .iter()
                .all(|hb| ma.hosts.iter().any(|ha| host_covers(ha, hb))));
    let path = match (&ma.path, &mb.path) {
        (None, _) => true,
        (Some(PathMatch::Prefix(pa)), Some(PathMatch::Prefix(pb) | PathMatch::Exact(pb))) => {
            crate::path_has_prefix(pb, pa)
        }
        (Some(pa), Some(pb)) => pa == pb,
        (Some(_), None) => false,
    };
    let methods = ma.methods.is_empty()
        || (!mb.methods.is_empty() && mb.methods.iter().all(|m| ma.methods.contains(m)));
    let fields = |fa: &[FieldMatch], fb: &[FieldMatch]| {
        fa.iter().all(|f| {
            fb.iter().any(|g| {
                g.name.eq_ignore_ascii_case(&f.name)
                    && (f.value == ValueMatch::Present || f.value == g.value)
            })
        })
    };
    let ports = ma.ports.is_empty()
        || (!mb.ports.is_empty() && mb.ports.iter().all(|p| ma.ports.contains(p)));
    hosts
        && path
        && methods
        && fields(&ma.headers, &mb.headers)
        && fields(&ma.query, &mb.query)
        && (!ma.websocket || mb.websocket)
        && ports
}

fn host_covers(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match a.strip_prefix("*.") {
        Some(suffix) => {
            let b = b.strip_prefix("*.").unwrap_or(b);
            b.len() > suffix.len()
                && b.ends_with(suffix)
                && b[..b.len() - suffix.len()].ends_with('.')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Pool, Source};

    fn fragment(routes: Vec<Route>) -> Fragment {
        Fragment {
            source: Source::File,
            routes,
            pools: vec![Pool {
                name: "web".into(),
                targets: Vec::new(),
                failover: Default::default(),
                timeouts: Default::default(),
                balance: Default::default(),
                health: None,
                upstream: Default::default(),
            }],
            error_pages: Vec::new(),
            listeners: Vec::new(),
        }
    }

    fn route(name: &str, host: &str) -> Route {
        Route::forward(name, vec![host.into()], "web")
    }

    fn messages(f: &Fragment) -> Vec<String> {
        validate(f).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_good_fragment_has_no_problem() {
        let mut api = route("api", "a.test");
        api.matcher.path = Some(PathMatch::prefix("/api"));
        assert_eq!(
            messages(&fragment(vec![route("root", "a.test"), api])),
            Vec::<String>::new()
        );
    }

    #[test]
    fn missing_pool_duplicate_and_bad_regex_are_errors() {
        let mut missing = route("missing", "b.test");
        missing.action = Action::Forward {
            pool: "nope".into(),
        };
        let mut bad_regex = route("bad-regex", "c.test");
        bad_regex.matcher.path = Some(PathMatch::Regex("^/(?P<x>[a-z+$".into()));
        let found = messages(&fragment(vec![
            route("one", "a.test"),
            route("two", "a.test"),
            missing,
            bad_regex,
        ]));
        assert!(
            found.iter().any(|m| m.contains("route \"two\"")
                && m.contains("same conditions and priority as route \"one\"")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|m| m.contains("pool \"nope\" does not exist")),
            "{found:#?}"
        );
        let regex = found
            .iter()
            .find(|m| m.contains("path regex"))
            .expect("regex error");
        assert!(regex.contains("(at character 9)"), "{regex}");
        assert!(!regex.contains('\n'), "{regex}");
    }

    #[test]
    fn a_route_that_can_never_match_is_a_warning() {
        let mut catch_all = route("catch-all", "a.test");
        catch_all.priority = 10;
        let mut api = route("api", "a.test");
        api.matcher.path = Some(PathMatch::prefix("/api"));
        let problems = validate(&fragment(vec![catch_all, api]));
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].severity, Severity::Warning);
        assert!(problems[0].message.contains("\"catch-all\""));
    }

    /// Found by the `config_file` fuzz target: a valid file whose route the
    /// router could not compile, and so silently left out.
    #[test]
    fn a_respond_content_type_with_control_characters_is_an_error() {
        let mut r = route("r", "a.test");
        r.action = Action::Respond {
            status: 200,
            body: String::new(),
            content_type: "text/plain\u{1}".into(),
        };
        let found = messages(&fragment(vec![r]));
        assert!(
            found
                .iter()
                .any(|m| m.contains("contains control characters")),
            "{found:#?}"
        );
    }

    #[test]
    fn coverage_of_hosts_paths_methods_and_fields() {
        let mut wide = Route::forward("w", vec!["*.test".into()], "web");
        wide.matcher.path = Some(PathMatch::prefix("/api"));
        let mut narrow = Route::forward("n", vec!["a.b.test".into()], "web");
        narrow.matcher.path = Some(PathMatch::Exact("/api/x".into()));
        narrow.matcher.methods = vec!["GET".into()];
        narrow.matcher.headers = vec![FieldMatch {
            name: "x-env".into(),
            value: ValueMatch::Exact("beta".into()),
        }];
        assert!(covers(&wide, &narrow));
        assert!(!covers(&narrow, &wide));

        wide.matcher.headers = vec![FieldMatch {
            name: "X-Env".into(),
            value: ValueMatch::Present,
        }];
        assert!(covers(&wide, &narrow));
        narrow.matcher.path = Some(PathMatch::Exact("/apix".into()));
        assert!(
            !covers(&wide, &narrow),
            "/apix is not under the /api segment"
        );
        assert!(host_covers("*.test", "*.b.test"));
        assert!(!host_covers("*.test", "test"));
        assert!(!host_covers("*.test", "atest"));
    }
}
