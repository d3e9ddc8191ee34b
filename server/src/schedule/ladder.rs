//! The priority ladder: what each station airs, and what resumes when.
//!
//! A sans-IO state machine. The runtime tells it what happened (commands, `item_finished`) and
//! what time it is; [`Ladder::advance`] answers with the [`Change`]s to apply, and
//! [`Ladder::next_wakeup`] says when to call it again. The ladder never starts anything by
//! itself between two calls, so a test drives it on a virtual clock exactly as the runtime does.
//!
//! Per station, from the top: khẩn cấp (emergency) > trực tiếp (live) > ưu tiên (priority) >
//! thường (normal), with live above emergency when configured. Inside a level a timed entry
//! comes before bulletins; among emergencies and among lives the newest wins; among bulletins
//! one already started comes first, then the oldest submitted. Two exceptions keep an item on
//! air although something ranks higher: a normal *file* item is not cut for a priority
//! *bulletin* (it waits for the file's end), and a bulletin is not cut for another bulletin of
//! its level.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use radio_config::District;

use super::scheduler::{Occurrence, Scheduler};
use super::validate::{check_slug, check_source, resolve_nonempty, validate_bulletin};
use super::{Bulletin, Level, Owner, ScheduleError, SourceSpec, Targets};

/// How the ladder ranks live broadcasts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LadderConfig {
    /// Off by default: an emergency warning must reach people even during a live broadcast.
    /// On for districts where the live studio is where emergencies are announced from.
    pub live_above_emergency: bool,
}

impl LadderConfig {
    /// Higher airs first.
    pub fn rank(&self, tier: Tier) -> u8 {
        match (tier, self.live_above_emergency) {
            (Tier::Normal, _) => 0,
            (Tier::Priority, _) => 1,
            (Tier::Live, false) | (Tier::Emergency, true) => 2,
            (Tier::Emergency, false) | (Tier::Live, true) => 3,
        }
    }
}

/// The rungs of the ladder. Not `Ord`: where live sits depends on [`LadderConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Normal,
    Priority,
    Live,
    Emergency,
}

impl From<Level> for Tier {
    fn from(level: Level) -> Self {
        match level {
            Level::Normal => Tier::Normal,
            Level::Priority => Tier::Priority,
            Level::Emergency => Tier::Emergency,
        }
    }
}

/// What is (or was) on air.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemRef {
    /// One occurrence of a timed entry: the same entry tomorrow is a different item.
    Entry {
        entry_id: String,
        occurrence_start: Timestamp,
    },
    Bulletin {
        id: String,
    },
    Live {
        id: String,
    },
    Emergency {
        id: String,
    },
}

impl fmt::Display for ItemRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemRef::Entry {
                entry_id,
                occurrence_start,
            } => write!(f, "entry `{entry_id}` (slot starting {occurrence_start})"),
            ItemRef::Bulletin { id } => write!(f, "bulletin `{id}`"),
            ItemRef::Live { id } => write!(f, "live `{id}`"),
            ItemRef::Emergency { id } => write!(f, "emergency `{id}`"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Reached its end: the file finished, the slot's end time came, or the operator stopped
    /// the live broadcast or emergency.
    Ended,
    /// Something higher took the station; the item comes back when that ends (a timed entry
    /// only if its slot is still running).
    Interrupted { by: ItemRef },
    /// The bulletin was withdrawn.
    Cancelled,
}

/// What the runtime must do on a station. Within one `advance`, a station's `Stop` comes before
/// its `Start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Play `item` (its source is in [`Ladder::on_air`]) from `offset`: the position to resume a
    /// file at, zero for streams, which rejoin at their live point.
    Start {
        station: String,
        item: ItemRef,
        offset: SignedDuration,
    },
    Stop {
        station: String,
        item: ItemRef,
        reason: StopReason,
    },
}

/// The item a station is airing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnAir {
    pub item: ItemRef,
    pub tier: Tier,
    pub source: SourceSpec,
    /// When this airing began (after an interruption: when it resumed).
    pub since: Timestamp,
    /// Position in the item at `since`.
    pub offset: SignedDuration,
    /// Known end: the slot's end for an entry, the file's end for a bulletin with a duration.
    pub until: Option<Timestamp>,
}

impl OnAir {
    /// How far into the item the station is at `now`.
    pub fn position(&self, now: Timestamp) -> SignedDuration {
        self.offset.saturating_add(elapsed(self.since, now))
    }
}

/// Time between two instants, never negative: `now` values from the runtime may jitter.
fn elapsed(from: Timestamp, to: Timestamp) -> SignedDuration {
    if to > from {
        to.duration_since(from)
    } else {
        SignedDuration::ZERO
    }
}

/// The two kinds of item started and stopped by hand.
#[derive(Debug, Clone, Copy)]
enum ManualKind {
    Emergency,
    Live,
}

impl ManualKind {
    fn owner(self, id: &str) -> Owner {
        match self {
            ManualKind::Emergency => Owner::Emergency(id.to_owned()),
            ManualKind::Live => Owner::Live(id.to_owned()),
        }
    }

    fn item(self, id: &str) -> ItemRef {
        match self {
            ManualKind::Emergency => ItemRef::Emergency { id: id.to_owned() },
            ManualKind::Live => ItemRef::Live { id: id.to_owned() },
        }
    }

    fn what(self) -> &'static str {
        match self {
            ManualKind::Emergency => "emergency",
            ManualKind::Live => "live broadcast",
        }
    }
}

/// An emergency that is running, as [`Ladder::emergencies`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningEmergency {
    pub id: String,
    pub source: SourceSpec,
    /// As given when it started.
    pub targets: Targets,
    /// The stations those targets are, in the district's order.
    pub stations: Vec<String>,
    pub started: Timestamp,
}

/// An emergency or live broadcast, started and stopped by hand.
#[derive(Debug, Clone)]
struct Manual {
    source: SourceSpec,
    /// As given, for status pages ("all" reads better than 22 ids).
    targets: Targets,
    stations: BTreeSet<String>,
    started: Timestamp,
    seq: u64,
}

#[derive(Debug, Clone)]
struct Queued {
    bulletin: Bulletin,
    stations: BTreeSet<String>,
    /// Stations whose operator accepted a normal bulletin, each with the instant it may air
    /// there from (`None`: at once); priority ones need no acceptance.
    accepted: BTreeMap<String, Option<Timestamp>>,
    /// Stations whose operator declined a normal bulletin, with the reason given. Never also
    /// in `accepted`: the last answer counts.
    declined: BTreeMap<String, Option<String>>,
    /// Stations where it has aired to the end.
    done: BTreeSet<String>,
    seq: u64,
}

impl Queued {
    fn wanted_at(&self, station: &str, now: Timestamp) -> bool {
        self.stations.contains(station)
            && !self.done.contains(station)
            && match self.bulletin.level {
                Level::Normal => self
                    .accepted
                    .get(station)
                    .is_some_and(|from| from.is_none_or(|from| from <= now)),
                Level::Priority | Level::Emergency => true,
            }
    }
}

/// Where a queued bulletin stands at one station, as [`Ladder::bulletins`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulletinState {
    /// A normal bulletin the station's operator has not answered yet.
    Awaiting,
    /// A normal bulletin accepted there; it airs at the first opportunity at or after `from`
    /// (`None`: at once). Also one that started and was interrupted: it resumes there.
    Accepted { from: Option<Timestamp> },
    /// A normal bulletin the station's operator declined; it never airs there.
    Declined { reason: Option<String> },
    /// On air there (since it last started or resumed).
    Airing { since: Timestamp },
    /// Aired to its end there.
    Done,
    /// A priority bulletin: it airs there at the next item boundary, without acceptance.
    Queued,
}

/// A queued bulletin and where it stands at each station it targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulletinSnapshot {
    pub bulletin: Bulletin,
    /// Every station it targets, in the district's order.
    pub stations: Vec<(String, BulletinState)>,
}

#[derive(Debug, Clone, Default)]
struct StationState {
    on_air: Option<OnAir>,
    /// Interrupted items and how long they had played here. A bulletin in here has started,
    /// which puts it ahead of its level's queue so that it, not a newer one, resumes.
    played: BTreeMap<ItemRef, SignedDuration>,
    /// Slots whose item ended here before the slot did, kept until the slot's end.
    finished: BTreeMap<ItemRef, Timestamp>,
    /// Why the on-air item stops at the next `advance`, when a command decided it.
    ending: Option<(ItemRef, StopReason)>,
}

/// A station's claim to air something now.
#[derive(Debug, Clone)]
struct Candidate {
    item: ItemRef,
    tier: Tier,
    /// Larger wins: (rank of tier, class inside the tier, then two tie-breakers).
    key: (u8, u8, i128, i128),
    source: SourceSpec,
    /// Slot start of an entry.
    slot_start: Option<Timestamp>,
    /// Slot end of an entry.
    slot_end: Option<Timestamp>,
    /// Total airtime of a bulletin with a known duration.
    duration: Option<SignedDuration>,
}

/// Where an entry starts that this ladder has not aired yet: from its beginning, unless its slot
/// began before the server (re)started. Then it had been on air — at the stations, and from the
/// agents' prefetch caches through a server outage — so the server joins it at its live point
/// instead of replaying what the loudspeakers already played.
fn joined_late(
    candidate: &Candidate,
    started: Option<Timestamp>,
    now: Timestamp,
) -> SignedDuration {
    match (candidate.slot_start, started) {
        (Some(slot_start), Some(started)) if slot_start < started => {
            now.duration_since(slot_start).max(SignedDuration::ZERO)
        }
        _ => SignedDuration::ZERO,
    }
}

/// Inside a tier: timed entries, then started bulletins, then waiting ones.
const CLASS_ENTRY: u8 = 2;
const CLASS_STARTED: u8 = 1;
const CLASS_WAITING: u8 = 0;

/// The arbiter of all stations of a district.
#[derive(Debug, Clone)]
pub struct Ladder {
    scheduler: Scheduler,
    district: District,
    config: LadderConfig,
    stations: BTreeMap<String, StationState>,
    emergencies: BTreeMap<String, Manual>,
    lives: BTreeMap<String, Manual>,
    bulletins: BTreeMap<String, Queued>,
    /// Command order: breaks ties between items given the same instant.
    seq: u64,
    /// Latest `now` seen; earlier values are raised to it so positions never run backwards.
    clock: Option<Timestamp>,
    /// The first `now` seen: when this server (re)started.
    started: Option<Timestamp>,
}

impl Ladder {
    pub fn new(scheduler: Scheduler, district: &District, config: LadderConfig) -> Self {
        let stations = district
            .stations
            .iter()
            .map(|s| (s.id.clone(), StationState::default()))
            .collect();
        Ladder {
            scheduler,
            district: district.clone(),
            config,
            stations,
            emergencies: BTreeMap::new(),
            lives: BTreeMap::new(),
            bulletins: BTreeMap::new(),
            seq: 0,
            clock: None,
            started: None,
        }
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Replaces the schedule while running (entries added, changed or removed). Entries that are
    /// no longer in it stop at the next [`Ladder::advance`]; bulletins, live broadcasts and
    /// emergencies are untouched.
    pub fn replace_scheduler(&mut self, scheduler: Scheduler) {
        self.scheduler = scheduler;
    }

    pub fn config(&self) -> LadderConfig {
        self.config
    }

    pub fn on_air(&self, station: &str) -> Option<&OnAir> {
        self.stations.get(station)?.on_air.as_ref()
    }

    /// Normal bulletins targeting `station` that its operator has neither accepted nor
    /// declined yet, oldest first.
    pub fn awaiting_acceptance(&self, station: &str) -> Vec<&Bulletin> {
        let mut waiting: Vec<&Queued> = self
            .bulletins
            .values()
            .filter(|q| {
                q.bulletin.level == Level::Normal
                    && q.stations.contains(station)
                    && !q.accepted.contains_key(station)
                    && !q.declined.contains_key(station)
            })
            .collect();
        waiting.sort_by_key(|q| (q.bulletin.submitted, q.seq));
        waiting.into_iter().map(|q| &q.bulletin).collect()
    }

    /// Every queued bulletin, oldest first, with its state at each station it targets. A
    /// bulletin leaves the queue once it has aired to its end at all of them, or is cancelled.
    pub fn bulletins(&self) -> Vec<BulletinSnapshot> {
        let mut queued: Vec<(&String, &Queued)> = self.bulletins.iter().collect();
        queued.sort_by_key(|(_, q)| (q.bulletin.submitted, q.seq));
        queued
            .into_iter()
            .map(|(id, q)| {
                let item = ItemRef::Bulletin { id: id.clone() };
                let stations = self
                    .district
                    .stations
                    .iter()
                    .filter(|s| q.stations.contains(&s.id))
                    .map(|s| {
                        let on_air = self.on_air(&s.id).filter(|o| o.item == item);
                        let state = if q.done.contains(&s.id) {
                            BulletinState::Done
                        } else if let Some(on_air) = on_air {
                            BulletinState::Airing {
                                since: on_air.since,
                            }
                        } else if q.bulletin.level != Level::Normal {
                            BulletinState::Queued
                        } else if let Some(from) = q.accepted.get(&s.id) {
                            BulletinState::Accepted { from: *from }
                        } else if let Some(reason) = q.declined.get(&s.id) {
                            BulletinState::Declined {
                                reason: reason.clone(),
                            }
                        } else {
                            BulletinState::Awaiting
                        };
                        (s.id.clone(), state)
                    })
                    .collect();
                BulletinSnapshot {
                    bulletin: q.bulletin.clone(),
                    stations,
                }
            })
            .collect()
    }

    /// The bulletins that have not aired to the end at every station they target (including
    /// normal ones still waiting for a station's acceptance), oldest first.
    pub fn pending_bulletins(&self) -> Vec<&Bulletin> {
        let mut pending: Vec<&Queued> = self
            .bulletins
            .values()
            .filter(|q| !q.stations.is_subset(&q.done))
            .collect();
        pending.sort_by_key(|q| (q.bulletin.submitted, q.seq));
        pending.into_iter().map(|q| &q.bulletin).collect()
    }

    /// Starts an emergency on its target stations at the next `advance`; it interrupts
    /// everything there (except live, if configured so) until [`Ladder::stop_emergency`].
    pub fn start_emergency(
        &mut self,
        now: Timestamp,
        id: &str,
        source: SourceSpec,
        targets: &Targets,
    ) -> Result<(), ScheduleError> {
        self.start_manual(now, ManualKind::Emergency, id, source, targets)
    }

    pub fn stop_emergency(&mut self, now: Timestamp, id: &str) -> Result<(), ScheduleError> {
        self.stop_manual(now, ManualKind::Emergency, id)
    }

    /// The emergencies started and not stopped, oldest first — also one waiting under a newer
    /// emergency at all its stations, which resumes when that one stops.
    pub fn emergencies(&self) -> Vec<RunningEmergency> {
        let mut running: Vec<(&String, &Manual)> = self.emergencies.iter().collect();
        running.sort_by_key(|(_, m)| (m.started, m.seq));
        running
            .into_iter()
            .map(|(id, m)| RunningEmergency {
                id: id.clone(),
                source: m.source.clone(),
                targets: m.targets.clone(),
                stations: self
                    .district
                    .stations
                    .iter()
                    .filter(|s| m.stations.contains(&s.id))
                    .map(|s| s.id.clone())
                    .collect(),
                started: m.started,
            })
            .collect()
    }

    /// Puts the live input on air at the target stations (above priority, below emergency
    /// unless configured otherwise) until [`Ladder::stop_live`].
    pub fn start_live(
        &mut self,
        now: Timestamp,
        id: &str,
        targets: &Targets,
    ) -> Result<(), ScheduleError> {
        self.start_manual(now, ManualKind::Live, id, SourceSpec::Live, targets)
    }

    pub fn stop_live(&mut self, now: Timestamp, id: &str) -> Result<(), ScheduleError> {
        self.stop_manual(now, ManualKind::Live, id)
    }

    /// Emergencies and live broadcasts are started and stopped by hand, the same way; only
    /// their table, owner and item differ.
    fn start_manual(
        &mut self,
        now: Timestamp,
        kind: ManualKind,
        id: &str,
        source: SourceSpec,
        targets: &Targets,
    ) -> Result<(), ScheduleError> {
        let now = self.observe(now);
        let owner = kind.owner(id);
        check_slug(&owner, "id", id)?;
        if self.manuals(kind).contains_key(id) {
            return Err(ScheduleError::AlreadyActive { owner });
        }
        check_source(&owner, &source, &|_| true)?;
        let stations = self.resolve(&owner, targets)?;
        let seq = self.next_seq();
        self.manuals(kind).insert(
            id.to_owned(),
            Manual {
                source,
                targets: targets.clone(),
                stations,
                started: now,
                seq,
            },
        );
        Ok(())
    }

    fn stop_manual(
        &mut self,
        now: Timestamp,
        kind: ManualKind,
        id: &str,
    ) -> Result<(), ScheduleError> {
        self.observe(now);
        if self.manuals(kind).remove(id).is_none() {
            return Err(ScheduleError::NotActive {
                owner: kind.owner(id),
                what: kind.what().to_owned(),
            });
        }
        self.forget(&kind.item(id), StopReason::Ended);
        Ok(())
    }

    fn manuals(&mut self, kind: ManualKind) -> &mut BTreeMap<String, Manual> {
        match kind {
            ManualKind::Emergency => &mut self.emergencies,
            ManualKind::Live => &mut self.lives,
        }
    }

    /// Queues a bulletin. Priority bulletins go to all their stations; normal ones wait for
    /// each station's [`Ladder::accept_bulletin`]. File existence is the caller's check
    /// ([`validate_bulletin`] with a real `file_exists`); here only what is knowable without IO.
    pub fn submit_bulletin(
        &mut self,
        now: Timestamp,
        bulletin: Bulletin,
    ) -> Result<(), ScheduleError> {
        self.observe(now);
        let resolved = validate_bulletin(
            &bulletin,
            &self.district,
            &self.scheduler.schedule().groups,
            &|_| true,
        )?;
        if self.bulletins.contains_key(&bulletin.id) {
            return Err(ScheduleError::AlreadyActive {
                owner: Owner::Bulletin(bulletin.id.clone()),
            });
        }
        let seq = self.next_seq();
        self.bulletins.insert(
            bulletin.id.clone(),
            Queued {
                bulletin,
                stations: resolved.stations,
                accepted: BTreeMap::new(),
                declined: BTreeMap::new(),
                done: BTreeSet::new(),
                seq,
            },
        );
        Ok(())
    }

    /// A station's operator accepts a normal bulletin into the station's programme, to air at
    /// once. Accepting a priority bulletin, or accepting twice, changes nothing.
    pub fn accept_bulletin(
        &mut self,
        now: Timestamp,
        station: &str,
        bulletin_id: &str,
    ) -> Result<(), ScheduleError> {
        self.accept_bulletin_from(now, station, bulletin_id, None)
    }

    /// Accepts a normal bulletin at `station` to air at the first opportunity at or after
    /// `from` (`None`, or an instant already past: at once), by the same rules as any accepted
    /// bulletin. Accepting again replaces the time; accepting after declining changes the
    /// answer. A bulletin that has already started there keeps its place: only a time is
    /// refused then, since it cannot be moved back. A priority bulletin needs no acceptance:
    /// accepting it changes nothing, and a time for it is refused.
    pub fn accept_bulletin_from(
        &mut self,
        now: Timestamp,
        station: &str,
        bulletin_id: &str,
        from: Option<Timestamp>,
    ) -> Result<(), ScheduleError> {
        let now = self.observe(now);
        self.known_station(station)?;
        let owner = Owner::Bulletin(bulletin_id.to_owned());
        let item = ItemRef::Bulletin {
            id: bulletin_id.to_owned(),
        };
        let started = self.stations.get(station).is_some_and(|s| {
            s.played.contains_key(&item) || s.on_air.as_ref().is_some_and(|o| o.item == item)
        });
        let queued = self.targeted(bulletin_id, station)?;
        if queued.bulletin.level != Level::Normal {
            return match from {
                None => Ok(()),
                Some(_) => Err(ScheduleError::NotOffered {
                    owner,
                    level: queued.bulletin.level,
                    vi: "hẹn giờ",
                    en: "given an air time",
                }),
            };
        }
        if queued.done.contains(station) {
            return Ok(());
        }
        let from = from.filter(|from| *from > now);
        if started {
            return match from {
                None => Ok(()),
                Some(_) => Err(ScheduleError::AlreadyStarted {
                    owner,
                    station: station.to_owned(),
                }),
            };
        }
        queued.declined.remove(station);
        queued.accepted.insert(station.to_owned(), from);
        Ok(())
    }

    /// A station's operator declines a normal bulletin: it no longer awaits an answer there
    /// and never airs there (where it is on air, it stops with `Cancelled`). Declining twice
    /// changes nothing but the reason; accepting afterwards changes the answer. A priority
    /// bulletin cannot be declined, nor one that has aired to its end there.
    pub fn decline_bulletin(
        &mut self,
        now: Timestamp,
        station: &str,
        bulletin_id: &str,
        reason: Option<String>,
    ) -> Result<(), ScheduleError> {
        self.observe(now);
        self.known_station(station)?;
        let owner = Owner::Bulletin(bulletin_id.to_owned());
        let queued = self.targeted(bulletin_id, station)?;
        if queued.bulletin.level != Level::Normal {
            return Err(ScheduleError::NotOffered {
                owner,
                level: queued.bulletin.level,
                vi: "từ chối",
                en: "declined",
            });
        }
        if queued.done.contains(station) {
            return Err(ScheduleError::AlreadyAired {
                owner,
                station: station.to_owned(),
            });
        }
        queued.accepted.remove(station);
        let kept = queued.declined.remove(station).flatten();
        queued.declined.insert(station.to_owned(), reason.or(kept));
        let item = ItemRef::Bulletin {
            id: bulletin_id.to_owned(),
        };
        if let Some(state) = self.stations.get_mut(station) {
            // The operator changed their mind after it started: it does not resume either.
            state.played.remove(&item);
            if state.on_air.as_ref().is_some_and(|o| o.item == item) {
                state.ending = Some((item, StopReason::Cancelled));
            }
        }
        Ok(())
    }

    /// Queued bulletin `bulletin_id`, if it targets `station`.
    fn targeted(&mut self, bulletin_id: &str, station: &str) -> Result<&mut Queued, ScheduleError> {
        let owner = || Owner::Bulletin(bulletin_id.to_owned());
        let Some(queued) = self.bulletins.get_mut(bulletin_id) else {
            return Err(ScheduleError::NotActive {
                owner: owner(),
                what: "queued bulletin".to_owned(),
            });
        };
        if !queued.stations.contains(station) {
            return Err(ScheduleError::NotTargeted {
                owner: owner(),
                station: station.to_owned(),
            });
        }
        Ok(queued)
    }

    /// Withdraws a bulletin everywhere; stations airing it stop with `Cancelled`.
    pub fn cancel_bulletin(
        &mut self,
        now: Timestamp,
        bulletin_id: &str,
    ) -> Result<(), ScheduleError> {
        self.observe(now);
        if self.bulletins.remove(bulletin_id).is_none() {
            return Err(ScheduleError::NotActive {
                owner: Owner::Bulletin(bulletin_id.to_owned()),
                what: "queued bulletin".to_owned(),
            });
        }
        self.forget(
            &ItemRef::Bulletin {
                id: bulletin_id.to_owned(),
            },
            StopReason::Cancelled,
        );
        Ok(())
    }

    /// The runtime reports that the item on air at `station` reached its end (a file or
    /// playlist ran out; a stream ended for good). A slot's item does not come back within
    /// that slot; a bulletin is done at that station. Live and emergency items end only by
    /// their stop command, so the runtime loops an emergency recording instead.
    pub fn item_finished(
        &mut self,
        now: Timestamp,
        station: &str,
        item: &ItemRef,
    ) -> Result<(), ScheduleError> {
        let now = self.observe(now);
        self.known_station(station)?;
        let on_air_until = match self.stations.get(station).and_then(|s| s.on_air.as_ref()) {
            Some(on_air) if on_air.item == *item => on_air.until,
            _ => {
                return Err(ScheduleError::NotOnAir {
                    station: station.to_owned(),
                    item: item.clone(),
                })
            }
        };
        match item {
            ItemRef::Entry { .. } => {
                if let Some(state) = self.stations.get_mut(station) {
                    state
                        .finished
                        .insert(item.clone(), on_air_until.unwrap_or(now));
                }
            }
            ItemRef::Bulletin { id } => {
                if let Some(queued) = self.bulletins.get_mut(id) {
                    queued.done.insert(station.to_owned());
                }
            }
            ItemRef::Live { .. } | ItemRef::Emergency { .. } => {
                return Err(ScheduleError::CannotFinish {
                    station: station.to_owned(),
                    item: item.clone(),
                })
            }
        }
        if let Some(state) = self.stations.get_mut(station) {
            state.ending = Some((item.clone(), StopReason::Ended));
        }
        Ok(())
    }

    /// Brings every station up to date at `now`. Call at every [`Ladder::next_wakeup`] and
    /// after every command. If called late, the state jumps straight to `now`: items whose
    /// end has passed are stopped, nothing in between is replayed.
    pub fn advance(&mut self, now: Timestamp) -> Vec<Change> {
        let now = self.observe(now);
        let active = self.scheduler.active(now);
        let active_items: BTreeSet<ItemRef> = active.iter().map(entry_item).collect();
        self.expire(now, &active_items);

        let mut changes = Vec::new();
        let ids: Vec<String> = self.stations.keys().cloned().collect();
        for station in ids {
            self.advance_station(now, &station, &active, &mut changes);
        }

        for state in self.stations.values_mut() {
            state.ending = None;
        }
        // A bulletin done at every station it targets is finished for good.
        self.bulletins
            .retain(|_, q| !q.stations.iter().all(|s| q.done.contains(s)));
        changes
    }

    /// When to call [`Ladder::advance`] next: the next slot boundary, the end of a bulletin
    /// of known duration, or the time an accepted bulletin may air from. `None`: nothing will
    /// change until the next command.
    pub fn next_wakeup(&self, now: Timestamp) -> Option<Timestamp> {
        let now = self.clock.map_or(now, |c| c.max(now));
        let mut next = self.scheduler.next_boundary(now);
        // Only future times: one already reached was acted on by the last advance, and
        // returning it would wake the runtime over and over.
        let accepted_from = self.bulletins.values().flat_map(|q| {
            q.accepted
                .iter()
                .filter(|(station, _)| !q.done.contains(*station))
                .filter_map(|(_, from)| *from)
        });
        for from in accepted_from.filter(|from| *from > now) {
            if next.is_none_or(|n| from < n) {
                next = Some(from);
            }
        }
        for state in self.stations.values() {
            if let Some(OnAir {
                item: ItemRef::Bulletin { .. },
                until: Some(until),
                ..
            }) = &state.on_air
            {
                // Already due means the runtime has not advanced yet: wake at once.
                let at = (*until).max(now);
                if next.is_none_or(|n| at < n) {
                    next = Some(at);
                }
            }
        }
        next
    }

    fn observe(&mut self, now: Timestamp) -> Timestamp {
        let now = self.clock.map_or(now, |c| c.max(now));
        self.clock = Some(now);
        self.started.get_or_insert(now);
        now
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn known_station(&self, station: &str) -> Result<(), ScheduleError> {
        if self.stations.contains_key(station) {
            Ok(())
        } else {
            Err(ScheduleError::UnknownStationCommand {
                station: station.to_owned(),
            })
        }
    }

    fn resolve(&self, owner: &Owner, targets: &Targets) -> Result<BTreeSet<String>, ScheduleError> {
        resolve_nonempty(
            owner,
            targets,
            &self.district,
            &self.scheduler.schedule().groups,
        )
        .map(|r| r.stations)
    }

    /// An item that no longer exists: stop it where it is on air, drop its resume point.
    fn forget(&mut self, item: &ItemRef, reason: StopReason) {
        for state in self.stations.values_mut() {
            state.played.remove(item);
            if state.on_air.as_ref().is_some_and(|o| o.item == *item) {
                state.ending = Some((item.clone(), reason.clone()));
            }
        }
    }

    /// Ends bulletins whose known duration ran out and drops bookkeeping of slots that ended.
    fn expire(&mut self, now: Timestamp, active: &BTreeSet<ItemRef>) {
        for (station, state) in &mut self.stations {
            state.finished.retain(|_, slot_end| *slot_end > now);
            state.played.retain(|item, _| match item {
                ItemRef::Entry { .. } => active.contains(item),
                _ => true,
            });
            if let Some(OnAir {
                item: item @ ItemRef::Bulletin { id },
                until: Some(until),
                ..
            }) = &state.on_air
            {
                if *until <= now {
                    if let Some(queued) = self.bulletins.get_mut(id) {
                        queued.done.insert(station.clone());
                    }
                    state.ending = Some((item.clone(), StopReason::Ended));
                }
            }
        }
    }

    fn advance_station(
        &mut self,
        now: Timestamp,
        station: &str,
        active: &[Occurrence],
        changes: &mut Vec<Change>,
    ) {
        let candidates = self.candidates(now, station, active);
        let best = candidates.iter().max_by_key(|c| c.key).cloned();
        let started = self.started;
        let Some(state) = self.stations.get_mut(station) else {
            return;
        };
        if let Some(current) = state.on_air.clone() {
            let still_wanted = candidates.iter().find(|c| c.item == current.item);
            match (still_wanted, &best) {
                (Some(cur), Some(best))
                    if cur.item == best.item || holds(cur, best, &candidates) =>
                {
                    return
                }
                (Some(_), Some(best)) => {
                    let played = current.position(now);
                    state.played.insert(current.item.clone(), played);
                    changes.push(Change::Stop {
                        station: station.to_owned(),
                        item: current.item,
                        reason: StopReason::Interrupted {
                            by: best.item.clone(),
                        },
                    });
                }
                _ => {
                    let reason = match state.ending.take() {
                        Some((item, reason)) if item == current.item => reason,
                        _ => StopReason::Ended,
                    };
                    state.played.remove(&current.item);
                    changes.push(Change::Stop {
                        station: station.to_owned(),
                        item: current.item,
                        reason,
                    });
                }
            }
            state.on_air = None;
        }
        if let Some(best) = best {
            let played = state
                .played
                .remove(&best.item)
                .unwrap_or_else(|| joined_late(&best, started, now));
            let offset = if best.source.is_file() {
                played
            } else {
                SignedDuration::ZERO
            };
            let until = match (&best.item, best.duration) {
                // Total airtime counts for streams too, though they rejoin at the live point.
                (ItemRef::Bulletin { .. }, Some(total)) => total
                    .checked_sub(played)
                    .and_then(|left| now.checked_add(left).ok()),
                _ => best.slot_end,
            };
            changes.push(Change::Start {
                station: station.to_owned(),
                item: best.item.clone(),
                offset,
            });
            state.on_air = Some(OnAir {
                item: best.item,
                tier: best.tier,
                source: best.source,
                since: now,
                offset,
                until,
            });
        }
    }

    /// Everything that may air on `station` now, unordered.
    fn candidates(&self, now: Timestamp, station: &str, active: &[Occurrence]) -> Vec<Candidate> {
        let Some(state) = self.stations.get(station) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (tier, manuals, make) in [
            (
                Tier::Emergency,
                &self.emergencies,
                (|id: &str| ItemRef::Emergency { id: id.to_owned() }) as fn(&str) -> ItemRef,
            ),
            (Tier::Live, &self.lives, |id: &str| ItemRef::Live {
                id: id.to_owned(),
            }),
        ] {
            for (id, manual) in manuals {
                if manual.stations.contains(station) {
                    out.push(Candidate {
                        item: make(id),
                        tier,
                        // The newest wins: it is the latest news.
                        key: (
                            self.config.rank(tier),
                            CLASS_WAITING,
                            manual.started.as_nanosecond(),
                            i128::from(manual.seq),
                        ),
                        source: manual.source.clone(),
                        slot_start: None,
                        slot_end: None,
                        duration: None,
                    });
                }
            }
        }
        let entries = &self.scheduler.schedule().entries;
        for occurrence in active {
            let item = entry_item(occurrence);
            if !occurrence.stations.contains(station) || state.finished.contains_key(&item) {
                continue;
            }
            let Some(index) = entries.iter().position(|e| e.id == occurrence.entry_id) else {
                continue;
            };
            let tier = Tier::from(occurrence.level);
            out.push(Candidate {
                item,
                tier,
                // Same-level overlaps only arise from DST days; the later slot is the one
                // the operator expects to hear from its start time on.
                key: (
                    self.config.rank(tier),
                    CLASS_ENTRY,
                    occurrence.start.as_nanosecond(),
                    -i128::try_from(index).unwrap_or(i128::MAX),
                ),
                source: entries[index].source.clone(),
                slot_start: Some(occurrence.start),
                slot_end: Some(occurrence.end),
                duration: None,
            });
        }
        for (id, queued) in &self.bulletins {
            if !queued.wanted_at(station, now) {
                continue;
            }
            let item = ItemRef::Bulletin { id: id.clone() };
            let started = state.played.contains_key(&item)
                || state.on_air.as_ref().is_some_and(|o| o.item == item);
            let tier = Tier::from(queued.bulletin.level);
            out.push(Candidate {
                item,
                tier,
                // Oldest first: negate so that the larger key is the older bulletin.
                key: (
                    self.config.rank(tier),
                    if started {
                        CLASS_STARTED
                    } else {
                        CLASS_WAITING
                    },
                    -queued.bulletin.submitted.as_nanosecond(),
                    -i128::from(queued.seq),
                ),
                source: queued.bulletin.source.clone(),
                slot_start: None,
                slot_end: None,
                duration: queued.bulletin.duration,
            });
        }
        out
    }
}

fn entry_item(occurrence: &Occurrence) -> ItemRef {
    ItemRef::Entry {
        entry_id: occurrence.entry_id.clone(),
        occurrence_start: occurrence.start,
    }
}

/// Whether the item on air stays although `best` outranks it.
fn holds(current: &Candidate, best: &Candidate, candidates: &[Candidate]) -> bool {
    let is_bulletin = |c: &Candidate| matches!(c.item, ItemRef::Bulletin { .. });
    let is_priority_bulletin = |c: &Candidate| c.tier == Tier::Priority && is_bulletin(c);
    // Bulletins of one level are a queue, not a ladder: the one playing finishes first.
    if is_bulletin(current) && is_bulletin(best) && current.tier == best.tier {
        return true;
    }
    // A priority bulletin is played at the next item boundary: a file has one, so it waits for
    // it; a stream has none, so it is cut at once. The wait only protects a file that would
    // stay on air anyway; one that a timed slot displaces makes way at once.
    current.tier == Tier::Normal
        && current.source.is_file()
        && is_priority_bulletin(best)
        && candidates
            .iter()
            .filter(|c| !is_priority_bulletin(c))
            .max_by_key(|c| c.key)
            .is_some_and(|c| c.item == current.item)
}

#[cfg(test)]
mod tests;
