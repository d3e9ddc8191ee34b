//! Who gets in: the real server on loopback, agents with good, foreign, missing and mismatched
//! credentials. Identity comes from the certificate, never from a message field.

use std::sync::Arc;
use std::time::{Duration, Instant};

use radio_config::{District, ServerConfig};
use radio_proto::{
    Capabilities, ErrorCode, Event, Hello, Session, SessionConfig, PROTOCOL_VERSION,
};
use radio_server::certificate_authority::CertificateAuthority;
use radio_server::server::{self, Server};
use relay_agent::Bundle;
use tokio::sync::oneshot;

struct Running {
    server: Arc<Server>,
    addr: std::net::SocketAddr,
    ca: CertificateAuthority,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        ..ServerConfig::default()
    };
    let district = District::binh_son();
    let ca = CertificateAuthority::load_or_create(&config.data_dir, &district.name).expect("ca");
    let endpoint = server::bind(&config, &ca).expect("bind");
    let addr = endpoint.local_addr().expect("addr");
    let server = Server::new(config, district);
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server::run(endpoint, server.clone(), async move {
        let _ = rx.await;
    }));
    Running {
        server,
        addr,
        ca,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

impl Running {
    fn bundle(&self, commune: &str) -> Bundle {
        self.ca
            .enroll(commune, "Trạm thử", &self.addr.to_string(), "localhost")
            .expect("enroll")
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Connects with `client` and runs the agent side of the session claiming `agent_id`, until it
/// is welcomed or closed. Err is a failed QUIC/TLS connection.
async fn session(
    addr: std::net::SocketAddr,
    client: quinn::ClientConfig,
    agent_id: &str,
) -> Result<Event, String> {
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    let conn = endpoint
        .connect_with(client, addr, "localhost")
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let mut s = Session::agent(
        Hello {
            version: PROTOCOL_VERSION,
            agent_id: agent_id.into(),
            software: "identity-test".into(),
            capabilities: Capabilities::OPUS,
        },
        SessionConfig::default(),
        Instant::now(),
    );
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(bytes) = s.poll_transmit() {
            send.write_all(&bytes).await.map_err(|e| e.to_string())?;
        }
        if let Some(event) = s.poll_event() {
            return Ok(event);
        }
        match tokio::time::timeout(Duration::from_secs(10), recv.read(&mut buf)).await {
            Ok(Ok(Some(n))) => s.handle_input(Instant::now(), &buf[..n]),
            Ok(Ok(None)) => return Err("stream finished".into()),
            Ok(Err(quinn::ReadError::ConnectionLost(e))) => return Err(e.to_string()),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no answer within 10 s".into()),
        }
    }
}

#[tokio::test]
async fn an_enrolled_agent_is_welcomed() {
    let running = start().await;
    let bundle = running.bundle("binh-trung");
    let client = relay_agent::tls::client_config(&bundle).expect("tls");
    let event = session(running.addr, client, "binh-trung")
        .await
        .expect("connects");
    assert!(matches!(event, Event::Welcomed(_)), "{event:?}");
    tokio::time::timeout(Duration::from_secs(5), running.server.wait_connected(1))
        .await
        .expect("counted as connected");
    running.stop().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_never_completes_the_handshake() {
    let running = start().await;
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other_ca = CertificateAuthority::load_or_create(other_dir.path(), "Kẻ lạ").expect("ca");
    let mut forged = other_ca
        .enroll(
            "binh-trung",
            "Bình Trung",
            &running.addr.to_string(),
            "localhost",
        )
        .expect("enroll");
    // Trust the real server so that only the client certificate is wrong.
    forged.ca_cert = running.ca.cert_pem().to_string();
    let client = relay_agent::tls::client_config(&forged).expect("tls");
    let result = session(running.addr, client, "binh-trung").await;
    assert!(result.is_err(), "a foreign certificate got in: {result:?}");
    assert_eq!(running.server.connected(), 0);
    running.stop().await;
}

#[tokio::test]
async fn no_client_certificate_never_completes_the_handshake() {
    let running = start().await;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    roots
        .add(
            rustls::pki_types::CertificateDer::from_pem_slice(running.ca.cert_pem().as_bytes())
                .expect("pem"),
        )
        .expect("root");
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("tls13")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![radio_proto::ALPN.to_vec()];
    let client = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic"),
    ));
    let result = session(running.addr, client, "binh-trung").await;
    assert!(result.is_err(), "an anonymous client got in: {result:?}");
    assert_eq!(running.server.connected(), 0);
    running.stop().await;
}

#[tokio::test]
async fn a_hello_claiming_another_commune_is_refused() {
    let running = start().await;
    let bundle = running.bundle("binh-trung");
    let client = relay_agent::tls::client_config(&bundle).expect("tls");
    let event = session(running.addr, client, "binh-chau")
        .await
        .expect("connects");
    match event {
        Event::Closed { code, by_peer, .. } => {
            assert_eq!(code, ErrorCode::IdentityMismatch);
            assert!(by_peer);
        }
        other => panic!("expected IdentityMismatch, got {other:?}"),
    }
    assert_eq!(running.server.connected(), 0);
    running.stop().await;
}

#[tokio::test]
async fn a_commune_that_is_not_a_station_is_refused() {
    let running = start().await;
    // Signed by the right CA, but the district has no such station.
    let bundle = running.bundle("xa-khong-ton-tai");
    let client = relay_agent::tls::client_config(&bundle).expect("tls");
    let result = session(running.addr, client, "xa-khong-ton-tai").await;
    match result {
        Err(e) => assert!(e.contains("not a station"), "{e}"),
        Ok(Event::Closed { code, .. }) => assert_eq!(code, ErrorCode::UnknownAgent),
        Ok(other) => panic!("an unknown commune got in: {other:?}"),
    }
    assert_eq!(running.server.connected(), 0);
    running.stop().await;
}
