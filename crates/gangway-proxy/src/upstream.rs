//! Upstream HTTP clients, one per distinct set of connection settings
//! (timeouts, protocol, TLS), shared by every pool with those settings.
//! Looking one up is a lock-free read; only a new combination, met once
//! per configuration, takes a lock.

use crate::body::RequestBody;
use arc_swap::ArcSwap;
use gangway_model::{Protocol, Timeouts, Upstream};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A pooled keep-alive client: HTTP/1.1 or HTTP/2, plain or over TLS.
pub(crate) type UpstreamClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    connect: Duration,
    idle: Duration,
    max_idle: usize,
    upstream: Upstream,
}

/// A client, or why one cannot be made (a CA file that cannot be read).
/// A client is shared, not cloned, per request: it is a few hundred bytes
/// that would sit in every request's state.
type Made = Result<Arc<UpstreamClient>, Arc<str>>;

/// The clients by settings.
#[derive(Default)]
pub(crate) struct Clients {
    by_key: ArcSwap<HashMap<Key, Made>>,
    adding: Mutex<()>,
}

impl Clients {
    /// The client for a pool's timeouts and upstream settings.
    pub(crate) fn get(&self, t: &Timeouts, upstream: &Upstream) -> Made {
        let key = Key {
            connect: t.connect,
            idle: t.idle,
            max_idle: t.max_idle_per_target,
            upstream: upstream.clone(),
        };
        if let Some(client) = self.by_key.load().get(&key) {
            return client.clone();
        }
        let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.by_key.load_full();
        if let Some(client) = current.get(&key) {
            return client.clone();
        }
        let client = build(t, upstream).map(Arc::new).map_err(|error| {
            // Logged once: the result, error included, is kept until the
            // configuration changes.
            tracing::error!(%error, "cannot set up TLS to a pool's targets; its requests get 502");
            Arc::<str>::from(error)
        });
        let mut next = (*current).clone();
        next.insert(key, client.clone());
        self.by_key.store(Arc::new(next));
        client
    }
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("settings", &self.by_key.load().len())
            .finish()
    }
}

fn build(t: &Timeouts, upstream: &Upstream) -> Result<UpstreamClient, String> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(t.connect));
    // The https connector checks the scheme itself.
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(upstream)?)
        .https_or_http();
    let builder = match &upstream.tls_server_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone())
                .map_err(|e| format!("tls_server_name {name:?}: {e}"))?;
            builder.with_server_name_resolver(FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    let connector = match upstream.protocol {
        Protocol::Http => builder.enable_http1().wrap_connector(http),
        Protocol::Https => builder.enable_http1().enable_http2().wrap_connector(http),
        Protocol::H2c | Protocol::H2 => builder.enable_http2().wrap_connector(http),
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(t.idle)
        .pool_max_idle_per_host(t.max_idle_per_target)
        .http2_only(upstream.protocol.http2_only())
        // The Host header is set from the client's request, not from the target.
        .set_host(false)
        .build(connector))
}

/// The TLS settings towards a pool's targets: the public roots plus the
/// pool's own CA file, or no verification at all when turned off.
fn tls_config(upstream: &Upstream) -> Result<ClientConfig, String> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if !upstream.protocol.tls() {
        // Never used for a handshake; the connector wants one anyway.
        return Ok(builder
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth());
    }
    if !upstream.tls_verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &upstream.tls_ca {
        let pem = std::fs::read(path).map_err(|e| format!("tls_ca {path}: {e}"))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("tls_ca {path}: {e}"))?;
            roots.add(cert).map_err(|e| format!("tls_ca {path}: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("tls_ca {path}: no PEM certificate in the file"));
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `tls_verify = false`: any certificate is accepted (the handshake's
/// signatures are still checked, so the connection is encrypted to
/// whoever holds the key, just not authenticated).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
