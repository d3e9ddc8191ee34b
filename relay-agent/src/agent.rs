//! [`Agent`]: one relay agent, built from its config and enrolment bundle, run until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use radio_config::{AgentConfig, SinkSpec};
use radio_proto::{JournalEvent, OutputState};
use tokio::sync::watch;

use crate::amplifier::{spawn_amplifier_thread, AmplifierInputs, Amplifiers};
use crate::bundle::Bundle;
use crate::cached_airing::CachedAiring;
use crate::connection::{Link, LinkJournal, LinkState};
use crate::journal::{spawn_writer, unix_ms, Journal, JournalSender};
use crate::playout::{
    spawn_playout_thread, CacheInput, Playout, PlayoutReport, PlayoutStats, ProgrammeRecord,
};
use crate::prefetch_cache::{CacheError, PrefetchCache};
use crate::sink::{open_sink, ClusterWatch, Sink, SinkError, SinkStats, SinkTarget};
use crate::supervise::{Died, SupervisedThread};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The config names no sink.
    #[error(
        "no sinks configured: give at least one --sink rtp:HOST:PORT, wav:PATH or pipe:COMMAND"
    )]
    NoSinks,
    /// A sink could not be opened.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// TLS material in the bundle is unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Local I/O failed (UDP socket, playout thread).
    #[error("{0}")]
    Io(String),
    /// The uptime journal cannot be opened or written.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// The prefetch cache cannot be opened.
    #[error(transparent)]
    Prefetch(#[from] CacheError),
    /// `[amplifier]` cannot be used.
    #[error(transparent)]
    Amplifier(#[from] radio_config::ConfigError),
    /// A thread or task the agent needs ended while it was running (a panic, a sink that died):
    /// the agent stopped at once, without closing its journal, as a crash would.
    #[error(transparent)]
    Died(#[from] Died),
}

/// What an agent did, returned when it stops.
#[derive(Debug, Clone)]
pub struct AgentReport {
    /// The commune this agent serves.
    pub commune: String,
    /// Playout counters.
    pub stats: PlayoutStats,
    /// Programmes seen, with proof of play.
    pub programmes: Vec<ProgrammeRecord>,
    /// Per-sink statistics.
    pub sinks: Vec<(String, SinkStats)>,
    /// Sessions established with the server.
    pub sessions: u64,
}

/// A cheap handle to watch a running agent.
#[derive(Debug, Clone)]
pub struct AgentStatus {
    playout: Arc<Mutex<Playout>>,
    link: Arc<Mutex<LinkState>>,
}

impl AgentStatus {
    /// Whether a session with the server is up.
    pub fn connected(&self) -> bool {
        self.link.lock().map(|l| l.connected).unwrap_or(false)
    }

    /// Playout counters so far.
    pub fn stats(&self) -> PlayoutStats {
        self.playout
            .lock()
            .map(|p| p.stats().clone())
            .unwrap_or_default()
    }

    /// Programmes seen so far.
    pub fn programmes(&self) -> Vec<ProgrammeRecord> {
        self.playout
            .lock()
            .map(|p| p.programmes().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether anything is being played now.
    pub fn on_air(&self) -> bool {
        self.playout.lock().map(|p| p.on_air()).unwrap_or(false)
    }
}

/// One relay agent.
pub struct Agent {
    config: AgentConfig,
    bundle: Bundle,
    sinks: Vec<Box<dyn Sink>>,
    client_config: quinn::ClientConfig,
    status: AgentStatus,
    /// The uptime journal and whether the previous run ended cleanly; `None` for an embedded
    /// agent (a server relaying its upstream).
    journal: Option<(Arc<Journal>, bool)>,
    /// The prefetch cache; `None` for an embedded agent, which airs only what streams.
    prefetch: Option<Arc<Mutex<PrefetchCache>>>,
    /// The amplifiers to switch (`[amplifier]`); `None`: nothing is switched.
    amplifiers: Option<Amplifiers>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("commune", &self.bundle.commune)
            .field(
                "sinks",
                &self.sinks.iter().map(|s| s.describe()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Agent {
    /// Opens the sinks and prepares TLS; fails early on anything misconfigured.
    pub fn new(config: AgentConfig, bundle: Bundle) -> Result<Self, AgentError> {
        if config.sinks.is_empty() {
            return Err(AgentError::NoSinks);
        }
        let sinks = config
            .sinks
            .iter()
            .map(|spec| open_sink(&sink_target(spec, &config), &bundle.station_name))
            .collect::<Result<Vec<_>, _>>()?;
        let (journal, clean_previous) = Journal::open(
            &config.state_dir.join("journal"),
            usize::try_from(config.journal_max_records).unwrap_or(usize::MAX),
        )?;
        let prefetch = PrefetchCache::open(
            &config.state_dir.join("prefetch"),
            config.prefetch_max_mb.saturating_mul(1024 * 1024),
            unix_ms(),
        )?;
        tracing::info!(
            "prefetch cache opened: {} airings listed, {} bytes held",
            prefetch.manifest().items.len(),
            prefetch.used_bytes()
        );
        let amplifiers = config
            .amplifier
            .as_ref()
            .map(Amplifiers::from_config)
            .transpose()?;
        let mut agent = Self::with_sinks(config, bundle, sinks)?;
        agent.amplifiers = amplifiers;
        agent.journal = Some((Arc::new(journal), clean_previous));
        agent.prefetch = Some(Arc::new(Mutex::new(prefetch)));
        Ok(agent)
    }

    /// An agent that plays into sinks the caller made instead of `config.sinks`: a server
    /// relaying its upstream server is an agent of that server whose sink feeds its own
    /// on-air controller.
    pub fn with_sinks(
        config: AgentConfig,
        bundle: Bundle,
        sinks: Vec<Box<dyn Sink>>,
    ) -> Result<Self, AgentError> {
        if sinks.is_empty() {
            return Err(AgentError::NoSinks);
        }
        let client_config = crate::tls::client_config(&bundle)?;
        let playout = Playout::new(
            Duration::from_millis(config.playout_delay_ms.into()),
            config.jitter_capacity_frames as usize,
        );
        Ok(Self {
            config,
            bundle,
            sinks,
            client_config,
            journal: None,
            prefetch: None,
            amplifiers: None,
            status: AgentStatus {
                playout: Arc::new(Mutex::new(playout)),
                link: Arc::new(Mutex::new(LinkState::default())),
            },
        })
    }

    /// A handle to watch the agent while it runs.
    pub fn status(&self) -> AgentStatus {
        self.status.clone()
    }

    /// Runs until `shutdown` completes: connects (and reconnects) to the server and plays out.
    ///
    /// Every thread and task it starts runs until then. Should one end before (a panic, a sink
    /// that died), the others are stopped at once and [`AgentError::Died`] says which and how;
    /// the journal is left open, so the next start records that this run did not end cleanly.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<AgentReport, AgentError> {
        let server = self
            .config
            .server
            .clone()
            .unwrap_or_else(|| self.bundle.server.clone());
        // A dual-stack socket reaches the server whether its name resolves to IPv4 or IPv6;
        // hosts with IPv6 disabled fall back to IPv4 only.
        let mut expiry = tokio::spawn(watch_certificate_expiry(self.bundle.clone()));
        let dual = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
        let v4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
        let endpoint = quinn::Endpoint::client(dual)
            .or_else(|_| quinn::Endpoint::client(v4))
            .map_err(|e| AgentError::Io(format!("cannot open UDP socket: {e}")))?;
        // The journal first: the start is its first record, and every later producer needs
        // the writer.
        let written = Arc::new(tokio::sync::Notify::new());
        let mut journal = match &self.journal {
            Some((journal, clean_previous)) => {
                journal.append(
                    unix_ms(),
                    JournalEvent::ProcessStart {
                        clean_previous: *clean_previous,
                        software: concat!("relay-agent/", env!("CARGO_PKG_VERSION")).into(),
                    },
                )?;
                if !clean_previous {
                    tracing::warn!(
                        "the previous run did not stop cleanly (power cut or crash); journaled"
                    );
                }
                tracing::info!(
                    "journal opened: {} records waiting for upload",
                    journal.len()
                );
                let (sender, writer) = spawn_writer(journal.clone(), written.clone())
                    .map_err(|e| AgentError::Io(format!("cannot start journal thread: {e}")))?;
                Some((journal.clone(), sender, writer))
            }
            None => None,
        };
        let link_up = Arc::new(AtomicBool::new(false));
        let airing = Arc::new(Mutex::new(CachedAiring::new()));
        let progress = crate::service_manager::Progress::new();
        let report = PlayoutReport {
            progress: progress.clone(),
            journal: journal.as_ref().map(|(_, sender, _)| sender.clone()),
            output: Arc::new(AtomicU8::new(OutputState::Silent as u8)),
            cache: self.prefetch.as_ref().map(|_| CacheInput {
                airing: airing.clone(),
                link_up: link_up.clone(),
            }),
            outputs: Default::default(),
        };
        let mut loader = self
            .prefetch
            .clone()
            .map(|cache| tokio::spawn(crate::prefetch_loader::run(cache, airing.clone())));
        let mut heartbeat = journal.as_ref().map(|(_, sender, _)| {
            tokio::spawn(journal_heartbeats(
                sender.clone(),
                self.status.clone(),
                report.output.clone(),
                Duration::from_secs(self.config.journal_heartbeat_secs),
            ))
        });
        let (health_outputs, health_output) = (report.outputs.clone(), report.output.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let mut amplifier_thread = match self.amplifiers {
            Some(amplifiers) => Some(
                spawn_amplifier_thread(
                    amplifiers,
                    AmplifierInputs {
                        playout: self.status.playout.clone(),
                        output: report.output.clone(),
                        prefetch: self.prefetch.clone(),
                        playout_delay: Duration::from_millis(self.config.playout_delay_ms.into()),
                    },
                    journal.as_ref().map(|(_, sender, _)| sender.clone()),
                    stop.clone(),
                )
                .map_err(|e| AgentError::Io(format!("cannot start amplifier thread: {e}")))?,
            ),
            None => None,
        };
        let mut playout_thread = spawn_playout_thread(
            self.status.playout.clone(),
            self.sinks,
            stop.clone(),
            report,
        )
        .map_err(|e| AgentError::Io(format!("cannot start playout thread: {e}")))?;
        let (stop_link, stop_rx) = watch::channel(false);
        let link = Link {
            endpoint: endpoint.clone(),
            client_config: self.client_config,
            bundle: self.bundle.clone(),
            server,
            playout: self.status.playout.clone(),
            state: self.status.link.clone(),
            reconnect_min: Duration::from_millis(self.config.reconnect_min_ms),
            reconnect_max: Duration::from_millis(self.config.reconnect_max_ms),
            journal: journal.as_ref().map(|(journal, sender, _)| LinkJournal {
                journal: journal.clone(),
                sender: sender.clone(),
                written: written.clone(),
            }),
            prefetch: self.prefetch.clone(),
            link_up,
            health: crate::connection::HealthProbe {
                roots: crate::box_health::HealthRoots::from_env(),
                state_dir: self.config.state_dir.clone(),
                outputs: health_outputs,
                output: health_output,
            },
        };
        let mut link_task = tokio::spawn(link.run(stop_rx));
        // A hang cannot be unwound like a death: the playout thread may hold the playout state
        // every task waits on. The watchdog ends the process itself.
        let watchdog = crate::service_manager::spawn_watchdog(
            progress,
            "playout thread",
            crate::service_manager::stall_limit(),
            |died| {
                tracing::error!("{died}; exiting so the service manager restarts the agent");
                std::process::exit(crate::service_manager::EXIT_HUNG);
            },
        )
        .map_err(|e| AgentError::Io(format!("cannot start the watchdog thread: {e}")))?;
        // Ready once the journal is open and the playout plays: from here a start is recorded
        // and every slot reaches the outputs, connected or not.
        crate::service_manager::notify_ready(&format!(
            "commune {}: playing to {} output(s)",
            self.bundle.commune,
            self.config.sinks.len()
        ));
        let ended = {
            let writer = journal.as_mut().map(|(_, _, writer)| writer);
            tokio::select! {
                _ = shutdown => None,
                _ = playout_thread.ended() => Some(Early::Playout),
                _ = thread_ended(writer) => Some(Early::Died(Died::ended(
                    "journal writer thread",
                    "it stopped while the agent was running",
                ))),
                _ = thread_ended(amplifier_thread.as_mut()) => Some(Early::Died(Died::ended(
                    "amplifier thread",
                    "it stopped while the agent was running",
                ))),
                ended = &mut link_task => Some(Early::Died(Died::task("link task", ended))),
                ended = task_ended(&mut heartbeat) => {
                    Some(Early::Died(Died::task("journal heartbeat task", ended)))
                }
                ended = task_ended(&mut loader) => {
                    Some(Early::Died(Died::task("prefetch loader task", ended)))
                }
                ended = &mut expiry => {
                    Some(Early::Died(Died::task("certificate expiry task", ended)))
                }
            }
        };
        if let Some(early) = ended {
            let died = match early {
                // It has ended: its result says how.
                Early::Playout => match playout_thread.join() {
                    Ok(Ok(_)) => {
                        Died::ended("playout thread", "it returned while the agent was running")
                    }
                    Ok(Err(died)) | Err(died) => died,
                },
                Early::Died(died) => died,
            };
            // Nothing waits for a clean stop: not the link's goodbye, not the sinks' finish,
            // not the journal's close, whose absence is how the next start knows of the crash.
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = stop_link.send(true);
            for task in [Some(link_task), heartbeat, loader, Some(expiry)]
                .into_iter()
                .flatten()
            {
                task.abort();
            }
            endpoint.close(quinn::VarInt::from_u32(0), b"agent failed");
            return Err(died.into());
        }
        tracing::info!(commune = %self.bundle.commune, "shutting down");
        crate::service_manager::notify_stopping();
        // The playout stops advancing while it drains: not a hang.
        drop(watchdog);
        let _ = stop_link.send(true);
        let _ = link_task.await;
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let sinks = tokio::task::spawn_blocking(move || playout_thread.join())
            .await
            .map_err(|e| AgentError::Io(format!("playout thread: {e}")))???;
        if let Some(thread) = amplifier_thread {
            // It holds a journal sender: the writer drains only once it is gone. The
            // amplifiers are left as they are; the next start switches them to what the
            // rules want.
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| AgentError::Io(format!("amplifier thread: {e}")))??;
        }
        for task in heartbeat.into_iter().chain(loader).chain([expiry]) {
            task.abort();
            let _ = task.await;
        }
        if let Some((journal, sender, writer)) = journal {
            // Every other sender is gone with its task or thread: the writer drains and ends.
            drop(sender);
            tokio::task::spawn_blocking(move || writer.join())
                .await
                .map_err(|e| AgentError::Io(format!("journal thread: {e}")))??;
            journal.close(unix_ms())?;
        }
        let status = self.status;
        Ok(AgentReport {
            commune: self.bundle.commune,
            stats: status.stats(),
            programmes: status.programmes(),
            sinks,
            sessions: status.link.lock().map(|l| l.sessions).unwrap_or(0),
        })
    }
}

/// What ended before the agent was asked to stop.
enum Early {
    Playout,
    Died(Died),
}

/// Completes when the thread has ended; never without one.
async fn thread_ended<T>(thread: Option<&mut SupervisedThread<T>>) {
    match thread {
        Some(thread) => thread.ended().await,
        None => std::future::pending().await,
    }
}

/// What the task returned once it has ended; never without one.
async fn task_ended(
    task: &mut Option<tokio::task::JoinHandle<()>>,
) -> Result<(), tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// A heartbeat record every `every`: link, output and counters.
async fn journal_heartbeats(
    sender: JournalSender,
    status: AgentStatus,
    output: Arc<AtomicU8>,
    every: Duration,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let stats = status.stats();
        let output = match output.load(std::sync::atomic::Ordering::Relaxed) {
            1 => OutputState::OnAir,
            2 => OutputState::Underrun,
            _ => OutputState::Silent,
        };
        sender.record(JournalEvent::Heartbeat {
            link_up: status.connected(),
            output,
            frames_received: stats.frames_received,
            frames_played: stats.frames_played,
            frames_lost: stats.frames_lost,
            heartbeats_dropped: 0,
        });
    }
}

/// Where an RTP sink writes its SDP when the spec does not say: beside the agent's state.
fn sink_target(spec: &SinkSpec, config: &AgentConfig) -> SinkTarget {
    match spec {
        SinkSpec::Rtp {
            dest,
            sdp,
            cluster,
            port,
        } => SinkTarget::Rtp {
            dest: *dest,
            sdp: sdp
                .clone()
                .unwrap_or_else(|| config.state_dir.join(format!("rtp-{}.sdp", dest.port()))),
            local_port: *port,
            cluster: cluster.as_ref().map(|id| ClusterWatch {
                id: id.clone(),
                timeout: Duration::from_secs(config.cluster_timeout_secs),
            }),
        },
        SinkSpec::Wav { path } => SinkTarget::Wav { path: path.clone() },
        SinkSpec::Pipe { command } => SinkTarget::Pipe {
            command: command.clone(),
        },
    }
}

/// Days ahead of its certificate's expiry from which the agent warns its operator.
const EXPIRY_WARNING_DAYS: i64 = 90;

/// Warns at start and every day while the station's certificate expires within
/// [`EXPIRY_WARNING_DAYS`]: an agent runs unattended for years, and its log is what the
/// station's operator reads.
async fn watch_certificate_expiry(bundle: Bundle) {
    let mut tick = tokio::time::interval(Duration::from_secs(24 * 3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = i64::try_from(unix_ms() / 1000).unwrap_or(i64::MAX);
        if let Some(warning) = bundle.expiry_warning(now, EXPIRY_WARNING_DAYS) {
            tracing::warn!(commune = %bundle.commune, "{warning}");
        }
    }
}
