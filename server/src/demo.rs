//! `radio-server demo`: the whole path on one machine. It starts the server and one relay agent
//! per Bình Sơn station on loopback, each enrolled like a real agent (certificate, bundle file,
//! mutual TLS), plays the programme once every agent is connected, and reports per station.
//!
//! Each agent sends RTP to a receiver port on loopback that its SDP names and that the demo
//! keeps free (`reserve_rtp_ports`): a player opening the SDP (ffplay, ffmpeg, VLC) hears the
//! station while the demo plays. The table's RTP packets are the agents' own counts.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::Duration;

use radio_config::{AgentConfig, District, ServerConfig, SinkSpec};
use relay_agent::{Agent, AgentReport, Bundle};
use tokio::sync::watch;

use crate::broadcast::on_air::{file_bulletin, play_bulletin};
use crate::identity::certificate_authority::CertificateAuthority;
use crate::link::server::{self, Server};
use crate::pipeline::{PipelineError, ProgrammeEncoder};
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
}

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
    /// RTP packets its RTP sink sent towards the station's receiver (the port its SDP names).
    pub rtp_packets: u64,
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
            out.push_str(&format!(
                "{:<18} {:<16} {:>7} {:>8} {:>7} {:>5} {:>8}\n",
                r.commune, r.name, r.sent, r.received, r.played, r.lost, r.rtp_packets
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
    let endpoint = server::bind(&config, &ca)?;
    let addr = endpoint.local_addr().map_err(|error| DemoError::Io {
        path: "server socket".into(),
        error,
    })?;
    let stations: Vec<_> = district.stations.iter().take(n).cloned().collect();
    let server = Server::new(config.clone(), district.clone());
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
    let live_input = studio.rtp;
    if let Some(input) = &live_input {
        say(format_args!(
            "demo: live studio RTP accepted from 127.0.0.1 on {}\n",
            input.addr
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

    let rows = stations
        .iter()
        .zip(reports)
        .map(|(station, (_, report))| {
            let sent = snapshots
                .iter()
                .find(|s| s.commune == station.id)
                .map(|s| s.frames_sent)
                .unwrap_or(0);
            let record = report.as_ref().and_then(|r| {
                r.programmes
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
                received: report
                    .as_ref()
                    .map(|r| r.stats.frames_received)
                    .unwrap_or(0),
                played,
                lost: summary.frames.saturating_sub(played),
                // The agent's own count: the demo does not listen on the receiver's port, which
                // is left to a player.
                rtp_packets: report
                    .as_ref()
                    .and_then(|r| r.sinks.iter().find(|(name, _)| name.starts_with("rtp:")))
                    .map_or(0, |(_, stats)| stats.packets_sent),
                complete: record.is_some_and(|p| p.complete() && p.frames + 2 >= summary.frames),
            }
        })
        .collect();
    let live = match live_input {
        Some(input) => Some(input.stop().await),
        None => None,
    };
    Ok(DemoOutcome {
        programme_frames: summary.frames,
        rows,
        live,
    })
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
