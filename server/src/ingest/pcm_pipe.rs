//! Live studio ingest from a local mixer: raw interleaved s16le PCM on a pipe or stdin,
//! as 20 ms frames of 48 kHz mono.
//!
//! Unlike RTP, a pipe has flow control, so frames go out with `send().await`: a slow
//! consumer makes the reader wait, the pipe buffer fills and the mixer's write blocks. For
//! a real-time mixer that only happens if the server is stuck; for a recording piped in
//! faster than real time it paces the file to the consumer instead of dropping most of it.
//!
//! Events and silence handling are those of [`super::live_rtp`]: `Receiving { Pipe }` at
//! the first byte, `Ended { Silence }` after `silence_timeout` of silent frames (withheld
//! from then on until sound returns, which brings a new `Receiving`), and
//! `Ended { EndOfInput }` at end of file or on a read error. A byte count that is not a
//! whole number of sample frames at end of file is reported in
//! [`PipeStats::trailing_bytes`] and dropped; the last partial frame is zero-padded.
//! There is no no-data timeout: a pipe that stays open without data (a hung mixer) just
//! delivers nothing until the caller's `shutdown`.
//!
//! Try it with `ffmpeg -i speech.wav -f s16le -ar 44100 -ac 2 -` (or
//! `sox speech.wav -t raw -e signed -b 16 -L -r 44100 -c 2 -`) feeding the reader with
//! `PcmFormat { rate: 44100, channels: 2 }`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::live_rtp::{check_silence_config, AirState, EndReason, LiveConfigError, LiveEvent};
use super::live_rtp::{LiveRtpConfig, LiveSource};
use super::{PcmFrame, FRAME_SAMPLES};
use crate::pipeline::resampler::Resampler;

/// Layout of the raw PCM: signed 16-bit little-endian, `channels` interleaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcmFormat {
    pub rate: u32,
    pub channels: u16,
}

impl Default for PcmFormat {
    fn default() -> Self {
        PcmFormat {
            rate: 48_000,
            channels: 1,
        }
    }
}

/// [`PcmFormat`] plus the silence rule, which defaults to the live RTP ingest's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PipeConfig {
    pub format: PcmFormat,
    /// `Ended { Silence }` after this long of silent frames; zero disables.
    pub silence_timeout: Duration,
    /// Frames with an RMS level below this are silent.
    pub silence_threshold_dbfs: f32,
}

impl Default for PipeConfig {
    fn default() -> Self {
        let rtp = LiveRtpConfig::default();
        PipeConfig {
            format: PcmFormat::default(),
            silence_timeout: rtp.silence_timeout,
            silence_threshold_dbfs: rtp.silence_threshold_dbfs,
        }
    }
}

/// What a pipe delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipeStats {
    /// Bytes read.
    pub bytes: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Frames not sent because the broadcast had ended for silence.
    pub frames_withheld: u64,
    /// Bytes at end of file that did not make a whole sample frame.
    pub trailing_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    #[error("PCM pipe: {0}")]
    Format(String),
    #[error("PCM pipe: {0}")]
    Config(#[from] LiveConfigError),
    #[error("PCM pipe: {0}")]
    Resample(String),
    #[error("PCM pipe: read failed after {} bytes: {source}", stats.bytes)]
    Read {
        #[source]
        source: std::io::Error,
        stats: PipeStats,
    },
}

/// Reads s16le PCM until end of file or `shutdown`, delivering 960-sample frames with the
/// default silence rule. See [`run_pcm_pipe_with`].
pub async fn run_pcm_pipe<R: AsyncRead + Unpin>(
    reader: R,
    format: PcmFormat,
    frames: mpsc::Sender<Box<PcmFrame>>,
    events: mpsc::Sender<LiveEvent>,
    shutdown: impl Future<Output = ()>,
) -> Result<PipeStats, PipeError> {
    let config = PipeConfig {
        format,
        ..PipeConfig::default()
    };
    run_pcm_pipe_with(reader, config, frames, events, shutdown).await
}

/// Reads s16le PCM until end of file, `shutdown`, or the frame receiver going away; the
/// format is checked before anything is read.
pub async fn run_pcm_pipe_with<R: AsyncRead + Unpin>(
    mut reader: R,
    config: PipeConfig,
    frames: mpsc::Sender<Box<PcmFrame>>,
    events: mpsc::Sender<LiveEvent>,
    shutdown: impl Future<Output = ()>,
) -> Result<PipeStats, PipeError> {
    let PcmFormat { rate, channels } = config.format;
    if channels == 0 {
        return Err(PipeError::Format("zero channels".into()));
    }
    check_silence_config(config.silence_timeout, config.silence_threshold_dbfs)?;
    let mut resampler = Resampler::new(rate).map_err(PipeError::Format)?;
    let mut out = Output {
        frames,
        events,
        air: AirState::new(config.silence_timeout, config.silence_threshold_dbfs),
        stats: PipeStats::default(),
        pcm: Vec::with_capacity(FRAME_SAMPLES * 4),
    };
    tokio::pin!(shutdown);

    let width = 2 * usize::from(channels);
    let scale = 1.0 / (32_768.0 * f32::from(channels));
    // A read may end inside a sample frame; its bytes stay at the front (`carry`) and the
    // next read appends to them.
    let mut buf = vec![0u8; 64 * 1024];
    let mut carry = 0usize;
    let mut mono = Vec::with_capacity(buf.len() / 2);
    loop {
        if carry == buf.len() {
            // Only possible when one sample frame is wider than the buffer.
            buf.resize(buf.len() * 2, 0);
        }
        let read = tokio::select! {
            biased;
            () = &mut shutdown => return Ok(out.stats),
            read = reader.read(&mut buf[carry..]) => read,
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                tracing::warn!("PCM pipe: read failed: {source}");
                let ended = out.air.end(EndReason::EndOfInput);
                if out.event(ended, &mut shutdown).await == Flow::Stop {
                    return Ok(out.stats);
                }
                return Err(PipeError::Read {
                    source,
                    stats: out.stats,
                });
            }
        };
        if out.stats.bytes == 0 {
            let started = out.air.start(LiveSource::Pipe);
            if out.event(started, &mut shutdown).await == Flow::Stop {
                return Ok(out.stats);
            }
        }
        out.stats.bytes += n as u64;
        let filled = carry + n;
        let whole = filled / width * width;
        mono.clear();
        mono.extend(buf[..whole].chunks_exact(width).map(|frame| {
            let sum: i32 = frame
                .chunks_exact(2)
                .map(|b| i32::from(i16::from_le_bytes([b[0], b[1]])))
                .sum();
            sum as f32 * scale
        }));
        buf.copy_within(whole..filled, 0);
        carry = filled - whole;
        resampler
            .process(&mono, &mut out.pcm)
            .map_err(PipeError::Resample)?;
        if out.flush(false, &mut shutdown).await == Flow::Stop {
            return Ok(out.stats);
        }
    }

    out.stats.trailing_bytes = carry as u64;
    resampler
        .finish(&mut out.pcm)
        .map_err(PipeError::Resample)?;
    if out.flush(true, &mut shutdown).await == Flow::Stop {
        return Ok(out.stats);
    }
    // The end must not overtake the last words: wait until the queued frames have been taken
    // (or nobody takes them: live is not on air), then say it ended.
    let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
    while out.frames.capacity() < out.frames.max_capacity()
        && !out.frames.is_closed()
        && tokio::time::Instant::now() < deadline
    {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            _ = &mut shutdown => return Ok(out.stats),
        }
    }
    let ended = out.air.end(EndReason::EndOfInput);
    out.event(ended, &mut shutdown).await;
    Ok(out.stats)
}

/// Longest wait at end of input for the queued frames to be taken: a full queue of a few
/// frames drains in well under this when live is on air.
const DRAIN_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    Stop,
}

/// The sending half of the pipe ingest.
struct Output {
    frames: mpsc::Sender<Box<PcmFrame>>,
    events: mpsc::Sender<LiveEvent>,
    air: AirState,
    stats: PipeStats,
    /// 48 kHz samples not yet sent as a frame.
    pcm: Vec<f32>,
}

impl Output {
    /// Sends every whole frame in `pcm`; with `last`, also the zero-padded remainder.
    async fn flush<S: Future<Output = ()>>(
        &mut self,
        last: bool,
        shutdown: &mut Pin<&mut S>,
    ) -> Flow {
        let mut pos = 0;
        while self.pcm.len() - pos >= FRAME_SAMPLES || (last && pos < self.pcm.len()) {
            let end = (pos + FRAME_SAMPLES).min(self.pcm.len());
            let mut frame = Box::new([0.0; FRAME_SAMPLES]);
            frame[..end - pos].copy_from_slice(&self.pcm[pos..end]);
            pos = end;
            let (deliver, event) = self.air.frame(&*frame);
            if self.event(event, shutdown).await == Flow::Stop {
                return Flow::Stop;
            }
            if !deliver {
                self.stats.frames_withheld += 1;
                continue;
            }
            tokio::select! {
                biased;
                () = shutdown.as_mut() => return Flow::Stop,
                sent = self.frames.send(frame) => {
                    if sent.is_err() {
                        return Flow::Stop;
                    }
                }
            }
            self.stats.frames_out += 1;
        }
        self.pcm.drain(..pos);
        Flow::Go
    }

    /// Sends `event` if there is one. A closed event channel is not a reason to stop: the
    /// audio may still be wanted.
    async fn event<S: Future<Output = ()>>(
        &mut self,
        event: Option<LiveEvent>,
        shutdown: &mut Pin<&mut S>,
    ) -> Flow {
        let Some(event) = event else {
            return Flow::Go;
        };
        tokio::select! {
            biased;
            () = shutdown.as_mut() => Flow::Stop,
            _ = self.events.send(event) => Flow::Go,
        }
    }
}

#[cfg(test)]
mod tests;
