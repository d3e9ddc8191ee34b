//! The five-year review, end to end: five years (2021–2025) of journal records for all 22
//! Bình Sơn stations are written into a real store, the real server runs on it, and the real
//! `radio-server report uptime --by year` prints one row per station with its Vietnamese name,
//! one column per year and the district — numbers equal to the closed-form expectation below.
//!
//! The generated history, per station `i` (0–21), in Asia/Ho_Chi_Minh local time:
//! - installed 2021-01-01 00:00, or 2023-01-01 00:00 for every fifth station (i = 4, 9, 14,
//!   19: no 2021 or 2022 figure); started and linked at that instant;
//! - every day, the provincial relay on air 05:00–07:00: a programme of 360,000 frames (2 h);
//! - on the 10th of every month, a power cut at 10:00 (the run's last record is a heartbeat
//!   then), back after `(i + 1) × 5` min, link 2 min after that;
//! - on the 20th of every month, the link down at 14:00 for `(year − 2020) × 10` min;
//! - station 0 (Thị trấn Châu Ổ): also the link down from 2023-12-31 22:00 to 2024-01-01
//!   03:00 (2 h in 2023, 3 h in 2024, one outage on each side);
//! - station 1 (Bình Trung): reinstalled on 2024-06-01 — its journal stops at 00:00, a new
//!   journal (with a lower id) starts at 01:00 (a 1 h outage);
//! - every station stops cleanly at 2026-01-01 00:00.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use jiff::civil::{date, Date};
use jiff::tz::TimeZone;
use radio_config::District;
use radio_proto::{JournalBatch, JournalEvent, JournalRecord, OutputState, ProgrammeLevel};
use radio_server::records::store::Store;
use radio_tests::{binary, start_server_with};

const YEARS: [i16; 5] = [2021, 2022, 2023, 2024, 2025];
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const RELAY: &str = "Tiếp sóng Đài Quảng Ngãi";
const RELAY_FRAMES: u64 = 360_000;

fn tz() -> TimeZone {
    TimeZone::get("Asia/Ho_Chi_Minh").expect("zone")
}

/// Unix ms of a local time.
fn local(tz: &TimeZone, day: Date, hour: i8, minute: i8) -> i64 {
    day.at(hour, minute, 0, 0)
        .to_zoned_datetime(tz.clone())
        .expect("local time")
        .timestamp()
        .as_millisecond()
}

fn installed(i: usize) -> i16 {
    if i % 5 == 4 {
        2023
    } else {
        2021
    }
}

fn power_cut_ms(i: usize) -> i64 {
    (i as i64 + 1) * 5 * MIN
}

fn link_drop_ms(year: i16) -> i64 {
    i64::from(year - 2020) * 10 * MIN
}

/// Station `i`'s events in time order, with the journal each belongs to.
fn history(tz: &TimeZone, i: usize) -> Vec<(u64, i64, JournalEvent)> {
    let start = |clean_previous| JournalEvent::ProcessStart {
        clean_previous,
        software: "relay-agent/0.1.0".into(),
    };
    let up = || JournalEvent::LinkUp { server_run: 1 };
    let down = || JournalEvent::LinkDown {
        reason: "timed out".into(),
    };
    let heartbeat = || JournalEvent::Heartbeat {
        link_up: true,
        output: OutputState::Silent,
        frames_received: 0,
        frames_played: 0,
        frames_lost: 0,
        heartbeats_dropped: 0,
    };
    let old_journal = 1_000 + i as u64;
    let mut journal = old_journal;
    let mut out = Vec::new();
    let mut day = date(installed(i), 1, 1);
    let t0 = local(tz, day, 0, 0);
    out.push((journal, t0, start(true)));
    out.push((journal, t0, up()));
    let end = date(2026, 1, 1);
    while day < end {
        if i == 1 && day == date(2024, 6, 1) {
            out.push((journal, local(tz, day, 0, 0), JournalEvent::ProcessStop));
            journal = 5;
            out.push((journal, local(tz, day, 1, 0), start(true)));
            out.push((journal, local(tz, day, 1, 0), up()));
        }
        if i == 0 && day == date(2024, 1, 1) {
            out.push((journal, local(tz, day, 3, 0), up()));
        }
        let five = local(tz, day, 5, 0);
        let seven = local(tz, day, 7, 0);
        out.push((
            journal,
            five,
            JournalEvent::ProgrammeStart {
                programme_id: 7,
                name: RELAY.into(),
                level: ProgrammeLevel::Normal,
            },
        ));
        out.push((
            journal,
            five,
            JournalEvent::Output {
                state: OutputState::OnAir,
            },
        ));
        out.push((
            journal,
            seven,
            JournalEvent::ProgrammeEnd {
                programme_id: 7,
                name: RELAY.into(),
                frames_played: RELAY_FRAMES,
                frames_lost: 12,
            },
        ));
        out.push((
            journal,
            seven,
            JournalEvent::Output {
                state: OutputState::Silent,
            },
        ));
        if day.day() == 10 {
            let cut = local(tz, day, 10, 0);
            out.push((journal, cut, heartbeat()));
            out.push((journal, cut + power_cut_ms(i), start(false)));
            out.push((journal, cut + power_cut_ms(i) + 2 * MIN, up()));
        }
        if day.day() == 20 {
            let drop = local(tz, day, 14, 0);
            out.push((journal, drop, down()));
            out.push((journal, drop + link_drop_ms(day.year()), up()));
        }
        if i == 0 && day == date(2023, 12, 31) {
            out.push((journal, local(tz, day, 22, 0), down()));
        }
        day = day.tomorrow().expect("tomorrow");
    }
    out.push((journal, local(tz, end, 0, 0), JournalEvent::ProcessStop));
    out
}

/// Writes every station's history into the store in `data_dir`, as agents upload it:
/// batches of at most 64 consecutive records per journal.
fn generate(data_dir: &Path, district: &District) -> usize {
    let tz = tz();
    let store = Store::open(data_dir).expect("store");
    let uptime = store.uptime();
    let mut total = 0;
    for (i, station) in district.stations.iter().enumerate() {
        let events = history(&tz, i);
        total += events.len();
        let mut journals: Vec<(u64, Vec<JournalRecord>)> = Vec::new();
        for (journal, at, event) in events {
            if journals.last().is_none_or(|(id, _)| *id != journal) {
                journals.push((journal, Vec::new()));
            }
            let records = &mut journals.last_mut().expect("journal").1;
            records.push(JournalRecord {
                seq: records.len() as u64 + 1,
                unix_ms: at as u64,
                event,
            });
        }
        for (journal_id, records) in journals {
            for chunk in records.chunks(JournalBatch::MAX_RECORDS) {
                let batch = JournalBatch {
                    journal_id,
                    records: chunk.to_vec(),
                };
                uptime.store_batch(&station.id, &batch).expect("store");
            }
        }
    }
    total
}

/// One station-year, computed from the history's description.
#[derive(Debug, Clone, Copy, Default)]
struct Expected {
    known_ms: i64,
    outages: u64,
    outage_ms: i64,
    longest_ms: i64,
    on_air_ms: i64,
    programmes: u64,
}

impl Expected {
    fn available_ms(&self) -> i64 {
        self.known_ms - self.outage_ms
    }

    fn outage(&mut self, ms: i64) {
        self.outages += 1;
        self.outage_ms += ms;
        self.longest_ms = self.longest_ms.max(ms);
    }
}

fn days_in(year: i16) -> i64 {
    i64::from(date(year, 1, 1).days_in_year())
}

fn expected(i: usize, year: i16) -> Option<Expected> {
    if year < installed(i) {
        return None;
    }
    let days = days_in(year);
    let mut e = Expected {
        known_ms: days * 24 * HOUR,
        on_air_ms: days * 2 * HOUR,
        programmes: days as u64,
        ..Expected::default()
    };
    for _ in 0..12 {
        e.outage(power_cut_ms(i) + 2 * MIN);
        e.outage(link_drop_ms(year));
    }
    match (i, year) {
        (0, 2023) => e.outage(2 * HOUR),
        (0, 2024) => e.outage(3 * HOUR),
        (1, 2024) => e.outage(HOUR),
        _ => {}
    }
    Some(e)
}

fn pct(e: &Expected) -> String {
    format!("{:.2}", e.available_ms() as f64 * 100.0 / e.known_ms as f64)
}

fn hours(ms: i64) -> String {
    format!("{:.2}", ms as f64 / HOUR as f64)
}

/// How a section writes one figure.
type Cell = fn(&Expected) -> String;

/// The expected CSV row of a section for a station (or the district), years then the range.
fn expected_row(
    name: &str,
    id: &str,
    years: &[Option<Expected>],
    all: Option<Expected>,
    cell: Cell,
) -> String {
    let mut cells = vec![name.to_owned(), id.to_owned()];
    for e in years.iter().chain([&all]) {
        cells.push(e.as_ref().map_or_else(|| "—".to_owned(), cell));
    }
    cells.join(",")
}

fn sum(items: impl Iterator<Item = Expected>) -> Option<Expected> {
    let mut total: Option<Expected> = None;
    for e in items {
        let t = total.get_or_insert_with(Expected::default);
        t.known_ms += e.known_ms;
        t.outages += e.outages;
        t.outage_ms += e.outage_ms;
        t.longest_ms = t.longest_ms.max(e.longest_ms);
        t.on_air_ms += e.on_air_ms;
        t.programmes += e.programmes;
    }
    total
}

/// A station's whole range: its years summed, with station 0's outage across the new year
/// counted once (2 h + 3 h).
fn whole(i: usize) -> Option<Expected> {
    let mut all = sum(YEARS.iter().filter_map(|y| expected(i, *y)))?;
    if i == 0 {
        all.outages -= 1;
        all.longest_ms = all.longest_ms.max(5 * HOUR);
    }
    Some(all)
}

/// The lines of the section of `csv` whose title starts with `title`: header, stations,
/// district.
fn section<'a>(lines: &[&'a str], title: &str) -> Vec<&'a str> {
    let at = lines
        .iter()
        .position(|l| l.starts_with(title))
        .unwrap_or_else(|| panic!("no section {title:?} in:\n{}", lines.join("\n")));
    lines[at + 1..]
        .iter()
        .take_while(|l| !l.is_empty())
        .copied()
        .collect()
}

fn report(data_dir: &Path, admin: &str, args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let output = Command::new(binary("radio-server"))
        .args(["report"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--admin-listen", admin])
        .output()
        .expect("run radio-server report");
    assert!(
        output.status.success(),
        "report {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8(output.stdout).expect("UTF-8"),
        started.elapsed(),
    )
}

#[test]
fn five_year_review_by_year_in_csv_json_and_table() {
    let district = District::binh_son();
    assert_eq!(district.stations.len(), 22);
    // Build first: the build must not count against the server's start-up wait.
    binary("radio-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let records = generate(dir.path(), &district);
    eprintln!(
        "generated {records} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let (mut server, _) = start_server_with(
        dir.path(),
        "127.0.0.1:0",
        &["--no-schedule", "--log", "warn"],
    );
    let admin = server.admin_address();

    let (csv, took) = report(
        dir.path(),
        &admin,
        &[
            "uptime",
            "--from",
            "2021-01-01",
            "--to",
            "2025-12-31",
            "--by",
            "year",
            "--format",
            "csv",
        ],
    );
    eprintln!("report uptime --format csv: {:.1} s", took.as_secs_f64());
    // UTF-8 with a byte order mark: Excel shows the diacritics.
    assert!(
        csv.as_bytes().starts_with(&[0xEF, 0xBB, 0xBF]),
        "no BOM: {:?}",
        &csv.as_bytes()[..8]
    );
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert!(lines[0].contains("Huyện Bình Sơn"), "{}", lines[0]);

    let years: Vec<Vec<Option<Expected>>> = (0..22)
        .map(|i| YEARS.iter().map(|y| expected(i, *y)).collect())
        .collect();
    let district_years: Vec<Option<Expected>> = (0..YEARS.len())
        .map(|y| sum((0..22).filter_map(|i| years[i][y])))
        .collect();
    let district_all = sum((0..22).filter_map(whole));
    let checks: [(&str, Cell); 6] = [
        ("Tỷ lệ hoạt động (%)", pct),
        ("Số lần gián đoạn", |e| e.outages.to_string()),
        ("Tổng thời gian gián đoạn", |e| hours(e.outage_ms)),
        ("Lần gián đoạn dài nhất", |e| hours(e.longest_ms)),
        ("Số giờ phát sóng", |e| hours(e.on_air_ms)),
        ("Số chương trình đã phát", |e| {
            e.programmes.to_string()
        }),
    ];
    for (title, cell) in checks {
        let rows = section(&lines, title);
        assert_eq!(
            rows[0], "Trạm / station,Mã / id,2021,2022,2023,2024,2025,Cả kỳ / all",
            "{title}"
        );
        // One row per station, in the district's order, then the district.
        assert_eq!(rows.len(), 1 + 22 + 1, "{title}: {rows:#?}");
        for (i, station) in district.stations.iter().enumerate() {
            assert_eq!(
                rows[1 + i],
                expected_row(&station.name, &station.id, &years[i], whole(i), cell),
                "{title}"
            );
        }
        assert_eq!(
            rows[23],
            expected_row(
                "Toàn huyện / district",
                "",
                &district_years,
                district_all,
                cell
            ),
            "{title}"
        );
    }
    // The names as they are, with their diacritics; a late station has no early figure.
    let availability = section(&lines, "Tỷ lệ hoạt động (%)");
    assert!(availability[1].starts_with("Thị trấn Châu Ổ,thi-tran-chau-o,"));
    assert!(
        availability[5].starts_with(&format!(
            "{},{},—,—,",
            district.stations[4].name, district.stations[4].id
        )),
        "{}",
        availability[5]
    );

    // JSON: parses, same figures.
    let (json, _) = report(
        dir.path(),
        &admin,
        &[
            "uptime",
            "--from",
            "2021-01-01",
            "--to",
            "2025-12-31",
            "--format",
            "json",
        ],
    );
    let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(value["stations"].as_array().map(Vec::len), Some(22));
    assert_eq!(value["stations"][0]["name"], "Thị trấn Châu Ổ");
    assert_eq!(value["stations"][4]["periods"][0], serde_json::Value::Null);
    let e = expected(0, 2024).expect("2024");
    assert_eq!(
        value["stations"][0]["periods"][3]["outages"].as_u64(),
        Some(e.outages)
    );
    assert_eq!(
        value["stations"][0]["periods"][3]["outage_longest_s"].as_f64(),
        Some(3.0 * 3600.0)
    );
    assert_eq!(
        value["district_total"]["periods"][4]["programmes"].as_u64(),
        district_years[4].map(|e| e.programmes)
    );

    // The table prints, one line per station in every section.
    let (table, _) = report(
        dir.path(),
        &admin,
        &["uptime", "--from", "2021-01-01", "--to", "2025-12-31"],
    );
    assert!(table.contains("Thị trấn Châu Ổ"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("Thị trấn Châu Ổ"))
        .expect("a row");
    assert!(row.ends_with(&pct(&whole(0).expect("data"))), "{row}");

    // Plays: the relay at every station, every day it had data.
    let (plays, _) = report(
        dir.path(),
        &admin,
        &[
            "plays",
            "--from",
            "2025-01-01",
            "--to",
            "2025-12-31",
            "--by",
            "month",
            "--format",
            "csv",
        ],
    );
    let lines: Vec<&str> = plays.split("\r\n").collect();
    let rows = section(&lines, "Số lần phát");
    let relay = rows
        .iter()
        .find(|l| l.starts_with(&format!("Toàn huyện / district,,{RELAY},thường / normal,")))
        .expect("the district's relay row");
    // January: 31 days × 22 stations; the whole year: 365 × 22.
    assert!(relay.contains(&format!(",{},", 31 * 22)), "{relay}");
    assert!(relay.ends_with(&format!(",{}", 365 * 22)), "{relay}");
    let seconds = section(&lines, "Số giây đã phát");
    assert!(
        seconds.iter().any(|l| *l
            == format!("Bình Trung,binh-trung,{RELAY},thường / normal,{}", {
                let months = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
                months
                    .iter()
                    .map(|d| format!("{:.2}", f64::from(*d) * 7200.0))
                    .chain([format!("{:.2}", 365.0 * 7200.0)])
                    .collect::<Vec<_>>()
                    .join(",")
            })),
        "{seconds:#?}"
    );
    let (status, _) = server.terminate();
    assert!(status.success(), "server exit: {status}");
    eprintln!("whole test: {:.1} s", started.elapsed().as_secs_f64());
}
