//! `GET /api/v1/timeline`: the console's week grid and today's "planned beside aired" view.
//!
//! Planned is what the schedule says each station airs (its occurrences, in the district's
//! time zone); aired is what the station's agent journaled it played (proof of play), and the
//! outages when the station was not heard. The two side by side show what was interrupted
//! (an emergency cut a slot short) and what never aired (the link was down).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Extension;
use axum::Json;
use jiff::civil::Date;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use radio_config::Role;

use super::admin::{load_timezone_for, Actor, AdminState, ApiError, ReportParams};
use crate::report;
use crate::schedule::scheduler::Scheduler;
use crate::schedule::Level;

/// The most days one request may ask for: a week grid, or a month at a stretch.
const MAX_DAYS: i64 = 31;

/// The answer: every station the caller may see, with its planned and aired items.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelineView {
    pub timezone: String,
    pub from: Date,
    /// The day after the last day shown.
    pub until: Date,
    pub stations: Vec<StationTimeline>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StationTimeline {
    pub id: String,
    pub name: String,
    pub planned: Vec<PlannedItem>,
    pub aired: Vec<AiredItem>,
    /// When the station was not heard (link down, agent off, nothing reported).
    pub outages: Vec<Stretch>,
}

/// One occurrence of a schedule entry at this station.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedItem {
    pub entry_id: String,
    pub name: String,
    pub level: Level,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// One programme the agent played, from its journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AiredItem {
    pub name: String,
    /// `normal`, `priority`, `emergency` or `live`.
    pub level: String,
    pub start: Timestamp,
    pub end: Timestamp,
    /// It started and its end was never journaled (the agent stopped uncleanly): `end` is
    /// the last moment it is known to have been playing.
    pub cut_off: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stretch {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// `?from=YYYY-MM-DD&days=N` (default: today, 1 day; at most 31).
pub(crate) async fn timeline(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    params: ReportParams,
) -> Result<Json<TimelineView>, ApiError> {
    let Query(params) = params
        .map_err(|e| ApiError::bad_request(format!("the query string: {}", e.body_text())))?;
    let schedule = state.schedule_snapshot().await;
    let tz = load_timezone_for(&schedule.timezone)?;
    let now = Timestamp::now();
    let mut from = tz.to_datetime(now).date();
    let mut days: i64 = 1;
    for (name, value) in &params {
        match name.as_str() {
            "from" => {
                from = value.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "parameter `from`: `{value}` is not a date (YYYY-MM-DD)"
                    ))
                })?;
            }
            "days" => {
                days = value
                    .parse()
                    .ok()
                    .filter(|d| (1..=MAX_DAYS).contains(d))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "parameter `days`: `{value}` is not a number from 1 to {MAX_DAYS}"
                        ))
                    })?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "parameter `{other}`: unknown parameter (the timeline takes `from` and `days`)"
                )))
            }
        }
    }
    let until = from
        .checked_add(jiff::Span::new().days(days))
        .map_err(|e| ApiError::bad_request(format!("parameter `days`: {e}")))?;
    let start = tz
        .to_timestamp(from.to_datetime(jiff::civil::Time::midnight()))
        .map_err(|e| ApiError::bad_request(format!("parameter `from`: {e}")))?;
    let end = tz
        .to_timestamp(until.to_datetime(jiff::civil::Time::midnight()))
        .map_err(|e| ApiError::bad_request(format!("parameter `days`: {e}")))?;

    let district = state.district().clone();
    let scheduler = Scheduler::new(schedule.clone(), &district)
        .map_err(|e| ApiError::internal(format!("the stored schedule: {e}")))?;
    let names: BTreeMap<&str, &str> = schedule
        .entries
        .iter()
        .map(|e| (e.id.as_str(), e.name.as_str()))
        .collect();
    let mut planned: BTreeMap<String, Vec<PlannedItem>> = BTreeMap::new();
    for o in scheduler.occurrences(start, end) {
        if o.end <= start || o.start >= end {
            continue;
        }
        for station in &o.stations {
            planned
                .entry(station.clone())
                .or_default()
                .push(PlannedItem {
                    entry_id: o.entry_id.clone(),
                    name: names
                        .get(o.entry_id.as_str())
                        .map_or_else(|| o.entry_id.clone(), |name| (*name).to_owned()),
                    level: o.level,
                    start: o.start,
                    end: o.end,
                });
        }
    }

    let visible: Vec<(String, String)> = district
        .stations
        .iter()
        .filter(|s| actor.caller.role != Role::Operator || actor.caller.stations.contains(&s.id))
        .map(|s| (s.id.clone(), s.name.clone()))
        .collect();
    let store = state.store_handle();
    let (start_ms, end_ms) = (start.as_millisecond(), end.as_millisecond());
    let timelines = tokio::task::spawn_blocking(move || {
        report::load::timelines(store.uptime(), &district, now.as_millisecond())
    })
    .await
    .map_err(|e| ApiError::internal(format!("reading the uptime records failed: {e}")))?
    .map_err(|e| ApiError::internal(format!("reading the uptime records: {e}")))?;

    let stamp = |ms: i64| Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH);
    let within = |s: i64, e: i64| e > start_ms && s < end_ms;
    let stations = visible
        .into_iter()
        .map(|(id, name)| {
            let line = timelines.get(&id);
            let mut aired: Vec<AiredItem> = line
                .map(|t| {
                    t.plays
                        .iter()
                        .map(|p| (p.at_ms - p.aired_ms(), p.at_ms, p, false))
                        .filter(|(s, e, _, _)| within(*s, *e))
                        .map(|(s, e, p, cut)| AiredItem {
                            name: p.name.clone(),
                            level: level_name(p.level),
                            start: stamp(s),
                            end: stamp(e),
                            cut_off: cut,
                        })
                        .collect()
                })
                .unwrap_or_default();
            if let Some(t) = line {
                aired.extend(
                    t.cut_off
                        .iter()
                        .filter(|c| within(c.at_ms, c.at_ms + 1))
                        .map(|c| AiredItem {
                            name: c.name.clone(),
                            level: level_name(c.level),
                            start: stamp(c.at_ms),
                            end: stamp(c.at_ms),
                            cut_off: true,
                        }),
                );
            }
            aired.sort_by_key(|a| a.start);
            let outages = line
                .map(|t| {
                    t.outages
                        .iter()
                        .filter(|o| within(o.start_ms, o.end_ms))
                        .map(|o| Stretch {
                            start: stamp(o.start_ms.max(start_ms)),
                            end: stamp(o.end_ms.min(end_ms)),
                        })
                        .collect()
                })
                .unwrap_or_default();
            StationTimeline {
                planned: planned.remove(&id).unwrap_or_default(),
                id,
                name,
                aired,
                outages,
            }
        })
        .collect();
    Ok(Json(TimelineView {
        timezone: schedule.timezone.clone(),
        from,
        until,
        stations,
    }))
}

fn level_name(level: radio_proto::ProgrammeLevel) -> String {
    match level {
        radio_proto::ProgrammeLevel::Normal => "normal",
        radio_proto::ProgrammeLevel::Priority => "priority",
        radio_proto::ProgrammeLevel::Emergency => "emergency",
        radio_proto::ProgrammeLevel::Live => "live",
    }
    .to_owned()
}
