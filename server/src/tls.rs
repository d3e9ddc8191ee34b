//! The server's side of mutual TLS: only certificates issued by the district CA get in, and an
//! agent's identity is read from its certificate, never from anything it says.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::certificate_authority::{CaError, CertificateAuthority};

/// Errors building the TLS configuration or reading a peer's identity.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA could not issue the server certificate.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// rustls or quinn refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The peer presented no certificate.
    #[error("peer presented no client certificate")]
    NoCertificate,
    /// The peer's certificate names no commune.
    #[error("client certificate has no usable common name: {0}")]
    BadIdentity(String),
}

/// Builds the QUIC server configuration: TLS 1.3, client certificates required and verified
/// against the district CA.
pub fn server_config(
    ca: &CertificateAuthority,
    server_name: &str,
    transport: quinn::TransportConfig,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let issued = ca.issue_server_cert(server_name)?;
    let ca_der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes())
        .map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
    let cert = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
        .map_err(|e| TlsError::Config(format!("server certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
        .map_err(|e| TlsError::Config(format!("server key: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca_der)
        .map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    tls.alpn_protocols = vec![radio_proto::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The commune id an agent's verified certificate names (its common name).
pub fn peer_commune(conn: &quinn::Connection) -> Result<String, TlsError> {
    let identity = conn.peer_identity().ok_or(TlsError::NoCertificate)?;
    let certs = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| TlsError::NoCertificate)?;
    let first = certs.first().ok_or(TlsError::NoCertificate)?;
    commune_from_der(first.as_ref())
}

/// Reads the common name from a DER certificate.
pub fn commune_from_der(der: &[u8]) -> Result<String, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::BadIdentity(e.to_string()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .ok_or_else(|| TlsError::BadIdentity("no common name".into()))?;
    cn.as_str()
        .map(str::to_string)
        .map_err(|e| TlsError::BadIdentity(e.to_string()))
}
