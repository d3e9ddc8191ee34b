//! The playout clock: every 20 ms it decides what the loudspeakers hear in that slot and hands it
//! to every sink.
//!
//! [`Playout`] is the decision logic, sans-IO and driven by `now`, so it is tested on a virtual
//! clock. [`spawn_playout_thread`] runs it against the real clock on a dedicated thread (a busy
//! async runtime must never make the loudspeakers stutter), decodes Opus and feeds the sinks.
//!
//! Once the server's media clock is known (`clock_sync.rs`), every frame is played at its server
//! time plus `delay`, on this agent's clock: every agent of the district plays frame N at the same
//! instant, whatever its network delay. Small errors (a new clock estimate, drift) are corrected
//! gently, by at most [`MAX_SLEW`] per slot; past [`RESYNC_THRESHOLD`] the run is re-anchored. A
//! gap in the server's stream (a live source that sent nothing for a tick) is played as a gap,
//! so the frames after it stay in step.
//!
//! Until the clock is known, a run of frames is anchored on its first frame: that frame is played
//! `delay` after it arrived, and each following slot 20 ms later. The same holds when frames
//! arrive later than their synchronised instant (a link slower than the delay): playing late
//! beats playing nothing, and the run rejoins the others once frames come in time again. Either
//! way the delay absorbs network jitter; frames that miss their
//! slot are late and dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use radio_proto::{
    AudioFrame, ClusterState, JournalEvent, ProgrammeEnd, ProgrammeLevel, ProgrammeStart,
};

use crate::cached_airing::{Airing, CachedAiring, StreamSlot};
use crate::clock_sync::ClockMap;
use crate::jitter_buffer::{Insert, JitterBuffer};
use crate::journal::JournalSender;
use crate::proof_of_play::{ProofOfPlay, SlotKind};
use crate::retime::{Retimer, MAX_RETIME};
use crate::sink::{Sink, SinkStats, Slot, FRAME_SAMPLES};
use crate::supervise::{spawn_thread, Died, SupervisedThread};

/// One slot of audio.
pub const SLOT: Duration = Duration::from_millis(20);

/// Consecutive empty slots after which a stalled stream counts as gone and the next frame starts a
/// new run with a fresh playout delay (half a second: longer than any jitter the delay absorbs).
const MAX_UNDERRUN_SLOTS: u32 = 25;

/// Clock errors up to this are corrected gently; past it playout re-anchors on the clock (a jump
/// of the estimate that large means the old one was wrong, and 40 ms of echo between
/// neighbouring clusters is worth a glitch to end).
pub const RESYNC_THRESHOLD: Duration = Duration::from_millis(40);

/// Most a slot is lengthened or shortened while correcting: 50 µs in 20 ms, 0.25 %, under five
/// cents of pitch where PCM is retimed, and nothing an RTP receiver (which plays by timestamp)
/// notices. A 1 ms error is gone in 0.4 s.
pub const MAX_SLEW: Duration = Duration::from_micros(50);

/// A frame due this close after a tick is played in it.
const ON_TIME: Duration = Duration::from_micros(500);

/// A run's first frame that missed its instant by less than a slot is played at once, and the
/// run is in step from its next slot. Idle slots come every 20 ms on the playout's own grid, so
/// a first frame that arrives just after one of them is found up to a slot after its instant;
/// with a short playout delay (a live studio, 20 ms) that is the usual case, and the late path
/// (played a delay after arrival, out of step) would never rejoin the clock.
const LATE_START: Duration = SLOT;

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
    /// Runs re-anchored because the clock error passed [`RESYNC_THRESHOLD`].
    pub resyncs: u64,
    /// Runs played later than their synchronised instant, because their frames arrived too late
    /// for it (the link is slower than the playout delay).
    pub late_runs: u64,
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
    Playing { next: u64, misses: u32, mode: Mode },
}

/// How a run is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// On the first frame's arrival; becomes `Synced` once the clock is known.
    Arrival,
    /// Each frame at its server time plus the delay.
    Synced,
    /// On arrival although the clock is known: the frames came too late to play in step.
    Late,
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
    /// The server's media clock, once estimated.
    clock: Option<ClockMap>,
    /// Sequence and server time of the last frame played, to place the frames after it.
    last_played: Option<(u64, u64)>,
    /// When the slot after the last tick is due; `None`: one slot after it.
    next_at: Option<Instant>,
    /// The next slot is a gap: the stream's next frame is due later than that slot.
    gap_next: bool,
    /// The next frame is played exactly at its instant rather than slewed towards it (the
    /// start of a run, the end of a gap: there is no audio before it to keep continuous).
    rephase: bool,
    /// The last slot found nothing at all to play and kept its sequence number (synchronised
    /// playout): its frame decides when it comes — played at its instant if it is stamped after
    /// a pause in the stream, dropped as late if its instant has passed.
    waiting: bool,
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
            clock: None,
            last_played: None,
            next_at: None,
            gap_next: false,
            rephase: false,
            waiting: false,
        }
    }

    /// The server's media clock as estimated now; `None` forgets it (arrival timing).
    pub fn set_clock(&mut self, clock: Option<ClockMap>) {
        self.clock = clock;
    }

    /// The clock in use.
    pub fn clock(&self) -> Option<ClockMap> {
        self.clock
    }

    /// When the slot after the last [`Playout::tick`] is due; `None` means one slot after it.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_at
    }

    /// A session with a server began. Sequence numbers are only comparable within one server
    /// run, so when the server restarted whatever was buffered is dropped and playout re-anchors.
    pub fn on_session(&mut self, server_run: u64) {
        if self.server_run.is_some_and(|run| run != server_run) {
            self.jitter.reset();
            self.state = State::Idle;
            // Another run, another media clock.
            self.clock = None;
            self.last_played = None;
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

    /// Decides the slot that is due at `now`, and when the next one is
    /// ([`Playout::next_deadline`]).
    pub fn tick(&mut self, now: Instant) -> Tick {
        let tick = self.decide(now);
        self.schedule(now);
        tick
    }

    fn decide(&mut self, now: Instant) -> Tick {
        if self.state == State::Idle {
            match self.start_run(now) {
                Some(state) => self.state = state,
                None => {
                    self.stats.idle_slots += 1;
                    return Tick::Idle;
                }
            }
        }
        let State::Playing { next, misses, mode } = self.state else {
            self.stats.idle_slots += 1;
            return Tick::Idle;
        };
        if std::mem::take(&mut self.gap_next) {
            // The stream's next frame is not due yet: this slot has none, and skips none.
            let misses = misses + 1;
            self.stats.underrun_slots += 1;
            self.state = if misses >= MAX_UNDERRUN_SLOTS {
                State::Idle
            } else {
                State::Playing { next, misses, mode }
            };
            return Tick::Underrun;
        }
        let mut next = next;
        if std::mem::take(&mut self.waiting) {
            if let Some(clock) = self.clock {
                // Frames that came after their instant while the slots waited for them are
                // late, as they would have been had their slots gone by.
                while let Some(t) = self
                    .jitter
                    .get(next)
                    .and_then(|b| self.frame_instant(&clock, b.frame.server_time_us))
                {
                    if t + ON_TIME >= now {
                        break;
                    }
                    self.jitter.take(next);
                    self.stats.frames_late += 1;
                    next += 1;
                }
                // One stamped after a pause is not due yet: this slot waits for it too, and
                // the schedule re-phases on it.
                let due_later = self
                    .jitter
                    .get(next)
                    .and_then(|b| self.frame_instant(&clock, b.frame.server_time_us))
                    .is_some_and(|t| t > now + ON_TIME);
                if due_later {
                    let misses = misses + 1;
                    self.stats.underrun_slots += 1;
                    self.rephase = true;
                    self.state = if misses >= MAX_UNDERRUN_SLOTS {
                        State::Idle
                    } else {
                        State::Playing { next, misses, mode }
                    };
                    return Tick::Underrun;
                }
            }
        }
        if let Some(buffered) = self
            .jitter
            .get(next)
            .is_some()
            .then(|| self.jitter.take(next))
            .flatten()
        {
            self.state = State::Playing {
                next: next + 1,
                misses: 0,
                mode,
            };
            self.stats.frames_played += 1;
            self.last_played = Some((next, buffered.frame.server_time_us));
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
            self.jitter.take(next);
            self.state = State::Playing {
                next: next + 1,
                misses: 0,
                mode,
            };
            self.stats.frames_lost += 1;
            return Tick::Lost { sequence: next };
        }
        if self.programme_ended_before(next) {
            self.jitter.take(next);
            self.state = State::Idle;
            self.stats.idle_slots += 1;
            return Tick::Idle;
        }
        let misses = misses + 1;
        self.stats.underrun_slots += 1;
        // Nothing at all to play. In step with the server's clock the slot keeps its sequence
        // number: a pause in the stream (a switch to or from live) cannot be told from a late
        // frame until the frame comes, and at a short playout delay the frame after a pause
        // usually comes after this slot; giving its number up would count it, and every frame
        // after it, as late.
        let keep = mode == Mode::Synced && self.clock.is_some();
        if keep {
            self.waiting = true;
        } else {
            self.jitter.take(next);
        }
        self.state = if misses >= MAX_UNDERRUN_SLOTS {
            self.waiting = false;
            State::Idle
        } else {
            State::Playing {
                next: if keep { next } else { next + 1 },
                misses,
                mode,
            }
        };
        Tick::Underrun
    }

    /// Starts a run at `now` if its first frame is due, or `None` to stay idle.
    fn start_run(&mut self, now: Instant) -> Option<State> {
        self.waiting = false;
        let Some(clock) = self.clock else {
            let (first, buffered) = self.jitter.first()?;
            return (now >= buffered.arrived + self.delay).then_some(State::Playing {
                next: first,
                misses: 0,
                mode: Mode::Arrival,
            });
        };
        // Frames whose instant has passed are skipped, as long as a later one is still on time:
        // playing them would start this agent behind the others (it happens when the clock
        // becomes known just as the first frame is due).
        let on_time = self
            .jitter
            .iter()
            .find(|(_, b)| {
                self.frame_instant(&clock, b.frame.server_time_us)
                    .is_some_and(|t| t + ON_TIME >= now)
            })
            .map(|(sequence, _)| sequence);
        if let Some(sequence) = on_time {
            self.stats.frames_late += self.jitter.discard_before(sequence) as u64;
        }
        let (first, buffered) = self.jitter.first()?;
        let due = self.frame_instant(&clock, buffered.frame.server_time_us)?;
        self.last_played = None;
        if due + ON_TIME >= now {
            if due > now + ON_TIME {
                return None;
            }
            self.rephase = true;
            return Some(State::Playing {
                next: first,
                misses: 0,
                mode: Mode::Synced,
            });
        }
        if due + LATE_START > now {
            // Just missed (it arrived after the idle slot before its instant): played now, and
            // the next slot exactly at its frame's instant.
            self.rephase = true;
            return Some(State::Playing {
                next: first,
                misses: 0,
                mode: Mode::Synced,
            });
        }
        if now >= buffered.arrived + self.delay {
            self.stats.late_runs += 1;
            return Some(State::Playing {
                next: first,
                misses: 0,
                mode: Mode::Late,
            });
        }
        None
    }

    /// When the slot after the one just decided at `now` is due.
    fn schedule(&mut self, now: Instant) {
        self.next_at = None;
        self.gap_next = false;
        let Some(clock) = self.clock else {
            return;
        };
        let State::Playing { next, misses, mode } = self.state else {
            // Idle: wake exactly when the first buffered frame is due, if within a slot.
            self.next_at = self
                .jitter
                .first()
                .and_then(|(_, b)| self.frame_instant(&clock, b.frame.server_time_us))
                .filter(|&t| t > now && t < now + SLOT);
            return;
        };
        if mode == Mode::Late {
            // Back in step as soon as the link allows, with a margin so that a link hovering
            // around the playout delay does not re-anchor over and over: once the newest frame
            // arrived more than the margin before its instant, and that instant is still to
            // come, the late ones are skipped. The margin is 60 ms, or half the delay when that
            // is shorter (a live studio at 20 ms: no frame ever arrives 60 ms ahead of its
            // instant there, and a late run would never end).
            let margin = (SLOT + RESYNC_THRESHOLD).min(self.delay / 2);
            let recovered = self.jitter.iter().last().is_some_and(|(_, b)| {
                self.frame_instant(&clock, b.frame.server_time_us)
                    .is_some_and(|t| t > now && t > b.arrived + margin)
            });
            if recovered {
                self.stats.resyncs += 1;
                self.state = State::Idle;
                self.next_at = Some(now);
            }
            return;
        }
        if self.waiting && self.jitter.get(next).is_none() {
            // Waiting for a frame that has not come (`decide`): one slot later, on the cadence.
            return;
        }
        let Some(due) = self.instant_of(&clock, next) else {
            return;
        };
        let nominal = now + SLOT;
        if self.rephase || self.gap_before(next) {
            if due > nominal + SLOT / 2 {
                self.gap_next = true;
                self.rephase = true;
                self.next_at = Some(nominal);
            } else {
                self.rephase = false;
                self.next_at = Some(due.max(now));
            }
        } else if due > nominal + RESYNC_THRESHOLD {
            // Far ahead: wait for it with gap slots, then play it exactly on time.
            self.stats.resyncs += 1;
            self.gap_next = true;
            self.rephase = true;
            self.next_at = Some(nominal);
        } else if due + RESYNC_THRESHOLD < nominal {
            // Far behind: re-anchor at once on the first frame still on time.
            self.stats.resyncs += 1;
            self.state = State::Idle;
            self.next_at = Some(now);
            return;
        } else if due >= nominal {
            self.next_at = Some(nominal + (due - nominal).min(MAX_SLEW));
        } else {
            self.next_at = Some(nominal - (nominal - due).min(MAX_SLEW));
        }
        self.state = State::Playing {
            next,
            misses,
            mode: Mode::Synced,
        };
    }

    /// When a frame stamped `server_us` is to be heard.
    fn frame_instant(&self, clock: &ClockMap, server_us: u64) -> Option<Instant> {
        clock.local_instant(server_us)?.checked_add(self.delay)
    }

    /// When slot `sequence` is due: its frame's instant, or for a frame that has not arrived,
    /// one slot per sequence number after the last frame played.
    fn instant_of(&self, clock: &ClockMap, sequence: u64) -> Option<Instant> {
        if let Some(b) = self.jitter.get(sequence) {
            return self.frame_instant(clock, b.frame.server_time_us);
        }
        let (played, at) = self.last_played?;
        let slots = sequence.checked_sub(played)?;
        let server_us = at.checked_add(slots.checked_mul(SLOT.as_micros() as u64)?)?;
        self.frame_instant(clock, server_us)
    }

    /// Whether the server's stream has a gap before frame `sequence`: it is stamped at least
    /// half a slot later than one slot per sequence number after the last frame played.
    fn gap_before(&self, sequence: u64) -> bool {
        let (Some(b), Some((played, at))) = (self.jitter.get(sequence), self.last_played) else {
            return false;
        };
        let slots = sequence.saturating_sub(played);
        let expected = at.saturating_add(slots.saturating_mul(SLOT.as_micros() as u64));
        b.frame.server_time_us > expected.saturating_add(SLOT.as_micros() as u64 / 2)
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

/// What the playout thread returns: the sinks' statistics once `stop` was set, or why it
/// could not go on (the agent then ends; see `supervise.rs`).
pub type PlayoutEnd = Result<Vec<(String, SinkStats)>, Died>;

/// Runs the playout on the real clock until `stop` is set, then finishes every sink. Returns the
/// sinks' statistics. The thread ends early, with the reason, when it cannot play any more: the
/// playout state was poisoned by a panic elsewhere, or a sink died for good.
pub fn spawn_playout_thread(
    playout: Arc<Mutex<Playout>>,
    mut sinks: Vec<Box<dyn Sink>>,
    stop: Arc<AtomicBool>,
    report: PlayoutReport,
) -> std::io::Result<SupervisedThread<PlayoutEnd>> {
    spawn_thread("playout", "playout thread", move || {
        #[cfg(debug_assertions)]
        let panic_after = crate::test_panic::armed("playout");
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
        let mut timed = Vec::with_capacity(FRAME_SAMPLES + MAX_RETIME);
        let mut retimer = Retimer::default();
        let (mut resyncs, mut late_runs) = (0, 0);
        let mut deadline = Instant::now();
        let mut proof = ProofOfPlay::default();
        let mut events = Vec::new();
        // The last slot aired from the prefetch cache: the next streamed frame is a switch.
        let mut from_cache = false;
        while !stop.load(Ordering::Relaxed) {
            // The slot is decided and decoded a little ahead, then released on time: the
            // instant it reaches the sinks must not depend on how long decoding took.
            if let Some(early) = deadline.checked_sub(PREPARE_AHEAD) {
                let now = Instant::now();
                if now < early {
                    std::thread::sleep(early - now);
                }
            }
            let behind = Instant::now().saturating_duration_since(deadline);
            let (tick, boundary, next_deadline, airing) = match playout.lock() {
                Ok(mut p) => {
                    // Holding the lock, as a real fault in the playout would: the state is
                    // poisoned for everyone else.
                    #[cfg(debug_assertions)]
                    crate::test_panic::check("playout", panic_after, p.stats().frames_played);
                    // Without the server's clock, a stalled machine plays the missed slots
                    // back to back rather than dropping them, so outputs keep a true
                    // timeline; beyond a second it gives up and re-bases. With it, the true
                    // timeline is the server's: past the resync threshold the slot is
                    // decided now, and the playout skips what is no longer on time rather
                    // than playing it late (a burst, then back in step).
                    let limit = if p.clock().is_some() {
                        RESYNC_THRESHOLD
                    } else {
                        Duration::from_secs(1)
                    };
                    if behind > limit {
                        tracing::warn!(
                            "playout clock fell {} ms behind; re-basing",
                            behind.as_millis()
                        );
                        deadline = Instant::now();
                    }
                    let tick = p.tick(deadline);
                    let next_deadline = p.next_deadline();
                    let stats = p.stats();
                    if stats.resyncs > resyncs {
                        tracing::warn!(
                                "playout re-anchored on the server clock (it was off by more than {} ms)",
                                RESYNC_THRESHOLD.as_millis()
                            );
                    }
                    if stats.late_runs > late_runs {
                        tracing::warn!(
                            "frames arrive after their playout instant: playing late, out of \
                                 step with the other stations (is playout_delay_ms shorter than \
                                 the link's delay?)"
                        );
                    }
                    (resyncs, late_runs) = (stats.resyncs, stats.late_runs);
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
                        (Airing::Stream, Tick::Lost { .. } | Tick::Underrun) => SlotKind::Missing,
                        (Airing::Stream, Tick::Idle) => SlotKind::Idle,
                    };
                    proof.slot(slot, &mut events);
                    if let (Airing::Cached { .. } | Airing::Suppressed, Tick::Play(frame)) =
                        (&airing, &tick)
                    {
                        p.displaced(frame);
                    }
                    (tick, boundary, next_deadline, airing)
                }
                Err(_) => {
                    return Err(Died::ended(
                        "playout thread",
                        "the playout state is poisoned (a thread panicked while holding it)",
                    ))
                }
            };
            report.output.store(proof.output() as u8, Ordering::Relaxed);
            if let Some(journal) = &report.journal {
                for event in events.drain(..) {
                    journal.record(event);
                }
            }
            events.clear();
            let due = deadline;
            deadline = next_deadline.unwrap_or(deadline + SLOT);
            let (opus, silent): (Option<&[u8]>, bool) = match (&airing, &tick) {
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
                    (payload.map(|p| &p[..]), false)
                }
                (Airing::Suppressed, _) => {
                    pcm.fill(0);
                    (Some(&silence_packet), true)
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
                    (Some(&frame.payload), false)
                }
                (Airing::Stream, Tick::Lost { .. } | Tick::Underrun) => {
                    let concealed = voice.as_mut().map(|v| v.decode(None, &mut pcm));
                    if !matches!(concealed, Some(true)) {
                        pcm.fill(0);
                    }
                    (None, false)
                }
                (Airing::Stream, Tick::Idle) => {
                    pcm.fill(0);
                    (Some(&silence_packet), true)
                }
            };
            from_cache = matches!(airing, Airing::Cached { .. });
            // The slot lasts until the next one: a slewed slot's PCM gains or loses the
            // samples that keeps file and pipe outputs on the synchronised timeline.
            retimer.retime(deadline.saturating_duration_since(due), &pcm, &mut timed);
            let slot = Slot {
                opus,
                pcm: &timed,
                silent,
            };
            wait_until(due);
            let now = Instant::now();
            for sink in sinks.iter_mut() {
                match sink.play(&slot) {
                    Ok(()) => {}
                    // Its output stays silent until the agent restarts: so restart it.
                    Err(e) if e.is_fatal() => {
                        return Err(Died {
                            what: "sink",
                            how: e.to_string(),
                        })
                    }
                    Err(e) => tracing::warn!("{e}"),
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
        Ok(sinks
            .iter_mut()
            .map(|sink| {
                if let Err(e) = sink.finish() {
                    tracing::warn!("{e}");
                }
                (sink.describe(), sink.stats())
            })
            .collect())
    })
}

/// The wall-clock time (Unix ms) of the slot due at `due`: the cache airs by the agent's own
/// clock. A slot is decided a little before its instant, and one played late still belongs to
/// the time it was due.
fn slot_unix_ms(due: Instant) -> u64 {
    let now_ms = crate::journal::unix_ms();
    let now = Instant::now();
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if due >= now {
        now_ms.saturating_add(ms(due - now))
    } else {
        now_ms.saturating_sub(ms(now - due))
    }
}

/// How long before its instant a slot is decided and decoded (decoding takes well under 1 ms).
const PREPARE_AHEAD: Duration = Duration::from_millis(3);

/// Returns at `due` (at once if it has passed). A plain sleep: spinning through the last 300 µs
/// was measured (`playout_spread`, four agents on two cores) to widen the spread, p99 411 µs
/// against 221 µs, as agents that all wake at the same instant then compete for the cores with
/// each other and with the receivers.
fn wait_until(due: Instant) {
    let now = Instant::now();
    if now < due {
        std::thread::sleep(due - now);
    }
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
    use bytes::Bytes;

    fn frame(sequence: u64) -> AudioFrame {
        AudioFrame {
            channel: 0,
            sequence,
            timestamp: sequence * 960,
            server_time_us: sequence * 20_000,
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

    /// A frame of the server's tick `k`: sequence `k`, stamped `k` slots after 10 s.
    fn timed(sequence: u64, server_time_us: u64) -> AudioFrame {
        AudioFrame {
            server_time_us,
            ..frame(sequence)
        }
    }

    const BASE_US: u64 = 10_000_000;

    /// A clock under which server time `BASE_US` is local instant `at`.
    fn clock_at(at: Instant) -> ClockMap {
        ClockMap {
            local_ref: at,
            server_ref_us: BASE_US as f64,
            rate: 0.0,
        }
    }

    /// Runs the playout thread's loop on a virtual clock from `start` to `end`: frames are
    /// delivered at their arrival instants, each slot is decided at its deadline, and the next
    /// deadline is the playout's (or one slot later). `change` may alter the playout at a slot.
    fn drive(
        p: &mut Playout,
        start: Instant,
        end: Instant,
        mut arrivals: Vec<(Instant, AudioFrame)>,
        mut change: impl FnMut(&mut Playout, Instant),
    ) -> Vec<(Instant, Tick)> {
        arrivals.sort_by_key(|(at, _)| *at);
        let mut arrivals = arrivals.into_iter().peekable();
        let mut slots = Vec::new();
        let mut deadline = start;
        while deadline < end {
            while let Some((at, f)) = arrivals.next_if(|(at, _)| *at <= deadline) {
                p.on_frame(at, f);
            }
            change(p, deadline);
            let tick = p.tick(deadline);
            slots.push((deadline, tick));
            let next = p.next_deadline().unwrap_or(deadline + SLOT);
            assert!(next >= deadline, "deadlines never go back");
            deadline = next;
        }
        slots
    }

    fn played(slots: &[(Instant, Tick)]) -> Vec<(Instant, u64)> {
        slots
            .iter()
            .filter_map(|(at, t)| match t {
                Tick::Play(f) => Some((*at, f.sequence)),
                _ => None,
            })
            .collect()
    }

    const DELAY: Duration = Duration::from_millis(250);

    /// Frames 0..n of a server whose tick k is at `BASE_US + k × 20 ms`, arriving `latency`
    /// after that (on the clock `clock_at(t0)`), plus `jitter_us(k)`.
    fn stream(
        t0: Instant,
        n: u64,
        latency: Duration,
        jitter_us: impl Fn(u64) -> u64,
    ) -> Vec<(Instant, AudioFrame)> {
        (0..n)
            .map(|k| {
                let sent = t0 + SLOT * k as u32;
                (
                    sent + latency + Duration::from_micros(jitter_us(k)),
                    timed(k, BASE_US + k * 20_000),
                )
            })
            .collect()
    }

    #[test]
    fn synced_agents_play_each_frame_at_its_server_time_plus_the_delay() {
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs(3);
        // Two agents whose links differ by 110 ms and jitter differently; both know the clock.
        let mut near = Playout::new(DELAY, 100);
        let mut far = Playout::new(DELAY, 100);
        near.set_clock(Some(clock_at(t0)));
        far.set_clock(Some(clock_at(t0)));
        // The agents' ticks start at unrelated phases.
        let a = drive(
            &mut near,
            t0 + Duration::from_micros(3_333),
            end,
            stream(t0, 100, Duration::from_millis(5), |k| k * 7 % 3_000),
            |_, _| {},
        );
        let b = drive(
            &mut far,
            t0 + Duration::from_micros(17_000),
            end,
            stream(t0, 100, Duration::from_millis(115), |k| k * 13 % 9_000),
            |_, _| {},
        );
        let (a, b) = (played(&a), played(&b));
        assert_eq!(a.len(), 100);
        assert_eq!(a, b, "both play every frame at the same instant");
        for (at, k) in a {
            assert_eq!(at, t0 + DELAY + SLOT * k as u32, "frame {k}");
        }
        assert_eq!(near.stats().resyncs + far.stats().resyncs, 0);
    }

    #[test]
    fn a_new_estimate_is_slewed_towards_gently() {
        let t0 = Instant::now();
        let mut p = Playout::new(DELAY, 100);
        p.set_clock(Some(clock_at(t0)));
        let shift = Duration::from_millis(2);
        let changed = t0 + Duration::from_secs(1);
        let slots = drive(
            &mut p,
            t0,
            t0 + Duration::from_millis(3_500),
            stream(t0, 140, Duration::from_millis(5), |_| 0),
            // The estimate moves: the server's clock is found to be 2 ms behind.
            |p, now| {
                if now >= changed {
                    p.set_clock(Some(clock_at(t0 + shift)));
                }
            },
        );
        let plays = played(&slots);
        assert_eq!(plays.len(), 140, "no frame skipped or lost");
        for w in plays.windows(2) {
            let step = w[1].0 - w[0].0;
            assert!(
                step >= SLOT && step <= SLOT + MAX_SLEW,
                "slot of {step:?} at frame {}",
                w[1].1
            );
        }
        // 2 ms at 50 µs per slot: in step again after 40 slots.
        for (at, k) in plays.iter().filter(|(at, _)| *at > changed + SLOT * 45) {
            assert_eq!(*at, t0 + shift + DELAY + SLOT * *k as u32, "frame {k}");
        }
        assert_eq!(p.stats().resyncs, 0);
    }

    #[test]
    fn an_estimate_past_the_threshold_re_anchors_at_once() {
        let t0 = Instant::now();
        let mut p = Playout::new(DELAY, 100);
        p.set_clock(Some(clock_at(t0)));
        let changed = t0 + Duration::from_secs(1);
        // The server's clock is found to be 100 ms ahead: frames are due earlier.
        let shift = Duration::from_millis(100);
        let slots = drive(
            &mut p,
            t0,
            t0 + Duration::from_secs(3),
            stream(t0, 140, Duration::from_millis(5), |_| 0),
            |p, now| {
                if now >= changed {
                    p.set_clock(Some(clock_at(t0 - shift)));
                }
            },
        );
        assert_eq!(p.stats().resyncs, 1);
        let plays = played(&slots);
        // Frame 38 was played at 1010 ms when the estimate moved; frames 39 to 42 were due
        // in the past by then and are skipped, and frame 43 (now due at 1010 ms) follows at once.
        let at_change: Vec<u64> = plays
            .iter()
            .filter(|(at, _)| *at == t0 + Duration::from_millis(1010))
            .map(|(_, k)| *k)
            .collect();
        assert_eq!(at_change, vec![38, 43]);
        assert_eq!(p.stats().frames_late, 4);
        let after: Vec<_> = plays
            .iter()
            .filter(|(at, _)| *at > changed + SLOT)
            .collect();
        assert!(after.len() > 50);
        for (at, k) in after {
            assert_eq!(*at, t0 - shift + DELAY + SLOT * *k as u32, "frame {k}");
        }
    }

    #[test]
    fn after_a_stall_the_frames_no_longer_on_time_are_skipped() {
        let t0 = Instant::now();
        let mut p = Playout::new(DELAY, 100);
        p.set_clock(Some(clock_at(t0)));
        for (at, f) in stream(t0, 100, Duration::from_millis(5), |_| 0) {
            p.on_frame(at, f);
        }
        let mut now = t0 + DELAY;
        for k in 0..10 {
            assert_eq!(p.tick(now), Tick::Play(timed(k, BASE_US + k * 20_000)));
            now = p.next_deadline().expect("synced");
        }
        // The machine stalls: the thread wakes 130 ms after frame 10 was due and decides that
        // slot at once, then follows the playout's deadlines again.
        let woke = now + Duration::from_millis(130);
        assert!(matches!(p.tick(woke), Tick::Play(f) if f.sequence == 10));
        let mut plays = Vec::new();
        let mut at = p.next_deadline().expect("re-anchoring");
        while at < woke + Duration::from_millis(100) {
            if let Tick::Play(f) = p.tick(at) {
                plays.push((at, f.sequence));
            }
            at = p.next_deadline().unwrap_or(at + SLOT);
        }
        assert_eq!(p.stats().resyncs, 1);
        // Frames 11 to 16 were due during the stall or just after it woke: skipped.
        assert_eq!(plays[0], (t0 + DELAY + SLOT * 17, 17));
        for (at, k) in plays {
            assert_eq!(at, t0 + DELAY + SLOT * k as u32, "frame {k}");
        }
        assert_eq!(p.stats().frames_late, 6);
    }

    #[test]
    fn a_gap_in_the_server_stream_is_played_as_a_gap() {
        let t0 = Instant::now();
        let mut p = Playout::new(DELAY, 100);
        p.set_clock(Some(clock_at(t0)));
        // Frames 0..10, then the source sent nothing for 3 ticks: frame 10 is stamped tick 13.
        let mut arrivals = stream(t0, 10, Duration::from_millis(5), |_| 0);
        for k in 10..30u64 {
            let tick = k + 3;
            arrivals.push((
                t0 + SLOT * tick as u32 + Duration::from_millis(5),
                timed(k, BASE_US + tick * 20_000),
            ));
        }
        let slots = drive(
            &mut p,
            t0,
            t0 + Duration::from_millis(900),
            arrivals,
            |_, _| {},
        );
        for (at, k) in played(&slots) {
            let tick = if k < 10 { k } else { k + 3 };
            assert_eq!(at, t0 + DELAY + SLOT * tick as u32, "frame {k}");
        }
        assert_eq!(p.stats().underrun_slots, 3);
        assert_eq!(p.stats().frames_lost, 0);
        assert_eq!(p.stats().resyncs, 0);
    }

    #[test]
    fn frames_too_late_for_their_instant_are_played_late_rather_than_not_at_all() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::from_millis(100), 100);
        p.set_clock(Some(clock_at(t0)));
        // A link 300 ms slow: every frame arrives 200 ms after its instant.
        let slots = drive(
            &mut p,
            t0,
            t0 + Duration::from_secs(2),
            stream(t0, 50, Duration::from_millis(300), |_| 0),
            |_, _| {},
        );
        let plays = played(&slots);
        assert_eq!(plays.len(), 50);
        assert_eq!(plays[0].0, t0 + Duration::from_millis(400));
        assert_eq!(p.stats().late_runs, 1);
        assert_eq!(p.stats().resyncs, 0);
    }

    #[test]
    fn a_late_run_rejoins_the_others_once_the_link_is_fast_again() {
        let t0 = Instant::now();
        let mut p = Playout::new(DELAY, 200);
        p.set_clock(Some(clock_at(t0)));
        // For its first second the link takes 400 ms (150 ms more than the delay), then 5 ms.
        let arrivals = (0..150u64)
            .map(|k| {
                let latency = if k < 50 {
                    Duration::from_millis(400)
                } else {
                    Duration::from_millis(5)
                };
                (
                    t0 + SLOT * k as u32 + latency,
                    timed(k, BASE_US + k * 20_000),
                )
            })
            .collect();
        let slots = drive(
            &mut p,
            t0,
            t0 + Duration::from_millis(3_500),
            arrivals,
            |_, _| {},
        );
        assert_eq!(p.stats().late_runs, 1);
        assert_eq!(p.stats().resyncs, 1);
        let plays = played(&slots);
        // Played late at first, on arrival plus the delay (at the next 20 ms slot)…
        assert_eq!(plays[0], (t0 + Duration::from_millis(660), 0));
        // …and in step again from the first frame still on time when the link recovered.
        let rejoined: Vec<_> = plays
            .iter()
            .filter(|(at, k)| *at == t0 + DELAY + SLOT * *k as u32)
            .collect();
        assert!(rejoined.len() > 50, "{} frames in step", rejoined.len());
        let first = rejoined[0].1;
        assert!(
            plays
                .iter()
                .all(|(_, k)| *k < first || rejoined.iter().any(|(_, j)| j == k)),
            "every frame after rejoining is in step"
        );
    }

    #[test]
    fn an_arrival_anchored_run_joins_the_clock_when_it_becomes_known() {
        let t0 = Instant::now();
        let mut p = Playout::new(DELAY, 100);
        let known = t0 + Duration::from_millis(600);
        // Arrival anchoring on a 20 ms grid puts this agent 1 ms behind the synchronised
        // instants.
        let slots = drive(
            &mut p,
            t0 + Duration::from_millis(11),
            t0 + Duration::from_millis(3_500),
            stream(t0, 140, Duration::from_millis(1), |_| 0),
            |p, now| {
                if now >= known && p.clock().is_none() {
                    p.set_clock(Some(clock_at(t0)));
                }
            },
        );
        let plays = played(&slots);
        assert_eq!(plays.len(), 140);
        assert_eq!(plays[0].0, t0 + Duration::from_millis(251));
        for (at, k) in plays.iter().filter(|(at, _)| *at > known + SLOT * 25) {
            assert_eq!(*at, t0 + DELAY + SLOT * *k as u32, "frame {k}");
        }
    }

    #[test]
    fn a_first_frame_found_just_after_its_instant_starts_the_run_in_step() {
        // A live studio at a 20 ms delay: every frame arrives 1 ms after its server time, and
        // the idle slots fall 0.8 ms after the first frame's server time, before it arrived.
        let delay = Duration::from_millis(20);
        let t0 = Instant::now();
        let mut p = Playout::new(delay, 100);
        p.set_clock(Some(clock_at(t0)));
        let slots = drive(
            &mut p,
            t0 + Duration::from_micros(800),
            t0 + Duration::from_secs(1),
            stream(t0, 40, Duration::from_millis(1), |_| 0),
            |_, _| {},
        );
        let plays = played(&slots);
        assert_eq!(plays.len(), 40);
        // Frame 0 was due at t0 + 20 ms and is found by the idle slot at t0 + 20.8 ms...
        assert_eq!(plays[0], (t0 + delay + Duration::from_micros(800), 0));
        // ...and every later frame is played exactly at its instant.
        for (at, k) in &plays[1..] {
            assert_eq!(*at, t0 + delay + SLOT * *k as u32, "frame {k}");
        }
        assert_eq!(p.stats().late_runs, 0);
        assert_eq!(p.stats().frames_late, 0);
    }

    #[test]
    fn with_a_short_delay_a_late_run_rejoins_once_frames_are_on_time_again() {
        // A live studio at a 20 ms delay; for its first second the link takes 100 ms (more
        // than the delay), then 1 ms.
        let delay = Duration::from_millis(20);
        let t0 = Instant::now();
        let mut p = Playout::new(delay, 100);
        p.set_clock(Some(clock_at(t0)));
        let arrivals = (0..100u64)
            .map(|k| {
                let latency = Duration::from_millis(if k < 50 { 100 } else { 1 });
                (
                    t0 + SLOT * k as u32 + latency,
                    timed(k, BASE_US + k * 20_000),
                )
            })
            .collect();
        let slots = drive(
            &mut p,
            t0 + Duration::from_millis(7),
            t0 + Duration::from_millis(2_100),
            arrivals,
            |_, _| {},
        );
        assert_eq!(p.stats().late_runs, 1);
        assert_eq!(p.stats().resyncs, 1);
        let plays = played(&slots);
        let in_step: Vec<_> = plays
            .iter()
            .filter(|(at, k)| *at == t0 + delay + SLOT * *k as u32)
            .collect();
        // In step again within a few slots of the frames coming on time (frame 50).
        assert!(in_step[0].1 <= 53, "rejoined at frame {}", in_step[0].1);
        assert_eq!(in_step.last().map(|(_, k)| *k), Some(99));
    }

    #[test]
    fn with_a_short_delay_the_frames_after_a_pause_are_played_at_their_instants() {
        // A live studio at a 20 ms delay, frames arriving 1 ms after their server time; the
        // stream pauses for 5 slots after frame 19 (a switch to live: the frames after it are
        // stamped later).
        let delay = Duration::from_millis(20);
        let t0 = Instant::now();
        let mut p = Playout::new(delay, 100);
        p.set_clock(Some(clock_at(t0)));
        let tick = |k: u64| if k < 20 { k } else { k + 5 };
        let arrivals = (0..60u64)
            .map(|k| {
                (
                    t0 + SLOT * tick(k) as u32 + Duration::from_millis(1),
                    timed(k, BASE_US + tick(k) * 20_000),
                )
            })
            .collect();
        let slots = drive(
            &mut p,
            t0 + Duration::from_micros(800),
            t0 + Duration::from_millis(1_400),
            arrivals,
            |_, _| {},
        );
        let plays = played(&slots);
        assert_eq!(plays.len(), 60, "{:?}", p.stats());
        for (at, k) in &plays[1..] {
            assert_eq!(*at, t0 + delay + SLOT * tick(*k) as u32, "frame {k}");
        }
        assert_eq!(p.stats().frames_late, 0);
        assert_eq!(p.stats().resyncs, 0);
    }

    #[test]
    fn with_a_short_delay_a_frame_that_comes_after_its_instant_is_late_and_the_next_on_time() {
        let delay = Duration::from_millis(20);
        let t0 = Instant::now();
        let mut p = Playout::new(delay, 100);
        p.set_clock(Some(clock_at(t0)));
        // Frame 10 takes 30 ms (10 ms after its instant), the others 1 ms.
        let arrivals = (0..30u64)
            .map(|k| {
                let latency = Duration::from_millis(if k == 10 { 30 } else { 1 });
                (
                    t0 + SLOT * k as u32 + latency,
                    timed(k, BASE_US + k * 20_000),
                )
            })
            .collect();
        let slots = drive(
            &mut p,
            t0 + Duration::from_micros(800),
            t0 + Duration::from_millis(700),
            arrivals,
            |_, _| {},
        );
        let plays = played(&slots);
        assert_eq!(plays.len(), 29);
        assert!(plays.iter().all(|(_, k)| *k != 10));
        for (at, k) in &plays[1..] {
            assert_eq!(*at, t0 + delay + SLOT * *k as u32, "frame {k}");
        }
        assert_eq!(p.stats().frames_late, 1);
        assert_eq!(p.stats().resyncs, 0);
    }

    #[test]
    fn a_new_server_run_forgets_the_clock() {
        let t0 = Instant::now();
        let mut p = Playout::new(DELAY, 100);
        p.on_session(1);
        p.set_clock(Some(clock_at(t0)));
        p.on_session(1);
        assert!(p.clock().is_some(), "a reconnect to the same run keeps it");
        p.on_session(2);
        assert_eq!(p.clock(), None);
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
