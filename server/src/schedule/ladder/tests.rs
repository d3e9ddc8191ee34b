use super::super::{EntryEnd, Recurrence, Schedule, ScheduleEntry};
use super::*;
use jiff::civil::time;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp literal")
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

fn stations(ids: &[&str]) -> Targets {
    Targets::Stations(ids.iter().map(|s| (*s).to_owned()).collect())
}

fn file(path: &str) -> SourceSpec {
    SourceSpec::File { path: path.into() }
}

fn relay() -> SourceSpec {
    SourceSpec::Relay {
        url: "http://127.0.0.1:8000/qng.mp3".into(),
    }
}

fn bulletin(id: &str, level: Level, targets: Targets, source: SourceSpec) -> Bulletin {
    let duration = source.is_file().then(|| secs(60));
    Bulletin {
        id: id.to_owned(),
        name: format!("Thông báo {id}"),
        source,
        level,
        targets,
        duration,
        submitted: ts("2025-06-01T03:00:00Z"),
    }
}

fn timed(
    id: &str,
    level: Level,
    start: (i8, i8),
    end: (i8, i8),
    source: SourceSpec,
    targets: Targets,
) -> ScheduleEntry {
    ScheduleEntry {
        id: id.to_owned(),
        name: format!("Chương trình {id}"),
        recurrence: Recurrence::Daily,
        start: time(start.0, start.1, 0, 0),
        end: EntryEnd::At(time(end.0, end.1, 0, 0)),
        source,
        targets,
        level,
    }
}

/// A ladder plus a replay of every change, so tests also check that the change stream
/// alone reproduces what the ladder says is on air.
struct Rig {
    ladder: Ladder,
    now: Timestamp,
    replay: BTreeMap<String, ItemRef>,
    log: Vec<Change>,
}

impl Rig {
    fn new(entries: Vec<ScheduleEntry>, config: LadderConfig, now: &str) -> Rig {
        let district = District::binh_son();
        let schedule = Schedule {
            entries,
            ..Schedule::default()
        };
        let scheduler = Scheduler::new(schedule, &district).expect("valid schedule");
        let mut rig = Rig {
            ladder: Ladder::new(scheduler, &district, config),
            now: ts(now),
            replay: BTreeMap::new(),
            log: Vec::new(),
        };
        rig.advance();
        rig
    }

    fn advance(&mut self) -> Vec<Change> {
        let changes = self.ladder.advance(self.now);
        for change in &changes {
            match change {
                Change::Start { station, item, .. } => {
                    let previous = self.replay.insert(station.clone(), item.clone());
                    assert!(previous.is_none(), "{station}: two items on air");
                }
                Change::Stop { station, item, .. } => {
                    assert_eq!(self.replay.remove(station).as_ref(), Some(item));
                }
            }
        }
        for station in &self.ladder.district.stations {
            assert_eq!(
                self.replay.get(&station.id),
                self.ladder.on_air(&station.id).map(|o| &o.item),
                "replay of changes disagrees with on_air at {}",
                station.id
            );
        }
        self.log.extend(changes.iter().cloned());
        changes
    }

    /// Moves the virtual clock to `to`, waking at every boundary on the way.
    fn run_until(&mut self, to: &str) -> Vec<Change> {
        let to = ts(to);
        let mut all = Vec::new();
        let mut wakeups = 0;
        while let Some(next) = self.ladder.next_wakeup(self.now).filter(|n| *n <= to) {
            // A wake-up that changes nothing and repeats would spin the runtime: fail, not hang.
            wakeups += 1;
            assert!(wakeups < 1000, "next_wakeup keeps returning {next}");
            self.now = next;
            all.extend(self.advance());
        }
        self.now = to;
        all.extend(self.advance());
        all
    }

    fn at(&mut self, t: &str) {
        self.now = ts(t);
    }

    fn item(&self, station: &str) -> Option<ItemRef> {
        self.ladder.on_air(station).map(|o| o.item.clone())
    }
}

fn start(station: &str, item: ItemRef, offset: SignedDuration) -> Change {
    Change::Start {
        station: station.into(),
        item,
        offset,
    }
}

fn stop(station: &str, item: ItemRef, reason: StopReason) -> Change {
    Change::Stop {
        station: station.into(),
        item,
        reason,
    }
}

fn b(id: &str) -> ItemRef {
    ItemRef::Bulletin { id: id.into() }
}

fn e(id: &str, start: &str) -> ItemRef {
    ItemRef::Entry {
        entry_id: id.into(),
        occurrence_start: ts(start),
    }
}

fn em(id: &str) -> ItemRef {
    ItemRef::Emergency { id: id.into() }
}

fn live(id: &str) -> ItemRef {
    ItemRef::Live { id: id.into() }
}

#[test]
fn binh_son_relay_starts_and_stops_on_every_station() {
    let district = District::binh_son();
    let scheduler = Scheduler::new(Schedule::binh_son_default(), &district).expect("ok");
    let mut ladder = Ladder::new(scheduler, &district, LadderConfig::default());
    let mut now = ts("2025-05-31T21:00:00Z");
    assert!(ladder.advance(now).is_empty());
    now = ladder.next_wakeup(now).expect("wake");
    assert_eq!(now, ts("2025-05-31T22:00:00Z"));
    let changes = ladder.advance(now);
    assert_eq!(changes.len(), 22);
    assert!(changes.iter().all(|c| matches!(
        c,
        Change::Start { item: ItemRef::Entry { entry_id, .. }, offset, .. }
            if entry_id == "tiep-song-sang" && offset.is_zero()
    )));
    assert_eq!(
        ladder.on_air("binh-trung").map(|o| &o.source),
        Some(&SourceSpec::Relay {
            url: Schedule::PROVINCIAL_RELAY_URL.into()
        })
    );
    now = ladder.next_wakeup(now).expect("wake");
    assert_eq!(now, ts("2025-06-01T00:00:00Z"));
    let changes = ladder.advance(now);
    assert_eq!(changes.len(), 22);
    assert!(changes.iter().all(|c| matches!(
        c,
        Change::Stop {
            reason: StopReason::Ended,
            ..
        }
    )));
    assert_eq!(ladder.next_wakeup(now), Some(ts("2025-06-01T10:00:00Z")));
}

#[test]
fn higher_entry_interrupts_and_the_relay_resumes_at_its_live_point() {
    // Normal relay 05:00–07:00 everywhere, a priority recording 06:00–06:15 on two stations.
    let mut rig = Rig::new(
        vec![
            timed(
                "relay",
                Level::Normal,
                (5, 0),
                (7, 0),
                relay(),
                Targets::All,
            ),
            timed(
                "canh-bao",
                Level::Priority,
                (6, 0),
                (6, 15),
                file("/srv/canh-bao.mp3"),
                stations(&["binh-trung", "binh-duong"]),
            ),
        ],
        LadderConfig::default(),
        "2025-05-31T22:30:00Z",
    );
    let relay_item = e("relay", "2025-05-31T22:00:00Z");
    let warn = e("canh-bao", "2025-05-31T23:00:00Z");
    assert_eq!(rig.item("binh-trung"), Some(relay_item.clone()));
    let changes = rig.run_until("2025-05-31T23:00:00Z");
    let interrupted = StopReason::Interrupted { by: warn.clone() };
    assert_eq!(
        changes,
        vec![
            stop("binh-duong", relay_item.clone(), interrupted.clone()),
            start("binh-duong", warn.clone(), SignedDuration::ZERO),
            stop("binh-trung", relay_item.clone(), interrupted),
            start("binh-trung", warn.clone(), SignedDuration::ZERO),
        ]
    );
    assert_eq!(rig.item("binh-son-x"), None);
    let changes = rig.run_until("2025-05-31T23:20:00Z");
    assert_eq!(
        changes,
        vec![
            stop("binh-duong", warn.clone(), StopReason::Ended),
            start("binh-duong", relay_item.clone(), SignedDuration::ZERO),
            stop("binh-trung", warn, StopReason::Ended),
            start("binh-trung", relay_item, SignedDuration::ZERO),
        ]
    );
}

#[test]
fn a_server_started_inside_a_file_slot_joins_it_at_its_live_point() {
    let mut rig = Rig::new(
        vec![
            timed(
                "nhac",
                Level::Normal,
                (8, 0),
                (9, 0),
                file("/srv/nhac.mp3"),
                stations(&["binh-trung"]),
            ),
            timed(
                "tin",
                Level::Normal,
                (9, 0),
                (9, 30),
                file("/srv/tin.mp3"),
                stations(&["binh-trung"]),
            ),
        ],
        LadderConfig::default(),
        // 08:20 local: the server (re)starts 20 minutes into the slot.
        "2025-06-01T01:20:00Z",
    );
    assert_eq!(
        rig.log,
        vec![start(
            "binh-trung",
            e("nhac", "2025-06-01T01:00:00Z"),
            SignedDuration::from_mins(20)
        )]
    );
    // A slot that begins while the server runs plays from its beginning.
    let changes = rig.run_until("2025-06-01T02:05:00Z");
    assert!(
        changes.contains(&start(
            "binh-trung",
            e("tin", "2025-06-01T02:00:00Z"),
            SignedDuration::ZERO
        )),
        "{changes:?}"
    );
}

#[test]
fn interrupted_file_entry_resumes_where_it_stopped_unless_its_slot_ended() {
    let mut rig = Rig::new(
        vec![timed(
            "nhac",
            Level::Normal,
            (8, 0),
            (9, 0),
            file("/srv/nhac.mp3"),
            stations(&["binh-trung"]),
        )],
        LadderConfig::default(),
        "2025-06-01T01:00:00Z",
    );
    let slot = e("nhac", "2025-06-01T01:00:00Z");
    assert_eq!(rig.item("binh-trung"), Some(slot.clone()));
    rig.at("2025-06-01T01:10:00Z");
    rig.ladder
        .start_emergency(
            rig.now,
            "bao",
            file("/srv/bao.mp3"),
            &stations(&["binh-trung"]),
        )
        .expect("start");
    rig.advance();
    rig.at("2025-06-01T01:15:00Z");
    rig.ladder.stop_emergency(rig.now, "bao").expect("stop");
    let changes = rig.advance();
    assert_eq!(
        changes[1],
        start("binh-trung", slot.clone(), SignedDuration::from_mins(10))
    );
    // An emergency 08:50–09:10: the slot ends meanwhile and does not come back.
    rig.at("2025-06-01T01:50:00Z");
    rig.ladder
        .start_emergency(rig.now, "bao-2", relay(), &stations(&["binh-trung"]))
        .expect("start");
    rig.advance();
    rig.run_until("2025-06-01T02:05:00Z");
    rig.at("2025-06-01T02:10:00Z");
    rig.ladder.stop_emergency(rig.now, "bao-2").expect("stop");
    let changes = rig.advance();
    assert_eq!(
        changes,
        vec![stop("binh-trung", em("bao-2"), StopReason::Ended)]
    );
    assert_eq!(rig.item("binh-trung"), None);
}

#[test]
fn same_level_overlap_is_rejected_before_anything_airs() {
    let district = District::binh_son();
    let schedule = Schedule {
        entries: vec![
            timed("a", Level::Priority, (6, 0), (7, 0), relay(), Targets::All),
            timed(
                "b",
                Level::Priority,
                (6, 30),
                (7, 30),
                relay(),
                stations(&["binh-trung"]),
            ),
        ],
        ..Schedule::default()
    };
    let err = Scheduler::new(schedule, &district).expect_err("same level");
    assert!(
        matches!(err, ScheduleError::SameLevelOverlap { .. }),
        "{err}"
    );
}

#[test]
fn priority_bulletin_waits_for_the_file_then_goes_before_normal_ones() {
    let st = "binh-trung";
    let mut rig = Rig::new(
        vec![timed(
            "chuyen-muc",
            Level::Normal,
            (10, 0),
            (11, 0),
            file("/srv/chuyen-muc.mp3"),
            stations(&[st]),
        )],
        LadderConfig::default(),
        "2025-06-01T03:00:00Z",
    );
    let slot = e("chuyen-muc", "2025-06-01T03:00:00Z");
    assert_eq!(rig.item(st), Some(slot.clone()));
    rig.at("2025-06-01T03:05:00Z");
    for (id, level) in [
        ("n1", Level::Normal),
        ("n2", Level::Normal),
        ("p1", Level::Priority),
    ] {
        let mut bt = bulletin(id, level, stations(&[st]), file("/srv/b.mp3"));
        // p1 is the newest: it still goes first.
        bt.submitted = rig.now;
        rig.ladder.submit_bulletin(rig.now, bt).expect("submit");
        rig.now = rig.now.checked_add(secs(1)).expect("time");
    }
    rig.ladder
        .accept_bulletin(rig.now, st, "n1")
        .expect("accept");
    rig.ladder
        .accept_bulletin(rig.now, st, "n2")
        .expect("accept");
    // Mid-file: nothing changes, the priority bulletin waits for the boundary.
    assert!(rig.advance().is_empty());
    assert!(rig.run_until("2025-06-01T03:20:00Z").is_empty());
    rig.ladder
        .item_finished(rig.now, st, &slot)
        .expect("on air");
    assert_eq!(
        rig.advance(),
        vec![
            stop(st, slot, StopReason::Ended),
            start(st, b("p1"), SignedDuration::ZERO)
        ]
    );
    let changes = rig.run_until("2025-06-01T03:25:00Z");
    assert_eq!(
        changes,
        vec![
            stop(st, b("p1"), StopReason::Ended),
            start(st, b("n1"), SignedDuration::ZERO),
            stop(st, b("n1"), StopReason::Ended),
            start(st, b("n2"), SignedDuration::ZERO),
            stop(st, b("n2"), StopReason::Ended),
        ]
    );
    // The slot's recording finished: it does not come back within its slot.
    assert_eq!(rig.item(st), None);
}

#[test]
fn priority_bulletin_waits_for_a_normal_file_bulletin_but_cuts_a_relay() {
    let mut rig = Rig::new(
        vec![timed(
            "relay",
            Level::Normal,
            (10, 0),
            (11, 0),
            relay(),
            stations(&["binh-duong"]),
        )],
        LadderConfig::default(),
        "2025-06-01T03:00:00Z",
    );
    let mut n = bulletin(
        "n",
        Level::Normal,
        stations(&["binh-trung"]),
        file("/srv/n.mp3"),
    );
    n.duration = Some(secs(120));
    rig.ladder.submit_bulletin(rig.now, n).expect("submit");
    rig.ladder
        .accept_bulletin(rig.now, "binh-trung", "n")
        .expect("accept");
    rig.advance();
    assert_eq!(rig.item("binh-trung"), Some(b("n")));

    rig.at("2025-06-01T03:00:30Z");
    let p = bulletin(
        "p",
        Level::Priority,
        stations(&["binh-trung", "binh-duong"]),
        file("/srv/p.mp3"),
    );
    rig.ladder.submit_bulletin(rig.now, p).expect("submit");
    let relay_item = e("relay", "2025-06-01T03:00:00Z");
    // The relay has no boundary: cut now. The file bulletin plays on.
    assert_eq!(
        rig.advance(),
        vec![
            stop(
                "binh-duong",
                relay_item.clone(),
                StopReason::Interrupted { by: b("p") }
            ),
            start("binh-duong", b("p"), SignedDuration::ZERO),
        ]
    );
    let changes = rig.run_until("2025-06-01T03:02:00Z");
    assert_eq!(
        changes,
        vec![
            stop("binh-duong", b("p"), StopReason::Ended),
            start("binh-duong", relay_item, SignedDuration::ZERO),
            stop("binh-trung", b("n"), StopReason::Ended),
            start("binh-trung", b("p"), SignedDuration::ZERO),
        ]
    );
    assert_eq!(
        rig.ladder.on_air("binh-trung").and_then(|o| o.until),
        Some(ts("2025-06-01T03:03:00Z"))
    );
}

#[test]
fn unaccepted_normal_bulletin_never_airs_there() {
    let mut rig = Rig::new(vec![], LadderConfig::default(), "2025-06-01T03:00:00Z");
    let n = bulletin(
        "hop-dan",
        Level::Normal,
        stations(&["binh-trung", "binh-duong"]),
        file("/srv/hop-dan.mp3"),
    );
    rig.ladder
        .submit_bulletin(rig.now, n.clone())
        .expect("submit");
    assert_eq!(rig.ladder.awaiting_acceptance("binh-duong"), vec![&n]);
    rig.ladder
        .accept_bulletin(rig.now, "binh-trung", "hop-dan")
        .expect("accept");
    assert!(rig.ladder.awaiting_acceptance("binh-trung").is_empty());
    assert_eq!(
        rig.advance(),
        vec![start("binh-trung", b("hop-dan"), SignedDuration::ZERO)]
    );
    rig.run_until("2025-06-01T06:00:00Z");
    assert!(rig
        .log
        .iter()
        .all(|c| !matches!(c, Change::Start { station, .. } if station == "binh-duong")));
    // Still waiting there, not lost: accepting later airs it.
    rig.ladder
        .accept_bulletin(rig.now, "binh-duong", "hop-dan")
        .expect("accept");
    assert_eq!(
        rig.advance(),
        vec![start("binh-duong", b("hop-dan"), SignedDuration::ZERO)]
    );
}

#[test]
fn emergency_interrupts_live_and_live_resumes() {
    let mut rig = Rig::new(vec![], LadderConfig::default(), "2025-06-01T03:00:00Z");
    rig.ladder
        .start_live(rig.now, "hop-bao", &stations(&["binh-trung", "binh-duong"]))
        .expect("live");
    assert_eq!(rig.advance().len(), 2);
    rig.at("2025-06-01T03:10:00Z");
    rig.ladder
        .start_emergency(
            rig.now,
            "lu-lut",
            file("/srv/lu.mp3"),
            &stations(&["binh-trung"]),
        )
        .expect("emergency");
    assert_eq!(
        rig.advance(),
        vec![
            stop(
                "binh-trung",
                live("hop-bao"),
                StopReason::Interrupted { by: em("lu-lut") }
            ),
            start("binh-trung", em("lu-lut"), SignedDuration::ZERO),
        ]
    );
    assert_eq!(rig.item("binh-duong"), Some(live("hop-bao")));
    rig.at("2025-06-01T03:20:00Z");
    rig.ladder.stop_emergency(rig.now, "lu-lut").expect("stop");
    assert_eq!(
        rig.advance(),
        vec![
            stop("binh-trung", em("lu-lut"), StopReason::Ended),
            // Live resumes at its live point.
            start("binh-trung", live("hop-bao"), SignedDuration::ZERO),
        ]
    );
}

#[test]
fn live_above_emergency_when_configured() {
    let config = LadderConfig {
        live_above_emergency: true,
    };
    let mut rig = Rig::new(vec![], config, "2025-06-01T03:00:00Z");
    rig.ladder
        .start_live(rig.now, "hop", &stations(&["binh-trung"]))
        .expect("live");
    rig.advance();
    rig.ladder
        .start_emergency(
            rig.now,
            "bao",
            relay(),
            &stations(&["binh-trung", "binh-duong"]),
        )
        .expect("emergency");
    assert_eq!(
        rig.advance(),
        vec![start("binh-duong", em("bao"), SignedDuration::ZERO)]
    );
    rig.ladder.stop_live(rig.now, "hop").expect("stop");
    assert_eq!(
        rig.advance(),
        vec![
            stop("binh-trung", live("hop"), StopReason::Ended),
            start("binh-trung", em("bao"), SignedDuration::ZERO),
        ]
    );
}

#[test]
fn file_bulletin_interrupted_at_30s_resumes_at_30s() {
    let st = "binh-trung";
    let mut rig = Rig::new(vec![], LadderConfig::default(), "2025-06-01T03:00:00Z");
    let mut p = bulletin(
        "tiem-chung",
        Level::Priority,
        stations(&[st]),
        file("/srv/t.mp3"),
    );
    p.duration = Some(secs(120));
    rig.ladder.submit_bulletin(rig.now, p).expect("submit");
    assert_eq!(
        rig.advance(),
        vec![start(st, b("tiem-chung"), SignedDuration::ZERO)]
    );
    rig.at("2025-06-01T03:00:30Z");
    rig.ladder
        .start_emergency(rig.now, "chay", relay(), &stations(&[st]))
        .expect("emergency");
    rig.advance();
    rig.at("2025-06-01T03:05:00Z");
    rig.ladder.stop_emergency(rig.now, "chay").expect("stop");
    assert_eq!(
        rig.advance(),
        vec![
            stop(st, em("chay"), StopReason::Ended),
            start(st, b("tiem-chung"), secs(30)),
        ]
    );
    // 90 s remain.
    assert_eq!(
        rig.ladder.next_wakeup(rig.now),
        Some(ts("2025-06-01T03:06:30Z"))
    );
    assert_eq!(
        rig.ladder
            .on_air(st)
            .map(|o| o.position(ts("2025-06-01T03:06:00Z"))),
        Some(secs(90))
    );
    let changes = rig.run_until("2025-06-01T03:10:00Z");
    assert_eq!(changes, vec![stop(st, b("tiem-chung"), StopReason::Ended)]);
}

#[test]
fn emergency_for_two_stations_leaves_the_other_twenty_alone() {
    let district = District::binh_son();
    let scheduler = Scheduler::new(Schedule::binh_son_default(), &district).expect("ok");
    let mut ladder = Ladder::new(scheduler, &district, LadderConfig::default());
    let now = ts("2025-05-31T22:30:00Z");
    assert_eq!(ladder.advance(now).len(), 22);
    let before: Vec<Option<OnAir>> = district
        .stations
        .iter()
        .map(|s| ladder.on_air(&s.id).cloned())
        .collect();
    let two = ["binh-trung", "binh-duong"];
    ladder
        .start_emergency(now, "bao-so-5", relay(), &stations(&two))
        .expect("emergency");
    let changes = ladder.advance(now);
    assert_eq!(changes.len(), 4);
    for (station, was) in district.stations.iter().zip(before) {
        let is = ladder.on_air(&station.id).cloned();
        if two.contains(&station.id.as_str()) {
            assert_eq!(is.map(|o| o.item), Some(em("bao-so-5")));
        } else {
            assert_eq!(is, was, "{} must be untouched", station.id);
        }
    }
}

/// The "example morning" of docs/SCHEDULING.md, step by step.
#[test]
fn documented_example_morning_at_binh_trung() {
    let st = "binh-trung";
    let district = District::binh_son();
    let scheduler = Scheduler::new(Schedule::binh_son_default(), &district).expect("ok");
    let mut ladder = Ladder::new(scheduler, &district, LadderConfig::default());
    let relay_item = e("tiep-song-sang", "2025-05-31T22:00:00Z");
    let changes_at = |ladder: &mut Ladder, t: &str| -> Vec<Change> {
        ladder
            .advance(ts(t))
            .into_iter()
            .filter(|c| matches!(c, Change::Start { station, .. } | Change::Stop { station, .. } if station == st))
            .collect()
    };
    // 05:00
    assert_eq!(
        changes_at(&mut ladder, "2025-05-31T22:00:00Z"),
        vec![start(st, relay_item.clone(), SignedDuration::ZERO)]
    );
    // 05:40: a 2-minute priority recording cuts the relay stream at once.
    let mut vaccine = bulletin(
        "tiem-chung",
        Level::Priority,
        Targets::All,
        file("/srv/t.mp3"),
    );
    vaccine.duration = Some(secs(120));
    ladder
        .submit_bulletin(ts("2025-05-31T22:40:00Z"), vaccine)
        .expect("submit");
    assert_eq!(
        changes_at(&mut ladder, "2025-05-31T22:40:00Z"),
        vec![
            stop(
                st,
                relay_item.clone(),
                StopReason::Interrupted {
                    by: b("tiem-chung")
                }
            ),
            start(st, b("tiem-chung"), SignedDuration::ZERO),
        ]
    );
    // 05:40:30: storm warning for two communes.
    ladder
        .start_emergency(
            ts("2025-05-31T22:40:30Z"),
            "bao",
            relay(),
            &stations(&["binh-trung", "binh-duong"]),
        )
        .expect("emergency");
    assert_eq!(
        changes_at(&mut ladder, "2025-05-31T22:40:30Z"),
        vec![
            stop(
                st,
                b("tiem-chung"),
                StopReason::Interrupted { by: em("bao") }
            ),
            start(st, em("bao"), SignedDuration::ZERO),
        ]
    );
    // 05:45: warning stopped, the bulletin resumes at 0:30.
    ladder
        .stop_emergency(ts("2025-05-31T22:45:00Z"), "bao")
        .expect("stop");
    assert_eq!(
        changes_at(&mut ladder, "2025-05-31T22:45:00Z"),
        vec![
            stop(st, em("bao"), StopReason::Ended),
            start(st, b("tiem-chung"), secs(30)),
        ]
    );
    // 05:46:30: the bulletin ends, the relay is back at its live point.
    assert_eq!(
        ladder.next_wakeup(ts("2025-05-31T22:45:00Z")),
        Some(ts("2025-05-31T22:46:30Z"))
    );
    assert_eq!(
        changes_at(&mut ladder, "2025-05-31T22:46:30Z"),
        vec![
            stop(st, b("tiem-chung"), StopReason::Ended),
            start(st, relay_item.clone(), SignedDuration::ZERO),
        ]
    );
    // 07:00: the slot ends.
    assert_eq!(
        changes_at(&mut ladder, "2025-06-01T00:00:00Z"),
        vec![stop(st, relay_item, StopReason::Ended)]
    );
}

#[test]
fn newest_emergency_wins_and_the_older_one_resumes() {
    let st = "binh-trung";
    let mut rig = Rig::new(vec![], LadderConfig::default(), "2025-06-01T03:00:00Z");
    rig.ladder
        .start_emergency(rig.now, "bao", file("/srv/bao.mp3"), &stations(&[st]))
        .expect("first");
    rig.advance();
    rig.at("2025-06-01T03:01:00Z");
    rig.ladder
        .start_emergency(rig.now, "chay", relay(), &Targets::All)
        .expect("second");
    let changes = rig.advance();
    assert_eq!(
        changes.len(),
        23,
        "all 22 stations, one of them interrupted"
    );
    assert!(changes.contains(&stop(
        st,
        em("bao"),
        StopReason::Interrupted { by: em("chay") }
    )));
    // Both run, the interrupted one too; oldest first.
    let running = rig.ladder.emergencies();
    let ids: Vec<&str> = running.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["bao", "chay"]);
    assert_eq!(running[0].stations, [st]);
    assert_eq!(running[0].started, ts("2025-06-01T03:00:00Z"));
    assert_eq!(running[1].targets, Targets::All);
    assert_eq!(running[1].stations.len(), 22);
    assert_eq!(running[1].stations[0], "thi-tran-chau-o", "district order");
    rig.at("2025-06-01T03:03:00Z");
    rig.ladder.stop_emergency(rig.now, "chay").expect("stop");
    let changes = rig.advance();
    assert!(
        changes.contains(&start(st, em("bao"), secs(60))),
        "{changes:?}"
    );
    assert_eq!(rig.item("binh-duong"), None);
    let ids: Vec<String> = rig.ladder.emergencies().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["bao"]);
}

#[test]
fn cancelled_bulletin_stops_with_cancelled() {
    let st = "binh-trung";
    let mut rig = Rig::new(vec![], LadderConfig::default(), "2025-06-01T03:00:00Z");
    let p = bulletin("p", Level::Priority, stations(&[st]), relay());
    rig.ladder.submit_bulletin(rig.now, p).expect("submit");
    rig.advance();
    // A stream bulletin has no duration: it airs until finished or cancelled.
    assert_eq!(rig.ladder.next_wakeup(rig.now), None);
    rig.ladder.cancel_bulletin(rig.now, "p").expect("cancel");
    assert_eq!(rig.advance(), vec![stop(st, b("p"), StopReason::Cancelled)]);
}

#[test]
fn commands_report_what_is_wrong() {
    let mut rig = Rig::new(vec![], LadderConfig::default(), "2025-06-01T03:00:00Z");
    let now = rig.now;
    let l = &mut rig.ladder;
    let err = l
        .accept_bulletin(now, "binh-trung", "nope")
        .expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "bulletin `nope`: no such queued bulletin is active"
    );
    let err = l
        .accept_bulletin(now, "atlantis", "nope")
        .expect_err("station");
    assert!(matches!(err, ScheduleError::UnknownStationCommand { .. }));
    l.submit_bulletin(
        now,
        bulletin("n", Level::Normal, stations(&["binh-trung"]), relay()),
    )
    .expect("submit");
    let err = l
        .accept_bulletin(now, "binh-duong", "n")
        .expect_err("target");
    assert!(err.to_string().contains("binh-duong"), "{err}");
    let err = l
        .submit_bulletin(now, bulletin("n", Level::Normal, Targets::All, relay()))
        .expect_err("duplicate");
    assert!(matches!(err, ScheduleError::AlreadyActive { .. }));
    let err = l
        .submit_bulletin(now, bulletin("k", Level::Emergency, Targets::All, relay()))
        .expect_err("emergency bulletin");
    assert!(
        err.to_string().starts_with("bulletin `k`: field `level`"),
        "{err}"
    );
    let mut bad = bulletin("z", Level::Priority, Targets::All, relay());
    bad.source = SourceSpec::Relay {
        url: "rtmp://x/y".into(),
    };
    let err = l.submit_bulletin(now, bad).expect_err("scheme");
    assert!(err.to_string().contains("source.url"), "{err}");
    let err = l
        .start_emergency(now, "e", relay(), &stations(&["atlantis"]))
        .expect_err("target");
    assert!(err.to_string().starts_with("emergency `e`"), "{err}");
    l.start_emergency(now, "e", relay(), &Targets::All)
        .expect("ok");
    assert!(l.start_emergency(now, "e", relay(), &Targets::All).is_err());
    assert!(l.stop_live(now, "none").is_err());
    let err = l
        .item_finished(now, "binh-trung", &b("n"))
        .expect_err("not on air");
    assert!(matches!(err, ScheduleError::NotOnAir { .. }));
    rig.advance();
    let err = rig
        .ladder
        .item_finished(now, "binh-trung", &em("e"))
        .expect_err("emergencies end by command");
    assert!(matches!(err, ScheduleError::CannotFinish { .. }));
}

// ---- property test: random commands on a virtual clock ----

#[derive(Debug, Clone)]
enum Cmd {
    Wait(i64),
    StartEmergency(u8, Vec<usize>, bool),
    StopEmergency(u8),
    StartLive(u8, Vec<usize>),
    StopLive(u8),
    Submit(u8, bool, Vec<usize>, bool, Option<i64>),
    Accept(usize, u8),
    /// Accept from this many seconds on.
    AcceptFrom(usize, u8, i64),
    Decline(usize, u8),
    Finish(usize),
    Cancel(u8),
}

const STATIONS: [&str; 4] = ["binh-trung", "binh-duong", "binh-tri", "binh-long"];

fn arb_stations() -> impl Strategy<Value = Vec<usize>> {
    proptest::sample::subsequence((0..STATIONS.len()).collect::<Vec<_>>(), 1..=3)
}

fn arb_cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        4 => (1i64..1800).prop_map(Cmd::Wait),
        1 => (0u8..3, arb_stations(), any::<bool>()).prop_map(|(i, s, f)| Cmd::StartEmergency(i, s, f)),
        1 => (0u8..3).prop_map(Cmd::StopEmergency),
        1 => (0u8..2, arb_stations()).prop_map(|(i, s)| Cmd::StartLive(i, s)),
        1 => (0u8..2).prop_map(Cmd::StopLive),
        3 => (0u8..6, any::<bool>(), arb_stations(), any::<bool>(), proptest::option::of(10i64..900))
            .prop_map(|(i, p, s, f, d)| Cmd::Submit(i, p, s, f, d)),
        3 => (0..STATIONS.len(), 0u8..6).prop_map(|(s, i)| Cmd::Accept(s, i)),
        2 => (0..STATIONS.len(), 0u8..6, 1i64..1800).prop_map(|(s, i, d)| Cmd::AcceptFrom(s, i, d)),
        1 => (0..STATIONS.len(), 0u8..6).prop_map(|(s, i)| Cmd::Decline(s, i)),
        2 => (0..STATIONS.len()).prop_map(Cmd::Finish),
        1 => (0u8..6).prop_map(Cmd::Cancel),
    ]
}

/// What the test itself knows from its commands and the change stream, to judge the ladder
/// without asking it.
#[derive(Default)]
struct Model {
    emergencies: BTreeMap<String, (BTreeSet<String>, u64)>,
    lives: BTreeMap<String, (BTreeSet<String>, u64)>,
    bulletins: BTreeMap<String, (Level, BTreeSet<String>, bool)>,
    /// (station, bulletin id) → the time it may air from there.
    accepted: BTreeMap<(String, String), Option<Timestamp>>,
    done: BTreeSet<(String, ItemRef)>,
    /// Per (station, item): played time and, if on air, since when and from which offset.
    played: BTreeMap<(String, ItemRef), SignedDuration>,
    on_air: BTreeMap<String, (ItemRef, Timestamp, SignedDuration)>,
    order: u64,
}

fn prop_schedule() -> Vec<ScheduleEntry> {
    vec![
        timed(
            "relay-sang",
            Level::Normal,
            (5, 0),
            (7, 0),
            relay(),
            Targets::All,
        ),
        timed(
            "nhac",
            Level::Normal,
            (7, 30),
            (8, 30),
            file("/srv/nhac.mp3"),
            stations(&["binh-trung", "binh-duong"]),
        ),
        timed(
            "uu-tien",
            Level::Priority,
            (6, 0),
            (6, 20),
            file("/srv/ut.mp3"),
            stations(&["binh-trung", "binh-tri"]),
        ),
        timed(
            "tin-toi",
            Level::Priority,
            (7, 50),
            (8, 10),
            relay(),
            stations(&["binh-duong", "binh-long"]),
        ),
    ]
}

fn check_invariants(rig: &Rig, model: &Model) -> Result<(), TestCaseError> {
    let config = rig.ladder.config();
    let active = rig.ladder.scheduler().active(rig.now);
    for st in STATIONS {
        // (item, tier, is-bulletin, newest-order)
        let mut cands: Vec<(ItemRef, Tier, bool, u64)> = Vec::new();
        for (id, (targets, order)) in &model.emergencies {
            if targets.contains(st) {
                cands.push((em(id), Tier::Emergency, false, *order));
            }
        }
        for (id, (targets, order)) in &model.lives {
            if targets.contains(st) {
                cands.push((live(id), Tier::Live, false, *order));
            }
        }
        for o in &active {
            let item = entry_item(o);
            if o.stations.contains(st) && !model.done.contains(&(st.to_owned(), item.clone())) {
                cands.push((item, Tier::from(o.level), false, 0));
            }
        }
        for (id, (level, targets, _)) in &model.bulletins {
            let item = b(id);
            if targets.contains(st)
                && !model.done.contains(&(st.to_owned(), item.clone()))
                && (*level == Level::Priority
                    || model
                        .accepted
                        .get(&(st.to_owned(), id.clone()))
                        .is_some_and(|from| from.is_none_or(|from| from <= rig.now)))
            {
                cands.push((item, Tier::from(*level), true, 0));
            }
        }
        let on_air = rig.ladder.on_air(st);
        let Some(top) = cands.iter().map(|c| config.rank(c.1)).max() else {
            prop_assert!(
                on_air.is_none(),
                "{st}: {on_air:?} on air with no candidate"
            );
            continue;
        };
        let Some(on_air) = on_air else {
            return Err(TestCaseError::fail(format!(
                "{st}: idle although {cands:?} want it"
            )));
        };
        let mine = cands.iter().find(|c| c.0 == on_air.item);
        prop_assert!(
            mine.is_some(),
            "{st}: {:?} is not a candidate of {cands:?}",
            on_air.item
        );
        let rank = config.rank(on_air.tier);
        if rank < top {
            // Only allowed: a normal file item finishing while priority bulletins wait.
            let top_all_priority_bulletins = cands
                .iter()
                .filter(|c| config.rank(c.1) == top)
                .all(|c| c.1 == Tier::Priority && c.2);
            prop_assert!(
                on_air.tier == Tier::Normal
                    && on_air.source.is_file()
                    && top_all_priority_bulletins,
                "{st}: {:?} airs below {cands:?}",
                on_air.item
            );
        }
        if matches!(on_air.tier, Tier::Emergency | Tier::Live) {
            let newest = cands
                .iter()
                .filter(|c| c.1 == on_air.tier)
                .max_by_key(|c| c.3)
                .map(|c| &c.0);
            prop_assert_eq!(newest, Some(&on_air.item), "{}: not the newest", st);
        }
        if matches!(on_air.item, ItemRef::Bulletin { .. }) {
            // A timed slot of the bulletin's level takes precedence over it.
            prop_assert!(
                !cands
                    .iter()
                    .any(|c| c.1 == on_air.tier && matches!(c.0, ItemRef::Entry { .. })),
                "{st}: bulletin over a timed slot of its level"
            );
        }
    }
    Ok(())
}

fn apply(rig: &mut Rig, model: &mut Model, changes: Vec<Change>) -> Result<(), TestCaseError> {
    for change in changes {
        match change {
            Change::Start {
                station,
                item,
                offset,
            } => {
                let key = (station.clone(), item.clone());
                let played = model.played.remove(&key).unwrap_or_default();
                let is_file = rig
                    .ladder
                    .on_air(&station)
                    .map(|o| o.source.is_file())
                    .unwrap_or(false);
                let expected = if is_file {
                    played
                } else {
                    SignedDuration::ZERO
                };
                prop_assert_eq!(
                    offset,
                    expected,
                    "{} resumes {:?} at the wrong offset",
                    station,
                    item
                );
                model.on_air.insert(station, (item, rig.now, played));
            }
            Change::Stop {
                station,
                item,
                reason,
            } => {
                let Some((on, since, before)) = model.on_air.remove(&station) else {
                    return Err(TestCaseError::fail(format!(
                        "{station}: stop with nothing on air"
                    )));
                };
                prop_assert_eq!(&on, &item);
                match reason {
                    StopReason::Interrupted { .. } => {
                        model
                            .played
                            .insert((station, item), before + rig.now.duration_since(since));
                    }
                    StopReason::Ended => {
                        if matches!(item, ItemRef::Bulletin { .. } | ItemRef::Entry { .. }) {
                            model.done.insert((station, item));
                        }
                    }
                    StopReason::Cancelled => {}
                }
            }
        }
    }
    Ok(())
}

fn step(rig: &mut Rig, model: &mut Model) -> Result<(), TestCaseError> {
    let changes = rig.advance();
    apply(rig, model, changes)?;
    check_invariants(rig, model)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// At every instant each station airs at most one item (the replay checks that), and
    /// it is the highest-ranked candidate, except for the documented wait at a file's end;
    /// every resume offset equals the time the item had played on that station.
    #[test]
    fn every_station_airs_its_best_candidate(
        cmds in proptest::collection::vec(arb_cmd(), 1..60),
        config in any::<bool>().prop_map(|live_above_emergency| LadderConfig { live_above_emergency }),
    ) {
        // 04:50 local: the run crosses the relay, priority and file slots.
        let mut rig = Rig::new(prop_schedule(), config, "2025-05-31T21:50:00Z");
        let mut model = Model::default();
        let replay_start = rig.log.clone();
        apply(&mut rig, &mut model, replay_start)?;
        for cmd in cmds {
            let now = rig.now;
            let st = |i: &[usize]| -> Vec<String> { i.iter().map(|&k| STATIONS[k].to_owned()).collect() };
            match cmd {
                Cmd::Wait(s) => {
                    let to = now.checked_add(secs(s)).expect("time");
                    let mut wakeups = 0;
                    while let Some(next) = rig.ladder.next_wakeup(rig.now).filter(|n| *n <= to) {
                        wakeups += 1;
                        prop_assert!(wakeups < 1000, "next_wakeup keeps returning {}", next);
                        prop_assert!(next >= rig.now);
                        rig.now = next;
                        step(&mut rig, &mut model)?;
                    }
                    rig.now = to;
                }
                Cmd::StartEmergency(i, s, is_file) => {
                    let id = format!("e{i}");
                    let source = if is_file { file("/srv/e.mp3") } else { relay() };
                    let ok = rig.ladder.start_emergency(now, &id, source, &Targets::Stations(st(&s))).is_ok();
                    prop_assert_eq!(ok, !model.emergencies.contains_key(&id));
                    if ok {
                        model.order += 1;
                        model.emergencies.insert(id, (st(&s).into_iter().collect(), model.order));
                    }
                }
                Cmd::StopEmergency(i) => {
                    let id = format!("e{i}");
                    let ok = rig.ladder.stop_emergency(now, &id).is_ok();
                    prop_assert_eq!(ok, model.emergencies.remove(&id).is_some());
                    let item = em(&id);
                    model.played.retain(|(_, it), _| *it != item);
                }
                Cmd::StartLive(i, s) => {
                    let id = format!("l{i}");
                    let ok = rig.ladder.start_live(now, &id, &Targets::Stations(st(&s))).is_ok();
                    prop_assert_eq!(ok, !model.lives.contains_key(&id));
                    if ok {
                        model.order += 1;
                        model.lives.insert(id, (st(&s).into_iter().collect(), model.order));
                    }
                }
                Cmd::StopLive(i) => {
                    let id = format!("l{i}");
                    let ok = rig.ladder.stop_live(now, &id).is_ok();
                    prop_assert_eq!(ok, model.lives.remove(&id).is_some());
                    let item = live(&id);
                    model.played.retain(|(_, it), _| *it != item);
                }
                Cmd::Submit(i, priority, s, is_file, duration) => {
                    let id = format!("b{i}");
                    let level = if priority { Level::Priority } else { Level::Normal };
                    let source = if is_file { file("/srv/b.mp3") } else { relay() };
                    let mut bt = bulletin(&id, level, Targets::Stations(st(&s)), source);
                    bt.duration = duration.map(secs);
                    bt.submitted = now;
                    let ok = rig.ladder.submit_bulletin(now, bt).is_ok();
                    let fresh = !model.bulletins.contains_key(&id);
                    prop_assert_eq!(ok, fresh);
                    if ok {
                        model.bulletins.insert(id.clone(), (level, st(&s).into_iter().collect(), true));
                        // An id may be reused once the old bulletin is gone: start clean.
                        let item = b(&id);
                        model.done.retain(|(_, it)| *it != item);
                        model.played.retain(|(_, it), _| *it != item);
                        model.accepted.retain(|(_, bid), _| *bid != id);
                    }
                }
                Cmd::Accept(k, i) => {
                    let id = format!("b{i}");
                    let item = b(&id);
                    let started = model.played.contains_key(&(STATIONS[k].to_owned(), item.clone()))
                        || model.on_air.get(STATIONS[k]).is_some_and(|(on, _, _)| *on == item);
                    if rig.ladder.accept_bulletin(now, STATIONS[k], &id).is_ok() && !started {
                        // At once, replacing a time given before; where it already started, its
                        // (reached) time stays as it was.
                        model.accepted.insert((STATIONS[k].to_owned(), id), None);
                    }
                }
                Cmd::AcceptFrom(k, i, d) => {
                    let id = format!("b{i}");
                    let from = now.checked_add(secs(d)).expect("time");
                    if rig.ladder.accept_bulletin_from(now, STATIONS[k], &id, Some(from)).is_ok() {
                        model.accepted.insert((STATIONS[k].to_owned(), id), Some(from));
                    }
                }
                Cmd::Decline(k, i) => {
                    let id = format!("b{i}");
                    let key = (STATIONS[k].to_owned(), b(&id));
                    let declinable = model.bulletins.get(&id).is_some_and(|(level, targets, _)| {
                        *level == Level::Normal && targets.contains(STATIONS[k])
                    }) && !model.done.contains(&key);
                    let ok = rig.ladder.decline_bulletin(now, STATIONS[k], &id, None).is_ok();
                    prop_assert_eq!(ok, declinable, "decline {} at {}", id, STATIONS[k]);
                    if ok {
                        model.accepted.remove(&(STATIONS[k].to_owned(), id));
                        // It does not resume there: stopped with Cancelled, if it was on air.
                        model.played.remove(&key);
                    }
                }
                Cmd::Finish(k) => {
                    if let Some(item) = rig.item(STATIONS[k]) {
                        let result = rig.ladder.item_finished(now, STATIONS[k], &item);
                        prop_assert_eq!(
                            result.is_ok(),
                            matches!(item, ItemRef::Entry { .. } | ItemRef::Bulletin { .. })
                        );
                    }
                }
                Cmd::Cancel(i) => {
                    let id = format!("b{i}");
                    if rig.ladder.cancel_bulletin(now, &id).is_ok() {
                        model.bulletins.remove(&id);
                        let item = b(&id);
                        model.played.retain(|(_, it), _| *it != item);
                    }
                }
            }
            step(&mut rig, &mut model)?;
            // The ladder forgets bulletins done everywhere; so does the model.
            let done = &model.done;
            model.bulletins.retain(|id, (_, targets, _)| {
                !targets.iter().all(|s| done.contains(&(s.clone(), b(id))))
            });
        }
    }
}

/// The state of bulletin `id` at `station`, as the listing reports it.
fn state_at(ladder: &Ladder, id: &str, station: &str) -> Option<BulletinState> {
    ladder
        .bulletins()
        .into_iter()
        .find(|s| s.bulletin.id == id)?
        .stations
        .into_iter()
        .find(|(s, _)| s == station)
        .map(|(_, state)| state)
}

#[test]
fn accepted_with_a_time_airs_from_that_time_and_declined_never_airs() {
    let mut rig = Rig::new(vec![], LadderConfig::default(), "2025-06-01T03:00:00Z");
    let hop = bulletin(
        "hop",
        Level::Normal,
        stations(&["binh-trung", "binh-duong", "binh-tri"]),
        file("/srv/hop.mp3"),
    );
    rig.ladder.submit_bulletin(rig.now, hop).expect("submit");
    let from = ts("2025-06-01T03:10:00Z");
    rig.ladder
        .accept_bulletin_from(rig.now, "binh-trung", "hop", Some(from))
        .expect("accept with a time");
    rig.ladder
        .decline_bulletin(rig.now, "binh-duong", "hop", Some("trùng giờ họp".into()))
        .expect("decline");
    rig.ladder
        .accept_bulletin(rig.now, "binh-tri", "hop")
        .expect("accept at once");
    assert!(rig.ladder.awaiting_acceptance("binh-duong").is_empty());
    // Only the station that accepted without a time airs it now.
    assert_eq!(
        rig.advance(),
        vec![start("binh-tri", b("hop"), SignedDuration::ZERO)]
    );
    assert_eq!(
        state_at(&rig.ladder, "hop", "binh-trung"),
        Some(BulletinState::Accepted { from: Some(from) })
    );
    assert_eq!(
        state_at(&rig.ladder, "hop", "binh-duong"),
        Some(BulletinState::Declined {
            reason: Some("trùng giờ họp".into())
        })
    );
    assert_eq!(
        state_at(&rig.ladder, "hop", "binh-tri"),
        Some(BulletinState::Airing { since: rig.now })
    );
    rig.run_until("2025-06-01T03:09:00Z");
    assert_eq!(rig.item("binh-trung"), None, "not before its time");
    assert_eq!(
        state_at(&rig.ladder, "hop", "binh-tri"),
        Some(BulletinState::Done)
    );
    // The runtime is woken for the time, not left to find it at the next slot boundary.
    assert_eq!(rig.ladder.next_wakeup(rig.now), Some(from));
    rig.run_until("2025-06-01T03:10:00Z");
    assert_eq!(rig.item("binh-trung"), Some(b("hop")));
    assert_eq!(rig.item("binh-duong"), None);
    rig.run_until("2025-06-01T05:00:00Z");
    assert!(
        rig.log
            .iter()
            .all(|c| !matches!(c, Change::Start { station, .. } if station == "binh-duong")),
        "{:?}",
        rig.log
    );
    // Untargeted stations never saw it.
    assert!(rig.log.iter().all(|c| match c {
        Change::Start { station, .. } | Change::Stop { station, .. } =>
            station == "binh-trung" || station == "binh-tri",
    }));
    // Done at two stations, declined at the third: it stays listed until withdrawn, so the
    // district sees the answer and the commune may still change its mind.
    assert_eq!(
        state_at(&rig.ladder, "hop", "binh-trung"),
        Some(BulletinState::Done)
    );
    rig.ladder
        .accept_bulletin(rig.now, "binh-duong", "hop")
        .expect("changes its mind");
    assert_eq!(
        rig.advance(),
        vec![start("binh-duong", b("hop"), SignedDuration::ZERO)]
    );
}

#[test]
fn a_time_already_past_airs_at_once_and_a_new_answer_replaces_the_old() {
    let mut rig = Rig::new(vec![], LadderConfig::default(), "2025-06-01T03:00:00Z");
    let hop = bulletin("hop", Level::Normal, stations(&["binh-trung"]), relay());
    rig.ladder.submit_bulletin(rig.now, hop).expect("submit");
    rig.ladder
        .accept_bulletin_from(
            rig.now,
            "binh-trung",
            "hop",
            Some(ts("2025-06-01T04:00:00Z")),
        )
        .expect("accept at 04:00");
    rig.advance();
    assert_eq!(rig.item("binh-trung"), None);
    // Accepting again with an earlier time moves it.
    rig.ladder
        .accept_bulletin_from(
            rig.now,
            "binh-trung",
            "hop",
            Some(ts("2025-06-01T03:30:00Z")),
        )
        .expect("accept at 03:30");
    assert_eq!(
        rig.ladder.next_wakeup(rig.now),
        Some(ts("2025-06-01T03:30:00Z"))
    );
    // Declining clears the time: nothing to wake for.
    rig.ladder
        .decline_bulletin(rig.now, "binh-trung", "hop", None)
        .expect("decline");
    assert_eq!(rig.ladder.next_wakeup(rig.now), None);
    rig.run_until("2025-06-01T04:30:00Z");
    assert_eq!(rig.item("binh-trung"), None);
    // A time the clock has passed means at once.
    rig.ladder
        .accept_bulletin_from(
            rig.now,
            "binh-trung",
            "hop",
            Some(ts("2025-06-01T04:00:00Z")),
        )
        .expect("accept, time past");
    assert_eq!(
        rig.advance(),
        vec![start("binh-trung", b("hop"), SignedDuration::ZERO)]
    );
    // Started: a new time cannot move it back, accepting without one changes nothing.
    let err = rig
        .ladder
        .accept_bulletin_from(
            rig.now,
            "binh-trung",
            "hop",
            Some(ts("2025-06-01T05:00:00Z")),
        )
        .expect_err("started");
    assert!(matches!(err, ScheduleError::AlreadyStarted { .. }), "{err}");
    rig.ladder
        .accept_bulletin(rig.now, "binh-trung", "hop")
        .expect("accept again");
    assert!(rig.advance().is_empty());
}

#[test]
fn declining_where_it_airs_stops_it_and_it_does_not_resume() {
    let st = "binh-trung";
    let mut rig = Rig::new(vec![], LadderConfig::default(), "2025-06-01T03:00:00Z");
    let hop = bulletin("hop", Level::Normal, stations(&[st]), file("/srv/hop.mp3"));
    rig.ladder.submit_bulletin(rig.now, hop).expect("submit");
    rig.ladder
        .accept_bulletin(rig.now, st, "hop")
        .expect("accept");
    rig.advance();
    rig.at("2025-06-01T03:00:20Z");
    rig.ladder
        .decline_bulletin(rig.now, st, "hop", None)
        .expect("decline");
    assert_eq!(
        rig.advance(),
        vec![stop(st, b("hop"), StopReason::Cancelled)]
    );
    // Twice is no error and changes nothing; the first reason is kept when none is given.
    rig.ladder
        .decline_bulletin(rig.now, st, "hop", Some("không phù hợp".into()))
        .expect("decline with a reason");
    rig.ladder
        .decline_bulletin(rig.now, st, "hop", None)
        .expect("decline again");
    assert!(rig.advance().is_empty());
    assert_eq!(
        state_at(&rig.ladder, "hop", st),
        Some(BulletinState::Declined {
            reason: Some("không phù hợp".into())
        })
    );
    // Accepting again starts it from the beginning: the declined airing left no resume point.
    rig.ladder
        .accept_bulletin(rig.now, st, "hop")
        .expect("accept");
    assert_eq!(
        rig.advance(),
        vec![start(st, b("hop"), SignedDuration::ZERO)]
    );
    rig.run_until("2025-06-01T03:01:30Z");
    // Aired to its end everywhere: gone from the queue, nothing left to decline.
    assert!(rig.ladder.bulletins().is_empty());
    let err = rig
        .ladder
        .decline_bulletin(rig.now, st, "hop", None)
        .expect_err("gone");
    assert!(matches!(err, ScheduleError::NotActive { .. }), "{err}");
}

#[test]
fn priority_bulletins_are_queued_and_cannot_be_declined_or_timed() {
    let mut rig = Rig::new(vec![], LadderConfig::default(), "2025-06-01T03:00:00Z");
    let p = bulletin(
        "bao",
        Level::Priority,
        stations(&["binh-trung", "binh-duong"]),
        file("/srv/bao.mp3"),
    );
    rig.ladder.submit_bulletin(rig.now, p).expect("submit");
    assert_eq!(
        state_at(&rig.ladder, "bao", "binh-trung"),
        Some(BulletinState::Queued)
    );
    let err = rig
        .ladder
        .decline_bulletin(rig.now, "binh-trung", "bao", None)
        .expect_err("priority");
    assert!(matches!(err, ScheduleError::NotOffered { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("bản tin ưu tiên/khẩn cấp không thể từ chối"),
        "{err}"
    );
    let err = rig
        .ladder
        .accept_bulletin_from(
            rig.now,
            "binh-trung",
            "bao",
            Some(ts("2025-06-01T04:00:00Z")),
        )
        .expect_err("priority with a time");
    assert!(matches!(err, ScheduleError::NotOffered { .. }), "{err}");
    rig.advance();
    assert_eq!(rig.item("binh-trung"), Some(b("bao")));
    assert_eq!(rig.item("binh-duong"), Some(b("bao")));
    let err = rig
        .ladder
        .decline_bulletin(rig.now, "binh-hai", "bao", None)
        .expect_err("not targeted");
    assert!(matches!(err, ScheduleError::NotTargeted { .. }), "{err}");
}

#[test]
fn a_bulletin_aired_to_its_end_cannot_be_declined_there() {
    let mut rig = Rig::new(vec![], LadderConfig::default(), "2025-06-01T03:00:00Z");
    let hop = bulletin(
        "hop",
        Level::Normal,
        stations(&["binh-trung", "binh-duong"]),
        file("/srv/hop.mp3"),
    );
    rig.ladder.submit_bulletin(rig.now, hop).expect("submit");
    rig.ladder
        .accept_bulletin(rig.now, "binh-trung", "hop")
        .expect("accept");
    rig.advance();
    rig.run_until("2025-06-01T03:05:00Z");
    assert_eq!(
        state_at(&rig.ladder, "hop", "binh-trung"),
        Some(BulletinState::Done)
    );
    assert_eq!(
        state_at(&rig.ladder, "hop", "binh-duong"),
        Some(BulletinState::Awaiting)
    );
    let err = rig
        .ladder
        .decline_bulletin(rig.now, "binh-trung", "hop", None)
        .expect_err("done");
    assert!(matches!(err, ScheduleError::AlreadyAired { .. }), "{err}");
}
