//! The statistics page (seed 002's panel): every route's counters and
//! every target's counters and health, as JSON; also served by the admin
//! API at `/api/v1/stats`.

use crate::body::ResponseBody;
use gangway_router::{now_ms, RouteStats, RouteTable, TargetHealthReport};
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
    /// Every target was ejected at the last selection.
    panic: bool,
    targets: Vec<TargetEntry<'a>>,
}

#[derive(Serialize)]
struct TargetEntry<'a> {
    addr: String,
    name: &'a str,
    #[serde(flatten)]
    health: TargetHealthReport,
}

/// The statistics of the routes and pools in `table`, as JSON.
pub fn statistics_json(table: &RouteTable) -> Vec<u8> {
    let now = now_ms();
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
                panic: p.in_panic(),
                targets: p
                    .targets()
                    .iter()
                    .map(|t| TargetEntry {
                        addr: t.addr.to_string(),
                        name: &t.name,
                        health: t.state.report(now),
                    })
                    .collect(),
            })
            .collect(),
    };
    serde_json::to_vec_pretty(&page).unwrap_or_default()
}

/// The statistics page as a response.
pub(crate) fn response(table: &RouteTable) -> Response<ResponseBody> {
    let body = statistics_json(table);
    let mut response = Response::new(ResponseBody::full(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
