//! `radio-server demo`: the whole path on one machine. It starts the server and one relay agent
//! per Bình Sơn station on loopback, each enrolled like a real agent (certificate, bundle file,
//! mutual TLS), plays the programme once every agent is connected, and reports per station.
//!
//! Each agent sends RTP to a receiver port on loopback that its SDP names and that the demo
//! keeps free (`reserve_rtp_ports`): a player opening the SDP (ffplay, ffmpeg, VLC) hears the
//! station while the demo plays. The table's RTP packets are the agents' own counts.
//!
//! With `--keep-running` the district stays up after the table, with the admin endpoint and
//! the HTTPS console of `radio-server run`, until Ctrl-C or SIGTERM: someone can try the
//! console on a district whose agents are connected, without setting up 22 machines.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use radio_config::{AgentConfig, District, ServerConfig, SinkSpec};
use relay_agent::playout::ProgrammeRecord;
use relay_agent::{Agent, AgentReport, AgentStatus, Bundle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broadcast::on_air::{file_bulletin, play_bulletin, OnAir};
use crate::identity::certificate_authority::CertificateAuthority;
use crate::link::server::{self, AgentSnapshot, Server};
use crate::operator::accounts::{create_first_admin, first_admin_notice, AccountError};
use crate::operator::admin::{self, AdminState};
use crate::operator::https::{self, HttpsError};
use crate::pipeline::{PipelineError, ProgrammeEncoder};
use crate::records::store::{Store, StoreError};
use crate::schedule::ladder::{Ladder, LadderConfig};
use crate::schedule::scheduler::Scheduler;
use crate::schedule::Schedule;

/// The bundled sample programme: a Vietnamese announcement (espeak-ng) after a chime.
pub const SAMPLE_PROGRAMME: &[u8] = include_bytes!("../assets/ban-tin-mau.ogg");

/// Playout delay of the demo agents.
const DEMO_PLAYOUT_DELAY_MS: u32 = 200;

/// Demo options (the CLI flags).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Cut the programme after this long.
    pub duration: Option<Duration>,
    /// Run the first N stations.
    pub agents: usize,
    /// The programme; None plays the bundled sample.
    pub programme: Option<PathBuf>,
    /// Where agents write `<station>.wav` and `<station>.sdp`.
    pub out: PathBuf,
    /// Server data directory (CA, bundles); None uses a temporary one.
    pub data_dir: Option<PathBuf>,
    /// Opus bitrate.
    pub bitrate: u32,
    /// Accept live studio RTP here (from 127.0.0.1 only); it pre-empts the programme while
    /// packets arrive.
    pub live_rtp: Option<std::net::SocketAddr>,
    /// Relay this HTTP/Icecast stream as the programme instead of a file.
    pub relay: Option<String>,
    /// After the programme and its table, keep the district up with its console until Ctrl-C
    /// or SIGTERM; `None` ends the demo there.
    pub keep_running: Option<KeepRunning>,
}

/// Where a demo that keeps running serves its people.
#[derive(Debug, Clone)]
pub struct KeepRunning {
    /// The HTTPS console.
    pub console_listen: SocketAddr,
    /// The plain admin endpoint (loopback callers only, as for `radio-server run`).
    pub admin_listen: SocketAddr,
}

/// Where a demo that keeps running serves its console: loopback, since the demo's district is
/// a trial on this machine, not one for the network.
pub const DEFAULT_CONSOLE_LISTEN: &str = "127.0.0.1:8443";
/// Where it serves the plain admin endpoint: any free port, as nothing but a person reading
/// the printed address uses it.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:0";

/// How long a relayed programme plays when `--duration` is not given.
pub const DEFAULT_RELAY_SECS: u64 = 30;

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Bad options.
    #[error("{0}")]
    Options(String),
    /// The programme file is unusable.
    #[error(transparent)]
    Programme(#[from] PipelineError),
    /// Setting up the server failed.
    #[error(transparent)]
    Server(#[from] server::ServerError),
    /// Enrolment failed.
    #[error(transparent)]
    Ca(#[from] crate::identity::certificate_authority::CaError),
    /// An agent could not start.
    #[error("agent {commune}: {reason}")]
    Agent {
        /// The station.
        commune: String,
        /// Why.
        reason: String,
    },
    /// Files could not be written.
    #[error("{path}: {error}")]
    Io {
        /// The path.
        path: String,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The store (accounts, sessions, uptime) of a demo that keeps running.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The first console account could not be made.
    #[error("console account: {0}")]
    Account(#[from] AccountError),
    /// The console's certificate or TLS set-up.
    #[error(transparent)]
    Https(#[from] HttpsError),
    /// Agents did not connect.
    #[error("only {connected}/{expected} agents connected within {secs} s")]
    NotConnected {
        /// Connected agents.
        connected: usize,
        /// Expected agents.
        expected: usize,
        /// Time waited.
        secs: u64,
    },
}

/// One station's line in the demo table.
#[derive(Debug, Clone)]
pub struct DemoRow {
    /// Station id.
    pub commune: String,
    /// Vietnamese name.
    pub name: String,
    /// Frames the server sent to it.
    pub sent: u64,
    /// Frames it received.
    pub received: u64,
    /// Frames of the programme it played.
    pub played: u64,
    /// Frames of the programme it did not play.
    pub lost: u64,
    /// RTP packets its RTP sink sent towards the station's receiver (the port its SDP names);
    /// `None` while the agent runs on (`--keep-running`): a sink counts only when it closes.
    pub rtp_packets: Option<u64>,
    /// Whether it played the whole programme.
    pub complete: bool,
}

/// The demo's result.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    /// Frames in the programme.
    pub programme_frames: u64,
    /// The live input's counters, when it ran.
    pub live: Option<crate::ingest::live_rtp::LiveStats>,
    /// One row per station.
    pub rows: Vec<DemoRow>,
}

impl DemoOutcome {
    /// Agents that played the whole programme.
    pub fn played(&self) -> usize {
        self.rows.iter().filter(|r| r.complete).count()
    }

    /// The per-station table and the closing line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<18} {:<16} {:>7} {:>8} {:>7} {:>5} {:>8}\n",
            "station", "name", "sent", "received", "played", "lost", "rtp pkts"
        ));
        for r in &self.rows {
            let rtp = r
                .rtp_packets
                .map_or_else(|| "-".to_owned(), |n| n.to_string());
            out.push_str(&format!(
                "{:<18} {:<16} {:>7} {:>8} {:>7} {:>5} {:>8}\n",
                r.commune, r.name, r.sent, r.received, r.played, r.lost, rtp
            ));
        }
        if let Some(live) = &self.live {
            out.push_str(&format!(
                "live input: {} packets accepted, {} dropped from senders not allowed{}, {} malformed\n",
                live.accepted,
                live.rejected_source,
                live.last_rejected_source
                    .map(|a| format!(" (last: {a})"))
                    .unwrap_or_default(),
                live.malformed
            ));
        }
        out.push_str(&format!(
            "demo: {}/{} agents played the programme\n",
            self.played(),
            self.rows.len()
        ));
        out
    }
}

/// Runs the demo on the embedded Bình Sơn district.
pub async fn run_demo(options: DemoOptions) -> Result<DemoOutcome, DemoError> {
    let district = District::binh_son();
    let n = options.agents;
    if n == 0 || n > district.stations.len() {
        return Err(DemoError::Options(format!(
            "--agents must be between 1 and {} (the stations of {})",
            district.stations.len(),
            district.name
        )));
    }
    let temp;
    let data_dir = match &options.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir().map_err(|error| DemoError::Io {
                path: "temporary directory".into(),
                error,
            })?;
            temp.path().to_path_buf()
        }
    };
    create_dir(&options.out)?;
    create_dir(&data_dir)?;
    let (programme, name) = match &options.programme {
        Some(p) => (p.clone(), display_name(p)),
        None => {
            let p = data_dir.join("ban-tin-mau.ogg");
            std::fs::write(&p, SAMPLE_PROGRAMME).map_err(|error| DemoError::Io {
                path: p.display().to_string(),
                error,
            })?;
            (p, "Bản tin mẫu".to_string())
        }
    };
    let bitrate = options.bitrate;
    if let Some(url) = &options.relay {
        crate::ingest::relay::validate_relay_url(url)
            .map_err(|e| DemoError::Options(e.to_string()))?;
    } else {
        // Refuse a bad programme before starting 22 agents.
        let probe = programme.clone();
        tokio::task::spawn_blocking(move || ProgrammeEncoder::open(&probe, bitrate).map(|_| ()))
            .await
            .map_err(|e| DemoError::Options(format!("programme check: {e}")))??;
    }

    let config = ServerConfig {
        listen: "127.0.0.1:0"
            .parse()
            .map_err(|e| DemoError::Options(format!("{e}")))?,
        data_dir: data_dir.clone(),
        bitrate,
        ..ServerConfig::default()
    };
    let ca = CertificateAuthority::load_or_create(&data_dir, &district.name)?;
    // Before anything plays: a console port in use is found now, not after the programme.
    let console = match &options.keep_running {
        Some(keep) => Some(ConsoleSetup::prepare(keep, &data_dir, &config, &ca).await?),
        None => None,
    };
    let endpoint = server::bind(&config, &ca)?;
    let addr = endpoint.local_addr().map_err(|error| DemoError::Io {
        path: "server socket".into(),
        error,
    })?;
    let stations: Vec<_> = district.stations.iter().take(n).cloned().collect();
    // The console's uptime chart reads the agents' uptime journals from the store.
    let server = match &console {
        Some(console) => Server::with_uptime(
            config.clone(),
            district.clone(),
            console.store.uptime().clone(),
        ),
        None => Server::new(config.clone(), district.clone()),
    };
    let (stop_server, mut stop_server_rx) = watch::channel(false);
    let server_task = tokio::spawn(server::run(endpoint, server.clone(), async move {
        let _ = stop_server_rx.changed().await;
    }));

    let (stop_agents, stop_agents_rx) = watch::channel(false);
    // Held while the agents bind their own sockets, released before anything plays.
    let reserved = reserve_rtp_ports(stations.len()).map_err(|error| DemoError::Io {
        path: "RTP receiver ports".into(),
        error,
    })?;
    let mut agents = Vec::new();
    for (station, (rtp_port, _)) in stations.iter().zip(&reserved) {
        let bundle_path = data_dir
            .join("bundles")
            .join(format!("{}.toml", station.id));
        ca.enroll(
            &station.id,
            &station.name,
            &addr.to_string(),
            &config.server_name,
        )?
        .save(&bundle_path)
        .map_err(|e| agent_error(&station.id, e))?;
        let bundle = Bundle::load(&bundle_path).map_err(|e| agent_error(&station.id, e))?;
        let agent_config = AgentConfig {
            bundle: bundle_path,
            state_dir: data_dir.join("agents").join(&station.id),
            sinks: vec![
                SinkSpec::Wav {
                    path: options.out.join(format!("{}.wav", station.id)),
                },
                // The RTP receiver is the station's first loudspeaker cluster: its health shows
                // on the dashboard (down until a player such as ffplay opens the SDP).
                SinkSpec::Rtp {
                    dest: std::net::SocketAddr::from(([127, 0, 0, 1], *rtp_port)),
                    sdp: Some(options.out.join(format!("{}.sdp", station.id))),
                    cluster: Some("c01".to_owned()),
                    port: None,
                },
            ],
            playout_delay_ms: DEMO_PLAYOUT_DELAY_MS,
            ..AgentConfig::default()
        };
        let agent = Agent::new(agent_config, bundle).map_err(|e| agent_error(&station.id, e))?;
        let status = agent.status();
        let mut rx = stop_agents_rx.clone();
        let task = tokio::spawn(agent.run(async move {
            let _ = rx.changed().await;
        }));
        agents.push((station.clone(), status, task));
    }
    // The receivers' ports are free for a player from now on.
    drop(reserved);

    let wait = Duration::from_secs(30);
    if tokio::time::timeout(wait, server.wait_connected(n))
        .await
        .is_err()
    {
        let connected = server.connected();
        let _ = stop_agents.send(true);
        let _ = stop_server.send(true);
        return Err(DemoError::NotConnected {
            connected,
            expected: n,
            secs: wait.as_secs(),
        });
    }
    let playing = match &options.relay {
        Some(url) => format!("relaying {}", crate::ingest::stream_url::mask(url)),
        None => format!("playing {}", programme.display()),
    };
    say(format_args!(
        "demo: {n} agents connected to {addr}; {playing}\n"
    ));
    if let Some(first) = stations.first() {
        say(format_args!(
            "demo: listen to a station while it plays: ffplay -nodisp -protocol_whitelist \
             file,udp,rtp -i {}\n",
            options.out.join(format!("{}.sdp", first.id)).display()
        ));
    }
    let scheduler = Scheduler::new(Schedule::default(), &district)
        .map_err(|e| DemoError::Options(e.to_string()))?;
    let ladder = Ladder::new(scheduler, &district, LadderConfig::default());
    let targets =
        crate::schedule::Targets::Stations(stations.iter().map(|s| s.id.clone()).collect());
    let live = radio_config::LiveSettings {
        rtp: options.live_rtp,
        allow: vec![std::net::IpAddr::from([127, 0, 0, 1])],
        // The demo hands back to the programme promptly; a real studio link gets the default
        // grace, so a short drop-out does not end a broadcast.
        no_packet_timeout_ms: 1_000,
        ..Default::default()
    };
    let (on_air, studio) = crate::broadcast::live_input::spawn_on_air(
        server.outputs(),
        ladder,
        crate::broadcast::live_input::OnAirSetup {
            bitrate,
            live,
            live_targets: targets.clone(),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| DemoError::Options(e.to_string()))?;
    let console_live = studio.console.clone();
    let live_input = studio.rtp;
    if let Some(addr) = live_input.as_ref().and_then(|input| input.addr) {
        say(format_args!(
            "demo: live studio RTP accepted from 127.0.0.1 on {addr}\n"
        ));
    }
    let mut bulletin = file_bulletin("demo", &name, &programme);
    if let Some(url) = &options.relay {
        bulletin.name = format!("Tiếp sóng {}", crate::ingest::stream_url::mask(url));
        bulletin.source = crate::schedule::SourceSpec::Relay { url: url.clone() };
    }
    bulletin.targets = targets;
    let limit = match (&options.relay, options.duration) {
        (_, Some(limit)) => Some(limit),
        (Some(_), None) => Some(Duration::from_secs(DEFAULT_RELAY_SECS)),
        (None, None) => None,
    };
    if let Some(limit) = limit {
        bulletin.duration = jiff::SignedDuration::try_from(limit).ok();
    }
    let played = play_bulletin(&on_air, bulletin).await;
    // Let every agent play out what is still in its buffer.
    let drain_until = tokio::time::Instant::now()
        + Duration::from_millis(u64::from(DEMO_PLAYOUT_DELAY_MS) + 2000);
    while tokio::time::Instant::now() < drain_until {
        if agents.iter().all(|(_, s, _)| !s.on_air()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(console) = console {
        let running = Running {
            stations,
            agents,
            server,
            server_task,
            stop_agents,
            stop_server,
            live_input,
            console_live,
        };
        return keep_running(running, console, played, on_air, district).await;
    }
    let _ = stop_agents.send(true);
    let mut reports: Vec<(String, Option<AgentReport>)> = Vec::new();
    for (station, _, task) in agents {
        let report = match task.await {
            Ok(Ok(r)) => Some(r),
            Ok(Err(e)) => {
                complain(format_args!("demo: agent {} failed: {e}\n", station.id));
                None
            }
            Err(e) => {
                complain(format_args!(
                    "demo: agent {} task failed: {e}\n",
                    station.id
                ));
                None
            }
        };
        reports.push((station.id.clone(), report));
    }
    let snapshots = server.agents();
    let _ = stop_server.send(true);
    let _ = server_task.await;
    let summary = played.map_err(|e| DemoError::Options(e.to_string()))?;
    if let Some(e) = &summary.error {
        return Err(DemoError::Options(e.clone()));
    }

    let heard = reports
        .into_iter()
        .map(|(_, report)| {
            report.map(|r| Heard {
                frames_received: r.stats.frames_received,
                // The agent's own count: the demo does not listen on the receiver's port,
                // which is left to a player.
                rtp_packets: Some(
                    r.sinks
                        .iter()
                        .find(|(name, _)| name.starts_with("rtp:"))
                        .map_or(0, |(_, stats)| stats.packets_sent),
                ),
                programmes: r.programmes,
            })
        })
        .collect();
    let rows = table_rows(&stations, heard, &snapshots, &summary);
    // Without `--live-rtp` the input takes only the console's broadcasts: not the studio's
    // counters the table reports.
    let live = match live_input {
        Some(input) if input.addr.is_some() => Some(input.stop().await),
        Some(input) => {
            input.stop().await;
            None
        }
        None => None,
    };
    Ok(DemoOutcome {
        programme_frames: summary.frames,
        rows,
        live,
    })
}

/// What the demo knows of one agent's playout: from its final report, or (`--keep-running`)
/// from its status while it runs on.
struct Heard {
    frames_received: u64,
    programmes: Vec<ProgrammeRecord>,
    rtp_packets: Option<u64>,
}

impl Heard {
    fn live(status: &AgentStatus) -> Heard {
        Heard {
            frames_received: status.stats().frames_received,
            programmes: status.programmes(),
            rtp_packets: None,
        }
    }
}

fn table_rows(
    stations: &[radio_config::Station],
    heard: Vec<Option<Heard>>,
    snapshots: &[AgentSnapshot],
    summary: &crate::broadcast::on_air::PlaybackSummary,
) -> Vec<DemoRow> {
    stations
        .iter()
        .zip(heard)
        .map(|(station, heard)| {
            let sent = snapshots
                .iter()
                .find(|s| s.commune == station.id)
                .map(|s| s.frames_sent)
                .unwrap_or(0);
            let record = heard.as_ref().and_then(|h| {
                h.programmes
                    .iter()
                    .find(|p| p.programme_id == summary.programme_id)
                    .cloned()
            });
            let played = record.as_ref().map(|p| p.played).unwrap_or(0);
            // Played the programme: every frame sent was played, the end was announced, and
            // what was sent reaches the programme's end (a resumed recording may differ by a
            // frame from rounding its position).
            DemoRow {
                commune: station.id.clone(),
                name: station.name.clone(),
                sent,
                received: heard.as_ref().map_or(0, |h| h.frames_received),
                played,
                lost: summary.frames.saturating_sub(played),
                rtp_packets: heard.as_ref().map_or(Some(0), |h| h.rtp_packets),
                complete: record.is_some_and(|p| p.complete() && p.frames + 2 >= summary.frames),
            }
        })
        .collect()
}

/// The console of a demo that keeps running, bound before the programme plays.
struct ConsoleSetup {
    store: Arc<Store>,
    admin_listener: tokio::net::TcpListener,
    console_listener: tokio::net::TcpListener,
    tls: rustls::ServerConfig,
    ca_cert: PathBuf,
}

impl ConsoleSetup {
    async fn prepare(
        keep: &KeepRunning,
        data_dir: &Path,
        config: &ServerConfig,
        ca: &CertificateAuthority,
    ) -> Result<ConsoleSetup, DemoError> {
        let store = Arc::new(Store::open(data_dir)?);
        // The operator commands (`radio-server status --data-dir ...`) read it.
        store.admin_token()?;
        let bind = |what: &'static str, flag: &'static str, addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|error| DemoError::Io {
                    path: format!(
                        "{what} on {addr} (does another program use the port? set {flag})"
                    ),
                    error,
                })
        };
        let admin_listener = bind("admin endpoint", "--admin-listen", keep.admin_listen).await?;
        let console_listener = bind("console", "--console-listen", keep.console_listen).await?;
        let console_addr = console_listener
            .local_addr()
            .map_err(|error| DemoError::Io {
                path: "console socket".into(),
                error,
            })?;
        let tls = https::server_config(https::CertificateSource::District {
            ca,
            names: https::console_names(&config.server_name, console_addr, &[]),
        })?;
        Ok(ConsoleSetup {
            store,
            admin_listener,
            console_listener,
            tls,
            ca_cert: ca.dir().join("ca.crt"),
        })
    }
}

/// One demo agent: its station, a handle to watch it, and its task.
type RunningAgent = (
    radio_config::Station,
    AgentStatus,
    JoinHandle<Result<AgentReport, relay_agent::AgentError>>,
);

/// The district as the programme left it: every agent and the server still running.
struct Running {
    stations: Vec<radio_config::Station>,
    agents: Vec<RunningAgent>,
    server: Arc<Server>,
    server_task: JoinHandle<()>,
    stop_agents: watch::Sender<bool>,
    stop_server: watch::Sender<bool>,
    live_input: Option<crate::broadcast::live_input::LiveInput>,
    /// Going live from the console, which `--keep-running` serves.
    console_live: Option<Arc<crate::broadcast::console_live::ConsoleLive>>,
}

impl Running {
    /// Agents first, then the server, as the demo always ends: the agents say goodbye to a
    /// server that is still there, instead of waiting out a dead link.
    async fn stop(self) {
        let _ = self.stop_agents.send(true);
        for (station, _, task) in self.agents {
            match task.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => complain(format_args!("demo: agent {} failed: {e}\n", station.id)),
                Err(e) => complain(format_args!(
                    "demo: agent {} task failed: {e}\n",
                    station.id
                )),
            }
        }
        let _ = self.stop_server.send(true);
        let _ = self.server_task.await;
        if let Some(input) = self.live_input {
            input.stop().await;
        }
    }
}

/// After the programme: prints the table from the agents' live counters, serves the console
/// and the admin endpoint, and stops everything on Ctrl-C or SIGTERM.
async fn keep_running(
    running: Running,
    console: ConsoleSetup,
    played: Result<
        crate::broadcast::on_air::PlaybackSummary,
        crate::broadcast::on_air::CommandError,
    >,
    on_air: OnAir,
    district: District,
) -> Result<DemoOutcome, DemoError> {
    let summary = match played {
        Ok(summary) if summary.error.is_none() => summary,
        Ok(summary) => {
            running.stop().await;
            return Err(DemoError::Options(summary.error.unwrap_or_default()));
        }
        Err(e) => {
            running.stop().await;
            return Err(DemoError::Options(e.to_string()));
        }
    };
    let heard = running
        .agents
        .iter()
        .map(|(_, status, _)| Some(Heard::live(status)))
        .collect();
    let rows = table_rows(&running.stations, heard, &running.server.agents(), &summary);
    let outcome = DemoOutcome {
        programme_frames: summary.frames,
        rows,
        live: running
            .live_input
            .as_ref()
            .filter(|input| input.addr.is_some())
            .map(|input| input.stats()),
    };
    say(format_args!("{}", outcome.render()));

    // Registered before `Ctrl-C to stop` is printed, so that a signal sent on reading it is
    // never the default one that kills the process mid-way.
    let signals = Signals::register().map_err(|error| DemoError::Io {
        path: "signal handlers".into(),
        error,
    })?;
    let ConsoleSetup {
        store,
        admin_listener,
        console_listener,
        tls,
        ca_cert,
    } = console;
    let addr = |listener: &tokio::net::TcpListener, what: &str| {
        listener.local_addr().map_err(|error| DemoError::Io {
            path: what.to_owned(),
            error,
        })
    };
    let admin_addr = addr(&admin_listener, "admin socket")?;
    let console_addr = addr(&console_listener, "console socket")?;
    let first_store = store.clone();
    let password = tokio::task::spawn_blocking(move || create_first_admin(first_store.accounts()))
        .await
        .map_err(|e| DemoError::Options(format!("console account: {e}")))??;
    let state = AdminState::new(on_air, store, district, Schedule::default())
        .with_server(running.server.clone())
        .with_console_port(console_addr.port())
        .with_console_live(running.console_live.clone());
    let app = admin::router(Arc::new(state));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let admin_app = app.clone();
    let admin_stop = stopped(stop_rx.clone());
    let admin_task = tokio::spawn(async move {
        if let Err(e) = admin::serve_router(admin_listener, admin_app, admin_stop).await {
            tracing::error!("admin endpoint stopped: {e}");
        }
    });
    let console_stop = stopped(stop_rx);
    let console_task = tokio::spawn(async move {
        if let Err(e) = https::serve(console_listener, tls, app, console_stop).await {
            tracing::error!("console stopped: {e}");
        }
    });

    say(format_args!(
        "admin endpoint on {admin_addr}\nconsole on https://{console_addr}/\n"
    ));
    match password {
        Some(password) => say(format_args!("{}\n", first_admin_notice(&password))),
        None => say(format_args!(
            "demo: the console's accounts are those already in {}: sign in with one of them\n",
            store_dir(&ca_cert)
        )),
    }
    say(format_args!(
        "demo: the browser warns about the console's certificate unless it trusts the district \
         CA, {}\ndemo: the district stays up; Ctrl-C to stop\n",
        ca_cert.display()
    ));

    signals.wait().await;
    let _ = stop_tx.send(true);
    running.stop().await;
    // Requests in flight finish; a browser that holds a connection open does not hold the stop
    // up.
    if tokio::time::timeout(Duration::from_secs(5), async {
        let _ = tokio::join!(admin_task, console_task);
    })
    .await
    .is_err()
    {
        tracing::warn!("admin endpoint or console: requests still open at shutdown, dropped");
    }
    Ok(outcome)
}

/// The data directory a CA certificate at `<data dir>/ca/ca.crt` belongs to, for messages.
fn store_dir(ca_cert: &Path) -> String {
    ca_cert
        .parent()
        .and_then(Path::parent)
        .unwrap_or(ca_cert)
        .display()
        .to_string()
}

/// Ctrl-C and SIGTERM, listened for from the moment this is made (unlike
/// `relay_agent::process::shutdown_signal`, which registers only once polled).
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// A progress line on standard output. One the reader went away before (`radio-server demo |
/// head -1`) is dropped: the demo still runs to its end, and `println!` would panic instead.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line).and_then(|()| out.flush());
}

/// A problem on standard error, with the same tolerance of a closed stream as [`say`].
fn complain(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_fmt(line);
}

fn agent_error(commune: &str, e: impl std::fmt::Display) -> DemoError {
    DemoError::Agent {
        commune: commune.to_string(),
        reason: e.to_string(),
    }
}

fn create_dir(path: &Path) -> Result<(), DemoError> {
    std::fs::create_dir_all(path).map_err(|error| DemoError::Io {
        path: path.display().to_string(),
        error,
    })
}

fn display_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Tries at finding each free port pair.
const PORT_PAIR_TRIES: usize = 64;

/// For each of `n` stations, the port of its RTP receiver (the one its SDP names), free for a
/// player such as ffplay to open while the demo plays: an even port and the next one, free on
/// every address (a player binds both, RTP and RTCP, RFC 3550 §11). The demo itself does not
/// listen there, or a player would find the port in use. The pairs are bound here and held
/// until the agents have bound their own sockets, so that none of those lands on a receiver's
/// port; dropping them frees the ports. The kernel does not hand ports out again soon, so
/// another program is unlikely to take them meanwhile.
fn reserve_rtp_ports(n: usize) -> std::io::Result<Vec<(u16, [UdpSocket; 2])>> {
    (0..n)
        .map(|_| {
            for _ in 0..PORT_PAIR_TRIES {
                let rtp = UdpSocket::bind("0.0.0.0:0")?;
                let port = rtp.local_addr()?.port();
                if port % 2 != 0 || port == u16::MAX {
                    continue;
                }
                if let Ok(rtcp) = UdpSocket::bind(("0.0.0.0", port + 1)) {
                    return Ok((port, [rtp, rtcp]));
                }
            }
            Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("no free RTP/RTCP port pair in {PORT_PAIR_TRIES} tries"),
            ))
        })
        .collect()
}
