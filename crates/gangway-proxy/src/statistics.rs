//! The statistics page (seed 002's panel): every route's and every
//! target's counters as JSON.

use crate::body::ResponseBody;
use gangway_router::{RouteStats, RouteTable};
use http::header::{self, HeaderValue};
use http::Response;
use serde::Serialize;

#[derive(Serialize)]
struct Page<'a> {
    snapshot: u64,
    checksum: String,
    routes: Vec<RouteEntry<'a>>,
    pools: Vec<PoolEntry<'a>>,
}

#[derive(Serialize)]
struct RouteEntry<'a> {
    name: &'a str,
    #[serde(flatten)]
    stats: RouteStats,
}

#[derive(Serialize)]
struct PoolEntry<'a> {
    name: &'a str,
    targets: Vec<TargetEntry<'a>>,
}

#[derive(Serialize)]
struct TargetEntry<'a> {
    addr: String,
    name: &'a str,
    requests: u64,
    failures: u64,
}

/// The statistics of the routes and pools in `table`.
pub(crate) fn response(table: &RouteTable) -> Response<ResponseBody> {
    let page = Page {
        snapshot: table.snapshot().number,
        checksum: format!("{:016x}", table.snapshot().checksum),
        routes: table
            .routes()
            .iter()
            .map(|r| RouteEntry {
                name: r.name(),
                stats: r.counters.snapshot(),
            })
            .collect(),
        pools: table
            .pools()
            .iter()
            .map(|p| PoolEntry {
                name: p.name(),
                targets: p
                    .targets()
                    .iter()
                    .map(|t| {
                        let (requests, failures) = t.counters.totals();
                        TargetEntry {
                            addr: t.addr.to_string(),
                            name: &t.name,
                            requests,
                            failures,
                        }
                    })
                    .collect(),
            })
            .collect(),
    };
    let body = serde_json::to_vec_pretty(&page).unwrap_or_default();
    let mut response = Response::new(ResponseBody::full(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
