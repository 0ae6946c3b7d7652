//! Helpers shared by the end-to-end tests of the gangway binary.

#![allow(dead_code)] // each test file uses a different part

pub mod tls;
pub mod wire;

use gangway_testkit::{
    backend_binary, free_port, wait_until, wait_until_some, ContainerSpec, CurlResult, Gangway,
    GangwayBuilder, Network, TempDir,
};
use std::path::Path;
use std::time::Duration;

pub const GANGWAY: &str = env!("CARGO_BIN_EXE_gangway");

/// The bound for every wait on gangway or Docker.
pub const WAIT: Duration = Duration::from_secs(10);

/// A builder for gangway on the host, routing the containers of `net`.
pub fn gangway(net: &Network) -> GangwayBuilder {
    GangwayBuilder::new(GANGWAY).network(net)
}

/// Spawns gangway and waits until `/readyz` answers 200.
pub fn start(builder: GangwayBuilder) -> Gangway {
    let g = builder.spawn();
    assert!(
        g.wait_ready(WAIT),
        "gangway did not become ready within {WAIT:?}:\n{}",
        g.output()
    );
    g
}

/// A backend container on `net` with `reverse-proxy.host=<host>`.
pub fn backend(net: &Network, host: &str) -> ContainerSpec {
    ContainerSpec::backend()
        .network(net)
        .label("reverse-proxy.host", host)
}

/// Polls `GET http://127.0.0.1:<http_port><path>` with `Host: host` until
/// `ok` accepts the answer; panics with the last answer and gangway's output
/// after [`WAIT`].
pub fn wait_for(
    g: &Gangway,
    host: &str,
    path: &str,
    what: &str,
    ok: impl Fn(&CurlResult) -> bool,
) -> CurlResult {
    let mut last = CurlResult::default();
    wait_until_some(WAIT, || {
        last = g.get(host, path);
        ok(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "{what}: host {host} path {path} never gave the expected answer within {WAIT:?}; last: {last:#?}\ngangway output:\n{}",
            g.output()
        )
    })
}

/// Waits until `host` is served by the backend container named `name`.
pub fn wait_routed_to(g: &Gangway, host: &str, name: &str) -> CurlResult {
    wait_for(g, host, "/", &format!("routed to {name}"), |r| {
        r.status == 200 && r.header("x-backend") == Some(name)
    })
}

/// Waits until `host` answers with `status`.
pub fn wait_status(g: &Gangway, host: &str, status: u16) -> CurlResult {
    wait_for(g, host, "/", &format!("status {status}"), |r| {
        r.status == status
    })
}

/// Whether `s` contains something shaped like an IPv4 address.
pub fn contains_ipv4(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit()
            && (i == 0 || !bytes[i - 1].is_ascii_digit() && bytes[i - 1] != b'.')
        {
            let rest = &s[i..];
            let candidate: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let parts: Vec<&str> = candidate.trim_end_matches('.').split('.').collect();
            if parts.len() == 4
                && parts.iter().all(|p| {
                    !p.is_empty() && p.len() <= 3 && p.parse::<u16>().is_ok_and(|n| n < 256)
                })
            {
                return true;
            }
            i += candidate.len().max(1);
        } else {
            i += 1;
        }
    }
    false
}

/// Whether a log field that names a container id matches `id` (full or a
/// 12-character short id).
pub fn same_container_id(field: &serde_json::Value, id: &str) -> bool {
    field
        .as_str()
        .is_some_and(|v| v.len() >= 12 && id.starts_with(v))
}

/// A Docker network that does not exist: Docker routes nothing.
pub const NO_NETWORK: &str = "gwtest-none";

/// A `gangway-test-backend` process on 127.0.0.1; killed and reaped when
/// dropped (also when the test panics), through [`Gangway`]'s `Drop`.
pub struct Backend {
    _process: Gangway,
    pub port: u16,
}

impl Backend {
    /// Starts a backend named `name` on a free port and waits until it
    /// listens. A port taken between choosing and binding is retried.
    pub fn start(name: &str) -> Backend {
        Backend::start_with(name, &[])
    }

    /// Starts a backend with extra environment (`BACKEND_DELAY_MS`).
    pub fn start_with(name: &str, env: &[(&str, &str)]) -> Backend {
        let mut last = String::new();
        for _ in 0..5 {
            match Backend::try_start(name, free_port(), env) {
                Ok(backend) => return backend,
                Err(output) => last = output,
            }
        }
        panic!("gangway-test-backend {name} did not start:\n{last}");
    }

    /// Starts a backend on a given port (one that a stopped backend used).
    pub fn start_on(name: &str, port: u16) -> Backend {
        Backend::try_start(name, port, &[]).unwrap_or_else(|output| {
            panic!("gangway-test-backend {name} did not start on {port}:\n{output}")
        })
    }

    fn try_start(name: &str, port: u16, env: &[(&str, &str)]) -> Result<Backend, String> {
        let port_arg = port.to_string();
        let mut vars = vec![("BACKEND_NAME", name)];
        vars.extend_from_slice(env);
        let mut process =
            Gangway::spawn_with_args(backend_binary(), &["--port", port_arg.as_str()], &vars);
        let listening = |p: &Gangway| p.lines().iter().any(|l| l.starts_with("listening on"));
        // Stop waiting early if it exits (its port was taken meanwhile).
        wait_until(WAIT, || listening(&process) || process.try_exit().is_some());
        if listening(&process) {
            return Ok(Backend {
                _process: process,
                port,
            });
        }
        let output = process.output();
        process.kill();
        Err(output)
    }

    /// `127.0.0.1:<port>`, as a pool target.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Writes `text` beside `path` and renames it over, as editors do.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// gangway with `file` as its configuration, no Docker network.
fn with_config(file: &Path) -> GangwayBuilder {
    GangwayBuilder::new(GANGWAY)
        .network(NO_NETWORK)
        .env("GANGWAY_CONFIG", file.to_string_lossy())
}

/// Starts gangway with `file` as its configuration and waits until ready.
pub fn start_with(file: &Path) -> Gangway {
    start(with_config(file))
}

/// Writes `text` as `gangway.toml` in `dir` and starts gangway with it.
pub fn start_config(dir: &TempDir, text: &str) -> Gangway {
    let file = dir.join("gangway.toml");
    write_atomic(&file, text);
    start_with(&file)
}

/// The same with HTTPS on, presenting `cert` and `key`.
pub fn start_config_https(dir: &TempDir, text: &str, cert: &Path, key: &Path) -> Gangway {
    let file = dir.join("gangway.toml");
    write_atomic(&file, text);
    start(with_config(&file).https(cert, key))
}

/// Sets a stop flag when dropped, so that load threads end even when the
/// test fails half-way.
pub struct StopOnDrop(pub std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Steady GET load on `host` from `clients` threads until `stop` is set
/// (at most 5,000 requests each). Each thread returns how many requests it
/// sent and the statuses of those that were not 200.
pub fn steady_load(
    port: u16,
    host: &'static str,
    clients: usize,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<(usize, Vec<u16>)>> {
    use std::sync::atomic::Ordering;
    (0..clients)
        .map(|_| {
            let stop = std::sync::Arc::clone(stop);
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) && sent < 5_000 {
                    let r = gangway_testkit::get(port, host, "/");
                    if r.status != 200 {
                        failures.push(r.status);
                    }
                    sent += 1;
                }
                (sent, failures)
            })
        })
        .collect()
}

/// Waits for the load threads; panics if any request failed. Returns how
/// many requests were sent in all.
pub fn finish_load(clients: Vec<std::thread::JoinHandle<(usize, Vec<u16>)>>, g: &Gangway) -> usize {
    let mut total = 0;
    for c in clients {
        let (sent, failures) = c.join().unwrap_or_default();
        total += sent;
        assert!(
            failures.is_empty(),
            "clients saw {failures:?}\n{}",
            g.output()
        );
    }
    total
}
