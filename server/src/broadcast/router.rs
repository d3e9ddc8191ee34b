//! The router: every 20 ms tick, one frame from each playback goes to the stations switched to it.
//!
//! Switching a station is a routing change between two ticks, so it always lands on a frame
//! boundary; each station's output renumbers the frames into its own unbroken stream
//! (`station_output.rs`). The router is plain data driven by `tick()`: the clock that calls it
//! lives in `on_air.rs`, so tests drive it without waiting.
//!
//! A playback added with [`Router::add_driven`] (the live studio's RTP input, which releases
//! frames on its own real-time clock) is left out of the tick: each of its frames is routed by
//! [`Router::tick_one`] as soon as it is released, stamped with its own instant, instead of
//! waiting up to 20 ms for the next tick. Its stamps are on its own 20 ms grid, not the tick's,
//! so where a station passes from one grid to the other the router keeps the stamps apart by
//! more than a slot and a half ([`Router::tick_one`] and [`Router::tick`] skip the frames that
//! would come closer): the agent then sees a gap and re-phases on the new grid exactly, rather
//! than slewing towards it for seconds (`relay-agent/src/playout.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::broadcast::playback::{Next, Playback};
use crate::broadcast::station_output::StationOutput;
use crate::pipeline::PipelineError;

/// Handle of a playback inside the router.
pub type PlaybackId = u64;

/// One 20 ms slot, in µs of media time.
const SLOT_US: u64 = 20_000;

/// How far a frame's stamp may be from one slot after the station's last frame and still
/// count as the same grid (stamps are exact to the µs; this only absorbs rounding).
const SAME_GRID_US: u64 = 500;

/// A frame on another grid must be stamped at least this long after the station's last one:
/// past the agents' half-slot gap threshold (`relay-agent/src/playout.rs`, `gap_before`).
const REPHASE_US: u64 = SLOT_US + SLOT_US / 2;

/// Whether a frame stamped `at_us` may follow a station's last frame stamped `last_us`: the
/// next slot of the same grid, or a gap the agent re-phases on. Anything else would overlap
/// the last frame or shift the grid by less than the agent notices as a gap.
fn may_follow(last_us: Option<u64>, at_us: u64) -> bool {
    let Some(last) = last_us else {
        return true;
    };
    let next = last.saturating_add(SLOT_US);
    at_us.abs_diff(next) <= SAME_GRID_US || at_us > last.saturating_add(REPHASE_US)
}

/// Something that happened during a tick.
#[derive(Debug)]
pub enum TickEvent {
    /// A playback reached its end (or failed) and was removed; its stations went silent.
    Ended {
        /// The playback.
        id: PlaybackId,
        /// Its programme.
        programme_id: u64,
        /// Frames it produced.
        frames: u64,
        /// Why it ended early, if it did.
        error: Option<PipelineError>,
        /// The stations that were listening to it (now silent).
        stations: Vec<String>,
    },
}

/// A station as the router sees it: kept in one record, so that a tick visits each station once
/// and looks nothing up by name (at 10,000 stations, three lookups by name per station and tick
/// were a seventh of the server's time).
#[derive(Debug)]
struct Station {
    output: Arc<StationOutput>,
    /// The playback it listens to.
    route: Option<PlaybackId>,
    /// The stamp of the last frame it was given.
    last_at: Option<u64>,
}

/// Playbacks and which station listens to which.
#[derive(Debug)]
pub struct Router {
    stations: BTreeMap<String, Station>,
    playbacks: BTreeMap<PlaybackId, Playback>,
    /// Playbacks that [`Router::tick`] leaves out: [`Router::tick_one`] routes their frames.
    driven: BTreeSet<PlaybackId>,
    /// Frames not given to a station because their stamp was too close to its last frame's
    /// (a switch between two grids).
    skipped: u64,
    next_id: PlaybackId,
}

impl Router {
    /// A router over the given station outputs.
    pub fn new(outputs: impl IntoIterator<Item = Arc<StationOutput>>) -> Self {
        Self {
            stations: outputs
                .into_iter()
                .map(|output| {
                    let station = Station {
                        output,
                        route: None,
                        last_at: None,
                    };
                    (station.output.station().to_string(), station)
                })
                .collect(),
            playbacks: BTreeMap::new(),
            driven: BTreeSet::new(),
            skipped: 0,
            next_id: 1,
        }
    }

    /// Adds a playback; it produces frames from the next tick on.
    pub fn add(&mut self, playback: Playback) -> PlaybackId {
        let id = self.next_id;
        self.next_id += 1;
        self.playbacks.insert(id, playback);
        id
    }

    /// Adds a playback that the tick leaves out: each of its frames goes to its stations when
    /// [`Router::tick_one`] is called for it.
    pub fn add_driven(&mut self, playback: Playback) -> PlaybackId {
        let id = self.add(playback);
        self.driven.insert(id);
        id
    }

    /// Frames not given to a station at a switch between two grids, so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Switches `station` to `playback` (None: silence) from the next tick on. Unknown stations or
    /// playbacks are ignored and reported as false.
    pub fn route(&mut self, station: &str, playback: Option<PlaybackId>) -> bool {
        let Some(st) = self.stations.get_mut(station) else {
            return false;
        };
        match playback {
            Some(id) => {
                let Some(p) = self.playbacks.get(&id) else {
                    return false;
                };
                st.output.switch(Some((p.programme_id, &p.name, p.level)));
                st.route = Some(id);
            }
            None => {
                st.output.switch(None);
                st.route = None;
            }
        }
        true
    }

    /// Removes a playback now; its stations go silent.
    pub fn remove(&mut self, id: PlaybackId) -> Option<Playback> {
        for s in self.listening_to(id) {
            self.route(&s, None);
        }
        self.playbacks.remove(&id)
    }

    /// Every station, in id order.
    pub fn stations(&self) -> impl Iterator<Item = &str> {
        self.stations.keys().map(String::as_str)
    }

    /// The stations listening to playback `id`.
    fn listening_to(&self, id: PlaybackId) -> Vec<String> {
        self.stations
            .iter()
            .filter(|(_, st)| st.route == Some(id))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// The playback a station listens to.
    pub fn route_of(&self, station: &str) -> Option<PlaybackId> {
        self.stations.get(station).and_then(|st| st.route)
    }

    /// Stations listening to a playback.
    pub fn listeners(&self, id: PlaybackId) -> usize {
        self.stations
            .values()
            .filter(|st| st.route == Some(id))
            .count()
    }

    /// Whether a playback is still running.
    pub fn contains(&self, id: PlaybackId) -> bool {
        self.playbacks.contains_key(&id)
    }

    /// One 20 ms tick: a frame from every playback (but the driven ones) to every station
    /// routed to it, stamped with the tick's media time `at_us` (`media_clock.rs`).
    pub fn tick(&mut self, at_us: u64) -> Vec<TickEvent> {
        let ids: Vec<PlaybackId> = self
            .playbacks
            .keys()
            .filter(|id| !self.driven.contains(id))
            .copied()
            .collect();
        self.route_frames(&ids, at_us)
    }

    /// One frame of the driven playback `id` to the stations routed to it, stamped `at_us`.
    pub fn tick_one(&mut self, id: PlaybackId, at_us: u64) -> Vec<TickEvent> {
        if !self.playbacks.contains_key(&id) {
            return Vec::new();
        }
        self.route_frames(&[id], at_us)
    }

    fn route_frames(&mut self, ids: &[PlaybackId], at_us: u64) -> Vec<TickEvent> {
        let mut events = Vec::new();
        let mut ended = Vec::new();
        let mut frames = BTreeMap::new();
        for id in ids {
            let Some(playback) = self.playbacks.get_mut(id) else {
                continue;
            };
            match playback.next_frame() {
                Next::Frame(payload) => {
                    frames.insert(*id, payload);
                }
                Next::Underrun => {}
                Next::Ended(error) => ended.push((*id, error)),
            }
        }
        let mut skipped = 0;
        for st in self.stations.values_mut() {
            let Some(payload) = st.route.and_then(|id| frames.get(&id)) else {
                continue;
            };
            if !may_follow(st.last_at, at_us) {
                skipped += 1;
                continue;
            }
            st.last_at = Some(at_us);
            st.output.push_frame(payload.clone(), at_us);
        }
        self.skipped += skipped;
        for (id, error) in ended {
            let stations = self.listening_to(id);
            if let Some(p) = self.remove(id) {
                events.push(TickEvent::Ended {
                    id,
                    programme_id: p.programme_id,
                    frames: p.frames_produced(),
                    error,
                    stations,
                });
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::EncodedFrame;
    use bytes::Bytes;
    use radio_proto::{FrameReader, Message};

    fn frames(tag: u8, n: usize) -> Vec<EncodedFrame> {
        (0..n)
            .map(|i| EncodedFrame {
                payload: Bytes::from(vec![tag, i as u8]),
                pcm_peak: 0.5,
            })
            .collect()
    }

    async fn received(out: &StationOutput) -> Vec<Message> {
        let mut reader = FrameReader::new();
        for (b, _) in out.next_batch().await {
            reader.push(&b);
        }
        let mut v = Vec::new();
        while let Ok(Some(m)) = reader.next_message() {
            v.push(m);
        }
        v
    }

    #[tokio::test]
    async fn an_interruption_switches_only_its_targets_at_frame_boundaries() {
        let a = Arc::new(StationOutput::new("a", 100));
        let b = Arc::new(StationOutput::new("b", 100));
        a.attach();
        b.attach();
        let mut r = Router::new([a.clone(), b.clone()]);
        let programme = r.add(Playback::frames(1, "programme", frames(b'P', 10)));
        r.route("a", Some(programme));
        r.route("b", Some(programme));
        r.tick(0);
        r.tick(20_000);
        let emergency = r.add(Playback::frames(2, "khẩn cấp", frames(b'E', 2)));
        r.route("a", Some(emergency));
        r.tick(40_000);
        r.tick(60_000);
        let events = r.tick(80_000); // the emergency has ended
        assert!(
            matches!(&events[..], [TickEvent::Ended { id, stations, .. }] if *id == emergency && stations == &["a".to_string()])
        );
        assert_eq!(r.route_of("a"), None, "an ended playback leaves silence");
        r.route("a", Some(programme));
        r.tick(100_000);

        let payloads = |msgs: &[Message]| -> Vec<Vec<u8>> {
            msgs.iter()
                .filter_map(|m| match m {
                    Message::AudioFrame(f) => Some(f.payload.to_vec()),
                    _ => None,
                })
                .collect()
        };
        let got_a = received(&a).await;
        let got_b = received(&b).await;
        assert_eq!(
            payloads(&got_a),
            vec![
                vec![b'P', 0],
                vec![b'P', 1],
                vec![b'E', 0],
                vec![b'E', 1],
                vec![b'P', 5]
            ]
        );
        assert_eq!(
            payloads(&got_b),
            (0..6u8).map(|i| vec![b'P', i]).collect::<Vec<_>>(),
            "the untargeted station heard the programme throughout"
        );
        let times = |msgs: &[Message]| -> Vec<u64> {
            msgs.iter()
                .filter_map(|m| match m {
                    Message::AudioFrame(f) => Some(f.server_time_us),
                    _ => None,
                })
                .collect()
        };
        // Each frame carries its tick's media time, the same at every station; the silent
        // tick (80 ms) left a gap in station a's times, not in its sequence numbers.
        assert_eq!(times(&got_a), vec![0, 20_000, 40_000, 60_000, 100_000]);
        assert_eq!(
            times(&got_b),
            vec![0, 20_000, 40_000, 60_000, 80_000, 100_000]
        );
    }

    #[tokio::test]
    async fn a_driven_playback_goes_out_when_asked_and_grids_are_kept_a_gap_apart() {
        let a = Arc::new(StationOutput::new("a", 100));
        a.attach();
        let mut r = Router::new([a.clone()]);
        let programme = r.add(Playback::frames(1, "programme", frames(b'P', 10)));
        let live = r.add_driven(Playback::frames(2, "live", frames(b'L', 10)));
        r.route("a", Some(programme));
        r.tick(0);
        r.tick(20_000);
        // Live on a grid 5 ms after the tick's: its first frame would come 25 ms after the
        // programme's last, less than a slot and a half, so it is not given to the station.
        r.route("a", Some(live));
        r.tick_one(live, 45_000);
        r.tick_one(live, 65_000);
        // The tick leaves the driven playback alone.
        r.tick(60_000);
        r.tick_one(live, 85_000);
        // Back to the tick's grid: 15 ms after the last live frame would overlap it, 35 ms is
        // a gap the agent re-phases on.
        r.route("a", Some(programme));
        r.tick(100_000);
        r.tick(120_000);
        assert_eq!(r.skipped(), 2);
        let got: Vec<(Vec<u8>, u64)> = received(&a)
            .await
            .into_iter()
            .filter_map(|m| match m {
                Message::AudioFrame(f) => Some((f.payload.to_vec(), f.server_time_us)),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (vec![b'P', 0], 0),
                (vec![b'P', 1], 20_000),
                (vec![b'L', 1], 65_000),
                (vec![b'L', 2], 85_000),
                (vec![b'P', 4], 120_000),
            ]
        );
    }

    #[test]
    fn unknown_stations_and_playbacks_are_refused() {
        let mut r = Router::new([Arc::new(StationOutput::new("a", 10))]);
        assert!(!r.route("nowhere", None));
        assert!(!r.route("a", Some(99)));
    }
}
