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

    /// Whether frames wait in the buffer: they air within the playout delay. For the
    /// amplifier, the notice of whatever was not known in advance (live, a stream starting).
    pub fn frames_buffered(&self) -> bool {
        !self.jitter.is_empty()
    }

    /// Whether an emergency programme of the current run is open and airing or about to.
    pub fn emergency_due(&self) -> bool {
        (self.on_air() || self.frames_buffered())
            && self.programmes.iter().any(|p| {
                p.server_run == self.server_run
                    && p.level == ProgrammeLevel::Emergency
                    && !p.ended()
            })
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

/// Hands the sinks' states to the health report; only on a change, so the 20 ms clock takes
/// no lock in the common case.
fn publish_outputs(
    report: &PlayoutReport,
    sinks: &[Box<dyn Sink>],
    failed: &[bool],
    clusters: Vec<(String, ClusterState)>,
) {
    let Ok(mut seen) = report.outputs.lock() else {
        return;
    };
    seen.sinks = sinks
        .iter()
        .zip(failed)
        .map(|(sink, failed)| (sink.describe(), *failed))
        .collect();
    for (id, state) in clusters {
        seen.clusters.insert(id, state == ClusterState::Up);
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
    /// Advanced once per slot: what feeds the watchdog (`service_manager.rs`).
    pub progress: crate::service_manager::Progress,
    /// Each sink's and watched cluster's state, for the box's health report.
    pub outputs: crate::box_health::SharedOutputs,
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
        #[cfg(debug_assertions)]
        let hang_after = crate::test_panic::armed(crate::test_panic::PLAYOUT_HANG);
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
        let mut failed = vec![false; sinks.len()];
        publish_outputs(&report, &sinks, &failed, Vec::new());
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
                    #[cfg(debug_assertions)]
                    crate::test_panic::hang_if(hang_after, p.stats().frames_played);
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
            report.progress.advance();
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
            let mut outputs_changed = None;
            for (i, sink) in sinks.iter_mut().enumerate() {
                let played = match sink.play(&slot) {
                    Ok(()) => true,
                    // Its output stays silent until the agent restarts: so restart it.
                    Err(e) if e.is_fatal() => {
                        return Err(Died {
                            what: "sink",
                            how: e.to_string(),
                        })
                    }
                    Err(e) => {
                        tracing::warn!("{e}");
                        false
                    }
                };
                if failed.get(i) == Some(&played) {
                    failed[i] = !played;
                    outputs_changed.get_or_insert_with(Vec::new);
                }
                if let Some((cluster, change)) = sink.cluster_change(now) {
                    outputs_changed
                        .get_or_insert_with(Vec::new)
                        .push((cluster.clone(), change.state));
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
            if let Some(clusters) = outputs_changed {
                publish_outputs(&report, &sinks, &failed, clusters);
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
mod tests;
