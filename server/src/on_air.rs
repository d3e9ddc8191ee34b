//! The on-air controller: owns the router and drives it with the 20 ms clock; everything that
//! changes what a station airs goes through its command channel, so switching is serialised
//! with the clock and always lands on a frame boundary.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use crate::playback::{Playback, FRAME_PERIOD};
use crate::router::{PlaybackId, Router, TickEvent};
use crate::station_output::StationOutput;

/// How a playback ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybackSummary {
    /// The programme.
    pub programme_id: u64,
    /// Frames produced.
    pub frames: u64,
    /// Why it ended early, if it did (one line).
    pub error: Option<String>,
}

enum Command {
    Add {
        playback: Playback,
        stations: Vec<String>,
        started: oneshot::Sender<PlaybackId>,
        ended: oneshot::Sender<PlaybackSummary>,
    },
    Stop {
        id: PlaybackId,
    },
}

/// Handle to the on-air controller.
#[derive(Debug, Clone)]
pub struct OnAir {
    tx: mpsc::Sender<Command>,
}

/// A playback put on air; await its end with [`OnAirPlayback::finished`].
#[derive(Debug)]
pub struct OnAirPlayback {
    /// Its id in the router.
    pub id: PlaybackId,
    ended: oneshot::Receiver<PlaybackSummary>,
}

impl OnAirPlayback {
    /// Waits until the playback ends.
    pub async fn finished(self) -> Option<PlaybackSummary> {
        self.ended.await.ok()
    }
}

/// The controller stopped (the server is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the on-air controller has stopped")]
pub struct Stopped;

impl OnAir {
    /// Starts the controller over `outputs`; it runs until every handle is dropped.
    pub fn spawn(outputs: impl IntoIterator<Item = Arc<StationOutput>>) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let router = Router::new(outputs);
        tokio::spawn(run(router, rx));
        Self { tx }
    }

    /// Puts `playback` on air at `stations` from the next tick.
    pub async fn play(
        &self,
        playback: Playback,
        stations: Vec<String>,
    ) -> Result<OnAirPlayback, Stopped> {
        let (started, started_rx) = oneshot::channel();
        let (ended, ended_rx) = oneshot::channel();
        self.tx
            .send(Command::Add {
                playback,
                stations,
                started,
                ended,
            })
            .await
            .map_err(|_| Stopped)?;
        let id = started_rx.await.map_err(|_| Stopped)?;
        Ok(OnAirPlayback {
            id,
            ended: ended_rx,
        })
    }

    /// Takes a playback off air now.
    pub async fn stop(&self, id: PlaybackId) -> Result<(), Stopped> {
        self.tx
            .send(Command::Stop { id })
            .await
            .map_err(|_| Stopped)
    }
}

async fn run(mut router: Router, mut rx: mpsc::Receiver<Command>) {
    let mut clock = tokio::time::interval(FRAME_PERIOD);
    // A stalled runtime catches up frame by frame (agents buffer), rather than skipping audio.
    clock.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut waiting: BTreeMap<PlaybackId, oneshot::Sender<PlaybackSummary>> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = clock.tick() => {
                for event in router.tick() {
                    let TickEvent::Ended { id, programme_id, frames, error } = event;
                    if let Some(e) = &error {
                        tracing::error!("{e}");
                    }
                    if let Some(tx) = waiting.remove(&id) {
                        let _ = tx.send(PlaybackSummary {
                            programme_id,
                            frames,
                            error: error.map(|e| e.to_string()),
                        });
                    }
                }
            }
            command = rx.recv() => match command {
                None => return,
                Some(Command::Add { playback, stations, started, ended }) => {
                    let id = router.add(playback);
                    for s in &stations {
                        if !router.route(s, Some(id)) {
                            tracing::warn!(station = %s, "not a station; ignored");
                        }
                    }
                    waiting.insert(id, ended);
                    let _ = started.send(id);
                }
                Some(Command::Stop { id }) => {
                    if let Some(p) = router.remove(id) {
                        if let Some(tx) = waiting.remove(&id) {
                            let _ = tx.send(PlaybackSummary {
                                programme_id: p.programme_id,
                                frames: p.frames_produced(),
                                error: None,
                            });
                        }
                    }
                }
            },
        }
    }
}

/// Convenience for callers that open a file: opening decodes, so it runs on a blocking thread.
pub async fn open_file(
    programme_id: u64,
    name: &str,
    path: &std::path::Path,
    bitrate: u32,
    offset: Duration,
    limit: Option<Duration>,
) -> Result<Playback, crate::pipeline::PipelineError> {
    let name = name.to_string();
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        Playback::file(programme_id, &name, &path, bitrate, offset, limit)
    })
    .await
    .map_err(|e| crate::pipeline::PipelineError::Encoder(format!("open task: {e}")))?
}

/// Why a programme could not be played.
#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    /// The file is not usable audio.
    #[error(transparent)]
    Programme(#[from] crate::pipeline::PipelineError),
    /// The controller is gone.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// Plays a file once at `stations` and waits for its end, logging "on air" and "off air".
pub async fn play_file(
    on_air: &OnAir,
    stations: Vec<String>,
    programme_id: u64,
    name: &str,
    path: &std::path::Path,
    bitrate: u32,
    limit: Option<Duration>,
) -> Result<PlaybackSummary, PlayError> {
    let playback = open_file(programme_id, name, path, bitrate, Duration::ZERO, limit).await?;
    let targets = stations.len();
    let handle = on_air.play(playback, stations).await?;
    tracing::info!(
        programme = name,
        id = programme_id,
        stations = targets,
        "on air"
    );
    let summary = handle.finished().await.ok_or(Stopped)?;
    tracing::info!(
        programme = name,
        id = programme_id,
        frames = summary.frames,
        "off air"
    );
    Ok(summary)
}
