//! The stations' box health: what each agent reports (`BoxHealth`, beside its heartbeats), the
//! warnings the `[health]` thresholds raise from it, and where they go — the log, the audit
//! log (when a warning starts and when it clears, not on every report), `/metrics`, the
//! dashboard, and the month's aggregates for the station report.
//!
//! - `warnings.rs` — which warnings start or clear with a report (sans-IO).
//! - `station.rs` — one station's health as the server holds it, and its dashboard line.
//! - `mod.rs` — [`on_report`]: a report from a session, into all of the above.

pub mod station;
pub mod warnings;

use std::sync::Arc;

use jiff::Timestamp;
use radio_proto::BoxHealth;

use crate::link::server::Server;
use crate::operator::audit_log::{AuditLog, AuditRecord};
use crate::records::box_health::{BoxHealthMonths, LastReport};

pub use station::{HealthSnapshot, StationHealth};
pub use warnings::{HealthWarnings, Transition, WarningKind};

/// What a report changed: the warnings that start or clear, and the previous report's (server
/// time in ms, over the temperature threshold).
pub type Observed = (Vec<Transition>, Option<(u64, bool)>);

/// Where the health warnings and aggregates are kept: without them (the demo, tests that
/// build a bare server) warnings are only logged and shown.
#[derive(Debug, Clone)]
pub struct HealthRecords {
    pub months: BoxHealthMonths,
    pub audit: AuditLog,
}

/// Takes `commune`'s report in: the station's state and warnings, the log and audit for each
/// warning that starts or clears, and the month's aggregate.
pub async fn on_report(server: &Arc<Server>, commune: &str, report: BoxHealth) {
    let now = Timestamp::now();
    let rules = server.config().health.clone();
    let threshold_mc = i64::from(rules.max_temperature_c) * 1000;
    // The agent's clock stamps the report, but intervals are the server's: an agent's clock
    // may be wrong, and the server's is the one reports are read on.
    let at = u64::try_from(now.as_millisecond()).unwrap_or(0);
    let over = report
        .temperature_mc
        .is_some_and(|t| i64::from(t) > threshold_mc);
    let temperature = report.temperature_mc;
    let Some((transitions, last)) = server.observe_health(commune, report, &rules, (at, over))
    else {
        return;
    };
    for t in &transitions {
        if t.started {
            tracing::warn!(
                station = commune,
                warning = t.kind.as_str(),
                "box health: {}",
                t.detail
            );
        } else {
            tracing::info!(
                station = commune,
                warning = t.kind.as_str(),
                "box health cleared: {}",
                t.detail
            );
        }
    }
    let Some(records) = server.health_records() else {
        return;
    };
    let month = server_month(server, now);
    let station = commune.to_owned();
    // A gap counts while the session could still be alive; beyond that nothing is known.
    let max_gap = server.config().idle_timeout_ms;
    let done = tokio::task::spawn_blocking(move || {
        for t in &transitions {
            let record = AuditRecord::health(&station, t.kind.as_str(), t.started, &t.detail, now);
            if let Err(e) = records.audit.append(&record) {
                tracing::error!("box health warning not audited: {e}");
            }
        }
        let last = last.map(|l| LastReport {
            unix_ms: l.0,
            over: l.1,
        });
        records.months.update(&station, &month, |m| {
            m.update(last, at, temperature, max_gap)
        })
    })
    .await;
    match done {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("cannot keep the month's box health: {e}"),
        Err(e) => tracing::warn!("cannot keep the month's box health: {e}"),
    }
}

/// `YYYY-MM` of `now` in the district's time zone (UTC if it is unknown).
fn server_month(server: &Server, now: Timestamp) -> String {
    let tz = crate::report::district_timezone(server.district()).unwrap_or(jiff::tz::TimeZone::UTC);
    tz.to_datetime(now).strftime("%Y-%m").to_string()
}
