//! Routes: what a request must look like to match one, and what gangway
//! does with a request that matched.

use serde::Serialize;
use std::cmp::{Ordering, Reverse};

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathMatch {
    /// The whole path, exactly.
    Exact(String),
    /// A prefix ending on a segment boundary: `/api` matches `/api` and
    /// `/api/x`, not `/apix`. Stored without a trailing slash (but `/`).
    Prefix(String),
    /// A regular expression over the whole path; named groups become
    /// captures that rewrites and redirects can use.
    Regex(String),
}

impl PathMatch {
    /// A prefix in its stored form: a trailing slash is dropped, since
    /// prefixes match whole segments anyway.
    pub fn prefix(prefix: &str) -> PathMatch {
        let trimmed = prefix.trim_end_matches('/');
        PathMatch::Prefix(if trimmed.is_empty() {
            "/".to_owned()
        } else {
            trimmed.to_owned()
        })
    }
}

/// Whether `path` is `prefix` or lies below it on a segment boundary:
/// `/api` has the prefix `/api`, `/api/x` too, `/apix` does not.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// How a header or query parameter must look.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueMatch {
    /// Present, with any value.
    Present,
    /// Present with exactly this value.
    Exact(String),
    /// Present with a value this regular expression matches (unanchored).
    Regex(String),
}

/// A condition on one header or query parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FieldMatch {
    /// The header name (lower case) or query parameter name.
    pub name: String,
    /// What its value must be.
    pub value: ValueMatch,
}

/// Everything a request must satisfy to match a route. An empty list
/// places no condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Matcher {
    /// Normalised host names; `*.example.com` matches any subdomain of
    /// example.com (at any depth). Empty: any host.
    pub hosts: Vec<String>,
    /// The path condition, if any.
    pub path: Option<PathMatch>,
    /// Allowed methods, upper case.
    pub methods: Vec<String>,
    /// Header conditions, all of which must hold.
    pub headers: Vec<FieldMatch>,
    /// Query parameter conditions, all of which must hold.
    pub query: Vec<FieldMatch>,
    /// Only WebSocket upgrade requests match.
    pub websocket: bool,
    /// The listener ports the request must arrive on. Empty: any.
    pub ports: Vec<u16>,
}

impl Matcher {
    /// The number of conditions besides host and path, for the tie-break
    /// "more matchers win".
    pub fn condition_count(&self) -> usize {
        usize::from(!self.methods.is_empty())
            + self.headers.len()
            + self.query.len()
            + usize::from(self.websocket)
            + usize::from(!self.ports.is_empty())
    }
}

/// A change to the request path before it is forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rewrite {
    /// Remove this prefix (on a segment boundary); `/api/x` becomes `/x`
    /// and `/api` becomes `/`.
    StripPrefix(String),
    /// Replace what `pattern` matches with `replacement`, where `$1`,
    /// `${name}` refer to the pattern's groups.
    Regex {
        /// The pattern, applied to the path.
        pattern: String,
        /// The replacement.
        replacement: String,
    },
}

/// Changes to a set of headers, applied in the order remove, set, add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct HeaderOps {
    /// Replace any value of these headers.
    pub set: Vec<(String, String)>,
    /// Add a value, keeping existing ones.
    pub add: Vec<(String, String)>,
    /// Remove these headers.
    pub remove: Vec<String>,
}

impl HeaderOps {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// Files served from a directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct StaticFiles {
    /// The directory; nothing outside it is ever served.
    pub root: String,
    /// The file served for a directory, such as `index.html`.
    pub index: String,
    /// Served (with status 200) when nothing else is found, such as
    /// `/index.html` for a single-page application. Relative to `root`.
    pub fallback: Option<String>,
}

/// What gangway does with a request that matched a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Forward to an upstream pool.
    Forward {
        /// The pool's name.
        pool: String,
    },
    /// Answer with a redirect.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        status: u16,
        /// The `Location`, a template: `$host`, `$path`, `$query`,
        /// `$request_uri`, `$scheme` and the path's regex groups (`$1`,
        /// `${name}`) are replaced.
        location: String,
    },
    /// Serve files from a directory.
    Static(StaticFiles),
    /// Answer with a fixed response.
    Respond {
        /// The status code.
        status: u16,
        /// The body.
        body: String,
        /// Its `Content-Type`.
        content_type: String,
    },
    /// Answer with gangway's statistics as JSON.
    Statistics,
}

/// A rule: which requests, and what to do with them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Route {
    /// Unique within a fragment; in a snapshot, prefixed with its source
    /// (`file/api`, `docker/web-1`).
    pub name: String,
    /// Higher wins; on a tie, the more specific route wins (see [`rank`]).
    pub priority: i32,
    /// The conditions.
    pub matcher: Matcher,
    /// What to do.
    pub action: Action,
    /// A change to the path before forwarding.
    pub rewrite: Option<Rewrite>,
    /// Changes to the request headers before forwarding.
    pub request_headers: HeaderOps,
    /// Changes to the response headers.
    pub response_headers: HeaderOps,
    /// Replace error responses of the backend (4xx, 5xx) with the
    /// configured error pages, like nginx's `proxy_intercept_errors`.
    pub intercept_errors: bool,
    /// The largest request body the route accepts, in bytes; larger ones
    /// get 413. `None`: no limit.
    pub max_body_size: Option<u64>,
    /// Whether WebSocket upgrade requests are tunnelled; when not, they get
    /// 403.
    pub allow_upgrade: bool,
}

impl Route {
    /// A route that forwards `hosts` to `pool`, with no other condition.
    pub fn forward(name: impl Into<String>, hosts: Vec<String>, pool: impl Into<String>) -> Route {
        Route {
            name: name.into(),
            priority: 0,
            matcher: Matcher {
                hosts,
                ..Matcher::default()
            },
            action: Action::Forward { pool: pool.into() },
            rewrite: None,
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
            intercept_errors: false,
            max_body_size: None,
            allow_upgrade: true,
        }
    }
}

/// How specific a host pattern is: exact names beat wildcards, longer
/// wildcards beat shorter ones, and any wildcard beats "any host".
pub fn host_specificity(host: Option<&str>) -> (u8, usize) {
    match host {
        None => (0, 0),
        Some(h) if h.starts_with("*.") => (1, h.len()),
        Some(h) => (2, h.len()),
    }
}

/// How specific a path condition is, following nginx: an exact path first,
/// then regular expressions, then prefixes (longest first), then none.
pub fn path_specificity(path: Option<&PathMatch>) -> (u8, usize) {
    match path {
        None => (0, 0),
        Some(PathMatch::Prefix(p)) => (1, p.len()),
        Some(PathMatch::Regex(_)) => (2, 0),
        Some(PathMatch::Exact(_)) => (3, 0),
    }
}

/// The order in which routes are tried for a request whose host matched
/// `host` (one of the route's hosts, or `None` for a route without hosts).
/// `Less` means `a` is tried first. The order is total and deterministic:
/// priority, then host specificity, then path specificity, then the number
/// of other conditions, then the name.
pub fn rank(a: (&Route, Option<&str>), b: (&Route, Option<&str>)) -> Ordering {
    rank_key(a.0, a.1).cmp(&rank_key(b.0, b.1))
}

/// The key that [`rank`] compares; smaller keys are tried first. Sorting by
/// a key computed once per route is cheaper than comparing routes.
pub fn rank_key<'a>(route: &'a Route, host: Option<&str>) -> impl Ord + 'a {
    (
        Reverse(route.priority),
        Reverse(host_specificity(host)),
        Reverse(path_specificity(route.matcher.path.as_ref())),
        Reverse(route.matcher.condition_count()),
        route.name.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, priority: i32, path: Option<PathMatch>) -> Route {
        let mut r = Route::forward(name, vec!["a.test".into()], "p");
        r.priority = priority;
        r.matcher.path = path;
        r
    }

    #[test]
    fn prefix_is_stored_without_trailing_slash() {
        assert_eq!(PathMatch::prefix("/api/"), PathMatch::Prefix("/api".into()));
        assert_eq!(PathMatch::prefix("/"), PathMatch::Prefix("/".into()));
        assert_eq!(PathMatch::prefix("//"), PathMatch::Prefix("/".into()));
    }

    #[test]
    fn rank_order_is_priority_host_path_conditions_name() {
        let exact = route("e", 0, Some(PathMatch::Exact("/api/x".into())));
        let regex = route("r", 0, Some(PathMatch::Regex("^/api/.*$".into())));
        let long = route("l", 0, Some(PathMatch::prefix("/api/v1")));
        let short = route("s", 0, Some(PathMatch::prefix("/api")));
        let none = route("n", 0, None);
        let mut with_method = route("m", 0, Some(PathMatch::prefix("/api")));
        with_method.matcher.methods = vec!["GET".into()];
        let high = route("h", 5, None);

        let mut all = [&none, &short, &with_method, &long, &regex, &exact, &high];
        all.sort_by(|a, b| rank((a, Some("a.test")), (b, Some("a.test"))));
        let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["h", "e", "r", "l", "m", "s", "n"]);
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any() {
        let r = route("x", 0, None);
        let order = |a, b| rank((&r, a), (&r, b));
        assert_eq!(order(Some("a.test"), Some("*.test")), Ordering::Less);
        assert_eq!(order(Some("*.a.test"), Some("*.test")), Ordering::Less);
        assert_eq!(order(Some("*.test"), None), Ordering::Less);
    }
}
