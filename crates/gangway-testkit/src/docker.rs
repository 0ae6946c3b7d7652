//! Networks and containers on the real Docker engine, through the `docker`
//! CLI, with `Drop` guards that remove them.

use crate::util::unique_name;
use std::ffi::OsStr;
use std::process::Command;
use std::time::Duration;

/// The label every container and network made here carries.
pub const TEST_LABEL: &str = "gangway-test=1";

/// Runs `docker <args>`; returns its trimmed stdout, or its stderr (and
/// stdout) as the error when it exits non-zero.
pub fn docker_try<I, S>(args: I) -> Result<String, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = Command::new("docker")
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`docker {}` failed ({}): {}{}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            if stdout.is_empty() {
                String::new()
            } else {
                format!(" / stdout: {stdout}")
            }
        ))
    }
}

/// Runs `docker <args>` and returns its trimmed stdout; panics on failure.
pub fn docker<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    docker_try(args).unwrap_or_else(|e| panic!("{e}"))
}

/// A bridge network with a unique name (`gwtest-<pid>-<n>-<random>`),
/// removed on drop (with any test container still attached to it).
#[derive(Debug)]
pub struct Network {
    name: String,
    subnet: String,
    gateway: String,
}

impl Network {
    pub fn create() -> Network {
        let name = unique_name("gwtest");
        docker(["network", "create", "--label", TEST_LABEL, &name]);
        // From here on, Drop removes it even if inspecting panics.
        let mut net = Network {
            name,
            subnet: String::new(),
            gateway: String::new(),
        };
        let ipam = docker([
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}\n{{end}}",
            &net.name,
        ]);
        let first = ipam.lines().next().unwrap_or_default();
        let mut parts = first.split_whitespace();
        net.subnet = parts.next().unwrap_or_default().to_string();
        net.gateway = parts.next().unwrap_or_default().to_string();
        net
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The IPv4 subnet, e.g. `172.18.0.0/16`.
    pub fn subnet(&self) -> &str {
        &self.subnet
    }

    /// The gateway address, e.g. `172.18.0.1`: what a container on this
    /// network sees as the address of a client on the host.
    pub fn gateway(&self) -> &str {
        &self.gateway
    }
}

impl AsRef<str> for Network {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Containers should be gone already (declare the network first so it
        // drops last); remove test containers left attached anyway.
        if let Ok(ids) = docker_try([
            "ps",
            "-aq",
            "--filter",
            &format!("network={}", self.name),
            "--filter",
            &format!("label={TEST_LABEL}"),
        ]) {
            for id in ids.split_whitespace() {
                let _ = docker_try(["rm", "-f", "-v", id]);
            }
        }
        for attempt in 0..20 {
            match docker_try(["network", "rm", &self.name]) {
                Ok(_) => return,
                Err(e) if e.contains("No such network") || e.contains("not found") => return,
                Err(e) => {
                    if attempt == 19 {
                        eprintln!("[testkit] could not remove network {}: {e}", self.name);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// How to create a container; [`ContainerSpec::start`] makes it.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    image: String,
    name: String,
    networks: Vec<String>,
    no_network: bool,
    labels: Vec<(String, String)>,
    env: Vec<(String, String)>,
    publish: Vec<u16>,
    args: Vec<String>,
    cmd: Vec<String>,
    backend_name_env: bool,
}

impl ContainerSpec {
    /// A container of `image`, named `gwtest-c-<pid>-<n>-<random>`, on
    /// Docker's default network unless [`network`](Self::network) or
    /// [`no_network`](Self::no_network) is given.
    pub fn new(image: impl Into<String>) -> ContainerSpec {
        ContainerSpec {
            image: image.into(),
            name: unique_name("gwtest-c"),
            networks: Vec::new(),
            no_network: false,
            labels: Vec::new(),
            env: Vec::new(),
            publish: Vec::new(),
            args: Vec::new(),
            cmd: Vec::new(),
            backend_name_env: false,
        }
    }

    /// A `gangway-test-backend` container (see [`crate::backend_image`])
    /// whose `BACKEND_NAME` is the container's name.
    pub fn backend() -> ContainerSpec {
        let mut spec = ContainerSpec::new(crate::image::backend_image());
        spec.backend_name_env = true;
        spec
    }

    /// The backend with a Docker HEALTHCHECK: `starting` until the test
    /// requests `/health/ok` from it, `unhealthy` after `/health/fail`.
    pub fn backend_with_healthcheck() -> ContainerSpec {
        let mut spec = ContainerSpec::new(crate::image::backend_image_with_healthcheck());
        spec.backend_name_env = true;
        spec
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Attach to this network (may be given several times).
    pub fn network(mut self, net: impl AsRef<str>) -> Self {
        self.networks.push(net.as_ref().to_string());
        self
    }

    /// `--network none`.
    pub fn no_network(mut self) -> Self {
        self.no_network = true;
        self
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Publish container port `port` on `127.0.0.1:<random>`; see
    /// [`Container::published_port`].
    pub fn publish(mut self, port: u16) -> Self {
        self.publish.push(port);
        self
    }

    /// Extra `docker create` arguments, e.g. `--health-cmd`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Arguments after the image (passed to its entrypoint).
    pub fn cmd<I, S>(mut self, cmd: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cmd.extend(cmd.into_iter().map(Into::into));
        self
    }

    /// Creates the container, attaches its networks, but does not start it.
    pub fn create(self) -> Container {
        let mut a: Vec<String> = vec![
            "create".into(),
            "--label".into(),
            TEST_LABEL.into(),
            "--name".into(),
            self.name.clone(),
        ];
        if self.no_network {
            a.extend(["--network".into(), "none".into()]);
        } else if let Some(first) = self.networks.first() {
            a.extend(["--network".into(), first.clone()]);
        }
        for (k, v) in &self.labels {
            a.extend(["--label".into(), format!("{k}={v}")]);
        }
        if self.backend_name_env && !self.env.iter().any(|(k, _)| k == "BACKEND_NAME") {
            a.extend(["-e".into(), format!("BACKEND_NAME={}", self.name)]);
        }
        for (k, v) in &self.env {
            a.extend(["-e".into(), format!("{k}={v}")]);
        }
        for p in &self.publish {
            a.extend(["-p".into(), format!("127.0.0.1:0:{p}")]);
        }
        a.extend(self.args.iter().cloned());
        a.push(self.image.clone());
        a.extend(self.cmd.iter().cloned());
        let id = docker(&a);
        let c = Container {
            id,
            name: self.name.clone(),
        };
        if !self.no_network {
            for net in self.networks.iter().skip(1) {
                docker(["network", "connect", net, &c.id]);
            }
        }
        c
    }

    /// Creates and starts the container (detached).
    pub fn start(self) -> Container {
        let c = self.create();
        c.start();
        c
    }
}

/// A container made by [`ContainerSpec`]; `docker rm -f -v` on drop.
#[derive(Debug)]
pub struct Container {
    id: String,
    name: String,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `docker inspect -f <format>`.
    pub fn inspect(&self, format: &str) -> String {
        docker(["inspect", "-f", format, &self.id])
    }

    /// The container's IPv4 address on `network` (panics if not attached).
    pub fn ip_on(&self, network: impl AsRef<str>) -> String {
        let json = self.inspect("{{json .NetworkSettings.Networks}}");
        let v: serde_json::Value = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("bad inspect output {json:?}: {e}"));
        let ip = v[network.as_ref()]["IPAddress"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            !ip.is_empty(),
            "container {} has no address on network {} (networks: {json})",
            self.name,
            network.as_ref()
        );
        ip
    }

    pub fn is_running(&self) -> bool {
        self.inspect("{{.State.Running}}") == "true"
    }

    pub fn start(&self) {
        docker(["start", &self.id]);
    }

    pub fn stop(&self) {
        docker(["stop", "-t", "10", &self.id]);
    }

    pub fn kill(&self) {
        docker(["kill", &self.id]);
    }

    pub fn pause(&self) {
        docker(["pause", &self.id]);
    }

    pub fn unpause(&self) {
        docker(["unpause", &self.id]);
    }

    pub fn connect(&self, network: impl AsRef<str>) {
        docker(["network", "connect", network.as_ref(), &self.id]);
    }

    pub fn disconnect(&self, network: impl AsRef<str>) {
        docker(["network", "disconnect", network.as_ref(), &self.id]);
    }

    /// Removes the container now (`docker rm -f -v`).
    pub fn rm(&self) {
        docker(["rm", "-f", "-v", &self.id]);
    }

    /// The host port on 127.0.0.1 that container port `port` is published on.
    pub fn published_port(&self, port: u16) -> u16 {
        let out = docker(["port", &self.id, &format!("{port}/tcp")]);
        out.lines()
            .filter_map(|l| l.trim().rsplit_once(':'))
            .find_map(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("container {} does not publish {port}: {out:?}", self.name))
    }

    /// The container's stdout and stderr so far.
    pub fn logs(&self) -> String {
        let out = Command::new("docker")
            .args(["logs", &self.id])
            .output()
            .expect("run docker logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Err(e) = docker_try(["rm", "-f", "-v", &self.id]) {
            if !e.contains("No such container") {
                eprintln!("[testkit] could not remove container {}: {e}", self.name);
            }
        }
    }
}
