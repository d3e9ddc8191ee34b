//! Airing from the prefetch cache: in each 20 ms slot, whether the loudspeakers hear the
//! server's stream or a prefetched recording, decided by the agent's own wall clock (sans-IO:
//! the slot's time, the link state and what the stream has in, a decision out).
//!
//! The rules:
//! - A prefetched airing is taken up when its slot covers the slot's time, the stream has
//!   nothing playing, and either the link is down or the stream has been quiet for
//!   [`STREAM_GRACE_MS`] (since the slot began, or since it last played). It starts at the
//!   slot's position, (now − start) / 20 ms, so an airing taken up late (the link dropped
//!   mid-programme, the agent restarted) is still in time with the schedule, and one the
//!   stream already played to its end is past its recording and not aired again.
//! - While it airs, a streamed frame of the same programme (same name and level: how the
//!   reports tell programmes apart) is dropped, so nothing is heard twice when the link comes
//!   back mid-programme; a streamed frame of any other programme (an emergency, live, a
//!   bulletin) wins at once and ends the cached airing, as on the server's ladder.
//! - It ends at the end of the recording or of its slot, whichever is first. The stream's
//!   tail of the same programme that may still follow is dropped too (silence) until the
//!   stream plays something else or goes quiet.
//! - An airing is taken up at most once per agent run.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use radio_proto::{PrefetchItem, ProgrammeLevel};

/// How long into a slot the stream may take to start the programme while the link is up
/// before the cache airs it instead: the playout delay plus the server opening the file take
/// well under a second; a live link that delivers nothing for 2 s is as good as down.
pub const STREAM_GRACE_MS: u64 = 2_000;

/// A prefetched recording read back, checked, and ready to air.
#[derive(Debug)]
pub struct ReadyAiring {
    pub item: PrefetchItem,
    /// Its 20 ms Opus packets.
    pub packets: Vec<Bytes>,
}

impl ReadyAiring {
    fn key(&self) -> (&str, u64) {
        (&self.item.entry_id, self.item.start_unix_ms)
    }

    /// Frames that air: the recording, cut at the slot's end.
    fn frames(&self) -> u64 {
        let slot = (self.item.end_unix_ms - self.item.start_unix_ms).div_ceil(20);
        (self.packets.len() as u64).min(slot)
    }
}

/// What the stream does in a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamSlot<'a> {
    /// A streamed frame plays; its programme's name and level when known.
    Playing(Option<(&'a str, ProgrammeLevel)>),
    /// Nothing streamed plays (idle, lost, or stalled).
    Quiet,
}

/// The decision for one slot.
#[derive(Debug, Clone)]
pub enum Airing {
    /// The stream's slot, as the playout decided it.
    Stream,
    /// Frame `index` of a prefetched recording.
    Cached {
        airing: Arc<ReadyAiring>,
        index: u64,
        /// The first frame aired (a switch: the decoder starts afresh).
        starts: bool,
        /// The last frame aired.
        ends: bool,
    },
    /// Silence: the stream carries the tail of a programme the cache already aired.
    Suppressed,
}

#[derive(Debug)]
struct Current {
    airing: Arc<ReadyAiring>,
    next: u64,
    end: u64,
    played: u64,
}

/// The cache's side of the playout clock.
#[derive(Debug, Default)]
pub struct CachedAiring {
    ready: Vec<Arc<ReadyAiring>>,
    current: Option<Current>,
    /// Airings taken up or seen on the stream, by entry and start.
    done: BTreeSet<(String, u64)>,
    /// The programme (name, level) whose streamed frames are dropped after its cached airing.
    suppress: Option<(String, ProgrammeLevel)>,
    /// When a streamed frame last played.
    stream_heard_ms: Option<u64>,
}

impl CachedAiring {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the airing (entry, start) is loaded.
    pub fn is_ready(&self, entry_id: &str, start_unix_ms: u64) -> bool {
        self.ready
            .iter()
            .any(|r| r.key() == (entry_id, start_unix_ms))
    }

    /// Adds a loaded airing.
    pub fn add(&mut self, airing: ReadyAiring) {
        if !self.is_ready(&airing.item.entry_id, airing.item.start_unix_ms) {
            self.ready.push(Arc::new(airing));
        }
    }

    /// Keeps only the loaded airings `keep` accepts (the manifest still lists them with the
    /// same recording). One that is airing and no longer kept stops: the schedule changed.
    pub fn retain(&mut self, keep: impl Fn(&PrefetchItem) -> bool) {
        self.ready.retain(|r| keep(&r.item));
        // What is no longer loaded can no longer be taken up: forgetting it keeps this small.
        let ready = &self.ready;
        self.done
            .retain(|(entry, start)| ready.iter().any(|r| r.key() == (entry.as_str(), *start)));
        if let Some(current) = &self.current {
            if !keep(&current.airing.item) {
                tracing::info!(
                    programme = %current.airing.item.name,
                    "the schedule no longer lists the airing from the prefetch cache; stopped"
                );
                self.current = None;
            }
        }
    }

    /// Decides the slot that starts at `now_ms` (wall clock, Unix ms).
    pub fn decide(&mut self, now_ms: u64, link_up: bool, stream: StreamSlot<'_>) -> Airing {
        if let Some(current) = &mut self.current {
            let item = &current.airing.item;
            let other_programme = matches!(
                stream,
                StreamSlot::Playing(Some((name, level))) if name != item.name || level != item.level
            );
            if other_programme {
                tracing::info!(
                    programme = %item.name,
                    played = current.played,
                    "another programme arrived on the stream; the airing from the prefetch cache \
                     gives way"
                );
                self.current = None;
                return Airing::Stream;
            }
            if current.next < current.end && now_ms < item.end_unix_ms {
                let index = current.next;
                current.next += 1;
                current.played += 1;
                return Airing::Cached {
                    airing: current.airing.clone(),
                    index,
                    starts: current.played == 1,
                    ends: current.next == current.end,
                };
            }
            tracing::info!(
                programme = %item.name,
                frames = current.played,
                "aired from the prefetch cache"
            );
            self.suppress = Some((item.name.clone(), item.level));
            self.current = None;
        }
        if let Some((name, level)) = &self.suppress {
            match stream {
                StreamSlot::Playing(Some((n, l))) if n == name && l == *level => {
                    return Airing::Suppressed
                }
                StreamSlot::Playing(None) => return Airing::Suppressed,
                _ => self.suppress = None,
            }
        }
        if let StreamSlot::Playing(_) = stream {
            self.stream_heard_ms = Some(now_ms);
            return Airing::Stream;
        }
        let due = self.ready.iter().find(|r| {
            r.item.start_unix_ms <= now_ms
                && now_ms < r.item.end_unix_ms
                && !self
                    .done
                    .contains(&(r.item.entry_id.clone(), r.item.start_unix_ms))
        });
        let Some(due) = due.cloned() else {
            return Airing::Stream;
        };
        // Quiet since the slot began, or since the stream last played in it.
        let quiet_since = self
            .stream_heard_ms
            .map_or(due.item.start_unix_ms, |t| t.max(due.item.start_unix_ms));
        if link_up && now_ms < quiet_since + STREAM_GRACE_MS {
            return Airing::Stream;
        }
        self.done
            .insert((due.item.entry_id.clone(), due.item.start_unix_ms));
        let position = (now_ms - due.item.start_unix_ms) / 20;
        let end = due.frames();
        if position >= end {
            return Airing::Stream;
        }
        tracing::info!(
            programme = %due.item.name,
            position_frames = position,
            frames = end,
            link_up,
            "airing from the prefetch cache"
        );
        self.current = Some(Current {
            airing: due,
            next: position,
            end,
            played: 0,
        });
        self.decide(now_ms, link_up, StreamSlot::Quiet)
    }

    /// Whether a prefetched recording is airing now.
    pub fn airing(&self) -> bool {
        self.current.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u64 = 1_000_000;

    fn ready(entry: &str, frames: usize, slot_ms: u64) -> ReadyAiring {
        ReadyAiring {
            item: PrefetchItem {
                entry_id: entry.into(),
                programme_id: 77,
                name: "Bản tin".into(),
                level: ProgrammeLevel::Normal,
                start_unix_ms: START,
                end_unix_ms: START + slot_ms,
                frame_count: frames as u64,
                blob_size: frames as u64 * 3,
                blob_sha256: [0; 32],
            },
            packets: (0..frames).map(|i| Bytes::from(vec![i as u8])).collect(),
        }
    }

    fn index(a: &Airing) -> Option<u64> {
        match a {
            Airing::Cached { index, .. } => Some(*index),
            _ => None,
        }
    }

    #[test]
    fn with_the_link_down_the_whole_recording_airs_at_its_slot() {
        let mut c = CachedAiring::new();
        c.add(ready("tin", 5, 60_000));
        assert!(matches!(
            c.decide(START - 20, false, StreamSlot::Quiet),
            Airing::Stream
        ));
        let mut aired = Vec::new();
        for slot in 0..8 {
            let a = c.decide(START + slot * 20, false, StreamSlot::Quiet);
            if let Airing::Cached { starts, ends, .. } = &a {
                assert_eq!(*starts, slot == 0);
                assert_eq!(*ends, slot == 4);
            }
            aired.push(index(&a));
        }
        assert_eq!(
            aired,
            vec![
                Some(0),
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                None,
                None,
                None
            ]
        );
        // Never twice.
        assert!(matches!(
            c.decide(START + 200, false, StreamSlot::Quiet),
            Airing::Stream
        ));
    }

    #[test]
    fn taken_up_late_it_starts_at_the_slot_position_and_is_cut_at_the_slot_end() {
        let mut c = CachedAiring::new();
        // 100 frames of recording in a 1 s (50 frame) slot, taken up 400 ms in.
        c.add(ready("tin", 100, 1_000));
        let mut aired = Vec::new();
        for slot in 20..60 {
            aired.extend(index(&c.decide(
                START + slot * 20,
                false,
                StreamSlot::Quiet,
            )));
        }
        assert_eq!(aired, (20..50).collect::<Vec<u64>>());
    }

    #[test]
    fn with_the_link_up_the_stream_wins_and_the_cache_waits_for_the_grace() {
        let mut c = CachedAiring::new();
        c.add(ready("tin", 500, 60_000));
        // The stream starts the programme 300 ms in: the cache never airs it.
        for slot in 0..15 {
            assert!(matches!(
                c.decide(START + slot * 20, true, StreamSlot::Quiet),
                Airing::Stream
            ));
        }
        let streamed = StreamSlot::Playing(Some(("Bản tin", ProgrammeLevel::Normal)));
        assert!(matches!(
            c.decide(START + 300, true, streamed),
            Airing::Stream
        ));
        // The stream then goes quiet (the link is dying): after the grace the cache takes
        // over where the slot is.
        assert!(matches!(
            c.decide(START + 300 + STREAM_GRACE_MS - 20, true, StreamSlot::Quiet),
            Airing::Stream
        ));
        assert_eq!(
            index(&c.decide(START + 300 + STREAM_GRACE_MS, true, StreamSlot::Quiet)),
            Some((300 + STREAM_GRACE_MS) / 20)
        );

        // A short recording the stream played to its end is past its end: not aired again.
        let mut c = CachedAiring::new();
        c.add(ready("tin", 10, 60_000));
        for slot in 10..21 {
            c.decide(START + slot * 20, true, streamed);
        }
        for slot in 21..400 {
            assert!(matches!(
                c.decide(START + slot * 20, true, StreamSlot::Quiet),
                Airing::Stream
            ));
        }

        // A link that is up but silent: after the grace, the cache airs at the slot position.
        let mut c = CachedAiring::new();
        c.add(ready("tin", 500, 60_000));
        assert!(matches!(
            c.decide(START + STREAM_GRACE_MS - 20, true, StreamSlot::Quiet),
            Airing::Stream
        ));
        assert_eq!(
            index(&c.decide(START + STREAM_GRACE_MS, true, StreamSlot::Quiet)),
            Some(STREAM_GRACE_MS / 20)
        );
    }

    #[test]
    fn the_same_programme_on_a_returning_link_is_dropped_another_one_wins() {
        let same = StreamSlot::Playing(Some(("Bản tin", ProgrammeLevel::Normal)));
        let mut c = CachedAiring::new();
        c.add(ready("tin", 5, 60_000));
        assert_eq!(index(&c.decide(START, false, StreamSlot::Quiet)), Some(0));
        // The link is back and streams the same programme: the cache goes on.
        assert_eq!(index(&c.decide(START + 20, true, same)), Some(1));
        for slot in 2..5 {
            assert!(index(&c.decide(START + slot * 20, true, same)).is_some());
        }
        // The stream's tail of it is silence, not a second airing.
        assert!(matches!(
            c.decide(START + 100, true, same),
            Airing::Suppressed
        ));
        assert!(matches!(
            c.decide(START + 120, true, StreamSlot::Quiet),
            Airing::Stream
        ));

        let mut c = CachedAiring::new();
        c.add(ready("tin", 50, 60_000));
        assert_eq!(index(&c.decide(START, false, StreamSlot::Quiet)), Some(0));
        let emergency = StreamSlot::Playing(Some(("Bão số 9", ProgrammeLevel::Emergency)));
        assert!(matches!(
            c.decide(START + 20, true, emergency),
            Airing::Stream
        ));
        assert!(!c.airing());
    }

    #[test]
    fn an_airing_the_schedule_dropped_stops_and_is_not_taken_up() {
        let mut c = CachedAiring::new();
        c.add(ready("tin", 50, 60_000));
        assert_eq!(index(&c.decide(START, false, StreamSlot::Quiet)), Some(0));
        c.retain(|_| false);
        assert!(!c.airing());
        assert!(matches!(
            c.decide(START + 20, false, StreamSlot::Quiet),
            Airing::Stream
        ));
        assert!(!c.is_ready("tin", START));
    }
}
