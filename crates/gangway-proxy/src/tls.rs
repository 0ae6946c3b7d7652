//! Loading the certificate and key that the HTTPS listener presents.

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
pub use rustls::ServerConfig;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Why the TLS certificate or key could not be used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path} ({source}); expected a readable PEM file")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{path} holds no PEM certificate (expected a file with -----BEGIN CERTIFICATE-----)")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no PEM private key.
    #[error(
        "{path} holds no PEM private key (expected -----BEGIN PRIVATE KEY----- or an RSA/EC key)"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is of a kind rustls cannot sign with.
    #[error("{path}: unsupported private key: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error("the private key in {key} does not match the certificate in {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration refused: {0}")]
    Config(String),
}

/// Builds the HTTPS server configuration: TLS 1.2 and 1.3 only, ALPN `h2`
/// then `http/1.1`, and one certificate whose key is checked against it.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certs(cert)?;
    let private_key = read_key(key)?;
    let provider = Arc::new(aws_lc_rs::default_provider());
    let signing_key = provider
        .key_provider
        .load_private_key(private_key)
        .map_err(|e| TlsError::BadKey {
            path: key.to_owned(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified.keys_match().map_err(|_| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(OneCertificate(Arc::new(certified))));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn open(path: &Path) -> Result<BufReader<std::fs::File>, TlsError> {
    std::fs::File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut open(path)?)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    match rustls_pemfile::private_key(&mut open(path)?) {
        Ok(Some(key)) => Ok(key),
        Ok(None) | Err(_) => Err(TlsError::NoKey {
            path: path.to_owned(),
        }),
    }
}

/// Presents the same certificate to every client, whatever its SNI.
#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for OneCertificate {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}
