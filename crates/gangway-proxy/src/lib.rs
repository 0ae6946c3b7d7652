//! gangway's data plane: it accepts client connections (HTTP/1.1 and HTTP/2,
//! plain or TLS), routes each request through the current [`RouteTable`],
//! forwards it over pooled keep-alive connections, and streams the answer
//! back, writing one access log line per request.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod body;
mod handler;
pub mod headers;
pub mod listener;
mod server;
pub mod tls;

pub use body::ResponseBody;
pub use handler::{Connection, Proxy};
pub use server::{serve, Listener};

#[doc(no_inline)]
pub use gangway_router::RouteTable;
#[doc(no_inline)]
pub use tokio_rustls::TlsAcceptor;
