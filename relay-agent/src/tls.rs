//! The agent's side of mutual TLS: it trusts only the district CA from its bundle and proves its
//! identity with the certificate the server issued to it.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::bundle::Bundle;

/// Errors building the TLS client configuration.
#[derive(Debug, thiserror::Error)]
#[error("TLS set-up from the enrolment bundle failed: {0}")]
pub struct TlsError(pub String);

/// Builds the QUIC client configuration for this agent.
pub fn client_config(bundle: &Bundle) -> Result<quinn::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = CertificateDer::from_pem_slice(bundle.ca_cert.as_bytes())
        .map_err(|e| TlsError(format!("ca_cert: {e}")))?;
    let cert = CertificateDer::from_pem_slice(bundle.cert.as_bytes())
        .map_err(|e| TlsError(format!("cert: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(bundle.key.as_bytes())
        .map_err(|e| TlsError(format!("key: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca)
        .map_err(|e| TlsError(format!("ca_cert: {e}")))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key)
        .map_err(|e| TlsError(format!("cert/key: {e}")))?;
    tls.alpn_protocols = vec![radio_proto::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// Silence after which a link counts as dead: a station must learn within about 3 s that it
/// lost the district (issue 5), so that it reconnects instead of waiting on a dead session.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Keep-alive period: six inside the idle timeout, so that a lossy wireless link (10 % loss)
/// loses all of them — a false "dead link" — about once in a million periods, not once an hour
/// as three would.
pub const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_millis(500);

/// Transport settings shared by the agent and the server: keep-alives well inside the idle
/// timeout so a quiet link stays open and a dead one is noticed within seconds, and BBR
/// congestion control.
///
/// BBR, not quinn's default CUBIC: on a link that loses datagrams in bursts (10 % in spells of
/// about five, 30 ms jitter) the link itself dropped under CUBIC — 4 times in five one-minute
/// live sessions, 7 in four 40 s ones — although no burst came near the 3 s idle timeout: the
/// server went quiet for longer than that. The likely path (read from quinn, not traced):
/// loss read as congestion, persistent congestion, the two-datagram minimum window, probe
/// timeouts doubling while their probes were lost in the bursts. Reconnects then failed in
/// the same bursts. With BBR, which does not read loss as congestion, the link never dropped
/// in the same runs, and more live frames played at every loss rate (BENCHMARKS.md, "Loss
/// resilience"). The audio is a fixed 32 kb/s, far under any link's capacity, so there is no
/// queue for a loss-driven controller to protect. quinn calls its BBR experimental; the loss
/// benchmark and the impaired-link tests are what vouch for it here.
pub fn transport_config() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    if let Ok(idle) = quinn::IdleTimeout::try_from(IDLE_TIMEOUT) {
        transport.max_idle_timeout(Some(idle));
    }
    transport.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    transport
}
