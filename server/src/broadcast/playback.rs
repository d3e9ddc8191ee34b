//! A playback: one programme being encoded, once, into 20 ms Opus frames, however many stations
//! listen to it.
//!
//! A file is decoded and encoded on a blocking thread that runs up to a second ahead; live and
//! relayed audio arrives as PCM frames from an ingest and is encoded here as the clock asks for
//! it. The router pulls exactly one frame per playback per 20 ms tick.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use radio_proto::ProgrammeLevel;
use tokio::sync::mpsc;

use crate::ingest::PcmFrame;
use crate::pipeline::encoder::FrameEncoder;
use crate::pipeline::{EncodedFrame, PipelineError, ProgrammeEncoder};

/// Frames a file encoder may run ahead of the clock (one second).
const ENCODE_AHEAD: usize = 50;

/// PCM frames of live audio allowed to wait: beyond this the oldest are dropped, because live
/// audio must not drift behind the studio (a sender's clock a little faster than ours).
const LIVE_BACKLOG: usize = 10;

/// One 20 ms frame period.
pub const FRAME_PERIOD: Duration = Duration::from_millis(20);

/// What a playback produced for one tick.
#[derive(Debug)]
pub enum Next {
    /// An Opus frame.
    Frame(Bytes),
    /// Nothing ready in time (the encoder or the ingest is behind); counted, the tick is skipped.
    Underrun,
    /// The programme is over; carries the error that ended it early, if any.
    Ended(Option<PipelineError>),
}

enum Source {
    Encoded(mpsc::Receiver<Result<EncodedFrame, PipelineError>>),
    Pcm {
        rx: mpsc::Receiver<Box<PcmFrame>>,
        encoder: FrameEncoder,
        silence: Bytes,
    },
}

/// A programme being encoded.
pub struct Playback {
    /// The programme this playback belongs to; a resumed programme keeps its id.
    pub programme_id: u64,
    /// Its name, as announced to agents.
    pub name: String,
    /// Why it is on air (bulletin level or live), as announced to agents for proof of play.
    pub level: ProgrammeLevel,
    source: Source,
    frames: u64,
    underruns: u64,
    dropped_backlog: u64,
}

impl std::fmt::Debug for Playback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playback")
            .field("programme_id", &self.programme_id)
            .field("name", &self.name)
            .field("frames", &self.frames)
            .field("underruns", &self.underruns)
            .finish()
    }
}

impl Playback {
    /// Opens a file and starts its encoder thread, `offset` into it (resume), stopping after
    /// `limit` if given. Opening decodes the first packets, so a file that is not audio fails here,
    /// before anything goes on air. Blocking: call from a blocking context.
    pub fn file(
        programme_id: u64,
        name: &str,
        path: &Path,
        bitrate: u32,
        offset: Duration,
        limit: Option<Duration>,
    ) -> Result<Self, PipelineError> {
        let mut encoder = ProgrammeEncoder::open(path, bitrate)?;
        let skip = frames_in(offset);
        if skip > 0 {
            encoder.skip_frames(skip)?;
        }
        let max_frames = limit.map(frames_in);
        let (tx, rx) = mpsc::channel(ENCODE_AHEAD);
        spawn_encoder(programme_id, move || {
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
            report_skipped(&encoder);
        })?;
        Ok(Self::with_source(programme_id, name, Source::Encoded(rx)))
    }

    /// Files played one after another as one programme, starting `offset` into the whole. Every
    /// file is opened up front, so a playlist with a bad file fails before it goes on air.
    pub fn files(
        programme_id: u64,
        name: &str,
        paths: &[std::path::PathBuf],
        bitrate: u32,
        offset: Duration,
    ) -> Result<Self, PipelineError> {
        let mut encoders = paths
            .iter()
            .map(|p| ProgrammeEncoder::open(p, bitrate))
            .collect::<Result<std::collections::VecDeque<_>, _>>()?;
        let mut skip = frames_in(offset);
        while skip > 0 {
            let Some(first) = encoders.front_mut() else {
                break;
            };
            let skipped = first.skip_frames(skip)?;
            skip -= skipped;
            if skip > 0 {
                encoders.pop_front();
            }
        }
        let (tx, rx) = mpsc::channel(ENCODE_AHEAD);
        spawn_encoder(programme_id, move || {
            for mut encoder in encoders {
                loop {
                    match encoder.next_frame() {
                        Ok(Some(frame)) => {
                            if tx.blocking_send(Ok(frame)).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    }
                }
                report_skipped(&encoder);
            }
        })?;
        Ok(Self::with_source(programme_id, name, Source::Encoded(rx)))
    }

    /// Already-encoded frames (generated signals, tests, benchmarks).
    pub fn frames(programme_id: u64, name: &str, frames: Vec<EncodedFrame>) -> Self {
        let (tx, rx) = mpsc::channel(frames.len().max(1));
        for f in frames {
            let _ = tx.try_send(Ok(f));
        }
        Self::with_source(programme_id, name, Source::Encoded(rx))
    }

    /// Live or relayed PCM from an ingest, encoded as the clock asks. When the ingest has nothing
    /// ready the tick carries silence, so a live programme never stutters; it ends when the ingest
    /// closes its channel.
    pub fn pcm(
        programme_id: u64,
        name: &str,
        rx: mpsc::Receiver<Box<PcmFrame>>,
        bitrate: u32,
    ) -> Result<Self, PipelineError> {
        let mut encoder = FrameEncoder::new(bitrate)?;
        let silence = encoder
            .encode(&[0.0; crate::ingest::FRAME_SAMPLES])?
            .payload;
        let encoder = FrameEncoder::new(bitrate)?;
        Ok(Self::with_source(
            programme_id,
            name,
            Source::Pcm {
                rx,
                encoder,
                silence,
            },
        ))
    }

    fn with_source(programme_id: u64, name: &str, source: Source) -> Self {
        Self {
            programme_id,
            name: name.to_string(),
            level: ProgrammeLevel::Normal,
            source,
            frames: 0,
            underruns: 0,
            dropped_backlog: 0,
        }
    }

    /// The frame for this tick.
    pub fn next_frame(&mut self) -> Next {
        let next = match &mut self.source {
            Source::Encoded(rx) => match rx.try_recv() {
                Ok(Ok(frame)) => Next::Frame(frame.payload),
                Ok(Err(e)) => Next::Ended(Some(e)),
                Err(mpsc::error::TryRecvError::Empty) => Next::Underrun,
                Err(mpsc::error::TryRecvError::Disconnected) => Next::Ended(None),
            },
            Source::Pcm {
                rx,
                encoder,
                silence,
            } => {
                while rx.len() > LIVE_BACKLOG {
                    let _ = rx.try_recv();
                    self.dropped_backlog += 1;
                }
                match rx.try_recv() {
                    Ok(pcm) => match encoder.encode(&pcm[..]) {
                        Ok(frame) => Next::Frame(frame.payload),
                        Err(e) => Next::Ended(Some(e)),
                    },
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.underruns += 1;
                        Next::Frame(silence.clone())
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => Next::Ended(None),
                }
            }
        };
        match &next {
            Next::Frame(_) => self.frames += 1,
            Next::Underrun => self.underruns += 1,
            Next::Ended(_) => {}
        }
        next
    }

    /// Frames produced so far.
    pub fn frames_produced(&self) -> u64 {
        self.frames
    }

    /// Ticks with nothing ready.
    pub fn underruns(&self) -> u64 {
        self.underruns
    }
}

/// Runs a file encoder on its own thread: it blocks on the bounded channel, so it stays at
/// most [`ENCODE_AHEAD`] frames ahead of the clock.
fn spawn_encoder(
    programme_id: u64,
    work: impl FnOnce() + Send + 'static,
) -> Result<(), PipelineError> {
    std::thread::Builder::new()
        .name(format!("encode-{programme_id}"))
        .spawn(work)
        .map(|_| ())
        .map_err(|e| PipelineError::Encoder(format!("cannot start encoder thread: {e}")))
}

fn report_skipped(encoder: &ProgrammeEncoder) {
    if encoder.skipped_packets() > 0 {
        tracing::warn!(
            "{}: skipped {} corrupt packets",
            encoder.info().codec,
            encoder.skipped_packets()
        );
    }
}

/// Whole 20 ms frames in `d`.
pub fn frames_in(d: Duration) -> u64 {
    (d.as_millis() / FRAME_PERIOD.as_millis()) as u64
}
