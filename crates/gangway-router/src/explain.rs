//! `explain`: which route a request would take, and for every other route
//! the first condition that turned the request away.

use crate::request::RequestInfo;
use crate::route::{CompiledAction, CompiledRoute};
use crate::{Lookup, RouteTable};
use gangway_model::{normalize_host, MAX_HOST_LEN};
use serde::Serialize;

/// The answer of [`RouteTable::explain`].
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The snapshot the table was compiled from.
    pub snapshot: u64,
    /// The host as routing sees it (lower case, no port, no trailing dot).
    pub host: String,
    /// The route chosen, if any.
    pub route: Option<String>,
    /// What the chosen route does.
    pub action: Option<String>,
    /// The pool, for a forwarding route.
    pub pool: Option<String>,
    /// The target the next request would go to, for a forwarding route.
    pub target: Option<TargetReport>,
    /// The path regex's captures, numbered and named.
    pub captures: Vec<(String, String)>,
    /// Every route of the table: those whose host matched first, in the
    /// order they are tried, then the others.
    pub candidates: Vec<CandidateReport>,
}

/// A target as `explain` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// Its address.
    pub addr: String,
    /// Its container (or other origin) name.
    pub name: String,
}

/// One route's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateReport {
    /// The route's name.
    pub route: String,
    /// Its priority.
    pub priority: i32,
    /// `chosen`, `matched` (a route tried earlier won) or `rejected`.
    pub outcome: &'static str,
    /// For `rejected`: the first condition that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_by: Option<String>,
    /// For `rejected`: what that condition wanted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wanted: Option<String>,
}

impl RouteTable {
    /// Explains how a request would be routed, without routing it (the
    /// round-robin position does not move).
    pub fn explain(&self, req: &RequestInfo<'_>) -> Explanation {
        let mut buf = [0u8; MAX_HOST_LEN + 8];
        let host = normalize_host(req.host, &mut buf)
            .unwrap_or_default()
            .to_owned();
        let (chosen, captures) = match self.lookup(req) {
            Lookup::Route(route, captures) => (Some(route), captures),
            Lookup::NoRoute => (None, Default::default()),
        };
        let mut report = Explanation {
            snapshot: self.snapshot().number,
            host: host.clone(),
            route: chosen.map(|r| r.name().to_owned()),
            action: chosen.map(describe_action),
            pool: None,
            target: None,
            captures: captures
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            candidates: Vec::new(),
        };
        if let Some(CompiledAction::Forward(Some(pool))) = chosen.map(|r| &r.action) {
            report.pool = Some(pool.name().to_owned());
            report.target = pool.peek().map(|t| TargetReport {
                addr: t.addr.to_string(),
                name: t.name.to_string(),
            });
        }

        let tried = self.candidates(req.host);
        let mut listed = vec![false; self.routes().len()];
        for &i in tried {
            listed[i as usize] = true;
            let route = &self.routes()[i as usize];
            report.candidates.push(verdict(route, req, chosen));
        }
        for (i, route) in self.routes().iter().enumerate() {
            if !listed[i] {
                let hosts: Vec<&str> = self
                    .model(route)
                    .map(|m| m.matcher.hosts.iter().map(String::as_str).collect())
                    .unwrap_or_default();
                report.candidates.push(CandidateReport {
                    route: route.name().to_owned(),
                    priority: route.priority(),
                    outcome: "rejected",
                    rejected_by: Some("host".into()),
                    wanted: Some(format!("one of {}", hosts.join(", "))),
                });
            }
        }
        report
    }
}

fn verdict(
    route: &CompiledRoute,
    req: &RequestInfo<'_>,
    chosen: Option<&CompiledRoute>,
) -> CandidateReport {
    let is_chosen = chosen.is_some_and(|c| std::ptr::eq(c, route));
    let rejection = if is_chosen {
        None
    } else {
        route.first_rejection(req)
    };
    CandidateReport {
        route: route.name().to_owned(),
        priority: route.priority(),
        outcome: match (is_chosen, &rejection) {
            (true, _) => "chosen",
            (false, None) => "matched",
            (false, Some(_)) => "rejected",
        },
        rejected_by: rejection.as_ref().map(|r| r.condition.clone()),
        wanted: rejection.map(|r| r.wanted),
    }
}

fn describe_action(route: &CompiledRoute) -> String {
    match &route.action {
        CompiledAction::Forward(Some(pool)) => format!("forward to pool {}", pool.name()),
        CompiledAction::Forward(None) => "forward to a pool that does not exist (503)".into(),
        CompiledAction::Redirect { status, location } => {
            format!("redirect {} to {location}", status.as_u16())
        }
        CompiledAction::Static(files) => format!("serve files from {}", files.root),
        CompiledAction::Respond(fixed) => format!("respond {}", fixed.status.as_u16()),
        CompiledAction::Statistics => "statistics".into(),
    }
}
