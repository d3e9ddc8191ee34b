//! Timed entries turned into real instants.
//!
//! Entries are written in wall-clock time of the schedule's zone; every occurrence is computed
//! per local date with jiff's `ZonedDateTime`, never with a fixed UTC offset, so a zone that
//! observes daylight saving time gets the right instants on both sides of a transition.
//!
//! Local times that do not exist or exist twice are handled the way a wall clock would:
//! - a time skipped by a spring-forward gap happens when the clock jumps past it: on the night
//!   Berlin jumps from 02:00 to 03:00, a 02:30 slot starts at 03:00 (CEST);
//! - a time repeated by a fall-back fold is taken the first time it happens (the slot airs once,
//!   not twice);
//! - an occurrence that is left with no time at all (start and end both inside the gap, end
//!   given as a wall-clock `at`) does not air that day;
//! - `end = { duration = … }` is elapsed time from the (possibly moved) start; `end = { at = … }`
//!   is a wall-clock time, so on a transition day the slot is an hour shorter or longer.
//!
//! Vietnam has used UTC+7 without daylight saving since 1975, so none of this happens in
//! Asia/Ho_Chi_Minh; it matters only if the server is set to another zone.

use std::collections::BTreeSet;

use jiff::civil::{self, Date};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use radio_config::District;

use super::validate::{validate, Overlap};
use super::{
    load_timezone, EntryEnd, Level, ResolvedTargets, Schedule, ScheduleEntry, ScheduleError,
};

/// Entries last at most 24 h of wall-clock time, plus at most a day of offset change: an entry
/// that started two local dates ago is the earliest one that can still be running.
const LOOKBACK_DAYS: usize = 2;
/// A weekly slot recurs within 7 days; 15 covers one lost to a DST gap as well.
const LOOKAHEAD_DAYS: usize = 15;

/// One airing of a timed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub entry_id: String,
    pub start: Timestamp,
    /// Exclusive: at `end` the entry is no longer on air.
    pub end: Timestamp,
    pub level: Level,
    pub stations: BTreeSet<String>,
}

impl Occurrence {
    /// Half-open `[start, end)`: at the instant one slot ends the next may begin.
    pub fn covers(&self, now: Timestamp) -> bool {
        self.start <= now && now < self.end
    }

    /// Elapsed length, which on a DST transition day can differ from the wall-clock length.
    pub fn length(&self) -> SignedDuration {
        self.end.duration_since(self.start)
    }
}

/// A validated schedule with its zone and resolved targets, answering "what is on when".
#[derive(Debug, Clone)]
pub struct Scheduler {
    schedule: Schedule,
    tz: TimeZone,
    targets: Vec<ResolvedTargets>,
    overlaps: Vec<Overlap>,
}

impl Scheduler {
    /// Validates everything except file existence (files may appear later; check them at load
    /// time with [`validate`] and a real `file_exists`).
    pub fn new(schedule: Schedule, district: &District) -> Result<Self, ScheduleError> {
        let overlaps = validate(&schedule, district, &|_| true)?;
        let tz = load_timezone(&schedule.timezone)?;
        let targets = schedule
            .entries
            .iter()
            .map(|e| e.targets.resolve_detailed(district, &schedule.groups))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scheduler {
            schedule,
            tz,
            targets,
            overlaps,
        })
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// Different-level overlaps found by validation (same-level ones are errors).
    pub fn overlaps(&self) -> &[Overlap] {
        &self.overlaps
    }

    pub fn entry(&self, id: &str) -> Option<&ScheduleEntry> {
        self.schedule.entry(id)
    }

    /// Resolved targets of an entry, with cluster detail.
    pub fn targets(&self, id: &str) -> Option<&ResolvedTargets> {
        let index = self.schedule.entries.iter().position(|e| e.id == id)?;
        self.targets.get(index)
    }

    /// Occurrences that are on air at some instant of `[from, to)`, sorted by start, then id.
    pub fn occurrences(&self, from: Timestamp, to: Timestamp) -> Vec<Occurrence> {
        if to <= from {
            return Vec::new();
        }
        self.collect(from, to, |o| o.start < to && o.end > from)
    }

    /// Occurrences covering `now` (started at or before it, ending after it).
    pub fn active(&self, now: Timestamp) -> Vec<Occurrence> {
        self.collect(now, now, |o| o.covers(now))
    }

    /// The next instant strictly after `now` at which some occurrence starts or ends: what the
    /// runtime sleeps until. `None` when nothing is left (only past one-off entries).
    pub fn next_boundary(&self, now: Timestamp) -> Option<Timestamp> {
        let today = self.local_date(now);
        let days = days_from(back(today, LOOKBACK_DAYS), LOOKBACK_DAYS + LOOKAHEAD_DAYS);
        let mut next: Option<Timestamp> = None;
        for index in 0..self.schedule.entries.len() {
            let dates: Vec<Date> = match &self.schedule.entries[index].recurrence {
                super::Recurrence::Once { date } => vec![*date],
                _ => days.clone(),
            };
            for date in dates {
                if let Some(o) = self.occurrence_on(index, date) {
                    for t in [o.start, o.end] {
                        if t > now && next.is_none_or(|n| t < n) {
                            next = Some(t);
                        }
                    }
                }
            }
        }
        next
    }

    fn collect(
        &self,
        from: Timestamp,
        to: Timestamp,
        keep: impl Fn(&Occurrence) -> bool,
    ) -> Vec<Occurrence> {
        let first = back(self.local_date(from), LOOKBACK_DAYS);
        let last = self.local_date(to);
        let mut out = Vec::new();
        let mut date = first;
        while date <= last {
            for index in 0..self.schedule.entries.len() {
                if let Some(o) = self.occurrence_on(index, date) {
                    if keep(&o) {
                        out.push(o);
                    }
                }
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        out.sort_by(|a, b| (a.start, &a.entry_id).cmp(&(b.start, &b.entry_id)));
        out
    }

    fn local_date(&self, t: Timestamp) -> Date {
        self.tz.to_datetime(t).date()
    }

    /// The occurrence of entry `index` that starts on local `date`, if the entry airs that day.
    fn occurrence_on(&self, index: usize, date: Date) -> Option<Occurrence> {
        let entry = self.schedule.entries.get(index)?;
        if !entry.recurrence.matches(date) {
            return None;
        }
        let start = self.instant(date.to_datetime(entry.start))?;
        let end = match entry.end {
            EntryEnd::At(end_time) => {
                let end_date = if end_time > entry.start {
                    date
                } else {
                    date.tomorrow().ok()?
                };
                self.instant(end_date.to_datetime(end_time))?
            }
            EntryEnd::Duration(d) => start.checked_add(d).ok()?,
        };
        // A slot swallowed by a spring-forward gap has nothing left to air.
        if end <= start {
            return None;
        }
        Some(Occurrence {
            entry_id: entry.id.clone(),
            start,
            end,
            level: entry.level,
            stations: self
                .targets
                .get(index)
                .map(|t| t.stations.clone())
                .unwrap_or_default(),
        })
    }

    /// Wall-clock time to instant (see the module docs for skipped and repeated times).
    fn instant(&self, dt: civil::DateTime) -> Option<Timestamp> {
        let zoned = self.tz.to_ambiguous_zoned_datetime(dt);
        match zoned.offset() {
            AmbiguousOffset::Gap { .. } => {
                // Read with the offset in force after the jump, a skipped time lands just
                // before the jump; the jump itself is the first instant the clock is past it.
                let before_jump = zoned.earlier().ok()?.timestamp();
                self.tz.following(before_jump).next().map(|t| t.timestamp())
            }
            AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => {
                zoned.earlier().ok().map(|z| z.timestamp())
            }
        }
    }
}

/// `date` minus `days`, stopping at the calendar's start rather than failing.
fn back(date: Date, days: usize) -> Date {
    let mut d = date;
    for _ in 0..days {
        match d.yesterday() {
            Ok(prev) => d = prev,
            Err(_) => break,
        }
    }
    d
}

fn days_from(first: Date, count: usize) -> Vec<Date> {
    let mut out = Vec::with_capacity(count + 1);
    let mut d = first;
    for _ in 0..=count {
        out.push(d);
        match d.tomorrow() {
            Ok(next) => d = next,
            Err(_) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Recurrence, SourceSpec, Targets};
    use super::*;
    use jiff::civil::{date, time, Weekday};

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp literal")
    }

    fn entry(id: &str, recurrence: Recurrence, start: civil::Time, end: EntryEnd) -> ScheduleEntry {
        ScheduleEntry {
            id: id.to_owned(),
            name: format!("Chương trình {id}"),
            recurrence,
            start,
            end,
            source: SourceSpec::Live,
            targets: Targets::All,
            level: Level::Normal,
        }
    }

    fn scheduler(timezone: &str, entries: Vec<ScheduleEntry>) -> Scheduler {
        let schedule = Schedule {
            timezone: timezone.to_owned(),
            entries,
            ..Schedule::default()
        };
        Scheduler::new(schedule, &District::binh_son()).expect("valid schedule")
    }

    fn spans(occ: &[Occurrence]) -> Vec<(String, Timestamp, Timestamp)> {
        occ.iter()
            .map(|o| (o.entry_id.clone(), o.start, o.end))
            .collect()
    }

    #[test]
    fn binh_son_relay_slots_hit_the_right_utc_instants() {
        let s = Scheduler::new(Schedule::binh_son_default(), &District::binh_son()).expect("ok");
        // Local day 2025-06-01 in Asia/Ho_Chi_Minh (UTC+7) is 2025-05-31T17:00Z..2025-06-01T17:00Z.
        let occ = s.occurrences(ts("2025-05-31T17:00:00Z"), ts("2025-06-01T17:00:00Z"));
        assert_eq!(
            spans(&occ),
            vec![
                (
                    "tiep-song-sang".into(),
                    ts("2025-05-31T22:00:00Z"),
                    ts("2025-06-01T00:00:00Z")
                ),
                (
                    "tiep-song-chieu".into(),
                    ts("2025-06-01T10:00:00Z"),
                    ts("2025-06-01T12:00:00Z")
                ),
            ]
        );
        assert_eq!(occ[0].stations.len(), 22);
        // The runtime's wake-ups walk the four boundaries of the day in order.
        let mut now = ts("2025-05-31T17:00:00Z");
        let mut wakeups = Vec::new();
        for _ in 0..4 {
            now = s.next_boundary(now).expect("daily entries never run out");
            wakeups.push(now.to_string());
        }
        assert_eq!(
            wakeups,
            [
                "2025-05-31T22:00:00Z",
                "2025-06-01T00:00:00Z",
                "2025-06-01T10:00:00Z",
                "2025-06-01T12:00:00Z"
            ]
        );
        assert!(s.active(ts("2025-05-31T21:59:59Z")).is_empty());
        assert_eq!(s.active(ts("2025-05-31T22:00:00Z")).len(), 1);
        assert!(s.active(ts("2025-06-01T00:00:00Z")).is_empty());
        assert_eq!(
            s.active(ts("2025-06-01T11:59:59.999Z"))[0].entry_id,
            "tiep-song-chieu"
        );
    }

    #[test]
    fn an_entry_crossing_midnight_spans_two_local_dates() {
        let s = scheduler(
            "Asia/Ho_Chi_Minh",
            vec![
                entry(
                    "dem",
                    Recurrence::Daily,
                    time(23, 0, 0, 0),
                    EntryEnd::At(time(1, 0, 0, 0)),
                ),
                ScheduleEntry {
                    level: Level::Priority,
                    ..entry(
                        "nua-dem",
                        Recurrence::Daily,
                        time(0, 0, 0, 0),
                        EntryEnd::Duration(SignedDuration::from_mins(5)),
                    )
                },
            ],
        );
        // Local midnight of 2025-06-02 is 2025-06-01T17:00Z.
        let midnight = ts("2025-06-01T17:00:00Z");
        let active = s.active(midnight);
        // The 23:00 slot of the 1st is still on air; the 00:00 slot of the 2nd starts exactly now.
        assert_eq!(
            spans(&active),
            vec![
                (
                    "dem".into(),
                    ts("2025-06-01T16:00:00Z"),
                    ts("2025-06-01T18:00:00Z")
                ),
                ("nua-dem".into(), midnight, ts("2025-06-01T17:05:00Z")),
            ]
        );
        // Half-open: at 01:00 local the night slot is over.
        assert!(s.active(ts("2025-06-01T18:00:00Z")).is_empty());
        assert_eq!(s.next_boundary(midnight), Some(ts("2025-06-01T17:05:00Z")));
        assert_eq!(
            s.next_boundary(ts("2025-06-01T17:05:00Z")),
            Some(ts("2025-06-01T18:00:00Z"))
        );
        // A window that starts after 23:00 still finds the slot that began before it.
        let occ = s.occurrences(ts("2025-06-01T17:30:00Z"), ts("2025-06-01T17:31:00Z"));
        assert_eq!(occ.len(), 1);
        assert_eq!(occ[0].entry_id, "dem");
    }

    #[test]
    fn weekly_and_once_entries_pick_their_days() {
        let s = scheduler(
            "Asia/Ho_Chi_Minh",
            vec![
                entry(
                    "thu-hai",
                    Recurrence::Weekly {
                        days: vec![Weekday::Monday, Weekday::Thursday],
                    },
                    time(18, 0, 0, 0),
                    EntryEnd::At(time(18, 30, 0, 0)),
                ),
                entry(
                    "quoc-khanh",
                    Recurrence::Once {
                        date: date(2025, 9, 2),
                    },
                    time(7, 0, 0, 0),
                    EntryEnd::At(time(9, 0, 0, 0)),
                ),
            ],
        );
        let week = s.occurrences(
            date(2025, 9, 1)
                .in_tz("Asia/Ho_Chi_Minh")
                .expect("tz")
                .timestamp(),
            date(2025, 9, 8)
                .in_tz("Asia/Ho_Chi_Minh")
                .expect("tz")
                .timestamp(),
        );
        let ids: Vec<(&str, String)> = week
            .iter()
            .map(|o| (o.entry_id.as_str(), o.start.to_string()))
            .collect();
        assert_eq!(
            ids,
            [
                ("thu-hai", "2025-09-01T11:00:00Z".to_owned()),
                ("quoc-khanh", "2025-09-02T00:00:00Z".to_owned()),
                ("thu-hai", "2025-09-04T11:00:00Z".to_owned()),
            ]
        );
        // Past the one-off, only the weekly entry remains to wake up for.
        assert_eq!(
            s.next_boundary(ts("2025-09-04T11:30:00Z")),
            Some(ts("2025-09-08T11:00:00Z"))
        );
    }

    #[test]
    fn next_boundary_is_none_when_only_past_one_offs_remain() {
        let s = scheduler(
            "Asia/Ho_Chi_Minh",
            vec![entry(
                "xong",
                Recurrence::Once {
                    date: date(2025, 1, 1),
                },
                time(7, 0, 0, 0),
                EntryEnd::At(time(8, 0, 0, 0)),
            )],
        );
        assert_eq!(s.next_boundary(ts("2025-06-01T00:00:00Z")), None);
        assert_eq!(
            s.next_boundary(ts("2024-12-31T00:00:00Z")),
            Some(ts("2025-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn spring_forward_moves_a_skipped_start_by_the_gap() {
        // Berlin, 2025-03-30: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist that night.
        let on = |station: &str, e: ScheduleEntry| ScheduleEntry {
            targets: Targets::Stations(vec![station.to_owned()]),
            ..e
        };
        let s = scheduler(
            "Europe/Berlin",
            vec![
                on(
                    "binh-trung",
                    entry(
                        "half-hour",
                        Recurrence::Daily,
                        time(2, 30, 0, 0),
                        EntryEnd::Duration(SignedDuration::from_mins(30)),
                    ),
                ),
                on(
                    "binh-duong",
                    entry(
                        "to-four",
                        Recurrence::Daily,
                        time(2, 40, 0, 0),
                        EntryEnd::At(time(4, 0, 0, 0)),
                    ),
                ),
                on(
                    "binh-tri",
                    entry(
                        "in-the-gap",
                        Recurrence::Daily,
                        time(2, 10, 0, 0),
                        EntryEnd::At(time(2, 20, 0, 0)),
                    ),
                ),
            ],
        );
        let day = |d: i8, m: i8| {
            let from = date(2025, m, d)
                .in_tz("Europe/Berlin")
                .expect("tz")
                .timestamp();
            let to = date(2025, m, d)
                .tomorrow()
                .expect("date")
                .in_tz("Europe/Berlin")
                .expect("tz")
                .timestamp();
            spans(&s.occurrences(from, to))
        };
        // The day before (CET, UTC+1): ordinary.
        assert_eq!(
            day(29, 3),
            vec![
                (
                    "in-the-gap".into(),
                    ts("2025-03-29T01:10:00Z"),
                    ts("2025-03-29T01:20:00Z")
                ),
                (
                    "half-hour".into(),
                    ts("2025-03-29T01:30:00Z"),
                    ts("2025-03-29T02:00:00Z")
                ),
                (
                    "to-four".into(),
                    ts("2025-03-29T01:40:00Z"),
                    ts("2025-03-29T03:00:00Z")
                ),
            ]
        );
        // Transition day: 02:30 and 02:40 start when the clock jumps, 03:00 CEST (01:00Z);
        // `half-hour` still lasts 30 minutes, `to-four` ends at the wall-clock 04:00 CEST; the
        // slot wholly inside the gap does not air.
        assert_eq!(
            day(30, 3),
            vec![
                (
                    "half-hour".into(),
                    ts("2025-03-30T01:00:00Z"),
                    ts("2025-03-30T01:30:00Z")
                ),
                (
                    "to-four".into(),
                    ts("2025-03-30T01:00:00Z"),
                    ts("2025-03-30T02:00:00Z")
                ),
            ]
        );
        // The runtime wakes at the jump, not at a time that never comes.
        assert_eq!(
            s.next_boundary(ts("2025-03-30T00:30:00Z")),
            Some(ts("2025-03-30T01:00:00Z"))
        );
        // The day after (CEST, UTC+2): ordinary again.
        assert_eq!(
            day(31, 3)[1],
            (
                "half-hour".into(),
                ts("2025-03-31T00:30:00Z"),
                ts("2025-03-31T01:00:00Z")
            )
        );
    }

    #[test]
    fn fall_back_airs_a_repeated_time_once() {
        // Berlin, 2025-10-26: 03:00 CEST falls back to 02:00 CET, so 02:30 happens twice.
        let s = scheduler(
            "Europe/Berlin",
            vec![entry(
                "half-hour",
                Recurrence::Daily,
                time(2, 30, 0, 0),
                EntryEnd::Duration(SignedDuration::from_mins(30)),
            )],
        );
        let occ = s.occurrences(ts("2025-10-25T22:00:00Z"), ts("2025-10-26T23:00:00Z"));
        assert_eq!(
            spans(&occ),
            vec![(
                "half-hour".into(),
                ts("2025-10-26T00:30:00Z"),
                ts("2025-10-26T01:00:00Z")
            )]
        );
    }

    #[test]
    fn occurrences_are_sorted_and_windows_are_half_open() {
        let s = Scheduler::new(Schedule::binh_son_default(), &District::binh_son()).expect("ok");
        let occ = s.occurrences(ts("2025-05-01T00:00:00Z"), ts("2025-05-08T00:00:00Z"));
        assert!(occ.windows(2).all(|w| w[0].start <= w[1].start));
        assert_eq!(occ.len(), 14);
        // A window ending exactly at a start does not include it.
        assert!(s
            .occurrences(ts("2025-05-31T21:00:00Z"), ts("2025-05-31T22:00:00Z"))
            .is_empty());
        assert!(s
            .occurrences(ts("2025-06-01T00:00:00Z"), ts("2025-05-31T00:00:00Z"))
            .is_empty());
    }
}
