//! The command line and environment: every setting is a flag and an
//! environment variable, read as text and checked here so that a bad value
//! is reported with the variable's name, the value and what is expected,
//! before any port is bound.

use clap::{Args, Parser, Subcommand};
use gangway_docker::DockerSettings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// gangway: a reverse proxy that routes to Docker containers by their labels.
#[derive(Debug, Parser)]
#[command(
    name = "gangway",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default when no command is given).
    Run(Box<RunArgs>),
    /// Exit 0 if the gangway on CONTROL_PLANE_ADDR is ready, 1 if not (for
    /// container health checks, where no HTTP client is installed).
    Healthcheck {
        /// Address of the admin listener to ask.
        #[arg(long, env = "CONTROL_PLANE_ADDR", default_value = "127.0.0.1:9000")]
        control_plane_addr: String,
    },
    /// Check a configuration file and print its errors and warnings with
    /// line and column; exit 1 if it has errors.
    Check {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Ask a running gangway which route a request would take, and why
    /// every other route did not match.
    Explain(ExplainArgs),
}

/// The request `gangway explain` asks about.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The request's host.
    #[arg(long)]
    pub host: String,
    /// The request's path, with the query if any (`/search?q=x`).
    #[arg(long, default_value = "/")]
    pub path: String,
    /// The request's method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// A request header as `Name: value`; repeat for several.
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// The listener port the request arrives on (default: HTTP_PORT).
    #[arg(long)]
    pub port: Option<u16>,
    /// Ask about a WebSocket upgrade request.
    #[arg(long)]
    pub websocket: bool,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
    /// Address of the running gangway's admin listener.
    #[arg(long, env = "CONTROL_PLANE_ADDR", default_value = "127.0.0.1:9000")]
    pub control_plane_addr: String,
}

/// Settings of `gangway run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Only containers attached to this Docker network are routed.
    #[arg(long, env = "PROXY_DOCKER_NETWORK", default_value = "proxy")]
    pub proxy_docker_network: String,

    /// Prefix of the container labels gangway reads (`<prefix>host`, `<prefix>port`).
    #[arg(long, env = "PROXY_LABEL_PREFIX", default_value = "reverse-proxy.")]
    pub proxy_label_prefix: String,

    /// Port of the HTTP listener (IPv4 and IPv6).
    #[arg(long, env = "HTTP_PORT", default_value = "8080")]
    pub http_port: String,

    /// Whether to serve HTTPS too (true or false).
    #[arg(long, env = "HTTPS_ENABLED", default_value = "false")]
    pub https_enabled: String,

    /// Port of the HTTPS listener (IPv4 and IPv6).
    #[arg(long, env = "HTTPS_PORT", default_value = "443")]
    pub https_port: String,

    /// PEM certificate chain for HTTPS (required when HTTPS is enabled).
    #[arg(long, env = "TLS_CERT_PATH")]
    pub tls_cert_path: Option<String>,

    /// PEM private key for HTTPS (required when HTTPS is enabled).
    #[arg(long, env = "TLS_KEY_PATH")]
    pub tls_key_path: Option<String>,

    /// How to reach the Docker Engine API: unix:///path or tcp://host:port.
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub docker_host: String,

    /// Address of the admin listener (/healthz, /readyz).
    #[arg(long, env = "CONTROL_PLANE_ADDR", default_value = "127.0.0.1:9000")]
    pub control_plane_addr: String,

    /// Log format: json (one object per line) or text (for people).
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: String,

    /// Log levels, RUST_LOG style (e.g. `info` or `info,routing=debug`).
    #[arg(long = "log-level", env = "RUST_LOG", default_value = "info")]
    pub log_level: String,

    /// A TOML file with routes, pools and error pages (see docs/config.md);
    /// watched, and applied on change without restart.
    #[arg(long = "config", env = "GANGWAY_CONFIG")]
    pub gangway_config: Option<String>,

    /// Addresses or CIDR blocks (comma-separated) of proxies in front of
    /// gangway whose X-Forwarded-For, X-Real-IP, X-Forwarded-Host and
    /// X-Forwarded-Proto are kept; from anyone else they are overwritten.
    #[arg(
        long = "trusted-proxies",
        env = "GANGWAY_TRUSTED_PROXIES",
        default_value = ""
    )]
    pub gangway_trusted_proxies: String,

    /// Worker threads of the data plane; 0 means one per CPU core.
    #[arg(long, env = "GANGWAY_WORKERS", default_value = "0")]
    pub gangway_workers: String,

    /// Whether the HTTP listener also takes HTTP/2 with prior knowledge
    /// (h2c), as gRPC clients without TLS send it.
    #[arg(long = "h2c", env = "GANGWAY_H2C", default_value = "false")]
    pub gangway_h2c: String,

    /// How long a client may take to send a request's headers; idle
    /// keep-alive connections are closed after it too.
    #[arg(
        long = "header-timeout",
        env = "GANGWAY_HEADER_TIMEOUT",
        default_value = "30s"
    )]
    pub gangway_header_timeout: String,

    /// The longest pause allowed within a request body (then 408).
    #[arg(
        long = "body-timeout",
        env = "GANGWAY_BODY_TIMEOUT",
        default_value = "60s"
    )]
    pub gangway_body_timeout: String,

    /// Client connections open at once, over all listeners; more are
    /// closed as soon as they are accepted.
    #[arg(
        long = "max-connections",
        env = "GANGWAY_MAX_CONNECTIONS",
        default_value = "20000"
    )]
    pub gangway_max_connections: String,

    /// Whether to send the standard Forwarded header (RFC 7239) to
    /// backends, besides X-Forwarded-For and the like.
    #[arg(
        long = "forwarded-header",
        env = "GANGWAY_FORWARDED_HEADER",
        default_value = "false"
    )]
    pub gangway_forwarded_header: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// The checked settings of `gangway run`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub docker: DockerSettings,
    pub http_port: u16,
    pub https: Option<HttpsSettings>,
    pub control_plane_addr: SocketAddr,
    pub log_format: LogFormat,
    pub log_level: String,
    pub workers: usize,
    pub config: Option<ConfigFile>,
    pub proxy: gangway_proxy::ProxySettings,
    pub h2c: bool,
}

/// The configuration file, as read and checked at start.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub content: Vec<u8>,
    pub parsed: gangway_model::ParsedFile,
}

/// The HTTPS listener's settings, with its TLS configuration already loaded.
#[derive(Debug, Clone)]
pub struct HttpsSettings {
    pub port: u16,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub tls: Arc<gangway_proxy::tls::ServerConfig>,
}

/// A setting with a value that cannot be used.
#[derive(Debug)]
pub struct SettingError {
    variable: &'static str,
    value: Option<String>,
    expected: String,
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The flags whose names differ from their variables'.
        let flag = match self.variable {
            "RUST_LOG" => "log-level".to_owned(),
            "GANGWAY_CONFIG" => "config".to_owned(),
            "GANGWAY_TRUSTED_PROXIES" => "trusted-proxies".to_owned(),
            "GANGWAY_H2C" => "h2c".to_owned(),
            "GANGWAY_HEADER_TIMEOUT" => "header-timeout".to_owned(),
            "GANGWAY_BODY_TIMEOUT" => "body-timeout".to_owned(),
            "GANGWAY_MAX_CONNECTIONS" => "max-connections".to_owned(),
            "GANGWAY_FORWARDED_HEADER" => "forwarded-header".to_owned(),
            other => other.to_ascii_lowercase().replace('_', "-"),
        };
        match &self.value {
            Some(value) => write!(
                f,
                "invalid {} (--{flag}) {value:?}: {}",
                self.variable, self.expected
            ),
            None => write!(
                f,
                "{} (--{flag}) is not set: {}",
                self.variable, self.expected
            ),
        }
    }
}

impl std::error::Error for SettingError {}

fn invalid(variable: &'static str, value: &str, expected: impl Into<String>) -> SettingError {
    SettingError {
        variable,
        value: Some(value.to_owned()),
        expected: expected.into(),
    }
}

impl RunArgs {
    /// Checks every value; the first bad one is reported.
    pub fn validate(&self) -> Result<Settings, SettingError> {
        let network = self.proxy_docker_network.trim();
        if network.is_empty() {
            return Err(invalid(
                "PROXY_DOCKER_NETWORK",
                network,
                "expected the name of a Docker network, such as proxy",
            ));
        }
        if self.proxy_label_prefix.is_empty()
            || self.proxy_label_prefix.contains(char::is_whitespace)
        {
            return Err(invalid(
                "PROXY_LABEL_PREFIX",
                &self.proxy_label_prefix,
                "expected a label prefix without spaces, such as reverse-proxy.",
            ));
        }
        let http_port = port("HTTP_PORT", &self.http_port)?;
        let https_enabled = boolean("HTTPS_ENABLED", &self.https_enabled)?;
        let https = if https_enabled {
            let port = port("HTTPS_PORT", &self.https_port)?;
            if port == http_port {
                return Err(invalid(
                    "HTTPS_PORT",
                    &self.https_port,
                    "expected a port other than HTTP_PORT's",
                ));
            }
            let cert_path = required_path("TLS_CERT_PATH", self.tls_cert_path.as_deref())?;
            let key_path = required_path("TLS_KEY_PATH", self.tls_key_path.as_deref())?;
            let tls = gangway_proxy::tls::load_server_config(&cert_path, &key_path)
                .map_err(|e| tls_error(&cert_path, &key_path, e))?;
            Some(HttpsSettings {
                port,
                cert_path,
                key_path,
                tls,
            })
        } else {
            None
        };
        let docker_host = self.docker_host.trim();
        if !["unix://", "tcp://", "http://"]
            .iter()
            .any(|s| docker_host.starts_with(s))
        {
            return Err(invalid(
                "DOCKER_HOST",
                docker_host,
                "expected unix:///path/to/docker.sock or tcp://host:port",
            ));
        }
        let control_plane_addr = self.control_plane_addr.trim().parse().map_err(|_| {
            invalid(
                "CONTROL_PLANE_ADDR",
                &self.control_plane_addr,
                "expected an address and port such as 127.0.0.1:9000",
            )
        })?;
        let log_format = match self.log_format.trim().to_ascii_lowercase().as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            _ => {
                return Err(invalid(
                    "LOG_FORMAT",
                    &self.log_format,
                    "expected json or text",
                ))
            }
        };
        if tracing_subscriber::EnvFilter::builder()
            .parse(&self.log_level)
            .is_err()
        {
            return Err(invalid(
                "RUST_LOG",
                &self.log_level,
                "expected levels such as info or info,routing=debug",
            ));
        }
        let workers = match self.gangway_workers.trim().parse::<usize>() {
            Ok(0) => std::thread::available_parallelism().map_or(1, usize::from),
            Ok(n) if n <= 1024 => n,
            _ => {
                return Err(invalid(
                    "GANGWAY_WORKERS",
                    &self.gangway_workers,
                    "expected a number of threads from 0 (one per core) to 1024",
                ))
            }
        };
        let config = match self.gangway_config.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => {
                let path = PathBuf::from(raw);
                let (content, parsed) = crate::config_file::load(&path).map_err(|e| {
                    invalid(
                        "GANGWAY_CONFIG",
                        raw,
                        format!("{e}; expected a readable TOML file"),
                    )
                })?;
                if !parsed.is_valid() {
                    let lines: Vec<String> = parsed
                        .problems
                        .iter()
                        .map(|p| crate::config_file::render(&path, p))
                        .collect();
                    return Err(invalid(
                        "GANGWAY_CONFIG",
                        raw,
                        format!(
                            "expected a valid configuration file (check it with `gangway check {raw}`):\n{}",
                            lines.join("\n")
                        ),
                    ));
                }
                Some(ConfigFile {
                    path,
                    content,
                    parsed,
                })
            }
        };
        let trusted_proxies = gangway_proxy::headers::TrustedProxies::parse(
            &self.gangway_trusted_proxies,
        )
        .map_err(|e| {
            invalid(
                "GANGWAY_TRUSTED_PROXIES",
                &self.gangway_trusted_proxies,
                format!("{e}; expected addresses or CIDR blocks such as 10.0.0.0/8,192.168.1.7"),
            )
        })?;
        let duration =
            |variable: &'static str, value: &str| match gangway_model::parse_duration(value) {
                Ok(d) if !d.is_zero() => Ok(d),
                _ => Err(invalid(
                    variable,
                    value,
                    "expected a duration above zero such as 500ms, 30s or 2m",
                )),
            };
        let proxy = gangway_proxy::ProxySettings {
            trusted: trusted_proxies,
            header_timeout: duration("GANGWAY_HEADER_TIMEOUT", &self.gangway_header_timeout)?,
            body_timeout: duration("GANGWAY_BODY_TIMEOUT", &self.gangway_body_timeout)?,
            max_connections: match self.gangway_max_connections.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(invalid(
                        "GANGWAY_MAX_CONNECTIONS",
                        &self.gangway_max_connections,
                        "expected a number of connections above zero, such as 20000",
                    ))
                }
            },
            forwarded_header: boolean("GANGWAY_FORWARDED_HEADER", &self.gangway_forwarded_header)?,
        };
        Ok(Settings {
            proxy,
            h2c: boolean("GANGWAY_H2C", &self.gangway_h2c)?,
            config,
            docker: DockerSettings {
                docker_host: docker_host.to_owned(),
                network: network.to_owned(),
                label_prefix: self.proxy_label_prefix.clone(),
                ports: gangway_docker::ListenerPorts {
                    http: http_port,
                    https: https.as_ref().map_or(443, |h| h.port),
                },
            },
            http_port,
            https,
            control_plane_addr,
            log_format,
            log_level: self.log_level.clone(),
            workers,
        })
    }
}

fn port(variable: &'static str, value: &str) -> Result<u16, SettingError> {
    match value.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(invalid(
            variable,
            value,
            "expected a TCP port number from 1 to 65535",
        )),
    }
}

fn boolean(variable: &'static str, value: &str) -> Result<bool, SettingError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(invalid(variable, value, "expected true or false")),
    }
}

fn required_path(variable: &'static str, value: Option<&str>) -> Result<PathBuf, SettingError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(path) => Ok(PathBuf::from(path)),
        None => Err(SettingError {
            variable,
            value: None,
            expected: "HTTPS_ENABLED is true, so a path to a PEM file is required".into(),
        }),
    }
}

fn tls_error(
    cert: &std::path::Path,
    key: &std::path::Path,
    error: gangway_proxy::tls::TlsError,
) -> SettingError {
    use gangway_proxy::tls::TlsError;
    let cert = cert.display().to_string();
    let key = key.display().to_string();
    match &error {
        TlsError::Read { path, .. } if path.display().to_string() == cert => {
            invalid("TLS_CERT_PATH", &cert, error.to_string())
        }
        TlsError::NoCertificate { .. } => invalid("TLS_CERT_PATH", &cert, error.to_string()),
        TlsError::Read { .. } | TlsError::NoKey { .. } | TlsError::BadKey { .. } => {
            invalid("TLS_KEY_PATH", &key, error.to_string())
        }
        TlsError::Mismatch { .. } | TlsError::Config(_) => {
            invalid("TLS_KEY_PATH", &key, error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["gangway"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().run
    }

    #[test]
    fn defaults_are_the_seeds() {
        // The environment of the test runner must not leak into defaults.
        let s = args(&[
            "--proxy-docker-network=proxy",
            "--proxy-label-prefix=reverse-proxy.",
            "--http-port=8080",
            "--https-enabled=false",
            "--https-port=443",
            "--docker-host=unix:///var/run/docker.sock",
            "--control-plane-addr=127.0.0.1:9000",
            "--log-format=json",
            "--log-level=info",
            "--gangway-workers=0",
        ])
        .validate()
        .unwrap();
        assert_eq!(s.http_port, 8080);
        assert!(s.https.is_none());
        assert_eq!(s.docker.network, "proxy");
        assert_eq!(s.docker.label_prefix, "reverse-proxy.");
        assert_eq!(s.control_plane_addr, "127.0.0.1:9000".parse().unwrap());
    }

    #[test]
    fn bad_values_name_variable_value_and_expectation() {
        let cases: &[(&[&str], &str)] = &[
            (&["--http-port=abc"], "invalid HTTP_PORT (--http-port) \"abc\": expected a TCP port number from 1 to 65535"),
            (&["--http-port=70000"], "HTTP_PORT"),
            (&["--https-enabled=maybe"], "invalid HTTPS_ENABLED (--https-enabled) \"maybe\": expected true or false"),
            (&["--trusted-proxies=10.0.0.0/40"], "invalid GANGWAY_TRUSTED_PROXIES (--trusted-proxies) \"10.0.0.0/40\": \"10.0.0.0/40\": the prefix length must be 0 to 32; expected addresses or CIDR blocks"),
            (&["--https-enabled=true", "--https-port=8443"], "TLS_CERT_PATH (--tls-cert-path) is not set"),
            (&["--https-enabled=true", "--https-port=8443", "--tls-cert-path=/nonexistent/cert.pem", "--tls-key-path=/nonexistent/key.pem"], "invalid TLS_CERT_PATH"),
            (&["--docker-host=/var/run/docker.sock"], "DOCKER_HOST"),
            (&["--control-plane-addr=localhost"], "CONTROL_PLANE_ADDR"),
            (&["--log-format=xml"], "LOG_FORMAT"),
        ];
        for (argv, expected) in cases {
            let err = args(argv).validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{argv:?}: {err}");
        }
    }
}
