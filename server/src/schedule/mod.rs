//! The broadcast schedule of the district and the arbiter that decides, station by station,
//! what airs now.
//!
//! All of it is sans-IO: nothing here reads a clock, sleeps, spawns or touches the network.
//! Every decision takes `now: jiff::Timestamp` from the caller, so the runtime and the tests
//! drive the same code, the tests on a virtual clock.
//!
//! - this file: the model the operator writes (TOML or JSON) — [`Schedule`], [`ScheduleEntry`],
//!   [`Bulletin`] — and [`ScheduleError`];
//! - `validate.rs`: [`validate`], every check that can be made before anything airs, including
//!   same-level overlaps over a whole week;
//! - `scheduler.rs`: [`Scheduler`], the timed entries turned into [`Occurrence`]s in local time;
//! - `ladder.rs`: [`Ladder`], the priority ladder (khẩn cấp > trực tiếp > ưu tiên > thường) that
//!   the runtime feeds with commands and time, and that answers with [`Change`]s.
//!
//! The operator-facing rules are in `docs/SCHEDULING.md`.

pub mod ladder;
pub mod scheduler;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use jiff::civil::{self, Weekday};
use jiff::{SignedDuration, Timestamp};
use radio_config::District;
use serde::{Deserialize, Serialize};

pub use ladder::{
    BulletinSnapshot, BulletinState, Change, ItemRef, Ladder, LadderConfig, OnAir, StopReason, Tier,
};
pub use scheduler::{Occurrence, Scheduler};
pub use validate::{check_upstreams, validate, validate_bulletin, LocalSpan, Overlap};

/// The zone of every Vietnamese district; Vietnam has no daylight saving time.
pub const DEFAULT_TIMEZONE: &str = "Asia/Ho_Chi_Minh";

/// Bulletin levels of TT39/2020, lowest first so that `Ord` ranks them.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// "thường": a commune operator may accept it into the station's schedule.
    #[default]
    Normal,
    /// "ưu tiên": played before normal items, at the next item boundary.
    Priority,
    /// "khẩn cấp": played immediately (storm, fire, epidemic); never scheduled in advance.
    Emergency,
}

impl Level {
    /// The name operators know from TT39/2020.
    pub fn vietnamese(self) -> &'static str {
        match self {
            Level::Normal => "thường",
            Level::Priority => "ưu tiên",
            Level::Emergency => "khẩn cấp",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let english = match self {
            Level::Normal => "normal",
            Level::Priority => "priority",
            Level::Emergency => "emergency",
        };
        write!(f, "{english} ({})", self.vietnamese())
    }
}

/// Named sets of stations and loudspeaker clusters: group name → members, each a station id
/// (`binh-trung`) or a cluster id (`binh-trung/c03`).
pub type Groups = BTreeMap<String, Vec<String>>;

/// Who hears an entry or bulletin.
///
/// TOML: `targets = "all"`, `targets = { stations = ["binh-trung"] }`,
/// `targets = { groups = ["ven-bien"] }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Targets {
    #[default]
    All,
    Stations(Vec<String>),
    Groups(Vec<String>),
}

/// Targets resolved against the district: the stations that air the item, and the clusters of
/// stations that are only partly targeted.
///
/// A station in `stations` with none of its clusters in `clusters` airs on all its clusters.
/// The arbiter works per station (a station feeds one stream to its clusters); the cluster
/// detail is kept for the runtime, which may switch clusters off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedTargets {
    pub stations: BTreeSet<String>,
    pub clusters: BTreeSet<String>,
}

impl Targets {
    /// The station ids targeted; a cluster member targets its station.
    pub fn resolve(
        &self,
        district: &District,
        groups: &Groups,
    ) -> Result<BTreeSet<String>, ScheduleError> {
        Ok(self.resolve_detailed(district, groups)?.stations)
    }

    /// Stations and partly targeted clusters. Errors name the target as `Owner::Unnamed`; the
    /// callers that know the owning entry or bulletin re-label them with [`ScheduleError::owned_by`].
    pub fn resolve_detailed(
        &self,
        district: &District,
        groups: &Groups,
    ) -> Result<ResolvedTargets, ScheduleError> {
        let owner = Owner::Unnamed;
        let mut whole: BTreeSet<String> = BTreeSet::new();
        // Cluster id → its station.
        let mut clusters: BTreeMap<String, String> = BTreeMap::new();
        match self {
            Targets::All => {
                whole.extend(district.stations.iter().map(|s| s.id.clone()));
            }
            // A station airs on all its clusters; `station/cNN` on that cluster only (the
            // console's "choose clusters").
            Targets::Stations(ids) => {
                for (i, id) in ids.iter().enumerate() {
                    let field = format!("targets.stations[{i}]");
                    match parse_member(district, id) {
                        Ok(Member::Station(_)) => {
                            whole.insert(id.clone());
                        }
                        Ok(Member::Cluster(station)) => {
                            clusters.insert(id.clone(), station.to_owned());
                        }
                        Err(MemberProblem::UnknownStation) => {
                            return Err(ScheduleError::UnknownStation {
                                owner,
                                field,
                                station: id.clone(),
                            });
                        }
                        Err(problem) => {
                            return Err(ScheduleError::BadTarget {
                                owner,
                                field,
                                member: id.clone(),
                                problem,
                            })
                        }
                    }
                }
            }
            Targets::Groups(names) => {
                for (i, name) in names.iter().enumerate() {
                    let field = format!("targets.groups[{i}]");
                    let Some(members) = groups.get(name) else {
                        return Err(ScheduleError::UnknownGroup {
                            owner,
                            field,
                            group: name.clone(),
                        });
                    };
                    for member in members {
                        match parse_member(district, member) {
                            Ok(Member::Station(id)) => {
                                whole.insert(id.to_owned());
                            }
                            Ok(Member::Cluster(station)) => {
                                clusters.insert(member.clone(), station.to_owned());
                            }
                            Err(problem) => {
                                return Err(ScheduleError::BadGroupMember {
                                    owner,
                                    field,
                                    group: name.clone(),
                                    member: member.clone(),
                                    problem,
                                })
                            }
                        }
                    }
                }
            }
        }
        let mut stations = whole.clone();
        stations.extend(clusters.values().cloned());
        // A whole-station target already covers every cluster of that station.
        let clusters = clusters
            .into_iter()
            .filter(|(_, station)| !whole.contains(station))
            .map(|(cluster, _)| cluster)
            .collect();
        Ok(ResolvedTargets { stations, clusters })
    }
}

/// A group member after checking it against the district.
pub(crate) enum Member<'a> {
    Station(&'a str),
    /// The station id of a `station/cNN` member.
    Cluster(&'a str),
}

/// What is wrong with a group member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberProblem {
    UnknownStation,
    /// `station/cNN` whose station part is unknown.
    UnknownClusterStation,
    /// `station/cNN` beyond the station's clusters (or not written `cNN`).
    UnknownCluster {
        clusters: u32,
    },
}

impl fmt::Display for MemberProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemberProblem::UnknownStation => f.write_str("no station has this id"),
            MemberProblem::UnknownClusterStation => f.write_str("no station has the id before `/`"),
            MemberProblem::UnknownCluster { clusters } => {
                write!(f, "that station has clusters c01 to c{clusters:02}")
            }
        }
    }
}

/// Checks one group member against the district.
pub(crate) fn parse_member<'a>(
    district: &District,
    member: &'a str,
) -> Result<Member<'a>, MemberProblem> {
    match member.split_once('/') {
        None => match district.station(member) {
            Some(_) => Ok(Member::Station(member)),
            None => Err(MemberProblem::UnknownStation),
        },
        Some((station_id, _)) => {
            let Some(station) = district.station(station_id) else {
                return Err(MemberProblem::UnknownClusterStation);
            };
            // Compared with the ids the district itself hands out, so `c3` vs `c03` cannot drift.
            if station.cluster_ids().iter().any(|c| c == member) {
                Ok(Member::Cluster(station_id))
            } else {
                Err(MemberProblem::UnknownCluster {
                    clusters: station.clusters,
                })
            }
        }
    }
}

/// Where the audio of an entry or bulletin comes from.
///
/// TOML: `source = { kind = "relay", url = "http://…" }`, `{ kind = "file", path = "…" }`,
/// `{ kind = "playlist", paths = […] }`, `{ kind = "upstream", name = "tinh" }` (an upstream
/// server configured in the server's `[[upstream]]` table), `{ kind = "live" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "lowercase",
    deny_unknown_fields,
    from = "SourceSpecFile"
)]
pub enum SourceSpec {
    /// A recording; it has an end, and resumes where it stopped.
    File { path: PathBuf },
    /// Recordings played in order; counts as one item with one position.
    Playlist { paths: Vec<PathBuf> },
    /// An HTTP(S) audio stream, such as the provincial station's.
    Relay { url: String },
    /// What an upstream radio server airs for this server, by the name of its `[[upstream]]`
    /// in the server's config (which holds the address and the enrolment bundle).
    Upstream { name: String },
    /// The studio microphone / live input of the server.
    Live,
}

/// The file form of [`SourceSpec`]. Serde lets a unit variant of an internally tagged enum
/// carry unknown keys (`{ kind = "live", url = "…" }` would parse and drop the URL); as an empty
/// struct variant `live` rejects them like every other kind.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum SourceSpecFile {
    File { path: PathBuf },
    Playlist { paths: Vec<PathBuf> },
    Relay { url: String },
    Upstream { name: String },
    Live {},
}

impl From<SourceSpecFile> for SourceSpec {
    fn from(file: SourceSpecFile) -> Self {
        match file {
            SourceSpecFile::File { path } => SourceSpec::File { path },
            SourceSpecFile::Playlist { paths } => SourceSpec::Playlist { paths },
            SourceSpecFile::Relay { url } => SourceSpec::Relay { url },
            SourceSpecFile::Upstream { name } => SourceSpec::Upstream { name },
            SourceSpecFile::Live {} => SourceSpec::Live,
        }
    }
}

impl SourceSpec {
    /// Files have positions; streams only have a live point, so they resume at offset zero and
    /// have no boundary a priority bulletin could wait for.
    pub fn is_file(&self) -> bool {
        matches!(self, SourceSpec::File { .. } | SourceSpec::Playlist { .. })
    }
}

/// How often an entry airs.
///
/// TOML: `recurrence = "daily"`, `recurrence = { weekly = { days = ["monday", "thu"] } }`,
/// `recurrence = { once = { date = "2025-09-02" } }`,
/// `recurrence = { period = { from = "2026-12-01", until = "2026-12-20", days = ["mon"] } }`
/// (`days` left out or empty: every day of the period).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Recurrence {
    Daily,
    Weekly {
        #[serde(with = "weekday_names")]
        days: Vec<Weekday>,
    },
    Once {
        #[serde(deserialize_with = "civil_text::date")]
        date: civil::Date,
    },
    /// A campaign: every day (or the given weekdays) from one date to another, both included,
    /// e.g. a vaccination drive's announcement for two weeks.
    Period {
        #[serde(deserialize_with = "civil_text::date")]
        from: civil::Date,
        #[serde(deserialize_with = "civil_text::date")]
        until: civil::Date,
        #[serde(default, with = "weekday_names")]
        days: Vec<Weekday>,
    },
}

impl Recurrence {
    /// Whether an occurrence starts on this local date.
    pub fn matches(&self, date: civil::Date) -> bool {
        match self {
            Recurrence::Daily => true,
            Recurrence::Weekly { days } => days.contains(&date.weekday()),
            Recurrence::Once { date: once } => *once == date,
            Recurrence::Period { from, until, days } => {
                *from <= date
                    && date <= *until
                    && (days.is_empty() || days.contains(&date.weekday()))
            }
        }
    }
}

/// When an entry stops.
///
/// TOML: `end = { at = "07:00" }` (local time; an earlier time than `start` means the next day,
/// so 23:00 → 01:00 crosses midnight) or `end = { duration = "1h 30m" }` (also `"PT1H30M"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum EntryEnd {
    #[serde(deserialize_with = "civil_text::time")]
    At(civil::Time),
    Duration(SignedDuration),
}

/// One timed slot of the schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEntry {
    /// ASCII slug, unique in the schedule, e.g. `tiep-song-sang`.
    pub id: String,
    /// Vietnamese name shown to operators.
    pub name: String,
    pub recurrence: Recurrence,
    /// Local time in the schedule's zone: `"05:00"`, `"05:00:30"`, or TOML's bare `05:00:00`.
    #[serde(deserialize_with = "civil_text::time")]
    pub start: civil::Time,
    pub end: EntryEnd,
    pub source: SourceSpec,
    pub targets: Targets,
    /// Normal or priority; emergencies are started by hand, never scheduled.
    #[serde(default)]
    pub level: Level,
}

/// The district's schedule file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// IANA zone the entries' times are in.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default)]
    pub groups: Groups,
    #[serde(default)]
    pub entries: Vec<ScheduleEntry>,
}

fn default_timezone() -> String {
    DEFAULT_TIMEZONE.to_owned()
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            timezone: default_timezone(),
            groups: Groups::new(),
            entries: Vec::new(),
        }
    }
}

impl Schedule {
    /// Placeholder URL of the provincial station's stream; the operator replaces it with the
    /// config's `provincial_stream`.
    pub const PROVINCIAL_RELAY_URL: &'static str = radio_config::DEFAULT_PROVINCIAL_STREAM;

    /// Bình Sơn's standing schedule with the placeholder stream: see
    /// [`Schedule::binh_son_relaying`].
    pub fn binh_son_default() -> Schedule {
        Self::binh_son_relaying(Self::PROVINCIAL_RELAY_URL)
    }

    /// Bình Sơn's standing schedule: every commune station relays the provincial radio
    /// (Đài PT-TH Quảng Ngãi), whose stream is `url`, 05:00–07:00 and 17:00–19:00.
    pub fn binh_son_relaying(url: &str) -> Schedule {
        let relay = |id: &str, start: civil::Time, end: civil::Time| ScheduleEntry {
            id: id.to_owned(),
            name: "Tiếp sóng Đài PT-TH Quảng Ngãi".to_owned(),
            recurrence: Recurrence::Daily,
            start,
            end: EntryEnd::At(end),
            source: SourceSpec::Relay {
                url: url.to_owned(),
            },
            targets: Targets::All,
            level: Level::Normal,
        };
        Schedule {
            timezone: default_timezone(),
            groups: Groups::new(),
            entries: vec![
                relay(
                    "tiep-song-sang",
                    civil::time(5, 0, 0, 0),
                    civil::time(7, 0, 0, 0),
                ),
                relay(
                    "tiep-song-chieu",
                    civil::time(17, 0, 0, 0),
                    civil::time(19, 0, 0, 0),
                ),
            ],
        }
    }

    pub fn entry(&self, id: &str) -> Option<&ScheduleEntry> {
        self.entries.iter().find(|e| e.id == id)
    }
}

/// An untimed item sent to stations: it airs when the station is free at its level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bulletin {
    pub id: String,
    pub name: String,
    pub source: SourceSpec,
    /// Normal bulletins need each station's acceptance; priority ones do not.
    #[serde(default)]
    pub level: Level,
    pub targets: Targets,
    /// Known length of a file bulletin; streams have none and end when reported finished.
    #[serde(default)]
    pub duration: Option<SignedDuration>,
    /// Orders the queue: older bulletins of a level air first.
    pub submitted: Timestamp,
}

/// What an error is about, so the message names it the way the operator wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A schedule entry: its id (possibly empty or invalid) and its place in `entries`.
    Entry {
        index: usize,
        id: String,
    },
    Group(String),
    Bulletin(String),
    Emergency(String),
    Live(String),
    /// From [`Targets::resolve`] called on its own.
    Unnamed,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Entry { index, id } if id.is_empty() => write!(f, "entries[{index}]"),
            Owner::Entry { index, id } => write!(f, "entry `{id}` (entries[{index}])"),
            Owner::Group(name) => write!(f, "group `{name}`"),
            Owner::Bulletin(id) => write!(f, "bulletin `{id}`"),
            Owner::Emergency(id) => write!(f, "emergency `{id}`"),
            Owner::Live(id) => write!(f, "live `{id}`"),
            Owner::Unnamed => f.write_str("targets"),
        }
    }
}

/// Everything that can be wrong with a schedule, a bulletin or a ladder command. Each message
/// names the entry (or bulletin, group, station) and the field to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("timezone `{timezone}`: {reason}")]
    UnknownTimezone { timezone: String, reason: String },
    #[error("{owner}: field `{field}` must not be empty")]
    EmptyField { owner: Owner, field: String },
    #[error("{owner}: field `{field}`: {reason}")]
    InvalidId {
        owner: Owner,
        field: String,
        reason: String,
    },
    #[error("entries[{second}]: id `{id}` is already used by entries[{first}]")]
    DuplicateId {
        id: String,
        first: usize,
        second: usize,
    },
    #[error("{owner}: field `{field}`: unknown station `{station}`")]
    UnknownStation {
        owner: Owner,
        field: String,
        station: String,
    },
    #[error("{owner}: field `{field}`: unknown group `{group}` (define it under [groups])")]
    UnknownGroup {
        owner: Owner,
        field: String,
        group: String,
    },
    #[error("{owner}: field `{field}`: group `{group}` member `{member}`: {problem}")]
    BadGroupMember {
        owner: Owner,
        field: String,
        group: String,
        member: String,
        problem: MemberProblem,
    },
    #[error("{owner}: field `{field}`: `{member}`: {problem}")]
    BadTarget {
        owner: Owner,
        field: String,
        member: String,
        problem: MemberProblem,
    },
    #[error("{owner}: field `{field}` targets no station")]
    NoTargets { owner: Owner, field: String },
    #[error("{owner}: field `{field}`: file `{}` does not exist", path.display())]
    MissingFile {
        owner: Owner,
        field: String,
        path: PathBuf,
    },
    #[error("{owner}: field `{field}`: `{url}` is not a usable relay URL: {reason}")]
    InvalidUrl {
        owner: Owner,
        field: String,
        url: String,
        reason: String,
    },
    #[error(
        "{owner}: field `duration`: a stream (relay, upstream or live) never ends by itself; \
         give the bulletin a duration"
    )]
    StreamWithoutDuration { owner: Owner },
    #[error(
        "{owner}: field `{field}`: no upstream server is called `{name}` in the server's \
         config (configured: {known})"
    )]
    UnknownUpstream {
        owner: Owner,
        field: String,
        name: String,
        /// The configured names, comma-separated, or `none`.
        known: String,
    },
    #[error("{owner}: field `{field}`: {duration:#} is not a positive duration")]
    NonPositiveDuration {
        owner: Owner,
        field: String,
        duration: SignedDuration,
    },
    #[error(
        "{owner}: field `{field}`: {duration:#} is longer than 24 hours; a slot repeats at most \
         daily, so split it into several entries"
    )]
    TooLong {
        owner: Owner,
        field: String,
        duration: SignedDuration,
    },
    #[error(
        "{owner}: field `end.at` equals `start` ({start}): the slot would be empty; for a 24-hour \
         slot write end = {{ duration = \"24h\" }}"
    )]
    EmptySlot { owner: Owner, start: civil::Time },
    #[error("{owner}: field `recurrence.weekly.days` is empty: the entry would never air")]
    NoWeekdays { owner: Owner },
    #[error(
        "{owner}: field `recurrence.period.until`: {until} is before `from` {from}: the entry \
         would never air"
    )]
    EmptyPeriod {
        owner: Owner,
        from: civil::Date,
        until: civil::Date,
    },
    #[error(
        "{owner}: field `{field}`: the slot starting {when} is already over (now {now}); choose \
         a later time (thời điểm này đã qua, hãy chọn giờ muộn hơn)"
    )]
    InThePast {
        owner: Owner,
        field: String,
        when: String,
        now: String,
    },
    #[error(
        "{owner}: field `level`: emergency (khẩn cấp) items are started by hand and interrupt \
         at once; they cannot be {context}"
    )]
    EmergencyNotAllowed { owner: Owner, context: String },
    #[error(
        "entries `{first}` and `{second}` are both {level} and overlap on station `{station}` \
         at {at}; move one, or make one the other level"
    )]
    SameLevelOverlap {
        first: String,
        second: String,
        level: Level,
        station: String,
        at: LocalSpan,
    },
    #[error("unknown station `{station}`")]
    UnknownStationCommand { station: String },
    #[error("{owner}: no such {what} is active")]
    NotActive { owner: Owner, what: String },
    #[error("{owner}: already active; stop it first or use another id")]
    AlreadyActive { owner: Owner },
    #[error("{owner}: station `{station}` is not among its targets")]
    NotTargeted { owner: Owner, station: String },
    #[error(
        "{owner}: bản tin ưu tiên/khẩn cấp không thể {vi} — a {level} bulletin airs at every \
         station it targets without acceptance; it cannot be {en}"
    )]
    NotOffered {
        owner: Owner,
        level: Level,
        vi: &'static str,
        en: &'static str,
    },
    #[error(
        "{owner}: đã phát xong tại `{station}` — it has already aired to its end at `{station}`"
    )]
    AlreadyAired { owner: Owner, station: String },
    #[error(
        "{owner}: đã bắt đầu phát tại `{station}` — it has already started at `{station}`; a \
         new air time cannot move it"
    )]
    AlreadyStarted { owner: Owner, station: String },
    #[error("station `{station}`: {item} is not on air there")]
    NotOnAir { station: String, item: ItemRef },
    #[error("station `{station}`: {item} has no end; stop it with stop_live / stop_emergency")]
    CannotFinish { station: String, item: ItemRef },
}

impl ScheduleError {
    /// Re-labels an error from [`Targets::resolve`] with the entry or bulletin it belongs to.
    pub fn owned_by(mut self, new_owner: Owner) -> Self {
        match &mut self {
            ScheduleError::UnknownStation { owner, .. }
            | ScheduleError::UnknownGroup { owner, .. }
            | ScheduleError::BadGroupMember { owner, .. }
            | ScheduleError::BadTarget { owner, .. }
            | ScheduleError::NoTargets { owner, .. }
                if *owner == Owner::Unnamed =>
            {
                *owner = new_owner;
            }
            _ => {}
        }
        self
    }
}

/// Loads a zone from the system database, falling back to the copy built into the binary so
/// that a server without tzdata (minimal containers) still knows Asia/Ho_Chi_Minh.
pub fn load_timezone(name: &str) -> Result<jiff::tz::TimeZone, ScheduleError> {
    use std::sync::OnceLock;
    static BUNDLED: OnceLock<jiff::tz::TimeZoneDatabase> = OnceLock::new();
    match jiff::tz::db().get(name) {
        Ok(tz) => Ok(tz),
        Err(system_err) => BUNDLED
            .get_or_init(jiff::tz::TimeZoneDatabase::bundled)
            .get(name)
            .map_err(|_| ScheduleError::UnknownTimezone {
                timezone: name.to_owned(),
                reason: format!("not an IANA time zone name ({system_err})"),
            }),
    }
}

/// Weekdays as words: jiff's `Weekday` has no serde form, and operators write names, in English
/// (`monday`, `mon`) or Vietnamese (`thứ hai`, `t2`, `chủ nhật`, `cn`).
mod weekday_names {
    use jiff::civil::Weekday;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(days: &[Weekday], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(days.iter().map(|d| english(*d)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Weekday>, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names
            .iter()
            .map(|name| {
                parse(name).ok_or_else(|| {
                    D::Error::custom(format!(
                        "`{name}` is not a weekday: write monday…sunday, mon…sun, \
                         thứ hai…thứ bảy, chủ nhật, t2…t7 or cn"
                    ))
                })
            })
            .collect()
    }

    pub(crate) fn english(day: Weekday) -> &'static str {
        match day {
            Weekday::Monday => "monday",
            Weekday::Tuesday => "tuesday",
            Weekday::Wednesday => "wednesday",
            Weekday::Thursday => "thursday",
            Weekday::Friday => "friday",
            Weekday::Saturday => "saturday",
            Weekday::Sunday => "sunday",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Weekday> {
        let folded = name
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        let day = match folded.as_str() {
            "monday" | "mon" | "thứ hai" | "thứ 2" | "t2" => Weekday::Monday,
            "tuesday" | "tue" | "thứ ba" | "thứ 3" | "t3" => Weekday::Tuesday,
            "wednesday" | "wed" | "thứ tư" | "thứ 4" | "t4" => Weekday::Wednesday,
            "thursday" | "thu" | "thứ năm" | "thứ 5" | "t5" => Weekday::Thursday,
            "friday" | "fri" | "thứ sáu" | "thứ 6" | "t6" => Weekday::Friday,
            "saturday" | "sat" | "thứ bảy" | "thứ 7" | "t7" => Weekday::Saturday,
            "sunday" | "sun" | "chủ nhật" | "cn" => Weekday::Sunday,
            _ => return None,
        };
        Some(day)
    }
}

pub(crate) use weekday_names::english as weekday_english;

/// Dates and times from text, or from TOML's own date and time values, with errors that show
/// the expected spelling. jiff alone accepts only strings and reports a bare `05:00:00` as
/// "invalid type: map".
mod civil_text {
    use std::fmt::Display;
    use std::marker::PhantomData;
    use std::str::FromStr;

    use jiff::civil;
    use serde::de::{self, Deserializer, IgnoredAny, MapAccess};

    pub(super) fn time<'de, D: Deserializer<'de>>(d: D) -> Result<civil::Time, D::Error> {
        d.deserialize_any(Text::new("time", "05:00"))
    }

    pub(super) fn date<'de, D: Deserializer<'de>>(d: D) -> Result<civil::Date, D::Error> {
        d.deserialize_any(Text::new("date", "2025-09-02"))
    }

    struct Text<T> {
        what: &'static str,
        example: &'static str,
        parsed: PhantomData<T>,
    }

    impl<T> Text<T> {
        fn new(what: &'static str, example: &'static str) -> Self {
            Text {
                what,
                example,
                parsed: PhantomData,
            }
        }
    }

    impl<'de, T> de::Visitor<'de> for Text<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a {} written like \"{}\"", self.what, self.example)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
            text.parse().map_err(|e| {
                E::custom(format!(
                    "`{text}` is not a {}: {e} (write it like \"{}\")",
                    self.what, self.example
                ))
            })
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
            // The toml crate hands its date/time values to serde as a one-entry map of text.
            let text = match map.next_entry::<IgnoredAny, String>()? {
                Some((_, text)) if map.next_key::<IgnoredAny>()?.is_none() => text,
                _ => return Err(de::Error::invalid_type(de::Unexpected::Map, &self)),
            };
            self.visit_str(&text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_rank_emergency_over_priority_over_normal() {
        assert!(Level::Emergency > Level::Priority);
        assert!(Level::Priority > Level::Normal);
        assert_eq!(Level::Priority.to_string(), "priority (ưu tiên)");
    }

    #[test]
    fn binh_son_default_round_trips_through_toml() {
        let schedule = Schedule::binh_son_default();
        let text = toml::to_string(&schedule).expect("serialize");
        let back: Schedule = toml::from_str(&text).expect("parse back");
        assert_eq!(back, schedule);
        assert_eq!(schedule.entries[0].name, "Tiếp sóng Đài PT-TH Quảng Ngãi");
    }

    #[test]
    fn hand_written_toml_parses() {
        let text = r#"
            [groups]
            ven-bien = ["binh-trung", "binh-duong/c02"]

            [[entries]]
            id = "ban-tin-toi"
            name = "Bản tin tối"
            recurrence = { weekly = { days = ["monday", "thứ tư", "T6", "cn"] } }
            start = "23:00"
            end = { at = "01:00" }
            source = { kind = "playlist", paths = ["/srv/a.mp3", "/srv/b.mp3"] }
            targets = { groups = ["ven-bien"] }
            level = "priority"

            [[entries]]
            id = "le-quoc-khanh"
            name = "Lễ Quốc khánh"
            recurrence = { once = { date = "2025-09-02" } }
            start = "07:30"
            end = { duration = "1h 30m" }
            source = { kind = "upstream", name = "tinh-quang-ngai" }
            targets = "all"
        "#;
        let schedule: Schedule = toml::from_str(text).expect("parse");
        assert_eq!(schedule.timezone, DEFAULT_TIMEZONE);
        let first = &schedule.entries[0];
        assert_eq!(
            first.recurrence,
            Recurrence::Weekly {
                days: vec![
                    Weekday::Monday,
                    Weekday::Wednesday,
                    Weekday::Friday,
                    Weekday::Sunday
                ]
            }
        );
        assert_eq!(first.level, Level::Priority);
        assert_eq!(first.end, EntryEnd::At(civil::time(1, 0, 0, 0)));
        let second = &schedule.entries[1];
        assert_eq!(second.level, Level::Normal);
        assert_eq!(
            second.end,
            EntryEnd::Duration(SignedDuration::from_mins(90))
        );
        let text = toml::to_string(&schedule).expect("serialize");
        assert_eq!(toml::from_str::<Schedule>(&text).expect("again"), schedule);
    }

    #[test]
    fn toml_native_times_and_dates_are_accepted() {
        let text = r#"
            [[entries]]
            id = "le"
            name = "Lễ"
            recurrence = { once = { date = 2025-09-02 } }
            start = 07:30:00
            end = { at = 09:00:00 }
            source = { kind = "live" }
            targets = "all"
        "#;
        let schedule: Schedule = toml::from_str(text).expect("parse");
        let entry = &schedule.entries[0];
        assert_eq!(entry.start, civil::time(7, 30, 0, 0));
        assert_eq!(entry.end, EntryEnd::At(civil::time(9, 0, 0, 0)));
        assert_eq!(
            entry.recurrence,
            Recurrence::Once {
                date: civil::date(2025, 9, 2)
            }
        );
        let bad = text.replace("start = 07:30:00", "start = \"7:30\"");
        let err = toml::from_str::<Schedule>(&bad).expect_err("one-digit hour");
        assert!(err.to_string().contains("write it like \"05:00\""), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let entry = r#"
            [[entries]]
            id = "a"
            name = "A"
            recurrence = "daily"
            start = "05:00"
            end = { at = "06:00" }
            targets = "all"
        "#;
        for extra in [
            "colour = \"red\"\nsource = { kind = \"live\" }",
            "source = { kind = \"relay\", url = \"http://x/\", gain = 2 }",
            "source = { kind = \"tape\" }",
            "source = { kind = \"live\", url = \"http://x/\" }",
        ] {
            let text = format!("{entry}{extra}\n");
            assert!(toml::from_str::<Schedule>(&text).is_err(), "{extra}");
        }
        assert!(toml::from_str::<Schedule>("tz = \"UTC\"").is_err());
    }

    #[test]
    fn resolve_maps_clusters_to_their_station() {
        let district = District::binh_son();
        let mut groups = Groups::new();
        groups.insert(
            "mix".into(),
            vec![
                "binh-trung/c03".into(),
                "binh-duong".into(),
                "binh-duong/c01".into(),
            ],
        );
        let resolved = Targets::Groups(vec!["mix".into()])
            .resolve_detailed(&district, &groups)
            .expect("resolves");
        assert_eq!(
            resolved.stations,
            BTreeSet::from(["binh-trung".to_owned(), "binh-duong".to_owned()])
        );
        // binh-duong is targeted whole, so its cluster is not listed separately.
        assert_eq!(
            resolved.clusters,
            BTreeSet::from(["binh-trung/c03".to_owned()])
        );
        let all = Targets::All.resolve(&district, &groups).expect("all");
        assert_eq!(all.len(), 22);
    }

    #[test]
    fn resolve_errors_name_the_target() {
        let district = District::binh_son();
        let mut groups = Groups::new();
        groups.insert("bad".into(), vec!["binh-trung/c999".into()]);
        let err = Targets::Stations(vec!["binh-trung".into(), "atlantis".into()])
            .resolve(&district, &groups)
            .expect_err("unknown station");
        assert!(err.to_string().contains("targets.stations[1]"), "{err}");
        assert!(err.to_string().contains("atlantis"), "{err}");
        let err = Targets::Groups(vec!["bad".into()])
            .resolve(&district, &groups)
            .expect_err("bad cluster")
            .owned_by(Owner::Bulletin("bt".into()));
        let text = err.to_string();
        assert!(text.starts_with("bulletin `bt`"), "{text}");
        assert!(text.contains("binh-trung/c999"), "{text}");
        let err = Targets::Groups(vec!["nope".into()])
            .resolve(&district, &groups)
            .expect_err("unknown group");
        assert!(matches!(err, ScheduleError::UnknownGroup { .. }));
    }

    #[test]
    fn timezones_load_from_the_bundle() {
        assert!(load_timezone("Asia/Ho_Chi_Minh").is_ok());
        assert!(load_timezone("Europe/Berlin").is_ok());
        let err = load_timezone("Asia/Binh_Son").expect_err("not a zone");
        assert!(err.to_string().contains("Asia/Binh_Son"));
        // The bundle alone must know the district zone: servers may have no tzdata installed.
        assert!(jiff::tz::TimeZoneDatabase::bundled()
            .get("Asia/Ho_Chi_Minh")
            .is_ok());
    }

    #[test]
    fn weekday_names_cover_both_languages() {
        assert_eq!(weekday_names::parse("Thứ  Bảy"), Some(Weekday::Saturday));
        assert_eq!(weekday_names::parse("CN"), Some(Weekday::Sunday));
        assert_eq!(weekday_names::parse("tue"), Some(Weekday::Tuesday));
        assert_eq!(weekday_names::parse("thứ tám"), None);
    }
}
