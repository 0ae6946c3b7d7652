//! How gangway speaks to a pool's targets: HTTP/1.1 or HTTP/2, in clear
//! text or over TLS, and how the targets' certificates are checked.

use serde::Serialize;

/// The protocol towards a pool's targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 in clear text, over pooled keep-alive connections.
    #[default]
    Http,
    /// HTTP/2 in clear text with prior knowledge (gRPC services, for one).
    H2c,
    /// TLS; HTTP/2 or HTTP/1.1 as the target chooses by ALPN.
    Https,
    /// TLS and HTTP/2 only.
    H2,
}

impl Protocol {
    /// Parses the name used in the file and in labels.
    pub fn parse(text: &str) -> Result<Protocol, String> {
        match text.trim() {
            "http" => Ok(Protocol::Http),
            "h2c" => Ok(Protocol::H2c),
            "https" => Ok(Protocol::Https),
            "h2" => Ok(Protocol::H2),
            other => Err(format!(
                "protocol {other:?} is not known; use \"http\", \"h2c\", \"https\" or \"h2\""
            )),
        }
    }

    /// Whether connections are made over TLS.
    pub fn tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::H2)
    }

    /// Whether only HTTP/2 is spoken.
    pub fn http2_only(self) -> bool {
        matches!(self, Protocol::H2c | Protocol::H2)
    }
}

/// A pool's connection settings beyond its timeouts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Upstream {
    /// The protocol.
    pub protocol: Protocol,
    /// Whether the targets' certificates are verified (TLS only). On by
    /// default; turning it off accepts any certificate.
    pub tls_verify: bool,
    /// A PEM file of extra certificate authorities (or the target's own
    /// self-signed certificate) to trust, besides the public roots.
    pub tls_ca: Option<String>,
    /// The name sent as SNI and checked against the certificate; by
    /// default the target's host (its IP address).
    pub tls_server_name: Option<String>,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            protocol: Protocol::Http,
            tls_verify: true,
            tls_ca: None,
            tls_server_name: None,
        }
    }
}
