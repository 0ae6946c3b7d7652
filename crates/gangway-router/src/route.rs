//! A route compiled for the request path: pre-built header names and
//! values, compiled regular expressions, and its pool resolved.

use crate::pool::PoolEntry;
use crate::request::RequestInfo;
use crate::stats::RouteCounters;
use bytes::Bytes;
use gangway_model::{
    path_has_prefix, Action, FieldMatch, HeaderOps, PathMatch, Rewrite, Route, StaticFiles,
    ValueMatch,
};
use http::header::{HeaderName, HeaderValue};
use http::Method;
use regex::Regex;
use std::sync::Arc;

/// A compiled path condition.
#[derive(Debug)]
pub(crate) enum PathCond {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
    Regex(Box<Regex>),
}

/// A compiled header or query value condition.
#[derive(Debug)]
pub(crate) enum ValueCond {
    Present,
    Exact(Box<str>),
    Regex(Regex),
}

impl ValueCond {
    fn compile(v: &ValueMatch) -> Result<ValueCond, regex::Error> {
        Ok(match v {
            ValueMatch::Present => ValueCond::Present,
            ValueMatch::Exact(e) => ValueCond::Exact(e.as_str().into()),
            ValueMatch::Regex(r) => ValueCond::Regex(Regex::new(r)?),
        })
    }

    fn is_cheap(&self) -> bool {
        !matches!(self, ValueCond::Regex(_))
    }

    fn accepts(&self, value: &str) -> bool {
        match self {
            ValueCond::Present => true,
            ValueCond::Exact(e) => **e == *value,
            ValueCond::Regex(r) => r.is_match(value),
        }
    }
}

/// Header changes with names and values built once.
#[derive(Debug, Default)]
pub struct CompiledHeaderOps {
    /// Headers to replace.
    pub set: Box<[(HeaderName, HeaderValue)]>,
    /// Headers to append.
    pub add: Box<[(HeaderName, HeaderValue)]>,
    /// Headers to remove.
    pub remove: Box<[HeaderName]>,
}

impl CompiledHeaderOps {
    /// `None` when there is nothing to do.
    fn compile_some(ops: &HeaderOps) -> Result<Option<Box<CompiledHeaderOps>>, String> {
        if ops.is_empty() {
            return Ok(None);
        }
        Self::compile(ops).map(|c| Some(Box::new(c)))
    }

    fn compile(ops: &HeaderOps) -> Result<CompiledHeaderOps, String> {
        let pair = |(n, v): &(String, String)| -> Result<(HeaderName, HeaderValue), String> {
            let name = HeaderName::try_from(n.as_str())
                .map_err(|_| format!("{n:?} is not a valid header name"))?;
            let value = HeaderValue::try_from(v.as_str())
                .map_err(|_| format!("the value of {n:?} is not a valid header value"))?;
            Ok((name, value))
        };
        Ok(CompiledHeaderOps {
            set: ops.set.iter().map(pair).collect::<Result<_, _>>()?,
            add: ops.add.iter().map(pair).collect::<Result<_, _>>()?,
            remove: ops
                .remove
                .iter()
                .map(|n| {
                    HeaderName::try_from(n.as_str())
                        .map_err(|_| format!("{n:?} is not a valid header name"))
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// Applies the changes: remove, then set, then add.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &*self.remove {
            headers.remove(name);
        }
        for (name, value) in &*self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &*self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// A compiled path rewrite.
#[derive(Debug)]
pub enum CompiledRewrite {
    /// Remove a prefix on a segment boundary.
    StripPrefix(Box<str>),
    /// Replace regex matches; `$1` and `${name}` refer to groups.
    Regex(Regex, Box<str>),
}

impl CompiledRewrite {
    /// The rewritten path, or `None` when the path is unchanged.
    pub fn apply(&self, path: &str) -> Option<String> {
        match self {
            CompiledRewrite::StripPrefix(prefix) => {
                if !path_has_prefix(path, prefix) {
                    return None;
                }
                let rest = &path[prefix.len()..];
                Some(if rest.is_empty() {
                    "/".to_owned()
                } else {
                    rest.to_owned()
                })
            }
            CompiledRewrite::Regex(re, replacement) => {
                let out = re.replace(path, &**replacement);
                match out {
                    std::borrow::Cow::Borrowed(_) => None,
                    std::borrow::Cow::Owned(mut s) => {
                        if !s.starts_with('/') {
                            s.insert(0, '/');
                        }
                        Some(s)
                    }
                }
            }
        }
    }
}

/// What a compiled route does.
#[derive(Debug)]
pub enum CompiledAction {
    /// Forward to this pool; `None` when the pool does not exist (yet),
    /// such as a file route naming a Docker pool whose containers are gone.
    Forward(Option<Arc<PoolEntry>>),
    /// Redirect with a `Location` built from a template.
    Redirect {
        /// The status code.
        status: http::StatusCode,
        /// The `Location` template.
        location: Box<str>,
    },
    /// Serve files.
    Static(Box<StaticFiles>),
    /// A fixed answer.
    Respond(Box<FixedResponse>),
    /// gangway's statistics as JSON.
    Statistics,
}

/// The answer of a `respond` route.
#[derive(Debug)]
pub struct FixedResponse {
    /// The status code.
    pub status: http::StatusCode,
    /// The body.
    pub body: Bytes,
    /// Its type.
    pub content_type: HeaderValue,
}

/// A route as the request path uses it. Kept small (the conditions inline,
/// what only some routes use boxed): a large table is hundreds of
/// thousands of these.
#[derive(Debug)]
pub struct CompiledRoute {
    name: Box<str>,
    /// Its position in the snapshot's routes, where the model is.
    model: u32,
    priority: i32,
    ports: Box<[u16]>,
    methods: Box<[Method]>,
    websocket: bool,
    path: PathCond,
    headers: Box<[(HeaderName, ValueCond)]>,
    query: Box<[(Box<str>, ValueCond)]>,
    /// What to do with a request that matched.
    pub action: CompiledAction,
    /// The path rewrite before forwarding or serving files.
    pub rewrite: Option<Box<CompiledRewrite>>,
    /// Request header changes.
    pub request_headers: Option<Box<CompiledHeaderOps>>,
    /// Response header changes.
    pub response_headers: Option<Box<CompiledHeaderOps>>,
    /// Whether backend error responses get gangway's error pages.
    pub intercept_errors: bool,
    /// The largest request body accepted, in bytes.
    pub max_body_size: Option<u64>,
    /// Whether WebSocket upgrades are tunnelled (else refused with 403).
    pub allow_upgrade: bool,
    /// Request counters, kept across snapshots.
    pub counters: Arc<RouteCounters>,
}

/// Which condition rejected a request, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The condition: `host`, `port`, `method`, `websocket`, `path`,
    /// `header x-env`, `query v`.
    pub condition: String,
    /// What it wanted.
    pub wanted: String,
}

impl CompiledRoute {
    pub(crate) fn compile(
        route: &Route,
        model: usize,
        pool: Option<Arc<PoolEntry>>,
        counters: Arc<RouteCounters>,
    ) -> Result<CompiledRoute, String> {
        let m = &route.matcher;
        let path = match &m.path {
            None => PathCond::Any,
            Some(PathMatch::Exact(p)) => PathCond::Exact(p.as_str().into()),
            Some(PathMatch::Prefix(p)) => PathCond::Prefix(p.as_str().into()),
            Some(PathMatch::Regex(r)) => PathCond::Regex(Box::new(
                Regex::new(r).map_err(|e| format!("path regex: {e}"))?,
            )),
        };
        let field =
            |f: &FieldMatch| ValueCond::compile(&f.value).map_err(|e| format!("{}: {e}", f.name));
        let headers = m
            .headers
            .iter()
            .map(|f| {
                let name = HeaderName::try_from(f.name.as_str())
                    .map_err(|_| format!("{:?} is not a valid header name", f.name))?;
                Ok((name, field(f)?))
            })
            .collect::<Result<_, String>>()?;
        let query = m
            .query
            .iter()
            .map(|f| Ok((f.name.as_str().into(), field(f)?)))
            .collect::<Result<_, String>>()?;
        let mut methods: Vec<Method> = m
            .methods
            .iter()
            .map(|x| Method::from_bytes(x.as_bytes()).map_err(|_| format!("method {x:?}")))
            .collect::<Result<_, _>>()?;
        // As in nginx: whoever may GET may also HEAD.
        if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
            methods.push(Method::HEAD);
        }
        let action = match &route.action {
            Action::Forward { .. } => CompiledAction::Forward(pool),
            Action::Redirect { status, location } => CompiledAction::Redirect {
                status: http::StatusCode::from_u16(*status).map_err(|e| e.to_string())?,
                location: location.as_str().into(),
            },
            Action::Static(files) => CompiledAction::Static(Box::new(files.clone())),
            Action::Respond {
                status,
                body,
                content_type,
            } => CompiledAction::Respond(Box::new(FixedResponse {
                status: http::StatusCode::from_u16(*status).map_err(|e| e.to_string())?,
                body: Bytes::from(body.clone()),
                content_type: HeaderValue::try_from(content_type.as_str())
                    .map_err(|_| format!("content type {content_type:?}"))?,
            })),
            Action::Statistics => CompiledAction::Statistics,
        };
        let rewrite = match &route.rewrite {
            None => None,
            Some(Rewrite::StripPrefix(p)) => {
                Some(Box::new(CompiledRewrite::StripPrefix(p.as_str().into())))
            }
            Some(Rewrite::Regex {
                pattern,
                replacement,
            }) => Some(Box::new(CompiledRewrite::Regex(
                Regex::new(pattern).map_err(|e| format!("rewrite regex: {e}"))?,
                replacement.as_str().into(),
            ))),
        };
        Ok(CompiledRoute {
            name: route.name.as_str().into(),
            model: u32::try_from(model).map_err(|_| "too many routes".to_owned())?,
            priority: route.priority,
            ports: m.ports.iter().copied().collect(),
            methods: methods.into(),
            websocket: m.websocket,
            path,
            headers,
            query,
            action,
            rewrite,
            request_headers: CompiledHeaderOps::compile_some(&route.request_headers)?,
            response_headers: CompiledHeaderOps::compile_some(&route.response_headers)?,
            intercept_errors: route.intercept_errors,
            max_body_size: route.max_body_size,
            allow_upgrade: route.allow_upgrade,
            counters,
        })
    }

    /// The route's name, such as `file/api` or `docker/web-1`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The route's priority.
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// The route's position in its snapshot's routes.
    pub fn model_index(&self) -> usize {
        self.model as usize
    }

    /// Checks every condition but the host, cheap ones first and regular
    /// expressions last, and returns the path's regex captures on a match.
    pub(crate) fn matches(&self, req: &RequestInfo<'_>) -> Option<Captures> {
        if !self.ports.is_empty() && !self.ports.contains(&req.port) {
            return None;
        }
        if !self.methods.is_empty() && !self.methods.contains(req.method) {
            return None;
        }
        if self.websocket && !req.websocket {
            return None;
        }
        match &self.path {
            PathCond::Exact(p) if **p != *req.path => return None,
            PathCond::Prefix(p) if !path_has_prefix(req.path, p) => return None,
            _ => {}
        }
        let cheap_fields = self
            .headers
            .iter()
            .filter(|(_, c)| c.is_cheap())
            .all(|(n, c)| header_accepts(req, n, c))
            && self
                .query
                .iter()
                .filter(|(_, c)| c.is_cheap())
                .all(|(n, c)| req.query_accepts(n, |v| c.accepts(v)));
        if !cheap_fields {
            return None;
        }
        let costly_fields = self
            .headers
            .iter()
            .filter(|(_, c)| !c.is_cheap())
            .all(|(n, c)| header_accepts(req, n, c))
            && self
                .query
                .iter()
                .filter(|(_, c)| !c.is_cheap())
                .all(|(n, c)| req.query_accepts(n, |v| c.accepts(v)));
        if !costly_fields {
            return None;
        }
        match &self.path {
            PathCond::Regex(re) => Captures::of(re, req.path),
            _ => Some(Captures::default()),
        }
    }

    /// The first condition that rejects the request, in the order
    /// [`CompiledRoute::matches`] checks them; `None` when all hold.
    pub(crate) fn first_rejection(&self, req: &RequestInfo<'_>) -> Option<Rejection> {
        let reject = |condition: &str, wanted: String| {
            Some(Rejection {
                condition: condition.to_owned(),
                wanted,
            })
        };
        if !self.ports.is_empty() && !self.ports.contains(&req.port) {
            return reject("port", format!("one of {:?}", self.ports));
        }
        if !self.methods.is_empty() && !self.methods.contains(req.method) {
            let names: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
            return reject("method", format!("one of {}", names.join(", ")));
        }
        if self.websocket && !req.websocket {
            return reject("websocket", "a WebSocket upgrade request".into());
        }
        match &self.path {
            PathCond::Exact(p) if **p != *req.path => {
                return reject("path", format!("exactly {p}"))
            }
            PathCond::Prefix(p) if !path_has_prefix(req.path, p) => {
                return reject("path", format!("prefix {p}"))
            }
            PathCond::Regex(re) if !re.is_match(req.path) => {
                return reject("path", format!("regex {}", re.as_str()))
            }
            _ => {}
        }
        for (name, cond) in &*self.headers {
            if !header_accepts(req, name, cond) {
                return reject(&format!("header {name}"), describe(cond));
            }
        }
        for (name, cond) in &*self.query {
            if !req.query_accepts(name, |v| cond.accepts(v)) {
                return reject(&format!("query {name}"), describe(cond));
            }
        }
        None
    }
}

fn describe(cond: &ValueCond) -> String {
    match cond {
        ValueCond::Present => "present".into(),
        ValueCond::Exact(e) => format!("exactly {e:?}"),
        ValueCond::Regex(r) => format!("matching {}", r.as_str()),
    }
}

fn header_accepts(req: &RequestInfo<'_>, name: &HeaderName, cond: &ValueCond) -> bool {
    req.headers
        .get_all(name)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| cond.accepts(v)))
}

/// The groups a path regex captured: numbered (`1`, `2`…) and named.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Captures(Vec<(Box<str>, Box<str>)>);

impl Captures {
    fn of(re: &Regex, path: &str) -> Option<Captures> {
        let caps = re.captures(path)?;
        let mut out = Vec::new();
        for (i, name) in re.capture_names().enumerate().skip(1) {
            if let Some(m) = caps.get(i) {
                out.push((i.to_string().into(), m.as_str().into()));
                if let Some(name) = name {
                    out.push((name.into(), m.as_str().into()));
                }
            }
        }
        Some(Captures(out))
    }

    /// The value of a group by number or name.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| **k == *key).map(|(_, v)| &**v)
    }

    /// All groups, numbered and named, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}
