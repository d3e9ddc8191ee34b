//! The reports on a hand-computed fixture: three stations over January and February 2025 in
//! Asia/Ho_Chi_Minh, with a power cut, a clean restart, link drops (one across the month
//! boundary), on-air stretches, plays, a programme cut off, odd records, and a station that
//! has no data in January and one that never reported.

use super::*;
use crate::records::uptime_journal::{LinkEvent, ServerRun, StoredRecord};
use jiff::civil::date;
use radio_config::{Station, StationKind};
use radio_proto::{JournalEvent, JournalRecord, OutputState, ProgrammeLevel};

const MIN: f64 = 60.0;

fn district() -> District {
    let station = |id: &str, name: &str| Station {
        id: id.into(),
        name: name.into(),
        kind: StationKind::Wired,
        villages: 1,
        clusters: 1,
        speakers: 1,
    };
    District {
        id: "thu".into(),
        name: "Huyện Thử".into(),
        province: "Quảng Ngãi".into(),
        timezone: "Asia/Ho_Chi_Minh".into(),
        district_station_clusters: 0,
        stations: vec![
            station("a", "Trạm Ánh"),
            station("b", "Trạm Bình"),
            station("c", "Trạm Cũ"),
        ],
    }
}

/// Unix ms of a local time in 2025.
fn at(month: i8, day: i8, hour: i8, minute: i8) -> u64 {
    let tz = crate::schedule::load_timezone("Asia/Ho_Chi_Minh").unwrap();
    date(2025, month, day)
        .at(hour, minute, 0, 0)
        .to_zoned_datetime(tz)
        .unwrap()
        .timestamp()
        .as_millisecond() as u64
}

fn records(journal_id: u64, events: Vec<(u64, JournalEvent)>) -> Vec<StoredRecord> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, (unix_ms, event))| StoredRecord {
            journal_id,
            record: JournalRecord {
                seq: i as u64 + 1,
                unix_ms,
                event,
            },
        })
        .collect()
}

fn start(clean_previous: bool) -> JournalEvent {
    JournalEvent::ProcessStart {
        clean_previous,
        software: "relay-agent/0.1.0".into(),
    }
}

fn up() -> JournalEvent {
    JournalEvent::LinkUp { server_run: 9 }
}

fn down() -> JournalEvent {
    JournalEvent::LinkDown {
        reason: "timed out".into(),
    }
}

fn output(state: OutputState) -> JournalEvent {
    JournalEvent::Output { state }
}

fn heartbeat(output: OutputState) -> JournalEvent {
    JournalEvent::Heartbeat {
        link_up: true,
        output,
        frames_received: 0,
        frames_played: 0,
        frames_lost: 0,
        heartbeats_dropped: 0,
    }
}

fn programme_start(name: &str) -> JournalEvent {
    JournalEvent::ProgrammeStart {
        programme_id: 1,
        name: name.into(),
        level: ProgrammeLevel::Normal,
    }
}

fn programme_end(name: &str, frames_played: u64) -> JournalEvent {
    JournalEvent::ProgrammeEnd {
        programme_id: 1,
        name: name.into(),
        frames_played,
        frames_lost: 500,
    }
}

/// The report is made on 10 March: every record is in the past.
fn now() -> Timestamp {
    Timestamp::from_millisecond(at(3, 10, 0, 0) as i64).unwrap()
}

fn timelines() -> BTreeMap<String, Timeline> {
    use OutputState::{OnAir, Silent};
    // Station a, from 1 January 00:00.
    let a = records(
        11,
        vec![
            (at(1, 1, 0, 0), start(true)),
            // Outage 1: 1 min connecting.
            (at(1, 1, 0, 1), up()),
            (at(1, 10, 5, 0), output(OnAir)),
            (at(1, 10, 5, 0), programme_start("Tiếp sóng Đài tỉnh")),
            // 2 h: 360,000 frames.
            (
                at(1, 10, 7, 0),
                programme_end("Tiếp sóng Đài tỉnh", 360_000),
            ),
            (at(1, 10, 7, 0), output(Silent)),
            // Outage 2: a power cut after 12:00 (the last record of the run), back at 14:00,
            // link at 14:05.
            (at(1, 15, 12, 0), heartbeat(Silent)),
            (at(1, 15, 14, 0), start(false)),
            (at(1, 15, 14, 5), up()),
            // Outage 3: the link down from 31 January 22:00 to 1 February 03:00.
            (at(1, 31, 22, 0), down()),
            (at(2, 1, 3, 0), up()),
            (at(2, 10, 8, 0), programme_start("Bản tin")),
            (at(2, 10, 8, 0), output(OnAir)),
            (at(2, 10, 9, 30), programme_end("Bản tin", 269_500)),
            (at(2, 10, 9, 30), output(Silent)),
            // Outage 4: a clean restart, 30 min off and 1 min connecting.
            (at(2, 20, 10, 0), JournalEvent::ProcessStop),
            (at(2, 20, 10, 30), start(true)),
            (at(2, 20, 10, 31), up()),
            // The last record: available 5 min more (the grace), then unreported (outage 5).
            (at(2, 28, 23, 0), heartbeat(Silent)),
        ],
    );
    // Station b, from 1 February 12:00.
    let b = records(
        22,
        vec![
            (at(2, 1, 12, 0), start(true)),
            (at(2, 1, 12, 0), up()),
            (at(2, 5, 10, 0), heartbeat(Silent)),
            // The clock stepped back a minute: counted at 10:00. 60 min down.
            (at(2, 5, 9, 59), down()),
            (at(2, 5, 11, 0), up()),
            // A LinkDown twice, then up: 60 min down.
            (at(2, 6, 10, 0), down()),
            (at(2, 6, 10, 30), down()),
            (at(2, 6, 11, 0), up()),
            // On air 10 min, then a power cut: the programme has no end (cut off), 50 min off.
            (at(2, 7, 20, 0), programme_start("Bản tin tối")),
            (at(2, 7, 20, 0), output(OnAir)),
            (at(2, 7, 20, 10), heartbeat(OnAir)),
            (at(2, 7, 21, 0), start(false)),
            (at(2, 7, 21, 0), up()),
            // Stopped at 18:00 on the 28th: off, then unreported.
            (at(2, 28, 18, 0), JournalEvent::ProcessStop),
        ],
    );
    let now_ms = now().as_millisecond();
    let mut out = BTreeMap::new();
    out.insert("a".to_owned(), Timeline::build(&a, &[], now_ms));
    // The server's view: it saw b connected, and its session end after the stop.
    let links = [LinkEvent {
        unix_ms: at(2, 28, 18, 1),
        up: false,
        reason: "agent closed".into(),
        server_run: Some(9),
    }];
    out.insert("b".to_owned(), Timeline::build(&b, &links, now_ms));
    out
}

fn request(from: Date, to: Date, by: Granularity) -> ReportRequest {
    ReportRequest::new(from, to, by).unwrap()
}

fn uptime(by: Granularity) -> UptimeReport {
    uptime_report(
        &district(),
        &timelines(),
        &request(date(2025, 1, 1), date(2025, 2, 28), by),
        now(),
    )
    .unwrap()
}

/// Figures in minutes, to compare with the hand computation.
#[derive(Debug, PartialEq)]
struct Minutes {
    known: f64,
    available: f64,
    outages: u64,
    outage_total: f64,
    longest: f64,
    link_down: f64,
    off: f64,
    unreported: f64,
    on_air: f64,
    programmes: u64,
    aired_s: f64,
}

fn minutes(f: &UptimeFigures) -> Minutes {
    Minutes {
        known: f.known_s / MIN,
        available: f.available_s / MIN,
        outages: f.outages,
        outage_total: f.outage_total_s / MIN,
        longest: f.outage_longest_s / MIN,
        link_down: f.link_down_s / MIN,
        off: f.off_s / MIN,
        unreported: f.unreported_s / MIN,
        on_air: f.on_air_s / MIN,
        programmes: f.programmes,
        aired_s: f.aired_s,
    }
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn monthly_figures_match_the_hand_computation() {
    let report = uptime(Granularity::Month);
    let labels: Vec<&str> = report
        .header
        .periods
        .iter()
        .map(|p| p.label.as_str())
        .collect();
    assert_eq!(labels, ["2025-01", "2025-02"]);
    assert_eq!(
        report.header.periods[0].start.to_string(),
        "2024-12-31T17:00:00Z"
    );
    let [a, b, c] = &report.stations[..] else {
        panic!("three stations")
    };
    assert_eq!(
        (a.name.as_str(), b.name.as_str()),
        ("Trạm Ánh", "Trạm Bình")
    );

    // a, January: 31 days known; outages of 1, 125 (off 120 + link 5) and 120 min (the part
    // of the link drop before midnight).
    let jan = a.row.periods[0].as_ref().expect("a has January");
    assert_eq!(
        minutes(jan),
        Minutes {
            known: 31.0 * 1440.0,
            available: 31.0 * 1440.0 - 246.0,
            outages: 3,
            outage_total: 246.0,
            longest: 125.0,
            link_down: 126.0,
            off: 120.0,
            unreported: 0.0,
            on_air: 120.0,
            programmes: 1,
            aired_s: 7200.0,
        }
    );
    assert!(approx(jan.availability_pct, 44_394.0 / 44_640.0 * 100.0));
    assert!(approx(jan.mttr_s.unwrap(), 82.0 * MIN));

    // a, February: the 180 min after midnight, the restart's 31 min, and the 55 min
    // unreported after the grace.
    let feb = a.row.periods[1].as_ref().expect("a has February");
    assert_eq!(
        minutes(feb),
        Minutes {
            known: 28.0 * 1440.0,
            available: 28.0 * 1440.0 - 266.0,
            outages: 3,
            outage_total: 266.0,
            longest: 180.0,
            link_down: 181.0,
            off: 30.0,
            unreported: 55.0,
            on_air: 90.0,
            programmes: 1,
            aired_s: 5390.0,
        }
    );
    assert!(approx(feb.mttr_s.unwrap(), 266.0 / 3.0 * MIN));

    // a, the whole range: the drop across midnight is one outage of 300 min.
    let all = a.row.all.as_ref().expect("a has data");
    assert_eq!(all.outages, 5);
    assert!(approx(all.outage_total_s, 512.0 * MIN));
    assert!(approx(all.outage_longest_s, 300.0 * MIN));
    assert!(approx(all.mttr_s.unwrap(), 102.4 * MIN));

    // b: nothing in January; February from the 1st 12:00 (27.5 days).
    assert_eq!(b.row.periods[0], None);
    let feb = b.row.periods[1].as_ref().expect("b has February");
    assert_eq!(
        minutes(feb),
        Minutes {
            known: 27.5 * 1440.0,
            available: 27.5 * 1440.0 - 530.0,
            outages: 4,
            outage_total: 530.0,
            // The stop on the 28th: off until the server saw the session end a minute
            // later, then nothing more came: unreported.
            longest: 360.0,
            link_down: 120.0,
            off: 51.0,
            unreported: 359.0,
            on_air: 10.0,
            programmes: 0,
            aired_s: 0.0,
        }
    );
    assert_eq!(b.row.all, b.row.periods[1]);

    // c never reported: no figure anywhere.
    assert!(c.row.periods.iter().all(Option::is_none) && c.row.all.is_none());

    // The district: January is a's; February both, weighted by time.
    let total = &report.district_total;
    assert_eq!(total.periods[0], a.row.periods[0]);
    let feb = total.periods[1].as_ref().expect("district February");
    assert_eq!(feb.outages, 7);
    assert!(approx(feb.outage_total_s, 796.0 * MIN));
    assert!(approx(feb.outage_longest_s, 360.0 * MIN));
    assert!(approx(feb.mttr_s.unwrap(), 796.0 / 7.0 * MIN));
    assert!(approx(
        feb.availability_pct,
        (40_054.0 + 39_070.0) / (40_320.0 + 39_600.0) * 100.0
    ));
    assert!(approx(feb.on_air_s, 100.0 * MIN));
    let all = total.all.as_ref().expect("district");
    assert!(approx(
        all.availability_pct,
        (84_448.0 + 39_070.0) / (84_960.0 + 39_600.0) * 100.0
    ));
    assert_eq!(all.outages, 9);
}

#[test]
fn an_outage_across_midnight_is_split_between_the_days() {
    let report = uptime_report(
        &district(),
        &timelines(),
        &request(date(2025, 1, 31), date(2025, 2, 1), Granularity::Day),
        now(),
    )
    .unwrap();
    let a = &report.stations[0].row;
    let jan31 = a.periods[0].as_ref().unwrap();
    let feb1 = a.periods[1].as_ref().unwrap();
    assert_eq!((jan31.outages, feb1.outages), (1, 1));
    assert!(approx(jan31.outage_total_s, 120.0 * MIN));
    assert!(approx(feb1.outage_total_s, 180.0 * MIN));
    assert!(approx(jan31.availability_pct, 1320.0 / 1440.0 * 100.0));
    // b starts at noon on 1 February: half a day known, all of it available.
    let b = &report.stations[1].row;
    assert_eq!(b.periods[0], None);
    let feb1 = b.periods[1].as_ref().unwrap();
    assert!(approx(feb1.known_s, 720.0 * MIN));
    assert!(approx(feb1.availability_pct, 100.0));
    assert_eq!(feb1.outages, 0);
    assert_eq!(feb1.mttr_s, None);
}

#[test]
fn years_without_data_are_null_and_the_future_is_not_counted() {
    let report = uptime_report(
        &district(),
        &timelines(),
        &request(date(2024, 1, 1), date(2026, 12, 31), Granularity::Year),
        now(),
    )
    .unwrap();
    let total = &report.district_total;
    assert_eq!(total.periods[0], None, "2024: no station has data");
    assert_eq!(total.periods[2], None, "2026 is after the report was made");
    // 2025 ends at the report's "now" (10 March): a and b unreported until then.
    let a = report.stations[0].row.periods[1].as_ref().unwrap();
    assert!(approx(a.known_s, (31.0 + 28.0 + 9.0) * 1440.0 * MIN));
    assert!(approx(a.unreported_s, (55.0 + 9.0 * 1440.0) * MIN));
}

#[test]
fn plays_per_programme_and_totals() {
    let report = plays_report(
        &district(),
        &timelines(),
        &request(date(2025, 1, 1), date(2025, 2, 28), Granularity::Month),
        now(),
    )
    .unwrap();
    let a = &report.stations[0].plays;
    let names: Vec<&str> = a.programmes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Bản tin", "Tiếp sóng Đài tỉnh"]);
    let relay = &a.programmes[1].row;
    assert_eq!(
        relay.periods,
        vec![
            Some(PlayFigures {
                plays: 1,
                aired_s: 7200.0,
                cut_off: 0
            }),
            // a has data in February: 0, not "no data".
            Some(PlayFigures::default()),
        ]
    );
    assert_eq!(
        a.total.all,
        Some(PlayFigures {
            plays: 2,
            aired_s: 12_590.0,
            cut_off: 0
        })
    );
    let b = &report.stations[1].plays;
    assert_eq!(b.programmes.len(), 1);
    assert_eq!(b.programmes[0].name, "Bản tin tối");
    assert_eq!(
        b.programmes[0].row.periods,
        vec![
            None,
            Some(PlayFigures {
                plays: 0,
                aired_s: 0.0,
                cut_off: 1
            })
        ]
    );
    assert!(report.stations[2].plays.programmes.is_empty());
    assert_eq!(report.stations[2].plays.total.all, None);
    let district = &report.district_total;
    assert_eq!(district.programmes.len(), 3);
    assert_eq!(
        district.total.periods,
        vec![
            Some(PlayFigures {
                plays: 1,
                aired_s: 7200.0,
                cut_off: 0
            }),
            Some(PlayFigures {
                plays: 1,
                aired_s: 5390.0,
                cut_off: 1
            }),
        ]
    );
}

#[test]
fn csv_has_a_bom_names_and_one_column_per_period() {
    let csv = render::uptime(&uptime(Granularity::Month), Format::Csv).unwrap();
    assert!(csv.as_bytes().starts_with(&[0xEF, 0xBB, 0xBF]));
    let lines: Vec<&str> = csv.split("\r\n").collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("Trạm / station"))
        .unwrap();
    assert_eq!(
        lines[header],
        "Trạm / station,Mã / id,2025-01,2025-02,Cả kỳ / all"
    );
    assert_eq!(lines[header + 1], "Trạm Ánh,a,99.45,99.34,99.40");
    assert_eq!(lines[header + 2], "Trạm Bình,b,—,98.66,98.66");
    assert_eq!(lines[header + 3], "Trạm Cũ,c,—,—,—");
    assert_eq!(
        lines[header + 4],
        "Toàn huyện / district,,99.45,99.00,99.16"
    );
    // The MTTR section: empty where there was no outage, "—" where no data.
    let mttr = lines.iter().position(|l| l.contains("MTTR")).unwrap();
    assert_eq!(lines[mttr + 2], "Trạm Ánh,a,1.37,1.48,1.71");
    let json = render::uptime(&uptime(Granularity::Month), Format::Json).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["stations"][1]["periods"][0], serde_json::Value::Null);
    assert_eq!(value["stations"][0]["name"], "Trạm Ánh");
    assert_eq!(value["periods"][1]["label"], "2025-02");
    let table = render::uptime(&uptime(Granularity::Month), Format::Table).unwrap();
    assert!(table.contains("Trạm Cũ"), "{table}");
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn refused(pairs: &[(&str, &str)]) -> String {
    ReportQuery::from_params(&params(pairs), Format::Json)
        .expect_err("refused")
        .to_string()
}

#[test]
fn parameters_are_checked_and_named() {
    let query = ReportQuery::from_params(
        &params(&[("from", "2021-01-01"), ("to", "2025-12-31")]),
        Format::Json,
    )
    .unwrap();
    assert_eq!(query.request.by, Granularity::Year);
    assert_eq!(query.format, Format::Json);
    assert_eq!(
        query.to_query_string(),
        "from=2021-01-01&to=2025-12-31&by=year&format=json"
    );
    assert!(refused(&[("to", "2025-12-31")]).starts_with("parameter `from`: missing"));
    assert!(refused(&[("from", "2025-13-01"), ("to", "2025-12-31")])
        .starts_with("parameter `from`: `2025-13-01` is not a date"));
    assert!(refused(&[("from", "2025-02-01"), ("to", "2025-01-31")])
        .starts_with("parameter `from`: 2025-02-01 is after `to`"));
    assert!(
        refused(&[("from", "2025-01-01"), ("to", "2025-01-31"), ("by", "week")])
            .starts_with("parameter `by`: `week` is not one of day, month, year")
    );
    assert!(refused(&[
        ("from", "2025-01-01"),
        ("to", "2025-01-31"),
        ("format", "xlsx")
    ])
    .starts_with("parameter `format`:"));
    assert!(refused(&[("form", "2025-01-01")]).starts_with("parameter `form`: unknown"));
    assert!(refused(&[("from", "2025-01-01"), ("from", "2025-01-02")])
        .starts_with("parameter `from`: given more than once"));
    let message = refused(&[("from", "x\ny"), ("to", "2025-01-01")]);
    assert!(!message.contains('\n'), "{message}");
}

#[test]
fn periods_are_clipped_to_the_range_and_bounded() {
    let tz = crate::schedule::load_timezone("Asia/Ho_Chi_Minh").unwrap();
    let (periods, whole) = periods(
        &request(date(2025, 1, 15), date(2025, 3, 10), Granularity::Month),
        &tz,
    )
    .unwrap();
    let labels: Vec<&str> = periods.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["2025-01", "2025-02", "2025-03"]);
    assert_eq!(periods[0].start.to_string(), "2025-01-14T17:00:00Z");
    assert_eq!(periods[0].end, periods[1].start);
    assert_eq!(periods[2].end.to_string(), "2025-03-10T17:00:00Z");
    assert_eq!((whole.start, whole.end), (periods[0].start, periods[2].end));
    let err = super::periods(
        &request(date(2000, 1, 1), date(2025, 1, 1), Granularity::Day),
        &tz,
    )
    .expect_err("too many");
    assert!(err.to_string().starts_with("parameter `by`:"), "{err}");
}

/// Station a on 1 January, linked from midnight; its last record is a heartbeat at 10:00 (its
/// later records never came). Server run 5 saw the session start and was killed, writing no
/// session end; its last alive mark is 10:01; run 6 started at 12:00.
fn crashed_server_day(runs: &[ServerRun]) -> UptimeFigures {
    let a = records(
        1,
        vec![
            (at(1, 1, 0, 0), start(true)),
            (at(1, 1, 0, 0), up()),
            (at(1, 1, 10, 0), heartbeat(OutputState::Silent)),
        ],
    );
    let links = [LinkEvent {
        unix_ms: at(1, 1, 0, 0),
        up: true,
        reason: String::new(),
        server_run: Some(5),
    }];
    let now = Timestamp::from_millisecond(at(1, 2, 0, 0) as i64).unwrap();
    let timeline = Timeline::build_with(
        &a,
        &links,
        runs,
        now.as_millisecond(),
        timeline::REPORTING_GRACE_MS,
    );
    let timelines = BTreeMap::from([("a".to_owned(), timeline)]);
    let report = uptime_report(
        &district(),
        &timelines,
        &request(date(2025, 1, 1), date(2025, 1, 1), Granularity::Day),
        now,
    )
    .unwrap();
    report.stations[0].row.periods[0].clone().unwrap()
}

#[test]
fn a_session_of_a_crashed_server_is_not_available_after_the_server_s_last_sign_of_life() {
    let run = |run_id, started_ms, alive_ms| ServerRun {
        run_id,
        started_ms,
        alive_ms,
    };
    let runs = [
        run(5, at(1, 1, 0, 0) - 3_600_000, at(1, 1, 10, 1)),
        run(6, at(1, 1, 12, 0), at(1, 1, 23, 59)),
    ];
    let day = crashed_server_day(&runs);
    assert_eq!(
        (day.outages, day.available_s / MIN, day.unreported_s / MIN),
        (1, 601.0, 839.0)
    );
    // While run 5 is the newest run it is the one making the report: its session may be open,
    // so the station's last state lasts the usual 5 minutes.
    let day = crashed_server_day(&runs[..1]);
    assert_eq!(
        (day.outages, day.available_s / MIN, day.unreported_s / MIN),
        (1, 605.0, 835.0)
    );
}

fn cluster(id: &str, state: radio_proto::ClusterState) -> JournalEvent {
    JournalEvent::Cluster {
        cluster: id.into(),
        state,
        reason: "test".into(),
    }
}

/// Station a (three clusters) on 1 January: its agent watches c02, whose receiver is down
/// 00:00–01:00 and from 02:00 until the agent stops at 02:30; it also names c07, which the
/// configuration does not have. The agent runs again 03:00–04:00, c02 not reported down.
#[test]
fn cluster_rows_take_the_receiver_s_down_time_out_of_the_station_s_available_time() {
    use radio_proto::ClusterState::{Down, Up};
    let mut district = district();
    district.stations[0].clusters = 3;
    district.stations[0].speakers = 3;
    let a = records(
        1,
        vec![
            (at(1, 1, 0, 0), start(true)),
            (at(1, 1, 0, 0), up()),
            (at(1, 1, 0, 0), cluster("c02", Down)),
            (at(1, 1, 0, 0), cluster("c07", Up)),
            (at(1, 1, 1, 0), cluster("c02", Up)),
            (at(1, 1, 2, 0), cluster("c02", Down)),
            (at(1, 1, 2, 30), JournalEvent::ProcessStop),
            (at(1, 1, 3, 0), start(true)),
            (at(1, 1, 3, 0), up()),
            (at(1, 1, 4, 0), JournalEvent::ProcessStop),
        ],
    );
    let timelines = BTreeMap::from([(
        "a".to_owned(),
        Timeline::build(&a, &[], now().as_millisecond()),
    )]);
    let mut request = request(date(2025, 1, 1), date(2025, 1, 1), Granularity::Day);
    let report = uptime_report(&district, &timelines, &request, now()).unwrap();
    assert!(report.stations[0].clusters.is_empty(), "only when asked");
    request.clusters = true;
    let report = uptime_report(&district, &timelines, &request, now()).unwrap();
    let station = &report.stations[0];
    let ids: Vec<(&str, bool, bool)> = station
        .clusters
        .iter()
        .map(|c| (c.id.as_str(), c.watched, c.unconfigured))
        .collect();
    assert_eq!(
        ids,
        [
            ("a/c01", false, false),
            ("a/c02", true, false),
            ("a/c03", false, false),
            ("a/c07", true, true)
        ]
    );
    let s = station.row.all.clone().unwrap();
    assert_eq!(s.available_s / MIN, 210.0);
    assert_eq!(s.cluster_down_s, 0.0);
    // Followers and a cluster never down have the station's figures.
    assert_eq!(station.clusters[0].row, station.row);
    assert_eq!(station.clusters[2].row, station.row);
    assert_eq!(station.clusters[3].row, station.row);
    let c02 = station.clusters[1].row.all.clone().unwrap();
    assert_eq!(c02.known_s, s.known_s);
    assert_eq!(c02.cluster_down_s / MIN, 90.0);
    assert_eq!(c02.available_s / MIN, 120.0);
    // 00:00–01:00 is an outage of its own; 02:00–02:30 joins the station's 02:30–03:00.
    assert_eq!(c02.outages, s.outages + 1);
    assert_eq!((c02.outage_total_s - s.outage_total_s) / MIN, 90.0);
    assert_eq!(
        c02.outage_longest_s / MIN,
        60.0_f64.max(s.outage_longest_s / MIN)
    );

    let csv = render::uptime(&report, Format::Csv).unwrap();
    assert!(csv.contains("Trạm Ánh · cụm c02,a/c02,"), "{csv}");
    assert!(
        csv.contains("Trạm Ánh · cụm c01 (theo đài / follows the station),a/c01,"),
        "{csv}"
    );
    assert!(csv.contains("cụm c07 (không có trong cấu hình"), "{csv}");
    // The plays report refuses the option rather than ignoring it.
    let err = plays_report(&district, &timelines, &request, now()).unwrap_err();
    assert!(err.to_string().contains("clusters"), "{err}");
}

#[test]
fn the_clusters_parameter_is_parsed_and_written_back() {
    let params = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        [("from", "2025-01-01"), ("to", "2025-01-31")]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let q = ReportQuery::from_params(&params(&[("clusters", "true")]), Format::Json).unwrap();
    assert!(q.request.clusters);
    assert!(q.to_query_string().ends_with("&clusters=true"));
    let back = url_pairs(&q.to_query_string());
    assert_eq!(ReportQuery::from_params(&back, Format::Json).unwrap(), q);
    let q = ReportQuery::from_params(&params(&[]), Format::Json).unwrap();
    assert!(!q.request.clusters && !q.to_query_string().contains("clusters"));
    let err = ReportQuery::from_params(&params(&[("clusters", "yes")]), Format::Json).unwrap_err();
    assert!(
        err.to_string().starts_with("parameter `clusters`:"),
        "{err}"
    );
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
