//! Live studio ingest over RTP (RFC 3550): Opus (RFC 7587) or L16 (RFC 3551 §4.5.11,
//! RFC 2586), from the district studio's encoder, as 20 ms frames of 48 kHz mono PCM.
//!
//! # Shape
//! [`LiveRtpReceiver`] is a sans-IO state machine in the style of `quinn-proto`: the caller
//! feeds it datagrams ([`LiveRtpReceiver::handle_packet`]) and the time
//! ([`LiveRtpReceiver::handle_timeout`]), and pulls frames, events and the next deadline out
//! of it. Nothing in it reads a clock or a socket, so every timing rule is tested with a
//! virtual [`Instant`]. [`run_live_rtp`] is the thin tokio driver around it for a bound
//! [`UdpSocket`]; binding is the caller's job.
//!
//! # What happens to a datagram
//! 1. A source address not in [`LiveRtpConfig::allow`] is dropped before any parsing
//!    (`rejected_source`, the address is kept, warnings are rate-limited).
//! 2. With an SRTP key ([`LiveRtpConfig::srtp`], [`super::srtp`]), a datagram whose
//!    HMAC-SHA1-80 tag does not verify is dropped before parsing (`not_authenticated`,
//!    plain RTP included), and one authenticated before (or more than 64 packets older than
//!    the newest) is `replayed`; the rest is decrypted. A sender already on air for more
//!    than one wrap of its sequence number when the server starts is found by a
//!    rate-limited rollover counter search, after which it authenticates. The allowlist still comes first:
//!    the key proves who made a packet, the allowlist keeps everyone else from costing
//!    an HMAC.
//! 3. Anything that is not RTP version 2 with a configured payload type and a well-formed
//!    payload (an Opus packet that `opus_packet_parse` accepts, of 2.5–120 ms; L16 of whole
//!    sample frames) is `malformed`.
//! 4. The first valid packet while idle starts a stream ([`LiveEvent::Receiving`]) keyed by
//!    its SSRC. A packet with another SSRC takes over only once the current SSRC has been
//!    quiet for `jitter_delay` — a restarted encoder, in practice — because two senders
//!    taking turns packet by packet would reset the decoder every 20 ms. Until then it is
//!    `foreign_ssrc`. A takeover drops the held packets and the decoder state.
//! 5. Packets are held by extended sequence number (16-bit wrap-around handled). Duplicates
//!    (held, or already played) are `duplicate`; packets whose turn has passed are `late`.
//!    A sequence number more than 3000 ahead or 1024 behind is `late` too, unless the next
//!    packet continues from it: then the sender restarted its numbering and the stream is
//!    reset, as RFC 3550 §A.1 does.
//!
//! # Playout
//! The first packet opens a `jitter_delay` window (default 60 ms, the reorder allowance);
//! after it one frame is released per 20 ms of `now`, so each packet waits about
//! `jitter_delay` for stragglers. Packets are decoded in sequence order into a sample FIFO
//! that is cut into 960-sample frames, so any packet duration works (ffmpeg sends 20 ms
//! Opus, but L16 packets of ~15 ms). A packet that is missing when its audio is needed is
//! concealed — Opus packet-loss concealment for the last packet's duration, silence for
//! L16 — and counted `lost`; when it turns up later it is `late`. After 5 consecutive
//! concealments (100 ms at 20 ms packets) the receiver stops inventing audio: it jumps to
//! the next held packet, or stalls (no frames) until packets arrive, then re-buffers.
//! Because a stream that simply ended cannot be told from a stalled one, the end of every
//! stream adds up to 5 to `lost`.
//!
//! Latency is kept bounded because an encoder's clock is never exactly ours: over a
//! two-hour ceremony 100 ppm is 0.7 s. When more than the playout delay (`jitter_delay`,
//! plus resampler latency, below) + 40 ms of audio is waiting, silent frames (below the
//! silence threshold) are skipped, at most one per frame slot, so the catch-up happens in
//! speech pauses where nobody hears it. Beyond the delay + 1 s, frames are skipped
//! regardless. Both count in `frames_skipped`.
//! A sender that is slower than our clock shows up as an occasional concealed frame.
//!
//! Opus is decoded with a stereo decoder and averaged to mono: RFC 7587 always signals
//! two channels and ffmpeg's libopus sends stereo by default; a mono packet decodes to two
//! equal channels, so nothing is lost. L16 is big-endian, any channel count (averaged) and
//! any rate within the pipeline resampler's range (resampled to 48 kHz). The resampler
//! holds back its filter delay and emits whole blocks, so a stream that needs it starts
//! later by that latency (measured once per rate and process: ~40 ms at
//! 44.1 kHz, ~190 ms at 8 kHz) and keeps the full `jitter_delay` for reordering. A stream
//! that switches payload type mid-way keeps the delay it started with.
//!
//! # On air
//! Events alternate strictly: [`LiveEvent::Receiving`] then [`LiveEvent::Ended`].
//! `Ended { NoPackets }` comes `no_packet_timeout` after the last packet; the stream is
//! then forgotten, and the next packet is a new `Receiving`. `Ended { Silence }` comes
//! after `silence_timeout` of frames whose RMS is below `silence_threshold_dbfs` (0 dBFS =
//! RMS of a full-scale square wave). The stream is still decoded afterwards, but its
//! frames are withheld until one is not silent, which brings a new `Receiving`: a studio
//! that forgot to stop its encoder does not hold the air, and one that resumes talking
//! goes back on air by itself.
//!
//! # Senders that were tried (ffmpeg 5.1)
//! - Opus: `ffmpeg -re -i speech.wav -c:a libopus -f rtp rtp://SERVER:PORT`. ffmpeg 5.1
//!   picks dynamic payload type 97 (`a=rtpmap:97 opus/48000/2` in its SDP), which the
//!   default `opus_payload_types` (96–127) covers; 20 ms packets, two every 40 ms.
//! - L16 at 48 kHz: `ffmpeg -re -i speech.wav -c:a pcm_s16be -ar 48000 -ac 1 -payload_type
//!   100 -f rtp rtp://SERVER:PORT` with `L16Format { payload_type: 100, rate: 48000,
//!   channels: 1 }` configured. Without `-payload_type` ffmpeg uses 97 (`a=rtpmap:97
//!   L16/48000/1`), which would collide with Opus's; configuring it as L16 wins over the
//!   Opus default. Packets carry 730 samples (1460 bytes), sent in bursts every ~40 ms.
//! - L16 at 44.1 kHz: `-ar 44100 -ac 2` (or `-ac 1`) makes ffmpeg use the static payload
//!   types 10 (or 11), which need no configuration.
//! - `?localaddr=127.0.0.2` on the URL makes ffmpeg send from that address (used by the
//!   allowlist test).
//! - SRTP: `ffmpeg -re -i speech.wav -c:a libopus -f rtp -srtp_out_suite
//!   AES_CM_128_HMAC_SHA1_80 -srtp_out_params $(cat live-srtp.key) srtp://SERVER:PORT`,
//!   with the same key in `[live] srtp_key_file`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rtp_rs::{RtpReader, Seq};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::srtp::{MasterKey, SrtpError, SrtpReceiver};
use super::{PcmFrame, FRAME_SAMPLES};
use crate::pipeline::resampler::{Resampler, SUPPORTED_RATES};

/// Duration of one [`PcmFrame`].
pub const FRAME_DURATION: Duration = Duration::from_millis(20);

/// The RFC 3551 static L16 payload types, always understood.
pub const STATIC_L16: [L16Format; 2] = [
    L16Format {
        payload_type: 10,
        rate: 44_100,
        channels: 2,
    },
    L16Format {
        payload_type: 11,
        rate: 44_100,
        channels: 1,
    },
];

/// Longest Opus packet, 120 ms at 48 kHz (RFC 6716 §3.2.5).
const MAX_OPUS_SAMPLES: usize = 5_760;
/// Shortest Opus frame, 2.5 ms at 48 kHz.
const MIN_OPUS_SAMPLES: usize = 120;
/// Concealment runs longer than this are not worth inventing: PLC turns to buzz, and a
/// longer run means the sender stopped or jumped, not that a packet went missing.
const MAX_CONCEALED_RUN: u32 = 5;
/// RFC 3550 §A.1's MAX_DROPOUT: a larger forward jump is suspect.
const MAX_DROPOUT: u64 = 3_000;
/// How far back "already played" is remembered, to tell duplicates from late packets.
const HISTORY: usize = 1_024;
/// While nothing has been played yet, a packet this much older than the first one is
/// taken as reordered rather than late (RFC 3550 §A.1's MAX_MISORDER).
const MAX_MISORDER: u64 = 100;
/// Sequence numbers are extended to 64 bits from here, so that packets numbered before
/// the stream's first never underflow.
const EXT_BASE: u64 = 1 << 32;
/// Waiting audio beyond `jitter_delay` above which silent frames are skipped: two frames, as
/// senders such as ffmpeg send packets in pairs. A stream whose grid was anchored on a packet
/// that came late (a sender or link that stalled, then delivered in a burst) keeps that lateness
/// until it is taken out, so the margin is kept small (it was 100 ms).
const CATCH_UP_SLACK: Duration = Duration::from_millis(40);
/// Waiting audio beyond `jitter_delay` above which any frame is skipped.
const MAX_EXTRA_DELAY: Duration = Duration::from_secs(1);
/// A caller that comes back later than this (a suspended process, an overloaded runtime)
/// gets the clock re-based instead of a burst of all the frames it missed.
const MAX_RELEASE_LAG: Duration = Duration::from_millis(200);
/// Repeated warnings about the same problem are logged at most this often.
const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// Upper bounds that keep every `Instant + Duration` in range.
const MAX_JITTER_DELAY: Duration = Duration::from_secs(2);
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Events the runner keeps while nobody reads them; they are rare (two per broadcast).
const MAX_PENDING_EVENTS: usize = 64;

/// An L16 payload type: 16-bit big-endian PCM at `rate` Hz with `channels` interleaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L16Format {
    pub payload_type: u8,
    pub rate: u32,
    pub channels: u16,
}

/// Configuration of [`LiveRtpReceiver`].
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRtpConfig {
    /// Addresses allowed to send; everyone else is dropped unread. Empty: nobody.
    pub allow: Vec<IpAddr>,
    /// When set, every packet must be SRTP (AES_CM_128_HMAC_SHA1_80) under this key.
    pub srtp: Option<MasterKey>,
    /// Payload types that carry Opus. Default: 96–127 (which includes the customary 111),
    /// minus any that `l16` configures.
    pub opus_payload_types: Vec<u8>,
    /// Dynamic L16 payload types, in addition to [`STATIC_L16`] (which these override).
    pub l16: Vec<L16Format>,
    /// Reorder window: how long the first packet is held before playout starts.
    pub jitter_delay: Duration,
    /// [`EndReason::NoPackets`] after this long without a packet.
    pub no_packet_timeout: Duration,
    /// [`EndReason::Silence`] after this long of silent frames; zero disables.
    pub silence_timeout: Duration,
    /// Frames with an RMS level below this are silent.
    pub silence_threshold_dbfs: f32,
}

impl Default for LiveRtpConfig {
    fn default() -> Self {
        LiveRtpConfig {
            allow: Vec::new(),
            srtp: None,
            opus_payload_types: (96..=127).collect(),
            l16: Vec::new(),
            jitter_delay: Duration::from_millis(60),
            no_packet_timeout: Duration::from_secs(5),
            silence_timeout: Duration::from_secs(30),
            silence_threshold_dbfs: -50.0,
        }
    }
}

/// A [`LiveRtpConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LiveConfigError {
    #[error("payload type {0} is not an RTP payload type (0..=127)")]
    PayloadType(u8),
    #[error("L16 payload type {0} is configured twice")]
    DuplicateL16(u8),
    #[error("L16 payload type {payload_type}: {reason}")]
    L16 { payload_type: u8, reason: String },
    #[error("jitter_delay {0:?} is longer than the {max:?} maximum", max = MAX_JITTER_DELAY)]
    JitterDelay(Duration),
    #[error("no_packet_timeout must be between 1 ms and {max:?}, not {0:?}", max = MAX_TIMEOUT)]
    NoPacketTimeout(Duration),
    #[error("silence_timeout {0:?} is longer than {max:?}", max = MAX_TIMEOUT)]
    SilenceTimeout(Duration),
    #[error("silence_threshold_dbfs must be a finite level at or below 0 dBFS, not {0}")]
    SilenceThreshold(f32),
}

/// Where live audio comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveSource {
    /// RTP; the address of the stream's first packet.
    Rtp(SocketAddr),
    /// The local mixer's pipe ([`super::pcm_pipe`]).
    Pipe,
    /// A person speaking from the console in a browser; the browser's address. Its packets
    /// come through [`LiveRtpReceiver::handle_console_packet`], not the UDP socket.
    Console(SocketAddr),
}

/// One packet of a console broadcast: RTP made by the server from an Opus packet the
/// browser sent ([`crate::broadcast::console_live`]), handed to the live input's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsolePacket {
    /// The browser's address.
    pub from: SocketAddr,
    /// An RTP packet with an Opus payload.
    pub rtp: Vec<u8>,
}

/// Why live audio stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// No packet for `no_packet_timeout`.
    NoPackets,
    /// Only silence for `silence_timeout`.
    Silence,
    /// The pipe reached end of file.
    EndOfInput,
}

/// What the runtime needs to know to put live audio on and off the air. `Receiving` and
/// `Ended` strictly alternate, starting with `Receiving`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveEvent {
    Receiving { from: LiveSource },
    Ended { reason: EndReason },
}

/// A snapshot of [`LiveStatsHandle`]. Every datagram lands in exactly one of
/// `rejected_source`, `not_authenticated`, `replayed`, `malformed`, `foreign_ssrc`, `duplicate`, `late` or `accepted`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Datagrams received, whatever they were.
    pub packets: u64,
    /// Bytes of those datagrams.
    pub bytes: u64,
    /// Valid packets of the current stream, held for playout.
    pub accepted: u64,
    /// Datagrams from addresses not in the allowlist.
    pub rejected_source: u64,
    /// The most recent of those addresses.
    pub last_rejected_source: Option<SocketAddr>,
    /// With an SRTP key: datagrams whose tag did not verify (plain RTP, a wrong key, an
    /// altered packet).
    pub not_authenticated: u64,
    /// With an SRTP key: authenticated datagrams that had been received before.
    pub replayed: u64,
    /// Not RTP v2, unknown payload type, or an undecodable payload.
    pub malformed: u64,
    /// From a second SSRC while the current one was still sending.
    pub foreign_ssrc: u64,
    /// Already held or already played.
    pub duplicate: u64,
    /// Arrived after their turn (or with a sequence number far off the stream's).
    pub late: u64,
    /// Missing (or, rarely, undecodable) packets that were concealed; one per 20 ms frame
    /// at ffmpeg's packetisation.
    pub lost: u64,
    /// Frames handed out by [`LiveRtpReceiver::poll_frame`].
    pub frames_out: u64,
    /// Frames skipped to keep latency bounded (see the module docs).
    pub frames_skipped: u64,
    /// Frames [`run_live_rtp`] dropped because the frame channel was full.
    pub frames_dropped: u64,
}

impl LiveStats {
    /// The sum of the counters every datagram lands in exactly one of: always `packets`.
    pub fn sorted(&self) -> u64 {
        self.rejected_source
            + self.not_authenticated
            + self.replayed
            + self.malformed
            + self.foreign_ssrc
            + self.duplicate
            + self.late
            + self.accepted
    }
}

/// Live counters, shared between the receiver and whoever watches it.
#[derive(Debug, Default)]
pub struct LiveStatsHandle {
    packets: AtomicU64,
    bytes: AtomicU64,
    accepted: AtomicU64,
    rejected_source: AtomicU64,
    last_rejected_source: Mutex<Option<SocketAddr>>,
    not_authenticated: AtomicU64,
    replayed: AtomicU64,
    malformed: AtomicU64,
    foreign_ssrc: AtomicU64,
    duplicate: AtomicU64,
    late: AtomicU64,
    lost: AtomicU64,
    frames_out: AtomicU64,
    frames_skipped: AtomicU64,
    frames_dropped: AtomicU64,
}

impl LiveStatsHandle {
    pub fn snapshot(&self) -> LiveStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LiveStats {
            packets: get(&self.packets),
            bytes: get(&self.bytes),
            accepted: get(&self.accepted),
            rejected_source: get(&self.rejected_source),
            last_rejected_source: *self
                .last_rejected_source
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            not_authenticated: get(&self.not_authenticated),
            replayed: get(&self.replayed),
            malformed: get(&self.malformed),
            foreign_ssrc: get(&self.foreign_ssrc),
            duplicate: get(&self.duplicate),
            late: get(&self.late),
            lost: get(&self.lost),
            frames_out: get(&self.frames_out),
            frames_skipped: get(&self.frames_skipped),
            frames_dropped: get(&self.frames_dropped),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// `start + d`, or `None` where that is beyond what `Instant` can hold.
fn deadline(start: Instant, d: Duration) -> Option<Instant> {
    start.checked_add(d)
}

/// Number of whole frames that cover `d`, rounded up.
pub(super) fn frames_in(d: Duration) -> u64 {
    let n = d.as_nanos().div_ceil(FRAME_DURATION.as_nanos());
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Mean-square level corresponding to `dbfs` (RMS relative to full scale).
pub(super) fn mean_square_threshold(dbfs: f32) -> f32 {
    10f32.powf(dbfs / 10.0)
}

pub(super) fn is_silent(frame: &[f32], mean_square_threshold: f32) -> bool {
    let energy: f32 = frame.iter().map(|s| s * s).sum();
    energy < mean_square_threshold * frame.len() as f32
}

pub(super) fn check_silence_config(timeout: Duration, dbfs: f32) -> Result<(), LiveConfigError> {
    if timeout > MAX_TIMEOUT {
        return Err(LiveConfigError::SilenceTimeout(timeout));
    }
    if !dbfs.is_finite() || dbfs > 0.0 {
        return Err(LiveConfigError::SilenceThreshold(dbfs));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Air {
    Off,
    On,
    /// Ended for silence; frames are withheld until one is not silent.
    Dormant,
}

/// The on-air bookkeeping shared by the RTP and pipe ingests: emits the events and
/// decides which frames are delivered.
#[derive(Debug)]
pub(super) struct AirState {
    air: Air,
    source: LiveSource,
    threshold: f32,
    /// Silent frames that end the broadcast; 0 = never.
    limit: u64,
    silent_run: u64,
}

impl AirState {
    pub(super) fn new(silence_timeout: Duration, silence_threshold_dbfs: f32) -> Self {
        AirState {
            air: Air::Off,
            source: LiveSource::Pipe,
            threshold: mean_square_threshold(silence_threshold_dbfs),
            limit: frames_in(silence_timeout),
            silent_run: 0,
        }
    }

    pub(super) fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Audio started to arrive.
    pub(super) fn start(&mut self, source: LiveSource) -> Option<LiveEvent> {
        if self.air != Air::Off {
            return None;
        }
        self.air = Air::On;
        self.source = source;
        self.silent_run = 0;
        Some(LiveEvent::Receiving { from: source })
    }

    /// Looks at one frame: whether to deliver it, and whether that changes the air state.
    pub(super) fn frame(&mut self, frame: &[f32]) -> (bool, Option<LiveEvent>) {
        let silent = is_silent(frame, self.threshold);
        match self.air {
            Air::Off => (false, None),
            Air::On if silent => {
                self.silent_run += 1;
                if self.limit != 0 && self.silent_run >= self.limit {
                    self.air = Air::Dormant;
                    let ended = LiveEvent::Ended {
                        reason: EndReason::Silence,
                    };
                    // The frame that completes the timeout is still part of the broadcast.
                    return (true, Some(ended));
                }
                (true, None)
            }
            Air::On => {
                self.silent_run = 0;
                (true, None)
            }
            Air::Dormant if silent => (false, None),
            Air::Dormant => {
                self.air = Air::On;
                self.silent_run = 0;
                (true, Some(LiveEvent::Receiving { from: self.source }))
            }
        }
    }

    /// Audio stopped. Only a broadcast that is on air gets an `Ended`: a dormant one has
    /// already had its `Ended { Silence }`.
    pub(super) fn end(&mut self, reason: EndReason) -> Option<LiveEvent> {
        let was = std::mem::replace(&mut self.air, Air::Off);
        (was == Air::On).then_some(LiveEvent::Ended { reason })
    }
}

/// Logs one warning per interval, with the number of repeats that were kept quiet.
#[derive(Debug, Default)]
struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    fn check(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= WARN_INTERVAL);
        if due {
            self.last = Some(now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Opus,
    L16 { rate: u32, channels: u16 },
}

impl Format {
    /// Samples per channel in `payload` at the format's own rate, if it is well formed.
    fn samples(self, payload: &[u8]) -> Result<usize, &'static str> {
        match self {
            Format::Opus => {
                if payload.is_empty() {
                    return Err("empty Opus payload");
                }
                // get_nb_samples only reads the TOC byte; parse checks the frame lengths
                // against the packet, which is what makes a packet undecodable.
                opus::packet::parse(payload).map_err(|_| "invalid Opus packet")?;
                let n = opus::packet::get_nb_samples(payload, 48_000)
                    .map_err(|_| "invalid Opus packet")?;
                if (MIN_OPUS_SAMPLES..=MAX_OPUS_SAMPLES).contains(&n) {
                    Ok(n)
                } else {
                    Err("Opus packet longer than 120 ms")
                }
            }
            Format::L16 { channels, .. } => {
                let frame = 2 * usize::from(channels);
                if payload.is_empty() || !payload.len().is_multiple_of(frame) {
                    Err("L16 payload is not a whole number of sample frames")
                } else {
                    Ok(payload.len() / frame)
                }
            }
        }
    }

    fn rate(self) -> u32 {
        match self {
            Format::Opus => 48_000,
            Format::L16 { rate, .. } => rate,
        }
    }
}

/// A payload type's format, and how much longer than Opus its audio takes to come out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Payload {
    format: Format,
    latency: Duration,
}

/// Extra playout delay of audio at `rate` through the pipeline resampler: it holds back its
/// filter delay and emits whole blocks, so a frame needs input up to delay + one block past
/// its end. Measured with silence rather than derived from the resampler's parameters, so
/// that it follows whatever the resampler does.
fn resampler_latency(rate: u32) -> Result<Duration, String> {
    // Measuring runs the resampler over up to two seconds of input, and the result depends
    // on the rate alone: keep it for the process, not per receiver.
    static MEASURED: Mutex<Vec<(u32, Duration)>> = Mutex::new(Vec::new());
    let known = MEASURED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|(r, _)| *r == rate)
        .map(|&(_, l)| l);
    if let Some(l) = known {
        return Ok(l);
    }
    let l = measure_resampler_latency(rate)?;
    MEASURED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((rate, l));
    Ok(l)
}

fn measure_resampler_latency(rate: u32) -> Result<Duration, String> {
    if rate == 48_000 {
        return Ok(Duration::ZERO);
    }
    let mut resampler = Resampler::new(rate)?;
    let step = (rate / 1_000).max(1) as usize;
    let zeros = vec![0.0; step];
    let mut out = Vec::new();
    let mut fed = 0usize;
    let mut first_block: Option<(usize, usize)> = None;
    while fed < 2 * rate as usize {
        resampler.process(&zeros, &mut out)?;
        fed += step;
        match first_block {
            None if !out.is_empty() => first_block = Some((fed, out.len())),
            Some((fed_then, out_then)) if out.len() > out_then => {
                let delay = fed_then as f64 / f64::from(rate) - out_then as f64 / 48_000.0;
                let block = (fed - fed_then) as f64 / f64::from(rate);
                return Ok(Duration::from_secs_f64(delay.max(0.0) + block));
            }
            _ => {}
        }
    }
    Err(format!("the {rate} Hz resampler produced no output"))
}

/// A packet waiting for its turn.
#[derive(Debug)]
struct Held {
    format: Format,
    /// Playout delay its format needs beyond `jitter_delay`.
    latency: Duration,
    payload: Vec<u8>,
    /// Its duration in 48 kHz samples, for the latency bound.
    samples_48k: usize,
}

/// Decoder state of one stream; replaced when the format changes.
#[derive(Debug)]
struct Decoder {
    format: Format,
    codec: Codec,
    /// Duration of the last packet, in samples per channel at the format's rate: what a
    /// concealment stands in for.
    last_samples: usize,
}

#[derive(Debug)]
enum Codec {
    Opus(opus::Decoder),
    L16 {
        channels: usize,
        resampler: Resampler,
    },
}

impl Decoder {
    fn new(format: Format) -> Result<Self, String> {
        let codec = match format {
            Format::Opus => Codec::Opus(
                opus::Decoder::new(48_000, opus::Channels::Stereo)
                    .map_err(|e| format!("cannot create Opus decoder: {e}"))?,
            ),
            Format::L16 { rate, channels } => Codec::L16 {
                channels: usize::from(channels),
                resampler: Resampler::new(rate)?,
            },
        };
        Ok(Decoder {
            format,
            codec,
            last_samples: FRAME_SAMPLES * format.rate() as usize / 48_000,
        })
    }

    /// Decodes one packet, appending 48 kHz mono samples to `out`.
    fn decode(
        &mut self,
        payload: &[u8],
        out: &mut Vec<f32>,
        scratch: &mut Vec<f32>,
    ) -> Result<(), String> {
        match &mut self.codec {
            Codec::Opus(decoder) => {
                scratch.resize(MAX_OPUS_SAMPLES * 2, 0.0);
                let n = decoder
                    .decode_float(payload, scratch, false)
                    .map_err(|e| e.to_string())?;
                downmix_stereo(&scratch[..2 * n], out);
                self.last_samples = n;
            }
            Codec::L16 {
                channels,
                resampler,
            } => {
                let width = 2 * *channels;
                let scale = 1.0 / (32_768.0 * *channels as f32);
                scratch.clear();
                scratch.extend(payload.chunks_exact(width).map(|frame| {
                    let sum: i32 = frame
                        .chunks_exact(2)
                        .map(|b| i32::from(i16::from_be_bytes([b[0], b[1]])))
                        .sum();
                    sum as f32 * scale
                }));
                resampler.process(scratch, out)?;
                self.last_samples = scratch.len();
            }
        }
        Ok(())
    }

    /// Stands in for one missing packet of the last packet's duration.
    fn conceal(&mut self, out: &mut Vec<f32>, scratch: &mut Vec<f32>) -> Result<(), String> {
        match &mut self.codec {
            Codec::Opus(decoder) => {
                // libopus needs the exact missing duration, a multiple of 2.5 ms, to stay in
                // step with the next real packet.
                let n = self.last_samples.clamp(MIN_OPUS_SAMPLES, MAX_OPUS_SAMPLES);
                scratch.resize(2 * n, 0.0);
                let got = decoder
                    .decode_float(&[], &mut scratch[..2 * n], false)
                    .map_err(|e| e.to_string())?;
                downmix_stereo(&scratch[..2 * got.min(n)], out);
            }
            Codec::L16 { resampler, .. } => {
                // Through the resampler rather than straight into `out`, so the silence lands
                // after the resampler's buffered tail, where it belongs.
                scratch.clear();
                scratch.resize(self.last_samples, 0.0);
                resampler.process(scratch, out)?;
            }
        }
        Ok(())
    }

    /// Pushes out whatever the resampler still holds, before this decoder is replaced.
    fn finish(&mut self, out: &mut Vec<f32>) {
        if let Codec::L16 { resampler, .. } = &mut self.codec {
            if let Err(e) = resampler.finish(out) {
                tracing::debug!("live RTP: flushing the L16 resampler failed: {e}");
            }
        }
    }
}

fn downmix_stereo(interleaved: &[f32], out: &mut Vec<f32>) {
    out.extend(
        interleaved
            .chunks_exact(2)
            .map(|pair| (pair[0] + pair[1]) * 0.5),
    );
}

/// Which sequence numbers just behind the playout point were played (as opposed to
/// concealed), so that a repeat of a played packet is a duplicate and not late.
#[derive(Debug)]
struct History {
    played: Vec<bool>,
}

impl History {
    fn new() -> Self {
        History {
            played: vec![false; HISTORY],
        }
    }

    fn slot(ext: u64) -> usize {
        (ext % HISTORY as u64) as usize
    }

    fn set(&mut self, ext: u64, played: bool) {
        self.played[Self::slot(ext)] = played;
    }

    fn played(&self, ext: u64) -> bool {
        self.played[Self::slot(ext)]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Playout {
    /// Holding packets until `until`.
    Buffering { until: Instant },
    /// Releasing a frame at `next_release` and every 20 ms after.
    Playing { next_release: Instant },
    /// Nothing left to play; the next packet starts a new buffering window.
    Stalled,
}

/// Where an arriving packet goes.
enum Slot {
    Hold(u64),
    Duplicate,
    Late,
    Restart,
}

/// Latency bounds, in 48 kHz samples of waiting audio.
#[derive(Debug, Clone, Copy)]
struct Limits {
    soft: usize,
    hard: usize,
    silence: f32,
}

impl Limits {
    /// For a stream whose packets wait `delay` in steady state.
    fn new(delay: Duration, silence: f32) -> Self {
        let samples = |d: Duration| (d.as_micros() * 48 / 1_000) as usize;
        Limits {
            soft: samples(delay + CATCH_UP_SLACK),
            hard: samples(delay + MAX_EXTRA_DELAY),
            silence,
        }
    }
}

/// One sender's stream (one SSRC).
#[derive(Debug)]
struct Stream {
    ssrc: u32,
    from: SocketAddr,
    /// Whether it comes from the console ([`LiveSource::Console`]).
    console: bool,
    last_heard: Instant,
    /// `jitter_delay`, plus the resampler's latency for L16 that is not at 48 kHz.
    delay: Duration,
    limits: Limits,
    playout: Playout,
    /// Whether any packet was played: until then, older packets may still be reordered
    /// ones rather than late ones.
    started: bool,
    next_seq: u64,
    held: BTreeMap<u64, Held>,
    held_samples: usize,
    history: History,
    /// RFC 3550 §A.1: the sequence number that, arriving next, confirms a restart.
    bad_seq: Option<u16>,
    decoder: Option<Decoder>,
    fifo: Vec<f32>,
    scratch: Vec<f32>,
    concealed_run: u32,
}

impl Stream {
    fn new(
        ssrc: u32,
        from: SocketAddr,
        seq: Seq,
        now: Instant,
        delay: Duration,
        silence: f32,
    ) -> Self {
        Stream {
            ssrc,
            from,
            console: false,
            last_heard: now,
            delay,
            limits: Limits::new(delay, silence),
            playout: Playout::Buffering {
                until: deadline(now, delay).unwrap_or(now),
            },
            started: false,
            next_seq: EXT_BASE + u64::from(u16::from(seq)),
            held: BTreeMap::new(),
            held_samples: 0,
            history: History::new(),
            bad_seq: None,
            decoder: None,
            fifo: Vec::with_capacity(FRAME_SAMPLES * 4),
            scratch: Vec::with_capacity(MAX_OPUS_SAMPLES * 2),
            concealed_run: 0,
        }
    }

    fn classify(&mut self, seq: Seq) -> Slot {
        let delta = seq - Seq::from(self.next_seq as u16);
        let ext = if delta >= 0 {
            self.next_seq + u64::from(delta.unsigned_abs())
        } else {
            self.next_seq - u64::from(delta.unsigned_abs())
        };
        let behind = self.next_seq.saturating_sub(ext);
        let in_window = if delta >= 0 {
            ext - self.next_seq <= MAX_DROPOUT
        } else if !self.started {
            behind <= MAX_MISORDER
        } else {
            behind <= HISTORY as u64
        };
        if !in_window {
            if self.bad_seq == Some(u16::from(seq)) {
                return Slot::Restart;
            }
            self.bad_seq = Some(u16::from(seq.next()));
            return Slot::Late;
        }
        self.bad_seq = None;
        if delta >= 0 {
            if self.held.contains_key(&ext) {
                Slot::Duplicate
            } else {
                Slot::Hold(ext)
            }
        } else if !self.started {
            // Reordered ahead of the stream's first packet: play from here instead.
            self.next_seq = ext;
            if self.held.contains_key(&ext) {
                Slot::Duplicate
            } else {
                Slot::Hold(ext)
            }
        } else if self.history.played(ext) {
            Slot::Duplicate
        } else {
            Slot::Late
        }
    }

    fn hold(&mut self, ext: u64, packet: Held, now: Instant) {
        self.held_samples += packet.samples_48k;
        self.held.insert(ext, packet);
        if self.playout == Playout::Stalled {
            self.playout = Playout::Buffering {
                until: deadline(now, self.delay).unwrap_or(now),
            };
        }
    }

    /// Moves the playout point forward to `to`, over packets that will never be played.
    fn jump_to(&mut self, to: u64) {
        let from = self.next_seq.max(to.saturating_sub(HISTORY as u64));
        for ext in from..to {
            self.history.set(ext, false);
        }
        self.next_seq = self.next_seq.max(to);
    }

    fn start_playing(&mut self, at: Instant) {
        // Whatever is older than the oldest held packet had its chance during the window.
        if let Some(&first) = self.held.keys().next() {
            self.jump_to(first);
        }
        self.started = true;
        self.playout = Playout::Playing { next_release: at };
    }

    fn advance(&mut self, played: bool) {
        self.history.set(self.next_seq, played);
        self.next_seq += 1;
    }

    fn decode(&mut self, packet: &Held, stats: &LiveStatsHandle) {
        if self
            .decoder
            .as_ref()
            .is_none_or(|d| d.format != packet.format)
        {
            if let Some(old) = &mut self.decoder {
                old.finish(&mut self.fifo);
            }
            self.decoder = match Decoder::new(packet.format) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::error!("live RTP: {e}");
                    None
                }
            };
        }
        let Some(decoder) = &mut self.decoder else {
            self.fifo.resize(self.fifo.len() + packet.samples_48k, 0.0);
            return;
        };
        if let Err(e) = decoder.decode(&packet.payload, &mut self.fifo, &mut self.scratch) {
            // It passed opus_packet_parse on arrival and was counted as accepted, so it
            // counts as lost rather than malformed: every datagram is counted once.
            bump(&stats.lost);
            tracing::debug!("live RTP: undecodable packet concealed: {e}");
            self.conceal();
        }
    }

    fn conceal(&mut self) {
        let Some(decoder) = &mut self.decoder else {
            self.fifo.resize(self.fifo.len() + FRAME_SAMPLES, 0.0);
            return;
        };
        if let Err(e) = decoder.conceal(&mut self.fifo, &mut self.scratch) {
            tracing::debug!("live RTP: concealment failed, silence instead: {e}");
            let n = decoder.last_samples * 48_000 / decoder.format.rate() as usize;
            self.fifo.resize(self.fifo.len() + n.max(1), 0.0);
        }
    }

    /// Decodes or conceals packets in sequence order until a frame is ready; `None` when
    /// there is nothing left to play.
    fn next_frame(&mut self, stats: &LiveStatsHandle) -> Option<Box<PcmFrame>> {
        while self.fifo.len() < FRAME_SAMPLES {
            if let Some(packet) = self.held.remove(&self.next_seq) {
                self.held_samples -= packet.samples_48k;
                self.decode(&packet, stats);
                self.advance(true);
                self.concealed_run = 0;
            } else if self.concealed_run < MAX_CONCEALED_RUN {
                self.conceal();
                bump(&stats.lost);
                self.advance(false);
                self.concealed_run += 1;
            } else if let Some(&first) = self.held.keys().next() {
                tracing::debug!(
                    "live RTP: skipping {} missing packets",
                    first - self.next_seq
                );
                self.jump_to(first);
                self.concealed_run = 0;
            } else {
                return None;
            }
        }
        let mut frame = Box::new([0.0; FRAME_SAMPLES]);
        frame.copy_from_slice(&self.fifo[..FRAME_SAMPLES]);
        self.fifo.drain(..FRAME_SAMPLES);
        Some(frame)
    }

    /// [`Self::next_frame`], skipping frames while too much audio is waiting.
    fn next_frame_bounded(&mut self, stats: &LiveStatsHandle) -> Option<Box<PcmFrame>> {
        let limits = self.limits;
        let mut may_skip_silence = true;
        loop {
            let frame = self.next_frame(stats)?;
            let waiting = self.held_samples + self.fifo.len();
            if waiting > limits.hard {
                bump(&stats.frames_skipped);
                continue;
            }
            if may_skip_silence && waiting > limits.soft && is_silent(&*frame, limits.silence) {
                may_skip_silence = false;
                bump(&stats.frames_skipped);
                continue;
            }
            return Some(frame);
        }
    }
}

/// [`LiveRtpReceiver::backlog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Packets held for reordering.
    pub packets: usize,
    /// Audio waiting: those packets and the decoded samples not yet in a frame, at 48 kHz.
    pub samples: usize,
    /// The playout delay + 1 s, in samples at 48 kHz.
    pub limit: usize,
}

/// The sans-IO live RTP receiver. See the module docs.
pub struct LiveRtpReceiver {
    allow: Vec<IpAddr>,
    srtp: Option<SrtpReceiver>,
    formats: [Option<Payload>; 128],
    jitter_delay: Duration,
    no_packet_timeout: Duration,
    stream: Option<Stream>,
    air: AirState,
    /// When the frame [`Self::poll_frame`] last returned was due: its slot on the release grid,
    /// not the instant of the call.
    last_release: Option<Instant>,
    events: VecDeque<LiveEvent>,
    stats: Arc<LiveStatsHandle>,
    warn_rejected: WarnLimiter,
    warn_unauthenticated: WarnLimiter,
    warn_malformed: WarnLimiter,
    warn_foreign: WarnLimiter,
}

impl fmt::Debug for LiveRtpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveRtpReceiver")
            .field("allow", &self.allow)
            .field("srtp", &self.srtp.is_some())
            .field("jitter_delay", &self.jitter_delay)
            .field("ssrc", &self.stream.as_ref().map(|s| s.ssrc))
            .field("playout", &self.stream.as_ref().map(|s| s.playout))
            .field("air", &self.air.air)
            .field("stats", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

impl LiveRtpReceiver {
    pub fn new(config: LiveRtpConfig) -> Result<Self, LiveConfigError> {
        if config.jitter_delay > MAX_JITTER_DELAY {
            return Err(LiveConfigError::JitterDelay(config.jitter_delay));
        }
        if config.no_packet_timeout < Duration::from_millis(1)
            || config.no_packet_timeout > MAX_TIMEOUT
        {
            return Err(LiveConfigError::NoPacketTimeout(config.no_packet_timeout));
        }
        check_silence_config(config.silence_timeout, config.silence_threshold_dbfs)?;

        let mut formats = [None; 128];
        for &pt in &config.opus_payload_types {
            *formats
                .get_mut(usize::from(pt))
                .ok_or(LiveConfigError::PayloadType(pt))? = Some(Payload {
                format: Format::Opus,
                latency: Duration::ZERO,
            });
        }
        let latency = resampler_latency;
        for l16 in STATIC_L16 {
            let bad = |reason| LiveConfigError::L16 {
                payload_type: l16.payload_type,
                reason,
            };
            formats[usize::from(l16.payload_type)] = Some(Payload {
                format: Format::L16 {
                    rate: l16.rate,
                    channels: l16.channels,
                },
                latency: latency(l16.rate).map_err(bad)?,
            });
        }
        let mut configured = [false; 128];
        for l16 in &config.l16 {
            let pt = l16.payload_type;
            let seen = configured
                .get_mut(usize::from(pt))
                .ok_or(LiveConfigError::PayloadType(pt))?;
            if std::mem::replace(seen, true) {
                return Err(LiveConfigError::DuplicateL16(pt));
            }
            let bad = |reason: String| LiveConfigError::L16 {
                payload_type: pt,
                reason,
            };
            if l16.channels == 0 {
                return Err(bad("zero channels".into()));
            }
            if !SUPPORTED_RATES.contains(&l16.rate) {
                return Err(bad(format!(
                    "rate {} Hz outside {}..={} Hz",
                    l16.rate,
                    SUPPORTED_RATES.start(),
                    SUPPORTED_RATES.end()
                )));
            }
            formats[usize::from(pt)] = Some(Payload {
                format: Format::L16 {
                    rate: l16.rate,
                    channels: l16.channels,
                },
                latency: latency(l16.rate).map_err(bad)?,
            });
        }

        Ok(LiveRtpReceiver {
            allow: config.allow.iter().map(IpAddr::to_canonical).collect(),
            srtp: config.srtp.as_ref().map(SrtpReceiver::new),
            formats,
            jitter_delay: config.jitter_delay,
            no_packet_timeout: config.no_packet_timeout,
            stream: None,
            last_release: None,
            events: VecDeque::new(),
            air: AirState::new(config.silence_timeout, config.silence_threshold_dbfs),
            stats: Arc::default(),
            warn_rejected: WarnLimiter::default(),
            warn_unauthenticated: WarnLimiter::default(),
            warn_malformed: WarnLimiter::default(),
            warn_foreign: WarnLimiter::default(),
        })
    }

    /// The counters, shared: readable from anywhere while the receiver runs.
    pub fn stats_handle(&self) -> Arc<LiveStatsHandle> {
        Arc::clone(&self.stats)
    }

    pub fn stats(&self) -> LiveStats {
        self.stats.snapshot()
    }

    /// Takes one datagram that arrived at `now` from `from`.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        bump(&self.stats.packets);
        self.stats
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);

        if !self.allow.contains(&from.ip().to_canonical()) {
            bump(&self.stats.rejected_source);
            *self
                .stats
                .last_rejected_source
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(from);
            if let Some(quiet) = self.warn_rejected.check(now) {
                tracing::warn!(
                    "live RTP: dropped a packet from {from}, which is not allowed to send \
                     ({quiet} more dropped since the last warning)"
                );
            }
            return;
        }

        let decrypted;
        let bytes = match &mut self.srtp {
            None => bytes,
            Some(srtp) => match srtp.unprotect(now, bytes) {
                Ok(rtp) => {
                    decrypted = rtp;
                    &decrypted[..]
                }
                Err(e) => {
                    bump(if e == SrtpError::Replayed {
                        &self.stats.replayed
                    } else {
                        &self.stats.not_authenticated
                    });
                    if let Some(quiet) = self.warn_unauthenticated.check(now) {
                        tracing::warn!(
                            "live RTP: dropped a packet from {from}: SRTP {e} \
                             ({quiet} more dropped since the last warning)"
                        );
                    }
                    return;
                }
            },
        };

        self.accept(now, from, false, bytes);
    }

    /// Takes one packet of a console broadcast ([`ConsolePacket`]). It skips the allowlist and
    /// SRTP, which are for the network: the console's caller has signed in. The console has
    /// the air to itself: its first packet takes over from a studio stream at once (the
    /// console refuses to start while the studio is on air, so the studio's stream was not
    /// being heard), and the studio's packets cannot take over until the console's stream has
    /// ended ([`LiveRtpConfig::no_packet_timeout`] after its last packet).
    pub fn handle_console_packet(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        bump(&self.stats.packets);
        self.stats
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.accept(now, from, true, bytes);
    }

    fn accept(&mut self, now: Instant, from: SocketAddr, console: bool, bytes: &[u8]) {
        let (packet, ssrc, seq) = match self.parse(bytes) {
            Ok(parsed) => parsed,
            Err(reason) => {
                bump(&self.stats.malformed);
                if let Some(quiet) = self.warn_malformed.check(now) {
                    tracing::warn!(
                        "live RTP: dropped a malformed packet from {from}: {reason} \
                         ({quiet} more since the last warning)"
                    );
                }
                return;
            }
        };

        let jitter = self.jitter_delay;
        match &mut self.stream {
            Some(stream) if stream.ssrc == ssrc && stream.console == console => {
                stream.last_heard = now;
                match stream.classify(seq) {
                    Slot::Hold(ext) => {
                        stream.hold(ext, packet, now);
                        bump(&self.stats.accepted);
                    }
                    Slot::Duplicate => bump(&self.stats.duplicate),
                    Slot::Late => bump(&self.stats.late),
                    Slot::Restart => {
                        tracing::info!("live RTP: {from} restarted its sequence numbers");
                        self.start_stream(now, from, console, ssrc, seq, packet);
                    }
                }
            }
            Some(stream) if console && !stream.console => {
                tracing::info!(
                    "live: the console ({from}) takes over from the studio's {}",
                    stream.from
                );
                // The studio's broadcast ends here, so that events keep alternating and the
                // studio's follower takes it off air.
                if let Some(event) = self.air.end(EndReason::NoPackets) {
                    self.events.push_back(event);
                }
                self.start_stream(now, from, console, ssrc, seq, packet);
            }
            Some(stream)
                if stream.console != console
                    || now.saturating_duration_since(stream.last_heard) < jitter =>
            {
                bump(&self.stats.foreign_ssrc);
                if let Some(quiet) = self.warn_foreign.check(now) {
                    tracing::warn!(
                        "live RTP: {from} sends SSRC {ssrc:#010x} while {} still sends \
                         {:#010x}; ignoring the newcomer ({quiet} more since the last warning)",
                        stream.from,
                        stream.ssrc
                    );
                }
            }
            Some(stream) => {
                tracing::info!(
                    "live RTP: SSRC {:#010x} from {} replaced by {ssrc:#010x} from {from}",
                    stream.ssrc,
                    stream.from
                );
                self.start_stream(now, from, console, ssrc, seq, packet);
            }
            None => {
                tracing::info!("live RTP: receiving SSRC {ssrc:#010x} from {from}");
                self.start_stream(now, from, console, ssrc, seq, packet);
            }
        }
    }

    fn parse(&self, bytes: &[u8]) -> Result<(Held, u32, Seq), String> {
        let rtp = RtpReader::new(bytes).map_err(|e| format!("not RTP: {e:?}"))?;
        let pt = rtp.payload_type();
        let Payload { format, latency } = self.formats[usize::from(pt)]
            .ok_or_else(|| format!("payload type {pt} is not configured"))?;
        let payload = rtp.payload();
        let samples = format.samples(payload)?;
        let samples_48k = (samples as u64 * 48_000 / u64::from(format.rate())) as usize;
        let packet = Held {
            format,
            latency,
            payload: payload.to_vec(),
            samples_48k,
        };
        Ok((packet, rtp.ssrc(), rtp.sequence_number()))
    }

    fn start_stream(
        &mut self,
        now: Instant,
        from: SocketAddr,
        console: bool,
        ssrc: u32,
        seq: Seq,
        packet: Held,
    ) {
        let delay = self.jitter_delay + packet.latency;
        let mut stream = Stream::new(ssrc, from, seq, now, delay, self.air.threshold());
        stream.console = console;
        stream.hold(stream.next_seq, packet, now);
        self.stream = Some(stream);
        bump(&self.stats.accepted);
        let source = if console {
            LiveSource::Console(from)
        } else {
            LiveSource::Rtp(from)
        };
        if let Some(event) = self.air.start(source) {
            self.events.push_back(event);
        }
    }

    /// Applies the timeouts due at `now`. [`Self::poll_frame`] does this too.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(stream) = &self.stream else {
            return;
        };
        if deadline(stream.last_heard, self.no_packet_timeout).is_some_and(|d| now >= d) {
            tracing::info!(
                "live RTP: nothing from {} for {:?}",
                stream.from,
                self.no_packet_timeout
            );
            self.stream = None;
            if let Some(event) = self.air.end(EndReason::NoPackets) {
                self.events.push_back(event);
            }
        }
    }

    /// The next frame due at `now`, if any. Call until `None`: after a late call several
    /// are due.
    pub fn poll_frame(&mut self, now: Instant) -> Option<Box<PcmFrame>> {
        self.handle_timeout(now);
        loop {
            let stream = self.stream.as_mut()?;
            let slot = match stream.playout {
                Playout::Buffering { until } if now >= until => {
                    stream.start_playing(until);
                    until
                }
                Playout::Playing { next_release } if now >= next_release => {
                    if now.saturating_duration_since(next_release) > MAX_RELEASE_LAG {
                        now
                    } else {
                        next_release
                    }
                }
                _ => return None,
            };
            let Some(frame) = stream.next_frame_bounded(&self.stats) else {
                stream.playout = Playout::Stalled;
                return None;
            };
            stream.playout = Playout::Playing {
                next_release: slot + FRAME_DURATION,
            };
            let (deliver, event) = self.air.frame(&*frame);
            if let Some(event) = event {
                self.events.push_back(event);
            }
            if deliver {
                bump(&self.stats.frames_out);
                self.last_release = Some(slot);
                return Some(frame);
            }
        }
    }

    /// The instant the frame [`Self::poll_frame`] last returned was due on the release grid
    /// (a steady 20 ms from the end of the buffering window), whenever the call came.
    pub fn last_release(&self) -> Option<Instant> {
        self.last_release
    }

    pub fn poll_event(&mut self) -> Option<LiveEvent> {
        self.events.pop_front()
    }

    /// What is waiting to be played, `None` while idle. Whenever [`Self::poll_frame`] has
    /// just returned a frame, `samples <= limit` (the latency bound of the module docs).
    pub fn backlog(&self) -> Option<Backlog> {
        let stream = self.stream.as_ref()?;
        Some(Backlog {
            packets: stream.held.len(),
            samples: stream.held_samples + stream.fifo.len(),
            limit: stream.limits.hard,
        })
    }

    /// When [`Self::handle_timeout`] / [`Self::poll_frame`] next have something to do;
    /// `None` while idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stream = self.stream.as_ref()?;
        let silent_end = deadline(stream.last_heard, self.no_packet_timeout);
        let playout = match stream.playout {
            Playout::Buffering { until } => Some(until),
            Playout::Playing { next_release } => Some(next_release),
            Playout::Stalled => None,
        };
        match (silent_end, playout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The release instants ([`LiveRtpReceiver::last_release`]) of the frames in the channel of
/// [`run_live_rtp_timed`], in the same order: the on-air controller stamps each live frame with
/// the instant it was due rather than the instant it was received.
#[derive(Debug, Default)]
pub struct ReleaseTimes(Mutex<VecDeque<Instant>>);

impl ReleaseTimes {
    /// At most this many are kept: more than the frame channel holds.
    const MAX: usize = 256;

    fn push(&self, at: Instant) {
        let mut q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() == Self::MAX {
            q.pop_front();
        }
        q.push_back(at);
    }

    fn unpush(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_back();
    }

    /// The release instant of the next frame taken from the channel.
    pub fn pop(&self) -> Option<Instant> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }
}

/// Receives RTP on `socket` until `shutdown` resolves or the frame receiver is dropped,
/// and returns the final counters. Frames go out with `try_send`: when the channel is full
/// the frame is dropped and counted, because live audio must never wait. Events are kept
/// (up to 64) until the event channel has room.
///
/// Create the receiver first to keep its [`LiveRtpReceiver::stats_handle`].
pub async fn run_live_rtp(
    socket: UdpSocket,
    receiver: LiveRtpReceiver,
    frames: mpsc::Sender<Box<PcmFrame>>,
    events: mpsc::Sender<LiveEvent>,
    shutdown: impl Future<Output = ()>,
) -> LiveStats {
    run_live_rtp_timed(socket, receiver, frames, None, events, shutdown).await
}

/// [`run_live_rtp`], noting in `times` when each frame sent on `frames` was due.
pub async fn run_live_rtp_timed(
    socket: UdpSocket,
    receiver: LiveRtpReceiver,
    frames: mpsc::Sender<Box<PcmFrame>>,
    times: Option<Arc<ReleaseTimes>>,
    events: mpsc::Sender<LiveEvent>,
    shutdown: impl Future<Output = ()>,
) -> LiveStats {
    let inputs = LiveInputs {
        socket: Some(socket),
        console: None,
    };
    run_live_input(inputs, receiver, frames, times, events, shutdown).await
}

/// What [`run_live_input`] reads: the studio's UDP socket, the console's packets, or both.
#[derive(Debug)]
pub struct LiveInputs {
    /// The studio's RTP, if the server has a studio input.
    pub socket: Option<UdpSocket>,
    /// Packets of console broadcasts ([`LiveRtpReceiver::handle_console_packet`]).
    pub console: Option<mpsc::Receiver<ConsolePacket>>,
}

/// [`run_live_rtp_timed`] over any of the [`LiveInputs`].
pub async fn run_live_input(
    inputs: LiveInputs,
    mut receiver: LiveRtpReceiver,
    frames: mpsc::Sender<Box<PcmFrame>>,
    times: Option<Arc<ReleaseTimes>>,
    events: mpsc::Sender<LiveEvent>,
    shutdown: impl Future<Output = ()>,
) -> LiveStats {
    tokio::pin!(shutdown);
    let LiveInputs {
        socket,
        mut console,
    } = inputs;
    let stats = receiver.stats_handle();
    let mut buf = vec![0u8; 65_536];
    let mut pending: VecDeque<LiveEvent> = VecDeque::new();
    let mut events_open = true;
    loop {
        let timer = receiver.poll_timeout();
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = events.reserve(), if events_open && !pending.is_empty() => match permit {
                Ok(permit) => {
                    if let Some(event) = pending.pop_front() {
                        permit.send(event);
                    }
                }
                Err(_) => {
                    events_open = false;
                    pending.clear();
                }
            },
            packet = recv_console(&mut console), if console.is_some() => match packet {
                Some(packet) => {
                    receiver.handle_console_packet(Instant::now(), packet.from, &packet.rtp);
                }
                // Nobody can start a console broadcast any more; the studio goes on.
                None => console = None,
            },
            received = recv_socket(socket.as_ref(), &mut buf), if socket.is_some() => match received {
                Ok((n, from)) => receiver.handle_packet(Instant::now(), from, &buf[..n]),
                Err(e) => {
                    // UDP receive errors are transient (an ICMP error surfacing, a buffer
                    // shortage); pausing keeps a persistent one from spinning the loop.
                    tracing::warn!("live RTP: receive failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            () = sleep_until(timer), if timer.is_some() => {}
        }
        let now = Instant::now();
        receiver.handle_timeout(now);
        while let Some(frame) = receiver.poll_frame(now) {
            // Noted before the frame is sent, so that it is there when the frame is received.
            if let (Some(times), Some(at)) = (&times, receiver.last_release()) {
                times.push(at);
            }
            match frames.try_send(frame) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if let Some(times) = &times {
                        times.unpush();
                    }
                    bump(&stats.frames_dropped);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return stats.snapshot(),
            }
        }
        while let Some(event) = receiver.poll_event() {
            if !events_open {
                continue;
            }
            if pending.len() == MAX_PENDING_EVENTS {
                tracing::warn!("live RTP: nobody reads live events; dropping the oldest");
                pending.pop_front();
            }
            pending.push_back(event);
        }
    }
    stats.snapshot()
}

async fn recv_console(
    console: &mut Option<mpsc::Receiver<ConsolePacket>>,
) -> Option<ConsolePacket> {
    match console {
        Some(console) => console.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_socket(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}

#[cfg(test)]
pub(super) mod tests;
