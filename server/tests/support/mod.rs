//! Shared by the server's integration tests: the real QUIC server in this process on loopback
//! with a real store, and a raw agent ([`raw_agent::RawAgent`]).

#![allow(dead_code)] // each test file uses its own part

pub mod raw_agent;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use radio_config::{District, ServerConfig};
use radio_proto::{JournalBatch, JournalEvent, JournalRecord, OutputState};
use radio_server::identity::certificate_authority::CertificateAuthority;
use radio_server::link::server::{self, Server};
use radio_server::records::store::Store;
use relay_agent::Bundle;
use tokio::sync::oneshot;

/// The real QUIC server with the agents' uptime journals in a real store.
pub struct Running {
    pub server: Arc<Server>,
    pub addr: SocketAddr,
    pub ca: CertificateAuthority,
    pub store: Arc<Store>,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// Starts the server of the Bình Sơn district on an ephemeral port; `tune` changes its config.
pub async fn start(tune: impl FnOnce(&mut ServerConfig)) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        ..ServerConfig::default()
    };
    tune(&mut config);
    let district = District::binh_son();
    let ca = CertificateAuthority::load_or_create(&config.data_dir, &district.name).expect("ca");
    let store = Arc::new(Store::open(&config.data_dir).expect("store"));
    let endpoint = server::bind(&config, &ca).expect("bind");
    let addr = endpoint.local_addr().expect("addr");
    let server = Server::with_uptime(config.clone(), district, store.uptime().clone());
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server::run(endpoint, server.clone(), async move {
        let _ = rx.await;
    }));
    Running {
        server,
        addr,
        ca,
        store,
        data_dir: config.data_dir,
        stop: Some(stop),
        task: Some(task),
        _dir: dir,
    }
}

impl Running {
    /// Enrols `commune` with this server's CA.
    pub fn bundle(&self, commune: &str) -> Bundle {
        self.ca
            .enroll(commune, "Trạm thử", &self.addr.to_string(), "localhost")
            .expect("enroll")
    }

    /// An enrolled agent's TLS client configuration.
    pub fn client(&self, commune: &str) -> quinn::ClientConfig {
        relay_agent::tls::client_config(&self.bundle(commune)).expect("tls")
    }

    /// Whether the server task is still running.
    pub fn is_up(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Journal records and link events the store holds for `commune`.
    pub fn stored(&self, commune: &str) -> (usize, usize) {
        let uptime = self.store.uptime();
        (
            uptime.records(commune).expect("records").len(),
            uptime.links(commune).expect("links").len(),
        )
    }

    /// Sessions of `commune` the server recorded as established.
    pub fn link_ups(&self, commune: &str) -> usize {
        let links = self.store.uptime().links(commune).expect("links");
        links.iter().filter(|l| l.up).count()
    }

    pub fn ca_dir(&self) -> &Path {
        self.ca.dir()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// A batch of `n` output records from sequence `first`.
pub fn records(journal_id: u64, first: u64, n: u64) -> JournalBatch {
    JournalBatch {
        journal_id,
        records: (first..first + n)
            .map(|seq| JournalRecord {
                seq,
                unix_ms: 1_764_000_000_000 + seq * 1000,
                event: JournalEvent::Output {
                    state: OutputState::Silent,
                },
            })
            .collect(),
    }
}
