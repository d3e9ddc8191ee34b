//! The server: accepts agents, authenticates them by certificate, runs each one's control session
//! and feeds its audio stream from the fan-out.
//!
//! [`run`] takes a bound endpoint and a shutdown future (mini-redis style), so tests bind port 0
//! and stop the server whenever they like. Shutdown notifies every connection, which closes its
//! session with `Shutdown`, then drains.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use radio_config::{District, ServerConfig};
use radio_proto::{
    Capabilities, ErrorCode, Event, Heartbeat, Session, SessionConfig, Welcome, PROTOCOL_VERSION,
};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tracing::{info, warn, Instrument};

use crate::broadcast::station_output::StationOutput;
use crate::identity::certificate_authority::CertificateAuthority;
use crate::identity::revocation_list::{RevocationError, Revocations, REFRESH_INTERVAL};
use crate::identity::tls::{self, PeerCertificate, TlsError};
use crate::prefetch::sender::{PrefetchStreams, CHUNK_BYTES};
use crate::prefetch::PrefetchPlanner;
use crate::records::clusters::{AmplifierSeen, ClusterSeen, WatchedClusters};
use crate::records::uptime_journal::{LinkEvent, RunMarker, UptimeJournal, SERVER_ALIVE_INTERVAL};

/// What the server knows about one agent (station), kept across its reconnects.
#[derive(Debug, Default)]
pub struct AgentRecord {
    /// A session is established right now.
    pub connected: bool,
    /// Sessions established so far.
    pub sessions: u64,
    /// The last heartbeat it sent.
    pub last_heartbeat: Option<Heartbeat>,
    /// When that heartbeat arrived.
    last_heartbeat_at: Option<std::time::Instant>,
    /// When the current session was established.
    session_since: Option<std::time::Instant>,
    /// When the link last went up or down (the server's wall clock), for operators who read
    /// clocks rather than ages.
    link_changed: Option<jiff::Timestamp>,
    /// The loudspeaker clusters its agent watches, as its journal last said.
    pub clusters: WatchedClusters,
    /// The connection currently serving it, to close it when a newer one replaces it or its
    /// certificate is revoked.
    connection: Option<quinn::Connection>,
    /// That connection's certificate serial.
    serial: Option<u64>,
    /// Its box health: the last report and the warnings on.
    health: crate::health::StationHealth,
}

/// A snapshot of one agent, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSnapshot {
    /// Commune id.
    pub commune: String,
    /// Connected now.
    pub connected: bool,
    /// Sessions so far.
    pub sessions: u64,
    /// Audio frames sent to it.
    pub frames_sent: u64,
    /// Audio frames dropped for it.
    pub frames_dropped: u64,
    /// Its last heartbeat.
    pub last_heartbeat: Option<Heartbeat>,
    /// How long ago that heartbeat arrived.
    pub last_heartbeat_age: Option<Duration>,
    /// How long the current session has lasted (none while not connected).
    pub session_age: Option<Duration>,
    /// When the link last changed this server run: since when it is up, or down.
    pub link_since: Option<jiff::Timestamp>,
    /// The latest state of each cluster its agent watches, by id within the station (`c01`).
    pub clusters: BTreeMap<String, ClusterSeen>,
    /// Its amplifiers' latest switches, by output name (`box`, `c01`).
    pub amplifiers: BTreeMap<String, AmplifierSeen>,
    /// Its box health and the warnings on (none before its first report this run).
    pub health: Option<crate::health::HealthSnapshot>,
}

/// Shared server state.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    district: District,
    outputs: BTreeMap<String, Arc<StationOutput>>,
    agents: Mutex<BTreeMap<String, AgentRecord>>,
    /// Identifies this server run; agents reset their sequence space when it changes.
    run_id: u64,
    connected_tx: watch::Sender<usize>,
    connection_slots: Arc<Semaphore>,
    /// Where agents' journals and the server's view of their links are kept; without it
    /// (the demo, tests) journal batches are not acknowledged and stay with the agents.
    uptime: Option<UptimeJournal>,
    /// The stations' prefetch plans, once planning runs (set after the on-air controller
    /// starts, as it follows its schedule).
    prefetch: std::sync::OnceLock<Arc<PrefetchPlanner>>,
    /// The revoked certificates, to close the connections of stations revoked while connected.
    revocations: Revocations,
    /// Connections per station between their handshake and their session: one station's
    /// certificate cannot take many of the `max_agents` slots at once.
    pending: Mutex<BTreeMap<String, usize>>,
    /// Audio frames per write to each agent, from the number connected ([`frames_per_write`]).
    frames_per_write: std::sync::atomic::AtomicU64,
    /// Where box health warnings are audited and the months' aggregates kept.
    health: std::sync::OnceLock<crate::health::HealthRecords>,
}

impl Server {
    /// Server state for `district`.
    pub fn new(config: ServerConfig, district: District) -> Arc<Self> {
        Self::build(config, district, None)
    }

    /// Server state for `district` that stores the agents' uptime journals in `uptime`.
    pub fn with_uptime(
        config: ServerConfig,
        district: District,
        uptime: UptimeJournal,
    ) -> Arc<Self> {
        Self::build(config, district, Some(uptime))
    }

    fn build(config: ServerConfig, district: District, uptime: Option<UptimeJournal>) -> Arc<Self> {
        let (connected_tx, _) = watch::channel(0);
        let slots = config.max_agents as usize;
        let ca_dir = config.data_dir.join("ca");
        let outputs = district
            .stations
            .iter()
            .map(|s| {
                (
                    s.id.clone(),
                    Arc::new(StationOutput::new(&s.id, config.send_queue_frames as usize)),
                )
            })
            .collect();
        Arc::new(Self {
            config,
            district,
            outputs,
            agents: Mutex::new(BTreeMap::new()),
            run_id: rand::random(),
            connected_tx,
            connection_slots: Arc::new(Semaphore::new(slots)),
            revocations: Revocations::open(&ca_dir).unwrap_or_else(|e| {
                tracing::error!("{e}; reading it again until it can be read");
                Revocations::unread(&ca_dir)
            }),
            pending: Mutex::new(BTreeMap::new()),
            uptime,
            prefetch: std::sync::OnceLock::new(),
            frames_per_write: std::sync::atomic::AtomicU64::new(1),
            health: std::sync::OnceLock::new(),
        })
    }

    /// Audits box health warnings and keeps the months' aggregates in `records` from now on.
    pub fn set_health_records(&self, records: crate::health::HealthRecords) {
        let _ = self.health.set(records);
    }

    pub(crate) fn health_records(&self) -> Option<crate::health::HealthRecords> {
        self.health.get().cloned()
    }

    /// Keeps `commune`'s report and judges it; returns the warnings that start or clear, and
    /// the previous report's (time, over the threshold), replaced by `now`.
    pub(crate) fn observe_health(
        &self,
        commune: &str,
        report: radio_proto::BoxHealth,
        rules: &radio_config::HealthSettings,
        now: (u64, bool),
    ) -> Option<crate::health::Observed> {
        let mut agents = self.agents.lock().ok()?;
        let health = &mut agents.get_mut(commune)?.health;
        let transitions = health.warnings.observe(&report, rules);
        health.last = Some(report);
        Some((transitions, health.previous.replace(now)))
    }

    /// Sends agents that offer prefetch their stations' plans from now on.
    pub fn set_prefetch(&self, planner: Arc<PrefetchPlanner>) {
        let _ = self.prefetch.set(planner);
    }

    /// The district served.
    pub fn district(&self) -> &District {
        &self.district
    }

    /// The config in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Every station's output, for the on-air controller.
    pub fn outputs(&self) -> impl Iterator<Item = Arc<StationOutput>> + '_ {
        self.outputs.values().cloned()
    }

    /// Number of agents with an established session.
    pub fn connected(&self) -> usize {
        *self.connected_tx.borrow()
    }

    /// Agent slots (of `max_agents`) free now: a connection takes one once its certificate
    /// is verified and holds it until it ends, session or not.
    pub fn free_slots(&self) -> usize {
        self.connection_slots.available_permits()
    }

    /// Waits until at least `n` agents are connected.
    pub async fn wait_connected(&self, n: usize) {
        let mut rx = self.connected_tx.subscribe();
        let _ = rx.wait_for(|c| *c >= n).await;
    }

    /// Every agent seen, by commune id.
    pub fn agents(&self) -> Vec<AgentSnapshot> {
        let Ok(agents) = self.agents.lock() else {
            return Vec::new();
        };
        agents
            .iter()
            .map(|(commune, r)| {
                let counters = self.outputs.get(commune).map(|o| o.counters());
                AgentSnapshot {
                    commune: commune.clone(),
                    connected: r.connected,
                    sessions: r.sessions,
                    frames_sent: counters
                        .map(|c| c.frames_sent.load(Ordering::Relaxed))
                        .unwrap_or(0),
                    frames_dropped: counters
                        .map(|c| c.frames_dropped.load(Ordering::Relaxed))
                        .unwrap_or(0),
                    last_heartbeat: r.last_heartbeat.clone(),
                    last_heartbeat_age: r.last_heartbeat_at.map(|t| t.elapsed()),
                    session_age: r.session_since.filter(|_| r.connected).map(|t| t.elapsed()),
                    link_since: r.link_changed,
                    clusters: r.clusters.clusters().clone(),
                    amplifiers: r.clusters.amplifiers().clone(),
                    health: r.health.snapshot(),
                }
            })
            .collect()
    }

    fn count_connected(&self, agents: &BTreeMap<String, AgentRecord>) {
        let n = agents.values().filter(|r| r.connected).count();
        self.connected_tx.send_replace(n);
        let per_write = frames_per_write(n, self.config.audio_packet_budget);
        if self.frames_per_write.swap(per_write, Ordering::Relaxed) != per_write {
            info!(agents = n, frames = per_write, "audio frames per packet");
            for output in self.outputs.values() {
                output.set_frames_per_write(per_write);
            }
        }
    }

    fn session_config(&self) -> SessionConfig {
        SessionConfig {
            heartbeat_interval: Duration::from_millis(self.config.heartbeat_interval_ms),
            idle_timeout: Duration::from_millis(self.config.idle_timeout_ms),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// TLS set-up failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The CA could not be loaded or created.
    #[error(transparent)]
    Ca(#[from] crate::identity::certificate_authority::CaError),
    /// The revocation list could not be read: starting without it would let revoked stations in.
    #[error(transparent)]
    Revocation(#[from] RevocationError),
    /// The stateless-reset key could not be read or stored.
    #[error(transparent)]
    ResetKey(#[from] crate::identity::reset_key::ResetKeyError),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        error: std::io::Error,
    },
}

/// How long a QUIC/TLS handshake, and then the agent's control stream, may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once. Slots for agents are only taken once a certificate has been
/// verified, so a flood of unauthenticated handshakes cannot lock real stations out.
const MAX_CONCURRENT_HANDSHAKES: usize = 256;

/// Bytes an agent may send ahead of the server's reading: four of the largest frames.
const AGENT_RECEIVE_WINDOW: u32 = 4 * radio_proto::MAX_FRAME_SIZE as u32;

/// How long a write to an agent's control stream may wait for the agent to read: a peer that
/// stops reading (stalled, or malicious) is closed instead of holding its session task, its
/// buffers and a slot for ever. Far longer than any link outage the idle timeout allows.
const STALLED_PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections of one station at once between handshake and session: the session being
/// replaced and the one replacing it, and a spare.
const MAX_PENDING_PER_STATION: usize = 3;

/// QUIC transport settings of the server: the agents' keep-alive and idle timeout, no streams
/// opened by agents beyond the control stream, and a send window of about two seconds of audio
/// so a slow link pushes back into the station's bounded queue (which drops the oldest audio)
/// instead of piling minutes of stale audio up inside QUIC.
pub fn transport_config(bitrate: u32) -> quinn::TransportConfig {
    let mut transport = relay_agent::tls::transport_config();
    transport.max_concurrent_bidi_streams(1u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    // What an agent may have in flight towards the server: its control stream only, whose
    // largest message is one frame. quinn's defaults (1.25 MB per stream, no limit per
    // connection) would let 10,000 agents park gigabytes in the server.
    transport.stream_receive_window(AGENT_RECEIVE_WINDOW.into());
    transport.receive_window(AGENT_RECEIVE_WINDOW.into());
    // The protocol has no datagrams: refuse them rather than buffer them.
    transport.datagram_receive_buffer_size(None);
    // Plus room for prefetch chunks in flight, so that they never take the audio's.
    transport.send_window(u64::from(bitrate / 8 * 2).max(16 * 1024) + 2 * CHUNK_BYTES as u64);
    transport
}

/// Frames packed into one write at most: 100 ms, a third of the agents' default playout delay.
pub const MAX_FRAMES_PER_WRITE: u64 = 5;

/// Frames per write to each agent when `connected` agents are connected: one while every
/// frame can have its own packet within `budget` packets a second (`audio_packet_budget`), up
/// to [`MAX_FRAMES_PER_WRITE`]. Every 20 ms tick sends one frame to every agent; past a few
/// thousand agents the cost is the packets (a system call, an encryption, an acknowledgement
/// back, and the wake-ups of the tasks involved, each), not the bytes.
pub fn frames_per_write(connected: usize, budget: u32) -> u64 {
    let frames_per_second = (radio_proto::SAMPLE_RATE / radio_proto::FRAME_SAMPLES) as usize;
    let packets = connected * frames_per_second;
    (packets.div_ceil(budget.max(1) as usize) as u64).clamp(1, MAX_FRAMES_PER_WRITE)
}

/// The server's QUIC endpoints: one per socket (`quic_sockets`), all on the listening port.
///
/// One quinn endpoint takes every datagram of its socket in one task, a slice of at most 50 µs
/// at a time between the other tasks' turns; with thousands of agents' acknowledgements, that
/// task fell behind and its socket overflowed while the workers still had time to spare
/// (BENCHMARKS.md, "Load"). With `SO_REUSEPORT` the kernel spreads the agents over several
/// sockets by address and port, each with its own endpoint; an agent's datagrams always reach
/// the same one, as long as its address and port stay the same. An agent whose NAT gives it a
/// new port mid-session reaches another endpoint, which answers with a stateless reset: the
/// agent reconnects at once. So several sockets are for a province's thousands of agents; a
/// district keeps the default, one.
#[derive(Debug, Clone)]
pub struct Endpoints(Vec<quinn::Endpoint>);

impl Endpoints {
    /// The address the endpoints listen on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0
            .first()
            .ok_or_else(|| std::io::Error::other("no endpoint"))?
            .local_addr()
    }
}

/// Binds the QUIC endpoints on `config.listen` (`quic_sockets` of them) with the CA's fresh
/// server certificate and the data directory's stateless-reset key (`reset_key.rs`).
pub fn bind(config: &ServerConfig, ca: &CertificateAuthority) -> Result<Endpoints, ServerError> {
    let revocations = Arc::new(Revocations::open(ca.dir())?);
    let server_config = tls::server_config(
        ca,
        &config.server_name,
        transport_config(config.bitrate),
        revocations,
    )?;
    let endpoint_config = crate::identity::reset_key::endpoint_config(&config.data_dir)?;
    let bind_error = |error| ServerError::Bind {
        addr: config.listen,
        error,
    };
    let sockets = config.quic_sockets.max(1) as usize;
    let mut endpoints = Vec::with_capacity(sockets);
    let mut addr = config.listen;
    for _ in 0..sockets {
        let (socket, sizes) = crate::link::udp_socket::bind(
            addr,
            crate::link::udp_socket::SOCKET_BUFFER_BYTES,
            sockets > 1,
        )
        .map_err(bind_error)?;
        // With port 0, the first socket's port is the one the others share.
        addr = socket.local_addr().map_err(bind_error)?;
        // A district's few dozen agents never fill the default buffers; a province's thousands
        // do.
        if endpoints.is_empty()
            && sizes.capped(crate::link::udp_socket::SOCKET_BUFFER_BYTES)
            && config.max_agents > 1000
        {
            warn!(
                receive = sizes.receive,
                send = sizes.send,
                "the kernel capped the QUIC socket's buffers: with thousands of agents, bursts \
                 will be dropped; raise the cap with `sysctl -w net.core.rmem_max=16777216 \
                 net.core.wmem_max=16777216`"
            );
        }
        let runtime = quinn::default_runtime()
            .ok_or_else(|| bind_error(std::io::Error::other("no async runtime")))?;
        endpoints.push(
            quinn::Endpoint::new(
                endpoint_config.clone(),
                Some(server_config.clone()),
                socket,
                runtime,
            )
            .map_err(bind_error)?,
        );
    }
    Ok(Endpoints(endpoints))
}

/// Accepts agents on every endpoint until `shutdown` completes, then closes every session and
/// drains.
pub async fn run(endpoints: Endpoints, server: Arc<Server>, shutdown: impl Future<Output = ()>) {
    let run_marker = start_run(&server).await;
    load_clusters(&server).await;
    // Aborted however `run` ends, even dropped mid-way.
    let keep_alive = run_marker
        .clone()
        .map(|(uptime, marker)| AbortOnDrop(tokio::spawn(keep_alive(uptime, marker))));
    let _close_revoked = AbortOnDrop(tokio::spawn(close_revoked(server.clone())));
    let _expiry = AbortOnDrop(tokio::spawn(crate::identity::certificate_expiry::watch(
        server.config.data_dir.join("ca"),
        server
            .district
            .stations
            .iter()
            .map(|s| s.id.clone())
            .collect(),
    )));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let handshakes = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    // Every endpoint's new connections, in one queue: the handshake limit is the server's.
    let (incoming_tx, mut incoming_rx) = tokio::sync::mpsc::channel(MAX_CONCURRENT_HANDSHAKES);
    let _accepting: Vec<AbortOnDrop> = endpoints
        .0
        .iter()
        .map(|endpoint| {
            let (endpoint, tx) = (endpoint.clone(), incoming_tx.clone());
            AbortOnDrop(tokio::spawn(async move {
                while let Some(incoming) = endpoint.accept().await {
                    if tx.send(incoming).await.is_err() {
                        break;
                    }
                }
            }))
        })
        .collect();
    drop(incoming_tx);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            incoming = incoming_rx.recv() => {
                let Some(incoming) = incoming else { break };
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    // Under a flood, make unproven addresses prove they can receive first.
                    if incoming.remote_address_validated() {
                        warn!(remote = %incoming.remote_address(), "too many handshakes; refusing");
                        incoming.refuse();
                    } else {
                        let _ = incoming.retry();
                    }
                    continue;
                };
                let server = server.clone();
                let stop = stop_rx.clone();
                tasks.spawn(async move {
                    handle_incoming(incoming, permit, server, stop).await;
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = &mut shutdown => break,
        }
    }
    info!(
        "shutting down: closing {} agent sessions",
        server.connected()
    );
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(3), drain)
        .await
        .is_err()
    {
        warn!("some sessions did not close in time");
    }
    for endpoint in &endpoints.0 {
        endpoint.close(
            quinn::VarInt::from_u32(ErrorCode::Shutdown.as_u16().into()),
            b"server shutting down",
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        for endpoint in &endpoints.0 {
            endpoint.wait_idle().await;
        }
    })
    .await;
    drop(keep_alive);
    if let Some((uptime, mut marker)) = run_marker {
        // The sessions' ends are recorded by now; this makes the run's end as precise as
        // they are, should a session have failed to record its own.
        let stopped = tokio::task::spawn_blocking(move || {
            uptime.record_stop(&mut marker, relay_agent::journal::unix_ms())
        })
        .await;
        if let Ok(Err(e)) = stopped {
            warn!("cannot record the server's stop: {e}");
        }
    }
}

/// Records this run's start in the store (before any agent is accepted, so every link event
/// of the run comes after its marker). A failure is logged, not fatal, like a link event's.
async fn start_run(server: &Server) -> Option<(UptimeJournal, RunMarker)> {
    let uptime = server.uptime.clone()?;
    let run_id = server.run_id;
    let store = uptime.clone();
    let started = tokio::task::spawn_blocking(move || {
        store.start_run(run_id, relay_agent::journal::unix_ms())
    })
    .await;
    match started {
        Ok(Ok(marker)) => Some((uptime, marker)),
        Ok(Err(e)) => {
            tracing::error!("cannot record the server run: {e}");
            None
        }
        Err(e) => {
            tracing::error!("cannot record the server run: {e}");
            None
        }
    }
}

/// A task that ends when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Overwrites the run's alive time every [`SERVER_ALIVE_INTERVAL`], so that after a crash the
/// reports know when the run's sessions ended to within that interval. Runs until aborted.
async fn keep_alive(uptime: UptimeJournal, mut marker: RunMarker) {
    let mut tick = tokio::time::interval(SERVER_ALIVE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, and the start was just recorded.
    tick.tick().await;
    loop {
        tick.tick().await;
        let store = uptime.clone();
        let written = tokio::task::spawn_blocking(move || {
            store
                .record_alive(&mut marker, relay_agent::journal::unix_ms())
                .map(|()| marker)
        })
        .await;
        match written {
            Ok(Ok(written)) => marker = written,
            Ok(Err(e)) => warn!("cannot record the server alive: {e}"),
            Err(e) => warn!("cannot record the server alive: {e}"),
        }
    }
}

fn close(conn: &quinn::Connection, code: ErrorCode, reason: &str) {
    conn.close(
        quinn::VarInt::from_u32(code.as_u16().into()),
        reason.as_bytes(),
    );
}

async fn handle_incoming(
    incoming: quinn::Incoming,
    handshake_permit: tokio::sync::OwnedSemaphorePermit,
    server: Arc<Server>,
    stop: watch::Receiver<bool>,
) {
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            warn!(%remote, "handshake failed: {e}");
            return;
        }
        Err(_) => {
            warn!(%remote, "handshake timed out");
            return;
        }
    };
    drop(handshake_permit);
    let certificate = match tls::peer_certificate(&conn) {
        Ok(c) => c,
        Err(e) => {
            warn!(%remote, "refused: {e}");
            close(&conn, ErrorCode::UnknownAgent, &e.to_string());
            return;
        }
    };
    let commune = certificate.commune.clone();
    let Some(_pending) = PendingGuard::take(&server, &commune) else {
        warn!(%remote, %commune, "refused: this station already has {MAX_PENDING_PER_STATION} connections opening");
        close(
            &conn,
            ErrorCode::Busy,
            "too many connections of this station at once",
        );
        return;
    };
    let Ok(_agent_slot) = server.connection_slots.clone().try_acquire_owned() else {
        warn!(%remote, %commune, "agent limit (max_agents) reached; refusing");
        close(
            &conn,
            ErrorCode::Busy,
            "server at its agent limit; retrying later helps",
        );
        return;
    };
    let span = tracing::info_span!("agent", commune = %commune, %remote);
    async move {
        if server.district.station(&commune).is_none() {
            warn!("refused: not a station of {}", server.district.name);
            close(
                &conn,
                ErrorCode::UnknownAgent,
                "not a station of this district",
            );
            return;
        }
        warn_if_expiring(&certificate);
        match serve_agent(&conn, &certificate, &server, stop, _pending).await {
            Ok(()) => info!("session ended"),
            Err(e) => warn!("session ended: {e}"),
        }
        if let Ok(mut agents) = server.agents.lock() {
            if let Some(record) = agents.get_mut(&commune) {
                if record
                    .connection
                    .as_ref()
                    .is_some_and(|c| c.stable_id() == conn.stable_id())
                {
                    record.connected = false;
                    record.connection = None;
                    record.serial = None;
                    record.session_since = None;
                    record.link_changed = Some(jiff::Timestamp::now());
                }
            }
            server.count_connected(&agents);
        }
    }
    .instrument(span)
    .await
}

async fn serve_agent(
    conn: &quinn::Connection,
    certificate: &PeerCertificate,
    server: &Arc<Server>,
    mut stop: watch::Receiver<bool>,
    pending: PendingGuard,
) -> Result<(), String> {
    let commune = certificate.commune.as_str();
    let mut pending = Some(pending);
    let (mut send, mut recv) = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| {
            close(conn, ErrorCode::Timeout, "no control stream");
            "no control stream opened in time".to_string()
        })?
        .map_err(|e| e.to_string())?;
    let mut session = Session::server(server.session_config(), Instant::now().into());
    session.set_media_clock(crate::broadcast::media_clock::media_clock());
    // Dropped on every way out of this function (including cancellation at shutdown): detaches
    // the station's output and stops the audio writer.
    let mut audio: Option<AudioStream> = None;
    // Likewise: stops the prefetch streams.
    let mut prefetch: Option<PrefetchStreams> = None;
    let mut established = false;
    let result = loop {
        let deadline = session.poll_timeout().map(Instant::from_std);
        tokio::select! {
            // Chunks as quinn holds them, not copied into a buffer of our own: at 10,000 agents a
            // 16 KiB read buffer each was 160 MB of the server's memory.
            read = recv.read_chunk(usize::MAX, true) => match read {
                Ok(Some(chunk)) => session.handle_input(Instant::now().into(), &chunk.bytes),
                Ok(None) => break Err("agent closed the control stream".to_string()),
                Err(e) if closed_for_shutdown(&e) => break Ok(()),
                Err(e) => break Err(e.to_string()),
            },
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                session.handle_timeout(Instant::now().into());
            }
            _ = stop.changed() => {
                session.close(ErrorCode::Shutdown, "server shutting down");
            }
            ended = async { match audio.as_mut() { Some(a) => (&mut a.task).await, None => std::future::pending().await } } => {
                // A session whose audio is gone would look connected while the station is
                // silent: end it, and let the agent reconnect.
                let why = match ended {
                    Ok(Err(e)) => e,
                    _ => "audio stream ended".to_string(),
                };
                close(conn, ErrorCode::Internal, &why);
                break Err(format!("audio stream failed: {why}"));
            }
        }
        let mut closed = None;
        while let Some(event) = session.poll_event() {
            match event {
                Event::Hello(hello) => {
                    if hello.agent_id != commune {
                        warn!(claimed = %hello.agent_id, "hello claims another identity");
                        session.reject(
                            ErrorCode::IdentityMismatch,
                            "agent id does not match its certificate",
                        );
                        continue;
                    }
                    if certificate
                        .serial
                        .is_some_and(|s| server.revocations.is_revoked(s))
                    {
                        warn!("certificate revoked since its handshake");
                        session.reject(ErrorCode::Revoked, REVOKED_REASON);
                        continue;
                    }
                    session.accept(
                        Instant::now().into(),
                        Welcome {
                            version: PROTOCOL_VERSION,
                            server_name: server.config.server_name.clone(),
                            session_id: server.run_id,
                            heartbeat_interval_ms: server.config.heartbeat_interval_ms as u32,
                            sample_rate: radio_proto::SAMPLE_RATE,
                            frame_samples: radio_proto::FRAME_SAMPLES,
                        },
                    );
                    let Some(output) = server.outputs.get(commune).cloned() else {
                        session.reject(ErrorCode::UnknownAgent, "not a station of this district");
                        continue;
                    };
                    register(server, commune, conn, certificate.serial);
                    drop(pending.take());
                    info!(software = %hello.software, "session established");
                    if hello.capabilities.contains(Capabilities::PREFETCH) {
                        if let Some(planner) = server.prefetch.get() {
                            if let Some(plans) = planner.subscribe(commune) {
                                prefetch = Some(PrefetchStreams::start(
                                    conn.clone(),
                                    plans,
                                    output.clone(),
                                    planner.bitrate(),
                                ));
                            }
                        }
                    }
                    audio = Some(AudioStream::start(output, conn.clone()));
                    established = true;
                    // The Welcome goes out before the link is recorded: the record waits for the
                    // disk, and the agent's session need not.
                    if let Err(e) = flush(&mut session, &mut send).await {
                        close(conn, ErrorCode::Timeout, &e);
                        closed = Some(e);
                        break;
                    }
                    record_link(server, commune, true, String::new()).await;
                }
                Event::JournalBatch(batch) => match &server.uptime {
                    Some(uptime) => {
                        let uptime = uptime.clone();
                        let agent = commune.to_owned();
                        let records = batch.records.len();
                        // Stored and flushed before the acknowledgement: only then may the agent
                        // delete the records.
                        match tokio::task::spawn_blocking(move || {
                            uptime.store_batch(&agent, &batch).map(|ack| (ack, batch))
                        })
                        .await
                        {
                            Ok(Ok((ack, batch))) => {
                                tracing::debug!(records, last = ack.last_seq, "journal stored");
                                session.send_journal_ack(ack);
                                watch_clusters(server, commune, &batch);
                            }
                            Ok(Err(e)) => {
                                tracing::error!("cannot store the journal: {e}");
                                session.close(ErrorCode::Internal, "cannot store the journal");
                            }
                            Err(e) => {
                                tracing::error!("cannot store the journal: {e}");
                                session.close(ErrorCode::Internal, "cannot store the journal");
                            }
                        }
                    }
                    None => {
                        tracing::debug!("journal batch not stored: this server keeps no journal")
                    }
                },
                Event::Heartbeat(hb) => {
                    if let Ok(mut agents) = server.agents.lock() {
                        if let Some(r) = agents.get_mut(commune) {
                            r.last_heartbeat = Some(hb);
                            r.last_heartbeat_at = Some(std::time::Instant::now());
                        }
                    }
                }
                Event::Closed {
                    code,
                    reason,
                    by_peer,
                } => {
                    // Either side shutting down is a clean end, not a failure worth a warning.
                    closed = Some(if code == ErrorCode::Shutdown {
                        String::new()
                    } else if by_peer {
                        format!("agent closed: {code:?}: {reason}")
                    } else {
                        format!("closed: {code:?}: {reason}")
                    });
                    if !by_peer {
                        // Deliver the Error message before the connection goes: closing at once
                        // would discard it, leaving the agent only the close frame's code.
                        let _ = flush(&mut session, &mut send).await;
                        let _ = send.finish();
                        let _ =
                            tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
                        close(conn, code, &reason);
                    }
                }
                Event::BoxHealth(report) => crate::health::on_report(server, commune, report).await,
                Event::Welcomed(_) | Event::JournalAck(_) | Event::ClockReply { .. } => {}
            }
        }
        if let Err(e) = flush(&mut session, &mut send).await {
            close(conn, ErrorCode::Timeout, &e);
            break Err(e);
        }
        if let Some(why) = closed {
            break if why.is_empty() { Ok(()) } else { Err(why) };
        }
    };
    drop(audio);
    drop(prefetch);
    if established {
        let reason = match &result {
            Ok(()) => "shutdown".to_owned(),
            Err(e) => e.clone(),
        };
        record_link(server, commune, false, reason).await;
    }
    result
}

/// Updates the agent's cluster states from a stored batch. Only stored batches count, so the
/// live view never shows what the reports and a restarted server will not know.
fn watch_clusters(server: &Server, commune: &str, batch: &radio_proto::JournalBatch) {
    let Ok(mut agents) = server.agents.lock() else {
        return;
    };
    let record = agents.entry(commune.to_owned()).or_default();
    let mut dropped = 0usize;
    for r in &batch.records {
        if !record.clusters.apply(batch.journal_id, r) {
            dropped += 1;
        }
    }
    // Only these records change the states; most batches are heartbeats and programmes.
    let touches_clusters = batch.records.iter().any(|r| {
        matches!(
            r.event,
            radio_proto::JournalEvent::Cluster { .. }
                | radio_proto::JournalEvent::Amplifier { .. }
                | radio_proto::JournalEvent::ProcessStart { .. }
        )
    });
    if touches_clusters {
        if let Some(uptime) = &server.uptime {
            // A small write, and only for a batch that can change a state (rare): fine on
            // this thread.
            if let Err(e) = uptime.save_clusters(commune, &record.clusters.to_bytes()) {
                warn!("cannot keep the cluster states: {e}");
            }
        }
    }
    if dropped > 0 {
        warn!(
            dropped,
            "cluster records ignored: the agent names more than {} clusters",
            crate::records::clusters::MAX_WATCHED_CLUSTERS
        );
    }
}

/// Reads each station's cluster states back from the store: the agents deleted the records
/// an earlier run acknowledged, and only send changes, so without this a restarted server
/// would show watched clusters as following their station until each changed again. Done
/// before any agent is accepted, so no batch of this run can be overwritten by older states.
async fn load_clusters(server: &Server) {
    let Some(uptime) = server.uptime.clone() else {
        return;
    };
    // A set: a province has thousands of stations, and every saved agent is looked up.
    let stations: std::collections::BTreeSet<String> = server
        .district
        .stations
        .iter()
        .map(|s| s.id.clone())
        .collect();
    let loaded = tokio::task::spawn_blocking(move || {
        let saved = match uptime.saved_clusters() {
            Ok(saved) => saved,
            Err(e) => {
                warn!("cannot read the cluster states back: {e}");
                return Vec::new();
            }
        };
        saved
            .into_iter()
            .filter(|(station, _)| stations.contains(station))
            .filter_map(
                |(station, bytes)| match WatchedClusters::from_bytes(&bytes) {
                    Some(watched) => Some((station, watched)),
                    None => {
                        warn!(%station, "unreadable cluster states in the store; ignored");
                        None
                    }
                },
            )
            .collect::<Vec<_>>()
    })
    .await;
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            warn!("cannot read the cluster states back: {e}");
            return;
        }
    };
    if let Ok(mut agents) = server.agents.lock() {
        for (station, watched) in loaded {
            agents.entry(station).or_default().clusters = watched;
        }
    }
}

/// The server's own view of an agent's link, for the uptime reports. A failure is logged, not
/// fatal: the agent's journal still tells its side.
async fn record_link(server: &Server, commune: &str, up: bool, reason: String) {
    let Some(uptime) = server.uptime.clone() else {
        return;
    };
    let agent = commune.to_owned();
    let event = LinkEvent {
        unix_ms: relay_agent::journal::unix_ms(),
        up,
        reason,
        server_run: Some(server.run_id),
    };
    match tokio::task::spawn_blocking(move || uptime.record_link(&agent, &event)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("cannot record the link: {e}"),
        Err(e) => tracing::error!("cannot record the link: {e}"),
    }
}

/// The agent's audio stream: a task writing the station's output into a QUIC stream. Dropping it
/// stops the task and detaches the output.
struct AudioStream {
    task: tokio::task::JoinHandle<Result<(), String>>,
    output: Arc<StationOutput>,
    token: u64,
}

impl AudioStream {
    fn start(output: Arc<StationOutput>, conn: quinn::Connection) -> Self {
        let token = output.attach();
        let source = output.clone();
        let task = tokio::spawn(
            async move {
                let mut stream = conn
                    .open_uni()
                    .await
                    .map_err(|e| format!("cannot open audio stream: {e}"))?;
                loop {
                    let batch = source.next_batch().await;
                    // One write for the whole batch: one wake-up of the connection, and frames
                    // queued together leave in one packet.
                    let mut chunks: Vec<Bytes> = batch.iter().map(|(b, _)| b.clone()).collect();
                    stream
                        .write_all_chunks(&mut chunks)
                        .await
                        .map_err(|e| format!("audio stream closed: {e}"))?;
                    for (bytes, is_frame) in &batch {
                        source.sent(bytes.len(), *is_frame);
                    }
                }
            }
            .in_current_span(),
        );
        Self {
            task,
            output,
            token,
        }
    }
}

impl Drop for AudioStream {
    fn drop(&mut self) {
        self.task.abort();
        self.output.detach(self.token);
    }
}

/// Whether the agent closed its connection because it is shutting down (a clean end, not a
/// failure: its goodbye may race the connection close).
fn closed_for_shutdown(e: &quinn::ReadError) -> bool {
    matches!(
        e,
        quinn::ReadError::ConnectionLost(quinn::ConnectionError::ApplicationClosed(close))
            if close.error_code == quinn::VarInt::from_u32(ErrorCode::Shutdown.as_u16().into())
    )
}

/// Marks the agent connected, closing an older connection it may still have (a reconnect that
/// beat the old link's timeout).
fn register(server: &Server, commune: &str, conn: &quinn::Connection, serial: Option<u64>) {
    let Ok(mut agents) = server.agents.lock() else {
        return;
    };
    let record = agents.entry(commune.to_string()).or_default();
    if let Some(old) = record.connection.replace(conn.clone()) {
        if old.stable_id() != conn.stable_id() {
            warn!(
                old = %old.remote_address(),
                new = %conn.remote_address(),
                "a newer connection replaces this station's session (two agents with one bundle?)"
            );
            close(
                &old,
                ErrorCode::Replaced,
                "replaced by a newer connection of this station",
            );
        }
    }
    record.serial = serial;
    record.connected = true;
    record.sessions += 1;
    record.session_since = Some(std::time::Instant::now());
    record.link_changed = Some(jiff::Timestamp::now());
    server.count_connected(&agents);
}

async fn flush(session: &mut Session, send: &mut quinn::SendStream) -> Result<(), String> {
    while let Some(bytes) = session.poll_transmit() {
        match tokio::time::timeout(STALLED_PEER_TIMEOUT, send.write_all(&bytes)).await {
            Ok(written) => written.map_err(|e| e.to_string())?,
            Err(_) => return Err("the agent stopped reading its control stream".to_owned()),
        }
    }
    Ok(())
}

/// What a revoked station is told, at its session or when its open connection is closed.
const REVOKED_REASON: &str =
    "this station's certificate was revoked: the district must enrol it again (radio-server enroll)";

/// Warns, in the session's span, when the station's certificate expires within
/// [`EXPIRY_WARNING_DAYS`]: an expired certificate silences the station's loudspeakers.
fn warn_if_expiring(certificate: &PeerCertificate) {
    let now = jiff::Timestamp::now().as_second();
    let days_left = (certificate.not_after - now) / 86_400;
    if days_left < crate::identity::certificate_expiry::EXPIRY_WARNING_DAYS {
        warn!(
            days_left,
            "this station's certificate expires in {days_left} days: renew it with \
             `radio-server enroll --commune {}` and install the new bundle (docs/SECURITY.md)",
            certificate.commune
        );
    }
}

/// A connection counted against its station's [`MAX_PENDING_PER_STATION`] until its session
/// is established or it ends.
struct PendingGuard {
    server: Arc<Server>,
    commune: String,
}

impl PendingGuard {
    fn take(server: &Arc<Server>, commune: &str) -> Option<Self> {
        let mut pending = server.pending.lock().ok()?;
        let n = pending.entry(commune.to_owned()).or_default();
        if *n >= MAX_PENDING_PER_STATION {
            return None;
        }
        *n += 1;
        Some(Self {
            server: server.clone(),
            commune: commune.to_owned(),
        })
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.server.pending.lock() {
            if let Some(n) = pending.get_mut(&self.commune) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    pending.remove(&self.commune);
                }
            }
        }
    }
}

/// Closes, within [`REFRESH_INTERVAL`] of `radio-server revoke`, the connections of stations
/// whose certificate was revoked while they were connected. Runs until aborted.
async fn close_revoked(server: Arc<Server>) {
    let mut tick = tokio::time::interval(REFRESH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match server.revocations.refresh() {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::error!("cannot read the revocation list; keeping the last one read: {e}");
                continue;
            }
        }
        let revoked = server.revocations.revoked();
        let Ok(agents) = server.agents.lock() else {
            continue;
        };
        for (commune, record) in agents.iter() {
            let (Some(conn), Some(serial)) = (&record.connection, record.serial) else {
                continue;
            };
            if revoked.contains(&serial) {
                warn!(%commune, remote = %conn.remote_address(), "certificate revoked: closing its connection");
                close(conn, ErrorCode::Revoked, REVOKED_REASON);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_packed_only_past_the_packet_budget_and_never_beyond_100_ms() {
        // Bình Sơn's 22 agents, and a province's 500: one frame per packet.
        assert_eq!(frames_per_write(22, 25_000), 1);
        assert_eq!(frames_per_write(500, 25_000), 1);
        assert_eq!(frames_per_write(501, 25_000), 2);
        assert_eq!(frames_per_write(2_000, 25_000), 4);
        // Every commune of Vietnam: capped at five frames (100 ms).
        assert_eq!(frames_per_write(10_599, 25_000), MAX_FRAMES_PER_WRITE);
        assert_eq!(frames_per_write(10_599, 1_000_000), 1);
        assert_eq!(frames_per_write(0, 25_000), 1);
    }
}
