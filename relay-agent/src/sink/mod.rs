//! Playout sinks: where each 20 ms playout slot goes once the clock has released it.
//!
//! The playout clock runs on its own thread and calls [`Sink::play`] on every sink once per slot,
//! so every sink here is synchronous and keeps `play` short: the RTP sink does one non-blocking
//! `send`, the WAV sink writes into a buffered file, and the pipe sink hands the slot to a writer
//! thread through a bounded queue.

pub mod pipe;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod wav;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use pipe::{PipeOptions, PipeSink};
pub use rtp::{RtpSink, OPUS_PAYLOAD_TYPE};
pub use sdp::opus_sdp;

use crate::cluster_health::ClusterChange;
pub use wav::WavSink;

/// Samples in one 20 ms slot at 48 kHz mono.
pub const FRAME_SAMPLES: usize = 960;

/// Sample rate of every slot's PCM and of the Opus RTP clock.
pub const SAMPLE_RATE: u32 = 48_000;

/// Slots per second of audio.
pub(crate) const SLOTS_PER_SECOND: u64 = 50;

/// One 20 ms playout slot.
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    /// The Opus packet played in this slot; `None` when the frame was lost (PLC used for `pcm`).
    pub opus: Option<&'a [u8]>,
    /// 960 decoded (or concealed, or silent) samples, 48 kHz mono; up to
    /// [`crate::retime::MAX_RETIME`] more or fewer while the playout clock slews.
    pub pcm: &'a [i16],
    /// True when nothing is on air (idle): `pcm` is zeros and `opus` is a silence packet.
    pub silent: bool,
}

/// Why a sink could not be opened or could not take a slot.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An operating-system level failure (socket, file, child process).
    #[error("{sink}: {reason}")]
    Io { sink: String, reason: String },
    /// The sink target itself cannot work (e.g. an empty pipe command).
    #[error("{sink}: invalid configuration: {reason}")]
    Config { sink: String, reason: String },
    /// `play` was called after `finish`.
    #[error("{sink}: already finished")]
    Closed { sink: String },
    /// The sink can take no slot ever again: the thread that feeds its output died. Only a
    /// restart of the agent brings the output back.
    #[error("{sink}: {reason}")]
    Dead { sink: String, reason: String },
}

impl SinkError {
    /// Whether the sink is gone for good ([`SinkError::Dead`]), rather than failing one slot.
    pub fn is_fatal(&self) -> bool {
        matches!(self, SinkError::Dead { .. })
    }

    pub(crate) fn io(sink: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        SinkError::Io {
            sink: sink.into(),
            reason: reason.to_string(),
        }
    }
}

/// A destination for playout slots.
pub trait Sink: Send {
    /// Short human-readable identity, e.g. `rtp:127.0.0.1:5004`.
    fn describe(&self) -> String;
    /// Hands over one slot. Must return quickly: it runs on the playout clock thread.
    fn play(&mut self, slot: &Slot<'_>) -> Result<(), SinkError>;
    /// Flushes and closes cleanly (a WAV header is finalised). Calling it twice is harmless.
    fn finish(&mut self) -> Result<(), SinkError>;
    /// Counters since the sink was opened.
    fn stats(&self) -> SinkStats;
    /// For a sink that watches a loudspeaker cluster: its id and new state, when the state
    /// changed. Called on the playout clock thread after each `play`.
    fn cluster_change(&mut self, _now: Instant) -> Option<(String, ClusterChange)> {
        None
    }
}

/// A loudspeaker cluster an RTP sink watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterWatch {
    /// Its id within the station, e.g. `c01`.
    pub id: String,
    /// Silence after which a receiver that sends RTCP reports counts as down.
    pub timeout: Duration,
}

/// Counters every sink keeps.
///
/// - `slots`: calls to [`Sink::play`].
/// - `packets_sent`: units actually delivered downstream (RTP packets sent, WAV slots written,
///   pipe slots written into the command's stdin).
/// - `dropped`: slots the sink had to discard because downstream could not take them
///   (full queue, command restarting, socket buffer full, WAV file unusable).
/// - `errors`: operating-system errors and malformed slots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkStats {
    pub slots: u64,
    pub packets_sent: u64,
    pub dropped: u64,
    pub errors: u64,
}

/// Where a sink sends its slots, as configured.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkTarget {
    /// Opus over RTP to `dest`; the matching SDP is written to `sdp`. `local_port` fixes the
    /// sending port; with `cluster`, RTCP is received on the next port up.
    Rtp {
        dest: SocketAddr,
        sdp: PathBuf,
        local_port: Option<u16>,
        cluster: Option<ClusterWatch>,
    },
    /// A 48 kHz mono 16-bit WAV recording of the whole timeline.
    Wav { path: PathBuf },
    /// Raw s16le 48 kHz mono fed to the stdin of `sh -c command`.
    Pipe { command: String },
}

/// Opens the sink for `spec`; `station_name` names the RTP session in its SDP.
pub fn open_sink(spec: &SinkTarget, station_name: &str) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match spec {
        SinkTarget::Rtp {
            dest,
            sdp,
            local_port,
            cluster,
        } => Box::new(RtpSink::open_with(
            *dest,
            sdp,
            station_name,
            *local_port,
            cluster.clone(),
        )?),
        SinkTarget::Wav { path } => Box::new(WavSink::create(path)?),
        SinkTarget::Pipe { command } => Box::new(PipeSink::spawn(command)?),
    })
}

/// Whether a slot's PCM has a length the playout can give it: [`FRAME_SAMPLES`], or a few
/// samples more or less while the clock slews (`retime.rs`).
pub(crate) fn valid_slot_len(len: usize) -> bool {
    len.abs_diff(FRAME_SAMPLES) <= crate::retime::MAX_RETIME
}

/// Yields the samples of `pcm`, or, when its length is not a valid slot's, exactly
/// [`FRAME_SAMPLES`] of them, zero-padded or truncated, so a malformed slot cannot shift the
/// timeline of file and pipe outputs.
pub(crate) fn frame_samples(pcm: &[i16]) -> impl Iterator<Item = i16> + '_ {
    let len = if valid_slot_len(pcm.len()) {
        pcm.len()
    } else {
        FRAME_SAMPLES
    };
    pcm.iter().copied().chain(std::iter::repeat(0)).take(len)
}

/// Lets a persistent failure be logged once per interval instead of 50 times a second.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub(crate) fn per_minute() -> Self {
        Self {
            interval: Duration::from_secs(60),
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when the caller should log now, `n` being how many events were kept quiet
    /// since the previous log line.
    pub(crate) fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_samples_pads_and_truncates() {
        let short = [7i16; 10];
        let v: Vec<i16> = frame_samples(&short).collect();
        assert_eq!(v.len(), FRAME_SAMPLES);
        assert!(v[..10].iter().all(|&s| s == 7));
        assert!(v[10..].iter().all(|&s| s == 0));
        let long = vec![3i16; FRAME_SAMPLES + 5];
        assert_eq!(frame_samples(&long).count(), FRAME_SAMPLES);
    }

    #[test]
    fn log_limiter_counts_suppressed() {
        let mut l = LogLimiter::per_minute();
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        l.last = Instant::now().checked_sub(Duration::from_secs(61));
        assert_eq!(l.allow(), Some(2));
    }

    #[test]
    fn open_sink_dispatches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wav = dir.path().join("a/b/rec.wav");
        let mut sink = open_sink(&SinkTarget::Wav { path: wav.clone() }, "x").expect("wav");
        assert!(sink.describe().starts_with("wav:"));
        sink.finish().expect("finish");
        assert!(wav.exists());

        let sdp = dir.path().join("out.sdp");
        let dest: SocketAddr = "127.0.0.1:5004".parse().expect("addr");
        let sink = open_sink(
            &SinkTarget::Rtp {
                dest,
                sdp: sdp.clone(),
                local_port: None,
                cluster: None,
            },
            "Đài",
        )
        .expect("rtp");
        assert_eq!(sink.describe(), "rtp:127.0.0.1:5004");
        assert!(sdp.exists());

        let err = open_sink(
            &SinkTarget::Pipe {
                command: "  ".into(),
            },
            "x",
        );
        assert!(matches!(err, Err(SinkError::Config { .. })));
    }
}
