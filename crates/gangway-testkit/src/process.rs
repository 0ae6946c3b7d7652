//! Running the gangway binary (or any binary) as a child process and
//! watching its output.

use crate::curl::CurlResult;
use crate::util::{free_port, wait_until_some};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Lines = Arc<Mutex<Vec<String>>>;

/// Environment variables the child must not inherit from the test's
/// environment (gangway's settings and Docker's).
fn is_inherited_setting(key: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "PROXY_",
        "HTTP_",
        "HTTPS_",
        "TLS_",
        "CONTROL_PLANE_",
        "ACME_",
        "GANGWAY_",
        "DOCKER_",
    ];
    const EXACT: &[&str] = &["LOG_FORMAT", "RUST_LOG", "DATABASE_URL"];
    PREFIXES.iter().any(|p| key.starts_with(p)) || EXACT.contains(&key)
}

/// A running child process whose stdout and stderr lines are collected (and
/// echoed to the test's stderr, prefixed `[gangway]`). Dropping it kills and
/// reaps the child.
#[derive(Debug)]
pub struct Gangway {
    child: Child,
    stdout: Lines,
    stderr: Lines,
    /// The ports given by [`GangwayBuilder`] (0 when spawned directly).
    pub http_port: u16,
    pub https_port: u16,
    pub control_port: u16,
}

impl Gangway {
    /// Spawns `bin` with `env` (and without any inherited gangway or Docker
    /// setting).
    pub fn spawn<K, V>(bin: impl AsRef<Path>, env: &[(K, V)]) -> Gangway
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Gangway::spawn_with_args(bin, &[] as &[&str], env)
    }

    /// Like [`spawn`](Self::spawn), with command-line arguments.
    pub fn spawn_with_args<A, K, V>(bin: impl AsRef<Path>, args: &[A], env: &[(K, V)]) -> Gangway
    where
        A: AsRef<str>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let bin = bin.as_ref();
        let mut cmd = Command::new(bin);
        for (k, _) in std::env::vars_os() {
            if is_inherited_setting(&k.to_string_lossy()) {
                cmd.env_remove(&k);
            }
        }
        for a in args {
            cmd.arg(a.as_ref());
        }
        for (k, v) in env {
            cmd.env(k.as_ref(), v.as_ref());
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stdout = Lines::default();
        let stderr = Lines::default();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        spawn_reader(out, stdout.clone(), "[gangway]");
        spawn_reader(err, stderr.clone(), "[gangway stderr]");
        Gangway {
            child,
            stdout,
            stderr,
            http_port: 0,
            https_port: 0,
            control_port: 0,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stdout lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The stderr lines so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The stdout lines so far that parse as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (polling every 20 ms) for a stdout line matching `pred`.
    pub fn wait_for_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        wait_until_some(timeout, || self.lines().into_iter().find(|l| pred(l)))
    }

    /// Waits for a stdout line that is JSON and matches `pred`.
    pub fn wait_for_json(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> Option<serde_json::Value> {
        wait_until_some(timeout, || self.json_lines().into_iter().find(|v| pred(v)))
    }

    /// Waits for a JSON stdout line whose "message" is `message` and matches
    /// `pred`.
    pub fn wait_for_message(
        &self,
        message: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> Option<serde_json::Value> {
        self.wait_for_json(|v| v["message"] == message && pred(v), timeout)
    }

    /// The JSON stdout lines whose "message" is `message`.
    pub fn messages(&self, message: &str) -> Vec<serde_json::Value> {
        self.json_lines()
            .into_iter()
            .filter(|v| v["message"] == message)
            .collect()
    }

    /// Whether the child has exited (without waiting).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the child to exit; `None` if it still runs.
    /// After an exit, gives the reader threads a moment to collect the last
    /// lines.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = &mut self.child;
        let status = wait_until_some(timeout, || child.try_wait().ok().flatten())?;
        // The pipes close when the process is gone; let the readers drain.
        std::thread::sleep(Duration::from_millis(50));
        Some(status)
    }

    /// Kills the child (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (through the `kill` command: this crate has no unsafe).
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// `http://127.0.0.1:<control_port><path>` with curl.
    pub fn admin_get(&self, path: &str) -> CurlResult {
        crate::curl::curl([format!("http://127.0.0.1:{}{path}", self.control_port)])
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        crate::util::wait_until(timeout, || self.admin_get("/readyz").status == 200)
    }

    /// `curl -H "Host: <host>" http://127.0.0.1:<http_port><path>`.
    pub fn get(&self, host: &str, path: &str) -> CurlResult {
        crate::curl::get(self.http_port, host, path)
    }

    /// All stdout and stderr lines, for assertion messages.
    pub fn output(&self) -> String {
        let mut s = self.lines().join("\n");
        let err = self.stderr_lines();
        if !err.is_empty() {
            s.push_str("\n--- stderr ---\n");
            s.push_str(&err.join("\n"));
        }
        s
    }
}

impl Drop for Gangway {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_reader(pipe: impl Read + Send + 'static, into: Lines, prefix: &'static str) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_string();
                    eprintln!("{prefix} {line}");
                    into.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            }
        }
    });
}

/// Starts gangway on the host with free ports: `HTTP_PORT`, `HTTPS_PORT`
/// and `CONTROL_PLANE_ADDR=127.0.0.1:<port>` are set to free ports,
/// `PROXY_DOCKER_NETWORK` to the given network.
#[derive(Debug, Clone)]
pub struct GangwayBuilder {
    bin: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
    http_port: u16,
    https_port: u16,
    control_port: u16,
}

impl GangwayBuilder {
    pub fn new(bin: impl AsRef<Path>) -> GangwayBuilder {
        let http_port = free_port();
        let mut https_port = free_port();
        while https_port == http_port {
            https_port = free_port();
        }
        let mut control_port = free_port();
        while control_port == http_port || control_port == https_port {
            control_port = free_port();
        }
        GangwayBuilder {
            bin: bin.as_ref().to_path_buf(),
            env: Vec::new(),
            args: Vec::new(),
            http_port,
            https_port,
            control_port,
        }
    }

    /// `PROXY_DOCKER_NETWORK`.
    pub fn network(self, net: impl AsRef<str>) -> Self {
        self.env("PROXY_DOCKER_NETWORK", net.as_ref())
    }

    /// HTTPS on, with this certificate and key.
    pub fn https(self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        let cert = cert.as_ref().to_string_lossy().into_owned();
        let key = key.as_ref().to_string_lossy().into_owned();
        self.env("HTTPS_ENABLED", "true")
            .env("TLS_CERT_PATH", cert)
            .env("TLS_KEY_PATH", key)
    }

    /// Sets (or replaces) an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
        self
    }

    /// Removes an environment variable set earlier (also a default one).
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    pub fn https_port(&self) -> u16 {
        self.https_port
    }

    pub fn control_port(&self) -> u16 {
        self.control_port
    }

    /// The environment the child will get (defaults, then what was set).
    pub fn full_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("HTTP_PORT".to_string(), self.http_port.to_string()),
            ("HTTPS_PORT".to_string(), self.https_port.to_string()),
            (
                "CONTROL_PLANE_ADDR".to_string(),
                format!("127.0.0.1:{}", self.control_port),
            ),
        ];
        for (k, v) in &self.env {
            env.retain(|(k2, _)| k2 != k);
            env.push((k.clone(), v.clone()));
        }
        env
    }

    pub fn spawn(&self) -> Gangway {
        let mut g = Gangway::spawn_with_args(&self.bin, &self.args, &self.full_env());
        g.http_port = self.http_port;
        g.https_port = self.https_port;
        g.control_port = self.control_port;
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_lines_and_exit_status() {
        let mut p = Gangway::spawn_with_args(
            "/bin/sh",
            &[
                "-c",
                "echo '{\"message\":\"hi\",\"n\":1}'; echo plain; echo oops >&2; echo \"$HTTP_PORT-$X\"; exit 3",
            ],
            &[("X", "y")],
        );
        let status = p.wait_exit(Duration::from_secs(10)).expect("exits");
        assert_eq!(status.code(), Some(3));
        assert!(p
            .wait_for_line(|l| l == "-y", Duration::from_secs(5))
            .is_some());
        assert_eq!(p.json_lines().len(), 1);
        assert_eq!(p.messages("hi")[0]["n"], 1);
        assert!(p
            .wait_for_line(|l| l == "plain", Duration::from_secs(1))
            .is_some());
        assert!(wait_until_some(Duration::from_secs(5), || {
            (p.stderr_lines() == vec!["oops".to_string()]).then_some(())
        })
        .is_some());
    }

    #[test]
    fn wait_for_line_times_out_and_drop_kills() {
        let mut t = Gangway::spawn("/bin/true", &[] as &[(&str, &str)]);
        assert!(t
            .wait_exit(Duration::from_secs(10))
            .expect("exits")
            .success());
        let p = Gangway::spawn_with_args("/bin/sleep", &["30"], &[] as &[(&str, &str)]);
        let start = std::time::Instant::now();
        assert!(p
            .wait_for_line(|_| true, Duration::from_millis(100))
            .is_none());
        drop(p);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn builder_ports_and_env() {
        let b = GangwayBuilder::new("/bin/true")
            .network("n1")
            .env("HTTP_PORT", "1234")
            .env("LOG_FORMAT", "json");
        let env = b.full_env();
        let get = |k: &str| env.iter().find(|(k2, _)| k2 == k).map(|(_, v)| v.clone());
        assert_eq!(get("HTTP_PORT").as_deref(), Some("1234"));
        assert_eq!(get("PROXY_DOCKER_NETWORK").as_deref(), Some("n1"));
        assert_eq!(
            get("CONTROL_PLANE_ADDR"),
            Some(format!("127.0.0.1:{}", b.control_port()))
        );
        assert_eq!(env.iter().filter(|(k, _)| k == "HTTP_PORT").count(), 1);
    }

    #[test]
    fn settings_are_not_inherited() {
        assert!(is_inherited_setting("HTTP_PORT"));
        assert!(is_inherited_setting("PROXY_DOCKER_NETWORK"));
        assert!(is_inherited_setting("DOCKER_HOST"));
        assert!(is_inherited_setting("RUST_LOG"));
        assert!(!is_inherited_setting("PATH"));
        assert!(!is_inherited_setting("HOME"));
    }
}
