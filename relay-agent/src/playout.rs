//! The playout clock: every 20 ms it decides what the loudspeakers hear in that slot and hands it
//! to every sink.
//!
//! [`Playout`] is the decision logic, sans-IO and driven by `now`, so it is tested on a virtual
//! clock. [`spawn_playout_thread`] runs it against the real clock on a dedicated thread (a busy
//! async runtime must never make the loudspeakers stutter), decodes Opus and feeds the sinks.
//!
//! A run of frames is anchored on its first frame: that frame is played `delay` after it arrived,
//! and each following slot 20 ms later. The delay absorbs network jitter; frames that miss their
//! slot are late and dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use radio_proto::{
    AudioFrame, ClusterState, JournalEvent, ProgrammeEnd, ProgrammeLevel, ProgrammeStart,
};

use crate::cached_airing::{Airing, CachedAiring, StreamSlot};
use crate::jitter_buffer::{Insert, JitterBuffer};
use crate::journal::JournalSender;
use crate::proof_of_play::{ProofOfPlay, SlotKind};
use crate::sink::{Sink, SinkStats, Slot, FRAME_SAMPLES};

/// One slot of audio.
pub const SLOT: Duration = Duration::from_millis(20);

/// Consecutive empty slots after which a stalled stream counts as gone and the next frame starts a
/// new run with a fresh playout delay (half a second: longer than any jitter the delay absorbs).
const MAX_UNDERRUN_SLOTS: u32 = 25;

/// Programme records kept for reporting; older ones are forgotten first.
const PROGRAMME_HISTORY: usize = 256;

/// Counters of the playout, cumulative since the agent started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlayoutStats {
    /// Audio frames received from the server (duplicates included).
    pub frames_received: u64,
    /// Frames played in their slot.
    pub frames_played: u64,
    /// Slots whose frame never arrived although later frames did (concealed).
    pub frames_lost: u64,
    /// Frames that arrived after their slot.
    pub frames_late: u64,
    /// Frames received twice.
    pub frames_duplicate: u64,
    /// Frames dropped because the buffer was full.
    pub frames_overflow: u64,
    /// Slots with nothing to play while a run was going on (stream stalled).
    pub underrun_slots: u64,
    /// Slots of silence because nothing was on air.
    pub idle_slots: u64,
    /// Frames due in their slot but not heard, because the prefetch cache aired their
    /// programme instead (not in `frames_played`).
    pub frames_displaced: u64,
}

/// What one programme did at this agent: proof of play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgrammeRecord {
    /// The server run that announced it: programme ids and sequence numbers restart when the
    /// server restarts, so they only identify a programme together with the run.
    pub server_run: Option<u64>,
    /// Server-side id of the programme.
    pub programme_id: u64,
    /// Programme name, as the server announced it.
    pub name: String,
    /// Its bulletin level (or live), as the server announced it.
    pub level: ProgrammeLevel,
    /// Channel the programme was on.
    pub channel: u16,
    /// The stretches of this agent's stream that carried the programme: more than one when it
    /// was interrupted (emergency, live) and resumed.
    pub segments: Vec<Segment>,
    /// Frames of the programme sent to this agent: announced at start for files, known at each
    /// end marker (cumulative across segments).
    pub frames: u64,
    /// Frames of it played in their slot.
    pub played: u64,
}

/// One stretch of the stream carrying a programme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Sequence number of its first frame.
    pub first: u64,
    /// Sequence number of its last frame, once its end was announced.
    pub last: Option<u64>,
}

impl Segment {
    fn contains(&self, sequence: u64) -> bool {
        sequence >= self.first && self.last.is_none_or(|last| sequence <= last)
    }
}

impl ProgrammeRecord {
    /// True when the programme's end was announced and every frame sent was played.
    pub fn complete(&self) -> bool {
        self.ended() && self.frames > 0 && self.played == self.frames
    }

    /// Whether the last segment's end was announced.
    pub fn ended(&self) -> bool {
        self.segments.last().is_some_and(|s| s.last.is_some())
    }

    fn is(&self, server_run: Option<u64>, channel: u16, programme_id: u64) -> bool {
        self.server_run == server_run
            && self.channel == channel
            && self.programme_id == programme_id
    }

    fn contains(&self, sequence: u64) -> bool {
        self.segments.iter().any(|s| s.contains(sequence))
    }
}

/// Where a frame sits in its programme, for smoothing switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Boundary {
    /// The frame opens a segment: the decoder may still hold another programme's state.
    pub starts: bool,
    /// The frame closes a segment: another programme (or silence) follows.
    pub ends: bool,
}

/// What to do in one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// Nothing on air: play silence.
    Idle,
    /// Play this frame.
    Play(AudioFrame),
    /// The frame for this slot is missing but later ones arrived: conceal it.
    Lost {
        /// The missing sequence number.
        sequence: u64,
    },
    /// The stream stalled: nothing buffered for this slot.
    Underrun,
}

#[derive(Debug)]
struct Buffered {
    frame: AudioFrame,
    arrived: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Playing { next: u64, misses: u32 },
}

/// The playout decision logic (sans-IO).
#[derive(Debug)]
pub struct Playout {
    jitter: JitterBuffer<Buffered>,
    delay: Duration,
    state: State,
    server_run: Option<u64>,
    programmes: VecDeque<ProgrammeRecord>,
    stats: PlayoutStats,
}

impl Playout {
    /// A playout that plays each run `delay` after its first frame arrived, buffering at most
    /// `capacity` frames.
    pub fn new(delay: Duration, capacity: usize) -> Self {
        Self {
            jitter: JitterBuffer::new(capacity),
            delay,
            state: State::Idle,
            server_run: None,
            programmes: VecDeque::new(),
            stats: PlayoutStats::default(),
        }
    }

    /// A session with a server began. Sequence numbers are only comparable within one server
    /// run, so when the server restarted whatever was buffered is dropped and playout re-anchors.
    pub fn on_session(&mut self, server_run: u64) {
        if self.server_run.is_some_and(|run| run != server_run) {
            self.jitter.reset();
            self.state = State::Idle;
        }
        self.server_run = Some(server_run);
    }

    /// A frame arrived from the server.
    pub fn on_frame(&mut self, now: Instant, frame: AudioFrame) {
        self.stats.frames_received += 1;
        let sequence = frame.sequence;
        match self.jitter.insert(
            sequence,
            Buffered {
                frame,
                arrived: now,
            },
        ) {
            Insert::Accepted => {}
            Insert::Duplicate => self.stats.frames_duplicate += 1,
            Insert::Late => self.stats.frames_late += 1,
            Insert::Overflow { .. } => self.stats.frames_overflow += 1,
        }
    }

    /// The server announced a programme.
    pub fn on_programme_start(&mut self, start: &ProgrammeStart) {
        if let Some(existing) = self
            .programmes
            .iter_mut()
            .find(|p| p.is(self.server_run, start.channel, start.programme_id))
        {
            // Resumed after an interruption, or re-announced after a reconnect: a new segment of
            // the same programme, keeping what was already played.
            existing.frames = existing.frames.max(start.frame_count);
            if let Some(open) = existing.segments.last_mut().filter(|s| s.last.is_none()) {
                // A reconnect re-announces an open segment: it ended where the new one starts.
                open.last = Some(start.first_sequence.saturating_sub(1));
            }
            existing.segments.push(Segment {
                first: start.first_sequence,
                last: None,
            });
            return;
        }
        if self.programmes.len() == PROGRAMME_HISTORY {
            self.programmes.pop_front();
        }
        self.programmes.push_back(ProgrammeRecord {
            server_run: self.server_run,
            programme_id: start.programme_id,
            name: start.name.clone(),
            level: start.level,
            channel: start.channel,
            segments: vec![Segment {
                first: start.first_sequence,
                last: None,
            }],
            frames: start.frame_count,
            played: 0,
        });
    }

    /// The server announced the end of a programme.
    pub fn on_programme_end(&mut self, end: &ProgrammeEnd) {
        if let Some(p) = self
            .programmes
            .iter_mut()
            .find(|p| p.is(self.server_run, end.channel, end.programme_id))
        {
            if let Some(open) = p.segments.last_mut().filter(|s| s.last.is_none()) {
                open.last = Some(end.last_sequence);
            }
            p.frames = end.frames;
        }
    }

    /// Decides the slot that is due at `now`.
    pub fn tick(&mut self, now: Instant) -> Tick {
        if self.state == State::Idle {
            match self.jitter.first() {
                Some((first, buffered)) if now >= buffered.arrived + self.delay => {
                    self.state = State::Playing {
                        next: first,
                        misses: 0,
                    };
                }
                _ => {
                    self.stats.idle_slots += 1;
                    return Tick::Idle;
                }
            }
        }
        let State::Playing { next, misses } = self.state else {
            self.stats.idle_slots += 1;
            return Tick::Idle;
        };
        if let Some(buffered) = self.jitter.take(next) {
            self.state = State::Playing {
                next: next + 1,
                misses: 0,
            };
            self.stats.frames_played += 1;
            let run = self.server_run;
            if let Some(p) = self.programmes.iter_mut().rev().find(|p| {
                p.server_run == run
                    && p.channel == buffered.frame.channel
                    && p.contains(buffered.frame.sequence)
            }) {
                p.played += 1;
            }
            return Tick::Play(buffered.frame);
        }
        if self.jitter.has_at_or_after(next + 1) {
            self.state = State::Playing {
                next: next + 1,
                misses: 0,
            };
            self.stats.frames_lost += 1;
            return Tick::Lost { sequence: next };
        }
        if self.programme_ended_before(next) {
            self.state = State::Idle;
            self.stats.idle_slots += 1;
            return Tick::Idle;
        }
        let misses = misses + 1;
        self.stats.underrun_slots += 1;
        self.state = if misses >= MAX_UNDERRUN_SLOTS {
            State::Idle
        } else {
            State::Playing {
                next: next + 1,
                misses,
            }
        };
        Tick::Underrun
    }

    /// The frame [`Playout::tick`] just handed out was not heard: the prefetch cache aired its
    /// programme (or its tail) instead. Its counts are taken back, so that the stream's copy
    /// does not count as played too.
    pub fn displaced(&mut self, frame: &AudioFrame) {
        self.stats.frames_played = self.stats.frames_played.saturating_sub(1);
        self.stats.frames_displaced += 1;
        let run = self.server_run;
        if let Some(p) = self.programmes.iter_mut().rev().find(|p| {
            p.server_run == run && p.channel == frame.channel && p.contains(frame.sequence)
        }) {
            p.played = p.played.saturating_sub(1);
        }
    }

    /// Whether the stream has no programme at `sequence`: the latest segment starting at or
    /// before it has been closed before it (so silence follows, not a stall).
    fn programme_ended_before(&self, sequence: u64) -> bool {
        self.programmes
            .iter()
            .filter(|p| p.server_run == self.server_run)
            .flat_map(|p| p.segments.iter())
            .filter(|s| s.first <= sequence)
            .max_by_key(|s| s.first)
            .is_some_and(|s| s.last.is_some_and(|last| last < sequence))
    }

    /// Whether `sequence` opens or closes a segment of the current server run.
    pub fn boundary(&self, sequence: u64) -> Boundary {
        let segments = self
            .programmes
            .iter()
            .filter(|p| p.server_run == self.server_run)
            .flat_map(|p| p.segments.iter());
        let mut b = Boundary::default();
        for s in segments {
            b.starts |= s.first == sequence;
            b.ends |= s.last == Some(sequence);
        }
        b
    }

    /// The programme a frame of the current server run belongs to: its id, name and level.
    pub fn programme_at(&self, sequence: u64) -> Option<(u64, &str, ProgrammeLevel)> {
        self.programmes
            .iter()
            .rev()
            .find(|p| p.server_run == self.server_run && p.contains(sequence))
            .map(|p| (p.programme_id, p.name.as_str(), p.level))
    }

    /// Whether a programme is being played right now.
    pub fn on_air(&self) -> bool {
        matches!(self.state, State::Playing { .. })
    }

    /// Counters so far.
    pub fn stats(&self) -> &PlayoutStats {
        &self.stats
    }

    /// Programmes seen, oldest first.
    pub fn programmes(&self) -> impl Iterator<Item = &ProgrammeRecord> {
        self.programmes.iter()
    }
}

/// What the playout clock reports besides audio: journal events (proof of play, output state)
/// and the output state for the heartbeat.
#[derive(Debug, Clone, Default)]
pub struct PlayoutReport {
    /// Where proof of play and output changes are journaled (none: not journaled).
    pub journal: Option<JournalSender>,
    /// The output state now, as `OutputState as u8`.
    pub output: Arc<AtomicU8>,
    /// Prefetched recordings to air when the stream does not (none: the agent keeps no cache).
    pub cache: Option<CacheInput>,
}

/// What the playout clock needs to air from the prefetch cache.
#[derive(Debug, Clone)]
pub struct CacheInput {
    /// The loaded recordings and the airing in progress.
    pub airing: Arc<Mutex<CachedAiring>>,
    /// Whether a session with the server is up.
    pub link_up: Arc<AtomicBool>,
}

/// Runs the playout on the real clock until `stop` is set, then finishes every sink. Returns the
/// sinks' statistics.
pub fn spawn_playout_thread(
    playout: Arc<Mutex<Playout>>,
    mut sinks: Vec<Box<dyn Sink>>,
    stop: Arc<AtomicBool>,
    report: PlayoutReport,
) -> std::io::Result<JoinHandle<Vec<(String, SinkStats)>>> {
    std::thread::Builder::new()
        .name("playout".into())
        .spawn(move || {
            let mut voice = match Voice::new() {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::error!("opus decoder unavailable, playing silence: {e}");
                    None
                }
            };
            let silence_packet = voice
                .as_ref()
                .map(|v| v.silence_packet.clone())
                .unwrap_or_default();
            let mut pcm = vec![0i16; FRAME_SAMPLES];
            let mut deadline = Instant::now();
            let mut proof = ProofOfPlay::default();
            let mut events = Vec::new();
            // The last slot aired from the prefetch cache: the next streamed frame is a switch.
            let mut from_cache = false;
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now < deadline {
                    std::thread::sleep(deadline - now);
                }
                // A stalled machine plays the missed slots back to back rather than dropping
                // them, so outputs keep a true timeline; beyond a second it gives up and re-bases.
                if Instant::now().saturating_duration_since(deadline) > Duration::from_secs(1) {
                    tracing::warn!("playout clock fell more than 1 s behind; re-basing");
                    deadline = Instant::now();
                }
                let (tick, boundary, airing) = match playout.lock() {
                    Ok(mut p) => {
                        let tick = p.tick(deadline);
                        let boundary = match &tick {
                            Tick::Play(frame) => p.boundary(frame.sequence),
                            _ => Boundary::default(),
                        };
                        let programme = match &tick {
                            Tick::Play(frame) => p.programme_at(frame.sequence),
                            _ => None,
                        };
                        let airing = match &report.cache {
                            Some(cache) => {
                                let stream = match &tick {
                                    Tick::Play(_) => StreamSlot::Playing(
                                        programme.map(|(_, name, level)| (name, level)),
                                    ),
                                    _ => StreamSlot::Quiet,
                                };
                                let link_up = cache.link_up.load(Ordering::Relaxed);
                                match cache.airing.lock() {
                                    Ok(mut c) => c.decide(slot_unix_ms(deadline), link_up, stream),
                                    Err(_) => Airing::Stream,
                                }
                            }
                            None => Airing::Stream,
                        };
                        let slot = match (&airing, &tick) {
                            (Airing::Cached { airing, .. }, _) => SlotKind::Played(Some((
                                airing.item.programme_id,
                                &airing.item.name,
                                airing.item.level,
                            ))),
                            (Airing::Suppressed, _) => SlotKind::Idle,
                            (Airing::Stream, Tick::Play(_)) => SlotKind::Played(programme),
                            (Airing::Stream, Tick::Lost { .. } | Tick::Underrun) => {
                                SlotKind::Missing
                            }
                            (Airing::Stream, Tick::Idle) => SlotKind::Idle,
                        };
                        proof.slot(slot, &mut events);
                        if let (Airing::Cached { .. } | Airing::Suppressed, Tick::Play(frame)) =
                            (&airing, &tick)
                        {
                            p.displaced(frame);
                        }
                        (tick, boundary, airing)
                    }
                    Err(_) => break,
                };
                report.output.store(proof.output() as u8, Ordering::Relaxed);
                if let Some(journal) = &report.journal {
                    for event in events.drain(..) {
                        journal.record(event);
                    }
                }
                events.clear();
                deadline += SLOT;
                let slot = match (&airing, &tick) {
                    (
                        Airing::Cached {
                            airing,
                            index,
                            starts,
                            ends,
                        },
                        _,
                    ) => {
                        let payload = usize::try_from(*index)
                            .ok()
                            .and_then(|i| airing.packets.get(i));
                        if *starts {
                            // Another encoder made these packets: start the decoder afresh.
                            if let Some(v) = voice.as_mut() {
                                v.reset();
                            }
                        }
                        let decoded = voice
                            .as_mut()
                            .zip(payload)
                            .map(|(v, packet)| v.decode(Some(packet), &mut pcm));
                        if !matches!(decoded, Some(true)) {
                            pcm.fill(0);
                        }
                        smooth_switch(
                            &mut pcm,
                            Boundary {
                                starts: *starts,
                                ends: *ends,
                            },
                        );
                        Slot {
                            opus: payload.map(|p| &p[..]),
                            pcm: &pcm,
                            silent: false,
                        }
                    }
                    (Airing::Suppressed, _) => {
                        pcm.fill(0);
                        Slot {
                            opus: Some(&silence_packet),
                            pcm: &pcm,
                            silent: true,
                        }
                    }
                    (Airing::Stream, Tick::Play(frame)) => {
                        let boundary = Boundary {
                            starts: boundary.starts || from_cache,
                            ..boundary
                        };
                        if boundary.starts {
                            // Another encoder made this stream: start the decoder afresh.
                            if let Some(v) = voice.as_mut() {
                                v.reset();
                            }
                        }
                        let decoded = voice
                            .as_mut()
                            .map(|v| v.decode(Some(&frame.payload), &mut pcm));
                        if !matches!(decoded, Some(true)) {
                            pcm.fill(0);
                        }
                        smooth_switch(&mut pcm, boundary);
                        Slot {
                            opus: Some(&frame.payload),
                            pcm: &pcm,
                            silent: false,
                        }
                    }
                    (Airing::Stream, Tick::Lost { .. } | Tick::Underrun) => {
                        let concealed = voice.as_mut().map(|v| v.decode(None, &mut pcm));
                        if !matches!(concealed, Some(true)) {
                            pcm.fill(0);
                        }
                        Slot {
                            opus: None,
                            pcm: &pcm,
                            silent: false,
                        }
                    }
                    (Airing::Stream, Tick::Idle) => {
                        pcm.fill(0);
                        Slot {
                            opus: Some(&silence_packet),
                            pcm: &pcm,
                            silent: true,
                        }
                    }
                };
                from_cache = matches!(airing, Airing::Cached { .. });
                let now = Instant::now();
                for sink in sinks.iter_mut() {
                    if let Err(e) = sink.play(&slot) {
                        tracing::warn!("{e}");
                    }
                    if let Some((cluster, change)) = sink.cluster_change(now) {
                        match change.state {
                            ClusterState::Up => {
                                tracing::info!("cluster {cluster} up: {}", change.reason)
                            }
                            ClusterState::Down => {
                                tracing::warn!("cluster {cluster} down: {}", change.reason)
                            }
                        }
                        if let Some(journal) = &report.journal {
                            journal.record(JournalEvent::Cluster {
                                cluster,
                                state: change.state,
                                reason: change.reason,
                            });
                        }
                    }
                }
            }
            proof.finish(&mut events);
            if let Some(journal) = &report.journal {
                for event in events.drain(..) {
                    journal.record(event);
                }
            }
            sinks
                .iter_mut()
                .map(|sink| {
                    if let Err(e) = sink.finish() {
                        tracing::warn!("{e}");
                    }
                    (sink.describe(), sink.stats())
                })
                .collect()
        })
}

/// The wall-clock time (Unix ms) of the slot due at `deadline`: the cache airs by the agent's
/// own clock, and a slot played late still belongs to the time it was due.
fn slot_unix_ms(deadline: Instant) -> u64 {
    let late = u64::try_from(
        Instant::now()
            .saturating_duration_since(deadline)
            .as_millis(),
    )
    .unwrap_or(u64::MAX);
    crate::journal::unix_ms().saturating_sub(late)
}

/// Samples over which a switch fades (5 ms): long enough that the jump between two programmes
/// does not click, short enough not to be heard as a fade.
const SWITCH_FADE: usize = 240;

/// Fades the first samples of a frame that opens a segment in, and the last samples of one that
/// closes a segment out, so a switch between programmes lands on silence instead of a step.
fn smooth_switch(pcm: &mut [i16], boundary: Boundary) {
    let n = SWITCH_FADE.min(pcm.len());
    if boundary.starts {
        for (i, s) in pcm.iter_mut().take(n).enumerate() {
            *s = (f32::from(*s) * i as f32 / n as f32) as i16;
        }
    }
    if boundary.ends {
        let len = pcm.len();
        for (i, s) in pcm.iter_mut().skip(len - n).enumerate() {
            *s = (f32::from(*s) * (n - 1 - i) as f32 / n as f32) as i16;
        }
    }
}

/// The agent's Opus decoder, plus the silence packet sent in idle slots.
struct Voice {
    decoder: opus::Decoder,
    silence_packet: Vec<u8>,
}

impl Voice {
    fn new() -> Result<Self, opus::Error> {
        let decoder = opus::Decoder::new(48_000, opus::Channels::Mono)?;
        let mut encoder =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)?;
        let silence_packet = encoder.encode_vec(&[0i16; FRAME_SAMPLES], 1500)?;
        Ok(Self {
            decoder,
            silence_packet,
        })
    }

    /// Forgets the previous stream (a switch of programme).
    fn reset(&mut self) {
        if let Err(e) = self.decoder.reset_state() {
            tracing::warn!("opus decoder reset failed: {e}");
        }
    }

    /// Decodes a packet, or conceals a missing one when `packet` is None. Returns false when the
    /// packet could not be decoded (the caller plays silence instead).
    fn decode(&mut self, packet: Option<&[u8]>, pcm: &mut [i16]) -> bool {
        let result = self.decoder.decode(packet.unwrap_or(&[]), pcm, false);
        match result {
            Ok(n) if n == pcm.len() => true,
            Ok(n) => {
                tracing::warn!("opus packet decoded to {n} samples, expected {}", pcm.len());
                false
            }
            Err(e) => {
                tracing::warn!("undecodable opus packet: {e}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(sequence: u64) -> AudioFrame {
        AudioFrame {
            channel: 0,
            sequence,
            timestamp: sequence * 960,
            payload: Bytes::from_static(&[1, 2, 3]),
        }
    }

    fn start(id: u64, first: u64, frames: u64) -> ProgrammeStart {
        ProgrammeStart {
            channel: 0,
            programme_id: id,
            name: "Bản tin".into(),
            first_sequence: first,
            first_timestamp: first * 960,
            frame_count: frames,
            level: ProgrammeLevel::Priority,
        }
    }

    #[test]
    fn waits_for_the_delay_then_plays_in_order() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::from_millis(100), 100);
        p.on_frame(t0, frame(10));
        p.on_frame(t0, frame(11));
        // 4 slots before the delay has passed: idle.
        for i in 0..5 {
            assert_eq!(p.tick(t0 + SLOT * i), Tick::Idle, "slot {i}");
        }
        assert_eq!(p.tick(t0 + SLOT * 5), Tick::Play(frame(10)));
        assert_eq!(p.tick(t0 + SLOT * 6), Tick::Play(frame(11)));
        assert!(p.on_air());
    }

    #[test]
    fn a_gap_is_lost_not_waited_for_and_late_frames_are_dropped() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::ZERO, 100);
        p.on_frame(t0, frame(0));
        p.on_frame(t0, frame(2));
        assert_eq!(p.tick(t0), Tick::Play(frame(0)));
        assert_eq!(p.tick(t0 + SLOT), Tick::Lost { sequence: 1 });
        p.on_frame(t0 + SLOT, frame(1));
        assert_eq!(p.tick(t0 + SLOT * 2), Tick::Play(frame(2)));
        assert_eq!(p.stats().frames_lost, 1);
        assert_eq!(p.stats().frames_late, 1);
    }

    #[test]
    fn programme_accounting_and_idle_after_its_end() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::ZERO, 100);
        p.on_programme_start(&start(7, 100, 3));
        for s in 100..103 {
            p.on_frame(t0, frame(s));
        }
        p.on_programme_end(&ProgrammeEnd {
            channel: 0,
            programme_id: 7,
            last_sequence: 102,
            frames: 3,
        });
        for s in 100..103 {
            assert_eq!(p.tick(t0), Tick::Play(frame(s)));
        }
        assert_eq!(
            p.tick(t0),
            Tick::Idle,
            "programme over: silence, not underrun"
        );
        let rec = p.programmes().next().cloned().expect("record");
        assert!(rec.complete(), "{rec:?}");
        assert_eq!(p.stats().underrun_slots, 0);
    }

    #[test]
    fn a_stalled_stream_underruns_then_rebuffers() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::from_millis(40), 100);
        p.on_frame(t0, frame(0));
        let mut now = t0 + Duration::from_millis(40);
        assert_eq!(p.tick(now), Tick::Play(frame(0)));
        for _ in 0..MAX_UNDERRUN_SLOTS {
            now += SLOT;
            assert_eq!(p.tick(now), Tick::Underrun);
        }
        assert!(!p.on_air());
        // The stream comes back far ahead: a new run, anchored with a fresh delay.
        p.on_frame(now, frame(500));
        assert_eq!(p.tick(now + SLOT), Tick::Idle);
        assert_eq!(
            p.tick(now + Duration::from_millis(40)),
            Tick::Play(frame(500))
        );
    }

    #[test]
    fn an_interrupted_programme_resumes_as_a_second_segment_and_completes() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::ZERO, 100);
        p.on_programme_start(&start(1, 0, 0));
        p.on_frame(t0, frame(0));
        p.on_frame(t0, frame(1));
        p.on_programme_end(&ProgrammeEnd {
            channel: 0,
            programme_id: 1,
            last_sequence: 1,
            frames: 2,
        });
        p.on_programme_start(&start(2, 2, 0));
        p.on_frame(t0, frame(2));
        p.on_programme_end(&ProgrammeEnd {
            channel: 0,
            programme_id: 2,
            last_sequence: 2,
            frames: 1,
        });
        p.on_programme_start(&start(1, 3, 0));
        p.on_frame(t0, frame(3));
        p.on_programme_end(&ProgrammeEnd {
            channel: 0,
            programme_id: 1,
            last_sequence: 3,
            frames: 3,
        });
        assert_eq!(
            p.boundary(1),
            Boundary {
                starts: false,
                ends: true
            }
        );
        assert_eq!(
            p.boundary(2),
            Boundary {
                starts: true,
                ends: true
            }
        );
        assert_eq!(
            p.boundary(3),
            Boundary {
                starts: true,
                ends: true
            }
        );
        for s in 0..4 {
            assert_eq!(p.tick(t0), Tick::Play(frame(s)), "no gap at the switches");
        }
        let records: Vec<_> = p.programmes().cloned().collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].segments.len(), 2);
        assert!(
            records[0].complete() && records[1].complete(),
            "{records:?}"
        );
        assert_eq!(records[0].played, 3);
    }

    #[test]
    fn a_displaced_frame_is_not_counted_as_played() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::ZERO, 100);
        p.on_programme_start(&start(7, 0, 2));
        p.on_frame(t0, frame(0));
        p.on_frame(t0, frame(1));
        assert_eq!(p.tick(t0), Tick::Play(frame(0)));
        let Tick::Play(second) = p.tick(t0) else {
            panic!("frame 1 plays")
        };
        p.displaced(&second);
        let rec = p.programmes().next().cloned().expect("record");
        assert_eq!(rec.played, 1);
        assert_eq!(p.stats().frames_played, 1);
        assert_eq!(p.stats().frames_displaced, 1);
    }

    #[test]
    fn a_switch_is_faded_not_stepped() {
        let mut pcm = vec![10_000i16; 960];
        smooth_switch(
            &mut pcm,
            Boundary {
                starts: true,
                ends: true,
            },
        );
        assert_eq!(pcm[0], 0);
        assert!(pcm[959].abs() < 100, "{}", pcm[959]);
        assert_eq!(pcm[480], 10_000);
        let mut pcm = vec![10_000i16; 960];
        smooth_switch(&mut pcm, Boundary::default());
        assert!(pcm.iter().all(|s| *s == 10_000));
    }

    #[test]
    fn incomplete_programme_is_not_complete() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::ZERO, 100);
        p.on_programme_start(&start(1, 0, 3));
        p.on_frame(t0, frame(0));
        p.on_frame(t0, frame(2));
        p.on_programme_end(&ProgrammeEnd {
            channel: 0,
            programme_id: 1,
            last_sequence: 2,
            frames: 3,
        });
        for _ in 0..3 {
            p.tick(t0);
        }
        let rec = p.programmes().next().cloned().expect("record");
        assert_eq!(rec.played, 2);
        assert!(!rec.complete());
    }

    #[test]
    fn programme_ids_of_a_restarted_server_are_new_programmes() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::ZERO, 100);
        p.on_session(1);
        p.on_programme_start(&start(1, 0, 2));
        p.on_frame(t0, frame(0));
        p.tick(t0);
        p.on_session(2);
        p.on_programme_start(&start(1, 0, 2));
        for s in 0..2 {
            p.on_frame(t0, frame(s));
        }
        p.on_programme_end(&ProgrammeEnd {
            channel: 0,
            programme_id: 1,
            last_sequence: 1,
            frames: 2,
        });
        p.tick(t0);
        p.tick(t0);
        let records: Vec<_> = p.programmes().cloned().collect();
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(records[0].played, 1);
        assert!(!records[0].complete());
        assert!(records[1].complete(), "{:?}", records[1]);
    }

    #[test]
    fn a_new_server_run_resets_the_sequence_space() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::ZERO, 100);
        p.on_session(1);
        p.on_frame(t0, frame(1000));
        assert_eq!(p.tick(t0), Tick::Play(frame(1000)));
        p.on_session(2);
        p.on_frame(t0, frame(0));
        assert_eq!(p.tick(t0), Tick::Play(frame(0)));
    }
}
