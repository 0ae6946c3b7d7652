//! A unix socket relay in front of the Docker socket, to test how gangway
//! behaves when Docker goes away and comes back.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Listens on a unix socket and forwards each connection to `upstream`
/// (both ways). [`stop`](Self::stop) closes the listener, removes the socket
/// file and breaks every relayed connection (e.g. a streaming
/// `GET /events`); [`start_again`](Self::start_again) or
/// [`restart`](Self::restart) listen again on the same path.
#[derive(Debug)]
pub struct SocketRelay {
    path: PathBuf,
    upstream: PathBuf,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    stop: Arc<AtomicBool>,
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<UnixStream>>>,
}

impl SocketRelay {
    /// Starts relaying `path` → `upstream` (e.g. `/var/run/docker.sock`).
    pub fn start(path: impl AsRef<Path>, upstream: impl AsRef<Path>) -> SocketRelay {
        let mut r = SocketRelay::stopped(path, upstream);
        r.start_again();
        r
    }

    /// A relay that is not listening yet (start it with
    /// [`start_again`](Self::start_again)).
    pub fn stopped(path: impl AsRef<Path>, upstream: impl AsRef<Path>) -> SocketRelay {
        SocketRelay {
            path: path.as_ref().to_path_buf(),
            upstream: upstream.as_ref().to_path_buf(),
            running: None,
        }
    }

    /// The socket path it listens on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `unix://<path>`, for `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Starts listening again (no-op if running).
    pub fn start_again(&mut self) {
        if self.running.is_some() {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path)
            .unwrap_or_else(|e| panic!("bind {}: {e}", self.path.display()));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let upstream = self.upstream.clone();
        let accept = {
            let stop = stop.clone();
            let conns = conns.clone();
            std::thread::spawn(move || accept_loop(listener, upstream, stop, conns))
        };
        self.running = Some(Running {
            stop,
            accept,
            conns,
        });
    }

    /// Stops listening, removes the socket file and breaks every relayed
    /// connection. No-op if stopped.
    pub fn stop(&mut self) {
        let Some(r) = self.running.take() else {
            return;
        };
        r.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = UnixStream::connect(&self.path);
        let _ = r.accept.join();
        let _ = std::fs::remove_file(&self.path);
        for c in r.conns.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Stops and starts again.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }
}

impl Drop for SocketRelay {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(
    listener: UnixListener,
    upstream: PathBuf,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<UnixStream>>>,
) {
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = UnixStream::connect(&upstream) else {
            continue; // drops the client: the connection fails
        };
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        {
            let mut list = conns.lock().unwrap_or_else(|e| e.into_inner());
            list.push(c3);
            list.push(s3);
        }
        std::thread::spawn(move || pipe(client, s2));
        std::thread::spawn(move || pipe(server, c2));
    }
}

/// Copies `from` → `to` until EOF or error, then half-closes both.
fn pipe(mut from: UnixStream, mut to: UnixStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::TempDir;
    use std::time::Duration;

    /// An upstream that echoes each connection back, for testing the relay.
    fn echo_server(path: &Path) -> JoinHandle<()> {
        let l = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut r = s.try_clone().unwrap();
                    let _ = std::io::copy(&mut r, &mut s);
                });
            }
        })
    }

    fn roundtrip(path: &Path) -> std::io::Result<String> {
        let mut c = UnixStream::connect(path)?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        c.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    #[test]
    fn relays_stops_breaks_connections_and_restarts() {
        let dir = TempDir::new();
        let up = dir.join("up.sock");
        let _echo = echo_server(&up);
        let mut relay = SocketRelay::start(dir.join("relay.sock"), &up);
        assert_eq!(roundtrip(relay.path()).unwrap(), "ping");

        // A long-lived connection through the relay.
        let mut live = UnixStream::connect(relay.path()).unwrap();
        live.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        live.write_all(b"abcd").unwrap();
        let mut buf = [0u8; 4];
        live.read_exact(&mut buf).unwrap();

        relay.stop();
        assert!(!relay.path().exists());
        assert!(roundtrip(relay.path()).is_err());
        // The live connection is broken: EOF or error, not a hang.
        let mut rest = Vec::new();
        let r = live.read_to_end(&mut rest);
        assert!(r.is_err() || rest.is_empty(), "{r:?} {rest:?}");

        relay.restart();
        assert_eq!(roundtrip(relay.path()).unwrap(), "ping");
        assert!(relay.docker_host().starts_with("unix:///"));
        let p = relay.path().to_path_buf();
        drop(relay);
        assert!(!p.exists());
    }
}
