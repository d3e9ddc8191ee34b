//! The live input: the district studio's RTP stream on a UDP address, accepted only from the
//! allowlisted senders, put on air by itself while packets arrive and taken off when they stop
//! (no packets, or silence, for the configured time).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::ingest::live_rtp::{
    run_live_rtp, LiveConfigError, LiveEvent, LiveRtpConfig, LiveRtpReceiver, LiveStats,
    LiveStatsHandle,
};
use crate::ingest::PcmFrame;
use crate::on_air::{CommandError, OnAir};
use crate::schedule::{ScheduleError, Targets};

/// PCM frames of live audio buffered between the ingest and the clock.
const LIVE_QUEUE: usize = 16;

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
}

/// A running live RTP input.
#[derive(Debug)]
pub struct LiveInput {
    /// Where it listens.
    pub addr: SocketAddr,
    stats: Arc<LiveStatsHandle>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<LiveStats>,
}

impl LiveInput {
    /// Listens for studio RTP on `addr` from the senders `config.allow`s. Returns the input and
    /// the PCM frames for the on-air controller ([`crate::on_air::OnAirConfig::live`]) and its
    /// start/stop events.
    pub async fn start(
        addr: SocketAddr,
        config: LiveRtpConfig,
    ) -> Result<
        (
            LiveInput,
            mpsc::Receiver<Box<PcmFrame>>,
            mpsc::Receiver<LiveEvent>,
        ),
        LiveInputError,
    > {
        let socket = tokio::net::UdpSocket::bind(addr)
            .await
            .map_err(|error| LiveInputError::Bind { addr, error })?;
        let addr = socket
            .local_addr()
            .map_err(|error| LiveInputError::Bind { addr, error })?;
        let receiver = LiveRtpReceiver::new(config)?;
        let stats = receiver.stats_handle();
        let (frames_tx, frames_rx) = mpsc::channel(LIVE_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(16);
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_live_rtp(
            socket,
            receiver,
            frames_tx,
            events_tx,
            async move {
                let _ = stop_rx.changed().await;
            },
        ));
        Ok((
            LiveInput {
                addr,
                stats,
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

    /// Stops listening; returns the final counters.
    pub async fn stop(self) -> LiveStats {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_else(|_| self.stats.snapshot())
    }
}

/// Puts the studio on air at `targets` while it sends, and takes it off when it stops.
pub async fn follow_studio(on_air: OnAir, mut events: mpsc::Receiver<LiveEvent>, targets: Targets) {
    while let Some(event) = events.recv().await {
        let result = match event {
            LiveEvent::Receiving { from } => {
                tracing::info!(?from, "studio is sending: live on air");
                on_air.live(STUDIO, targets.clone()).await
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

/// Starts the on-air controller, with the studio input on `live` if given: the studio goes on
/// air at `targets` by itself while it sends. Keep the returned input for as long as the studio
/// should be heard: dropping it stops listening.
pub async fn spawn_on_air(
    outputs: impl IntoIterator<Item = Arc<crate::station_output::StationOutput>>,
    ladder: crate::schedule::ladder::Ladder,
    bitrate: u32,
    live: Option<(SocketAddr, LiveRtpConfig)>,
    targets: Targets,
) -> Result<(OnAir, Option<LiveInput>), LiveInputError> {
    let (input, frames, events) = match live {
        Some((addr, config)) => {
            let (input, frames, events) = LiveInput::start(addr, config).await?;
            tracing::info!("live studio RTP on {}", input.addr);
            (Some(input), Some(frames), Some(events))
        }
        None => (None, None, None),
    };
    let on_air = OnAir::spawn(
        outputs,
        ladder,
        crate::on_air::OnAirConfig {
            bitrate,
            live: frames,
        },
    );
    if let Some(events) = events {
        tokio::spawn(follow_studio(on_air.clone(), events, targets));
    }
    Ok((on_air, input))
}
