use super::*;
use radio_proto::OutputState::{OnAir, Silent};

const MIN: i64 = 60_000;

fn start(clean: bool) -> JournalEvent {
    JournalEvent::ProcessStart {
        clean_previous: clean,
        software: "relay-agent/test".into(),
    }
}

fn up() -> JournalEvent {
    JournalEvent::LinkUp { server_run: 1 }
}

fn down() -> JournalEvent {
    JournalEvent::LinkDown { reason: "x".into() }
}

fn heartbeat(link_up: bool, output: OutputState) -> JournalEvent {
    JournalEvent::Heartbeat {
        link_up,
        output,
        frames_received: 0,
        frames_played: 0,
        frames_lost: 0,
        heartbeats_dropped: 0,
    }
}

/// Records of one journal at minutes.
fn journal(id: u64, events: &[(i64, JournalEvent)]) -> Vec<StoredRecord> {
    events
        .iter()
        .enumerate()
        .map(|(i, (minute, event))| StoredRecord {
            journal_id: id,
            record: JournalRecord {
                seq: i as u64 + 1,
                unix_ms: (minute * MIN) as u64,
                event: event.clone(),
            },
        })
        .collect()
}

fn spans(t: &Timeline) -> Vec<(i64, i64, Condition, bool)> {
    t.spans
        .iter()
        .map(|s| (s.start_ms / MIN, s.end_ms / MIN, s.condition, s.on_air))
        .collect()
}

use Condition::{Available as A, LinkDown as L, Off as O, Unreported as U};

#[test]
fn runs_links_power_cuts_and_the_tail() {
    let records = journal(
        7,
        &[
            (10, start(true)),
            (11, up()),
            (20, JournalEvent::Output { state: OnAir }),
            (30, JournalEvent::Output { state: Silent }),
            (40, heartbeat(true, Silent)),
            // Power cut after minute 40: the next start says so.
            (55, start(false)),
            (56, up()),
            (60, down()),
            (70, up()),
            (80, JournalEvent::ProcessStop),
            (90, start(true)),
            (91, up()),
            (100, heartbeat(true, Silent)),
        ],
    );
    let t = Timeline::build_with(&records, &[], &[], 200 * MIN, 5 * MIN);
    assert_eq!(
        spans(&t),
        vec![
            (10, 11, L, false),
            (11, 20, A, false),
            (20, 30, A, true),
            (30, 40, A, false),
            (40, 55, O, false),
            (55, 56, L, false),
            (56, 60, A, false),
            (60, 70, L, false),
            (70, 80, A, false),
            (80, 90, O, false),
            (90, 91, L, false),
            (91, 105, A, false),
            (105, 200, U, false),
        ]
    );
    let outages: Vec<(i64, i64)> = t
        .outages
        .iter()
        .map(|o| (o.start_ms / MIN, o.end_ms / MIN))
        .collect();
    assert_eq!(
        outages,
        vec![(10, 11), (40, 56), (60, 70), (80, 91), (105, 200)]
    );
}

#[test]
fn the_server_seeing_the_link_drop_ends_the_assumed_tail() {
    let records = journal(1, &[(0, start(true)), (1, up())]);
    let links = [
        LinkEvent {
            unix_ms: MIN as u64,
            up: true,
            reason: String::new(),
            server_run: Some(1),
        },
        LinkEvent {
            unix_ms: (3 * MIN) as u64,
            up: false,
            reason: "idle".into(),
            server_run: Some(1),
        },
    ];
    let t = Timeline::build_with(&records, &links, &[], 60 * MIN, 10 * MIN);
    assert_eq!(
        spans(&t),
        vec![(0, 1, L, false), (1, 3, A, false), (3, 60, U, false)]
    );
    // Now within the grace: nothing unreported yet.
    let t = Timeline::build_with(&records, &[], &[], 4 * MIN, 10 * MIN);
    assert_eq!(spans(&t), vec![(0, 1, L, false), (1, 4, A, false)]);
}

#[test]
fn odd_data_does_not_break_the_rebuild() {
    let mut records = journal(
        3,
        &[
            // The journal's start was lost: a heartbeat says the agent ran.
            (5, heartbeat(true, OnAir)),
            // A LinkDown without LinkUp, twice.
            (6, down()),
            (6, down()),
            // The clock stepped back: raised to minute 6.
            (4, up()),
            (8, JournalEvent::Output { state: Silent }),
            // Far in the future: left out.
            (1_000_000, down()),
            (9, JournalEvent::ProcessStop),
        ],
    );
    // A reinstall: a new journal (lower id, listed first) whose records come later.
    let mut reinstalled = journal(1, &[(12, start(true)), (13, up())]);
    reinstalled.append(&mut records);
    let t = Timeline::build_with(&reinstalled, &[], &[], 20 * MIN, 0);
    assert_eq!(
        spans(&t),
        vec![
            (5, 8, A, true),
            (8, 9, A, false),
            (9, 12, O, false),
            (12, 13, L, false),
            (13, 20, U, false),
        ]
    );
}

#[test]
fn plays_and_programmes_cut_off_by_a_power_cut() {
    let records = journal(
        1,
        &[
            (0, start(true)),
            (0, up()),
            (
                1,
                JournalEvent::ProgrammeStart {
                    programme_id: 1,
                    name: "Bản tin sáng".into(),
                    level: ProgrammeLevel::Emergency,
                },
            ),
            (
                2,
                JournalEvent::ProgrammeEnd {
                    programme_id: 1,
                    name: "Bản tin sáng".into(),
                    frames_played: 3000,
                    frames_lost: 2,
                },
            ),
            (
                3,
                JournalEvent::ProgrammeStart {
                    programme_id: 2,
                    name: "Tiếp sóng".into(),
                    level: ProgrammeLevel::Priority,
                },
            ),
            (4, heartbeat(true, OnAir)),
            (9, start(false)),
        ],
    );
    let t = Timeline::build_with(&records, &[], &[], 10 * MIN, 0);
    assert_eq!(
        t.plays,
        vec![Play {
            at_ms: 2 * MIN,
            name: "Bản tin sáng".into(),
            level: ProgrammeLevel::Emergency,
            frames: 3000
        }]
    );
    assert_eq!(t.plays[0].aired_ms(), 60_000);
    assert_eq!(
        t.cut_off,
        vec![CutOff {
            at_ms: 4 * MIN,
            name: "Tiếp sóng".into(),
            level: ProgrammeLevel::Priority,
        }]
    );
    assert_eq!(
        spans(&t),
        vec![(0, 4, A, false), (4, 9, O, false), (9, 10, U, false),]
    );
}

fn link(minute: i64, up: bool, run: u64) -> LinkEvent {
    LinkEvent {
        unix_ms: (minute * MIN) as u64,
        up,
        reason: if up { String::new() } else { "x".into() },
        server_run: Some(run),
    }
}

fn run(run_id: u64, started: i64, alive: i64) -> ServerRun {
    ServerRun {
        run_id,
        started_ms: (started * MIN) as u64,
        alive_ms: (alive * MIN) as u64,
    }
}

#[test]
fn a_session_of_a_crashed_server_run_ends_at_its_last_sign_of_life() {
    // The station's last record is at minute 10 (a power cut there too, say: its later
    // records never come). Server run 1 saw its session start and was killed after
    // minute 12, writing no down event; run 2 started at 60.
    let records = journal(
        1,
        &[(0, start(true)), (1, up()), (10, heartbeat(true, Silent))],
    );
    let links = [link(1, true, 1)];
    let runs = [run(1, 0, 12), run(2, 60, 100)];
    let t = Timeline::build_with(&records, &links, &runs, 100 * MIN, 30 * MIN);
    assert_eq!(
        spans(&t),
        vec![(0, 1, L, false), (1, 12, A, false), (12, 100, U, false)]
    );
    // Without run 2 the session may still be open (run 1 makes the report): the grace.
    let t = Timeline::build_with(&records, &links, &runs[..1], 100 * MIN, 30 * MIN);
    assert_eq!(
        spans(&t),
        vec![(0, 1, L, false), (1, 40, A, false), (40, 100, U, false)]
    );
    // Run 1's alive time lags (written every minute) behind a record it stored: the
    // session ended after that record, not before.
    let runs = [run(1, 0, 8), run(2, 60, 100)];
    let t = Timeline::build_with(&records, &links, &runs, 100 * MIN, 30 * MIN);
    assert_eq!(
        spans(&t),
        vec![(0, 1, L, false), (1, 10, A, false), (10, 100, U, false)]
    );
    // No start marker of run 2 (a store from before markers), but run 2 saw the station
    // connect: run 1 was over by then.
    let links = [link(1, true, 1), link(70, true, 2), link(71, false, 2)];
    let t = Timeline::build_with(&records, &links, &runs[..1], 100 * MIN, 30 * MIN);
    assert_eq!(
        spans(&t),
        vec![(0, 1, L, false), (1, 10, A, false), (10, 100, U, false)]
    );
}

#[test]
fn a_crashed_run_does_not_cut_a_session_of_a_later_run() {
    // The agent saw run 1 go (its own LinkDown at 13) and connected to run 2 at 61.
    let records = journal(
        1,
        &[
            (0, start(true)),
            (1, up()),
            (10, heartbeat(true, Silent)),
            (13, down()),
            (61, up()),
            (80, heartbeat(true, Silent)),
        ],
    );
    let links = [link(1, true, 1), link(61, true, 2)];
    let runs = [run(1, 0, 12), run(2, 60, 100)];
    let t = Timeline::build_with(&records, &links, &runs, 100 * MIN, 30 * MIN);
    assert_eq!(
        spans(&t),
        vec![
            (0, 1, L, false),
            (1, 13, A, false),
            (13, 61, L, false),
            (61, 100, A, false)
        ]
    );
    assert_eq!(
        session_ends(&links, &runs),
        vec![SessionEnd {
            earliest_ms: 12 * MIN,
            latest_ms: 60 * MIN
        }]
    );
}

/// Records of one journal at milliseconds.
fn journal_ms(id: u64, events: &[(i64, JournalEvent)]) -> Vec<StoredRecord> {
    events
        .iter()
        .enumerate()
        .map(|(i, (ms, event))| StoredRecord {
            journal_id: id,
            record: JournalRecord {
                seq: i as u64 + 1,
                unix_ms: *ms as u64,
                event: event.clone(),
            },
        })
        .collect()
}

fn spans_ms(t: &Timeline) -> Vec<(i64, i64, Condition)> {
    t.spans
        .iter()
        .map(|s| (s.start_ms, s.end_ms, s.condition))
        .collect()
}

#[test]
fn a_new_station_s_data_starts_at_its_first_connection() {
    // Connected 300 ms after its very first start: no outage of 300 ms.
    let records = journal_ms(
        1,
        &[
            (0, start(true)),
            (5, JournalEvent::Output { state: Silent }),
            (300, up()),
            (60_000, JournalEvent::ProcessStop),
            // A restart later is an outage, connecting included.
            (70_000, start(true)),
            (70_300, up()),
        ],
    );
    let t = Timeline::build_with(&records, &[], &[], 100_000, 60_000);
    assert_eq!(
        spans_ms(&t),
        vec![
            (300, 60_000, A),
            (60_000, 70_000, O),
            (70_000, 70_300, L),
            (70_300, 100_000, A),
        ]
    );
    assert_eq!(
        t.outages,
        vec![Outage {
            start_ms: 60_000,
            end_ms: 70_300
        }]
    );
    // Exactly the grace: still not counted.
    let records = journal_ms(1, &[(0, start(true)), (FIRST_CONNECT_GRACE_MS, up())]);
    let t = Timeline::build_with(&records, &[], &[], 20_000, 60_000);
    assert_eq!(spans_ms(&t), vec![(FIRST_CONNECT_GRACE_MS, 20_000, A)]);
    assert!(t.outages.is_empty());
    // Longer than the grace: the station could not reach the server, an outage.
    let late = FIRST_CONNECT_GRACE_MS + 1;
    let records = journal_ms(1, &[(0, start(true)), (late, up())]);
    let t = Timeline::build_with(&records, &[], &[], 20_000, 60_000);
    assert_eq!(spans_ms(&t), vec![(0, late, L), (late, 20_000, A)]);
    // Stopped before it connected: the run counts as it was.
    let records = journal_ms(
        1,
        &[
            (0, start(true)),
            (1_000, JournalEvent::ProcessStop),
            (2_000, start(true)),
            (2_100, up()),
        ],
    );
    let t = Timeline::build_with(&records, &[], &[], 20_000, 60_000);
    assert_eq!(
        spans_ms(&t),
        vec![
            (0, 1_000, L),
            (1_000, 2_000, O),
            (2_000, 2_100, L),
            (2_100, 20_000, A)
        ]
    );
    // A journal whose start was lost begins where its first record is, as before.
    let records = journal_ms(1, &[(0, heartbeat(false, Silent)), (300, up())]);
    let t = Timeline::build_with(&records, &[], &[], 20_000, 60_000);
    assert_eq!(spans_ms(&t), vec![(0, 300, L), (300, 20_000, A)]);
}

#[test]
fn no_records_no_spans() {
    assert_eq!(Timeline::build(&[], &[], 1_000), Timeline::default());
}

fn amplifier(on: bool) -> JournalEvent {
    JournalEvent::Amplifier {
        output: "box".into(),
        on,
        reason: if on { "lead" } else { "idle" }.into(),
    }
}

#[test]
fn amplifier_hours_are_the_switched_on_stretches_split_by_period() {
    // On 10..40 and 100..130; a crash at 200 after an on at 190 counts until the last record.
    let records = journal(
        3,
        &[
            (0, start(true)),
            (1, up()),
            (10, amplifier(true)),
            (40, amplifier(false)),
            (100, amplifier(true)),
            (110, amplifier(true)),
            (130, amplifier(false)),
            (190, amplifier(true)),
            (200, heartbeat(true, Silent)),
            (300, start(false)),
        ],
    );
    let t = Timeline::build(&records, &[], 400 * MIN);
    let stretches: Vec<(i64, i64)> = t
        .amplifier_on
        .iter()
        .map(|o| (o.start_ms / MIN, o.end_ms / MIN))
        .collect();
    assert_eq!(stretches, vec![(10, 40), (100, 130), (190, 200)]);
    // Two periods split at minute 120: the second stretch counts on both sides.
    let bounds = [(0, 120 * MIN), (120 * MIN, 400 * MIN)];
    let tallies = crate::report::tally(&t, &bounds);
    assert_eq!(tallies[0].amplifier_ms, 50 * MIN);
    assert_eq!(tallies[1].amplifier_ms, 20 * MIN);
    let figures = crate::report::UptimeFigures::from_tally(&tallies[0]).expect("data");
    assert!((figures.amplifier_hours - 50.0 / 60.0).abs() < 1e-9);
}
