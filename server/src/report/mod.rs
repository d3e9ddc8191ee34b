//! District reports from the uptime records: per station and per calendar period (day, month
//! or year in the district's time zone), how much of the time the station was available, its
//! outages, hours on air and the programmes it played (`docs/REPORTS.md` says what every
//! figure means, for district staff).
//!
//! - `timeline.rs` — one station's states over time, rebuilt from its agent's records.
//! - `load.rs` — reading every station's timeline from the store (the only I/O here).
//! - `mod.rs` — the request ([`ReportQuery`]), the periods, and the figures:
//!   [`uptime_report`] and [`plays_report`], pure functions of the district and the timelines.
//! - `box_health.rs` — per station and month, the worst temperature and the hours over the
//!   `[health]` threshold, attached to the uptime report from the months' aggregates.
//! - `render.rs` — table, CSV (with a UTF-8 BOM for Excel) and JSON.
//!
//! Reports are per station: the agent does not journal its loudspeaker clusters' health yet.

pub mod box_health;
pub mod load;
pub mod render;
pub mod timeline;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use radio_config::District;
use radio_proto::ProgrammeLevel;
use serde::Serialize;

pub use timeline::Timeline;

/// Most periods in one report (ten years by day).
pub const MAX_PERIODS: usize = 3700;

/// Why a report cannot be made. Messages are one line and name the parameter at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A request parameter is missing or wrong.
    #[error("parameter `{name}`: {reason}")]
    Parameter { name: String, reason: String },
    /// The district's time zone is unknown.
    #[error("the district's time zone `{timezone}`: {reason}")]
    Timezone { timezone: String, reason: String },
    /// The report could not be written as JSON.
    #[error("cannot write the report as JSON: {0}")]
    Json(String),
}

fn parameter(name: &str, reason: impl Into<String>) -> ReportError {
    ReportError::Parameter {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// One column per calendar day, month or year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Day,
    Month,
    Year,
}

impl FromStr for Granularity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "day" => Ok(Granularity::Day),
            "month" => Ok(Granularity::Month),
            "year" => Ok(Granularity::Year),
            other => Err(format!("`{other}` is not one of day, month, year")),
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Granularity::Day => "day",
            Granularity::Month => "month",
            Granularity::Year => "year",
        })
    }
}

/// How a report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// Comma-separated, UTF-8 with a BOM, CRLF line ends (opens in Excel with diacritics).
    Csv,
    /// One JSON object, for programs.
    Json,
}

impl Format {
    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Table => "text/plain; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }

    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Table => "txt",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            other => Err(format!("`{other}` is not one of table, csv, json")),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
        })
    }
}

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Availability, outages, hours on air, programmes played.
    Uptime,
    /// Programmes played, per programme.
    Plays,
}

impl ReportKind {
    /// The last segment of its HTTP path.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Uptime => "uptime",
            ReportKind::Plays => "plays",
        }
    }
}

/// What a report covers: local dates `from` to `to`, both included, in columns `by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportRequest {
    pub from: Date,
    pub to: Date,
    pub by: Granularity,
    /// Uptime per loudspeaker cluster too (the uptime report only).
    pub clusters: bool,
}

impl ReportRequest {
    /// Checks that `from` is not after `to`.
    pub fn new(from: Date, to: Date, by: Granularity) -> Result<Self, ReportError> {
        if from > to {
            return Err(parameter(
                "from",
                format!("{from} is after `to` ({to}); the range is from the first day to the last, both included"),
            ));
        }
        Ok(ReportRequest {
            from,
            to,
            by,
            clusters: false,
        })
    }
}

/// A report request with its format: the HTTP query and the command's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportQuery {
    pub request: ReportRequest,
    pub format: Format,
}

impl ReportQuery {
    /// From query parameters `from`, `to` (required, `YYYY-MM-DD`), `by` (default year) and
    /// `format` (default `default_format`). Unknown or repeated parameters are refused, so a
    /// typo does not silently give another report.
    pub fn from_params(
        params: &[(String, String)],
        default_format: Format,
    ) -> Result<Self, ReportError> {
        let mut found: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, value) in params {
            let known = ["from", "to", "by", "format", "clusters"];
            let Some(name) = known.iter().find(|k| **k == name.as_str()) else {
                return Err(parameter(
                    name,
                    "unknown parameter (give from, to, by, format, clusters)",
                ));
            };
            if found.insert(name, value.as_str()).is_some() {
                return Err(parameter(name, "given more than once"));
            }
        }
        let date = |name: &str| -> Result<Date, ReportError> {
            let text = found
                .get(name)
                .ok_or_else(|| parameter(name, "missing (a local date, YYYY-MM-DD)"))?;
            text.parse::<Date>().map_err(|e| {
                parameter(
                    name,
                    format!("`{text}` is not a date YYYY-MM-DD ({e})").replace('\n', " "),
                )
            })
        };
        let from = date("from")?;
        let to = date("to")?;
        let by = match found.get("by") {
            Some(text) => text.parse().map_err(|e: String| parameter("by", e))?,
            None => Granularity::Year,
        };
        let format = match found.get("format") {
            Some(text) => text.parse().map_err(|e: String| parameter("format", e))?,
            None => default_format,
        };
        let clusters = match found.get("clusters").copied() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(parameter(
                    "clusters",
                    format!("`{other}` is neither true nor false"),
                ))
            }
        };
        Ok(ReportQuery {
            request: ReportRequest {
                clusters,
                ..ReportRequest::new(from, to, by)?
            },
            format,
        })
    }

    /// `from=…&to=…&by=…&format=…` (dates and names need no escaping).
    pub fn to_query_string(&self) -> String {
        let clusters = if self.request.clusters {
            "&clusters=true"
        } else {
            ""
        };
        format!(
            "from={}&to={}&by={}&format={}{clusters}",
            self.request.from, self.request.to, self.request.by, self.format
        )
    }
}

/// A column: local dates, clipped to the report's range (a month report from the 15th starts
/// its first column on the 15th).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    /// `2021`, `2021-03` or `2021-03-15`; `all` for the whole range.
    pub label: String,
    /// Local midnight of the first day.
    pub start: Timestamp,
    /// Local midnight after the last day (excluded).
    pub end: Timestamp,
}

impl Period {
    fn bounds(&self) -> (i64, i64) {
        (self.start.as_millisecond(), self.end.as_millisecond())
    }
}

/// Local midnight starting `date` in `tz`.
fn start_of(date: Date, tz: &TimeZone, name: &str) -> Result<Timestamp, ReportError> {
    date.to_zoned_datetime(tz.clone())
        .and_then(|z| z.start_of_day())
        .map(|z| z.timestamp())
        .map_err(|e| parameter(name, format!("{date} is out of range ({e})")))
}

/// The report's columns and its whole range.
pub fn periods(
    request: &ReportRequest,
    tz: &TimeZone,
) -> Result<(Vec<Period>, Period), ReportError> {
    let out_of_range = |e: jiff::Error| parameter("to", format!("out of range ({e})"));
    let after_last = request.to.tomorrow().map_err(out_of_range)?;
    let range_end = start_of(after_last, tz, "to")?;
    let mut out = Vec::new();
    let mut day = request.from;
    let mut start = start_of(day, tz, "from")?;
    while day < after_last {
        if out.len() == MAX_PERIODS {
            return Err(parameter(
                "by",
                format!(
                    "{} to {} by {} is more than {MAX_PERIODS} columns; choose a coarser `by` or a shorter range",
                    request.from, request.to, request.by
                ),
            ));
        }
        let (next, label) = match request.by {
            Granularity::Day => (day.tomorrow(), day.to_string()),
            Granularity::Month => (
                day.first_of_month().checked_add(1.month()),
                format!("{:04}-{:02}", day.year(), day.month()),
            ),
            Granularity::Year => (
                day.first_of_year().checked_add(1.year()),
                format!("{:04}", day.year()),
            ),
        };
        let next = next.map_err(out_of_range)?.min(after_last);
        let end = if next == after_last {
            range_end
        } else {
            start_of(next, tz, "to")?
        };
        out.push(Period { label, start, end });
        day = next;
        start = end;
    }
    let whole = Period {
        label: "all".to_owned(),
        start: start_of(request.from, tz, "from")?,
        end: range_end,
    };
    Ok((out, whole))
}

/// The district's time zone.
pub fn district_timezone(district: &District) -> Result<TimeZone, ReportError> {
    crate::schedule::load_timezone(&district.timezone).map_err(|e| ReportError::Timezone {
        timezone: district.timezone.clone(),
        reason: e.to_string(),
    })
}

/// Milliseconds in each state within one period, with the outages and plays that fall in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Time with data (the denominator of availability).
    pub known_ms: i64,
    pub available_ms: i64,
    pub link_down_ms: i64,
    pub off_ms: i64,
    pub unreported_ms: i64,
    /// In a cluster's row: the station could air but the cluster's receiver was down.
    pub cluster_down_ms: i64,
    pub on_air_ms: i64,
    /// Outages with some time in the period (one crossing a boundary counts on both sides).
    pub outages: u64,
    pub outage_ms: i64,
    pub longest_outage_ms: i64,
    /// Programmes that ended in the period.
    pub programmes: u64,
    pub aired_ms: i64,
    /// Programmes cut off (no end recorded) in the period.
    pub cut_off: u64,
    /// Amplifier time switched on, every output's added up.
    pub amplifier_ms: i64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.known_ms += other.known_ms;
        self.available_ms += other.available_ms;
        self.link_down_ms += other.link_down_ms;
        self.off_ms += other.off_ms;
        self.unreported_ms += other.unreported_ms;
        self.cluster_down_ms += other.cluster_down_ms;
        self.on_air_ms += other.on_air_ms;
        self.outages += other.outages;
        self.outage_ms += other.outage_ms;
        self.longest_outage_ms = self.longest_outage_ms.max(other.longest_outage_ms);
        self.programmes += other.programmes;
        self.aired_ms = self.aired_ms.saturating_add(other.aired_ms);
        self.cut_off += other.cut_off;
        self.amplifier_ms = self.amplifier_ms.saturating_add(other.amplifier_ms);
    }

    /// Whether anything is known of this period.
    pub fn has_data(&self) -> bool {
        self.known_ms > 0
    }
}

/// The indices of `bounds` (sorted, not overlapping) that `[start, end)` overlaps, with the
/// overlap in milliseconds.
fn overlaps(
    bounds: &[(i64, i64)],
    start: i64,
    end: i64,
) -> impl Iterator<Item = (usize, i64)> + '_ {
    let first = bounds.partition_point(|&(_, b_end)| b_end <= start);
    bounds[first..]
        .iter()
        .enumerate()
        .take_while(move |(_, &(b_start, _))| b_start < end)
        .filter_map(move |(i, &(b_start, b_end))| {
            let len = end.min(b_end) - start.max(b_start);
            (len > 0).then_some((first + i, len))
        })
}

/// The index of the period of `bounds` holding the instant `at`.
fn containing(bounds: &[(i64, i64)], at: i64) -> Option<usize> {
    let i = bounds.partition_point(|&(_, b_end)| b_end <= at);
    bounds
        .get(i)
        .filter(|(b_start, _)| *b_start <= at)
        .map(|_| i)
}

/// A station's tallies for each of `bounds`.
pub fn tally(timeline: &Timeline, bounds: &[(i64, i64)]) -> Vec<Tally> {
    use timeline::Condition;
    let mut out = vec![Tally::default(); bounds.len()];
    for span in &timeline.spans {
        for (i, len) in overlaps(bounds, span.start_ms, span.end_ms) {
            let t = &mut out[i];
            t.known_ms += len;
            match span.condition {
                Condition::Available => t.available_ms += len,
                Condition::LinkDown => t.link_down_ms += len,
                Condition::Off => t.off_ms += len,
                Condition::Unreported => t.unreported_ms += len,
                Condition::ClusterDown => t.cluster_down_ms += len,
            }
            if span.on_air {
                t.on_air_ms += len;
            }
        }
    }
    for outage in &timeline.outages {
        for (i, len) in overlaps(bounds, outage.start_ms, outage.end_ms) {
            let t = &mut out[i];
            t.outages += 1;
            t.outage_ms += len;
            t.longest_outage_ms = t.longest_outage_ms.max(len);
        }
    }
    for play in &timeline.plays {
        if let Some(i) = containing(bounds, play.at_ms) {
            out[i].programmes += 1;
            out[i].aired_ms = out[i].aired_ms.saturating_add(play.aired_ms());
        }
    }
    for cut in &timeline.cut_off {
        if let Some(i) = containing(bounds, cut.at_ms) {
            out[i].cut_off += 1;
        }
    }
    tally_amplifiers(timeline, bounds, &mut out);
    out
}

/// The amplifiers' time on in each period (a stretch crossing a boundary counts on both sides,
/// each its own part).
fn tally_amplifiers(timeline: &Timeline, bounds: &[(i64, i64)], out: &mut [Tally]) {
    for on in &timeline.amplifier_on {
        for (i, len) in overlaps(bounds, on.start_ms, on.end_ms) {
            out[i].amplifier_ms = out[i].amplifier_ms.saturating_add(len);
        }
    }
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// A station's (or the district's) figures for one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UptimeFigures {
    /// Available time over time with data, in per cent.
    pub availability_pct: f64,
    /// Outages (maximal stretches of unavailable time) with some time in the period.
    pub outages: u64,
    pub outage_total_s: f64,
    pub outage_longest_s: f64,
    /// Mean time to repair: total outage time / outages; null without outages.
    pub mttr_s: Option<f64>,
    /// Time the output was on air.
    pub on_air_s: f64,
    /// Programmes that finished playing.
    pub programmes: u64,
    /// Their audio heard: frames played × 20 ms.
    pub aired_s: f64,
    /// Time with data: the denominator.
    pub known_s: f64,
    pub available_s: f64,
    /// The unavailable time by cause.
    pub link_down_s: f64,
    pub off_s: f64,
    pub unreported_s: f64,
    /// In a cluster's row: its receiver was down while the station could air.
    pub cluster_down_s: f64,
    /// Hours the station's amplifiers were switched on (every output's added up; 0 where
    /// the agent switches none).
    pub amplifier_hours: f64,
}

impl UptimeFigures {
    /// `None` when nothing is known of the period.
    pub fn from_tally(t: &Tally) -> Option<UptimeFigures> {
        if !t.has_data() {
            return None;
        }
        Some(UptimeFigures {
            availability_pct: t.available_ms as f64 * 100.0 / t.known_ms as f64,
            outages: t.outages,
            outage_total_s: seconds(t.outage_ms),
            outage_longest_s: seconds(t.longest_outage_ms),
            mttr_s: (t.outages > 0).then(|| t.outage_ms as f64 / 1000.0 / t.outages as f64),
            on_air_s: seconds(t.on_air_ms),
            programmes: t.programmes,
            aired_s: seconds(t.aired_ms),
            known_s: seconds(t.known_ms),
            available_s: seconds(t.available_ms),
            link_down_s: seconds(t.link_down_ms),
            off_s: seconds(t.off_ms),
            unreported_s: seconds(t.unreported_ms),
            cluster_down_s: seconds(t.cluster_down_ms),
            amplifier_hours: seconds(t.amplifier_ms) / 3600.0,
        })
    }
}

/// One row: a figure per period (null without data) and for the whole range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UptimeRow {
    pub periods: Vec<Option<UptimeFigures>>,
    pub all: Option<UptimeFigures>,
}

/// One station's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StationUptime {
    pub id: String,
    /// The Vietnamese name.
    pub name: String,
    #[serde(flatten)]
    pub row: UptimeRow,
    /// Its loudspeaker clusters, when the report asks for them (`clusters`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<ClusterUptime>,
}

/// One loudspeaker cluster's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterUptime {
    /// `binh-trung/c01`.
    pub id: String,
    /// Whether the agent watches its receiver; if not, the row is the station's.
    pub watched: bool,
    /// Named by an agent but not in the district's configuration (more clusters than
    /// configured, or a typo in `cluster=`): listed so the mistake shows.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unconfigured: bool,
    #[serde(flatten)]
    pub row: UptimeRow,
}

/// What is common to both reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportHeader {
    /// `uptime` or `plays`.
    pub report: &'static str,
    pub district: String,
    pub timezone: String,
    pub from: Date,
    pub to: Date,
    pub by: Granularity,
    pub generated: Timestamp,
    pub periods: Vec<Period>,
    /// The whole range, `from` to `to`.
    pub range: Period,
}

/// `radio-server report uptime`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UptimeReport {
    #[serde(flatten)]
    pub header: ReportHeader,
    /// In the district's order.
    pub stations: Vec<StationUptime>,
    /// Availability weighted by time over the stations with data; counts and times summed;
    /// the longest outage is the longest of any station.
    pub district_total: UptimeRow,
    /// The stations' box health by month ([`box_health::box_health`]); left out when none
    /// reported any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub box_health: Vec<box_health::StationBoxHealth>,
}

/// Tallies of every station (in the district's order) for the periods and the whole range.
struct Tallies {
    header: ReportHeader,
    /// Per station: a tally per period, then the whole range's.
    stations: Vec<(Vec<Tally>, Tally)>,
}

fn tallies(
    kind: ReportKind,
    district: &District,
    timelines: &BTreeMap<String, Timeline>,
    request: &ReportRequest,
    now: Timestamp,
) -> Result<Tallies, ReportError> {
    let tz = district_timezone(district)?;
    let (periods, range) = periods(request, &tz)?;
    let bounds: Vec<(i64, i64)> = periods.iter().map(Period::bounds).collect();
    let empty = Timeline::default();
    let stations = district
        .stations
        .iter()
        .map(|s| {
            let timeline = timelines.get(&s.id).unwrap_or(&empty);
            let per_period = tally(timeline, &bounds);
            let whole = tally(timeline, &[range.bounds()]).pop().unwrap_or_default();
            (per_period, whole)
        })
        .collect();
    Ok(Tallies {
        header: ReportHeader {
            report: kind.as_str(),
            district: district.name.clone(),
            timezone: district.timezone.clone(),
            from: request.from,
            to: request.to,
            by: request.by,
            generated: now,
            periods,
            range,
        },
        stations,
    })
}

/// Sums the tallies that have data (an empty tally when none has).
fn sum_with_data<'a>(tallies: impl Iterator<Item = &'a Tally>) -> Tally {
    let mut total = Tally::default();
    for t in tallies.filter(|t| t.has_data()) {
        total.add(t);
    }
    total
}

/// The uptime report of `district` from its stations' `timelines` (a station without one has
/// no data); `now` is when it is made.
pub fn uptime_report(
    district: &District,
    timelines: &BTreeMap<String, Timeline>,
    request: &ReportRequest,
    now: Timestamp,
) -> Result<UptimeReport, ReportError> {
    let Tallies { header, stations } =
        tallies(ReportKind::Uptime, district, timelines, request, now)?;
    let row = |per_period: &[Tally], whole: &Tally| UptimeRow {
        periods: per_period.iter().map(UptimeFigures::from_tally).collect(),
        all: UptimeFigures::from_tally(whole),
    };
    let total_periods: Vec<Tally> = (0..header.periods.len())
        .map(|i| sum_with_data(stations.iter().filter_map(|(p, _)| p.get(i))))
        .collect();
    let total_whole = sum_with_data(stations.iter().map(|(_, w)| w));
    let district_total = row(&total_periods, &total_whole);
    let bounds: Vec<(i64, i64)> = header.periods.iter().map(Period::bounds).collect();
    let range = header.range.bounds();
    let empty = Timeline::default();
    let stations = district
        .stations
        .iter()
        .zip(&stations)
        .map(|(s, (per_period, whole))| {
            let station_row = row(per_period, whole);
            let clusters = if request.clusters {
                let timeline = timelines.get(&s.id).unwrap_or(&empty);
                cluster_rows(s, timeline, &station_row, &bounds, range, &row)
            } else {
                Vec::new()
            };
            StationUptime {
                id: s.id.clone(),
                name: s.name.clone(),
                row: station_row,
                clusters,
            }
        })
        .collect();
    Ok(UptimeReport {
        header,
        stations,
        district_total,
        box_health: Vec::new(),
    })
}

/// A station's cluster rows: the configured clusters in order, then any other cluster its
/// agent watches.
fn cluster_rows(
    station: &radio_config::Station,
    timeline: &Timeline,
    station_row: &UptimeRow,
    bounds: &[(i64, i64)],
    range: (i64, i64),
    row: &dyn Fn(&[Tally], &Tally) -> UptimeRow,
) -> Vec<ClusterUptime> {
    let prefix = format!("{}/", station.id);
    let configured = station.cluster_ids();
    let extra = timeline
        .clusters
        .keys()
        .map(|c| format!("{prefix}{c}"))
        .filter(|id| !configured.contains(id))
        .collect::<Vec<_>>();
    let unconfigured = configured.len();
    configured
        .into_iter()
        .chain(extra)
        .enumerate()
        .map(|(i, id)| {
            let short = id.strip_prefix(&prefix).unwrap_or(&id);
            let (watched, row) = match timeline.for_cluster(short) {
                Some(cluster) => {
                    let per_period = tally(&cluster, bounds);
                    let whole = tally(&cluster, &[range]).pop().unwrap_or_default();
                    (true, row(&per_period, &whole))
                }
                None => (false, station_row.clone()),
            };
            ClusterUptime {
                id,
                watched,
                unconfigured: i >= unconfigured,
                row,
            }
        })
        .collect()
}

/// Programmes played in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PlayFigures {
    /// Programmes that finished playing (`ProgrammeEnd`).
    pub plays: u64,
    /// Their audio heard: frames played × 20 ms.
    pub aired_s: f64,
    /// Programmes that started and were cut off by a power cut or crash: no end was recorded,
    /// so their length is unknown and not in `aired_s`.
    pub cut_off: u64,
}

/// A figure per period (null where the station had no data) and for the whole range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaysRow {
    pub periods: Vec<Option<PlayFigures>>,
    pub all: Option<PlayFigures>,
}

/// One programme's row (programmes are told apart by name and level).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgrammePlays {
    pub name: String,
    /// `normal`, `priority`, `emergency` or `live`.
    #[serde(serialize_with = "level_name")]
    pub level: ProgrammeLevel,
    #[serde(flatten)]
    pub row: PlaysRow,
}

/// A station's programmes, or the district's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaysBlock {
    /// Every programme played or cut off in the range, by name.
    pub programmes: Vec<ProgrammePlays>,
    pub total: PlaysRow,
}

/// One station.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StationPlays {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub plays: PlaysBlock,
}

/// `radio-server report plays`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaysReport {
    #[serde(flatten)]
    pub header: ReportHeader,
    pub stations: Vec<StationPlays>,
    /// Summed over the stations with data.
    pub district_total: PlaysBlock,
}

fn level_name<S: serde::Serializer>(level: &ProgrammeLevel, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(level.as_str())
}

/// Counts per programme (name, level) and period (index `periods.len()` is the whole range).
type NameCounts = BTreeMap<(String, ProgrammeLevel), Vec<PlayFigures>>;

fn count_by_name(timeline: &Timeline, bounds: &[(i64, i64)], range: (i64, i64)) -> NameCounts {
    let columns = bounds.len() + 1;
    let mut out = NameCounts::new();
    let mut add = |name: &str, level, at: i64, f: &dyn Fn(&mut PlayFigures)| {
        if containing(&[range], at).is_none() {
            return;
        }
        let row = out
            .entry((name.to_owned(), level))
            .or_insert_with(|| vec![PlayFigures::default(); columns]);
        if let Some(i) = containing(bounds, at) {
            f(&mut row[i]);
        }
        f(&mut row[columns - 1]);
    };
    for play in &timeline.plays {
        let aired = seconds(play.aired_ms());
        add(&play.name, play.level, play.at_ms, &|p| {
            p.plays += 1;
            p.aired_s += aired;
        });
    }
    for cut in &timeline.cut_off {
        add(&cut.name, cut.level, cut.at_ms, &|p| p.cut_off += 1);
    }
    out
}

fn plays_of(t: &Tally) -> PlayFigures {
    PlayFigures {
        plays: t.programmes,
        aired_s: seconds(t.aired_ms),
        cut_off: t.cut_off,
    }
}

/// The plays report of `district`, per station and programme name.
pub fn plays_report(
    district: &District,
    timelines: &BTreeMap<String, Timeline>,
    request: &ReportRequest,
    now: Timestamp,
) -> Result<PlaysReport, ReportError> {
    if request.clusters {
        return Err(parameter(
            "clusters",
            "programmes played are counted per station; clusters apply to the uptime report",
        ));
    }
    let Tallies { header, stations } =
        tallies(ReportKind::Plays, district, timelines, request, now)?;
    let bounds: Vec<(i64, i64)> = header.periods.iter().map(Period::bounds).collect();
    let range = header.range.bounds();
    let empty = Timeline::default();
    // Where each station has data: a programme's figure there is a number (maybe 0).
    let with_data: Vec<Vec<bool>> = stations
        .iter()
        .map(|(p, w)| p.iter().chain([w]).map(Tally::has_data).collect())
        .collect();
    let row_of = |figures: &[PlayFigures], has: &[bool]| {
        let mut cells: Vec<Option<PlayFigures>> = figures
            .iter()
            .zip(has)
            .map(|(f, has)| has.then_some(*f))
            .collect();
        let all = cells.pop().flatten();
        PlaysRow {
            periods: cells,
            all,
        }
    };
    let mut district_names: NameCounts = BTreeMap::new();
    let columns = bounds.len() + 1;
    let mut out = Vec::new();
    for ((station, (per_period, whole)), has) in
        district.stations.iter().zip(&stations).zip(&with_data)
    {
        let timeline = timelines.get(&station.id).unwrap_or(&empty);
        let names = count_by_name(timeline, &bounds, range);
        let mut programmes = Vec::new();
        for ((name, level), figures) in names {
            let sum = district_names
                .entry((name.clone(), level))
                .or_insert_with(|| vec![PlayFigures::default(); columns]);
            for ((s, f), has) in sum.iter_mut().zip(&figures).zip(has) {
                if *has {
                    s.plays += f.plays;
                    s.aired_s += f.aired_s;
                    s.cut_off += f.cut_off;
                }
            }
            programmes.push(ProgrammePlays {
                name,
                level,
                row: row_of(&figures, has),
            });
        }
        let totals: Vec<PlayFigures> = per_period.iter().chain([whole]).map(plays_of).collect();
        out.push(StationPlays {
            id: station.id.clone(),
            name: station.name.clone(),
            plays: PlaysBlock {
                programmes,
                total: row_of(&totals, has),
            },
        });
    }
    // The district: a column has data where any station has.
    let district_has: Vec<bool> = (0..columns)
        .map(|i| with_data.iter().any(|h| h.get(i).copied().unwrap_or(false)))
        .collect();
    let district_totals: Vec<PlayFigures> = (0..columns)
        .map(|i| {
            plays_of(&sum_with_data(stations.iter().filter_map(|(p, w)| {
                if i < p.len() {
                    p.get(i)
                } else {
                    Some(w)
                }
            })))
        })
        .collect();
    let district_total = PlaysBlock {
        programmes: district_names
            .into_iter()
            .map(|((name, level), figures)| ProgrammePlays {
                name,
                level,
                row: row_of(&figures, &district_has),
            })
            .collect(),
        total: row_of(&district_totals, &district_has),
    };
    Ok(PlaysReport {
        header,
        stations: out,
        district_total,
    })
}

#[cfg(test)]
mod tests;
