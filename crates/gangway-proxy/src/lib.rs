//! gangway's data plane: it accepts client connections (HTTP/1.1 and HTTP/2,
//! plain or TLS), routes each request through the current [`RouteTable`],
//! and does what the route says: forward over pooled keep-alive
//! connections and stream the answer back, redirect, serve files, or answer
//! itself; one access log line per request.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod access_log;
mod body;
mod client_body;
mod forwarded;
mod h1;
mod h2_streams;
mod handler;
pub mod headers;
mod health;
pub mod listener;
mod metrics;
mod response_timer;
mod server;
mod static_files;
mod statistics;
pub mod tls;
mod upstream;
mod write_burst;

pub use body::{BodyError, ResponseBody};
pub use handler::{Connection, Proxy, ProxySettings};
pub use health::run_health_checks;
pub use metrics::prometheus_metrics;
pub use server::{serve, Listener};
pub use statistics::statistics_json;

/// Internals reached by the fuzz targets in `fuzz/`; not API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::h1::chunked::{
        chunk_start, last_chunk, Chunk, ChunkError, ChunkedDecoder, CHUNK_END,
    };
    pub use crate::h1::head::{parse_response, HeadError, ResponseFraming, ResponseHead, MAX_HEAD};
    pub use crate::h1::server::request::{
        parse_request, BodyFraming, Refusal, RequestHead, MAX_HEAD as MAX_REQUEST_HEAD,
    };
    pub use crate::handler::expand_template;
    pub use crate::static_files::{parse_range, safe_relative_path, RangeSpec};
}

#[doc(no_inline)]
pub use gangway_router::RouteTable;
#[doc(no_inline)]
pub use tokio_rustls::TlsAcceptor;
