//! Test harness for gangway's integration tests.
//!
//! It drives real parts: the Docker engine through the `docker` CLI, real
//! processes, the real `curl`. Every container and network it creates carries
//! the label `gangway-test=1` (so leftovers can be found with
//! `docker ps -a --filter label=gangway-test=1`) and is removed by a `Drop`
//! guard, also when a test panics. Declare networks before containers in a
//! test so that containers are dropped first.
//!
//! No image can be pulled here, so images are built from the project's own
//! binaries with `docker import` (see [`backend_image`] and
//! [`image_from_binary`]).
//!
//! [`grpc`] has a gRPC client and runs `gangway-test-grpc`, a gRPC server
//! (h2c or TLS) with unary and streaming calls.

#![allow(clippy::unwrap_used)] // a panic here is the intended test failure

mod curl;
mod docker;
pub mod grpc;
mod image;
mod process;
mod relay;
mod util;

pub use curl::{curl, get, parse_curl_output, CurlResult};
pub use docker::{docker, docker_try, Container, ContainerSpec, Network, TEST_LABEL};
pub use image::{
    backend_binary, backend_image, backend_image_with_healthcheck, image_from_binary, parse_ldd,
};
pub use process::{Gangway, GangwayBuilder};
pub use relay::SocketRelay;
pub use util::{
    free_port, make_cert, unique_name, wait_until, wait_until_some, RefusedPort, TempDir,
};
