//! One station's output: the continuous stream its agent receives, whatever the station is
//! switched to.
//!
//! Every programme is encoded once into a playback; the router hands each frame to the outputs
//! of the stations routed to it. Here each station gets its **own** sequence numbers, so that when
//! the station switches programme (emergency, live, the next item) its agent sees one unbroken
//! stream: no gap, no frame twice, and programme start/end markers exactly where the switch is.
//! The queue is bounded; a slow agent loses its oldest audio frames (counted), never a marker, and
//! never slows the router.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use radio_proto::{
    AudioFrame, Encode, Message, ProgrammeEnd, ProgrammeLevel, ProgrammeStart, FRAME_SAMPLES,
};
use tokio::sync::Notify;

/// The channel every station stream is sent on (one stream per agent for now).
pub const STATION_CHANNEL: u16 = 0;

/// Programmes whose per-station frame counts are remembered, for resumed programmes.
const PROGRAMME_MEMORY: usize = 64;

/// Send counters of one station, kept across its agent's reconnects.
#[derive(Debug, Default)]
pub struct SendCounters {
    /// Audio frames written to the agent's stream.
    pub frames_sent: AtomicU64,
    /// Audio frames dropped because the agent could not keep up.
    pub frames_dropped: AtomicU64,
    /// Bytes written.
    pub bytes_sent: AtomicU64,
}

#[derive(Debug, Clone)]
enum Entry {
    Frame {
        sequence: u64,
        payload: Bytes,
        server_time_us: u64,
    },
    Marker(Message),
}

#[derive(Debug, Clone)]
struct Current {
    programme_id: u64,
    name: String,
    level: ProgrammeLevel,
    first_sequence: u64,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Entry>,
    /// Audio frames in `queue` (markers excluded), kept so a push costs O(1).
    queued_frames: usize,
    next_sequence: u64,
    attached: bool,
    /// Counts attachments, so a replaced connection cannot detach its successor.
    generation: u64,
    current: Option<Current>,
    /// Frames of each recent programme sent to this station, across interruptions.
    sent_per_programme: VecDeque<(u64, u64)>,
    /// The queue is due to be written (a batch is complete, or a marker waits).
    due: bool,
}

impl State {
    fn sent_of(&mut self, programme_id: u64) -> &mut u64 {
        // From the back: the programme on air is the newest, and this runs for every frame.
        if let Some(i) = self
            .sent_per_programme
            .iter()
            .rposition(|(id, _)| *id == programme_id)
        {
            return &mut self.sent_per_programme[i].1;
        }
        if self.sent_per_programme.len() == PROGRAMME_MEMORY {
            self.sent_per_programme.pop_front();
        }
        self.sent_per_programme.push_back((programme_id, 0));
        let last = self.sent_per_programme.len() - 1;
        &mut self.sent_per_programme[last].1
    }

    fn start_marker(&self, c: &Current) -> Entry {
        Entry::Marker(Message::ProgrammeStart(ProgrammeStart {
            channel: STATION_CHANNEL,
            programme_id: c.programme_id,
            name: c.name.clone(),
            first_sequence: c.first_sequence,
            first_timestamp: c.first_sequence * u64::from(FRAME_SAMPLES),
            frame_count: 0,
            level: c.level,
        }))
    }
}

/// One station's output queue.
#[derive(Debug)]
pub struct StationOutput {
    station: String,
    state: Mutex<State>,
    notify: Notify,
    capacity: usize,
    counters: SendCounters,
    /// Audio frames written to the agent together (see [`StationOutput::set_frames_per_write`]).
    frames_per_write: AtomicU64,
    /// Which ticks complete this station's batches: a hash of its id, so that the stations'
    /// writes spread evenly over the ticks instead of all falling on the same one.
    flush_phase: u64,
}

impl StationOutput {
    /// An output for `station` queueing at most `capacity` frames.
    pub fn new(station: &str, capacity: usize) -> Self {
        Self {
            station: station.to_string(),
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            capacity: capacity.max(1),
            counters: SendCounters::default(),
            frames_per_write: AtomicU64::new(1),
            flush_phase: station.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            }),
        }
    }

    /// Writes the agent's audio `n` frames at a time (at least 1): one QUIC packet, one wake-up
    /// of the connection and one acknowledgement for every `n` frames instead of every frame.
    /// The server raises it when thousands of agents would otherwise need more packets a second
    /// than it can send (`server.rs`, `frames_per_write`); each frame then waits up to `n - 1`
    /// ticks, which the agents' playout delay absorbs. Markers are written at once whatever it
    /// is: an emergency never waits for a batch.
    pub fn set_frames_per_write(&self, n: u64) {
        self.frames_per_write.store(n.max(1), Ordering::Relaxed);
    }

    /// The station id.
    pub fn station(&self) -> &str {
        &self.station
    }

    /// Send counters.
    pub fn counters(&self) -> &SendCounters {
        &self.counters
    }

    /// Audio frames waiting to be written to the agent: more than a few means the link is
    /// full, and prefetch waits.
    pub fn queued_frames(&self) -> usize {
        self.state.lock().map(|s| s.queued_frames).unwrap_or(0)
    }

    /// The programme on air at this station, if any.
    pub fn on_air(&self) -> Option<(u64, String)> {
        let state = self.state.lock().ok()?;
        state
            .current
            .as_ref()
            .map(|c| (c.programme_id, c.name.clone()))
    }

    /// Switches the station to `programme` (None: nothing on air) at the next frame boundary. The
    /// agent gets an end marker for what it was playing and a start marker for what follows.
    pub fn switch(&self, programme: Option<(u64, &str, ProgrammeLevel)>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let (Some(cur), Some((id, _, _))) = (&state.current, programme) {
            if cur.programme_id == id {
                return;
            }
        }
        if let Some(cur) = state.current.take() {
            let frames = *state.sent_of(cur.programme_id);
            let end = Message::ProgrammeEnd(ProgrammeEnd {
                channel: STATION_CHANNEL,
                programme_id: cur.programme_id,
                last_sequence: state.next_sequence.saturating_sub(1),
                frames,
            });
            if state.attached {
                state.queue.push_back(Entry::Marker(end));
                state.due = true;
            }
        }
        if let Some((programme_id, name, level)) = programme {
            let current = Current {
                programme_id,
                name: name.to_string(),
                level,
                first_sequence: state.next_sequence,
            };
            if state.attached {
                let start = state.start_marker(&current);
                state.queue.push_back(start);
                state.due = true;
            }
            state.current = Some(current);
        }
        let due = state.due;
        drop(state);
        if due {
            self.notify.notify_one();
        }
    }

    /// Queues one frame of the programme on air, of the tick at media time `server_time_us`.
    /// Frames only flow while an agent is attached: a station that is offline does not pile up
    /// stale audio.
    pub fn push_frame(&self, payload: Bytes, server_time_us: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if !state.attached {
            return;
        }
        let Some(programme_id) = state.current.as_ref().map(|c| c.programme_id) else {
            return;
        };
        let sequence = state.next_sequence;
        state.next_sequence += 1;
        *state.sent_of(programme_id) += 1;
        state.queue.push_back(Entry::Frame {
            sequence,
            payload,
            server_time_us,
        });
        state.queued_frames += 1;
        let per_write = self.frames_per_write.load(Ordering::Relaxed).max(1);
        if state.queued_frames as u64 >= per_write
            || sequence.wrapping_add(self.flush_phase) % per_write == 0
        {
            state.due = true;
        }
        if state.queued_frames > self.capacity {
            if let Some(i) = state
                .queue
                .iter()
                .position(|e| matches!(e, Entry::Frame { .. }))
            {
                state.queue.remove(i);
                state.queued_frames -= 1;
                self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        let due = state.due;
        drop(state);
        if due {
            self.notify.notify_one();
        }
    }

    /// An agent connection starts draining this output. Whatever an earlier connection left
    /// queued is stale and dropped; the programme on air is announced again. Returns the token
    /// to detach with.
    pub fn attach(&self) -> u64 {
        let Ok(mut state) = self.state.lock() else {
            return 0;
        };
        state.generation += 1;
        let generation = state.generation;
        state.queue.clear();
        state.queued_frames = 0;
        state.due = false;
        state.attached = true;
        if let Some(mut current) = state.current.clone() {
            current.first_sequence = state.next_sequence;
            let start = state.start_marker(&current);
            state.queue.push_back(start);
            state.current = Some(current);
            state.due = true;
        }
        drop(state);
        self.notify.notify_one();
        generation
    }

    /// The agent connection that attached with `token` went away (a no-op when a newer
    /// connection has attached since).
    pub fn detach(&self, token: u64) {
        if let Ok(mut state) = self.state.lock() {
            if state.generation != token {
                return;
            }
            state.attached = false;
            state.queue.clear();
            state.queued_frames = 0;
            state.due = false;
        }
    }

    /// Waits until the queue is due to be written (a batch of frames is complete, or a marker
    /// waits) and returns it serialised, oldest first, with a flag telling audio frames from
    /// markers.
    pub async fn next_batch(&self) -> Vec<(Bytes, bool)> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let batch: Vec<Entry> = match self.state.lock() {
                Ok(mut state) if state.due => {
                    state.due = false;
                    state.queued_frames = 0;
                    state.queue.drain(..).collect()
                }
                _ => Vec::new(),
            };
            if !batch.is_empty() {
                let messages: Vec<(Message, bool)> = batch
                    .into_iter()
                    .map(|e| match e {
                        Entry::Frame {
                            sequence,
                            payload,
                            server_time_us,
                        } => (
                            Message::AudioFrame(AudioFrame {
                                channel: STATION_CHANNEL,
                                sequence,
                                timestamp: sequence * u64::from(FRAME_SAMPLES),
                                server_time_us,
                                payload,
                            }),
                            true,
                        ),
                        Entry::Marker(m) => (m, false),
                    })
                    .collect();
                // One buffer for the whole batch, each message a view into it: one allocation
                // per write instead of one per frame, for every agent.
                let mut buf =
                    BytesMut::with_capacity(messages.iter().map(|(m, _)| m.encoded_len()).sum());
                return messages
                    .iter()
                    .map(|(m, is_frame)| {
                        m.encode(&mut buf);
                        (buf.split().freeze(), *is_frame)
                    })
                    .collect();
            }
            notified.await;
        }
    }

    /// Records that a message of `len` bytes was written.
    pub fn sent(&self, len: usize, is_frame: bool) {
        if is_frame {
            self.counters.frames_sent.fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .bytes_sent
            .fetch_add(len as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use radio_proto::FrameReader;

    async fn drain(out: &StationOutput) -> Vec<Message> {
        let mut reader = FrameReader::new();
        for (bytes, _) in out.next_batch().await {
            reader.push(&bytes);
        }
        let mut msgs = Vec::new();
        while let Ok(Some(m)) = reader.next_message() {
            msgs.push(m);
        }
        msgs
    }

    fn seqs(msgs: &[Message]) -> Vec<u64> {
        msgs.iter()
            .filter_map(|m| match m {
                Message::AudioFrame(f) => Some(f.sequence),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_switch_is_seamless_and_marked() {
        let out = StationOutput::new("binh-trung", 100);
        out.attach();
        out.switch(Some((1, "Bản tin", ProgrammeLevel::Normal)));
        out.push_frame(Bytes::from_static(b"a"), 0);
        out.push_frame(Bytes::from_static(b"b"), 0);
        out.switch(Some((2, "Khẩn cấp", ProgrammeLevel::Normal)));
        out.push_frame(Bytes::from_static(b"X"), 0);
        out.switch(Some((1, "Bản tin", ProgrammeLevel::Normal)));
        out.push_frame(Bytes::from_static(b"c"), 0);
        let msgs = drain(&out).await;
        assert_eq!(seqs(&msgs), vec![0, 1, 2, 3], "one unbroken sequence");
        let ends: Vec<_> = msgs
            .iter()
            .filter_map(|m| match m {
                Message::ProgrammeEnd(e) => Some((e.programme_id, e.last_sequence, e.frames)),
                _ => None,
            })
            .collect();
        // The resumed programme counts its frames across the interruption.
        assert_eq!(ends, vec![(1, 1, 2), (2, 2, 1)]);
        let starts: Vec<_> = msgs
            .iter()
            .filter_map(|m| match m {
                Message::ProgrammeStart(s) => Some((s.programme_id, s.first_sequence)),
                _ => None,
            })
            .collect();
        assert_eq!(starts, vec![(1, 0), (2, 2), (1, 3)]);
    }

    #[tokio::test]
    async fn an_offline_station_queues_nothing_and_is_reannounced_on_attach() {
        let out = StationOutput::new("binh-chau", 100);
        out.switch(Some((5, "Tiếp sóng", ProgrammeLevel::Normal)));
        out.push_frame(Bytes::from_static(b"lost to nobody"), 0);
        out.attach();
        out.push_frame(Bytes::from_static(b"a"), 0);
        let msgs = drain(&out).await;
        assert!(
            matches!(&msgs[0], Message::ProgrammeStart(s) if s.programme_id == 5 && s.first_sequence == 0)
        );
        assert_eq!(seqs(&msgs), vec![0]);
    }

    #[tokio::test]
    async fn a_slow_agent_loses_oldest_frames_never_markers() {
        let out = StationOutput::new("binh-hai", 2);
        out.attach();
        out.switch(Some((1, "x", ProgrammeLevel::Normal)));
        for _ in 0..5 {
            out.push_frame(Bytes::from_static(b"f"), 0);
        }
        let msgs = drain(&out).await;
        assert!(matches!(msgs[0], Message::ProgrammeStart(_)));
        assert_eq!(seqs(&msgs), vec![3, 4]);
        assert_eq!(out.counters().frames_dropped.load(Ordering::Relaxed), 3);
    }

    /// The batch due now, if one is, without waiting.
    fn ready(out: &StationOutput) -> Option<Vec<Message>> {
        use std::future::Future;
        let mut batch = Box::pin(drain(out));
        let waker = std::task::Waker::noop();
        match batch
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
        {
            std::task::Poll::Ready(msgs) => Some(msgs),
            std::task::Poll::Pending => None,
        }
    }

    #[test]
    fn frames_go_out_in_batches_and_markers_at_once() {
        let out = StationOutput::new("binh-thanh", 100);
        out.set_frames_per_write(3);
        out.attach();
        out.switch(Some((1, "x", ProgrammeLevel::Normal)));
        // The start marker is due at once: an emergency never waits for a batch.
        let first = ready(&out).expect("the marker at once");
        assert!(matches!(first[..], [Message::ProgrammeStart(_)]));
        let mut batches = Vec::new();
        for _ in 0..9 {
            out.push_frame(Bytes::from_static(b"f"), 0);
            if let Some(msgs) = ready(&out) {
                batches.push(seqs(&msgs));
            }
        }
        // Batches end on this station's phase, so the first may be short; none is longer than
        // three frames, and together they are the whole unbroken stream.
        assert!(
            batches.iter().all(|b| !b.is_empty() && b.len() <= 3),
            "{batches:?}"
        );
        assert!((3..=4).contains(&batches.len()), "{batches:?}");
        let all: Vec<u64> = batches.concat();
        let queued = 9 - all.len() as u64;
        assert!(queued < 3);
        assert_eq!(all, (0..all.len() as u64).collect::<Vec<_>>());
        out.switch(None);
        let rest = ready(&out).expect("the end marker flushes what is queued");
        assert_eq!(seqs(&rest).len() as u64, queued);
        assert!(matches!(rest.last(), Some(Message::ProgrammeEnd(_))));
    }

    #[test]
    fn stations_complete_their_batches_on_different_ticks() {
        // 100 stations writing every 5 frames: if all wrote on the same tick, every fifth tick
        // would carry all 100 writes at once.
        let outputs: Vec<StationOutput> = (0..100)
            .map(|i| {
                let o = StationOutput::new(&format!("xa-{i:05}"), 100);
                o.set_frames_per_write(5);
                o.attach();
                o.switch(Some((1, "x", ProgrammeLevel::Normal)));
                let _ = ready(&o);
                o
            })
            .collect();
        let mut per_tick = Vec::new();
        for _ in 0..5 {
            let mut writes = 0;
            for o in &outputs {
                o.push_frame(Bytes::from_static(b"f"), 0);
                if ready(o).is_some() {
                    writes += 1;
                }
            }
            per_tick.push(writes);
        }
        assert_eq!(per_tick.iter().sum::<usize>(), 100, "{per_tick:?}");
        assert!(per_tick.iter().all(|&w| w <= 40), "{per_tick:?}");
    }
}
