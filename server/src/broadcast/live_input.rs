//! The live input: the district studio's RTP stream on a UDP address, accepted only from the
//! allowlisted senders, or raw PCM from a local mixer on a pipe or standard input. It goes on
//! air by itself when audio arrives (unless `auto_start` is off) and comes off when it stops
//! (no packets, or silence, for the configured time), even if it was started by hand.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use radio_config::{LiveSettings, RelaySettings};
use tokio::sync::{mpsc, watch};

use crate::broadcast::console_live::ConsoleLive;
use crate::broadcast::on_air::{CommandError, OnAir, OnAirConfig};
use crate::ingest::live_rtp::{
    run_live_input, ConsolePacket, LiveConfigError, LiveEvent, LiveInputs, LiveRtpConfig,
    LiveRtpReceiver, LiveSource, LiveStats, LiveStatsHandle, ReleaseTimes,
};
use crate::ingest::pcm_pipe::{run_pcm_pipe_with, PcmFormat, PipeConfig};
use crate::ingest::srtp::MasterKey;
use crate::ingest::upstream::Upstream;
use crate::ingest::PcmFrame;
use crate::schedule::{ScheduleError, Targets};

/// PCM frames of live audio buffered between the ingest and the clock.
const LIVE_QUEUE: usize = 16;

/// Console packets waiting for the live input's task: a few frames, since a browser whose
/// packets pile up beyond that is behind anyway (see [`ConsoleLive`]).
const CONSOLE_QUEUE: usize = 16;

/// The same for the pipe, kept below the playback's live backlog limit (10 frames) so that
/// no frame is ever trimmed: a pipe has flow control, and a mixer or recording writing ahead
/// of the clock is paced by it instead of losing audio.
const PIPE_QUEUE: usize = 8;

/// The id the studio's live broadcast goes on air under.
pub const STUDIO: &str = "studio";

/// Why the live input could not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveInputError {
    /// The UDP address could not be bound.
    #[error("live RTP input: cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The ingest settings are invalid.
    #[error("live RTP input: {0}")]
    Config(#[from] LiveConfigError),
    /// `live.pipe` names something that cannot be read as a pipe.
    #[error("live.pipe: {0}")]
    Pipe(String),
    /// `live.srtp_key_file` cannot be used.
    #[error("live.srtp_key_file: {0}")]
    SrtpKey(String),
}

/// The RTP settings of `live`, its SRTP key read.
pub fn rtp_config(live: &LiveSettings) -> Result<LiveRtpConfig, LiveInputError> {
    let srtp = match &live.srtp_key_file {
        Some(path) => Some(MasterKey::from_bytes(
            &radio_config::read_srtp_key(path).map_err(LiveInputError::SrtpKey)?,
        )),
        None => None,
    };
    Ok(LiveRtpConfig {
        allow: live.allow.clone(),
        srtp,
        jitter_delay: Duration::from_millis(live.jitter_delay_ms),
        no_packet_timeout: Duration::from_millis(live.no_packet_timeout_ms),
        silence_timeout: Duration::from_millis(live.silence_timeout_ms),
        silence_threshold_dbfs: live.silence_threshold_dbfs as f32,
        ..LiveRtpConfig::default()
    })
}

/// The pipe settings of `live`.
pub fn pipe_config(live: &LiveSettings) -> PipeConfig {
    PipeConfig {
        format: PcmFormat {
            rate: live.pipe_sample_rate,
            channels: live.pipe_channels,
        },
        silence_timeout: Duration::from_millis(live.silence_timeout_ms),
        silence_threshold_dbfs: live.silence_threshold_dbfs as f32,
    }
}

/// A running live RTP input: the studio's UDP socket and/or the console's broadcasts.
#[derive(Debug)]
pub struct LiveInput {
    /// Where it listens for the studio; `None` when only the console feeds it.
    pub addr: Option<SocketAddr>,
    console: mpsc::Sender<ConsolePacket>,
    stats: Arc<LiveStatsHandle>,
    release: Arc<ReleaseTimes>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<LiveStats>,
}

impl LiveInput {
    /// Listens for studio RTP on `addr` from the senders `config.allow`s. Returns the input and
    /// the PCM frames for the on-air controller ([`crate::broadcast::on_air::OnAirConfig::live`]) and its
    /// start/stop events.
    /// With `addr` `None` it takes only the console's broadcasts ([`LiveInput::console_feed`]).
    pub async fn start(
        addr: Option<SocketAddr>,
        config: LiveRtpConfig,
    ) -> Result<
        (
            LiveInput,
            mpsc::Receiver<Box<PcmFrame>>,
            mpsc::Receiver<LiveEvent>,
        ),
        LiveInputError,
    > {
        let (socket, addr) = match addr {
            Some(addr) => {
                let socket = tokio::net::UdpSocket::bind(addr)
                    .await
                    .map_err(|error| LiveInputError::Bind { addr, error })?;
                let addr = socket
                    .local_addr()
                    .map_err(|error| LiveInputError::Bind { addr, error })?;
                (Some(socket), Some(addr))
            }
            None => (None, None),
        };
        let receiver = LiveRtpReceiver::new(config)?;
        let (console, console_rx) = mpsc::channel(CONSOLE_QUEUE);
        let stats = receiver.stats_handle();
        let (frames_tx, frames_rx) = mpsc::channel(LIVE_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(16);
        let (stop, mut stop_rx) = watch::channel(false);
        let release = Arc::new(ReleaseTimes::default());
        let inputs = LiveInputs {
            socket,
            console: Some(console_rx),
        };
        let task = tokio::spawn(run_live_input(
            inputs,
            receiver,
            frames_tx,
            Some(release.clone()),
            events_tx,
            async move {
                let _ = stop_rx.changed().await;
            },
        ));
        Ok((
            LiveInput {
                addr,
                console,
                stats,
                release,
                stop,
                task,
            },
            frames_rx,
            events_rx,
        ))
    }

    /// Counters so far.
    pub fn stats(&self) -> LiveStats {
        self.stats.snapshot()
    }

    /// Where the console's broadcasts go in.
    pub fn console_feed(&self) -> mpsc::Sender<ConsolePacket> {
        self.console.clone()
    }

    /// When each frame in the channel was due on the jitter buffer's release grid
    /// ([`crate::broadcast::on_air::OnAirConfig::live_release`]).
    pub fn release_times(&self) -> Arc<ReleaseTimes> {
        self.release.clone()
    }

    /// Stops listening; returns the final counters.
    pub async fn stop(self) -> LiveStats {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_else(|_| self.stats.snapshot())
    }
}

/// Raw PCM from a local mixer: standard input (`-`), or a path. A FIFO is opened again after
/// each writer, so the mixer can stop and start; standard input and plain files are read once.
#[derive(Debug)]
pub struct PipeInput {
    /// What it reads.
    pub path: PathBuf,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PipeInput {
    /// Starts reading `path` (`-` for standard input).
    pub fn start(
        path: &Path,
        config: PipeConfig,
    ) -> (
        PipeInput,
        mpsc::Receiver<Box<PcmFrame>>,
        mpsc::Receiver<LiveEvent>,
    ) {
        let (frames_tx, frames_rx) = mpsc::channel(PIPE_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(16);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(read_pipe(
            path.to_path_buf(),
            config,
            frames_tx,
            events_tx,
            stop_rx,
        ));
        (
            PipeInput {
                path: path.to_path_buf(),
                stop,
                task,
            },
            frames_rx,
            events_rx,
        )
    }

    /// Stops reading.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Pause before a path is opened again after an error, so a missing file does not turn into
/// a busy loop.
const REOPEN_DELAY: Duration = Duration::from_secs(1);

/// How often a FIFO without a writer is looked at again. A FIFO is opened without blocking
/// (a blocked open could not be cancelled at shutdown), so "no writer yet" reads as an empty
/// input and is retried at this pace: it bounds how late a mixer that starts writing is heard.
const FIFO_POLL: Duration = Duration::from_millis(200);

/// What the live PCM path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PipeKind {
    /// Standard input: read once, to its end.
    Stdin,
    /// A FIFO: reopened after each writer, for as long as the server runs.
    Fifo,
    /// Anything else (a recording, a device): read once.
    File,
}

type PcmReader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;

/// Opens `path` without ever blocking: pipes (standard input included) are read through the
/// event loop, so that a shutdown never waits for a writer that does not come.
async fn open_pcm(path: &Path) -> std::io::Result<(PipeKind, PcmReader)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    use tokio::net::unix::pipe;

    if path.as_os_str() == "-" {
        let file = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
        let kind = file.metadata()?.file_type();
        if kind.is_fifo() {
            return Ok((PipeKind::Stdin, Box::new(pipe::Receiver::from_file(file)?)));
        }
        if kind.is_file() {
            return Ok((PipeKind::Stdin, Box::new(tokio::fs::File::from_std(file))));
        }
        return Err(unsupported(path));
    }
    let kind = tokio::fs::metadata(path).await?.file_type();
    // Checked again at every open: the mixer may have made the FIFO after the server started.
    radio_config::check_pipe_permissions(path)
        .map_err(|m| std::io::Error::new(std::io::ErrorKind::PermissionDenied, m))?;
    if kind.is_fifo() {
        let receiver = pipe::OpenOptions::new().open_receiver(path)?;
        return Ok((PipeKind::Fifo, Box::new(receiver)));
    }
    if kind.is_file() {
        return Ok((PipeKind::File, Box::new(tokio::fs::File::open(path).await?)));
    }
    Err(unsupported(path))
}

/// A terminal, socket or device: reads from it could block a thread that a shutdown would wait
/// for, and none of them is how a mixer delivers PCM.
fn unsupported(path: &Path) -> std::io::Error {
    let what = if path.as_os_str() == "-" {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    };
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!(
            "{what} is neither a pipe nor a file: give live.pipe a FIFO (mkfifo) or a file, or \
             \"-\" with the mixer piped in (mixer | radio-server run …)"
        ),
    )
}

/// Refuses a `live.pipe` that can never work (checked at start; a path that does not exist
/// yet is fine: the mixer may create its FIFO later).
pub fn check_pipe(path: &Path) -> Result<(), LiveInputError> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let kind = if path.as_os_str() == "-" {
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map(std::fs::File::from)
            .and_then(|f| f.metadata())
            .map(|m| m.file_type())
    } else {
        match std::fs::metadata(path) {
            Ok(m) => Ok(m.file_type()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => Err(e),
        }
    };
    match kind {
        Ok(kind) if kind.is_fifo() || kind.is_file() => {
            radio_config::check_pipe_permissions(path).map_err(LiveInputError::Pipe)
        }
        Ok(_) => Err(LiveInputError::Pipe(unsupported(path).to_string())),
        Err(e) => Err(LiveInputError::Pipe(format!("{}: {e}", path.display()))),
    }
}

async fn read_pipe(
    path: PathBuf,
    config: PipeConfig,
    frames: mpsc::Sender<Box<PcmFrame>>,
    events: mpsc::Sender<LiveEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        let stopped = {
            let mut stop = stop.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        };
        let (kind, wait) = match open_pcm(&path).await {
            Ok((kind, reader)) => {
                if std::mem::take(&mut failing) {
                    tracing::info!(path = %path.display(), "live PCM input can be read again");
                }
                let result =
                    run_pcm_pipe_with(reader, config, frames.clone(), events.clone(), stopped)
                        .await;
                match result {
                    Ok(stats) if stats.bytes > 0 => tracing::info!(
                        path = %path.display(),
                        "live PCM input ended after {} bytes",
                        stats.bytes
                    ),
                    // A FIFO nobody writes to yet.
                    Ok(_) => {}
                    Err(e) => tracing::warn!(path = %path.display(), "{e}"),
                }
                (kind, FIFO_POLL)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                tracing::error!(path = %path.display(), "live PCM input: {e}");
                return;
            }
            Err(e) => {
                // Said once, not every second: the file may appear later (a mixer starting).
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(
                        path = %path.display(),
                        "live PCM input: cannot open: {e}; trying again every {} s",
                        REOPEN_DELAY.as_secs()
                    );
                }
                (PipeKind::Fifo, REOPEN_DELAY)
            }
        };
        if kind != PipeKind::Fifo || *stop.borrow() || frames.is_closed() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Follows the studio: on air at `targets` when it starts sending if `auto_start`, and off
/// air when it stops (no packets or silence for the configured time), however live started.
pub async fn follow_studio(
    on_air: OnAir,
    mut events: mpsc::Receiver<LiveEvent>,
    targets: Targets,
    auto_start: bool,
) {
    // The console's broadcasts come through the same input but are put on and off air by
    // the console itself ([`ConsoleLive`]): their events are not the studio's.
    let mut console = false;
    while let Some(event) = events.recv().await {
        let result = match event {
            LiveEvent::Receiving {
                from: LiveSource::Console(from),
            } => {
                tracing::info!(%from, "the console is sending");
                console = true;
                Ok(())
            }
            LiveEvent::Ended { reason } if std::mem::take(&mut console) => {
                tracing::info!(?reason, "the console stopped sending");
                Ok(())
            }
            LiveEvent::Receiving { from } if auto_start => {
                tracing::info!(?from, "studio is sending: live on air");
                on_air.live(STUDIO, targets.clone()).await
            }
            LiveEvent::Receiving { from } => {
                tracing::info!(
                    ?from,
                    "studio is sending; it goes on air with `radio-server live start`"
                );
                Ok(())
            }
            LiveEvent::Ended { reason } => {
                tracing::info!(?reason, "studio stopped: live off air");
                on_air.stop_live(STUDIO).await
            }
        };
        match result {
            Ok(()) => {}
            // Started by hand already, or stopped by hand already: nothing to do.
            Err(CommandError::Schedule(
                ScheduleError::AlreadyActive { .. } | ScheduleError::NotActive { .. },
            )) => {}
            Err(e) => tracing::warn!("live: {e}"),
        }
    }
}

/// What [`spawn_on_air`] starts the controller with.
#[derive(Debug, Default)]
pub struct OnAirSetup {
    /// Opus bitrate.
    pub bitrate: u32,
    /// The studio input, if any.
    pub live: LiveSettings,
    /// Who hears the studio when it goes on air by itself.
    pub live_targets: Targets,
    /// HTTP/Icecast relay behaviour.
    pub relay: RelaySettings,
    /// Upstream radio servers, bundles loaded.
    pub upstreams: Vec<Upstream>,
}

/// The studio inputs that [`spawn_on_air`] started. Keep it for as long as the studio should
/// be heard: dropping it stops listening.
#[derive(Debug, Default)]
pub struct Studio {
    /// The RTP input (also the console's, when the server has no studio input).
    pub rtp: Option<LiveInput>,
    /// The PCM pipe input.
    pub pipe: Option<PipeInput>,
    /// Broadcasting from the console: `None` when the studio is a pipe, which has no clock
    /// of its own for a second source to share.
    pub console: Option<Arc<ConsoleLive>>,
}

/// Starts the on-air controller and the studio input `setup.live` describes.
pub async fn spawn_on_air(
    outputs: impl IntoIterator<Item = Arc<crate::broadcast::station_output::StationOutput>>,
    ladder: crate::schedule::ladder::Ladder,
    setup: OnAirSetup,
) -> Result<(OnAir, Studio), LiveInputError> {
    let mut studio = Studio::default();
    let mut live_release = None;
    let mut console_only = false;
    let (frames, events) = if let Some(addr) = setup.live.rtp {
        let (input, frames, events) =
            LiveInput::start(Some(addr), rtp_config(&setup.live)?).await?;
        tracing::info!(
            "live studio RTP on {addr}",
            addr = input.addr.unwrap_or(addr)
        );
        // Its frames go out as soon as its jitter buffer releases them; a pipe has no clock of
        // its own and is paced by the tick.
        live_release = Some(input.release_times());
        studio.rtp = Some(input);
        (Some(frames), Some(events))
    } else if let Some(path) = &setup.live.pipe {
        check_pipe(path)?;
        if let Some(warning) = setup.live.pipe_permission_warning() {
            tracing::warn!("{warning}");
        }
        let (input, frames, events) = PipeInput::start(path, pipe_config(&setup.live));
        tracing::info!("live studio PCM from {}", path.display());
        studio.pipe = Some(input);
        (Some(frames), Some(events))
    } else {
        // No studio: the live input takes the console's broadcasts only.
        let (input, frames, events) = LiveInput::start(None, rtp_config(&setup.live)?).await?;
        live_release = Some(input.release_times());
        studio.rtp = Some(input);
        console_only = true;
        (Some(frames), Some(events))
    };
    let on_air = OnAir::spawn(
        outputs,
        ladder,
        OnAirConfig {
            bitrate: setup.bitrate,
            live: frames,
            live_release,
            console_only_live: console_only,
            relay: setup.relay,
            upstreams: setup.upstreams,
        },
    );
    if let Some(input) = &studio.rtp {
        studio.console = Some(Arc::new(ConsoleLive::new(
            on_air.clone(),
            input.console_feed(),
            Duration::from_millis(setup.live.no_packet_timeout_ms),
        )));
    }
    if let Some(events) = events {
        tokio::spawn(follow_studio(
            on_air.clone(),
            events,
            setup.live_targets,
            setup.live.auto_start,
        ));
    }
    Ok((on_air, studio))
}
