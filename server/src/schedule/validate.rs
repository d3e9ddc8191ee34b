//! Every check that can be made on a schedule before anything airs.
//!
//! Same-level overlaps are decided on the civil (wall-clock) week: daily and weekly entries are
//! laid on a circular Monday-to-Sunday week, one-off entries on their date and also on their
//! weekday of that week. In a zone with daylight saving time a `duration` end can, on the two
//! transition days, reach one hour further in wall-clock time than on other days; the arbiter
//! copes with the resulting overlap (the later-starting entry wins), so validation keeps to the
//! wall clock the operator reasons in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use crate::ingest::stream_url::{mask, StreamUrl};
use jiff::civil::{self, Weekday};
use jiff::SignedDuration;
use radio_config::District;

use super::{
    load_timezone, parse_member, weekday_english, Bulletin, EntryEnd, Groups, Level, Owner,
    Recurrence, ResolvedTargets, Schedule, ScheduleEntry, ScheduleError, SourceSpec,
};

/// Same limit as station ids: ids end up in logs, URLs and file names.
const MAX_ID_BYTES: usize = radio_config::MAX_SLUG_BYTES;
const SECOND: i64 = 1_000_000_000;
const DAY: i64 = 24 * 3600 * SECOND;
const WEEK: i64 = 7 * DAY;

/// Two entries of different levels that air at the same time on some stations. Allowed: the
/// higher one interrupts the lower one, which resumes afterwards if its slot is still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub higher: String,
    pub higher_level: Level,
    pub lower: String,
    pub lower_level: Level,
    /// Stations both entries target.
    pub stations: BTreeSet<String>,
    /// Every stretch of local time they share, earliest in the week first.
    pub spans: Vec<LocalSpan>,
}

/// A stretch of local (wall-clock) time in the schedule's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalSpan {
    /// Repeats every week (daily or weekly entries).
    Weekly {
        start_day: Weekday,
        start: civil::Time,
        end_day: Weekday,
        end: civil::Time,
    },
    /// On a date (a one-off entry is involved).
    Dated {
        start: civil::DateTime,
        end: civil::DateTime,
    },
}

impl fmt::Display for LocalSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |t: civil::Time| {
            if t.second() == 0 && t.subsec_nanosecond() == 0 {
                format!("{:02}:{:02}", t.hour(), t.minute())
            } else {
                t.to_string()
            }
        };
        match *self {
            LocalSpan::Weekly {
                start_day,
                start,
                end_day,
                end,
            } => {
                let (sd, ed) = (weekday_english(start_day), weekday_english(end_day));
                if start_day == end_day {
                    write!(f, "{sd} {}–{} (local time)", hm(start), hm(end))
                } else {
                    write!(f, "{sd} {} – {ed} {} (local time)", hm(start), hm(end))
                }
            }
            LocalSpan::Dated { start, end } => {
                let sd = weekday_english(start.date().weekday());
                if start.date() == end.date() {
                    write!(
                        f,
                        "{} ({sd}) {}–{} (local time)",
                        start.date(),
                        hm(start.time()),
                        hm(end.time())
                    )
                } else {
                    write!(
                        f,
                        "{} ({sd}) {} – {} {} (local time)",
                        start.date(),
                        hm(start.time()),
                        end.date(),
                        hm(end.time())
                    )
                }
            }
        }
    }
}

/// Checks a schedule against the district and the file system (through `file_exists`, so tests
/// and dry runs need no files). Returns the allowed different-level overlaps; the first problem
/// found is the error.
pub fn validate(
    schedule: &Schedule,
    district: &District,
    file_exists: &dyn Fn(&Path) -> bool,
) -> Result<Vec<Overlap>, ScheduleError> {
    load_timezone(&schedule.timezone)?;
    let mut first_use: BTreeMap<&str, usize> = BTreeMap::new();
    let mut resolved = Vec::with_capacity(schedule.entries.len());
    for (index, entry) in schedule.entries.iter().enumerate() {
        let owner = Owner::Entry {
            index,
            id: entry.id.clone(),
        };
        check_slug(&owner, "id", &entry.id)?;
        if let Some(first) = first_use.insert(&entry.id, index) {
            return Err(ScheduleError::DuplicateId {
                id: entry.id.clone(),
                first,
                second: index,
            });
        }
        check_entry(&owner, entry, file_exists)?;
        let targets = entry
            .targets
            .resolve_detailed(district, &schedule.groups)
            .map_err(|e| e.owned_by(owner.clone()))?;
        if targets.stations.is_empty() {
            return Err(ScheduleError::NoTargets {
                owner,
                field: "targets".to_owned(),
            });
        }
        resolved.push(targets.stations);
    }
    // After the entries, so that a bad member of a group in use is reported with its entry.
    check_groups(&schedule.groups, district)?;
    check_overlaps(&schedule.entries, &resolved)
}

/// Checks a bulletin before it is queued and resolves its targets.
pub fn validate_bulletin(
    bulletin: &Bulletin,
    district: &District,
    groups: &Groups,
    file_exists: &dyn Fn(&Path) -> bool,
) -> Result<ResolvedTargets, ScheduleError> {
    let owner = Owner::Bulletin(bulletin.id.clone());
    check_slug(&owner, "id", &bulletin.id)?;
    check_name(&owner, &bulletin.name)?;
    if bulletin.level == Level::Emergency {
        return Err(ScheduleError::EmergencyNotAllowed {
            owner,
            context: "queued as bulletins; use start_emergency".to_owned(),
        });
    }
    if let Some(duration) = bulletin.duration {
        if !duration.is_positive() {
            return Err(ScheduleError::NonPositiveDuration {
                owner,
                field: "duration".to_owned(),
                duration,
            });
        }
    }
    check_source(&owner, &bulletin.source, file_exists)?;
    resolve_nonempty(&owner, &bulletin.targets, district, groups)
}

/// Resolves targets under an owner and refuses an empty result.
pub(crate) fn resolve_nonempty(
    owner: &Owner,
    targets: &super::Targets,
    district: &District,
    groups: &Groups,
) -> Result<ResolvedTargets, ScheduleError> {
    let resolved = targets
        .resolve_detailed(district, groups)
        .map_err(|e| e.owned_by(owner.clone()))?;
    if resolved.stations.is_empty() {
        return Err(ScheduleError::NoTargets {
            owner: owner.clone(),
            field: "targets".to_owned(),
        });
    }
    Ok(resolved)
}

fn check_groups(groups: &Groups, district: &District) -> Result<(), ScheduleError> {
    for (name, members) in groups {
        let owner = Owner::Group(name.clone());
        check_slug(&owner, "name", name)?;
        if members.is_empty() {
            return Err(ScheduleError::NoTargets {
                owner,
                field: format!("groups.{name}"),
            });
        }
        for (i, member) in members.iter().enumerate() {
            parse_member(district, member).map_err(|problem| ScheduleError::BadGroupMember {
                owner: owner.clone(),
                field: format!("groups.{name}[{i}]"),
                group: name.clone(),
                member: member.clone(),
                problem,
            })?;
        }
    }
    Ok(())
}

fn check_entry(
    owner: &Owner,
    entry: &ScheduleEntry,
    file_exists: &dyn Fn(&Path) -> bool,
) -> Result<(), ScheduleError> {
    check_name(owner, &entry.name)?;
    if entry.level == Level::Emergency {
        return Err(ScheduleError::EmergencyNotAllowed {
            owner: owner.clone(),
            context: "scheduled; use normal or priority".to_owned(),
        });
    }
    if let Recurrence::Weekly { days } = &entry.recurrence {
        if days.is_empty() {
            return Err(ScheduleError::NoWeekdays {
                owner: owner.clone(),
            });
        }
    }
    if let Recurrence::Period { from, until, .. } = &entry.recurrence {
        if until < from {
            return Err(ScheduleError::EmptyPeriod {
                owner: owner.clone(),
                from: *from,
                until: *until,
            });
        }
    }
    match entry.end {
        EntryEnd::At(end) if end == entry.start => {
            return Err(ScheduleError::EmptySlot {
                owner: owner.clone(),
                start: entry.start,
            });
        }
        EntryEnd::At(_) => {}
        EntryEnd::Duration(duration) => {
            if !duration.is_positive() {
                return Err(ScheduleError::NonPositiveDuration {
                    owner: owner.clone(),
                    field: "end.duration".to_owned(),
                    duration,
                });
            }
            // Longer slots would overlap their own next day and make the week check unbounded.
            if duration > SignedDuration::from_hours(24) {
                return Err(ScheduleError::TooLong {
                    owner: owner.clone(),
                    field: "end.duration".to_owned(),
                    duration,
                });
            }
        }
    }
    check_source(owner, &entry.source, file_exists)
}

fn check_name(owner: &Owner, name: &str) -> Result<(), ScheduleError> {
    if name.trim().is_empty() {
        return Err(ScheduleError::EmptyField {
            owner: owner.clone(),
            field: "name".to_owned(),
        });
    }
    Ok(())
}

/// Ids are `^[a-z0-9]+(-[a-z0-9]+)*$`, as station ids are, so they are safe in logs and URLs.
pub(crate) fn check_slug(owner: &Owner, field: &str, id: &str) -> Result<(), ScheduleError> {
    if id.is_empty() {
        return Err(ScheduleError::EmptyField {
            owner: owner.clone(),
            field: field.to_owned(),
        });
    }
    if radio_config::is_slug(id) {
        Ok(())
    } else {
        Err(ScheduleError::InvalidId {
            owner: owner.clone(),
            field: field.to_owned(),
            reason: format!(
                "`{id}` is not a valid id: use lowercase ASCII letters and digits separated by \
                 single hyphens, at most {MAX_ID_BYTES} bytes (e.g. `tiep-song-sang`)"
            ),
        })
    }
}

/// Source checks; file existence goes through `file_exists` so the pure parts run anywhere.
pub(crate) fn check_source(
    owner: &Owner,
    source: &SourceSpec,
    file_exists: &dyn Fn(&Path) -> bool,
) -> Result<(), ScheduleError> {
    let check_file = |field: String, path: &Path| {
        if path.as_os_str().is_empty() {
            Err(ScheduleError::EmptyField {
                owner: owner.clone(),
                field,
            })
        } else if !file_exists(path) {
            Err(ScheduleError::MissingFile {
                owner: owner.clone(),
                field,
                path: path.to_owned(),
            })
        } else {
            Ok(())
        }
    };
    match source {
        SourceSpec::File { path } => check_file("source.path".to_owned(), path),
        SourceSpec::Playlist { paths } => {
            if paths.is_empty() {
                return Err(ScheduleError::EmptyField {
                    owner: owner.clone(),
                    field: "source.paths".to_owned(),
                });
            }
            for (i, path) in paths.iter().enumerate() {
                check_file(format!("source.paths[{i}]"), path)?;
            }
            Ok(())
        }
        SourceSpec::Relay { url } => match StreamUrl::parse(url) {
            Ok(_) => Ok(()),
            Err(e) => Err(ScheduleError::InvalidUrl {
                owner: owner.clone(),
                field: "source.url".to_owned(),
                url: mask(url).into_owned(),
                reason: e.to_string(),
            }),
        },
        SourceSpec::Upstream { name } => check_slug(owner, "source.name", name),
        SourceSpec::Live => Ok(()),
    }
}

/// Every upstream source of `schedule` names one of `known` (the server's `[[upstream]]`
/// names). Separate from [`validate`] because only a running server knows its upstreams.
pub fn check_upstreams(schedule: &Schedule, known: &[String]) -> Result<(), ScheduleError> {
    for (index, entry) in schedule.entries.iter().enumerate() {
        if let SourceSpec::Upstream { name } = &entry.source {
            if !known.contains(name) {
                return Err(ScheduleError::UnknownUpstream {
                    owner: Owner::Entry {
                        index,
                        id: entry.id.clone(),
                    },
                    field: "source.name".to_owned(),
                    name: name.clone(),
                    known: if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    },
                });
            }
        }
    }
    Ok(())
}

fn time_nanos(t: civil::Time) -> i64 {
    i64::from(t.hour()) * 3600 * SECOND
        + i64::from(t.minute()) * 60 * SECOND
        + i64::from(t.second()) * SECOND
        + i64::from(t.subsec_nanosecond())
}

/// Wall-clock length of an entry. Call only on checked entries (end ≠ start, 0 < duration ≤ 24 h).
pub(crate) fn civil_length(entry: &ScheduleEntry) -> i64 {
    match entry.end {
        EntryEnd::At(end) => {
            let (s, e) = (time_nanos(entry.start), time_nanos(end));
            if e > s {
                e - s
            } else {
                DAY - s + e
            }
        }
        EntryEnd::Duration(d) => i64::try_from(d.as_nanos()).unwrap_or(DAY).min(DAY),
    }
}

/// An entry laid on the civil week: `[start, end)` in nanoseconds from Monday 00:00, with
/// `start < WEEK` and `end` possibly past `WEEK` (Sunday night into Monday).
#[derive(Clone, Copy)]
struct WeekSpan {
    start: i64,
    end: i64,
}

enum Placement {
    Periodic(Vec<WeekSpan>),
    /// A one-off: its civil start, and the same slot laid on the week of that date.
    Once {
        start: civil::DateTime,
        week: WeekSpan,
    },
}

fn place(entry: &ScheduleEntry) -> Placement {
    let len = civil_length(entry);
    let at = |day: Weekday| {
        let start = i64::from(day.to_monday_zero_offset()) * DAY + time_nanos(entry.start);
        WeekSpan {
            start,
            end: start + len,
        }
    };
    match &entry.recurrence {
        Recurrence::Daily => Placement::Periodic(
            (0..7)
                .filter_map(|i| Weekday::from_monday_zero_offset(i).ok())
                .map(at)
                .collect(),
        ),
        // A period is laid on the week like the weekdays it airs on: an overlap check that
        // ignores the dates can only warn too often, never miss one.
        Recurrence::Period { days, .. } if days.is_empty() => Placement::Periodic(
            (0..7)
                .filter_map(|i| Weekday::from_monday_zero_offset(i).ok())
                .map(at)
                .collect(),
        ),
        Recurrence::Weekly { days } | Recurrence::Period { days, .. } => {
            let unique: BTreeSet<i8> = days.iter().map(|d| d.to_monday_zero_offset()).collect();
            Placement::Periodic(
                unique
                    .into_iter()
                    .filter_map(|i| Weekday::from_monday_zero_offset(i).ok())
                    .map(at)
                    .collect(),
            )
        }
        Recurrence::Once { date } => Placement::Once {
            start: date.to_datetime(entry.start),
            week: at(date.weekday()),
        },
    }
}

/// Shared stretches of two week spans, trying the second one week earlier and later so that
/// Sunday-night slots meet Monday-morning ones. Returned in the first span's frame.
fn week_intersections(a: WeekSpan, b: WeekSpan) -> Vec<WeekSpan> {
    [-WEEK, 0, WEEK]
        .into_iter()
        .filter_map(|shift| {
            let start = a.start.max(b.start + shift);
            let end = a.end.min(b.end + shift);
            (start < end).then_some(WeekSpan { start, end })
        })
        .collect()
}

fn weekly_span(span: WeekSpan) -> LocalSpan {
    let split = |n: i64| {
        let n = n.rem_euclid(WEEK);
        let day = Weekday::from_monday_zero_offset(i8::try_from(n / DAY).unwrap_or(0))
            .unwrap_or(Weekday::Monday);
        let t = civil::Time::midnight().saturating_add(SignedDuration::from_nanos(n % DAY));
        (day, t)
    };
    let (start_day, start) = split(span.start);
    let (end_day, end) = split(span.end);
    LocalSpan::Weekly {
        start_day,
        start,
        end_day,
        end,
    }
}

/// Converts a span of a one-off's week frame into dates, anchored at the one-off's start.
fn dated_span(once_start: civil::DateTime, once_week: WeekSpan, span: WeekSpan) -> LocalSpan {
    let at = |n: i64| once_start.saturating_add(SignedDuration::from_nanos(n - once_week.start));
    LocalSpan::Dated {
        start: at(span.start),
        end: at(span.end),
    }
}

fn shared_spans(a: &Placement, b: &Placement) -> Vec<LocalSpan> {
    let mut spans = Vec::new();
    match (a, b) {
        (Placement::Periodic(xs), Placement::Periodic(ys)) => {
            let mut raw: Vec<WeekSpan> = xs
                .iter()
                .flat_map(|x| ys.iter().flat_map(|y| week_intersections(*x, *y)))
                .collect();
            raw.sort_by_key(|s| (s.start.rem_euclid(WEEK), s.end));
            spans.extend(raw.into_iter().map(weekly_span));
        }
        (Placement::Once { start, week }, Placement::Periodic(ys))
        | (Placement::Periodic(ys), Placement::Once { start, week }) => {
            let mut raw: Vec<WeekSpan> = ys
                .iter()
                .flat_map(|y| week_intersections(*week, *y))
                .collect();
            raw.sort_by_key(|s| s.start);
            spans.extend(raw.into_iter().map(|s| dated_span(*start, *week, s)));
        }
        (
            Placement::Once {
                start: sa,
                week: wa,
            },
            Placement::Once {
                start: sb,
                week: wb,
            },
        ) => {
            let end_a = sa.saturating_add(SignedDuration::from_nanos(wa.end - wa.start));
            let end_b = sb.saturating_add(SignedDuration::from_nanos(wb.end - wb.start));
            let start = (*sa).max(*sb);
            let end = end_a.min(end_b);
            if start < end {
                spans.push(LocalSpan::Dated { start, end });
            }
        }
    }
    spans
}

/// Refuses a new entry that could never air again: a one-off whose slot, or a period whose last
/// day's slot, has ended by `now`. A slot under way is accepted: it joins in progress, as the
/// schedule does after a restart. (Stored entries are not checked: yesterday's one-off is
/// history, not a mistake.)
pub fn check_not_past(
    index: usize,
    entry: &ScheduleEntry,
    tz: &jiff::tz::TimeZone,
    now: jiff::Timestamp,
) -> Result<(), ScheduleError> {
    let (field, last) = match &entry.recurrence {
        Recurrence::Once { date } => ("start", *date),
        Recurrence::Period { until, .. } => ("recurrence.period.until", *until),
        Recurrence::Daily | Recurrence::Weekly { .. } => return Ok(()),
    };
    let start = last.to_datetime(entry.start);
    // A start in a spring-forward gap has no instant; the scheduler skips it anyway.
    let Ok(begins) = tz.to_timestamp(start) else {
        return Ok(());
    };
    let ends = match entry.end {
        EntryEnd::Duration(d) => begins.checked_add(d).ok(),
        EntryEnd::At(end) => {
            let day = if end > entry.start {
                Some(last)
            } else {
                last.tomorrow().ok()
            };
            day.and_then(|d| tz.to_timestamp(d.to_datetime(end)).ok())
        }
    };
    if ends.is_none_or(|ends| ends > now) {
        return Ok(());
    }
    let local_now = tz.to_datetime(now);
    Err(ScheduleError::InThePast {
        owner: Owner::Entry {
            index,
            id: entry.id.clone(),
        },
        field: field.to_owned(),
        when: start.strftime("%Y-%m-%d %H:%M").to_string(),
        now: local_now.strftime("%Y-%m-%d %H:%M").to_string(),
    })
}

/// The local dates an entry may air on, both included, widened by a day for slots that cross
/// midnight; `None` for entries that recur without end.
fn date_range(recurrence: &Recurrence) -> Option<(civil::Date, civil::Date)> {
    let next = |d: civil::Date| d.tomorrow().unwrap_or(d);
    match recurrence {
        Recurrence::Daily | Recurrence::Weekly { .. } => None,
        Recurrence::Once { date } => Some((*date, next(*date))),
        Recurrence::Period { from, until, .. } => Some((*from, next(*until))),
    }
}

/// Whether two entries' date ranges share a day: campaigns in different weeks never overlap,
/// whatever their weekly times.
fn dates_meet(a: &Recurrence, b: &Recurrence) -> bool {
    match (date_range(a), date_range(b)) {
        (Some((a_from, a_until)), Some((b_from, b_until))) => {
            a_from <= b_until && b_from <= a_until
        }
        _ => true,
    }
}

fn check_overlaps(
    entries: &[ScheduleEntry],
    stations: &[BTreeSet<String>],
) -> Result<Vec<Overlap>, ScheduleError> {
    let placed: Vec<Placement> = entries.iter().map(place).collect();
    let mut overlaps = Vec::new();
    for i in 0..entries.len() {
        for j in i + 1..entries.len() {
            let common: BTreeSet<String> =
                stations[i].intersection(&stations[j]).cloned().collect();
            let Some(station) = common.first().cloned() else {
                continue;
            };
            if !dates_meet(&entries[i].recurrence, &entries[j].recurrence) {
                continue;
            }
            let spans = shared_spans(&placed[i], &placed[j]);
            let Some(first_span) = spans.first().copied() else {
                continue;
            };
            let (a, b) = (&entries[i], &entries[j]);
            if a.level == b.level {
                return Err(ScheduleError::SameLevelOverlap {
                    first: a.id.clone(),
                    second: b.id.clone(),
                    level: a.level,
                    station,
                    at: first_span,
                });
            }
            let (higher, lower) = if a.level > b.level { (a, b) } else { (b, a) };
            overlaps.push(Overlap {
                higher: higher.id.clone(),
                higher_level: higher.level,
                lower: lower.id.clone(),
                lower_level: lower.level,
                stations: common,
                spans,
            });
        }
    }
    Ok(overlaps)
}

#[cfg(test)]
mod tests;
