//! A broadcast channel: plays programmes into the fan-out on a steady 20 ms clock.
//!
//! The file is decoded and encoded once, on a blocking thread that runs up to a second ahead of
//! the clock (a bounded channel), so neither a slow disk nor a busy encoder makes the stream
//! stutter, and every agent gets the same frames. Sequence numbers run on across programmes, so an
//! agent can tell a gap in a programme from the pause between two.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use radio_proto::{AudioFrame, Message, ProgrammeEnd, ProgrammeStart, FRAME_SAMPLES};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::fanout::Fanout;
use crate::pipeline::{EncodedFrame, PipelineError, ProgrammeEncoder};

/// Frames the encoder may run ahead of the clock (one second).
const ENCODE_AHEAD: usize = 50;

/// One frame period.
const FRAME_PERIOD: Duration = Duration::from_millis(20);

/// What a finished programme did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgrammeSummary {
    /// Its id on this channel.
    pub programme_id: u64,
    /// Its name.
    pub name: String,
    /// Frames broadcast.
    pub frames: u64,
    /// Corrupt packets skipped while decoding.
    pub skipped_packets: u64,
}

/// A channel of the district.
#[derive(Debug)]
pub struct Channel {
    id: u16,
    fanout: Arc<Fanout>,
    next_sequence: AtomicU64,
    next_programme: AtomicU64,
}

impl Channel {
    /// Channel `id` publishing into `fanout`.
    pub fn new(id: u16, fanout: Arc<Fanout>) -> Self {
        Self {
            id,
            fanout,
            next_sequence: AtomicU64::new(0),
            next_programme: AtomicU64::new(1),
        }
    }

    /// Decodes, encodes and broadcasts a file in real time; `limit` cuts it short. Fails before
    /// anything is broadcast when the file cannot be opened as audio.
    pub async fn play_file(
        &self,
        path: &Path,
        name: &str,
        bitrate: u32,
        limit: Option<Duration>,
    ) -> Result<ProgrammeSummary, PipelineError> {
        let owned: PathBuf = path.to_path_buf();
        let encoder = tokio::task::spawn_blocking(move || ProgrammeEncoder::open(&owned, bitrate))
            .await
            .map_err(|e| PipelineError::Encoder(format!("encoder task: {e}")))??;
        let max_frames = limit.map(|l| (l.as_millis() / FRAME_PERIOD.as_millis()) as u64);
        let (tx, rx) = mpsc::channel::<Result<EncodedFrame, PipelineError>>(ENCODE_AHEAD);
        let producer = tokio::task::spawn_blocking(move || {
            let mut encoder = encoder;
            let mut produced = 0u64;
            loop {
                if max_frames.is_some_and(|m| produced >= m) {
                    break;
                }
                match encoder.next_frame() {
                    Ok(Some(frame)) => {
                        produced += 1;
                        if tx.blocking_send(Ok(frame)).is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        break;
                    }
                }
            }
            encoder.skipped_packets()
        });
        let summary = self.broadcast(name, rx).await;
        let skipped_packets = producer.await.unwrap_or(0);
        let mut summary = summary?;
        summary.skipped_packets = skipped_packets;
        Ok(summary)
    }

    /// Broadcasts already-encoded frames in real time (used for generated signals).
    pub async fn play_frames(&self, name: &str, frames: Vec<EncodedFrame>) -> ProgrammeSummary {
        let (tx, rx) = mpsc::channel(frames.len().max(1));
        for f in frames {
            let _ = tx.try_send(Ok(f));
        }
        drop(tx);
        match self.broadcast(name, rx).await {
            Ok(s) => s,
            Err(_) => ProgrammeSummary {
                programme_id: 0,
                name: name.into(),
                frames: 0,
                skipped_packets: 0,
            },
        }
    }

    async fn broadcast(
        &self,
        name: &str,
        mut rx: mpsc::Receiver<Result<EncodedFrame, PipelineError>>,
    ) -> Result<ProgrammeSummary, PipelineError> {
        let programme_id = self.next_programme.fetch_add(1, Ordering::Relaxed);
        let first_sequence = self.next_sequence.load(Ordering::Relaxed);
        self.fanout.publish_programme_start(
            Message::ProgrammeStart(ProgrammeStart {
                channel: self.id,
                programme_id,
                name: truncate(name, 256),
                first_sequence,
                first_timestamp: first_sequence * u64::from(FRAME_SAMPLES),
                frame_count: 0,
            })
            .to_bytes(),
        );
        tracing::info!(programme = name, id = programme_id, "on air");
        let start = Instant::now();
        let mut frames = 0u64;
        let mut failure = None;
        while let Some(next) = rx.recv().await {
            let frame = match next {
                Ok(f) => f,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            tokio::time::sleep_until(start + FRAME_PERIOD * frames as u32).await;
            let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
            self.fanout.publish_frame(
                Message::AudioFrame(AudioFrame {
                    channel: self.id,
                    sequence,
                    timestamp: sequence * u64::from(FRAME_SAMPLES),
                    payload: frame.payload,
                })
                .to_bytes(),
            );
            frames += 1;
        }
        self.fanout.publish_programme_end(
            Message::ProgrammeEnd(ProgrammeEnd {
                channel: self.id,
                programme_id,
                last_sequence: (first_sequence + frames).saturating_sub(1),
                frames,
            })
            .to_bytes(),
        );
        tracing::info!(programme = name, id = programme_id, frames, "off air");
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(ProgrammeSummary {
            programme_id,
            name: name.to_string(),
            frames,
            skipped_packets: 0,
        })
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
