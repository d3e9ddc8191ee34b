//! The server's side of mutual TLS: only certificates issued by the district CA get in, and an
//! agent's identity is read from its certificate, never from anything it says.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName};

use crate::identity::certificate_authority::{CaError, CertificateAuthority};
use crate::identity::revocation_list::Revocations;

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

/// Builds the QUIC server configuration: TLS 1.3, client certificates required, verified
/// against the district CA and refused if `revocations` lists them.
pub fn server_config(
    ca: &CertificateAuthority,
    server_name: &str,
    transport: quinn::TransportConfig,
    revocations: Arc<Revocations>,
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
    let webpki = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::Config(e.to_string()))?;
    let verifier = Arc::new(RevocationCheckingVerifier {
        inner: webpki,
        revocations,
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    tls.alpn_protocols = vec![radio_proto::ALPN.to_vec()];
    // No TLS session resumption: a resumed session skips the client-certificate verifier, so a
    // revoked or expired certificate would keep getting in for the ticket's lifetime. A full
    // handshake per reconnect costs the agents a few milliseconds.
    tls.send_tls13_tickets = 0;
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The CA's verification, then the revocation list: a revoked station's handshake fails with
/// TLS's own `certificate_revoked` alert, so it never reaches the session code, and the agent
/// is told why.
#[derive(Debug)]
struct RevocationCheckingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revocations: Arc<Revocations>,
}

impl ClientCertVerifier for RevocationCheckingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let serial = read_certificate(end_entity.as_ref())
            .ok()
            .and_then(|c| c.serial)
            .ok_or(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ))?;
        if self.revocations.is_revoked(serial) {
            tracing::warn!(serial = %format!("{serial:016x}"), "refused a revoked certificate");
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What the server reads from an agent's verified certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The commune id (the common name).
    pub commune: String,
    /// The serial number, if it fits 64 bits (every one this CA issues does).
    pub serial: Option<u64>,
    /// Its last valid moment, Unix seconds.
    pub not_after: i64,
}

/// The verified certificate of an agent's connection.
pub fn peer_certificate(conn: &quinn::Connection) -> Result<PeerCertificate, TlsError> {
    let identity = conn.peer_identity().ok_or(TlsError::NoCertificate)?;
    let certs = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| TlsError::NoCertificate)?;
    let first = certs.first().ok_or(TlsError::NoCertificate)?;
    read_certificate(first.as_ref())
}

/// Reads the common name, serial and expiry from a DER certificate.
pub fn read_certificate(der: &[u8]) -> Result<PeerCertificate, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::BadIdentity(e.to_string()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .ok_or_else(|| TlsError::BadIdentity("no common name".into()))?;
    let commune = cn
        .as_str()
        .map(str::to_string)
        .map_err(|e| TlsError::BadIdentity(e.to_string()))?;
    Ok(PeerCertificate {
        commune,
        serial: serial_u64(cert.raw_serial()),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// A DER integer's bytes as a u64, if it fits (a positive serial may carry a leading zero).
fn serial_u64(raw: &[u8]) -> Option<u64> {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    let digits = &raw[start..];
    if digits.len() > 8 {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_read_as_issued() {
        assert_eq!(
            serial_u64(&[0x00, 0x80, 0, 0, 0, 0, 0, 0, 1]),
            Some(0x8000_0000_0000_0001)
        );
        assert_eq!(serial_u64(&[0x12, 0x34]), Some(0x1234));
        assert_eq!(serial_u64(&[0]), Some(0));
        assert_eq!(serial_u64(&[1; 9]), None);
    }

    #[test]
    fn an_issued_certificate_names_its_commune_serial_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path(), "Huyện Bình Sơn").unwrap();
        let bundle = ca
            .enroll("binh-trung", "Bình Trung", "127.0.0.1:4433", "localhost")
            .unwrap();
        let der = CertificateDer::from_pem_slice(bundle.cert.as_bytes()).unwrap();
        let cert = read_certificate(der.as_ref()).unwrap();
        let issued = crate::identity::enrolment_register::EnrolmentRegister::new(ca.dir())
            .certificates("binh-trung")
            .unwrap();
        assert_eq!(cert.commune, "binh-trung");
        assert_eq!(cert.serial, Some(issued[0].serial));
        let expires = issued[0].expires_at.unwrap().as_second();
        assert!(
            (cert.not_after - expires).abs() < 60,
            "{} vs {expires}",
            cert.not_after
        );
    }
}
