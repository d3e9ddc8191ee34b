//! The jitter buffer: reorders frames by sequence number and hands the playout clock the frame for
//! each slot.
//!
//! It is sans-IO (no clock, no thread): the playout decides *when* a slot is due, the buffer only
//! answers *what* is there for it. Frames that arrive after their slot was played are late and
//! dropped, never played out of order; when the buffer is full the oldest frame goes first, because
//! live audio is worth less the older it gets.

use std::collections::BTreeMap;

/// What happened to a frame offered to [`JitterBuffer::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Stored for its slot.
    Accepted,
    /// A frame with this sequence number is already buffered.
    Duplicate,
    /// Its slot has already been played (or skipped); dropped.
    Late,
    /// Stored, but the buffer was full and the oldest frame (this sequence) was dropped.
    Overflow {
        /// Sequence number of the frame that was dropped.
        dropped: u64,
    },
}

/// Frames keyed by sequence number, with the boundary below which frames are late.
#[derive(Debug)]
pub struct JitterBuffer<T> {
    frames: BTreeMap<u64, T>,
    capacity: usize,
    /// Slots below this have been played or skipped.
    played_up_to: Option<u64>,
}

impl<T> JitterBuffer<T> {
    /// A buffer holding at most `capacity` frames (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            frames: BTreeMap::new(),
            capacity: capacity.max(1),
            played_up_to: None,
        }
    }

    /// Offers a received frame.
    pub fn insert(&mut self, sequence: u64, frame: T) -> Insert {
        if self.played_up_to.is_some_and(|next| sequence < next) {
            return Insert::Late;
        }
        if self.frames.contains_key(&sequence) {
            return Insert::Duplicate;
        }
        self.frames.insert(sequence, frame);
        if self.frames.len() > self.capacity {
            if let Some((dropped, _)) = self.frames.pop_first() {
                return Insert::Overflow { dropped };
            }
        }
        Insert::Accepted
    }

    /// Takes the frame for slot `sequence`, if it arrived. Every older frame is discarded and any
    /// later arrival for `sequence` or before is late from now on.
    pub fn take(&mut self, sequence: u64) -> Option<T> {
        // Frames older than the slot can only be there if the playout skipped ahead (re-anchoring);
        // they are stale and must not be played later.
        while let Some(entry) = self.frames.first_entry() {
            if *entry.key() < sequence {
                entry.remove();
            } else {
                break;
            }
        }
        self.played_up_to = Some(sequence.saturating_add(1));
        self.frames.remove(&sequence)
    }

    /// The oldest buffered frame.
    pub fn first(&self) -> Option<(u64, &T)> {
        self.frames.first_key_value().map(|(k, v)| (*k, v))
    }

    /// The frame buffered for slot `sequence`.
    pub fn get(&self, sequence: u64) -> Option<&T> {
        self.frames.get(&sequence)
    }

    /// Buffered frames, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.frames.iter().map(|(k, v)| (*k, v))
    }

    /// Drops every frame before `sequence` (their slots are skipped); returns how many.
    pub fn discard_before(&mut self, sequence: u64) -> usize {
        let keep = self.frames.split_off(&sequence);
        let dropped = std::mem::replace(&mut self.frames, keep).len();
        if dropped > 0 {
            self.played_up_to = Some(self.played_up_to.map_or(sequence, |p| p.max(sequence)));
        }
        dropped
    }

    /// Whether any frame at or after `sequence` is buffered.
    pub fn has_at_or_after(&self, sequence: u64) -> bool {
        self.frames.range(sequence..).next().is_some()
    }

    /// Number of buffered frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Forgets the played boundary so that the next frames start a new run (after a reconnect the
    /// server may have restarted its sequence numbers).
    pub fn reset(&mut self) {
        self.frames.clear();
        self.played_up_to = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reorders_and_drops_late_and_duplicates() {
        let mut jb = JitterBuffer::new(10);
        assert_eq!(jb.insert(2, "c"), Insert::Accepted);
        assert_eq!(jb.insert(0, "a"), Insert::Accepted);
        assert_eq!(jb.insert(1, "b"), Insert::Accepted);
        assert_eq!(jb.insert(1, "b"), Insert::Duplicate);
        assert_eq!(jb.take(0), Some("a"));
        assert_eq!(jb.insert(0, "a"), Insert::Late);
        assert_eq!(jb.take(1), Some("b"));
        assert_eq!(jb.take(2), Some("c"));
        assert_eq!(jb.take(3), None);
        assert_eq!(jb.insert(3, "d"), Insert::Late);
    }

    #[test]
    fn overflow_drops_the_oldest() {
        let mut jb = JitterBuffer::new(2);
        jb.insert(5, ());
        jb.insert(6, ());
        assert_eq!(jb.insert(7, ()), Insert::Overflow { dropped: 5 });
        assert_eq!(jb.first().map(|(s, _)| s), Some(6));
    }

    #[test]
    fn skipping_ahead_discards_stale_frames() {
        let mut jb = JitterBuffer::new(10);
        for s in 0..5 {
            jb.insert(s, s);
        }
        assert_eq!(jb.take(3), Some(3));
        assert_eq!(jb.len(), 1);
        assert!(jb.has_at_or_after(4));
        assert!(!jb.has_at_or_after(5));
    }

    #[test]
    fn discarding_skips_the_slots_and_makes_their_frames_late() {
        let mut jb = JitterBuffer::new(10);
        for s in [2, 3, 5, 6] {
            jb.insert(s, s);
        }
        assert_eq!(jb.discard_before(5), 2);
        assert_eq!(jb.iter().map(|(s, _)| s).collect::<Vec<_>>(), vec![5, 6]);
        assert_eq!(jb.get(6), Some(&6));
        assert_eq!(jb.insert(4, 4), Insert::Late);
        assert_eq!(jb.discard_before(5), 0);
        assert_eq!(jb.take(5), Some(5));
    }

    proptest! {
        /// Whatever the arrival order (with duplicates), taking slots in order yields every frame
        /// exactly once and in sequence.
        #[test]
        fn any_arrival_order_plays_in_sequence(order in Just((0u64..200).collect::<Vec<_>>()).prop_shuffle(), dups in proptest::collection::vec(0u64..200, 0..50)) {
            let mut jb = JitterBuffer::new(1000);
            for s in order.iter().chain(dups.iter()) {
                jb.insert(*s, *s);
            }
            for s in 0..200 {
                prop_assert_eq!(jb.take(s), Some(s));
            }
            prop_assert!(jb.is_empty());
        }
    }
}
